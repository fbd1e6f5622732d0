#!/usr/bin/env bash
# Runs the whole suite locally: a private PostgreSQL under .data/pg (one database per service),
# every service built in release mode, each waited for until healthy, then the demo scenario.
#   scripts/stack.sh start    start everything (idempotent) and print where it listens
#   scripts/stack.sh stop     stop the services (SIGTERM, graceful drain) and PostgreSQL
#   scripts/stack.sh status   show what runs
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
DATA="$ROOT/.data"
SERVICES=(intake correlation sla communications followup)
port_of() { case $1 in intake) echo 50051;; correlation) echo 50052;; sla) echo 50053;; communications) echo 50054;; followup) echo 50055;; esac; }
admin_of() { case $1 in intake) echo 9101;; correlation) echo 9102;; sla) echo 9103;; communications) echo 9104;; followup) echo 9105;; esac; }

start() {
  mkdir -p "$DATA/logs" "$DATA/run"
  pg_url=$(scripts/pg.sh start "$DATA/pg" "${LIAISON_PG_PORT:-0}")
  scripts/pg.sh createdb "$DATA/pg" "${SERVICES[@]}"
  bin="$(swift build -c release --show-bin-path)"
  for s in "${SERVICES[@]}"; do
    pidfile="$DATA/run/$s.pid"
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then continue; fi
    LIAISON_DATABASE_URL="${pg_url%/postgres}/$s" \
    LIAISON_LISTEN_ADDRESS="127.0.0.1:$(port_of "$s")" \
    LIAISON_ADMIN_ADDRESS="127.0.0.1:$(admin_of "$s")" \
    LIAISON_MIGRATIONS_DIR="$ROOT/services/$s/migrations" \
    LIAISON_INTAKE_TARGET="ipv4:127.0.0.1:$(port_of intake)" \
    LIAISON_CORRELATION_TARGET="ipv4:127.0.0.1:$(port_of correlation)" \
    LIAISON_SLA_TARGET="ipv4:127.0.0.1:$(port_of sla)" \
    LIAISON_COMMUNICATIONS_TARGET="ipv4:127.0.0.1:$(port_of communications)" \
    LIAISON_FOLLOWUP_TARGET="ipv4:127.0.0.1:$(port_of followup)" \
    LIAISON_CORRELATION_EVENT_DESTINATIONS="${LIAISON_CORRELATION_EVENT_DESTINATIONS-intake,sla}" \
    LIAISON_INTAKE_CASE_EVENT_DESTINATIONS="${LIAISON_INTAKE_CASE_EVENT_DESTINATIONS-correlation}" \
      nohup "$bin/$s" serve >>"$DATA/logs/$s.log" 2>&1 &
    echo $! >"$pidfile"
  done
  for s in "${SERVICES[@]}"; do
    for _ in $(seq 1 150); do
      "$bin/$s" probe "127.0.0.1:$(port_of "$s")" >/dev/null 2>&1 && break
      kill -0 "$(cat "$DATA/run/$s.pid")" 2>/dev/null || { echo "$s exited; its log:" >&2; tail -n 20 "$DATA/logs/$s.log" >&2; exit 1; }
      sleep 0.2
    done
    "$bin/$s" probe "127.0.0.1:$(port_of "$s")" >/dev/null || { echo "$s did not become healthy; see $DATA/logs/$s.log" >&2; exit 1; }
  done
  if [ "${LIAISON_SKIP_DEMO:-0}" != 1 ]; then scripts/demo.sh || { echo "demo failed (the stack keeps running; logs in .data/logs)" >&2; exit 1; }; fi
  echo
  echo "Liaison is running (logs in .data/logs, stop with: make stop)"
  echo "  PostgreSQL      $pg_url"
  for s in "${SERVICES[@]}"; do
    printf '  %-15s grpc 127.0.0.1:%s   metrics/health http://127.0.0.1:%s/metrics\n' "$s" "$(port_of "$s")" "$(admin_of "$s")"
  done
}

stop() {
  for s in "${SERVICES[@]}"; do
    pidfile="$DATA/run/$s.pid"
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill -TERM "$pid" 2>/dev/null; then
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
  scripts/pg.sh stop "$DATA/pg"
  echo "stopped"
}

status() {
  for s in "${SERVICES[@]}"; do
    pidfile="$DATA/run/$s.pid"
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then echo "$s running (pid $(cat "$pidfile"))"; else echo "$s stopped"; fi
  done
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*) echo "usage: scripts/stack.sh start|stop|status" >&2; exit 2 ;;
esac
