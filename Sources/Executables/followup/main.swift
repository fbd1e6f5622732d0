import Followup
import LiaisonRuntime

await ServiceMain.main(FollowupService.self)
