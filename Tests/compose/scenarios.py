#!/usr/bin/env python3
"""Load, fail-over and fault scenarios against the compose stack, through the public gRPC APIs.

Run by Tests/compose/run.sh inside the stack's network namespace (DOCKER_HOST set), never by hand
against a production stack: it stops and kills containers.

  scale  --intake A --replicas IP1,IP2,IP3 --stop-cmd CMD
      Load through one round_robin channel over the correlation replicas while intake takes
      reports; every replica must serve traffic (its own request counter, read from its /metrics);
      then CMD stops one replica mid-load. Checks: no reader call failed, every acknowledged report
      is linked exactly once, and every surviving replica answers identically.
  fault  --intake A --correlation-cmd CMD --kill-intake CMD --start-intake CMD
         --kill-correlation CMD --start-correlation CMD
      Reports flow while a service and its PostgreSQL are killed (SIGKILL) and started again,
      first intake's pair, then correlation's. Checks: every acknowledged report is stored exactly
      once in intake (listing by the run's agent), request ids still replay to the same report,
      and correlation linked each report exactly once.

Prints one `scenario: ...` line of figures; exit status 0 when every check held.
"""
import argparse, os, random, subprocess, sys, threading, time, urllib.request, uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from liaison_client import balanced_channel, load_stubs, request_id  # noqa: E402

load_stubs()
import grpc  # noqa: E402
from google.protobuf import timestamp_pb2  # noqa: E402
from liaison.common.v1 import customer_pb2, types_pb2  # noqa: E402
from liaison.intake.v1 import intake_service_pb2 as isvc, intake_service_pb2_grpc as igrpc, resources_pb2 as ires  # noqa: E402
from liaison.correlation.v1 import correlation_service_pb2 as csvc, correlation_service_pb2_grpc as cgrpc, resources_pb2 as cres  # noqa: E402

RUN = uuid.uuid4().hex[:12]
CORRELATION_SERVICE = "liaison.correlation.v1.CorrelationService"
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED,
             grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
failures = []


def log(msg):
    print(f"scenario: {msg}", flush=True)


def check(ok, what):
    log(("ok: " if ok else "FAILED: ") + what)
    if not ok:
        failures.append(what)


def run(cmd):
    log(f"$ {cmd}")
    subprocess.run(["bash", "-c", cmd], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def setup(intake, correlation, service_id, customers):
    """Customers of this run, a service of the catalogue and an incident on it."""
    regions = [("eu-north", "SE"), ("eu-central", "DE"), ("eu-south", "IT"), ("us-east", "US")]
    batch = []
    for i in range(customers):
        c = ires.Customer(name=f"customers/{service_id}-{i:04d}", display_name=f"{service_id} customer {i}",
                          owning_agent="agents/alice")
        c.attributes.account_number = f"{i % 9 + 1}{i:06d}"
        c.attributes.region, c.attributes.country = regions[i % len(regions)]
        c.attributes.tier = customer_pb2.TIER_BUSINESS
        batch.append(c)
    results = intake.BatchUpsertCustomers(isvc.BatchUpsertCustomersRequest(
        customers=batch, request_id=request_id(RUN, service_id, "crm")), timeout=60).results
    failed = [r for r in results if r.outcome == isvc.UpsertCustomerResult.FAILED]
    if failed:
        sys.exit(f"scenario: {len(failed)} customers refused, e.g. {failed[0]}")
    try:
        correlation.CreateService(csvc.CreateServiceRequest(
            service_id=service_id, request_id=request_id(service_id, "service"),
            service=cres.TechnicalService(display_name=service_id.capitalize(), aliases=[service_id])), timeout=10)
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
    incident = correlation.DeclareIncident(csvc.DeclareIncidentRequest(
        request_id=request_id(RUN, service_id, "incident"), source=cres.INCIDENT_SOURCE_MONITORING,
        incident=cres.Incident(title=f"{service_id} failing", services=[f"services/{service_id}"],
                               severity=types_pb2.SEVERITY_SEV2)), timeout=10)
    return [c.name for c in batch], incident.name


class Writers:
    """Agents submitting reports; each report is retried with its request_id until acknowledged."""

    def __init__(self, intake, customers, service_id, agent, threads):
        self.intake, self.customers, self.service_id, self.agent = intake, customers, service_id, agent
        self.acked = {}          # request_id -> report name
        self.sent = {}           # request_id -> the report as sent
        self.retries = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.loop, args=(n,), daemon=True) for n in range(threads)]

    def report(self, n):
        ts = timestamp_pb2.Timestamp()
        ts.FromSeconds(int(time.time()) - 5)
        return ires.Report(customer=self.customers[n % len(self.customers)], agent=self.agent,
                           channel=ires.REPORT_CHANNEL_PHONE, symptom=types_pb2.SYMPTOM_KIND_ERRORS,
                           service_hint=self.service_id, receive_time=ts,
                           text=f"{self.service_id} fails with an error every time (call {n})")

    def submit(self, rid, report):
        """Sends the report until intake acknowledges it, retrying with the same request_id."""
        give_up = time.time() + 180
        while True:
            try:
                return self.intake.SubmitReport(isvc.SubmitReportRequest(report=report, request_id=rid), timeout=5).report.name
            except grpc.RpcError as e:
                if e.code() not in RETRYABLE or time.time() > give_up:
                    raise
                with self.lock:
                    self.retries += 1
                time.sleep(0.2)

    def loop(self, worker):
        n = worker
        while not self.stop.is_set():
            rid, report = request_id(RUN, self.agent, str(n)), self.report(n)
            name = self.submit(rid, report)
            with self.lock:
                self.acked[rid] = name
                self.sent[rid] = report
            n += len(self.threads)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        for t in self.threads:
            t.join()


def rpc_count(ip, port=9102):
    """Requests this replica answered OK on the correlation API, from its own Prometheus counter."""
    total = 0
    with urllib.request.urlopen(f"http://{ip}:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if (line.startswith("liaison_rpc_requests_total{") and f'method="{CORRELATION_SERVICE}/' in line
                    and 'code="OK"' in line):
                total += int(float(line.rsplit(" ", 1)[1]))
    return total


def links_of(correlation, incident):
    """Every link of the incident (all pages): report name -> list of states."""
    seen, token = {}, ""
    while True:
        page = correlation.ListLinks(csvc.ListLinksRequest(parent=incident, page_size=1000, page_token=token), timeout=30)
        for link in page.links:
            seen.setdefault(link.report, []).append(cres.Link.State.Name(link.state))
        token = page.next_page_token
        if not token:
            return seen


def wait_linked(correlation, incident, reports, seconds):
    """Waits until correlation confirmed a link for each report; returns the links."""
    deadline = time.time() + seconds
    while True:
        links = links_of(correlation, incident)
        missing = [r for r in reports if "CONFIRMED" not in links.get(r, [])]
        if not missing or time.time() > deadline:
            return links, missing
        time.sleep(1)


def scale(args):
    intake = igrpc.IntakeServiceStub(grpc.insecure_channel(args.intake))
    ips = args.replicas.split(",")
    channel = balanced_channel("ipv4:" + ",".join(f"{ip}:50052" for ip in ips), CORRELATION_SERVICE)
    correlation = cgrpc.CorrelationServiceStub(channel)
    customers, incident = setup(intake, correlation, "search", 400)
    before = {ip: rpc_count(ip) for ip in ips}
    reads = {"ok": 0, "failed": 0}
    errors = []
    stop = threading.Event()

    def reader():
        calls = [lambda: correlation.GetIncident(csvc.GetIncidentRequest(name=incident), timeout=10),
                 lambda: correlation.GetBlastRadius(csvc.GetBlastRadiusRequest(incident=incident), timeout=10),
                 lambda: correlation.ListLinks(csvc.ListLinksRequest(parent=incident, page_size=50), timeout=10)]
        n = 0
        while not stop.is_set():
            try:
                calls[n % len(calls)]()
                reads["ok"] += 1
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    reads["ok"] += 1  # an answer: no confirmed link yet to compute a blast radius from
                else:
                    reads["failed"] += 1
                    errors.append(f"{e.code().name}: {e.details()}")
            n += 1

    readers = [threading.Thread(target=reader, daemon=True) for _ in range(args.readers)]
    start = time.time()
    with Writers(intake, customers, "search", f"agents/scale-{RUN}", args.writers) as writers:
        for t in readers:
            t.start()
        time.sleep(args.seconds / 2)
        during = {ip: rpc_count(ip) - before[ip] for ip in ips}
        t0 = time.time()
        run(args.stop_cmd)
        log(f"the replica stopped in {time.time() - t0:.1f} s")
        stopped_at = len(writers.acked)
        time.sleep(args.seconds / 2)
        stop.set()
        for t in readers:
            t.join()
    elapsed = time.time() - start
    acked = list(writers.acked.values())
    log(f"{len(acked)} reports acknowledged ({stopped_at} before the stop), {reads['ok']} correlation reads in "
        f"{elapsed:.1f} s ({reads['ok'] / elapsed:.0f}/s), {reads['failed']} failed; requests per replica "
        f"before the stop: " + ", ".join(f"{ip}={during[ip]}" for ip in ips))
    check(all(during[ip] > 0 for ip in ips), f"every replica served the round_robin channel ({sorted(during.values())})")
    check(reads["failed"] == 0, "no correlation call failed while a replica stopped" + (f" ({errors[:3]})" if errors else ""))
    check(len(acked) == len(set(acked)), "every acknowledged report has its own name")
    links, missing = wait_linked(correlation, incident, acked, 120)
    check(not missing, f"every acknowledged report reached correlation and was linked ({len(acked) - len(missing)}/{len(acked)})")
    doubles = [r for r, states in links.items() if len(states) > 1]
    check(not doubles, f"no report linked twice ({len(doubles)} doubles)")
    count = correlation.GetIncident(csvc.GetIncidentRequest(name=incident), timeout=10).linked_report_count
    check(count == len(acked), f"linked_report_count {count} == {len(acked)} acknowledged")
    # Any replica answers with everything acknowledged before: ask each survivor directly.
    answers = {}
    for ip in ips:
        stub = cgrpc.CorrelationServiceStub(grpc.insecure_channel(f"{ip}:50052"))
        try:
            radius = stub.GetBlastRadius(csvc.GetBlastRadiusRequest(incident=incident), timeout=30)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.UNAVAILABLE:
                continue  # the stopped replica
            raise
        radius.ClearField("compute_time")
        radius.ClearField("window")
        answers[ip] = radius.SerializeToString(deterministic=True)
    check(len(answers) == len(ips) - 1, f"{len(answers)} replicas still serve after one stopped")
    check(len(set(answers.values())) == 1, "every replica computes the same blast radius")
    correlation.ResolveIncident(csvc.ResolveIncidentRequest(name=incident, request_id=request_id(RUN, incident, "resolve")), timeout=10)


def list_reports(intake, agent, incident=None):
    names, token = [], ""
    query = f'agent="{agent}"' + (f' AND incidents:"{incident}"' if incident else "")
    while True:
        page = intake.ListReports(isvc.ListReportsRequest(filter=query, page_size=500, page_token=token), timeout=30)
        names += [r.name for r in page.reports]
        token = page.next_page_token
        if not token:
            return names


def wait_serving(intake, seconds=120):
    deadline = time.time() + seconds
    while True:
        try:
            return intake.ListReports(isvc.ListReportsRequest(page_size=1), timeout=5)
        except grpc.RpcError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)


def correlation_stub(args):
    """Correlation's containers get new addresses when they restart: ask the tooling for them."""
    target = subprocess.run(["bash", "-c", args.correlation_cmd], check=True, capture_output=True, text=True).stdout.strip()
    return cgrpc.CorrelationServiceStub(balanced_channel(target, CORRELATION_SERVICE))


def fault(args):
    intake = igrpc.IntakeServiceStub(grpc.insecure_channel(args.intake))
    correlation = correlation_stub(args)
    customers, incident = setup(intake, correlation, "sync", 400)
    agent = f"agents/fault-{RUN}"
    phase = args.seconds / 4
    start = time.time()
    with Writers(intake, customers, "sync", agent, args.writers) as writers:
        time.sleep(phase)
        run(args.kill_intake)
        killed_intake_at = len(writers.acked)
        time.sleep(2)
        run(args.start_intake)
        time.sleep(phase)
        run(args.kill_correlation)
        killed_correlation_at = len(writers.acked)
        time.sleep(2)
        run(args.start_correlation)
        time.sleep(phase)
    elapsed = time.time() - start
    acked = writers.acked
    log(f"{len(acked)} reports acknowledged in {elapsed:.1f} s ({killed_intake_at} before intake was killed, "
        f"{killed_correlation_at} before correlation was killed), {writers.retries} retried attempts")
    check(killed_intake_at > 0 and len(acked) > killed_correlation_at > killed_intake_at,
          "reports were acknowledged before, between and after the kills")
    wait_serving(intake)
    stored = list_reports(intake, agent)
    check(len(stored) == len(set(stored)), f"intake lists each report once ({len(stored)} rows, {len(set(stored))} names)")
    check(set(stored) == set(acked.values()),
          f"intake holds exactly the acknowledged reports ({len(set(acked.values()) - set(stored))} lost, "
          f"{len(set(stored) - set(acked.values()))} unexpected)")
    sample = random.Random(1).sample(sorted(acked), min(20, len(acked)))
    replays = [writers.submit(rid, writers.sent[rid]) == acked[rid] for rid in sample]
    check(all(replays), f"request ids replay to the original report after the restart ({sum(replays)}/{len(replays)})")
    check(len(list_reports(intake, agent)) == len(stored), "the replays added nothing")
    correlation = correlation_stub(args)
    links, missing = wait_linked(correlation, incident, list(acked.values()), 240)
    check(not missing, f"correlation linked every acknowledged report after its own restart ({len(acked) - len(missing)}/{len(acked)})")
    doubles = [r for r, states in links.items() if len(states) > 1]
    check(not doubles, f"no report linked twice ({len(doubles)} doubles)")
    count = correlation.GetIncident(csvc.GetIncidentRequest(name=incident), timeout=10).linked_report_count
    check(count == len(acked), f"linked_report_count {count} == {len(acked)} acknowledged")
    # Back the other way: correlation's ReportLinked events reach intake, once each.
    deadline = time.time() + 120
    while True:
        shown = list_reports(intake, agent, incident)
        if len(set(shown)) >= len(acked) or time.time() > deadline:
            break
        time.sleep(1)
    check(sorted(shown) == sorted(acked.values()),
          f"intake shows the incident on every acknowledged report, once ({len(set(shown))}/{len(acked)})")
    correlation.ResolveIncident(csvc.ResolveIncidentRequest(name=incident, request_id=request_id(RUN, incident, "resolve")), timeout=10)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="scenario", required=True)
    s = sub.add_parser("scale")
    s.add_argument("--intake", required=True)
    s.add_argument("--replicas", required=True)
    s.add_argument("--stop-cmd", required=True)
    s.add_argument("--seconds", type=float, default=16)
    s.add_argument("--writers", type=int, default=4)
    s.add_argument("--readers", type=int, default=4)
    f = sub.add_parser("fault")
    f.add_argument("--intake", required=True)
    f.add_argument("--correlation-cmd", required=True, help="prints the correlation target, e.g. ipv4:IP:50052")
    for k in ("kill-intake", "start-intake", "kill-correlation", "start-correlation"):
        f.add_argument("--" + k, required=True)
    f.add_argument("--seconds", type=float, default=24)
    f.add_argument("--writers", type=int, default=4)
    args = p.parse_args()
    {"scale": scale, "fault": fault}[args.scenario](args)
    log(f"{len(failures)} checks failed" if failures else "all checks passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
