#!/usr/bin/env bash
# Intake benchmark: accepted reports per second through the gRPC API (the real `intake` executable,
# shim transport on loopback, durable commit) beside pgbench running the same SQL transaction as
# SubmitReport (the new-case path: idempotency lock and lookup, customer row lock, candidate
# query, case + history + report rows, outbox events (ReportAccepted, and CaseOpened since case
# events go to correlation by default), idempotency record; the request fingerprint
# arrives computed, as intake computes it) on the same server in the same run. PostgreSQL runs with its DEFAULT durability settings (fsync on, synchronous_commit on).
# The pgbench payload sizes (report data, fingerprint, event, stored response) are measured from
# the rows intake wrote in this run.
#   [ROUNDS=3] Benchmarks/intake/run.sh [SECONDS] [CLIENTS...]     defaults: 5 s, clients 1 and 16
# Modes: single = one SubmitReport per RPC; batch = BatchSubmitReports of 100 (one transaction;
# independent entries share round trips in waves, one statement per table), compared with pgbench
# running the batch SQL (see "The batch reference" below). Report texts are random words, so every report
# opens a case: the path the pgbench transaction runs. "intake single, joins" then sends texts that
# join each customer's open case (the duplicate path), for the record.
# Each row also gives CPU microseconds per report of the server, PostgreSQL and the load generator.
# Intake's outbox relay points at an address where nothing listens (there is no correlation in this
# run): deliveries fail and back off, a small extra load that pgbench does not have.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
SECONDS_PER_RUN=${1:-5}
shift || true
CLIENT_COUNTS=("${@:-1 16}")
read -r -a CLIENT_COUNTS <<<"${CLIENT_COUNTS[*]}"
CUSTOMERS=1000
CONFIG=${CONFIG:-release}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
DIR=$(mktemp -d /tmp/liaison-bench-intake.XXXXXX)
W=$(mktemp -d)
INTAKE_PID=
cleanup() {
  [ -n "$INTAKE_PID" ] && kill "$INTAKE_PID" 2>/dev/null && wait "$INTAKE_PID" 2>/dev/null
  scripts/pg.sh destroy "$DIR" >/dev/null 2>&1
  rm -rf "$W"
}
trap cleanup EXIT
admin=$(scripts/pg.sh start "$DIR" 0)
scripts/pg.sh createdb "$DIR" intake_bench pg_ref
intake_url="${admin%/postgres}/intake_bench"
ref_url="${admin%/postgres}/pg_ref"

swift build -c "$CONFIG" --product intake >&2
swift build -c "$CONFIG" --product IntakeBenchmark >&2
BIN="$(swift build -c "$CONFIG" --show-bin-path)"
# The load generator: C++ over grpc++ (LOADGEN=cpp, the default) or the Swift GRPCClient
# (LOADGEN=swift, several times the CPU per call on the cores the server needs).
LOADGEN=${LOADGEN:-cpp}
if [ "$LOADGEN" = cpp ]; then
  g++ -std=c++17 -O2 -DNDEBUG Benchmarks/intake/loadgen.cpp -o "$W/loadgen" \
    -lgrpc++ -lgrpc -lgpr -lprotobuf -labsl_synchronization -lpthread
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Both databases get the intake schema through the executable's own migrate command.
for url in "$intake_url" "$ref_url"; do
  LIAISON_DATABASE_URL="$url" LIAISON_MIGRATIONS_DIR="$ROOT/services/intake/migrations" LIAISON_LOG_LEVEL=warning \
    "$BIN/intake" migrate >&2
done

port=$(free_port)
LIAISON_DATABASE_URL="$intake_url" LIAISON_LISTEN_ADDRESS="127.0.0.1:$port" LIAISON_ADMIN_ADDRESS=127.0.0.1:0 \
  LIAISON_MIGRATIONS_DIR="$ROOT/services/intake/migrations" LIAISON_LOG_LEVEL=error \
  LIAISON_DATABASE_POOL_SIZE=16 LIAISON_CORRELATION_TARGET="ipv4:127.0.0.1:$(free_port)" LIAISON_INTAKE_CUSTOMER_EVENT_DESTINATIONS=correlation \
  "$BIN/intake" serve >"$W/intake.log" 2>&1 &
INTAKE_PID=$!
for _ in $(seq 1 100); do "$BIN/intake" probe "127.0.0.1:$port" >/dev/null 2>&1 && break; sleep 0.2; done
"$BIN/IntakeBenchmark" "ipv4:127.0.0.1:$port" setup "$CUSTOMERS" >&2

# CPU time per report, in microseconds, of each party: the server under test (intake), PostgreSQL
# (the postmaster, its live children, and the children it reaped: cutime/cstime) and the load
# generator. On 2 cores they share the same CPUs, so these say where the time goes.
PM_PID=$(head -1 "$DIR/data/postmaster.pid")
TICK_US=$((1000000 / $(getconf CLK_TCK)))
pg_ticks() {
  local t c
  t=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$PM_PID/stat")
  for c in $(pgrep -P "$PM_PID"); do t=$((t + $(awk '{print $14 + $15}' "/proc/$c/stat" 2>/dev/null || echo 0))); done
  echo "$t"
}
pg_children() { pgrep -P "$PM_PID" | wc -l; }
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
client_ticks() { awk '{printf "%d", ($1 + $2) * 100}' "$W/time"; }
per_report() { python3 -c "print(round($1 * $TICK_US / max($2, 1)))"; }  # ticks reports -> us

# Each figure is the median of ROUNDS rounds; the rounds alternate intake and pgbench, because
# this machine drifts by +-15% over minutes and single runs of either side are not comparable.
ROUNDS=${ROUNDS:-3}
median() { python3 -c "import statistics, sys; print(round(statistics.median(float(v) for v in sys.argv[1:])))" "$@"; }
declare -A INTAKE CS CP CC
run_intake() { # mode clients texts -> appends to INTAKE[mode,clients,texts] and CS/CP/CC (server, pg, client us)
  local mode=$1 clients=$2 texts=$3 out i0 p0 i1 p1 n rps before method count
  if [ "$LOADGEN" = cpp ]; then
    # Enough fresh requests (own request ids) for the run; counted as rows that became durable.
    if [ "$mode" = single ]; then method=SubmitReport; count=$((6000 * SECONDS_PER_RUN)); else method=BatchSubmitReports; count=$((80 * SECONDS_PER_RUN)); fi
    "$BIN/IntakeBenchmark" generate "$mode" "$count" "$CUSTOMERS" "$texts" "$W/requests.bin"
    before=$(psql -qtA "$intake_url" -c "SELECT count(*) FROM reports")
  fi
  psql -q "$intake_url" -c CHECKPOINT
  i0=$(proc_ticks "$INTAKE_PID"); p0=$(pg_ticks)
  if [ "$LOADGEN" = cpp ]; then
    out=$(/usr/bin/time -f "%U %S" -o "$W/time" "$W/loadgen" "ipv4:127.0.0.1:$port" \
      "/liaison.intake.v1.IntakeService/$method" "$W/requests.bin" "$clients" "$SECONDS_PER_RUN")
  else
    out=$(/usr/bin/time -f "%U %S" -o "$W/time" "$BIN/IntakeBenchmark" "ipv4:127.0.0.1:$port" "$mode" "$clients" \
      "$SECONDS_PER_RUN" "$CUSTOMERS" "$texts")
  fi
  i1=$(proc_ticks "$INTAKE_PID"); p1=$(pg_ticks)
  if [ "$LOADGEN" = cpp ]; then
    [ "$(sed -n 's/^calls_failed=//p' <<<"$out")" = 0 ] || { echo "intake $mode c$clients: failed calls: $out" >&2; exit 1; }
    n=$(( $(psql -qtA "$intake_url" -c "SELECT count(*) FROM reports") - before ))
    rps=$(python3 -c "print(int($n / $(sed -n 's/^elapsed_seconds=//p' <<<"$out")))")
  else
    n=$(sed -n 's/^reports=//p' <<<"$out")
    rps=$(sed -n 's/^reports_per_second=//p' <<<"$out")
  fi
  local k=$mode,$clients,$texts
  INTAKE[$k]+="$rps "
  CS[$k]+="$(per_report $((i1 - i0)) "$n") "
  CP[$k]+="$(per_report $((p1 - p0)) "$n") "
  CC[$k]+="$(per_report "$(client_ticks)" "$n") "
}
intake_round() {
  for clients in "${CLIENT_COUNTS[@]}"; do
    for mode in single batch; do run_intake "$mode" "$clients" new; done
  done
}
intake_round

# Sizes of what intake wrote, for the pgbench transaction.
read -r DATA FP CAND EVENT OPENED RESP < <(psql -qtA -F ' ' "$intake_url" -c "
  SELECT (SELECT avg(length(data))::int FROM reports), (SELECT avg(length(fingerprint))::int FROM reports),
         (SELECT avg(length(candidates))::int FROM cases),
         (SELECT avg(length(payload))::int FROM outbox WHERE topic = 'liaison.intake.v1.ReportAccepted'),
         (SELECT coalesce(avg(length(payload))::int, 0) FROM outbox WHERE topic = 'liaison.intake.v1.CaseOpened'),
         (SELECT avg(length(response))::int FROM idempotency_keys WHERE scope = 'intake.SubmitReport')")
psql -q "$ref_url" -c "INSERT INTO customers (id, display_name, account_number, account_partition, region, country,
    tier, white_glove, features, platforms, client_versions, owning_agent, state, data, contacts, create_time, update_time)
  SELECT 'b' || i, 'Bench ' || i, (1000 + i)::text, '1', 'eu-south', 'IT', 'TIER_STANDARD', false, '{}', '{}', '{}',
         'agents/owner', 'ACTIVE', decode(repeat('5a', 60), 'hex'), '\x'::bytea, now(), now()
  FROM generate_series(0, $CUSTOMERS - 1) i"
cat >"$W/submit.sql" <<SQL
\set c random(0, $CUSTOMERS - 1)
SELECT gen_random_uuid()::text AS rid, gen_random_uuid()::text AS cid, gen_random_uuid()::text AS rpt, gen_random_uuid()::text AS eid \gset
BEGIN;
SELECT pg_advisory_xact_lock(hashtextextended('intake.SubmitReport' || chr(31) || :rid, 7));
SELECT response, fingerprint = repeat('ab', 32) FROM idempotency_keys WHERE scope = 'intake.SubmitReport' AND request_id = :rid;
SELECT data, owning_agent FROM customers WHERE id = 'b' || :c FOR UPDATE;
SELECT id, owner, candidates FROM cases WHERE customer_id = 'b' || :c AND state = 'OPEN' ORDER BY update_time DESC LIMIT 100;
INSERT INTO cases (id, customer_id, title, state, owner, symptom, outcome, outcome_note, merged_into, incidents, customer_notify_time, close_time, version, create_time, update_time, candidates) VALUES (:cid, 'b' || :c, 'Customer reports issue', 'OPEN', 'agents/a1', 'SYMPTOM_KIND_ERRORS', 0, '', '', '{}', NULL, NULL, 1, now(), now(), decode(repeat('a5', $CAND), 'hex'));
INSERT INTO case_history (case_id, seq, action, state, actor, time, related, note) VALUES (:cid, 0, 1, 1, 'agents/a1', now(), ARRAY['reports/' || :rpt, 'agents/a1'], '');
INSERT INTO reports (id, customer_id, case_id, channel, symptom, agent, service_hint, ticket_system, ticket_id, duplicate, fingerprint, snapshot_region, snapshot_country, snapshot_tier, snapshot_partition, snapshot_white_glove, data, receive_time, create_time, update_time) VALUES (:rpt, 'b' || :c, :cid, 'REPORT_CHANNEL_PHONE', 'SYMPTOM_KIND_ERRORS', 'agents/a1', 'svc-1', NULL, NULL, false, decode(repeat('a5', $FP), 'hex'), 'eu-south', 'IT', 'TIER_STANDARD', '1', false, decode(repeat('5a', $DATA), 'hex'), now(), now(), now());
INSERT INTO outbox (event_id, destination, topic, payload) VALUES (:eid::uuid, 'correlation', 'liaison.intake.v1.ReportAccepted', decode(repeat('5a', $EVENT), 'hex')), (gen_random_uuid(), 'correlation', 'liaison.intake.v1.CaseOpened', decode(repeat('5a', $OPENED), 'hex'));
INSERT INTO idempotency_keys (scope, request_id, fingerprint, response) VALUES ('intake.SubmitReport', :rid, repeat('ab', 32), decode(repeat('5a', $RESP), 'hex'));
COMMIT;
SQL
# The batch reference: what intake's BatchSubmitReports sends for 100 new reports, in ONE
# transaction and one pgbench pipeline, as IntakeRepository.streamWave sends them: the batch's
# customers locked in id order, the idempotency locks in one statement over an array, then in eight
# chunks of 13 (the last of 9) the lookups and the duplicate candidates (one statement each over arrays), then per
# chunk one multi-row INSERT per table (cases, history, reports, outbox, idempotency keys), and
# COMMIT. Ids derive from the transaction id, so nothing waits for a reply and no statement needs
# more than pgbench's 255 variables. Its tx/s x 100 is the reports/s a batch could reach if
# intake cost nothing but its SQL.
{
  n=100
  chunks=8  # IntakeRepository.waveChunks; chunks of max(8, ceil(n / chunks)) entries, the last one shorter
  size=$(((n + chunks - 1) / chunks)); [ "$size" -ge 8 ] || size=8
  list() { # template with @i for the row number, first, last -> comma-separated list
    local t=$1 from=$2 to=$3 i
    for i in $(seq "$from" "$to"); do printf '%s' "${t//@i/$i}"; [ "$i" = "$to" ] || printf ', '; done; }
  for i in $(seq 1 $n); do echo "\\set c$i random(0, $CUSTOMERS - 1)"; done
  echo "\\startpipeline"
  echo "BEGIN;"
  echo "SELECT data, owning_agent, id FROM customers WHERE id = ANY(ARRAY[$(list "'b' || :c@i" 1 $n)]) ORDER BY id FOR UPDATE;"
  echo "SELECT count(pg_advisory_xact_lock(h)) FROM (SELECT DISTINCT hashtextextended(k, 7) AS h FROM unnest(ARRAY[$(list "'intake.SubmitReport' || chr(31) || md5(txid_current() || '-r@i')" 1 $n)]) AS k ORDER BY 1 OFFSET 0) locks;"
  for ((k = 0; k * size < n; k++)); do
    from=$((k * size + 1)); to=$(((k + 1) * size)); [ "$to" -le "$n" ] || to=$n
    echo "SELECT ik.response, ik.fingerprint = (a.f)[q.i], q.i::int8 FROM (SELECT ARRAY[$(list "md5(txid_current() || '-r@i')" $from $to)] AS r, array_fill(repeat('ab', 32), ARRAY[$((to - from + 1))]) AS f) a CROSS JOIN LATERAL generate_subscripts(a.r, 1) AS q(i) CROSS JOIN LATERAL (SELECT response, fingerprint FROM idempotency_keys WHERE scope = 'intake.SubmitReport' AND request_id = (a.r)[q.i] LIMIT 1) ik;"
    echo "SELECT oc.id, oc.owner, oc.candidates, q.i FROM unnest(ARRAY[$(list "'b' || :c@i" $from $to)]) WITH ORDINALITY AS q(customer_id, i) CROSS JOIN LATERAL (SELECT id, owner, candidates FROM cases WHERE customer_id = q.customer_id AND state = 'OPEN' ORDER BY update_time DESC LIMIT 100) oc;"
  done
  for ((k = 0; k * size < n; k++)); do
    from=$((k * size + 1)); to=$(((k + 1) * size)); [ "$to" -le "$n" ] || to=$n
    echo "INSERT INTO cases (id, customer_id, title, state, owner, symptom, outcome, outcome_note, merged_into, incidents, customer_notify_time, close_time, version, create_time, update_time, candidates) VALUES $(list "(md5(txid_current() || '-c@i'), 'b' || :c@i, 'Customer reports issue', 'OPEN', 'agents/a1', 'SYMPTOM_KIND_ERRORS', 0, '', '', '{}', NULL, NULL, 1, now(), now(), decode(repeat('a5', $CAND), 'hex'))" $from $to);"
    echo "INSERT INTO case_history (case_id, seq, action, state, actor, time, related, note) VALUES $(list "(md5(txid_current() || '-c@i'), 0, 1, 1, 'agents/a1', now(), ARRAY['reports/' || md5(txid_current() || '-p@i'), 'agents/a1'], '')" $from $to);"
    echo "INSERT INTO reports (id, customer_id, case_id, channel, symptom, agent, service_hint, ticket_system, ticket_id, duplicate, fingerprint, snapshot_region, snapshot_country, snapshot_tier, snapshot_partition, snapshot_white_glove, data, receive_time, create_time, update_time) VALUES $(list "(md5(txid_current() || '-p@i'), 'b' || :c@i, md5(txid_current() || '-c@i'), 'REPORT_CHANNEL_PHONE', 'SYMPTOM_KIND_ERRORS', 'agents/a1', 'svc-1', NULL, NULL, false, decode(repeat('a5', $FP), 'hex'), 'eu-south', 'IT', 'TIER_STANDARD', '1', false, decode(repeat('5a', $DATA), 'hex'), now(), now(), now())" $from $to);"
    echo "INSERT INTO outbox (event_id, destination, topic, payload) VALUES $(list "(md5(txid_current() || '-e@i')::uuid, 'correlation', 'liaison.intake.v1.ReportAccepted', decode(repeat('5a', $EVENT), 'hex')), (md5(txid_current() || '-o@i')::uuid, 'correlation', 'liaison.intake.v1.CaseOpened', decode(repeat('5a', $OPENED), 'hex'))" $from $to);"
    echo "INSERT INTO idempotency_keys (scope, request_id, fingerprint, response) VALUES $(list "('intake.SubmitReport', md5(txid_current() || '-r@i'), repeat('ab', 32), decode(repeat('5a', $RESP), 'hex'))" $from $to);"
  done
  echo "COMMIT;"
  echo "\\endpipeline"
} > "$W/submit-batch.sql"

declare -A PGB PGP PGC
pgbench_run() { # clients script reports-per-tx -> appends to PGB[key] (reports/s), PGP/PGC (pg, client us)
  local key=$1,$2 p0 p1 out tx n0
  psql -q "$ref_url" -c CHECKPOINT
  n0=$(pg_children)
  p0=$(pg_ticks)
  out=$(/usr/bin/time -f "%U %S" -o "$W/time" "$PGBIN/pgbench" -n -M prepared -c "$1" -j "$1" -T "$SECONDS_PER_RUN" \
    -f "$W/$2.sql" "$ref_url" 2>"$W/pgbench.err") || { cat "$W/pgbench.err" >&2; exit 1; }
  # pgbench's backends exit after it does; their time counts once the postmaster has reaped them.
  for _ in $(seq 1 50); do [ "$(pg_children)" -le "$n0" ] && break; sleep 0.1; done
  p1=$(pg_ticks)
  tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
  PGB[$key]+="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | python3 -c "import sys; print(int(float(sys.stdin.read()) * $3))") "
  PGP[$key]+="$(per_report $((p1 - p0)) $((tx * $3))) "
  PGC[$key]+="$(per_report "$(client_ticks)" $((tx * $3))) "
}
pgbench_round() {
  for clients in "${CLIENT_COUNTS[@]}"; do
    pgbench_run "$clients" submit 1
    pgbench_run "$clients" submit-batch 100
  done
}
pgbench_round
for ((round = 2; round <= ROUNDS; round++)); do
  intake_round
  pgbench_round
done
# The duplicate path (each customer's reports join its open case) has no pgbench counterpart here;
# it is measured for the record, after every new-case round: its reports add to the open cases,
# so run earlier it would make intake's later candidate reads heavier than pgbench's.
for clients in "${CLIENT_COUNTS[@]}"; do run_intake single "$clients" dup; done

ratio() { python3 -c "print(round($1 / max($2, 1), 2))"; }
# Round by round: "a b c" over "x y z" -> "a/x b/y c/z". A round's single and batch runs follow
# each other on about the same database, while the open cases per customer grow from round to round.
round_ratios() { python3 -c "import sys; print(' '.join(str(round(float(a) / max(float(b), 1), 2)) for a, b in zip(sys.argv[1].split(), sys.argv[2].split())))" "$1" "$2"; }
printf '%-22s %7s %10s %12s %6s   %s\n' run clients reports/s reference ratio "CPU us/report: server / postgres / load generator"
json="{"
for clients in "${CLIENT_COUNTS[@]}"; do
  for mode in single batch; do
    k=$mode,$clients,new
    s=$(median ${INTAKE[$k]}); cs=$(median ${CS[$k]}); cp=$(median ${CP[$k]}); cc=$(median ${CC[$k]})
    # single is compared with pgbench's one transaction per report; batch with pgbench's batch.
    if [ "$mode" = single ]; then script=submit; refname="pgbench"; else script=submit-batch; refname="pgbench-batch"; fi
    ref=$(median ${PGB[$clients,$script]}); rp=$(median ${PGP[$clients,$script]}); rc=$(median ${PGC[$clients,$script]})
    r=$(ratio "$s" "$ref")
    printf '%-22s %7s %10s %12s %6s   intake %s / %s / %s   rounds: %s\n' "intake $mode" "$clients" "$s" "" "$r" "$cs" "$cp" "$cc" "${INTAKE[$k]% }"
    printf '%-22s %7s %10s %12s %6s   %s - / %s / %s   rounds: %s\n' "  $refname" "$clients" "" "$ref" "" "$refname" "$rp" "$rc" "${PGB[$clients,$script]% }"
    json="$json\"${mode}_c${clients}_intake\": $s, \"${mode}_c${clients}_reference\": $ref, \"${mode}_c${clients}_ratio\": $r, "
    json="$json\"${mode}_c${clients}_cpu_us\": {\"intake\": $cs, \"postgres\": $cp, \"client\": $cc, \"reference_postgres\": $rp, \"reference_client\": $rc}, "
  done
  s=$(median ${INTAKE[batch,$clients,new]}); one=$(median ${INTAKE[single,$clients,new]})
  pbatch=$(median ${PGB[$clients,submit-batch]}); pone=$(median ${PGB[$clients,submit]})
  printf '%-22s %7s %10s %12s %6s   rounds: %s\n' "batch / single" "$clients" "" "" "$(ratio "$s" "$one")" \
    "$(round_ratios "${INTAKE[batch,$clients,new]}" "${INTAKE[single,$clients,new]}")"
  printf '%-22s %7s %10s %12s %6s\n' "  pgbench-batch/pgbench" "$clients" "" "" "$(ratio "$pbatch" "$pone")"
  json="$json\"batch_over_single_c${clients}\": $(ratio "$s" "$one"), \"batch_over_single_c${clients}_rounds\": [$(round_ratios "${INTAKE[batch,$clients,new]}" "${INTAKE[single,$clients,new]}" | sed 's/ /, /g')], \"pgbench_batch_over_single_c${clients}\": $(ratio "$pbatch" "$pone"), "
  k=single,$clients,dup
  s=$(median ${INTAKE[$k]}); cs=$(median ${CS[$k]}); cp=$(median ${CP[$k]}); cc=$(median ${CC[$k]})
  printf '%-22s %7s %10s %12s %6s   intake %s / %s / %s\n' "intake single, joins" "$clients" "$s" "(none)" "" "$cs" "$cp" "$cc"
  json="$json\"single_dup_c${clients}_intake\": $s, "
done
echo "(load generator: $LOADGEN; medians of $ROUNDS alternating rounds, joins: 1 run; PostgreSQL defaults: fsync=on, synchronous_commit=on; build: $CONFIG; pgbench runs the SubmitReport transaction with the measured sizes data=${DATA}B fingerprint=${FP}B candidates=${CAND}B event=${EVENT}B response=${RESP}B)"
echo "${json%, }}"
