#!/usr/bin/env bash
# Storage benchmark: LiaisonStorage (Swift over libpq) beside pgbench running the same SQL on the
# same server in the same run. PostgreSQL runs with its DEFAULT durability settings (fsync on,
# synchronous_commit on): single-row autocommit is bound by the disk's fsync latency.
#   Benchmarks/storage/run.sh [SECONDS] [CLIENTS...]     defaults: 5 s, clients 1 and 8
# Each figure is the median of ROUNDS (default 3) runs, Swift and pgbench alternating, because a
# shared disk's fsync latency drifts during a run.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
SECONDS_PER_RUN=${1:-5}
ROUNDS=${ROUNDS:-3}
shift || true
CLIENT_COUNTS=("${@:-1 8}")
read -r -a CLIENT_COUNTS <<<"${CLIENT_COUNTS[*]}"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
DIR=$(mktemp -d /tmp/liaison-bench-pg.XXXXXX)
trap 'scripts/pg.sh destroy "$DIR" >/dev/null 2>&1' EXIT
admin=$(scripts/pg.sh start "$DIR" 0)
scripts/pg.sh createdb "$DIR" bench
url="${admin%/postgres}/bench"
swift build -c release --product StorageBenchmark >&2
BIN="$(swift build -c release --show-bin-path)/StorageBenchmark"
reset() {
  psql -q "$url" -c "SET client_min_messages = warning" -c "DROP TABLE IF EXISTS bench_swift, bench_pg" \
    -c "CREATE TABLE bench_swift (id bigserial PRIMARY KEY, k bigint NOT NULL, v text NOT NULL)" \
    -c "CREATE TABLE bench_pg (id bigserial PRIMARY KEY, k bigint NOT NULL, v text NOT NULL)" -c "CHECKPOINT"
}
W=$(mktemp -d)
cat >"$W/autocommit.sql" <<'SQL'
\set k random(1, 1000000000)
INSERT INTO bench_pg (k, v) VALUES (:k, 'payload-0123456789-abcdefghij');
SQL
{
  echo '\set k random(1, 1000000000)'
  echo '\startpipeline'
  echo 'BEGIN;'
  for _ in $(seq 1 100); do echo "INSERT INTO bench_pg (k, v) VALUES (:k, 'payload-0123456789-abcdefghij');"; done
  echo 'COMMIT;'
  echo '\endpipeline'
} >"$W/pipeline.sql"
python3 - "$W/copy.tsv" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(200000):
        f.write(f"{i}\tpayload-0123456789-abcdefghij\n")
PY

pgbench_rows() { # script rows-per-transaction clients
  local tps
  tps=$(PGOPTIONS='' "$PGBIN/pgbench" -n -M prepared -c "$3" -j "$3" -T "$SECONDS_PER_RUN" -f "$W/$1" "$url" 2>/dev/null \
    | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
  python3 -c "print(int(float('$tps') * $2))"
}
psql_copy_rows() { # clients: run COPY of 200k rows in parallel, repeatedly, for SECONDS
  python3 - "$url" "$W/copy.tsv" "$1" "$SECONDS_PER_RUN" <<'PY'
import subprocess, sys, time, threading
url, path, clients, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
rows = [0]; lock = threading.Lock(); end = time.time() + secs
def work():
    while time.time() < end:
        subprocess.run(["psql", "-q", url, "-c", "\\copy bench_pg (k, v) FROM '%s'" % path], check=True)
        with lock: rows[0] += 200000
start = time.time()
ts = [threading.Thread(target=work) for _ in range(clients)]
[t.start() for t in ts]; [t.join() for t in ts]
print(int(rows[0] / (time.time() - start)))
PY
}
swift_rows() { "$BIN" "$url" "$1" "$2" "$SECONDS_PER_RUN" | sed -n 's/^rows_per_second=//p'; }

printf '%-12s %8s %14s %14s %8s\n' mode clients swift_rows/s pgbench_rows/s ratio
json="{"
for clients in "${CLIENT_COUNTS[@]}"; do
  for mode in autocommit pipeline copy; do
    ss=(); ps=()
    for _ in $(seq 1 "$ROUNDS"); do
      reset
      ss+=("$(swift_rows "$mode" "$clients")")
      reset
      case $mode in
        autocommit) ps+=("$(pgbench_rows autocommit.sql 1 "$clients")") ;;
        pipeline) ps+=("$(pgbench_rows pipeline.sql 100 "$clients")") ;;
        copy) ps+=("$(psql_copy_rows "$clients")") ;;
      esac
    done
    s=$(printf '%s\n' "${ss[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    p=$(printf '%s\n' "${ps[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    ratio=$(python3 -c "print(round($s / max($p, 1), 2))")
    printf '%-12s %8s %14s %14s %8s\n' "$mode" "$clients" "$s" "$p" "$ratio"
    json="$json\"${mode}_c${clients}_swift\": $s, \"${mode}_c${clients}_pgbench\": $p, \"${mode}_c${clients}_ratio\": $ratio, "
  done
done
echo "(PostgreSQL defaults: fsync=on, synchronous_commit=on; COPY reference is psql \\copy of the same rows)"
echo "${json%, }}"
