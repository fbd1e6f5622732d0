"""Plumbing of the fuzz suite: Python stubs compiled from protos/, the service processes, raw gRPC
calls with identity serializers, grpc.health.v1 checks and table row counts through psql."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_stubs(out: str | None = None) -> str:
    """Compiles every .proto under protos/ with grpcio-tools into a temporary folder (as
    Tests/python/test_contract.py does), puts it on sys.path and imports every module, so that
    the default descriptor pool knows every message (Any payloads, text-format corpus)."""
    import importlib

    import grpc_tools
    from grpc_tools import protoc

    if out:
        os.makedirs(out, exist_ok=True)
    else:
        out = tempfile.mkdtemp(prefix="liaison-fuzz-py-")
    protos_dir = os.path.join(ROOT, "protos")
    protos = sorted(os.path.relpath(os.path.join(d, f), protos_dir)
                    for d, _, files in os.walk(protos_dir) for f in files if f.endswith(".proto"))
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    rc = protoc.main(["protoc", "-I" + protos_dir, "-I" + well_known,
                      "--python_out=" + out, "--grpc_python_out=" + out] + protos)
    if rc != 0:
        raise RuntimeError("grpc_tools.protoc failed on protos/")
    sys.path.insert(0, out)
    for p in protos:
        importlib.import_module(p[: -len(".proto")].replace("/", ".") + "_pb2")
    return out


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Psql:
    """One long-lived psql session per database: a query costs a round trip, not a process."""

    END = "__fuzz_end__"

    def __init__(self, url: str):
        self.url = url
        self.proc = subprocess.Popen(
            ["psql", "-X", "-q", "-A", "-t", "-F", "\t", url],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        tables = [r[0] for r in self.rows(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")]
        if not tables:
            raise RuntimeError(f"no tables in {url}")
        self.tables = tables
        self._count_sql = " UNION ALL ".join(
            f"SELECT '{t}', count(*) FROM public.\"{t}\"" for t in tables)

    def rows(self, sql: str) -> list[list[str]]:
        self.proc.stdin.write(sql.rstrip().rstrip(";") + ";\n\\echo " + self.END + "\n")
        self.proc.stdin.flush()
        out, errors = [], []
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"psql on {self.url} exited")
            line = line.rstrip("\n")
            if line == self.END:
                if errors:
                    raise RuntimeError("psql: " + " | ".join(errors))
                return out
            if line.startswith(("ERROR:", "FATAL:", "psql:")):
                errors.append(line)
            elif line:
                out.append(line.split("\t"))

    def counts(self) -> dict[str, int]:
        return {t: int(n) for t, n in self.rows(self._count_sql)}

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except Exception:
            self.proc.kill()


class Service:
    """One service process (`<bin> serve`) with its log file, and a channel to it."""

    def __init__(self, name: str, bin_dir: str, db_url: str, work: str, env_extra: dict[str, str]):
        self.name = name
        self.binary = os.path.join(bin_dir, name)
        self.db_url = db_url
        self.port = free_port()
        self.admin_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log_path = os.path.join(work, f"{name}.log")
        self.env_extra = env_extra
        self.proc: subprocess.Popen | None = None
        self.channel = None
        self.restarts = 0

    def environment(self, peers: dict[str, "Service"]) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "LIAISON_DATABASE_URL": self.db_url,
            "LIAISON_LISTEN_ADDRESS": self.address,
            "LIAISON_ADMIN_ADDRESS": f"127.0.0.1:{self.admin_port}",
            "LIAISON_MIGRATIONS_DIR": os.path.join(ROOT, "services", self.name, "migrations"),
            "LIAISON_SHUTDOWN_GRACE_SECONDS": "2",
        })
        for peer in peers.values():
            env[f"LIAISON_{peer.name.upper()}_TARGET"] = f"ipv4:{peer.address}"
        env.update(self.env_extra)
        return env

    def start(self, peers: dict[str, "Service"]):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, "serve"], env=self.environment(peers),
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def wait_healthy(self, timeout: float = 120) -> bool:
        """Polls `<bin> probe host:port` (as scripts/stack.sh does) until SERVING."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.alive():
                return False
            r = subprocess.run([self.binary, "probe", self.address], capture_output=True, timeout=10)
            if r.returncode == 0:
                return True
            time.sleep(0.2)
        return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_status(self) -> str:
        rc = self.proc.poll() if self.proc else None
        if rc is None:
            return "running"
        return f"signal {-rc}" if rc < 0 else f"exit {rc}"

    def log_tail(self, n: int = 15) -> list[str]:
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return []
        return lines[-n:]

    def crash_excerpt(self, n: int = 14) -> list[str]:
        """The crash message and the frames after it (Swift's backtracer prints the reason
        first, then many lines); else the last lines of the log."""
        lines = self.log_tail(600)
        marks = ("Fatal error", "Precondition failed", "Assertion failed", "Crash", "crashed:",
                 "Segmentation fault", "SIGILL", "SIGSEGV", "SIGABRT", "SIGTRAP", "SIGBUS")
        for i, line in enumerate(lines):
            if any(m in line for m in marks):
                return lines[i:i + n]
        return lines[-n:]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=8)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def channel(address: str):
    import grpc
    return grpc.insecure_channel(address, options=[
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ("grpc.enable_retries", 0),
        # Large status trailers are measured by the suite instead of failing the call here.
        ("grpc.max_metadata_size", 1024 * 1024),
        ("grpc.absolute_max_metadata_size", 1024 * 1024),
    ])


def health_check(ch, timeout: float = 3.0) -> tuple[bool, str]:
    """grpc.health.v1.Health/Check for the server as a whole (hand-encoded: field 1 = status)."""
    import grpc
    call = ch.unary_unary("/grpc.health.v1.Health/Check")
    try:
        resp = call(b"", timeout=timeout)
    except grpc.RpcError as e:
        return False, f"{e.code().name}: {e.details()}"
    serving = resp == b"\x08\x01"
    return serving, "SERVING" if serving else f"response {resp.hex()}"
