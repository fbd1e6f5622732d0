#!/usr/bin/env bash
# Transport benchmark on loopback: each server pinned to CPU 0 (taskset), h2load on CPU 1.
#   (1) "raw": raw grpc++ callback echo server (C++, same generic callback API as the shim,
#       bidi echo: read, write, read the end, finish); "rawU": the same server doing what a
#       grpc++ unary handler does (read, then one StartWriteAndFinish)
#   (2) "shim": Swift echo service over ShimServerTransport (release build), the way the
#       services serve unary methods (the transport's direct unary path, a UnaryMethod);
#       "shimG": the same through GRPCServer (the path of streaming methods); "shimT": echo
#       written straight against the transport's streams (no GRPCServer)
#   (3) Swift echo over grpc-swift-nio-transport (Benchmarks/transport-nio, a separate package:
#       its first release build compiles BoringSSL, ~18 minutes on 2 cores). Built and measured
#       when BENCH_NIO=1 or when it was built before; otherwise reported as null.
# h2load sees only HTTP status, so grpc-status is checked separately with grpcio before the
# runs (one call per server must return OK and echo its payload).
# Env: N1 (requests at 1 stream), N64 (requests at 64 streams), RSS_CALLS (default 1000000),
#      PAYLOAD (bytes, default 64).
# Last line: one JSON object.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
N1="${N1:-20000}"
N64="${N64:-200000}"
RSS_CALLS="${RSS_CALLS:-1000000}"
PAYLOAD="${PAYLOAD:-64}"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT
log() { echo "$*" >&2; }

command -v h2load >/dev/null || { log "h2load missing (apt-get install nghttp2-client)"; exit 1; }
SERVER_CPU=0; LOAD_CPU=1
[ "$(nproc)" -ge 2 ] || LOAD_CPU=0

log "building raw grpc++ echo server"
g++ -std=c++17 -O2 -DNDEBUG Benchmarks/transport/raw_echo_server.cpp -o "$WORK/raw_echo_server" \
  -lgrpc++ -lgrpc -lgpr -lprotobuf -labsl_synchronization -lpthread
log "building ShimEchoBench (release)"
swift build -c release --product ShimEchoBench >&2
SHIM_BIN="$(swift build -c release --product ShimEchoBench --show-bin-path)/ShimEchoBench"

# One gRPC frame: uncompressed flag, 4-byte big-endian length, payload.
python3 - "$WORK/body.bin" "$PAYLOAD" <<'PY'
import struct, sys
n = int(sys.argv[2])
open(sys.argv[1], "wb").write(b"\0" + struct.pack(">I", n) + bytes(range(256)) * (n // 256) + bytes(range(n % 256)))
PY

start_server() { # name binary [args after the port] -> sets PORT and SERVER_PID
  local name="$1" bin="$2"; shift 2
  taskset -c "$SERVER_CPU" "$bin" 0 "$@" > "$WORK/$name.out" 2> "$WORK/$name.err" &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  PORT=""
  for _ in $(seq 1 100); do
    PORT="$(sed -n 's/^listening on \([0-9]*\)$/\1/p' "$WORK/$name.out")"
    [ -n "$PORT" ] && return 0
    sleep 0.1
  done
  log "$name did not start"; cat "$WORK/$name.err" >&2; exit 1
}

check_status() { # port
  python3 - "$1" "$PAYLOAD" <<'PY'
import sys
try:
    import grpc
except ImportError:
    print("grpcio missing: grpc-status not checked", file=sys.stderr); sys.exit(0)
port, n = sys.argv[1], int(sys.argv[2])
payload = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
ch = grpc.insecure_channel("127.0.0.1:" + port)
reply, call = ch.unary_unary("/bench.Echo/Echo").with_call(payload, timeout=10)
assert call.code() == grpc.StatusCode.OK, call.code()
assert reply == payload, "echo mismatch"
print("grpc-status OK, payload echoed", file=sys.stderr)
PY
}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# h2load run -> prints "rps mean_us p99_us"
run_load() { # port requests streams tag
  local port="$1" n="$2" m="$3" tag="$4"
  local out="$WORK/h2load-$tag.txt" lf="$WORK/h2load-$tag.log"
  taskset -c "$LOAD_CPU" h2load -n "$n" -c 1 -m "$m" -t 1 \
    -H 'content-type: application/grpc' -H 'te: trailers' -d "$WORK/body.bin" \
    --log-file "$lf" "http://127.0.0.1:$port/bench.Echo/Echo" > "$out" 2>&1 || { cat "$out" >&2; exit 1; }
  grep -q "requests: $n total, $n started, $n done, $n succeeded" "$out" || { cat "$out" >&2; log "h2load: not all requests succeeded"; exit 1; }
  local rps
  rps="$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' "$out")"
  python3 - "$lf" "$rps" <<'PY'
import sys
lat = sorted(int(l.split("\t")[2]) for l in open(sys.argv[1]) if l.strip())
mean = sum(lat) / len(lat)
p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
print("%s %.1f %d" % (sys.argv[2], mean, p99))
PY
}

declare -A R
bench() { # name rss_calls binary [server args]
  local name="$1" rss_calls="$2" bin="$3"; shift 3
  start_server "$name" "$bin" "$@"
  check_status "$PORT"
  run_load "$PORT" 20000 64 "$name-warm" > /dev/null
  read -r rps1 mean1 p991 < <(run_load "$PORT" "$N1" 1 "$name-1")
  read -r rps64 mean64 p9964 < <(run_load "$PORT" "$N64" 64 "$name-64")
  local rss0 rss1
  rss0="$(rss_kb "$SERVER_PID")"
  [ "$rss_calls" -gt 0 ] && run_load "$PORT" "$rss_calls" 64 "$name-rss" > /dev/null
  rss1="$(rss_kb "$SERVER_PID")"
  R[$name.rps1]=$rps1; R[$name.mean1]=$mean1; R[$name.p991]=$p991
  R[$name.rps64]=$rps64; R[$name.mean64]=$mean64; R[$name.p9964]=$p9964
  R[$name.rss0]=$rss0; R[$name.rss1]=$rss1
  printf '%-5s  1 stream: %9.0f req/s  mean %7.1f us  p99 %6d us | 64 streams: %9.0f req/s  mean %7.1f us  p99 %6d us | RSS %s kB -> %s kB after %s more calls\n' \
    "$name" "$rps1" "$mean1" "$p991" "$rps64" "$mean64" "$p9964" "$rss0" "$rss1" "$rss_calls"
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
}

bench raw "$RSS_CALLS" "$WORK/raw_echo_server"
bench rawU 0 "$WORK/raw_echo_server" --unary
bench shim "$RSS_CALLS" "$SHIM_BIN"
bench shimG 0 "$SHIM_BIN" --grpcserver
# The same echo written directly against ShimServerTransport's streams (no GRPCServer):
# separates the transport's cost from GRPCCore's server executor.
bench shimT 0 "$SHIM_BIN" --transport-only
NIO_DIR=Benchmarks/transport-nio
NIO_BIN="$NIO_DIR/.build/release/NIOEchoBench"
if [ "${BENCH_NIO:-0}" = 1 ]; then
  log "building NIOEchoBench (release; the first build compiles BoringSSL, ~18 minutes)"
  swift build -c release --package-path "$NIO_DIR" >&2
fi
if [ -x "$NIO_BIN" ]; then
  bench nio 0 "$NIO_BIN"
else
  echo "nio   skipped: $NIO_BIN not built (run with BENCH_NIO=1)"
  R[nio.rps64]=nan; R[nio.mean1]=nan
fi

python3 - <<PY
import json
raw64, shim64 = float("${R[raw.rps64]}"), float("${R[shim.rps64]}")
raw1, shim1 = float("${R[raw.mean1]}"), float("${R[shim.mean1]}")
nio64, nio1 = float("${R[nio.rps64]}"), float("${R[nio.mean1]}")
have_nio = nio64 == nio64  # not NaN
rss0, rss1 = float("${R[shim.rss0]}"), float("${R[shim.rss1]}")
rawU64, rawU1 = float("${R[rawU.rps64]}"), float("${R[rawU.mean1]}")
shimG64, shimG1 = float("${R[shimG.rps64]}"), float("${R[shimG.mean1]}")
print("ratios: shim/raw throughput at 64 streams %.3f (goal >= 0.9); shim/raw mean latency at 1 stream %.3f (goal <= 1.15, +%.1f us, goal <= 30)"
      % (shim64 / raw64, shim1 / raw1, shim1 - raw1))
print("same op pattern (grpc++ unary): shim/rawU throughput at 64 streams %.3f; mean latency at 1 stream %.3f (+%.1f us)"
      % (shim64 / rawU64, shim1 / rawU1, shim1 - rawU1))
print("through GRPCServer: shimG/raw throughput at 64 streams %.3f; mean latency at 1 stream %.3f"
      % (shimG64 / raw64, shimG1 / raw1))
print("transport only (no GRPCServer): shimT/raw throughput at 64 streams %.3f; mean latency at 1 stream %.3f"
      % (float("${R[shimT.rps64]}") / raw64, float("${R[shimT.mean1]}") / raw1))
if have_nio:
    print("shim/nio throughput at 64 streams %.3f (goal >= 2); shimG/nio %.3f; nio/raw %.3f; nio mean latency at 1 stream %.1f us"
          % (shim64 / nio64, shimG64 / nio64, nio64 / raw64, nio1))
print(json.dumps({
    "raw_rps_64": round(raw64), "shim_rps_64": round(shim64), "nio_rps_64": round(nio64) if have_nio else None,
    "raw_mean_us_1": round(raw1, 1), "shim_mean_us_1": round(shim1, 1),
    "nio_mean_us_1": round(nio1, 1) if have_nio else None,
    "shim_over_raw": round(shim64 / raw64, 3), "shim_over_nio": round(shim64 / nio64, 3) if have_nio else None,
    "rss_growth_pct": round((rss1 - rss0) / rss0 * 100, 1),
    "raw_unary_rps_64": round(rawU64), "raw_unary_mean_us_1": round(rawU1, 1),
    "shim_over_raw_unary": round(shim64 / rawU64, 3),
    "shim_grpcserver_rps_64": round(shimG64), "shim_grpcserver_mean_us_1": round(shimG1, 1),
}))
PY
