#!/usr/bin/env bash
# sla benchmark: CUSTOMERS customers under tier contracts, an incident whose blast radius holds
# 30% of them: time from the BlastRadiusChanged event to the complete at-risk ranking, and
# ListAtRiskCustomers first-page latency over gRPC, beside a plain SQL query computing the same
# first page from the raw ledger (range_agg union, same server, same run).
#   Benchmarks/sla/run.sh [CUSTOMERS] [LEDGER_LINES]     defaults: 100000 20000
# Set BUILD=debug to skip the release build. The last line is JSON.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
CUSTOMERS=${1:-100000}
LINES=${2:-20000}
CONF=${BUILD:-release}
DIR=$(mktemp -d /tmp/liaison-sla-bench-pg.XXXXXX)
trap 'scripts/pg.sh destroy "$DIR" >/dev/null 2>&1' EXIT
admin=$(scripts/pg.sh start "$DIR" 0)
scripts/pg.sh createdb "$DIR" sla
swift build -c "$CONF" --product SLABenchmark >&2
BIN="$(swift build -c "$CONF" --show-bin-path)/SLABenchmark"
"$BIN" "${admin%/postgres}/sla" "$ROOT/services/sla/migrations" "$CUSTOMERS" "$LINES"
