#!/usr/bin/env bash
# Verifies that Sources/LiaisonAPI/Generated/ is exactly what protos/generate.sh
# produces from the current protos. Exits 1 on any difference.
#
# The protoc plugins are not built here (CI should not spend minutes on them
# every run): when they are not in the cache, the check is skipped with a
# message and exit code 0. Set LIAISON_REQUIRE_PLUGINS=1 to fail instead.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
committed="$repo/Sources/LiaisonAPI/Generated"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

set +e
"$here/generate.sh" --no-build --out "$tmp/gen" 2>"$tmp/log"
rc=$?
set -e
if [ "$rc" = 3 ]; then
  cache="${LIAISON_PLUGIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/liaison/protoc-plugins}"
  msg="check-generated.sh: SKIPPED - protoc plugins are not cached in $cache/bin; run protos/generate.sh once to build them (a few minutes), then re-run this check."
  if [ "${LIAISON_REQUIRE_PLUGINS:-0}" = 1 ]; then echo "$msg" >&2; exit 1; fi
  echo "$msg"
  exit 0
elif [ "$rc" != 0 ]; then
  cat "$tmp/log" >&2
  echo "check-generated.sh: generation failed" >&2
  exit 1
fi

if diff -r "$committed" "$tmp/gen" >"$tmp/diff"; then
  echo "check-generated.sh: OK - Sources/LiaisonAPI/Generated is up to date"
else
  head -n 40 "$tmp/diff" >&2
  echo "check-generated.sh: FAILED - generated code is stale; run protos/generate.sh and commit the result" >&2
  exit 1
fi
