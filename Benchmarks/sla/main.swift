// sla benchmark (Benchmarks/sla/run.sh): the at-risk ranking of a large incident.
//
// Setup: N customers (10 regions, 4 tiers, 2% white glove), one ACTIVE 99.9%-a-month contract per
// tier (Europe/Berlin), and a ledger of earlier impact lines this month. Then one incident whose
// blast radius is 3 of the 10 regions (30% of the customers) arrives as events through the
// EventSink over gRPC, and the evaluator (the same EvaluatorService the service runs, polling every
// 50 ms) builds the ranking. Measured:
//   ready      time from sending BlastRadiusChanged to the complete at-risk table
//   first page ListAtRiskCustomers (100 customers, soonest breach first) over gRPC, p50 / p99
//   reference  a plain SQL query computing the same first page from the raw ledger: union of each
//              hit customer's lines this month (range_agg), consumed time, the tier's allowance,
//              breach time and credit exposure, ordered, LIMIT 100 (same server, same run)
import Foundation
import GRPCCore
import LiaisonAPI
import LiaisonRPC
import LiaisonRuntime
import LiaisonStorage
import Logging
import SLA
import SwiftProtobuf

let args = CommandLine.arguments
guard args.count >= 5, let customers = Int(args[3]), let lines = Int(args[4]) else {
    FileHandle.standardError.write(Data("usage: SLABenchmark <database-url> <migrations-dir> <customers> <ledger-lines>\n".utf8))
    exit(2)
}
let url = args[1]
var logger = Logger(label: "sla-bench")
logger.logLevel = .warning

func log(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }
func elapsedMs(_ d: Duration) -> Double { Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15 }
func percentile(_ xs: [Double], _ p: Double) -> Double {
    let s = xs.sorted()
    return s[min(s.count - 1, Int((Double(s.count - 1) * p).rounded()))]
}
func ts(_ d: Date) -> Google_Protobuf_Timestamp { Google_Protobuf_Timestamp(date: d) }
func rid() -> String { UUID().uuidString.lowercased() }

let pool = PostgresPool(.init(url: url, maxConnections: 8))
try await Migrator(pool: pool).migrate(namespace: PlatformSchema.namespace, PlatformSchema.migrations)
try await Migrator(pool: pool).migrate(namespace: "sla", try Migrator.load(directory: args[2]))

var settings = SLASettings()
settings.evaluateInterval = .milliseconds(50)
let server = try ServerAssembly(
    services: [SLAHandler(pool: pool, settings: settings, logger: logger).served, InboundEvents.sink(pool: pool, logger: logger).served],
    config: .init(listenAddress: "127.0.0.1:0"))
let serving = Task { try await server.serve() }
let port = try await server.port
let client = GRPCClient(transport: try ShimClientTransport(target: "ipv4:127.0.0.1:\(port)"))
let connections = Task { try await client.runConnections() }
let sla = Liaison_Sla_V1_SlaService.Client(wrapping: client)
let sink = Liaison_Events_V1_EventSinkService.Client(wrapping: client)

// MARK: Setup
let regions = ["eu-south", "eu-central", "eu-north", "us-east", "us-west", "ap-south", "ap-east", "sa-east", "af-south", "me-central"]
let setupStart = ContinuousClock.now
_ = try await pool.transaction { c in
    try c.query("""
        INSERT INTO customers (id, attrs, tier, white_glove, region, country, partition, platforms, versions, minors, features, version)
        SELECT 'c' || lpad(i::text, 7, '0'), '\\x'::bytea, 1 + i % 4, i % 50 = 0, ($2::text[])[1 + i % 10], '', (i % 10)::text,
               '{}', '{}', '{}', '{}', 1
        FROM generate_series(1, $1::int) AS i
        """, [customers, TextArray(regions)])
}
var cal = Calendar(identifier: .gregorian)
cal.timeZone = TimeZone(identifier: "Europe/Berlin")!
let now = Date()
let monthStart = cal.dateInterval(of: .month, for: now)!.start
let monthEnd = cal.dateInterval(of: .month, for: now)!.end
for tier in [Liaison_Common_V1_Tier.free, .standard, .business, .enterprise] {
    var k = Liaison_Sla_V1_Contract()
    k.displayName = "Tier \(tier)"
    k.tier = tier
    k.timeZone = "Europe/Berlin"
    var o = Liaison_Sla_V1_AvailabilityObjective()
    o.targetPercent = 99.9
    o.period = .month
    k.availabilityObjectives = [o]
    var step = Liaison_Sla_V1_CreditStep()
    step.availabilityBelowPercent = 99.9
    step.creditPercent = 10
    k.creditSchedule = [step]
    k.periodFee.currencyCode = "EUR"
    k.periodFee.units = 1000 * Int64(tier.rawValue)
    k.effectiveWindow.startTime = ts(monthStart)
    var r = Liaison_Sla_V1_CreateContractRequest()
    r.contractID = "tier-\(tier.rawValue)"
    r.contract = k
    r.requestID = rid()
    let created = try await sla.createContract(r)
    var a = Liaison_Sla_V1_ActivateContractRequest()
    a.name = created.name
    a.requestID = rid()
    _ = try await sla.activateContract(a)
}
// Earlier lines this month: 1-30 minutes each (with the incident's, under the 43.8-minute budget), closed, before the incident.
let ledgerEnd = max(monthStart.addingTimeInterval(60), now.addingTimeInterval(-3600))
_ = try await pool.transaction { c in
    try c.query("""
        INSERT INTO impacts (id, customer_id, service, start_time, end_time, severity, source, author, note, corrected)
        SELECT gen_random_uuid(), 'c' || lpad((1 + (i * 7919) % $1)::text, 7, '0'), 'services/checkout', s, s + (1 + i % 30) * interval '1 minute',
               2, 3, 'bench', 'earlier outage', true
        FROM generate_series(1, $2::int) AS i,
             LATERAL (SELECT $3::timestamptz + ((i * 104729) % greatest(1, extract(epoch FROM $4::timestamptz - $3::timestamptz)::bigint - 2400)) * interval '1 second') AS t(s)
        """, [customers, lines, monthStart, ledgerEnd])
    // The plain-SQL reference keeps its terms as columns.
    try c.query("CREATE TABLE ref_contracts (tier int PRIMARY KEY, target_e4 bigint NOT NULL, fee_minor bigint NOT NULL, credit_e2 bigint NOT NULL)")
    try c.query("INSERT INTO ref_contracts SELECT t, 999000, 100000 * t, 1000 FROM generate_series(1, 4) AS t")
    try c.query("ANALYZE")
}
let evaluator = EvaluatorService(pool: pool, settings: settings, logger: logger)
try await evaluator.drain()  // settles what setup made due
log("setup: \(customers) customers, 4 tier contracts, \(lines) ledger lines in \(ContinuousClock.now - setupStart)")

// MARK: The incident
let evaluating = Task { try await evaluator.run() }
let incidentID = UUID()
let incidentName = "incidents/" + incidentID.lowercasedString
let began = max(monthStart.addingTimeInterval(60), now.addingTimeInterval(-600))
func envelope(_ m: some SwiftProtobuf.Message) throws -> Liaison_Events_V1_EventEnvelope {
    var e = Liaison_Events_V1_EventEnvelope()
    e.eventID = rid()
    e.producer = "correlation"
    e.payload = try Google_Protobuf_Any(message: m)
    return e
}
func header(_ version: Int64) -> Liaison_Common_V1_EventHeader {
    var h = Liaison_Common_V1_EventHeader()
    h.eventID = rid()
    h.occurTime = ts(Date())
    h.aggregate = incidentName
    h.aggregateVersion = version
    h.producer = "correlation"
    return h
}
var declared = Liaison_Correlation_V1_IncidentDeclared()
declared.header = header(1)
declared.incident.name = incidentName
declared.incident.services = ["services/checkout"]
declared.incident.severity = .sev2
declared.incident.state = .declared
declared.incident.impactStartTime = ts(began)
declared.incident.createTime = ts(began)
var d1 = Liaison_Events_V1_DeliverEventsRequest()
d1.events = [try envelope(declared)]
_ = try await sink.deliverEvents(d1)
try await Task.sleep(for: .milliseconds(300))

var blast = Liaison_Correlation_V1_BlastRadiusChanged()
blast.header = header(2)
blast.incident = incidentName
blast.blastRadius.incident = incidentName
blast.blastRadius.revision = 1
blast.blastRadius.window.startTime = ts(began)
blast.blastRadius.affected = regions.prefix(3).map { r in
    var e = Liaison_Correlation_V1_BlastRadiusEntry()
    var d = Liaison_Common_V1_DimensionValue()
    d.dimension = .region
    d.value = r
    e.segment.conditions = [d]
    return e
}
let expected = (1...customers).filter { ($0 % 10) < 3 }.count
var d2 = Liaison_Events_V1_DeliverEventsRequest()
d2.events = [try envelope(blast)]
let sent = ContinuousClock.now
let applied = try await sink.deliverEvents(d2)
let appliedMs = elapsedMs(ContinuousClock.now - sent)
var readyMs = 0.0
while true {
    let r = try await pool.query("""
        SELECT (SELECT count(*) FROM at_risk WHERE incident_id = $1), (SELECT count(*) FROM dirty_incidents WHERE incident_id = $1)
        """, [incidentID]).first!
    if try r.decode(Int64.self, 0) == Int64(expected) && r.decode(Int64.self, 1) == 0 {
        readyMs = elapsedMs(ContinuousClock.now - sent)
        break
    }
    if ContinuousClock.now - sent > .seconds(300) { log("ranking not ready after 300 s"); exit(1) }
    try await Task.sleep(for: .milliseconds(5))
}
var budgetsMs = 0.0
while true {
    if try await pool.query("SELECT count(*) FROM dirty_customers").first!.decode(Int64.self, 0) == 0 {
        budgetsMs = elapsedMs(ContinuousClock.now - sent)
        break
    }
    if ContinuousClock.now - sent > .seconds(600) { log("budgets not evaluated after 600 s"); exit(1) }
    try await Task.sleep(for: .milliseconds(20))
}
let statuses = try await pool.query("SELECT count(*) FROM budget_status").first!.decode(Int64.self, 0)
log("budget statuses of the \(expected) hit customers evaluated after \(Int(budgetsMs)) ms (\(statuses) statuses stored)")
log("event applied in \(String(format: "%.0f", appliedMs)) ms (\(applied.applied) event); ranking of \(expected) customers ready after \(String(format: "%.0f", readyMs)) ms")

// MARK: First page over gRPC
var page = Liaison_Sla_V1_ListAtRiskCustomersRequest()
page.incident = incidentName
page.includeInferred = true
page.pageSize = 100
var samples: [Double] = []
var first: Liaison_Sla_V1_ListAtRiskCustomersResponse? = nil
for i in 0..<220 {
    let t = ContinuousClock.now
    let r = try await sla.listAtRiskCustomers(page)
    if i >= 20 { samples.append(elapsedMs(ContinuousClock.now - t)) }
    first = r
}
let ours = first!.customers.map { String($0.customer.dropFirst("customers/".count)) }

// MARK: Plain SQL reference: the same first page from the raw ledger
let reference = """
    WITH hit AS (SELECT DISTINCT customer_id FROM impacts WHERE incident_id = $1 AND NOT excluded),
    lines AS (
        SELECT i.customer_id, range_agg(tstzrange(greatest(i.start_time, $2), least(coalesce(i.end_time, $4), $4))) AS u
        FROM impacts i JOIN hit USING (customer_id)
        WHERE NOT i.excluded AND i.start_time < $4 AND coalesce(i.end_time, $4) > $2
        GROUP BY i.customer_id),
    consumed AS (
        SELECT l.customer_id, (SELECT coalesce(sum(extract(epoch FROM upper(r) - lower(r)) * 1000), 0) FROM unnest(l.u) AS r)::bigint AS ms
        FROM lines l),
    ranked AS (
        SELECT c.customer_id, k.fee_minor * k.credit_e2 / 10000 AS exposure,
               $4::timestamptz + ((extract(epoch FROM $3::timestamptz - $2::timestamptz) * 1000)::bigint * (1000000 - k.target_e4) / 1000000
                                  - c.ms + 1) * interval '1 millisecond' AS breach_time
        FROM consumed c JOIN customers u ON u.id = c.customer_id JOIN ref_contracts k ON k.tier = u.tier)
    SELECT customer_id, breach_time, exposure FROM ranked WHERE breach_time <= $4::timestamptz + interval '24 hours'
    ORDER BY breach_time, customer_id LIMIT 100
    """
var refSamples: [Double] = []
var refFirst: [String] = []
for _ in 0..<5 {
    let t = ContinuousClock.now
    let rows = try await pool.query(reference, [incidentID, monthStart, monthEnd, Date()]).rows
    refSamples.append(elapsedMs(ContinuousClock.now - t))
    refFirst = try rows.map { try $0.decode(String.self, 0) }
}
let overlap = Set(ours).intersection(refFirst).count
let same = overlap == ours.count && ours.count == refFirst.count
let p50 = percentile(samples, 0.5), p99 = percentile(samples, 0.99), refMs = percentile(refSamples, 0.5)
log(String(format: "first page over gRPC: p50 %.2f ms, p99 %.2f ms; SQL reference (same page from the raw ledger): %.1f ms; ratio %.0fx; same customers: %d of %d",
           p50, p99, refMs, refMs / p50, overlap, ours.count))
print(#"{"customers":\#(customers),"ledger_lines":\#(lines),"hit":\#(expected),"ready_ms":\#(Int(readyMs)),"budgets_ms":\#(Int(budgetsMs)),"first_page_p50_ms":\#(String(format: "%.2f", p50)),"first_page_p99_ms":\#(String(format: "%.2f", p99)),"sql_reference_ms":\#(String(format: "%.1f", refMs)),"ratio":\#(String(format: "%.1f", refMs / p50)),"same_first_page":\#(same)}"#)
evaluating.cancel()
client.beginGracefulShutdown()
server.shutdown()
_ = try? await connections.value
_ = try? await serving.value
await pool.close()
if overlap < ours.count * 9 / 10 { log("the first pages differ: the reference does not compute the same ranking"); exit(1) }
