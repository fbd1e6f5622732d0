import Communications
import LiaisonRuntime

await ServiceMain.main(CommunicationsService.self)
