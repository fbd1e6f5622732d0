#!/usr/bin/env bash
# A private PostgreSQL cluster on loopback, for `make run` and for the tests.
#   scripts/pg.sh start DIR [PORT] [fast]  initdb DIR if new, start it, print its admin URL
#   scripts/pg.sh stop DIR                 stop it (fast shutdown) and leave the data
#   scripts/pg.sh destroy DIR              stop it and delete DIR
#   scripts/pg.sh restart DIR              pg_ctl restart -m fast (used by reconnect tests)
#   scripts/pg.sh url DIR                  print the admin URL of a running cluster
#   scripts/pg.sh createdb DIR NAME...     create databases that do not exist yet
# PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres` user.
# PORT 0 (the default) picks a free port. `fast` turns fsync off (tests only; never benchmarks).
set -euo pipefail
cmd=${1:?usage: pg.sh start|stop|destroy|restart|url|createdb DIR}
dir=${2:?data directory}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)}
[ -x "$PGBIN/pg_ctl" ] || { echo "pg.sh: PostgreSQL server binaries not found (apt-get install postgresql-15)" >&2; exit 1; }

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 - <<'PY'
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

url() { echo "postgresql://postgres@127.0.0.1:$(cat "$dir/port")/postgres"; }

case "$cmd" in
start)
  port=${3:-0}
  mode=${4:-}
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_owner "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
  fi
  if as_owner "$PGBIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then url; exit 0; fi
  [ "$port" = 0 ] && port=$(free_port)
  echo "$port" >"$dir/port"
  opts="-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=128MB"
  [ "$mode" = fast ] && opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  as_owner "$PGBIN/pg_ctl" -D "$dir/data" -w -t 60 -l "$dir/server.log" -o "$opts" start >/dev/null \
    || { tail -n 20 "$dir/server.log" >&2; exit 1; }
  url
  ;;
stop)
  [ -d "$dir/data" ] && as_owner "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  ;;
destroy)
  [ -d "$dir/data" ] && as_owner "$PGBIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
  ;;
restart)
  as_owner "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 restart >/dev/null
  ;;
url)
  url
  ;;
createdb)
  shift 2
  for db in "$@"; do
    exists=$(psql "$(url)" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")
    [ "$exists" = 1 ] || psql "$(url)" -qc "CREATE DATABASE \"$db\"" >/dev/null
  done
  ;;
*) echo "pg.sh: unknown command $cmd" >&2; exit 2 ;;
esac
