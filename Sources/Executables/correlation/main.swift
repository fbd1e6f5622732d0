import Correlation
import LiaisonRuntime

await ServiceMain.main(CorrelationService.self)
