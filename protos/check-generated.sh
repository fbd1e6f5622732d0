#!/usr/bin/env bash
# Verifies that Sources/LiaisonAPI/Generated/ is exactly what protos/generate.sh
# produces from the current protos. Exits 1 on any difference.
#
# The protoc plugins are not built here (CI should not spend minutes on them
# every run). When they are not in the cache, a narrower check still runs with
# protoc alone: DescriptorSet.swift (every proto with its comments, so any edit
# of a .proto changes it) must equal protoc's output, and the committed files
# must be exactly the ones the plugins would write. Set LIAISON_REQUIRE_PLUGINS=1
# to fail instead of falling back.
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
  msg="check-generated.sh: protoc plugins are not cached in $cache/bin (protos/generate.sh builds them once, a few minutes)"
  if [ "${LIAISON_REQUIRE_PLUGINS:-0}" = 1 ]; then echo "$msg" >&2; exit 1; fi
  echo "$msg; checking the descriptor set and the file list with protoc alone"
  "$here/generate.sh" --descriptor-only --out "$tmp/desc" 2>"$tmp/log" || { cat "$tmp/log" >&2; exit 1; }
  ls "$committed" | grep -v '^DescriptorSet.swift$' | LC_ALL=C sort > "$tmp/have"
  LC_ALL=C sort "$tmp/desc/expected-files" > "$tmp/want"
  if ! diff "$tmp/want" "$tmp/have" >"$tmp/diff"; then
    cat "$tmp/diff" >&2
    echo "check-generated.sh: FAILED - the generated files do not match the protos; run protos/generate.sh and commit the result" >&2
    exit 1
  fi
  if ! cmp -s "$committed/DescriptorSet.swift" "$tmp/desc/DescriptorSet.swift"; then
    echo "check-generated.sh: FAILED - DescriptorSet.swift differs from the protos (a .proto changed without regenerating); run protos/generate.sh and commit the result" >&2
    exit 1
  fi
  echo "check-generated.sh: OK (descriptor set and file list; message code not re-generated without the plugins)"
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
