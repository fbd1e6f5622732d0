import Intake
import LiaisonRuntime

await ServiceMain.main(IntakeService.self)
