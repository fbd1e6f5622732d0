// Intake benchmark client: accepted reports per second through the gRPC API (durable commit).
//   IntakeBenchmark TARGET setup CUSTOMERS            upsert CUSTOMERS customers b0..bN-1
//   IntakeBenchmark TARGET single|batch CLIENTS SECONDS CUSTOMERS
// `single` sends one SubmitReport per RPC, `batch` BatchSubmitReports of 100. Each report has its
// own request_id and text, for a random customer. Prints "reports_per_second=N".
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

func report(customers: Int, n: Int) -> Liaison_Intake_V1_SubmitReportRequest {
    var r = Liaison_Intake_V1_Report()
    r.customer = "customers/b\(Int.random(in: 0..<customers))"
    r.channel = .phone
    r.agent = "agents/a\(n % 50)"
    r.text = "Customer reports issue \(UUID().uuidString.prefix(8)) with module \(n % 97): page \(n % 13) fails"
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
    guard args.count == 6, let clients = Int(args[3]), let seconds = Double(args[4]), let customers = Int(args[5]) else {
        print("usage: IntakeBenchmark TARGET single|batch CLIENTS SECONDS CUSTOMERS")
        exit(2)
    }
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
                        _ = try await client.submitReport(report(customers: customers, n: n))
                        accepted += 1
                    } else {
                        var batch = Liaison_Intake_V1_BatchSubmitReportsRequest()
                        batch.requests = (0..<100).map { i in report(customers: customers, n: n + i) }
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
    print("reports_per_second=\(Int(Double(total) / secondsElapsed))")
}
