#!/usr/bin/env bash
# Interop: Python grpcio (a client nobody here wrote) against the Swift InteropServer
# (grpc.testing.TestService over the LiaisonRPC shim transport), plus health and reflection.
# Last line: "N passed, M failed". Exit status non-zero if anything failed.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
PROTO_DIR="${GRPC_PROTO_DIR:-/usr/share/grpc-proto}"
WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

fail_setup() { echo "setup failed: $*" >&2; echo "0 passed, 1 failed"; exit 1; }

python3 -c "import grpc, grpc_tools, grpc_health, grpc_reflection" 2>/dev/null ||
  python3 -m pip install -q grpcio grpcio-tools grpcio-health-checking grpcio-reflection >&2 ||
  fail_setup "pip install grpcio"
[ -f "$PROTO_DIR/grpc/testing/test.proto" ] || fail_setup "grpc-proto not found in $PROTO_DIR (apt-get install grpc-proto)"

swift build --product InteropServer >&2 || fail_setup "swift build --product InteropServer"
BIN="$(swift build --product InteropServer --show-bin-path)/InteropServer"

# Python stubs, flattened into one module directory (a "grpc.testing" package would shadow grpcio).
python3 -m grpc_tools.protoc -I"$PROTO_DIR" --python_out="$WORK" --grpc_python_out="$WORK" \
  grpc/testing/test.proto grpc/testing/messages.proto grpc/testing/empty.proto || fail_setup "protoc python"
mv "$WORK"/grpc/testing/*.py "$WORK"/ && rm -rf "$WORK/grpc"
sed -i 's/^from grpc\.testing import \(.*\) as/import \1 as/' "$WORK"/*.py
# Descriptor set for the reflection service.
protoc -I"$PROTO_DIR" --include_imports --descriptor_set_out="$WORK/interop.pb" grpc/testing/test.proto ||
  fail_setup "protoc descriptor set"

"$BIN" --port 0 --descriptor-set "$WORK/interop.pb" > "$WORK/server.out" 2> "$WORK/server.err" &
SERVER_PID=$!
PORT=""
for _ in $(seq 1 100); do
  PORT="$(sed -n 's/^listening on \([0-9]*\)$/\1/p' "$WORK/server.out")"
  [ -n "$PORT" ] && break
  sleep 0.1
done
[ -n "$PORT" ] || { cat "$WORK/server.err" >&2; fail_setup "server did not start"; }

timeout 300 python3 "$ROOT/Tests/interop/interop_client.py" "$PORT" "$WORK" 2> "$WORK/client.err" | tee "$WORK/client.out"
RC=${PIPESTATUS[0]}
if [ "$RC" -ne 0 ]; then
  cat "$WORK/client.err" >&2
  tail -n 1 "$WORK/client.out" | grep -q 'passed, .* failed$' || echo "0 passed, 1 failed"
fi
exit "$RC"
