#!/usr/bin/env bash
# Where linking waits: runs the release CorrelationBenchmark (small blast part, LINK_REPORTS linked) on a
# cluster it owns while sampling pg_stat_activity of the servers every 20 ms (one statement per sample,
# committed: a long sampling transaction would hold back pruning of the hot counter rows and slow
# linking down) and top every second. Prints wait-event shares per database (link1: 1 instance,
# link2: 2 instances), the statements waiting on locks, and the shards of the backends.
#   Benchmarks/correlation/waits.sh OUT [LINK_REPORTS]   (OUT.top holds top; build the release product first)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
DIR=$(mktemp -d /tmp/liaison-corr-prof-pg.XXXXXX)
trap 'scripts/pg.sh destroy "$DIR" >/dev/null 2>&1' EXIT
admin=$(scripts/pg.sh start "$DIR" 0)
for db in blast link1 link2; do scripts/pg.sh createdb "$DIR" "$db"; done
base="${admin%/postgres}"
BIN="$(swift build -c release --show-bin-path)/CorrelationBenchmark"
psql -qAt "$admin" >"$1" 2>&1 <<'SQL' &
CREATE TEMP TABLE s (db text, app text, state text, wt text, we text, q text, pid int);
DO $$ DECLARE seen boolean := false; quiet int := 0; n int; BEGIN FOR i IN 1..3000 LOOP
  PERFORM pg_stat_clear_snapshot();
  INSERT INTO s SELECT datname, application_name, state, coalesce(wait_event_type, 'CPU'), coalesce(wait_event, '-'),
      CASE WHEN wait_event_type = 'Lock' THEN left(regexp_replace(query, '\s+', ' ', 'g'), 90) END, pid
    FROM pg_stat_activity WHERE application_name LIKE 'bench-%' AND backend_type = 'client backend';
  GET DIAGNOSTICS n = ROW_COUNT;
  IF n > 0 THEN seen := true; quiet := 0; ELSIF seen THEN quiet := quiet + 1; END IF;
  EXIT WHEN quiet > 100;
  PERFORM pg_sleep(0.02); COMMIT;
END LOOP; END $$;
SELECT db, state, wt, we, count(*), round(100.0 * count(*) / sum(count(*)) OVER (PARTITION BY db), 1) FROM s GROUP BY 1, 2, 3, 4 ORDER BY 1, 5 DESC;
SELECT db, q, count(*) FROM s WHERE q IS NOT NULL GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 8;
SELECT db, app, pid % 8 AS shard, count(DISTINCT pid) FROM s GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
SQL
sampler=$!
top -b -d 1 -n 25 > "$1.top" &
"$BIN" "$base/blast" "$base/link1" "$base/link2" 20000 20000 "${2:-4000}" 2>&1 | grep -E "^\{|instance"
wait $sampler
cat "$1"
