import Foundation
import LiaisonStorage
import LiaisonTestSupport
import Synchronization
import XCTest

/// Restarts the shared test server: keep these in one class so nothing else runs meanwhile.
final class ReconnectTests: XCTestCase {
    func testPoolReconnectsAfterServerRestartAndNoAcknowledgedRowIsLost() async throws {
        let url = try TestPostgres.shared.createDatabase("reconnect")
        let pool = PostgresPool(.init(url: url, maxConnections: 4))
        try await pool.query("CREATE TABLE acked (id int PRIMARY KEY)")
        let acknowledged = Shared<[Int]>([])
        let failures = Shared(0)
        let stop = Shared(false)
        let writer = Task {
            var next = 0
            while !stop.current {
                next += 1
                let id = next
                do {
                    try await pool.transaction { c in try c.query("INSERT INTO acked VALUES ($1)", [id]) }
                    acknowledged.with { $0.append(id) }
                } catch let e as PostgresError where e.kind == .connection || e.kind == .server {
                    // The outcome is unknown or refused while the server restarts; an acknowledged
                    // write is what must survive.
                    failures.with { $0 += 1 }
                    try? await Task.sleep(for: .milliseconds(20))
                }
            }
        }
        try await Task.sleep(for: .milliseconds(500))
        let before = acknowledged.with { $0.count }
        try TestPostgres.shared.restart()
        try await Task.sleep(for: .milliseconds(1500))
        stop.with { $0 = true }
        _ = try await writer.value
        let acked = acknowledged.with { $0 }
        XCTAssertGreaterThan(acked.count, before, "no write was acknowledged after the restart")
        let stored = Set(try await pool.query("SELECT id FROM acked").rows.map { try $0.decode(Int.self, 0) })
        for id in acked { XCTAssertTrue(stored.contains(id), "acknowledged row \(id) was lost") }
        await pool.close()
    }
}
