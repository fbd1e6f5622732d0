// Intake benchmark client: accepted reports per second through the gRPC API (durable commit).
//   IntakeBenchmark TARGET setup CUSTOMERS            upsert CUSTOMERS customers b0..bN-1
//   IntakeBenchmark TARGET single|batch CLIENTS SECONDS CUSTOMERS [new|dup]
//   IntakeBenchmark generate single|batch COUNT CUSTOMERS new|dup FILE   (for loadgen.cpp)
// `single` sends one SubmitReport per RPC, `batch` BatchSubmitReports of 100. Each report has its
// own request_id, for a random customer. Texts: `new` (the default) draws 12 words at random from
// a vocabulary of 4,096, so no report is a duplicate and each opens a case (the path the pgbench
// reference runs); `dup` fills one template, so a customer's reports join its open case. Prints
// "reports_per_second=N".
import Foundation
import GRPCCore
import LiaisonAPI
import LiaisonRPC
import LiaisonRuntime

let args = CommandLine.arguments
guard args.count >= 4 else {
    print("usage: IntakeBenchmark TARGET setup CUSTOMERS | TARGET single|batch CLIENTS SECONDS CUSTOMERS")
    exit(2)
}
let target = args[1], mode = args[2]

let syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi"]
/// 4,096 made-up words of four syllables.
let vocabulary: [String] = (0..<4096).map { i in (0..<4).map { syllables[(i >> (3 * $0)) & 7] }.joined() }

/// The load generator shares the 2 cores with the server and PostgreSQL, so its requests are made
/// with SplitMix64 (seeded per client task) instead of a system call per random number (the
/// system generator and Foundation's UUID() each cost one or more).
typealias FastRandom = SplitMix64

func report(customers: Int, n: Int, duplicates: Bool, random: inout FastRandom) -> Liaison_Intake_V1_SubmitReportRequest {
    var r = Liaison_Intake_V1_Report()
    r.customer = "customers/b\(Int.random(in: 0..<customers, using: &random))"
    r.channel = .phone
    r.agent = "agents/a\(n % 50)"
    r.text = duplicates
        ? "Customer reports issue \(RandomUUID.make(using: &random).uuidString.prefix(8)) with module \(n % 97): page \(n % 13) fails"
        : (0..<12).map { _ in vocabulary.randomElement(using: &random)! }.joined(separator: " ")
    r.serviceHint = "svc-\(n % 11)"
    r.receiveTime = .init(date: Date())
    var req = Liaison_Intake_V1_SubmitReportRequest()
    req.report = r
    req.requestID = RandomUUID.make(using: &random).uuidString.lowercased()
    return req
}

// `generate`: requests for the C++ load generator (Benchmarks/intake/loadgen.cpp), each behind a
// 4-byte little-endian length: COUNT SubmitReportRequests (single) or BatchSubmitReportsRequests
// of 100 (batch).
if args[1] == "generate" {
    guard args.count == 7, let count = Int(args[3]), let customers = Int(args[4]), ["new", "dup"].contains(args[5]) else {
        print("usage: IntakeBenchmark generate single|batch COUNT CUSTOMERS new|dup FILE")
        exit(2)
    }
    let batch = args[2] == "batch"
    var random = FastRandom(seed: UInt64.random(in: 0 ... .max))
    var out: [UInt8] = []
    func append(_ bytes: [UInt8]) {
        let n = UInt32(bytes.count)
        out += [UInt8(n & 0xFF), UInt8((n >> 8) & 0xFF), UInt8((n >> 16) & 0xFF), UInt8(n >> 24)]
        out += bytes
    }
    for i in 0..<count {
        if batch {
            var b = Liaison_Intake_V1_BatchSubmitReportsRequest()
            b.requests = (0..<100).map { j in report(customers: customers, n: i * 100 + j, duplicates: args[5] == "dup", random: &random) }
            append(try b.serializedBytes())
        } else {
            append(try report(customers: customers, n: i, duplicates: args[5] == "dup", random: &random).serializedBytes())
        }
    }
    try Data(out).write(to: URL(fileURLWithPath: args[6]))
    exit(0)
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
                var random = FastRandom(seed: UInt64.random(in: 0 ... .max))
                while ContinuousClock.now < deadline {
                    if mode == "single" {
                        n += 1
                        _ = try await client.submitReport(report(customers: customers, n: n, duplicates: duplicates, random: &random))
                        accepted += 1
                    } else {
                        var batch = Liaison_Intake_V1_BatchSubmitReportsRequest()
                        batch.requests = (0..<100).map { i in report(customers: customers, n: n + i, duplicates: duplicates, random: &random) }
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
