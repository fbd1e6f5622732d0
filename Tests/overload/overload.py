#!/usr/bin/env python3
"""Overload (issue 20): ten times the benchmark's highest concurrency against one intake and one
correlation, with their bounds set low enough to be reached, for OVERLOAD_SECONDS.

The load (grpc.aio, one process): 160 writers submitting reports (bench-intake's highest
concurrency is 16 clients), 40 readers of correlation (GetBlastRadius, ListLinks, GetIncident),
and 2x LIAISON_CORRELATION_MAX_WATCHERS WatchIncident streams. Every refused call backs off as
its RetryInfo says and is sent again with the same request_id.

Checks, each printed with its figures:
  - both processes stay up and answer grpc.health.v1 within 3 s at every sample (1 s apart);
  - their RSS stays under OVERLOAD_RSS_LIMIT_MB (default 256 MB, debug build), max printed;
  - overload is answered with RESOURCE_EXHAUSTED carrying RetryInfo, never INTERNAL/UNKNOWN;
  - every SubmitReport that got OK is stored in intake, once; and, after the load, correlation
    has received every one of them (its reports table), so nothing acknowledged was lost.
Last line: "N passed, M failed".
"""
from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fuzz"))
import harness  # noqa: E402

harness.load_stubs()
import grpc  # noqa: E402
from google.protobuf import timestamp_pb2  # noqa: E402
from google.rpc import error_details_pb2, status_pb2  # noqa: E402
from liaison.common.v1 import customer_pb2, types_pb2  # noqa: E402
from liaison.correlation.v1 import correlation_service_pb2 as cs, correlation_service_pb2_grpc as cg  # noqa: E402
from liaison.correlation.v1 import resources_pb2 as cr  # noqa: E402
from liaison.intake.v1 import intake_service_pb2 as isv, intake_service_pb2_grpc as ig  # noqa: E402
from liaison.intake.v1 import resources_pb2 as ir  # noqa: E402

SECONDS = float(os.environ.get("OVERLOAD_SECONDS", "60"))
RSS_LIMIT_MB = float(os.environ.get("OVERLOAD_RSS_LIMIT_MB", "256"))
WRITERS, READERS, MAX_WATCHERS = 160, 40, 20
CUSTOMERS = 300
# Bounds low enough that this load reaches them (production defaults are in the README).
# Only intake and correlation run here: their events go to each other, not to sla.
INTAKE_ENV = {"LIAISON_INTAKE_CUSTOMER_EVENT_DESTINATIONS": "correlation", "LIAISON_MAX_ACTIVE_CALLS": "96", "LIAISON_INTAKE_MAX_QUEUED_SUBMISSIONS": "40",
              "LIAISON_DATABASE_MAX_WAITERS": "48", "LIAISON_DATABASE_POOL_SIZE": "4"}
CORRELATION_ENV = {"LIAISON_CORRELATION_EVENT_DESTINATIONS": "intake", "LIAISON_MAX_ACTIVE_CALLS": "48", "LIAISON_CORRELATION_MAX_WATCHERS": str(MAX_WATCHERS),
                   "LIAISON_DATABASE_POOL_SIZE": "4", "LIAISON_DATABASE_MAX_WAITERS": "32"}

passed, failed = 0, 0


def check(ok: bool, what: str):
    global passed, failed
    print(("ok: " if ok else "FAILED: ") + what, flush=True)
    if ok:
        passed += 1
    else:
        failed += 1


def retry_delay(err) -> float | None:
    """The RetryInfo delay of a RESOURCE_EXHAUSTED / UNAVAILABLE answer, None when absent."""
    for key, value in (err.trailing_metadata() or ()):
        if key == "grpc-status-details-bin":
            st = status_pb2.Status.FromString(value)
            for d in st.details:
                if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    info = error_details_pb2.RetryInfo()
                    d.Unpack(info)
                    return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return None


class Tally:
    def __init__(self):
        self.codes: dict[str, int] = {}
        self.missing_retry_info = 0
        self.acked: dict[str, str] = {}   # request_id -> report name

    def add(self, code: str):
        self.codes[code] = self.codes.get(code, 0) + 1


async def call(tally: Tally, stop: asyncio.Event, fn, request, timeout=10.0):
    """Sends until OK (or a final error), backing off as RetryInfo says; None if stopped."""
    while not stop.is_set():
        try:
            resp = await fn(request, timeout=timeout)
            tally.add("OK")
            return resp
        except grpc.aio.AioRpcError as e:
            code = e.code().name
            tally.add(code)
            if e.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE,
                            grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED):
                delay = retry_delay(e)
                if delay is None and e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    tally.missing_retry_info += 1
                await asyncio.sleep((delay or 0.2) * random.uniform(0.5, 1.5))
                continue
            return None
    return None


async def writer(n: int, intake, customers, tally: Tally, stop: asyncio.Event):
    i = 0
    while not stop.is_set():
        ts = timestamp_pb2.Timestamp()
        ts.FromSeconds(int(time.time()) - 2)
        rid = str(uuid.uuid4())
        report = ir.Report(customer=customers[(n * 7919 + i) % len(customers)], agent="agents/overload",
                           channel=ir.REPORT_CHANNEL_PHONE, symptom=types_pb2.SYMPTOM_KIND_ERRORS,
                           service_hint="payments", receive_time=ts,
                           text=f"payments fail with error 503 at checkout (writer {n}, call {i})")
        resp = await call(tally, stop, intake.SubmitReport, isv.SubmitReportRequest(report=report, request_id=rid))
        if resp is not None:
            tally.acked[rid] = resp.report.name
        i += 1


async def reader(n: int, corr, incident: str, tally: Tally, stop: asyncio.Event):
    while not stop.is_set():
        k = random.randrange(3)
        if k == 0:
            await call(tally, stop, corr.GetBlastRadius, cs.GetBlastRadiusRequest(incident=incident))
        elif k == 1:
            await call(tally, stop, corr.ListLinks, cs.ListLinksRequest(parent=incident, page_size=100))
        else:
            await call(tally, stop, corr.GetIncident, cs.GetIncidentRequest(name=incident))


async def watcher(corr, incident: str, tally: Tally, stop: asyncio.Event):
    while not stop.is_set():
        stream = corr.WatchIncident(cs.WatchIncidentRequest(incident=incident), timeout=SECONDS + 30)
        try:
            async for _ in stream:
                if stop.is_set():
                    break
            tally.add("WATCH_ENDED")
        except grpc.aio.AioRpcError as e:
            tally.add("WATCH_" + e.code().name)
            if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and retry_delay(e) is None:
                tally.missing_retry_info += 1
            if e.code() not in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED):
                return
            await asyncio.sleep(1)
        finally:
            stream.cancel()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def monitor(services, stop: asyncio.Event, samples: dict):
    channels = {s.name: harness.channel(s.address) for s in services}
    while not stop.is_set():
        for s in services:
            if not s.alive():
                samples["dead"].append(f"{s.name} {s.exit_status()}")
                continue
            samples["rss"][s.name] = max(samples["rss"].get(s.name, 0), rss_mb(s.proc.pid))
            t = time.time()
            ok, why = await asyncio.get_running_loop().run_in_executor(None, harness.health_check, channels[s.name], 3.0)
            samples["health_ms"][s.name] = max(samples["health_ms"].get(s.name, 0), (time.time() - t) * 1000)
            if not ok:
                samples["unhealthy"].append(f"{s.name}: {why}")
        await asyncio.sleep(1)


async def run(services, names):
    intake_s, corr_s = services
    intake_ch = grpc.aio.insecure_channel(intake_s.address)
    corr_ch = grpc.aio.insecure_channel(corr_s.address)
    intake, corr = ig.IntakeServiceStub(intake_ch), cg.CorrelationServiceStub(corr_ch)
    tally, stop = Tally(), asyncio.Event()
    samples = {"rss": {}, "health_ms": {}, "unhealthy": [], "dead": []}
    tasks = [asyncio.create_task(writer(n, intake, names["customers"], tally, stop)) for n in range(WRITERS)]
    tasks += [asyncio.create_task(reader(n, corr, names["incident"], tally, stop)) for n in range(READERS)]
    tasks += [asyncio.create_task(watcher(corr, names["incident"], tally, stop)) for _ in range(2 * MAX_WATCHERS)]
    mon = asyncio.create_task(monitor(services, stop, samples))
    start = time.time()
    await asyncio.sleep(SECONDS)
    stop.set()
    await asyncio.wait(tasks, timeout=30)
    await mon
    elapsed = time.time() - start
    await intake_ch.close()
    await corr_ch.close()
    return tally, samples, elapsed


def seed(intake_s, corr_s):
    intake = ig.IntakeServiceStub(harness.channel(intake_s.address))
    corr = cg.CorrelationServiceStub(harness.channel(corr_s.address))
    regions = [("eu-north", "SE"), ("eu-central", "DE"), ("eu-south", "IT")]
    customers = []
    for i in range(CUSTOMERS):
        c = ir.Customer(name=f"customers/ov-{i:04d}", display_name=f"Overload {i}", owning_agent="agents/alice")
        c.attributes.account_number = f"{i % 9 + 1}{i:06d}"
        c.attributes.region, c.attributes.country = regions[i % 3]
        c.attributes.tier = customer_pb2.TIER_BUSINESS
        customers.append(c)
    intake.BatchUpsertCustomers(isv.BatchUpsertCustomersRequest(customers=customers, request_id=str(uuid.uuid4())), timeout=60)
    corr.CreateService(cs.CreateServiceRequest(service_id="payments", request_id=str(uuid.uuid4()),
                                               service=cr.TechnicalService(display_name="Payments", aliases=["payments"])), timeout=10)
    incident = corr.DeclareIncident(cs.DeclareIncidentRequest(
        request_id=str(uuid.uuid4()), source=cr.INCIDENT_SOURCE_MONITORING,
        incident=cr.Incident(title="Payments failing", services=["services/payments"], severity=types_pb2.SEVERITY_SEV2)), timeout=10)
    return {"customers": [c.name for c in customers], "incident": incident.name}


def main():
    pg_url, work, bin_dir = sys.argv[1], sys.argv[2], sys.argv[3]
    base = pg_url.rsplit("/", 1)[0]
    intake_s = harness.Service("intake", bin_dir, f"{base}/intake", work, INTAKE_ENV)
    corr_s = harness.Service("correlation", bin_dir, f"{base}/correlation", work, CORRELATION_ENV)
    peers = {"intake": intake_s, "correlation": corr_s}
    for s in (intake_s, corr_s):
        s.start(peers)
    try:
        for s in (intake_s, corr_s):
            if not s.wait_healthy():
                check(False, f"{s.name} became healthy: {s.log_tail()}")
                return
        names = seed(intake_s, corr_s)
        print(f"overload: {WRITERS} writers, {READERS} readers, {2 * MAX_WATCHERS} watch streams for {SECONDS:.0f} s", flush=True)
        tally, samples, elapsed = asyncio.run(run((intake_s, corr_s), names))
        codes = ", ".join(f"{k} {v}" for k, v in sorted(tally.codes.items()))
        print(f"overload: {elapsed:.1f} s; answers: {codes}", flush=True)
        refused = tally.codes.get("RESOURCE_EXHAUSTED", 0) + tally.codes.get("WATCH_RESOURCE_EXHAUSTED", 0)
        rss = ", ".join(f"{k} {v:.0f} MB" for k, v in sorted(samples["rss"].items()))
        health = ", ".join(f"{k} {v:.0f} ms" for k, v in sorted(samples["health_ms"].items()))
        check(not samples["dead"], f"both processes stayed up ({samples['dead'] or 'no exit'})")
        check(not samples["unhealthy"], f"health answered SERVING at every sample (slowest: {health}; failures: {samples['unhealthy'][:3]})")
        check(all(v < RSS_LIMIT_MB for v in samples["rss"].values()), f"RSS under {RSS_LIMIT_MB:.0f} MB (max: {rss})")
        bad = {k: v for k, v in tally.codes.items() if k.endswith("INTERNAL") or k.endswith("UNKNOWN") or k.endswith("DATA_LOSS")}
        check(not bad, f"no INTERNAL/UNKNOWN/DATA_LOSS ({bad})")
        check(refused > 0, f"the bounds were reached: {refused} calls refused with RESOURCE_EXHAUSTED")
        check(tally.missing_retry_info == 0, f"every RESOURCE_EXHAUSTED carried RetryInfo ({tally.missing_retry_info} without)")
        acked = sorted(set(tally.acked.values()))
        check(len(acked) == len(tally.acked), f"{len(tally.acked)} acknowledged reports, each a distinct report")
        ids = [n.split("/", 1)[1] for n in acked]
        stored = 0
        db = harness.Psql(f"{base}/intake")
        for i in range(0, len(ids), 500):
            chunk = ",".join("'" + x.replace("'", "") + "'" for x in ids[i:i + 500])
            stored += int(db.rows(f"SELECT count(*) FROM reports WHERE id IN ({chunk})")[0][0]) if chunk else 0
        db.close()
        check(stored == len(ids), f"every acknowledged report is stored in intake ({stored}/{len(ids)})")
        # Correlation receives each one through the outbox (after the load drains).
        cdb = harness.Psql(f"{base}/correlation")
        deadline, have = time.time() + 120, 0
        while time.time() < deadline:
            have = 0
            for i in range(0, len(ids), 500):
                chunk = ",".join("'" + x.replace("'", "") + "'" for x in ids[i:i + 500])
                have += int(cdb.rows(f"SELECT count(*) FROM reports WHERE id IN ({chunk})")[0][0]) if chunk else 0
            if have == len(ids):
                break
            time.sleep(1)
        cdb.close()
        check(have == len(ids), f"correlation received every acknowledged report through the outbox ({have}/{len(ids)})")
        rate = len(ids) / elapsed if elapsed else 0
        print(f"overload: figures: {len(ids)} reports acknowledged ({rate:.0f}/s), {refused} refused, RSS max {rss}", flush=True)
    finally:
        for s in (intake_s, corr_s):
            s.stop()
        if failed:
            for s in (intake_s, corr_s):
                print(f"--- {s.name} log tail", *s.log_tail(10), sep="\n")
        print(f"{passed} passed, {failed} failed", flush=True)
        sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
