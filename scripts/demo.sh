#!/usr/bin/env bash
# The demo scenario against the running stack (called by `make run`): see scripts/demo.py.
set -euo pipefail
exec python3 "$(dirname "$0")/demo.py" "$@"
