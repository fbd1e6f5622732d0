#!/usr/bin/env bash
# Fuzz / bad-input suite (issue 20) over real intake and correlation processes on a throwaway
# PostgreSQL cluster: hostile and byte-mutated requests to every RPC, with status, liveness,
# health and row-count checks (see Tests/fuzz/fuzz.py for the checks and the FUZZ_* settings).
#   BIN_DIR=.build/release Tests/fuzz/run.sh        # default BIN_DIR: .build/debug
#   FUZZ_SEED=7 FUZZ_SECONDS=30 Tests/fuzz/run.sh
#   FUZZ_KEEP=1 keeps the service and PostgreSQL logs (the path is printed)
# Last line: "N passed, M failed". Exit status non-zero if anything failed.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
export BIN_DIR="${BIN_DIR:-$ROOT/.build/debug}"
export PYTHONDONTWRITEBYTECODE=1   # nothing generated lands in the tree
FUZZ_SECONDS="${FUZZ_SECONDS:-90}"

fail_setup() { echo "fuzz setup failed: $*" >&2; echo "0 passed, 1 failed"; exit 1; }
python3 -c "import grpc, grpc_tools" 2>/dev/null || fail_setup "python3 needs grpcio and grpcio-tools"
BINARIES="$(python3 "$ROOT/Tests/fuzz/fuzz.py" --binaries)" || fail_setup "Tests/fuzz/fuzz.py --binaries"
for b in $BINARIES; do
  [ -x "$BIN_DIR/$b" ] || fail_setup "$BIN_DIR/$b not found (build first, or set BIN_DIR)"
done

WORK="$(mktemp -d /tmp/liaison-fuzz.XXXXXX)"
PG_DIR="$(mktemp -d /tmp/liaison-fuzz-pg.XXXXXX)"   # its own folder: the cluster runs as postgres
cleanup() {
  [ "${FUZZ_KEEP:-0}" = 1 ] && cp "$PG_DIR/server.log" "$WORK/postgres.log" 2>/dev/null
  scripts/pg.sh destroy "$PG_DIR" >/dev/null 2>&1 || true
  if [ "${FUZZ_KEEP:-0}" = 1 ]; then echo "fuzz: logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Private copies: a rebuild during the run cannot swap the binaries under the running processes.
echo "fuzz: binaries from $BIN_DIR"
mkdir -p "$WORK/bin"
for b in $BINARIES; do cp "$BIN_DIR/$b" "$WORK/bin/" || fail_setup "cannot copy $BIN_DIR/$b"; done
export BIN_DIR="$WORK/bin"

pg_url="$(scripts/pg.sh start "$PG_DIR" 0 fast)" || fail_setup "cannot start PostgreSQL"
scripts/pg.sh createdb "$PG_DIR" $BINARIES || fail_setup "cannot create the databases"

# The fuzz loop has FUZZ_SECONDS; start-up, seeding and the summary get the rest.
timeout --kill-after=10 "$(( ${FUZZ_SECONDS%.*} + 150 ))" \
  python3 "$ROOT/Tests/fuzz/fuzz.py" --pg-url "$pg_url" --work "$WORK"
rc=$?
if [ "$rc" -ge 124 ]; then
  echo "fuzz: timed out or killed (status $rc)"
  echo "0 passed, 1 failed"
fi
exit "$rc"
