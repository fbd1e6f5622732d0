// Intake benchmark client: accepted reports per second through the gRPC API (durable commit).
//   IntakeBenchmark TARGET setup CUSTOMERS            upsert CUSTOMERS customers b0..bN-1
//   IntakeBenchmark TARGET single|batch CLIENTS SECONDS CUSTOMERS [new|dup]
// `single` sends one SubmitReport per RPC, `batch` BatchSubmitReports of 100. Each report has its
// own request_id, for a random customer. Texts: `new` (the default) draws 12 words at random from
// a vocabulary of 4,096, so no report is a duplicate and each opens a case (the path the pgbench
// reference runs); `dup` fills one template, so a customer's reports join its open case. Prints
// "reports_per_second=N".
import Foundation
import GRPCCore
import LiaisonAPI
import LiaisonRPC

let args = CommandLine.arguments
guard args.count >= 4 else {
    print("usage: IntakeBenchmark TARGET setup CUSTOMERS | TARGET single|batch CLIENTS SECONDS CUSTOMERS")
    exit(2)
}
let target = args[1], mode = args[2]

let syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi"]
/// 4,096 made-up words of four syllables.
let vocabulary: [String] = (0..<4096).map { i in (0..<4).map { syllables[(i >> (3 * $0)) & 7] }.joined() }

func report(customers: Int, n: Int, duplicates: Bool) -> Liaison_Intake_V1_SubmitReportRequest {
    var r = Liaison_Intake_V1_Report()
    r.customer = "customers/b\(Int.random(in: 0..<customers))"
    r.channel = .phone
    r.agent = "agents/a\(n % 50)"
    r.text = duplicates
        ? "Customer reports issue \(UUID().uuidString.prefix(8)) with module \(n % 97): page \(n % 13) fails"
        : (0..<12).map { _ in vocabulary.randomElement()! }.joined(separator: " ")
    r.serviceHint = "svc-\(n % 11)"
    r.receiveTime = .init(date: Date())
    var req = Liaison_Intake_V1_SubmitReportRequest()
    req.report = r
    req.requestID = UUID().uuidString.lowercased()
    return req
}

let transport = try ShimClientTransport(target: target)
try await withGRPCClient(transport: transport) { grpc in
    let client = Liaison_Intake_V1_IntakeService.Client(wrapping: grpc)
    if mode == "setup" {
        let count = Int(args[3])!
        for start in stride(from: 0, to: count, by: 1000) {
            var req = Liaison_Intake_V1_BatchUpsertCustomersRequest()
            req.requestID = UUID().uuidString.lowercased()
            req.customers = (start..<min(start + 1000, count)).map { i in
                var c = Liaison_Intake_V1_Customer()
                c.name = "customers/b\(i)"
                c.displayName = "Bench \(i)"
                c.attributes.accountNumber = "\(1000 + i)"
                c.attributes.region = ["eu-south", "eu-north", "us-east"][i % 3]
                c.attributes.country = "IT"
                c.attributes.tier = .standard
                c.owningAgent = "agents/owner"
                return c
            }
            _ = try await client.batchUpsertCustomers(req)
        }
        print("customers=\(count)")
        return
    }
    guard args.count == 6 || args.count == 7, let clients = Int(args[3]), let seconds = Double(args[4]),
          let customers = Int(args[5]), args.count == 6 || ["new", "dup"].contains(args[6])
    else {
        print("usage: IntakeBenchmark TARGET single|batch CLIENTS SECONDS CUSTOMERS [new|dup]")
        exit(2)
    }
    let duplicates = args.count == 7 && args[6] == "dup"
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    let start = ContinuousClock.now
    let total = try await withThrowingTaskGroup(of: Int.self) { group in
        for c in 0..<clients {
            group.addTask {
                var accepted = 0
                var n = c * 10_000_000
                while ContinuousClock.now < deadline {
                    if mode == "single" {
                        n += 1
                        _ = try await client.submitReport(report(customers: customers, n: n, duplicates: duplicates))
                        accepted += 1
                    } else {
                        var batch = Liaison_Intake_V1_BatchSubmitReportsRequest()
                        batch.requests = (0..<100).map { i in report(customers: customers, n: n + i, duplicates: duplicates) }
                        n += 100
                        let r = try await client.batchSubmitReports(batch)
                        accepted += r.results.filter { $0.status.code == 0 }.count
                    }
                }
                return accepted
            }
        }
        var sum = 0
        for try await n in group { sum += n }
        return sum
    }
    let elapsed = ContinuousClock.now - start
    let secondsElapsed = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    print("reports=\(total)")
    print("reports_per_second=\(Int(Double(total) / secondsElapsed))")
}
