#!/usr/bin/env python3
"""The demo scenario, run by `make run` against the local stack through the public gRPC APIs.

A CRM loads 2,000 customers; an outage hits payments in southern and central Europe; agents on
several channels report it (some customers call twice, through different agents); monitoring
declares the incident; correlation links the reports and computes the blast radius; intake shows
the links on its reports and cases; an agent merges a customer's second ticket into the first and
correlation follows the merge.
Prints what a responder would read. Exit status 0 when every step worked.
"""
import datetime, os, random, sys, time, uuid, zoneinfo

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from liaison_client import load_stubs, request_id  # noqa: E402

INTAKE = os.environ.get("LIAISON_DEMO_INTAKE", "127.0.0.1:50051")
CORRELATION = os.environ.get("LIAISON_DEMO_CORRELATION", "127.0.0.1:50052")
SLA = os.environ.get("LIAISON_DEMO_SLA", "127.0.0.1:50053")

load_stubs()
import grpc
from google.protobuf import timestamp_pb2
from liaison.common.v1 import customer_pb2, segment_pb2, types_pb2
from liaison.intake.v1 import intake_service_pb2 as isvc, intake_service_pb2_grpc as igrpc, resources_pb2 as ires
from liaison.correlation.v1 import correlation_service_pb2 as csvc, correlation_service_pb2_grpc as cgrpc, resources_pb2 as cres
from liaison.sla.v1 import sla_service_pb2 as ssvc, sla_service_pb2_grpc as sgrpc, resources_pb2 as sres

RUN = uuid.uuid4().hex  # each run reports a new outage; the customer base is the same every run

def rid(name, per_run=True):
    """A request_id (UUID) derived from a name (and the run): a retry inside a run replays."""
    return request_id("demo", *([RUN] if per_run else []), name)

def step(msg):
    print("demo: " + msg, flush=True)

rng = random.Random(7)
intake = igrpc.IntakeServiceStub(grpc.insecure_channel(INTAKE))
correlation = cgrpc.CorrelationServiceStub(grpc.insecure_channel(CORRELATION))
sla = sgrpc.SlaServiceStub(grpc.insecure_channel(SLA))

# 1. The customer base.
regions = {"eu-north": ["SE", "FI", "NO"], "eu-central": ["DE", "AT", "CH"], "eu-south": ["IT", "ES", "PT"], "us-east": ["US"]}
customers = []
for i in range(2000):
    region = rng.choice(list(regions))
    c = ires.Customer(name=f"customers/demo-{i:04d}", display_name=f"Demo customer {i}", owning_agent="agents/alice")
    c.attributes.account_number = f"{rng.randint(1, 9)}{i:06d}"
    c.attributes.region = region
    c.attributes.country = rng.choice(regions[region])
    c.attributes.tier = rng.choice([customer_pb2.TIER_STANDARD, customer_pb2.TIER_BUSINESS, customer_pb2.TIER_ENTERPRISE])
    c.attributes.platforms.add(platform=rng.choice([customer_pb2.PLATFORM_ANDROID, customer_pb2.PLATFORM_IOS, customer_pb2.PLATFORM_WEB]),
                               client_version=rng.choice(["5.0.2", "5.1.0", "5.1.3"]))
    customers.append(c)
for start in range(0, len(customers), 500):
    intake.BatchUpsertCustomers(isvc.BatchUpsertCustomersRequest(customers=customers[start:start + 500],
                                                                 request_id=rid(f"demo-crm-{start}", per_run=False)), timeout=30)
step(f"loaded {len(customers)} customers into intake")

# 1b. The enterprise SLA: 99.95% a month in Berlin time, the cloud-provider credit schedule.
month_start = timestamp_pb2.Timestamp()  # local midnight of the 1st in Berlin: the whole month is measured
berlin_now = datetime.datetime.now(zoneinfo.ZoneInfo("Europe/Berlin"))
month_start.FromSeconds(int(berlin_now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()))
contract = sres.Contract(display_name="Enterprise SLA", tier=customer_pb2.TIER_ENTERPRISE, time_zone="Europe/Berlin",
                         availability_objectives=[sres.AvailabilityObjective(target_percent=99.95, period=sres.PERIOD_MONTH)],
                         credit_schedule=[sres.CreditStep(availability_below_percent=b, credit_percent=c)
                                          for b, c in ((99.95, 10), (99.0, 25), (95.0, 100))],
                         period_fee=types_pb2.Money(currency_code="EUR", units=2000))
contract.effective_window.start_time.CopyFrom(month_start)
month = berlin_now.strftime("%Y-%m")
created = sla.CreateContract(ssvc.CreateContractRequest(contract_id=f"enterprise-{month}", contract=contract,
                                                        request_id=rid(f"demo-contract-{month}", per_run=False)), timeout=10)
if created.state == sres.Contract.DRAFT:
    created = sla.ActivateContract(ssvc.ActivateContractRequest(name=created.name, request_id=rid(f"demo-activate-{month}", per_run=False)),
                                   timeout=10)
step(f"sla: {created.name} ({sres.Contract.State.Name(created.state)}): 99.95% a month for every enterprise customer")

# 2. The catalogue and the incident (monitoring declares it).
try:
    correlation.CreateService(csvc.CreateServiceRequest(
        service_id="payments", request_id=rid("demo-svc-payments", per_run=False),
        service=cres.TechnicalService(display_name="Payments", aliases=["payment", "checkout", "card"])), timeout=10)
except grpc.RpcError as e:
    if e.code() != grpc.StatusCode.ALREADY_EXISTS:
        raise
incident = correlation.DeclareIncident(csvc.DeclareIncidentRequest(
    request_id=rid("demo-incident-1"), source=cres.INCIDENT_SOURCE_MONITORING,
    incident=cres.Incident(title="Payment authorisations failing", services=["services/payments"],
                           severity=types_pb2.SEVERITY_SEV2)), timeout=10)
step(f"monitoring declared {incident.name}: {incident.title}")

# 3. Agents hear from customers in southern and central Europe (a few elsewhere: noise).
hit = [c for c in customers if c.attributes.region in ("eu-south", "eu-central")]
others = [c for c in customers if c.attributes.region not in ("eu-south", "eu-central")]
reporters = rng.sample(hit, 150) + rng.sample(others, 8)
agents = ["agents/alice", "agents/bob", "agents/chen", "agents/dana", "agents/emeka"]
texts = ["Card payment fails at checkout with an error", "Checkout keeps failing, payment declined with error",
         "Payments are not going through, error at the card step"]
now = time.time()
accepted = duplicates = 0
for n, c in enumerate(reporters):
    calls = 2 if n % 10 == 0 else 1          # every tenth customer reaches two agents
    for k in range(calls):
        ts = timestamp_pb2.Timestamp()
        ts.FromSeconds(int(now) - rng.randint(0, 600))
        r = ires.Report(customer=c.name, agent=agents[(n + k) % len(agents)], channel=ires.REPORT_CHANNEL_PHONE if k == 0 else ires.REPORT_CHANNEL_CHAT,
                        text=texts[(n + k) % len(texts)], symptom=types_pb2.SYMPTOM_KIND_ERRORS, service_hint="payments",
                        receive_time=ts)
        resp = intake.SubmitReport(isvc.SubmitReportRequest(report=r, request_id=rid(f"demo-report-{n}-{k}")), timeout=10)
        accepted += 1
        duplicates += 1 if resp.duplicate else 0
step(f"{accepted} reports accepted from {len(reporters)} customers; {duplicates} recognised as duplicates of an open case")

# 4. Correlation links them (events flow intake -> correlation) and computes the blast radius.
deadline = time.time() + 60
linked = 0
while time.time() < deadline:
    linked = correlation.GetIncident(csvc.GetIncidentRequest(name=incident.name), timeout=10).linked_report_count
    if linked >= len(reporters):
        break
    time.sleep(1)
step(f"correlation linked {linked} reports to {incident.name}")
radius = correlation.GetBlastRadius(csvc.GetBlastRadiusRequest(incident=incident.name), timeout=30)
def seg(s):
    return " & ".join(f"{segment_pb2.Dimension.Name(c.dimension).replace('DIMENSION_', '').lower()}={c.value}" for c in s.conditions)
step(f"blast radius: {radius.reporting_customers} reporting customers of {radius.population}")
for e in radius.affected[:6]:
    step(f"  affected      {seg(e.segment):32s} observed {e.observed:4d} expected {e.expected:6.1f} lift {e.lift:4.1f} p_adj {e.adjusted_p_value:.1e}")
for e in radius.unaffected_large_segments[:4]:
    step(f"  not affected  {seg(e.segment):32s} observed {e.observed:4d} expected {e.expected:6.1f}")
if radius.summary:
    step("summary: " + radius.summary)
found = any(any(c.value in ("eu-south", "eu-central") for c in e.segment.conditions) for e in radius.affected)
if not found:
    sys.exit("demo: the planted segment (eu-south / eu-central) was not found")

# 5. Intake learns the links (events flow correlation -> intake): a sample of the confirmed links'
#    reports, read back from intake, list the incident; so do the incidents filters.
links = correlation.ListLinks(csvc.ListLinksRequest(parent=incident.name, filter='state="CONFIRMED"', page_size=1000),
                              timeout=30).links
sample = sorted({l.report for l in links})[:10]
if not sample:
    sys.exit(f"demo: correlation has no confirmed link to {incident.name}")
deadline = time.time() + 60
shown = 0
while True:
    shown = sum(1 for r in sample
                if incident.name in intake.GetReport(isvc.GetReportRequest(name=r), timeout=10).incidents)
    if shown == len(sample) or time.time() >= deadline:
        break
    time.sleep(1)
step(f"intake shows {shown} of {len(sample)} reports linked to {incident.name}")
if shown < len(sample):
    sys.exit(f"demo: intake did not show the links to {incident.name} within 60 s "
             "(is LIAISON_CORRELATION_EVENT_DESTINATIONS=intake set for correlation?)")
def count_pages(list_call, request, field):
    n = 0
    while True:
        page = list_call(request, timeout=30)
        n += len(getattr(page, field))
        if not page.next_page_token:
            return n
        request.page_token = page.next_page_token
flt = f'incidents:"{incident.name}"'
reports_linked = count_pages(intake.ListReports, isvc.ListReportsRequest(filter=flt, page_size=500), "reports")
cases_linked = count_pages(intake.ListCases, isvc.ListCasesRequest(filter=flt, page_size=500), "cases")
step(f"intake lists {reports_linked} reports and {cases_linked} cases with {flt}")

# 6. Full-case ownership across tickets: a customer who reported the outage also wrote in about
#    "slow invoice downloads" (a separate case); an agent links that report to the incident, sees
#    it is the same outage and merges the second case into the first. Correlation hears of the
#    merge (intake's CasesMerged event) and its link now points at the surviving case.
owner = reporters[1]
ts = timestamp_pb2.Timestamp()
ts.FromSeconds(int(time.time()) - 5)
first = intake.SubmitReport(isvc.SubmitReportRequest(request_id=rid("demo-merge-a"), report=ires.Report(
    customer=owner.name, agent="agents/bob", channel=ires.REPORT_CHANNEL_PHONE, symptom=types_pb2.SYMPTOM_KIND_ERRORS,
    service_hint="payments", receive_time=ts, text="Card payment fails at checkout with an error")), timeout=10)
second = intake.SubmitReport(isvc.SubmitReportRequest(request_id=rid("demo-merge-b"), report=ires.Report(
    customer=owner.name, agent="agents/chen", channel=ires.REPORT_CHANNEL_EMAIL, symptom=types_pb2.SYMPTOM_KIND_SLOW,
    receive_time=ts, text="Downloading last month's invoice PDF takes minutes")), timeout=10)
if first.report.case == second.report.case:
    sys.exit("demo: the unrelated ticket joined the payments case; nothing to merge")
deadline = time.time() + 60
while True:  # the report reaches correlation through intake's outbox, within moments
    try:
        correlation.LinkReports(csvc.LinkReportsRequest(incident=incident.name, reports=[second.report.name],
                                                        agent="agents/chen", request_id=rid("demo-merge-link")), timeout=10)
        break
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.NOT_FOUND or time.time() > deadline:
            raise
        time.sleep(0.5)
intake.MergeCases(isvc.MergeCasesRequest(name=first.report.case, source_cases=[second.report.case],
                                         note="same outage", request_id=rid("demo-merge")), timeout=10)
deadline = time.time() + 60
case_in_correlation = ""
while time.time() < deadline:
    links = correlation.ListLinks(csvc.ListLinksRequest(parent=incident.name, filter=f'report="{second.report.name}"',
                                                        page_size=10), timeout=10).links
    case_in_correlation = links[0].case if links else ""
    if case_in_correlation == first.report.case:
        break
    time.sleep(0.5)
step(f"merged {second.report.case} into {first.report.case}; correlation's link of {second.report.name} "
     f"now names {case_in_correlation or 'no case'}")
if case_in_correlation != first.report.case:
    sys.exit("demo: correlation never learnt of the merge (is LIAISON_INTAKE_CASE_EVENT_DESTINATIONS=correlation?)")
# 7. sla hears of the incident, its links and its blast radius (events from correlation, customers
#    from intake) and says who breaches the enterprise SLA first if the outage goes on.
deadline = time.time() + 60
while True:
    at_risk = sla.ListAtRiskCustomers(ssvc.ListAtRiskCustomersRequest(incident=incident.name, include_inferred=True,
                                                                      page_size=5), timeout=10)
    if at_risk.total_size > 0 or time.time() >= deadline:
        break
    time.sleep(0.5)
if at_risk.total_size == 0:
    sys.exit("demo: sla shows no customer at risk within 60 s (are correlation's and intake's events routed to sla?)")
def money(m):
    return f"{m.units + m.nanos / 1e9:,.2f} {m.currency_code}"
step(f"sla: {at_risk.total_size} enterprise customers breach within 24 h if the outage goes on; "
     f"credit exposure {money(at_risk.total_credit_exposure)}")
for a in at_risk.customers:
    step(f"  {a.customer:22s} breaches in {a.time_to_breach.seconds // 60:3d} min ({sres.Impact.Source.Name(a.evidence).lower()}), "
         f"credit {money(a.credit_exposure)}")
if any(a.attributes.tier != customer_pb2.TIER_ENTERPRISE for a in at_risk.customers):
    sys.exit("demo: sla lists a customer without an enterprise contract")
first_at_risk = at_risk.customers[0]
status = sla.GetBudgetStatus(ssvc.GetBudgetStatusRequest(customer=first_at_risk.customer), timeout=10)
b = status.budgets[0]
step(f"sla: {first_at_risk.customer}'s budget: {b.consumed_downtime.seconds // 60} of {b.allowed_downtime.seconds // 60} min used, "
     f"{sres.BudgetState.Name(b.state)}, burn rate {b.burn_rate:.0f}x")
if b.consumed_downtime.seconds <= 0 or status.state == sres.BUDGET_STATE_HEALTHY:
    sys.exit("demo: the outage did not move the at-risk customer's budget")
ranked = sla.RankRestorationPriorities(ssvc.RankRestorationPrioritiesRequest(incident=incident.name), timeout=10)
for p in ranked.priorities[:3]:
    step(f"  restore #{p.rank} {p.service}: " + "; ".join(p.reasons))
advice = sla.RecommendSeverity(ssvc.RecommendSeverityRequest(incident=incident.name), timeout=10)
step(f"sla: severity {types_pb2.Severity.Name(advice.current_severity)} -> "
     f"{types_pb2.Severity.Name(advice.recommended_severity)} ({ssvc.RecommendSeverityResponse.Direction.Name(advice.direction)}): "
     + "; ".join(r.detail for r in advice.reasons[:3]))

# 8. A support lead records what one enterprise customer really lived through: a 40-minute outage
#    earlier today. Past the 22-minute budget: one breach, one credit of 10% of the fee, whatever
#    sla's evaluator re-reads.
lead = next(c for c in customers if c.attributes.tier == customer_pb2.TIER_ENTERPRISE)
began = timestamp_pb2.Timestamp()
began.FromSeconds(int(max(month_start.seconds + 60, time.time() - 3 * 3600)))
ended = timestamp_pb2.Timestamp()
ended.FromSeconds(began.seconds + 40 * 60)
impact = sla.CreateImpact(ssvc.CreateImpactRequest(parent=lead.name, request_id=rid("demo-impact"), impact=sres.Impact(
    service="services/payments", interval=types_pb2.TimeWindow(start_time=began, end_time=ended),
    author="agents/alice", note="customer's own logs: payments down 40 minutes")), timeout=10)
flt = f'customer = "{lead.name}"'
deadline = time.time() + 30
breaches = []
while time.time() < deadline:
    breaches = sla.ListBreaches(ssvc.ListBreachesRequest(filter=flt), timeout=10).breaches
    if breaches and breaches[0].credit:
        break
    time.sleep(0.5)
time.sleep(2)  # a few more evaluator passes: nothing may be recorded twice
breaches = sla.ListBreaches(ssvc.ListBreachesRequest(filter=flt), timeout=10).breaches
credits = sla.ListCredits(ssvc.ListCreditsRequest(filter=flt), timeout=10).credits
if len(breaches) != 1 or len(credits) != 1 or credits[0].amount.units != 200:
    sys.exit(f"demo: expected one breach and one 200 EUR credit for {lead.name}, got {len(breaches)} breaches, "
             f"credits {[money(c.amount) for c in credits]}")
step(f"sla: {lead.name} breached {breaches[0].target} (actual {breaches[0].actual}); credit {money(credits[0].amount)}: "
     f"{credits[0].calculation}")
step("done")
