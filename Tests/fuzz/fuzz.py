#!/usr/bin/env python3
"""Fuzz / bad-input suite (issue 20): hostile requests to every RPC of the services below, sent to
real processes over loopback, with checks after every call:

  - the answer is a gRPC status, not INTERNAL / UNKNOWN / DATA_LOSS, and not a stall (deadline);
  - a google.rpc.Status in grpc-status-details-bin parses and carries the same code;
  - the status trailers fit gRPC's default 8 KiB metadata limit;
  - an OK answer parses as the method's response type;
  - every process is still running and answers grpc.health.v1 Check;
  - a rejected call changed no row count in any table of any service's database.

Run through Tests/fuzz/run.sh (it provides PostgreSQL). Environment:
  BIN_DIR        directory of the service binaries (default .build/debug)
  FUZZ_SEED      seed of every random choice (default 20)
  FUZZ_SECONDS   wall-time budget of the fuzz loop (default 90)
  FUZZ_CASES     most cases per method (default 5000)
  FUZZ_ONLY      regex over "<binary>:<package.Service>/<Method>": fuzz only those methods
  FUZZ_DEADLINE  deadline of one unary call in seconds (default 10)
  FUZZ_RESTART   restart a crashed service and go on (default 1; the crash stays a failure)
  FUZZ_VERBOSE   1: print every case
Last line: "N passed, M failed" (checks); exit status 1 if anything failed.
"""
from __future__ import annotations

import argparse
import collections
import os
import random
import re
import sys
import time
from dataclasses import dataclass

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402

# The processes fuzzed and the gRPC services each serves. A new service: add its binary and its
# API here, and its requests to corpus.txt; its methods are found in the descriptors.
SERVICES = {
    "intake": ["liaison.intake.v1.IntakeService", "liaison.events.v1.EventSinkService"],
    "correlation": ["liaison.correlation.v1.CorrelationService", "liaison.events.v1.EventSinkService"],
    "sla": ["liaison.sla.v1.SlaService", "liaison.events.v1.EventSinkService"],
}
# Per-process environment (as scripts/stack.sh). The emerging-issue detector runs when
# correlation starts and then hourly, so that no background pass changes row counts during the
# run; a fixed replica id lets a restarted correlation take its lease again. Automatic links
# stay suggestions (for ConfirmLink / RejectLink to work on).
EXTRA_ENV = {
    "correlation": {"LIAISON_CORRELATION_EVENT_DESTINATIONS": "intake",
                    "LIAISON_CORRELATION_DETECTOR_INTERVAL_SECONDS": "3600",
                    "LIAISON_REPLICA_ID": "fuzz-correlation",
                    "LIAISON_CORRELATION_AUTO_LINK_THRESHOLD": "0.99",
                    "LIAISON_CORRELATION_BLAST_REFRESH_MS": "3600000"},
    # sla's evaluator writes budgets and at-risk rows after events: once at start, then every 10 min.
    "sla": {"LIAISON_SLA_EVALUATE_INTERVAL_MS": "600000"},
}
BAD_CODES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}
# gRPC's default limit on received metadata (grpc.max_metadata_size); each entry counts 32 bytes
# more (RFC 7541). Past it, clients get RESOURCE_EXHAUSTED instead of the service's status.
METADATA_LIMIT = 8 * 1024


@dataclass
class Method:
    binary: str
    service: str
    name: str
    input_cls: type
    output_cls: type
    server_streaming: bool

    @property
    def key(self) -> str:
        return f"{self.service}/{self.name}"

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"

    @property
    def title(self) -> str:
        return f"{self.binary}:{self.service.rsplit('.', 1)[-1]}/{self.name}"


def methods_of(binary: str, services: list[str]) -> list[Method]:
    from google.protobuf import descriptor_pool
    import mutate
    pool = descriptor_pool.Default()
    out = []
    for s in services:
        for m in pool.FindServiceByName(s).methods:
            out.append(Method(binary, s, m.name, mutate.message_class(m.input_type.full_name),
                              mutate.message_class(m.output_type.full_name), m.server_streaming))
    return out


# ---------------------------------------------------------------------------------------------
# Cases per method: the corpus request, a deterministic signature catalogue, then random ones.

SPECIAL_NAMES = {"filter", "page_token", "order_by", "page_size", "request_id", "etag", "event_id"}


def benign_change(leaf):
    """A valid-looking different value for a leaf (the payload of a reused request_id)."""
    import mutate
    k = leaf.kind
    if k == "string":
        return "changed", mutate.set_scalar((leaf.base[0] if leaf.repeated and leaf.base else leaf.base or "") + "-changed")
    if k in ("int32", "int64", "uint32", "uint64"):
        return "+1", mutate.set_scalar((leaf.base[0] if leaf.repeated and leaf.base else leaf.base or 0) + 1)
    if k == "bool":
        return "flipped", mutate.set_scalar(not (leaf.base[0] if leaf.repeated and leaf.base else leaf.base))
    if k == "enum":
        vals = sorted(v.number for v in leaf.fd.enum_type.values)
        cur = leaf.base[0] if leaf.repeated and leaf.base else leaf.base
        return "another value", mutate.set_scalar(next((v for v in vals if v and v != cur), 1))
    if k in (mutate.TIMESTAMP, mutate.DURATION):
        return "+1 s", mutate.set_time(int(time.time()) + 1, 0)
    return None


def generate(m: Method, renderer, ctx, rng):
    import mutate
    templates = renderer.templates(m.key, m.binary)
    render = lambda i=0: renderer.render(m.input_cls, templates[i], rng)
    leaves_of = {i: mutate.leaves(render(i)) for i in range(len(templates))}
    values_cache = {}

    def values(i, leaf):
        k = (i, leaf.path)
        if k not in values_cache:
            values_cache[k] = mutate.leaf_values(leaf, ctx, m.key, rng, signature=False)
        return values_cache[k]

    def field_case(i, muts, kind="field", bad=None, label=None):
        """muts: [(leaf, label, setter)] applied to a fresh render of template i."""
        def build():
            msg = render(i)
            for leaf, _, setter in muts:
                mutate.apply(msg, leaf.steps, setter)
            data = msg.SerializeToString()
            if bad is not None:
                data = data.replace(mutate.MARKER.encode(), bad[1])
            return data
        text = label or " & ".join(f"{leaf.path} = {lab}" for leaf, lab, _ in muts)
        if bad is not None:
            text += f" [invalid UTF-8: {bad[0]}]"
        return mutate.Case(kind, text, build)

    def utf8_setter(leaf):
        if leaf.kind == "map":
            return mutate.set_map([(mutate.MARKER, "v")])
        return mutate.set_list([mutate.MARKER]) if leaf.repeated else mutate.set_scalar(mutate.MARKER)

    def replay_case(i, rid_leaf, change):
        """The same request_id twice: first the corpus request, then another payload."""
        holder = {}

        def first():
            msg = render(i)
            mutate.apply(msg, rid_leaf.steps, lambda p, fd: holder.__setitem__("rid", getattr(p, fd.name)))
            return msg.SerializeToString()

        def second():
            msg = render(i)
            leaf, _, setter = change
            mutate.apply(msg, leaf.steps, setter)
            mutate.apply(msg, rid_leaf.steps, mutate.set_scalar(holder["rid"]))
            return msg.SerializeToString()
        return mutate.Case("replay", f"request_id reused with {change[0].path} = {change[1]}", second, first)

    base = leaves_of[0]
    rid_leaf = next((l for l in sorted(base, key=lambda l: l.depth) if l.name == "request_id" and l.is_set), None)
    in_det = [l for l in base if l.is_set or l.depth <= 2]
    group_a, group_b = [], []

    yield mutate.Case("base", "the corpus request", lambda: render().SerializeToString())
    for leaf in in_det:
        vals = mutate.leaf_values(leaf, ctx, m.key, rng, signature=True)
        target = group_a if leaf.kind in (mutate.TIMESTAMP, mutate.DURATION) or leaf.name in SPECIAL_NAMES else group_b
        target += [field_case(0, [(leaf, lab, st)]) for lab, st in vals]
    # Free text (not names, which fail fast) gets a 3 MB string: slow to decode in a debug build,
    # so it waits until the rest of the first catalogue has run.
    strings = [l for l in base if l.kind == "string" and l.is_set and l.name not in SPECIAL_NAMES
               and "/" not in (l.base[0] if l.repeated else l.base)]
    for n, leaf in enumerate(l for l in base if l.kind in ("string", "map") and l.is_set):
        group_a.append(field_case(0, [(leaf, "marker", utf8_setter(leaf))], bad=mutate.BAD_UTF8[n % len(mutate.BAD_UTF8)],
                                  label=f"{leaf.path} = 8 bytes"))
    if strings:
        group_b.insert(0, field_case(0, [(strings[0], "3 MB string", mutate.set_scalar("x" * (3 * mutate.MB)))]))
    for lab, fn in mutate.BYTE_SIGNATURES:
        group_a.append(mutate.Case("bytes", lab, lambda fn=fn: fn(render().SerializeToString())))
    if rid_leaf:
        others = [l for l in base if l.is_set and l is not rid_leaf and benign_change(l)]
        for leaf in others[:3]:
            lab, st = benign_change(leaf)
            group_a.append(replay_case(0, rid_leaf, (leaf, lab, st)))
    yield from group_a

    def random_case():
        i = rng.randrange(len(templates))
        leaves = leaves_of[i]
        r = rng.random()
        if r < 0.45 or r >= 0.97:
            n = 1 if r < 0.37 else 2
            muts = []
            for leaf in rng.sample(leaves, min(n, len(leaves))):
                vals = values(i, leaf)
                if vals:
                    lab, st = rng.choice(vals)
                    muts.append((leaf, lab, st))
            if not muts:
                return None
            if len(muts) == 1 and muts[0][0].kind in ("string", "map") and rng.random() < 0.15:
                leaf = muts[0][0]
                return field_case(i, [(leaf, "marker", utf8_setter(leaf))], bad=rng.choice(mutate.BAD_UTF8),
                                  label=f"{leaf.path} = 8 bytes")
            return field_case(i, muts)
        if r < 0.85:
            pre = None
            if rng.random() < 0.3:
                leaf = rng.choice(leaves)
                vals = values(i, leaf)
                pre = (leaf, *rng.choice(vals)) if vals else None
            j = rng.randrange(len(templates))
            seed = rng.getrandbits(64)

            def build():
                msg = render(i)
                if pre:
                    mutate.apply(msg, pre[0].steps, pre[2])
                data, how = mutate.mutate_bytes(random.Random(seed), msg.SerializeToString(),
                                                render(j).SerializeToString())
                build.how = how
                return data
            case = mutate.Case("bytes", "", build)
            case.extras["describe"] = lambda: (f"{pre[0].path} = {pre[1]}, then " if pre else "") + getattr(build, "how", "")
            return case
        if rid_leaf and i == 0:
            changeable = [l for l in leaves if l.is_set and l is not rid_leaf and benign_change(l)]
            if changeable and rng.random() < 0.5:
                leaf = rng.choice(changeable)
                lab, st = benign_change(leaf)
            else:
                leaf = rng.choice(leaves)
                vals = values(i, leaf)
                if not vals:
                    return None
                lab, st = rng.choice(vals)
            return replay_case(i, rid_leaf, (leaf, lab, st))
        set_leaves = [l for l in leaves if l.is_set]
        if set_leaves:
            leaf = rng.choice(set_leaves)
            return field_case(i, [(leaf, "cleared", mutate.clear)], kind="clear")
        return None

    # The rest of the catalogue alternates with random cases, then random cases only.
    b = iter(group_b)
    while True:
        nxt = next(b, None)
        if nxt is not None:
            yield nxt
        c = random_case()
        if c is not None:
            yield c


# ---------------------------------------------------------------------------------------------

class Fuzzer:
    def __init__(self, args):
        self.args = args
        self.seed = args.seed
        self.deadline = args.deadline
        self.passed = 0
        self.failures: list[dict] = []
        self.notes: list[str] = []
        self.cases = collections.Counter()
        self.statuses: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.all_statuses = collections.Counter()
        self.count_checks = 0
        self.count_skipped = 0
        self.baseline = None
        self.dirty_since = None
        self.last_health = 0.0
        self.services: dict[str, harness.Service] = {}
        self.channels = {}
        self.psql: dict[str, harness.Psql] = {}
        self.current = None

    # -- bookkeeping
    def ok(self, n=1):
        self.passed += n

    def fail(self, kind, method, label, detail, log=None):
        self.failures.append({"kind": kind, "method": method, "label": label, "detail": detail, "log": log or []})
        print(f"FAIL [{kind}] {method}: {label}: {detail}", flush=True)
        for line in log or []:
            print(f"    | {line}", flush=True)

    # -- row counts
    def counts(self) -> dict[str, int]:
        out = {}
        for db, p in self.psql.items():
            for t, n in p.counts().items():
                out[f"{db}.{t}"] = n
        return out

    def quiet(self) -> bool:
        """No event in flight: no outbox row is pending and due soon in any database."""
        for p in self.psql.values():
            if "outbox" not in p.tables:
                continue
            n = p.rows("SELECT count(*) FROM outbox WHERE state = 'pending' AND "
                       "(attempts = 0 OR next_attempt_at < now() + interval '3 seconds')")[0][0]
            if int(n):
                return False
        return True

    def ensure_baseline(self, wait: float = 0.0) -> bool:
        end = time.monotonic() + wait
        while True:
            if self.baseline is not None:
                return True
            if self.quiet():
                c = self.counts()
                if self.quiet():
                    self.baseline = c
                    self.dirty_since = None
                    return True
            if time.monotonic() >= end:
                return False
            time.sleep(0.05)

    def mark_dirty(self):
        self.baseline = None
        if self.dirty_since is None:
            self.dirty_since = time.monotonic()

    # -- processes
    def start_services(self, pg_url: str, work: str) -> bool:
        base = pg_url.rsplit("/", 1)[0]
        for b in SERVICES:
            env = {k: v for k, v in EXTRA_ENV.get(b, {}).items() if k not in os.environ}
            self.services[b] = harness.Service(b, self.args.bin_dir, f"{base}/{b}", work, env)
        for s in self.services.values():
            s.start(self.services)
        good = True
        for s in self.services.values():
            if s.wait_healthy():
                self.ok()
                self.channels[s.name] = harness.channel(s.address)
            else:
                self.fail("start", s.name, "serve", f"did not become healthy ({s.exit_status()})", s.log_tail(20))
                good = False
        return good

    def check_alive(self, during: str):
        for s in self.services.values():
            if s.proc is None or s.alive() or getattr(s, "reported_dead", False):
                continue
            self.fail("crash", s.name, f"noticed after {during}", f"the process ended ({s.exit_status()}); its log:",
                      s.crash_excerpt())
            s.reported_dead = True
            self.mark_dirty()
            if self.args.restart and s.restarts < 3:
                s.restarts += 1
                if self.restart(s):
                    s.reported_dead = False
                    print(f"note: restarted {s.name} (restart {s.restarts})", flush=True)
                else:
                    self.fail("restart", s.name, "serve", f"did not come back ({s.exit_status()})", s.log_tail(10))

    def restart(self, s: harness.Service) -> bool:
        s.stop()
        s.start(self.services)
        if not s.wait_healthy(60):
            return False
        self.channels[s.name] = harness.channel(s.address)
        time.sleep(1)   # background passes that run at start-up (the detector) finish first
        self.mark_dirty()
        return True

    def wait_if_dying(self, binary: str):
        """After UNAVAILABLE: a crashing process may still be printing its backtrace; wait for
        it to end so that the crash is charged to the call that caused it."""
        s = self.services[binary]
        if not s.alive():
            return
        serving, _ = harness.health_check(self.channels[binary], timeout=2)
        if serving:
            return
        try:
            s.proc.wait(timeout=20)
        except Exception:  # noqa: BLE001 - still running: unresponsive
            serving, detail = harness.health_check(self.channels[binary], timeout=3)
            if not serving:
                self.fail("unresponsive", binary, "after UNAVAILABLE", f"running but health says {detail}")

    def check_health(self, why: str):
        self.last_health = time.monotonic()
        for s in self.services.values():
            if not s.alive():
                continue
            serving, detail = harness.health_check(self.channels[s.name])
            if serving:
                self.ok()
            else:
                self.fail("health", s.name, why, f"grpc.health.v1 Check: {detail}")

    # -- one call
    def call(self, m: Method, payload: bytes, label: str) -> grpc.StatusCode | None:
        ch = self.channels[m.binary]
        checked = self.baseline is not None or self.ensure_baseline(0.0)
        if not checked and self.dirty_since is not None and time.monotonic() - self.dirty_since > 3:
            checked = self.ensure_baseline(5.0)   # do not let events in flight starve the count checks
        t0 = time.monotonic()
        code, details, trailers, responses = grpc.StatusCode.OK, "", (), []
        if m.server_streaming:
            call = ch.unary_stream(m.path)(payload, timeout=self.args.stream_window)
            try:
                for r in call:
                    responses.append(r)
                    break
                call.cancel()
            except grpc.RpcError:
                pass
            code, details, trailers = call.code(), call.details() or "", call.trailing_metadata() or ()
            if code == grpc.StatusCode.CANCELLED and responses:
                code = grpc.StatusCode.OK   # the stream was open; we hung up
            elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
                status = "DEADLINE_EXCEEDED(stream, open)" if responses else "DEADLINE_EXCEEDED(stream, no message)"
                self.statuses[m.title][status] += 1
                self.all_statuses[status] += 1
                code = None
        else:
            try:
                resp, c = ch.unary_unary(m.path).with_call(payload, timeout=self.deadline)
                responses = [resp]
                trailers = c.trailing_metadata() or ()
            except grpc.RpcError as e:
                code, details, trailers = e.code(), e.details() or "", e.trailing_metadata() or ()
        elapsed = time.monotonic() - t0
        if code is not None:
            self.statuses[m.title][code.name] += 1
            self.all_statuses[code.name] += 1
        if self.args.verbose:
            print(f"  {m.title} #{self.current[1]} {label} -> {code.name if code else 'stream'} {details[:100]!r}"
                  f" ({elapsed * 1000:.0f} ms)", flush=True)
        if code == grpc.StatusCode.UNAVAILABLE:
            self.wait_if_dying(m.binary)
        self.check_alive(f"{m.title} {label}")

        # The status.
        if code in BAD_CODES:
            self.fail(code.name, m.title, label, details[:300])
        elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
            self.fail("stall", m.title, label, f"no answer within {self.deadline:.0f} s")
            self.check_health("after a stalled call")
        elif code == grpc.StatusCode.UNAVAILABLE and self.services[m.binary].alive():
            self.notes.append(f"UNAVAILABLE from a running {m.binary}: {m.title} {label}: {details[:120]}")
            self.ok()
        else:
            self.ok()
        if elapsed > self.deadline / 2 and code != grpc.StatusCode.DEADLINE_EXCEEDED:
            self.notes.append(f"slow ({elapsed:.1f} s): {m.title} {label}")

        # Error details and response.
        md = dict(trailers)
        if code is not None:
            size = sum(len(k) + len(v) + 32 for k, v in trailers) + len(details.encode()) + 32
            if size > METADATA_LIMIT:
                self.fail("trailers", m.title, label, f"{code.name} with {size} bytes of status trailers (over gRPC's "
                          f"default {METADATA_LIMIT}-byte metadata limit: clients see RESOURCE_EXHAUSTED): "
                          f"{details[:80]!r}")
            else:
                self.ok()
        if code not in (None, grpc.StatusCode.OK) and "grpc-status-details-bin" in md:
            from google.rpc import status_pb2
            try:
                st = status_pb2.Status.FromString(md["grpc-status-details-bin"])
                if st.code == code.value[0]:
                    self.ok()
                else:
                    self.fail("details", m.title, label, f"details carry code {st.code}, status is {code.name}")
            except Exception as e:  # noqa: BLE001
                self.fail("details", m.title, label, f"grpc-status-details-bin does not parse: {e}")
        if code == grpc.StatusCode.OK:
            for r in responses:
                try:
                    m.output_cls.FromString(r)
                    self.ok()
                except Exception as e:  # noqa: BLE001
                    self.fail("response", m.title, label, f"OK answer does not parse as {m.output_cls.__name__}: {e}")

        # Row counts.
        if code == grpc.StatusCode.OK:
            if self.baseline is not None and self.counts() != self.baseline:
                self.mark_dirty()
        elif checked and self.baseline is not None and all(s.alive() for s in self.services.values()):
            after = self.counts()
            self.count_checks += 1
            if after == self.baseline:
                self.ok()
            else:
                diff = {k: after.get(k, 0) - self.baseline.get(k, 0) for k in set(after) | set(self.baseline)
                        if after.get(k, 0) != self.baseline.get(k, 0)}
                self.fail("rows", m.title, label, f"rejected ({code.name if code else 'stream'}) but row counts "
                          f"changed: {diff}")
                self.mark_dirty()
        else:
            self.count_skipped += 1
        if time.monotonic() - self.last_health > 2:
            self.check_health("periodic")
        return code

    def run_case(self, m: Method, idx: int, case) -> None:
        import mutate
        self.current = (m, idx)
        try:
            first = case.first() if case.first else None
            if first is not None:
                self.call(m, first, f"{case.label} (first call)")
            payload = case.build()
        except Exception as e:  # noqa: BLE001 - a case the Python side cannot build is skipped
            self.notes.append(f"case not built: {m.title} {case.kind} {case.label}: {type(e).__name__}: {e}"[:300])
            return
        label = case.label or case.extras.get("describe", lambda: "")()
        label = f"#{idx} {case.kind}: {label} ({mutate.short(payload, 40) if len(payload) > 200 else payload.hex()[:80]})"
        self.cases[m.title] += 1
        self.call(m, payload, label)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--binaries", action="store_true", help="print the binaries fuzzed (for run.sh) and exit")
    ap.add_argument("--pg-url", help="admin URL of the PostgreSQL cluster (.../postgres)")
    ap.add_argument("--work", help="folder for logs")
    args = ap.parse_args()
    if args.binaries:
        print(" ".join(SERVICES))
        return 0
    if not args.pg_url or not args.work:
        ap.error("--pg-url and --work are required")
    args.bin_dir = os.environ.get("BIN_DIR") or os.path.join(harness.ROOT, ".build", "debug")
    args.seed = os.environ.get("FUZZ_SEED", "20")
    args.seconds = float(os.environ.get("FUZZ_SECONDS", "90"))
    args.max_cases = int(os.environ.get("FUZZ_CASES", "5000"))
    args.only = os.environ.get("FUZZ_ONLY", "")
    args.deadline = float(os.environ.get("FUZZ_DEADLINE", "10"))
    args.stream_window = float(os.environ.get("FUZZ_STREAM_WINDOW", "1"))
    args.restart = os.environ.get("FUZZ_RESTART", "1") == "1"
    args.verbose = os.environ.get("FUZZ_VERBOSE", "0") == "1"
    print(f"fuzz: FUZZ_SEED={args.seed} FUZZ_SECONDS={args.seconds:g} BIN_DIR={args.bin_dir}", flush=True)

    harness.load_stubs(os.path.join(args.work, "py"))
    import mutate
    import seed as seeding

    fz = Fuzzer(args)
    started = time.monotonic()
    try:
        if not fz.start_services(args.pg_url, args.work):
            return summarize(fz, started, 0)
        base = args.pg_url.rsplit("/", 1)[0]
        for b in SERVICES:
            fz.psql[b] = harness.Psql(f"{base}/{b}")

        rng = random.Random(f"{args.seed}/seed")
        names: dict[str, str] = {}
        try:
            seeding.seed(fz.channels["intake"], fz.channels["correlation"], rng, print, names)
            fz.ok()
        except Exception as e:  # noqa: BLE001
            fz.fail("seed", "seed", "seeding valid data", f"{type(e).__name__}: {e}"[:400])
        # Correlation's detector runs at start-up: restarted once the seeded reports reached it,
        # it raises emerging issues for the emerging-issue methods to work on.
        if names and fz.ensure_baseline(30.0) and fz.restart(fz.services["correlation"]):
            seeding.emerging_issues(fz.channels["correlation"], names, print)
        print("fuzz: seeded " + ", ".join(f"{k}={v}" for k, v in sorted(names.items())), flush=True)

        corpus = seeding.load_corpus(os.path.join(HERE, "corpus.txt"))
        renderer = seeding.Renderer(corpus, names)
        methods = [m for b, svcs in SERVICES.items() for m in methods_of(b, svcs)]
        only = re.compile(args.only) if args.only else None
        for m in methods:   # every corpus template must render
            for t in renderer.templates(m.key, m.binary):
                try:
                    renderer.render(m.input_cls, t, rng)
                    fz.ok()
                except Exception as e:  # noqa: BLE001
                    fz.fail("corpus", m.title, "template", f"{type(e).__name__}: {e}"[:300])
            if not (corpus.get(f"{m.key}@{m.binary}") or corpus.get(m.key)):
                fz.notes.append(f"no corpus entry for {m.title}: fuzzing from an empty request")
        tokens = seeding.page_tokens(methods, renderer, fz.channels, rng)
        ctx = mutate.Context(names, tokens)
        fz.check_alive("seeding")
        if not fz.ensure_baseline(30.0):
            fz.notes.append("events still in flight 30 s after seeding; count checks start later")

        chosen = [m for m in methods if not only or only.search(f"{m.binary}:{m.key}")]
        gens = {m.title: generate(m, renderer, ctx, random.Random(f"{args.seed}/{m.binary}/{m.key}")) for m in chosen}
        index = collections.Counter()
        print(f"fuzz: {len(chosen)} methods over {', '.join(SERVICES)}; budget {args.seconds:g} s, "
              f"at most {args.max_cases} cases per method", flush=True)
        loop_start = time.monotonic()
        last_progress = loop_start
        active = list(chosen)
        while active and time.monotonic() - loop_start < args.seconds:
            for m in list(active):
                if time.monotonic() - loop_start >= args.seconds:
                    break
                svc = fz.services[m.binary]
                if not svc.alive() or index[m.title] >= args.max_cases:
                    active.remove(m)
                    continue
                case = next(gens[m.title])
                fz.run_case(m, index[m.title], case)
                index[m.title] += 1
            if time.monotonic() - last_progress > 15:
                last_progress = time.monotonic()
                print(f"fuzz: {time.monotonic() - loop_start:.0f} s, {sum(fz.cases.values())} cases, "
                      f"{len(fz.failures)} failures", flush=True)
        loop_seconds = time.monotonic() - loop_start

        # Final checks: every process up and healthy, counts settle.
        time.sleep(0.5)
        fz.check_alive("the end of the run")
        fz.check_health("at the end")
        for s in fz.services.values():
            if s.alive():
                fz.ok()
        return summarize(fz, started, loop_seconds)
    finally:
        for p in fz.psql.values():
            p.close()
        for s in fz.services.values():
            s.stop()


def summarize(fz: Fuzzer, started: float, loop_seconds: float) -> int:
    total = sum(fz.cases.values())
    print()
    print(f"== fuzz summary: seed {fz.seed}, {total} cases in {loop_seconds:.1f} s of fuzzing "
          f"({time.monotonic() - started:.1f} s in all)")
    width = max([len(t) for t in fz.cases] + [10])
    for title in sorted(fz.cases):
        st = ", ".join(f"{k} {v}" for k, v in fz.statuses[title].most_common())
        print(f"  {title:<{width}} {fz.cases[title]:5d}  {st}")
    print("statuses: " + ", ".join(f"{k} {v}" for k, v in fz.all_statuses.most_common()))
    print(f"row-count checks: {fz.count_checks} after rejected calls ({fz.count_skipped} calls not count-checked: "
          "OK answers, or events of an earlier OK call still in flight)")
    for s in fz.services.values():
        if s.restarts:
            print(f"{s.name} was restarted {s.restarts} time(s) after crashing")
    if fz.notes:
        uniq = list(dict.fromkeys(fz.notes))
        print(f"notes ({len(fz.notes)}):")
        for n in uniq[:25]:
            print("  " + n)
        if len(uniq) > 25:
            print(f"  ... and {len(uniq) - 25} more")
    if fz.failures:
        # One entry per problem: the same kind and case label, with every method it hit.
        groups = collections.OrderedDict()
        for f in fz.failures:
            label = re.sub(r"^#\d+ ", "", f["label"])
            label = re.sub(r" \([0-9a-f]*\)$| \(<\d+ bytes.*\)$", "", label)
            groups.setdefault((f["kind"], label[:160]), []).append(f)
        print(f"failures ({len(fz.failures)}, {len(groups)} distinct):")
        for (kind, label), fs in groups.items():
            methods = list(dict.fromkeys(f["method"] for f in fs))
            print(f"  [{kind}] {label}")
            print(f"      in {', '.join(methods)}")
            print(f"      -> {fs[0]['detail'][:200]}")
            for line in fs[0]["log"][-8:]:
                print(f"      | {line[:300]}")
    print(f"{fz.passed} passed, {len(fz.failures)} failed")
    return 1 if fz.failures else 0


if __name__ == "__main__":
    sys.exit(main())
