#!/usr/bin/env bash
# Overload (issue 20): 10x the benchmark's highest concurrency against one intake and one
# correlation on a throwaway PostgreSQL; see Tests/overload/overload.py for the checks.
#   OVERLOAD_SECONDS=60 Tests/overload/run.sh     (make overload; make test runs 15 s)
# Last line: "N passed, M failed". Exit status non-zero if anything failed.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
BIN_DIR="${BIN_DIR:-$ROOT/.build/debug}"
export OVERLOAD_SECONDS="${OVERLOAD_SECONDS:-60}"
fail_setup() { echo "overload setup failed: $*" >&2; echo "0 passed, 1 failed"; exit 1; }
for b in intake correlation; do [ -x "$BIN_DIR/$b" ] || fail_setup "$BIN_DIR/$b not found (build first, or set BIN_DIR)"; done
WORK="$(mktemp -d /tmp/liaison-overload.XXXXXX)"
PG_DIR="$(mktemp -d /tmp/liaison-overload-pg.XXXXXX)"
cleanup() { scripts/pg.sh destroy "$PG_DIR" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$WORK/bin"
cp "$BIN_DIR/intake" "$BIN_DIR/correlation" "$WORK/bin/" || fail_setup "cannot copy the binaries"
pg_url="$(scripts/pg.sh start "$PG_DIR" 0 fast)" || fail_setup "cannot start PostgreSQL"
scripts/pg.sh createdb "$PG_DIR" intake correlation || fail_setup "cannot create the databases"
timeout --kill-after=10 "$(( ${OVERLOAD_SECONDS%.*} + 240 ))" python3 "$ROOT/Tests/overload/overload.py" "$pg_url" "$WORK" "$WORK/bin"
rc=$?
[ "$rc" -ge 124 ] && { echo "overload: timed out or killed (status $rc)"; echo "0 passed, 1 failed"; }
exit "$rc"
