#!/usr/bin/env bash
# Runs every test on a throwaway PostgreSQL cluster (loopback, free port, fsync off), then tears
# it down. The summary line at the end counts the suites that passed and failed.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PG_DIR="$(mktemp -d /tmp/liaison-test-pg.XXXXXX)"
cleanup() { scripts/pg.sh destroy "$PG_DIR" >/dev/null 2>&1 || true; }
trap cleanup EXIT INT TERM

passed=0; failed=0; failures=()
step() {
  local name="$1"; shift
  echo "=== $name"
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$name"); fi
}

scripts/pg.sh start "$PG_DIR" 0 fast >/dev/null || { echo "cannot start PostgreSQL"; echo "0 passed, 1 failed"; exit 1; }
export LIAISON_TEST_PG_DIR="$PG_DIR"

step "protos: buf lint" protos/lint.sh
step "docker-compose.yml validates" docker-compose -f docker-compose.yml config -q
step "protos: generated code in sync" protos/check-generated.sh
step "contract: Python grpcio-tools" python3 -m pytest -q Tests/python
step "swift build (tests)" swift build --build-tests
step "swift test" timeout --kill-after=30 1500 swift test --skip-build
step "shim under AddressSanitizer" make -s -C Tests/shim asan
step "shim under ThreadSanitizer" make -s -C Tests/shim tsan
step "interop: grpcio client against the Swift server" Tests/interop/run.sh
step "fuzz: hostile requests to every RPC of every service with handlers (60 s; make fuzz: 300 s)" env FUZZ_SECONDS="${FUZZ_SECONDS:-60}" Tests/fuzz/run.sh
step "overload: 10x the benchmark's concurrency for 15 s (make overload: 60 s)" env OVERLOAD_SECONDS="${OVERLOAD_SECONDS:-15}" Tests/overload/run.sh
step "compose stack on a real Docker engine (private network namespace)" Tests/compose/run.sh

echo
[ ${#failures[@]} -gt 0 ] && printf 'failed: %s\n' "${failures[@]}"
echo "suites: $passed passed, $failed failed"
[ "$failed" = 0 ]
