#!/usr/bin/env bash
# Installs what building, running and testing Liaison needs on Debian 12, skipping what is there.
# Needs root (or sudo) for apt-get; Swift itself is expected on PATH (see README).
set -euo pipefail
APT_PACKAGES=(libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc grpc-proto
  libpq-dev postgresql-15 postgresql-client-15 nghttp2-client curl python3-pip docker-compose
  docker.io debootstrap iproute2 iptables)
PIP_PACKAGES=(grpcio grpcio-tools grpcio-health-checking grpcio-reflection pytest buf-bin pyyaml kubernetes-validate)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The server packages start a system cluster on install; Liaison runs its own, so leave that alone.

pip_missing=()
for p in "${PIP_PACKAGES[@]}"; do
  python3 -m pip show -q "$p" >/dev/null 2>&1 || pip_missing+=("$p")
done
if [ ${#pip_missing[@]} -gt 0 ]; then
  echo "install-deps: pip install ${pip_missing[*]}" >&2
  python3 -m pip install -q "${pip_missing[@]}" 2>&1 | grep -v "^WARNING: Running pip as" >&2 || true
fi
command -v swift >/dev/null || { echo "install-deps: swift not on PATH (Swift 6.1+ needed, see README)" >&2; exit 1; }
