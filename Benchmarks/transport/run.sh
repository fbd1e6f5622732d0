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
#      PAYLOAD (bytes, default 64), ROUNDS (interleaved rounds, default 3; medians reported).
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
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

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

declare -A R PORTS SPIDS
NAMES=()
serve() { # name binary [server args]: start, check grpc-status, warm up
  local name="$1" bin="$2"; shift 2
  start_server "$name" "$bin" "$@"
  check_status "$PORT"
  run_load "$PORT" 20000 64 "$name-warm" > /dev/null
  PORTS[$name]=$PORT; SPIDS[$name]=$SERVER_PID; NAMES+=("$name")
}
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

serve raw "$WORK/raw_echo_server"
serve rawU "$WORK/raw_echo_server" --unary
serve shim "$SHIM_BIN"
serve shimG "$SHIM_BIN" --grpcserver
# The same echo written directly against ShimServerTransport's streams (no GRPCServer):
# separates the transport's cost from GRPCCore's server executor.
serve shimT "$SHIM_BIN" --transport-only
NIO_DIR=Benchmarks/transport-nio
NIO_BIN="$NIO_DIR/.build/release/NIOEchoBench"
if [ "${BENCH_NIO:-0}" = 1 ]; then
  log "building NIOEchoBench (release; the first build compiles BoringSSL, ~18 minutes)"
  swift build -c release --package-path "$NIO_DIR" >&2
fi
if [ -x "$NIO_BIN" ]; then
  serve nio "$NIO_BIN"
else
  echo "nio   skipped: $NIO_BIN not built (run with BENCH_NIO=1)"
  R[nio.rps64]=nan; R[nio.mean1]=nan
fi

# All servers are up (idle ones cost nothing) and measured in interleaved rounds, so a slow
# patch of this shared machine hits every server alike; each figure is the median of ROUNDS.
ROUNDS="${ROUNDS:-3}"
declare -A S
for round in $(seq 1 "$ROUNDS"); do
  for name in "${NAMES[@]}"; do
    read -r rps1 mean1 p991 < <(run_load "${PORTS[$name]}" "$N1" 1 "$name-1-$round")
    t0=$(cpu_ticks "${SPIDS[$name]}")
    read -r rps64 mean64 p9964 < <(run_load "${PORTS[$name]}" "$N64" 64 "$name-64-$round")
    t1=$(cpu_ticks "${SPIDS[$name]}")
    # Server CPU (user + system) per call at 64 streams, in microseconds.
    cpu64=$(python3 -c "print(round(($t1 - $t0) / $(getconf CLK_TCK) / $N64 * 1e6, 1))")
    for k in rps1 mean1 p991 rps64 mean64 p9964 cpu64; do S[$name.$k]="${S[$name.$k]:-} ${!k}"; done
  done
done
for name in "${NAMES[@]}"; do
  for k in rps1 mean1 p991 rps64 mean64 p9964 cpu64; do
    # shellcheck disable=SC2086
    R[$name.$k]=$(median ${S[$name.$k]})
  done
done
# Memory: RSS of the raw and shim servers before and after RSS_CALLS more calls.
for name in raw shim; do
  R[$name.rss0]="$(rss_kb "${SPIDS[$name]}")"
  [ "$RSS_CALLS" -gt 0 ] && run_load "${PORTS[$name]}" "$RSS_CALLS" 64 "$name-rss" > /dev/null
  R[$name.rss1]="$(rss_kb "${SPIDS[$name]}")"
done
for name in "${NAMES[@]}"; do
  printf '%-5s  1 stream: %9.0f req/s  mean %7.1f us  p99 %6d us | 64 streams: %9.0f req/s  mean %7.1f us  p99 %6d us  server CPU %5.1f us/call | medians of %s rounds: 64-stream req/s%s; 1-stream mean us%s%s\n' \
    "$name" "${R[$name.rps1]}" "${R[$name.mean1]}" "${R[$name.p991]}" "${R[$name.rps64]}" "${R[$name.mean64]}" "${R[$name.p9964]}" "${R[$name.cpu64]}" \
    "$ROUNDS" "${S[$name.rps64]}" "${S[$name.mean1]}" \
    "$([ -n "${R[$name.rss0]:-}" ] && echo " | RSS ${R[$name.rss0]} kB -> ${R[$name.rss1]} kB after $RSS_CALLS more calls")"
done
for name in "${NAMES[@]}"; do kill "${SPIDS[$name]}" 2>/dev/null; wait "${SPIDS[$name]}" 2>/dev/null || true; done

python3 - <<PY
import json
raw64, shim64 = float("${R[raw.rps64]}"), float("${R[shim.rps64]}")
raw1, shim1 = float("${R[raw.mean1]}"), float("${R[shim.mean1]}")
nio64, nio1 = float("${R[nio.rps64]}"), float("${R[nio.mean1]}")
have_nio = nio64 == nio64  # not NaN
rss0, rss1 = float("${R[shim.rss0]}"), float("${R[shim.rss1]}")
rawU64, rawU1 = float("${R[rawU.rps64]}"), float("${R[rawU.mean1]}")
shimG64, shimG1 = float("${R[shimG.rps64]}"), float("${R[shimG.mean1]}")
rawcpu, rawUcpu, shimcpu = float("${R[raw.cpu64]}"), float("${R[rawU.cpu64]}"), float("${R[shim.cpu64]}")
print("server CPU per call at 64 streams: raw %.1f us, rawU %.1f us, shim %.1f us (shim - rawU = %.1f us of Swift per call)"
      % (rawcpu, rawUcpu, shimcpu, shimcpu - rawUcpu))
print("ratios: shim/raw throughput at 64 streams %.3f (goal >= 0.9); shim/raw mean latency at 1 stream %.3f (goal <= 1.15, +%.1f us, goal <= 30)"
      % (shim64 / raw64, shim1 / raw1, shim1 - raw1))
# The same ratio round by round: a round measures raw and shim seconds apart, so each pair shares
# the machine's state; their median is the steadier estimate with few rounds.
pairs = [s / r for r, s in zip(map(float, "${S[raw.mean1]}".split()), map(float, "${S[shim.mean1]}".split()))]
pairs_median = sorted(pairs)[(len(pairs) - 1) // 2]  # as median() above: the lower middle for an even count
print("shim/raw mean latency at 1 stream, round by round: %s (median %.3f)" % (" ".join("%.3f" % p for p in pairs), pairs_median))
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
    "shim_over_raw_latency_1_rounds": [round(p, 3) for p in pairs],
    "shim_over_raw_latency_1_round_median": round(pairs_median, 3),
    "rss_growth_pct": round((rss1 - rss0) / rss0 * 100, 1),
    "raw_unary_rps_64": round(rawU64), "raw_unary_mean_us_1": round(rawU1, 1),
    "shim_over_raw_unary": round(shim64 / rawU64, 3),
    "shim_grpcserver_rps_64": round(shimG64), "shim_grpcserver_mean_us_1": round(shimG1, 1),
    "raw_cpu_us_per_call": rawcpu, "raw_unary_cpu_us_per_call": rawUcpu, "shim_cpu_us_per_call": shimcpu,
}))
PY
