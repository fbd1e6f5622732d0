#!/usr/bin/env bash
# Correlation benchmark: blast radius from the live aggregates beside PostgreSQL GROUPING SETS over
# the raw rows (same run, same server, same engine), and linking throughput with 1 and 2 instances.
#   Benchmarks/correlation/run.sh [REPORTS] [CUSTOMERS] [LINK_REPORTS]   defaults: 1000000 1000000 4000
# Set BUILD=debug to skip the release build. The last line is JSON.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
REPORTS=${1:-1000000}
CUSTOMERS=${2:-1000000}
LINK=${3:-4000}
CONF=${BUILD:-release}
DIR=$(mktemp -d /tmp/liaison-corr-bench-pg.XXXXXX)
trap 'scripts/pg.sh destroy "$DIR" >/dev/null 2>&1' EXIT
admin=$(scripts/pg.sh start "$DIR" 0)
for db in blast link1 link2; do scripts/pg.sh createdb "$DIR" "$db"; done
base="${admin%/postgres}"
swift build -c "$CONF" --product CorrelationBenchmark >&2
BIN="$(swift build -c "$CONF" --show-bin-path)/CorrelationBenchmark"
"$BIN" "$base/blast" "$base/link1" "$base/link2" "$REPORTS" "$CUSTOMERS" "$LINK"
