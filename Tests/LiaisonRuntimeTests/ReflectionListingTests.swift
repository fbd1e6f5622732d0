import LiaisonAPI
import LiaisonRPC
import XCTest

/// Issue 20: reflection lists only the APIs a binary has handlers for (every binary used to list
/// all five, so sla advertised methods that answered UNIMPLEMENTED).
final class ReflectionListingTests: XCTestCase {
    func testReflectionListsOnlyServedServices() throws {
        let all = try ReflectionService(fileDescriptorSet: LiaisonDescriptors.fileDescriptorSet)
        XCTAssertTrue(all.serviceNames.contains("liaison.sla.v1.SlaService"))
        let served: Set<String> = ["liaison.intake.v1.IntakeService", "liaison.events.v1.EventSinkService"]
        let intake = try ReflectionService(fileDescriptorSet: LiaisonDescriptors.fileDescriptorSet, serving: served)
        XCTAssertEqual(intake.serviceNames, served.sorted())
        let none = try ReflectionService(fileDescriptorSet: LiaisonDescriptors.fileDescriptorSet, serving: [])
        XCTAssertEqual(none.serviceNames, [])
    }
}
