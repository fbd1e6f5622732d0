// Storage benchmark: rows/s through LiaisonStorage for the same SQL that run.sh gives pgbench.
//   StorageBenchmark URL MODE CLIENTS SECONDS
// MODE: autocommit (one INSERT per statement), pipeline (transactions of 100 INSERTs in one
// pipeline), copy (COPY ... FROM STDIN, batches of 10k rows). Prints "rows_per_second=N".
import Foundation
import LiaisonStorage

let args = CommandLine.arguments
guard args.count == 5, let clients = Int(args[3]), let seconds = Double(args[4]) else {
    print("usage: StorageBenchmark URL autocommit|pipeline|copy CLIENTS SECONDS")
    exit(2)
}
let url = args[1], mode = args[2]
let pool = PostgresPool(.init(url: url, maxConnections: clients, applicationName: "bench"))
let insert = "INSERT INTO bench_swift (k, v) VALUES ($1, $2)"
let payload = "payload-0123456789-abcdefghij"

let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
let start = ContinuousClock.now
let total = try await withThrowingTaskGroup(of: Int.self) { group in
    for client in 0..<clients {
        group.addTask {
            var rows = 0
            var k = client * 1_000_000_000
            while ContinuousClock.now < deadline {
                switch mode {
                case "autocommit":
                    k += 1
                    try await pool.query(insert, [k, payload])
                    rows += 1
                case "pipeline":
                    let batch: [(sql: String, parameters: [any PostgresBindable])] = (0..<100).map { i in
                        (insert, [k + i, payload])
                    }
                    k += 100
                    _ = try await pool.transaction { c in try c.pipeline(batch) }
                    rows += 100
                case "copy":
                    let batch: [[String?]] = (0..<10_000).map { i in [String(k + i), payload] }
                    k += 10_000
                    rows += try await pool.withConnection { c in
                        try c.copyIn("COPY bench_swift (k, v) FROM STDIN", rows: batch)
                    }
                default:
                    fatalError("unknown mode \(mode)")
                }
            }
            return rows
        }
    }
    var sum = 0
    for try await rows in group { sum += rows }
    return sum
}
let elapsed = ContinuousClock.now - start
let secs = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
print("rows_per_second=\(Int(Double(total) / secs))")
await pool.close()
