// Correlation benchmark (a program, not a test): Benchmarks/correlation/run.sh
//   CorrelationBenchmark URL_BLAST URL_LINK1 URL_LINK2 [REPORTS] [CUSTOMERS] [LINK_REPORTS]
// 1. Blast radius (all 1-D and 2-D segments over 8 dimensions) of an incident with REPORTS linked
//    reports, from the live aggregates (what GetBlastRadius reads), beside the reference: PostgreSQL
//    GROUPING SETS with count(DISTINCT customer) over the raw rows, in the same run, same engine.
// 2. Linking throughput: ReportAccepted events through the EventSink over gRPC, scored and linked
//    with the live aggregates updated in the same transaction, with 1 and with 2 instances.
import Correlation
import Foundation
import GRPCCore
import LiaisonAPI
import LiaisonRPC
import LiaisonRuntime
import LiaisonStorage
import Logging
import SwiftProtobuf

let args = CommandLine.arguments
guard args.count >= 4 else {
    print("usage: CorrelationBenchmark URL_BLAST URL_LINK1 URL_LINK2 [REPORTS] [CUSTOMERS] [LINK_REPORTS]")
    exit(2)
}
let reports = args.count > 4 ? Int(args[4])! : 1_000_000
let customers = args.count > 5 ? Int(args[5])! : 1_000_000
let linkReports = args.count > 6 ? Int(args[6])! : 4000
let logger: Logger = {
    var l = Logger(label: "bench")
    l.logLevel = .warning
    return l
}()
let migrationsDir = FileManager.default.currentDirectoryPath + "/services/correlation/migrations"

func migrate(_ pool: PostgresPool) async throws {
    try await Migrator(pool: pool, logger: logger).migrate(namespace: PlatformSchema.namespace, PlatformSchema.migrations)
    try await Migrator(pool: pool, logger: logger).migrate(namespace: "correlation", try Migrator.load(directory: migrationsDir))
}

func ms(_ d: Duration) -> Double { Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15 }
func log(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }

// MARK: 1. Blast radius

let pool = PostgresPool(.init(url: args[1], maxConnections: 2, applicationName: "bench"))
try await migrate(pool)
let dims = ["region", "country", "account_partition", "platform", "client_version", "client_version_minor", "feature", "tier"]
log("setup: \(customers) customers, \(reports) reports ...")
let clock = ContinuousClock()
let setup = try await clock.measure {
    try await pool.withConnection { c in
        try c.execute(script: """
            SET work_mem = '256MB';
            CREATE TABLE bench_customers AS
            SELECT g, 'c' || g AS id,
                   (ARRAY['eu-south','eu-central','eu-north','us-east','us-west','ap-south'])[g % 6 + 1] AS region,
                   'C' || ((g % 6) * 3 + (g / 6) % 3) AS country,
                   ((g / 18) % 9 + 1)::text AS account_partition,
                   (ARRAY['android','ios','web','windows','macos'])[(g / 162) % 5 + 1] AS platform,
                   '5.' || ((g / 810) % 4) || '.' || ((g / 3240) % 3) AS client_version,
                   '5.' || ((g / 810) % 4) AS client_version_minor,
                   (ARRAY['f-a','f-b','f-c','f-d','f-e'])[(g / 9720) % 5 + 1] AS feature,
                   (ARRAY['free','standard','business','enterprise'])[(g / 48600) % 4 + 1] AS tier
            FROM generate_series(0, \(customers - 1)) g;
            ALTER TABLE bench_customers ADD PRIMARY KEY (g);
            CREATE TABLE bench_keys AS
            SELECT g, ARRAY['region=' || region, 'country=' || country, 'account_partition=' || account_partition,
                            'platform=' || platform, 'client_version=' || client_version,
                            'client_version_minor=' || client_version_minor, 'feature=' || feature, 'tier=' || tier] AS c
            FROM bench_customers;
            ALTER TABLE bench_keys ADD PRIMARY KEY (g);
            -- Population baseline (what CustomerUpserted maintains), 1-D and 2-D keys.
            INSERT INTO population (key, shard, count)
            SELECT k, 0, count(*) FROM (
                SELECT unnest(c) AS k FROM bench_keys
                UNION ALL
                SELECT c[i] || '&' || c[j] FROM bench_keys, generate_series(1, 8) i, generate_series(1, 8) j WHERE i < j
            ) x GROUP BY k;
            INSERT INTO population (key, shard, count) VALUES ('', 0, \(customers));
            -- Raw linked reports: 70% from eu-south & android customers, the rest uniform.
            CREATE TABLE bench_raw AS
            SELECT r AS report, cu.id AS customer_id, cu.g, cu.region, cu.country, cu.account_partition, cu.platform,
                   cu.client_version, cu.client_version_minor, cu.feature, cu.tier
            FROM generate_series(1, \(reports)) r
            JOIN bench_customers cu ON cu.g = CASE WHEN r % 10 < 7
                THEN ((r::bigint * 7919) % (\(customers) / 810)) * 810 + ((r::bigint * 104729) % 27) * 6
                ELSE (hashint8(r::bigint)::bigint & 2147483647) % \(customers) END;
            ANALYZE bench_raw;
            -- The incident and its live aggregates, as the linking transactions leave them: distinct
            -- reporting customers per key (sharded counters), '' = total.
            INSERT INTO incidents (id, body, state, services, impact_start, create_time)
            VALUES ('00000000-0000-0000-0000-00000000b1a5', ''::bytea, 1, '{}', now(), now());
            INSERT INTO incident_segments (incident_id, key, shard, count)
            SELECT '00000000-0000-0000-0000-00000000b1a5', k, s, count(*) FROM (
                SELECT d.g % 8 AS s, unnest(k.c) AS k FROM (SELECT DISTINCT g FROM bench_raw) d JOIN bench_keys k USING (g)
                UNION ALL
                SELECT d.g % 8, k.c[i] || '&' || k.c[j] FROM (SELECT DISTINCT g FROM bench_raw) d JOIN bench_keys k USING (g),
                       generate_series(1, 8) i, generate_series(1, 8) j WHERE i < j
                UNION ALL
                SELECT d.g % 8, '' FROM (SELECT DISTINCT g FROM bench_raw) d
            ) x GROUP BY k, s;
            ANALYZE;
            """)
    }
}
let distinct = try await pool.query("SELECT count(DISTINCT g) FROM bench_raw").first!.decode(Int.self, 0)
log("setup done in \(Int(ms(setup))) ms; \(distinct) distinct reporting customers")

// Live aggregates: 5 runs, median.
var aggregateTimes: [Double] = []
var aggregateAnswer: [String] = []
for _ in 0..<5 {
    var radius = Liaison_Correlation_V1_BlastRadius()
    let t = try await clock.measure {
        radius = try await CorrelationQueries.blastRadius(pool: pool, incident: "incidents/00000000-0000-0000-0000-00000000b1a5")
    }
    aggregateTimes.append(ms(t))
    aggregateAnswer = radius.affected.map { $0.segment.conditions.map { c in "\(dims[c.dimension.rawValue - 1])=\(c.value)" }.joined(separator: "&") }
    if aggregateTimes.count == 1 { log("aggregates: tested \(radius.testedSegments) segments, affected: \(aggregateAnswer.prefix(6))") }
}
aggregateTimes.sort()
let aggregateMs = aggregateTimes[aggregateTimes.count / 2]

// Where the time goes: each part of the same path, 5 runs, median per part.
var phaseRuns: [[(String, Double)]] = []
for _ in 0..<5 {
    phaseRuns.append(try await CorrelationQueries.blastRadiusPhases(pool: pool, incident: "incidents/00000000-0000-0000-0000-00000000b1a5"))
}
log("blast radius parts (median of 5):")
for (i, phase) in phaseRuns[0].enumerated() {
    let times = phaseRuns.map { $0[i].1 }.sorted()
    log("  " + phase.0.padding(toLength: 44, withPad: " ", startingAt: 0) + String(format: "%8.2f ms", times[times.count / 2]))
}

// Reference: GROUPING SETS over the raw rows (every 1-D and 2-D grouping + the total), then the same engine.
var sets = ["()"] + dims.map { "(\($0))" }
for i in 0..<8 { for j in (i + 1)..<8 { sets.append("(\(dims[i]), \(dims[j]))") } }
let groupingSQL = """
    SELECT \(dims.joined(separator: ", ")), count(DISTINCT customer_id)
    FROM bench_raw GROUP BY GROUPING SETS (\(sets.joined(separator: ", ")))
    """
var referenceTimes: [Double] = []
var referenceAnswer: [String] = []
for _ in 0..<2 {
    var answer: [String] = []
    let t = try await clock.measure {
        let rows = try await pool.withConnection { c in
            try c.query("SET work_mem = '256MB'")
            return try c.query(groupingSQL)
        }
        var counts: [String: Int] = [:]
        var total = 0
        for row in rows.rows {
            var conds: [String] = []
            for (i, d) in dims.enumerated() where !row.isNull(i) { conds.append("\(d)=\(try row.decode(String.self, i))") }
            let n = try row.decode(Int.self, 8)
            if conds.isEmpty { total = n } else { counts[conds.joined(separator: "&")] = n }
        }
        answer = try await CorrelationQueries.blastRadius(pool: pool, reporters: counts, reportersTotal: total).affected
    }
    referenceTimes.append(ms(t))
    referenceAnswer = answer
}
referenceTimes.sort()
let referenceMs = referenceTimes[0]
let same = Set(aggregateAnswer) == Set(referenceAnswer)
print(String(format: "blast radius, %d linked reports (%d customers) over 8 dimensions, 1-D + 2-D:", reports, distinct))
print(String(format: "  live aggregates (GetBlastRadius path):   %10.1f ms (median of %d)", aggregateMs, aggregateTimes.count))
print(String(format: "  GROUPING SETS over raw rows (reference): %10.1f ms (best of %d)", referenceMs, referenceTimes.count))
print(String(format: "  speed-up: %.1fx; same affected segments: %@", referenceMs / aggregateMs, same ? "yes" : "NO"))
await pool.close()

// MARK: 2. Linking throughput

func linkingThroughput(url: String, instances: Int, count: Int) async throws -> Double {
    var servers: [GRPCServer<ShimServerTransport>] = []
    var pools: [PostgresPool] = []
    var tasks: [Task<Void, any Error>] = []
    var ports: [Int] = []
    for i in 0..<instances {
        let p = PostgresPool(.init(url: url, maxConnections: 4, applicationName: "bench-\(i)"))
        if i == 0 { try await migrate(p) }
        var settings = CorrelationSettings()
        settings.replicaID = "bench-\(i)"
        let transport = ShimServerTransport(config: .init(listenAddress: "127.0.0.1:0"))
        let server = GRPCServer(transport: transport, services: [
            CorrelationHandler(pool: p, settings: settings, logger: logger),
            IntakeEvents.sink(pool: p, settings: settings, logger: logger),
        ])
        tasks.append(Task { try await server.serve() })
        ports.append(try await transport.listeningPort)
        servers.append(server)
        pools.append(p)
    }
    let transport = try ShimClientTransport(
        target: "ipv4:" + ports.map { "127.0.0.1:\($0)" }.joined(separator: ","),
        config: .init(coreServiceConfigJSON: #"{"loadBalancingConfig":[{"round_robin":{}}]}"#))
    let rate = try await withGRPCClient(transport: transport) { client -> Double in
        let api = Liaison_Correlation_V1_CorrelationService.Client(wrapping: client)
        let sink = Liaison_Events_V1_EventSinkService.Client(wrapping: client)
        var svc = Liaison_Correlation_V1_CreateServiceRequest()
        svc.serviceID = "checkout"
        svc.service.displayName = "Checkout"
        svc.service.aliases = ["payments"]
        svc.requestID = UUID().uuidString
        _ = try await api.createService(svc)
        var declare = Liaison_Correlation_V1_DeclareIncidentRequest()
        declare.incident.title = "bench"
        declare.incident.services = ["services/checkout"]
        declare.incident.severity = .sev2
        declare.source = .monitoring
        declare.requestID = UUID().uuidString
        let incident = try await api.declareIncident(declare)
        // Batches of 20 events, 4 senders per instance.
        let batches: [[Liaison_Events_V1_EventEnvelope]] = try stride(from: 0, to: count, by: 20).map { start in
            try (start..<min(start + 20, count)).map { i in
                var e = Liaison_Intake_V1_ReportAccepted()
                let id = UUID()
                e.header.eventID = id.uuidString.lowercased()
                e.report.name = "reports/r\(i)"
                e.report.customer = "customers/c\(i % 5000)"
                e.report.serviceHint = i % 2 == 0 ? "payments" : "checkout"
                e.report.symptom = .errors
                e.report.receiveTime = Google_Protobuf_Timestamp(date: Date())
                var a = Liaison_Common_V1_CustomerAttributes()
                a.region = ["eu-south", "eu-central", "eu-north"][i % 3]
                a.country = ["IT", "DE", "SE"][i % 3]
                a.accountNumber = "\(1 + i % 9)\(i)"
                a.tier = [.free, .standard, .business, .enterprise][i % 4]
                var p = Liaison_Common_V1_PlatformUsage()
                p.platform = [.android, .ios, .web][i % 3]
                p.clientVersion = "5.\(i % 3).\(i % 2)"
                a.platforms = [p]
                a.features = i % 5 == 0 ? ["teapot-customization"] : []
                e.customerSnapshot = a
                e.report.customerSnapshot = a
                var env = Liaison_Events_V1_EventEnvelope()
                env.eventID = id.uuidString.lowercased()
                env.producer = "intake"
                env.payload = try Google_Protobuf_Any(message: e)
                return env
            }
        }
        let next = Counter()
        let retries = Counter()
        let senders = 4 * instances
        let t = try await clock.measure {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<senders {
                    group.addTask {
                        while let i = next.take(below: batches.count) {
                            var request = Liaison_Events_V1_DeliverEventsRequest()
                            request.events = batches[i]
                            // Retry conflicts and unavailability, as the producer's outbox relay does.
                            var attempt = 0
                            while true {
                                do {
                                    _ = try await sink.deliverEvents(request)
                                    break
                                } catch let e as RPCError where (e.code == .aborted || e.code == .unavailable) && attempt < 20 {
                                    attempt += 1
                                    retries.add()
                                    try await Task.sleep(for: .milliseconds(10 * attempt))
                                }
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        var get = Liaison_Correlation_V1_GetIncidentRequest()
        get.name = incident.name
        let linked = try await api.getIncident(get).linkedReportCount
        if linked != count { log("WARNING: \(linked) of \(count) reports linked") }
        log("\(instances) instance(s): \(retries.count) batch retries")
        return Double(count) / (ms(t) / 1000)
    }
    for s in servers { s.beginGracefulShutdown() }
    for t in tasks { _ = try? await t.value }
    for p in pools { await p.close() }
    return rate
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func add() { lock.lock(); value += 1; lock.unlock() }
    var count: Int { lock.lock(); defer { lock.unlock() }; return value }
    func take(below limit: Int) -> Int? {
        lock.lock(); defer { lock.unlock() }
        guard value < limit else { return nil }
        value += 1
        return value - 1
    }
}

let skipLink = ProcessInfo.processInfo.environment["SKIP_LINK"] == "1"
let one = skipLink ? 0 : try await linkingThroughput(url: args[2], instances: 1, count: linkReports)
let two = skipLink ? 0 : try await linkingThroughput(url: args[3], instances: 2, count: linkReports)
print(String(format: "linking throughput (%d ReportAccepted events via EventSink over gRPC, auto-linked, aggregates updated):", linkReports))
print(String(format: "  1 instance:  %8.0f reports/s", one))
print(String(format: "  2 instances: %8.0f reports/s", two))
print(String(format: #"{"benchmark":"correlation","reports":%d,"reporting_customers":%d,"aggregates_ms":%.2f,"grouping_sets_ms":%.2f,"ratio":%.1f,"same_answer":%@,"linking_reports_per_s_1":%.0f,"linking_reports_per_s_2":%.0f}"#,
             reports, distinct, aggregateMs, referenceMs, referenceMs / aggregateMs, same ? "true" : "false", one, two))
