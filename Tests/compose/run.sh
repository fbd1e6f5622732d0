#!/usr/bin/env bash
# Integration tests across the docker-compose stack, on a real Docker engine, offline.
#
# The engine runs inside a network namespace this script creates (the host's network is never
# touched: no bridge, NAT or ip_forward outside the namespace). Base images are made with
# debootstrap from the Debian mirror apt is configured with and cached outside the clone
# (/var/cache/liaison); the services are the host's binaries copied into images.
# Everything started here is stopped by PID and the namespace is deleted on exit.
# Last line: "N passed, M failed". Exit 0 only if all passed.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
CACHE=${LIAISON_CACHE:-/var/cache/liaison}
NS="liaison-compose-$$"
RUNDIR="$(mktemp -d /tmp/liaison-compose.XXXXXX)"
SOCK="$RUNDIR/docker.sock"
export DOCKER_HOST="unix://$SOCK"
export COMPOSE_PROJECT_NAME=liaisontest LIAISON_IMAGE_TAG=test
COMPOSE=(docker-compose -f docker-compose.yml -f Tests/compose/docker-compose.test.yml)
passed=0; failed=0

skip() { echo "compose tests NOT RUN: $*"; echo "0 passed, 0 failed (skipped: $*)"; exit "${LIAISON_COMPOSE_REQUIRED:-0}"; }
check() { # name, command...
  local name="$1"; shift
  if "$@"; then echo "ok: $name"; passed=$((passed + 1)); else echo "FAILED: $name"; failed=$((failed + 1)); fi
}
inns() { nsenter --net="/run/netns/$NS" "$@"; }

cleanup() {
  if [ -S "$SOCK" ]; then "${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true; fi
  if [ -f "$RUNDIR/docker.pid" ]; then
    pid=$(cat "$RUNDIR/docker.pid"); kill "$pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  ip netns del "$NS" 2>/dev/null || true
  umount "$RUNDIR/exec" 2>/dev/null || true
  rm -rf "$RUNDIR"
}
trap cleanup EXIT INT TERM

[ "$(id -u)" = 0 ] || skip "needs root (network namespace and dockerd)"
for t in dockerd docker docker-compose debootstrap ip nsenter; do
  command -v "$t" >/dev/null || skip "$t not installed (make deps installs docker.io, docker-compose, debootstrap)"
done

# 1. The offline base image (cached tarball).
mkdir -p "$CACHE"
if [ ! -s "$CACHE/base-bookworm.tar" ]; then
  mirror=$(awk '/^URIs:/{u=$2} /^Suites:/{ if ($0 ~ /bookworm( |$)/ && u ~ /\/debian\/?$/) {print u; exit} }' /etc/apt/sources.list.d/*.sources 2>/dev/null)
  [ -n "$mirror" ] || mirror=$(awk '$1=="deb" && $3=="bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
  [ -n "$mirror" ] || skip "cannot read the Debian mirror from apt's sources"
  echo "building the base image with debootstrap from apt's mirror (once; cached in $CACHE)"
  root="$RUNDIR/rootfs"
  debootstrap --variant=minbase --include=libgrpc++1.51,libprotobuf32,libpq5,postgresql-15,ca-certificates \
    bookworm "$root" "$mirror" >"$RUNDIR/debootstrap.log" 2>&1 || { tail -5 "$RUNDIR/debootstrap.log"; skip "debootstrap failed"; }
  tar -C "$root" -cf "$CACHE/base-bookworm.tar.tmp" . && mv "$CACHE/base-bookworm.tar.tmp" "$CACHE/base-bookworm.tar"
  rm -rf "$root"
fi

# 2. The engine, inside our own network namespace.
ip netns add "$NS" || skip "cannot create a network namespace"
ip netns exec "$NS" ip link set lo up
mkdir -p "$RUNDIR/exec" "$CACHE/docker"
nsenter --net="/run/netns/$NS" dockerd --data-root "$CACHE/docker" --exec-root "$RUNDIR/exec" \
  -H "$DOCKER_HOST" --pidfile "$RUNDIR/docker.pid" >"$RUNDIR/dockerd.log" 2>&1 &
for _ in $(seq 1 100); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
docker info >/dev/null 2>&1 || { tail -5 "$RUNDIR/dockerd.log"; skip "the Docker engine did not start"; }

# 3. Images: base, PostgreSQL, services (the host's binaries).
docker image inspect liaison/base:bookworm >/dev/null 2>&1 || docker import "$CACHE/base-bookworm.tar" liaison/base:bookworm >/dev/null
# The debug binaries `make test` already built (a release build would add minutes to CI).
swift build >/dev/null || skip "swift build failed"
bin="$(swift build --show-bin-path)"
ctx="$RUNDIR/ctx"; mkdir -p "$ctx/bin" "$ctx/swiftlib"
for s in intake correlation sla communications followup; do cp "$bin/$s" "$ctx/bin/"; done
ldd "$ctx/bin/intake" | awk '/=> \/opt\/swift/ {print $3}' | xargs -r -I{} cp {} "$ctx/swiftlib/"
cp -r services "$ctx/services"
cp Tests/compose/Dockerfile.service "$ctx/Dockerfile"
docker build -q -t liaison/service:test "$ctx" >/dev/null || skip "docker build of the service image failed"
pctx="$RUNDIR/pctx"; mkdir -p "$pctx"
cp deploy/postgres-entrypoint.sh Tests/compose/Dockerfile.postgres "$pctx/"
docker build -q -t liaison/postgres:test -f "$pctx/Dockerfile.postgres" "$pctx" >/dev/null || skip "docker build of the PostgreSQL image failed"

# 4. The stack, from docker-compose.yml.
up() { "${COMPOSE[@]}" up -d --no-build "$@" >"$RUNDIR/up.log" 2>&1; }
healthy() { # wait until every service container reports healthy
  for _ in $(seq 1 180); do
    local states
    states=$("${COMPOSE[@]}" ps -q | xargs -r docker inspect -f '{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' 2>/dev/null)
    if [ -n "$states" ] && ! grep -qvE ' (healthy|none)$' <<<"$states"; then return 0; fi
    sleep 1
  done
  echo "$states"; return 1
}
start_stack() { up && healthy || { tail -20 "$RUNDIR/up.log"; "${COMPOSE[@]}" logs --tail=20; return 1; }; }
check "stack starts and every service becomes healthy" start_stack

corr_port() { "${COMPOSE[@]}" port --index="${1:-1}" correlation 50052 | awk -F: '{print $NF}'; }
demo() {
  inns env LIAISON_DEMO_INTAKE=127.0.0.1:50051 LIAISON_DEMO_CORRELATION="127.0.0.1:$(corr_port 1)" \
    python3 scripts/demo.py
}
check "end-to-end scenario through the public APIs (customers, duplicate reports, incident, links, blast radius)" demo

scale() {
  "${COMPOSE[@]}" up -d --no-build --scale correlation=3 >/dev/null 2>&1 && healthy \
    && [ "$("${COMPOSE[@]}" ps -q correlation | wc -l)" = 3 ]
}
check "correlation scales to 3 replicas, all healthy" scale

cids() { "${COMPOSE[@]}" ps -q "$1" | paste -sd' '; }
# The running correlation replicas as an ipv4: target (their addresses on the stack's network).
CORRELATION_TARGET_CMD="docker ps -q --filter label=com.docker.compose.project=$COMPOSE_PROJECT_NAME \
  --filter label=com.docker.compose.service=correlation | xargs -r docker inspect \
  -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}:50052{{end}}' | paste -sd, | sed 's/^/ipv4:/'"
scale_load() {
  local first; first=$("${COMPOSE[@]}" ps -q correlation | head -1)
  inns python3 Tests/compose/scenarios.py scale --intake 127.0.0.1:50051 \
    --replicas "$(bash -c "$CORRELATION_TARGET_CMD" | sed 's/^ipv4://; s/:50052//g')" --stop-cmd "docker stop -t 20 $first" \
    || return 1
  # It drained and exited by itself (0), not by docker's SIGKILL after 20 s (137).
  local code; code=$(docker inspect -f '{{.State.ExitCode}}' "$first")
  echo "scenario: the stopped replica exited with $code"
  [ "$code" = 0 ]
}
check "load through one round_robin channel reaches all 3 replicas; one stops mid-load (SIGTERM, exit 0): no failed call, no lost report" scale_load

fault() {
  "${COMPOSE[@]}" up -d --no-build --scale correlation=1 >/dev/null 2>&1 && healthy || return 1
  local i idb c cdb
  i=$(cids intake); idb=$(cids intake-db); c=$(cids correlation); cdb=$(cids correlation-db)
  inns python3 Tests/compose/scenarios.py fault --intake 127.0.0.1:50051 --correlation-cmd "$CORRELATION_TARGET_CMD" \
    --kill-intake "docker kill $i $idb" --start-intake "docker start $idb $i" \
    --kill-correlation "docker kill $c $cdb" --start-correlation "docker start $cdb $c"
}
check "docker kill of intake + its PostgreSQL, then correlation + its PostgreSQL, mid-load: nothing acknowledged lost or duplicated" fault

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
