#!/usr/bin/env bash
# Lints the API contract with buf (installed from PyPI as buf-bin if missing).
# Usage: protos/lint.sh
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v buf >/dev/null 2>&1; then
  echo "lint.sh: buf not found; installing buf-bin from PyPI" >&2
  python3 -m pip install --quiet buf-bin
fi
buf lint
# Every file must also compile with the protoc the builds use.
protoc -I. -I/usr/include --descriptor_set_out=/dev/null $(find liaison google -name '*.proto' | sort)
echo "lint.sh: OK"
