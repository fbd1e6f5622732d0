"""Valid data to mutate: seeds customers, reports, cases, a service, incidents and links through
the public APIs, collects their names (the corpus placeholders) and a valid page token of every
List method, and renders corpus.txt templates into request messages."""
from __future__ import annotations

import os
import re
import time

import grpc
from google.protobuf import text_format

import mutate

HERE = os.path.dirname(os.path.abspath(__file__))
PLACEHOLDER = re.compile(r"\{(\w+)(-\d+)?\}")
# Names used when seeding could not produce one (e.g. no emerging issue exists): well-formed,
# unknown ids, so the request still gets past name parsing.
ALIAS = {"link_suggested": "link", "link_suggested2": "link", "emerging2": "emerging", "incident_resolved2": "incident_resolved"}
FALLBACK = {
    "emerging": "emergingIssues/6f1c7a52-3d1e-4c3b-9a55-0a1b2c3d4e5f",
    "link": "incidents/6f1c7a52-3d1e-4c3b-9a55-0a1b2c3d4e50/links/6f1c7a52-3d1e-4c3b-9a55-0a1b2c3d4e51",
}


def load_corpus(path: str) -> dict[str, list[str]]:
    """`## <service>/<Method>[@binary]` starts a template in protobuf text format."""
    corpus: dict[str, list[str]] = {}
    key, body = None, []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("## "):
                if key:
                    corpus.setdefault(key, []).append("".join(body))
                key, body = line[3:].strip(), []
            elif key and not line.lstrip().startswith("#"):
                body.append(line)
    if key:
        corpus.setdefault(key, []).append("".join(body))
    return corpus


class Renderer:
    """Turns corpus templates into messages, with fresh UUIDs for every {uuid}."""

    def __init__(self, corpus: dict[str, list[str]], names: dict[str, str]):
        self.corpus = corpus
        self.names = names

    def templates(self, key: str, binary: str) -> list[str]:
        return self.corpus.get(f"{key}@{binary}") or self.corpus.get(key) or [""]

    def render(self, cls, template: str, rng):
        def sub(m):
            p = m.group(1)
            if p == "uuid":
                return mutate.new_uuid(rng)
            if p == "now":   # {now} or {now-3600}
                return str(int(time.time()) + int(m.group(2) or 0))
            alias = ALIAS.get(p, p)
            return self.names.get(p) or self.names.get(alias) or FALLBACK.get(alias) or m.group(0)
        msg = cls()
        text_format.Parse(PLACEHOLDER.sub(sub, template), msg)
        if not template.strip() and "request_id" in cls.DESCRIPTOR.fields_by_name:
            msg.request_id = mutate.new_uuid(rng)
        return msg


def seed(intake_ch, correlation_ch, rng, log, names: dict[str, str]) -> None:
    """Creates the valid data; fills `names` (placeholder -> resource name) as it goes, so a
    failure part way leaves what was made."""
    from google.protobuf import timestamp_pb2
    from liaison.common.v1 import customer_pb2, types_pb2
    from liaison.correlation.v1 import correlation_service_pb2 as cs, correlation_service_pb2_grpc as cg
    from liaison.correlation.v1 import resources_pb2 as cr
    from liaison.intake.v1 import intake_service_pb2 as isv, intake_service_pb2_grpc as ig
    from liaison.intake.v1 import resources_pb2 as ir

    intake = ig.IntakeServiceStub(intake_ch)
    corr = cg.CorrelationServiceStub(correlation_ch)
    rid = lambda: mutate.new_uuid(rng)
    names.update(agent="agents/alice", service="services/payments", service_id="payments")

    def upsert(customers):
        resp = intake.BatchUpsertCustomers(isv.BatchUpsertCustomersRequest(customers=customers, request_id=rid()),
                                           timeout=30)
        for r in resp.results:
            if r.status.code:
                raise RuntimeError(f"BatchUpsertCustomers entry {r.index}: {r.status.message}")

    customers = []
    for i, (region, country) in enumerate([("eu-south", "IT"), ("eu-central", "DE"), ("eu-south", "ES"),
                                            ("us-east", "US")]):
        c = ir.Customer(name=f"customers/fuzz-{i}", display_name=f"Fuzz customer {i}", owning_agent="agents/alice")
        c.attributes.account_number = f"10000{i}"
        c.attributes.region = region
        c.attributes.country = country
        c.attributes.tier = customer_pb2.TIER_ENTERPRISE
        c.attributes.features.append("teapot-customization")
        c.attributes.platforms.add(platform=customer_pb2.PLATFORM_WEB, client_version="5.1.0")
        c.contacts.add(contact_id="c1", display_name="Pat", email="pat@example.com", primary=True)
        c.labels["env"] = "fuzz"
        customers.append(c)
    upsert(customers)
    names["customer"], names["customer2"] = customers[0].name, customers[1].name

    try:
        corr.CreateService(cs.CreateServiceRequest(service_id="payments", request_id=rid(), service=cr.TechnicalService(
            display_name="Payments", aliases=["payment", "checkout"], owner_team="team-pay")), timeout=30)
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
    corr.CreateService(cs.CreateServiceRequest(service_id="search", request_id=rid(), service=cr.TechnicalService(
        display_name="Search", dependencies=["services/payments"])), timeout=30)
    names["service2"] = "services/search"
    inc = corr.DeclareIncident(cs.DeclareIncidentRequest(
        request_id=rid(), source=cr.INCIDENT_SOURCE_MONITORING, incident=cr.Incident(
            title="Payments failing", services=["services/payments"], severity=types_pb2.SEVERITY_SEV2)), timeout=30)
    names["incident"] = inc.name
    inc2 = corr.DeclareIncident(cs.DeclareIncidentRequest(
        request_id=rid(), source=cr.INCIDENT_SOURCE_MANUAL, incident=cr.Incident(
            title="Search slow", services=["services/search"], severity=types_pb2.SEVERITY_SEV4)), timeout=30)
    corr.ResolveIncident(cs.ResolveIncidentRequest(name=inc2.name, request_id=rid(), note="fixed"), timeout=30)
    names["incident_resolved"] = inc2.name
    inc3 = corr.DeclareIncident(cs.DeclareIncidentRequest(
        request_id=rid(), source=cr.INCIDENT_SOURCE_MANUAL, incident=cr.Incident(
            title="Login errors", services=["services/payments"], severity=types_pb2.SEVERITY_SEV5)), timeout=30)
    corr.ResolveIncident(cs.ResolveIncidentRequest(name=inc3.name, request_id=rid(), note="fixed"), timeout=30)
    names["incident_resolved2"] = inc3.name

    def submit(customer, text, symptom, channel):
        ts = timestamp_pb2.Timestamp()
        ts.FromSeconds(int(time.time()) - 60)
        r = ir.Report(customer=customer, agent="agents/bob", channel=channel, text=text, symptom=symptom,
                      service_hint="payments", receive_time=ts)
        return intake.SubmitReport(isv.SubmitReportRequest(report=r, request_id=rid()), timeout=30)

    a = submit(names["customer"], "Card payment fails at checkout with error 502", types_pb2.SYMPTOM_KIND_ERRORS,
               ir.REPORT_CHANNEL_PHONE)
    b = submit(names["customer"], "Checkout payment fails with error 502 again", types_pb2.SYMPTOM_KIND_ERRORS,
               ir.REPORT_CHANNEL_CHAT)
    c = submit(names["customer2"], "Payments are not going through at all", types_pb2.SYMPTOM_KIND_UNAVAILABLE,
               ir.REPORT_CHANNEL_EMAIL)
    d = submit(names["customer2"], "Invoice PDF shows the wrong currency symbol", types_pb2.SYMPTOM_KIND_DATA,
               ir.REPORT_CHANNEL_WEB_FORM)
    e = submit(customers[2].name, "Payment page is very slow", types_pb2.SYMPTOM_KIND_SLOW, ir.REPORT_CHANNEL_PHONE)
    names.update(report=a.report.name, report2=b.report.name, report3=c.report.name,
                 case=a.case.name, case2=c.case.name, case3=d.case.name)
    closed = intake.CloseCase(isv.CloseCaseRequest(name=e.case.name, request_id=rid(),
                                                   outcome=ir.CASE_OUTCOME_RESOLVED_DIRECTLY, note="done"), timeout=30)
    names["case_closed"] = closed.name

    # Correlation learns the reports through events; link one explicitly, then wait for a link.
    deadline = time.time() + 30
    link = None
    while time.time() < deadline:
        try:
            resp = corr.LinkReports(cs.LinkReportsRequest(incident=inc.name, reports=[c.report.name],
                                                          agent="agents/alice", request_id=rid()), timeout=30)
            link = resp.links[0].name if resp.links else None
        except grpc.RpcError as err:
            if err.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                raise
        if link:
            break
        time.sleep(0.5)
    if link:
        names["link"] = link
    else:
        log("seed: no link could be made (is correlation receiving intake's events?)")
    links = corr.ListLinks(cs.ListLinksRequest(parent=inc.name, page_size=100), timeout=30).links
    suggested = [l.name for l in links if l.state == cr.Link.SUGGESTED]
    for key, name in zip(("link_suggested", "link_suggested2"), suggested):
        names[key] = name
    log("seed: links of the incident: " + ", ".join(cr.Link.State.Name(l.state) for l in links))

    # Reports that no open incident explains, from two groups of customers: correlation's
    # emerging-issue detector (it runs when correlation starts) raises an issue for each group.
    for g, (region, hint, symptom) in enumerate([("ap-east", "billing", types_pb2.SYMPTOM_KIND_DATA),
                                                 ("sa-east", "reports", types_pb2.SYMPTOM_KIND_SLOW)]):
        crowd = []
        for i in range(6):
            c = ir.Customer(name=f"customers/fuzz-g{g}-{i}", display_name=f"Crowd {g}/{i}", owning_agent="agents/alice")
            c.attributes.account_number = f"{g + 3}0000{i}"   # the first digit is the partition
            c.attributes.region = region
            c.attributes.country = "JP" if g == 0 else "BR"
            c.attributes.tier = customer_pb2.TIER_FREE if g == 0 else customer_pb2.TIER_BUSINESS
            c.attributes.platforms.add(platform=customer_pb2.PLATFORM_LINUX if g == 0 else customer_pb2.PLATFORM_WINDOWS,
                                       client_version=f"{g + 2}.0.0")
            crowd.append(c)
        upsert(crowd)
        for c in crowd:
            ts = timestamp_pb2.Timestamp()
            ts.FromSeconds(int(time.time()) - 30)
            intake.SubmitReport(isv.SubmitReportRequest(request_id=rid(), report=ir.Report(
                customer=c.name, channel=ir.REPORT_CHANNEL_WEB_FORM, text=f"The {hint} page misbehaves ({g})",
                symptom=symptom, service_hint=hint, receive_time=ts)), timeout=30)


def emerging_issues(correlation_ch, names: dict[str, str], log):
    """After correlation restarted (its detector ran): the names of two open emerging issues."""
    from liaison.correlation.v1 import correlation_service_pb2 as cs, correlation_service_pb2_grpc as cg
    corr = cg.CorrelationServiceStub(correlation_ch)
    deadline = time.time() + 10
    issues = []
    while time.time() < deadline and len(issues) < 2:
        issues = corr.ListEmergingIssues(cs.ListEmergingIssuesRequest(filter='state = "OPEN"'), timeout=30).emerging_issues
        time.sleep(0.2)
    log(f"seed: {len(issues)} emerging issue(s) raised")
    for key, issue in zip(("emerging", "emerging2"), issues):
        names[key] = issue.name
    if len(issues) < 2:
        log("seed: fewer than 2 emerging issues; the emerging-issue methods use fallback names")


def page_tokens(methods, renderer: Renderer, channels, rng) -> dict[str, str]:
    """A valid next_page_token of every List method (its corpus request with page_size 1)."""
    tokens = {}
    for m in methods:
        if m.server_streaming or "page_token" not in m.input_cls.DESCRIPTOR.fields_by_name:
            continue
        req = renderer.render(m.input_cls, renderer.templates(m.key, m.binary)[0], rng)
        req.page_size = 1
        try:
            raw = channels[m.binary].unary_unary(m.path)(req.SerializeToString(), timeout=30)
        except grpc.RpcError:
            continue
        token = m.output_cls.FromString(raw).next_page_token
        if token:
            tokens[m.key] = token
    return tokens
