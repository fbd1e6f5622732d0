import SLA
import LiaisonRuntime

await ServiceMain.main(SLAService.self)
