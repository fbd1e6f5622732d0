#!/usr/bin/env bash
# Generates the Swift API from protos/ into Sources/LiaisonAPI/Generated/:
#   - SwiftProtobuf messages        (*.pb.swift,   protoc-gen-swift 1.39.0)
#   - grpc-swift-2 client/server    (*.grpc.swift, protoc-gen-grpc-swift-2 2.4.1)
#   - unary method tables           (*.unary.swift, protoc-gen-liaison-unary from protos/plugin,
#     built on SwiftProtobufPluginLibrary): what ShimServerTransport serves directly
#   - DescriptorSet.swift: the FileDescriptorSet of every Liaison proto (with
#     imports and source info, for server reflection) and the service names.
#
# The protoc plugins are built once into a cache outside the repository:
#   ${LIAISON_PLUGIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/liaison/protoc-plugins}
# No SwiftPM build plugin is involved; the generated files are committed.
#
# Usage: protos/generate.sh [--out DIR] [--no-build] [--descriptor-only]
#   --out DIR            write into DIR instead of Sources/LiaisonAPI/Generated
#   --no-build           fail (exit 3) instead of building missing plugins
#   --descriptor-only    write only DescriptorSet.swift (needs protoc alone, no plugin); used
#                        by check-generated.sh on machines without the plugin cache
set -euo pipefail

SWIFT_PROTOBUF_VERSION=1.39.0
GRPC_SWIFT_PROTOBUF_VERSION=2.4.1

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
out="$repo/Sources/LiaisonAPI/Generated"
build=1
descriptor_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    --descriptor-only) descriptor_only=1; shift ;;
    *) echo "generate.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

cache="${LIAISON_PLUGIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/liaison/protoc-plugins}"
bin="$cache/bin"
swift_plugin="$bin/protoc-gen-swift-$SWIFT_PROTOBUF_VERSION"
grpc_plugin="$bin/protoc-gen-grpc-swift-2-$GRPC_SWIFT_PROTOBUF_VERSION"
# Our own plugin is cached under the hash of its sources, so any edit rebuilds it.
unary_hash="$(cd "$here/plugin" && cat Package.swift Sources/*/*.swift | sha256sum | cut -c1-12)"
unary_plugin="$bin/protoc-gen-liaison-unary-$unary_hash"

# build_plugin REPO_URL DIR TAG PRODUCT DEST
build_plugin() {
  local url="$1" dir="$cache/src/$2" tag="$3" product="$4" dest="$5"
  if [ "$build" = 0 ]; then
    echo "generate.sh: $dest missing and --no-build given" >&2
    exit 3
  fi
  echo "generate.sh: building $product $tag into $cache (once)" >&2
  mkdir -p "$cache/src" "$bin"
  [ -d "$dir/.git" ] || git clone --quiet "$url" "$dir"
  git -C "$dir" fetch --quiet --tags origin || true
  git -C "$dir" -c advice.detachedHead=false checkout --quiet "$tag"
  (cd "$dir" && swift build -c release --product "$product" >&2)
  cp "$dir/.build/release/$product" "$dest.tmp" && mv "$dest.tmp" "$dest"
}

if [ "$descriptor_only" = 0 ]; then
  [ -x "$swift_plugin" ] || build_plugin https://github.com/apple/swift-protobuf \
    swift-protobuf "$SWIFT_PROTOBUF_VERSION" protoc-gen-swift "$swift_plugin"
  [ -x "$grpc_plugin" ] || build_plugin https://github.com/grpc/grpc-swift-protobuf \
    grpc-swift-protobuf "$GRPC_SWIFT_PROTOBUF_VERSION" protoc-gen-grpc-swift-2 "$grpc_plugin"
  if [ ! -x "$unary_plugin" ]; then
    if [ "$build" = 0 ]; then
      echo "generate.sh: $unary_plugin missing and --no-build given" >&2
      exit 3
    fi
    echo "generate.sh: building protoc-gen-liaison-unary into $cache (once per plugin change)" >&2
    mkdir -p "$bin"
    (cd "$here/plugin" && swift build -c release --scratch-path "$cache/src/liaison-unary" >&2)
    cp "$cache/src/liaison-unary/release/protoc-gen-liaison-unary" "$unary_plugin.tmp" && mv "$unary_plugin.tmp" "$unary_plugin"
  fi
fi

cd "$here"
# Every .proto of the contract, in a stable order. google/protobuf/* come
# from Debian's libprotobuf-dev (/usr/include) and are provided at run time
# by SwiftProtobuf, so they are imported, not generated.
mapfile -t protos < <(find liaison google -name '*.proto' | LC_ALL=C sort)
mapfile -t liaison_protos < <(find liaison -name '*.proto' | LC_ALL=C sort)
# Only files that declare a service get grpc-swift-2 stubs.
mapfile -t service_protos < <(grep -l '^service ' "${liaison_protos[@]}" | LC_ALL=C sort)

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/gen"

if [ "$descriptor_only" = 0 ]; then
  protoc -I . -I /usr/include \
    --plugin=protoc-gen-swift="$swift_plugin" \
    --swift_out="$tmp/gen" \
    --swift_opt=FileNaming=PathToUnderscores,Visibility=Public \
    "${protos[@]}"
  protoc -I . -I /usr/include \
    --plugin=protoc-gen-grpc-swift-2="$grpc_plugin" \
    --grpc-swift-2_out="$tmp/gen" \
    --grpc-swift-2_opt=FileNaming=PathToUnderscores,Visibility=Public,Server=true,Client=true \
    "${service_protos[@]}"
  protoc -I . -I /usr/include \
    --plugin=protoc-gen-liaison-unary="$unary_plugin" \
    --liaison-unary_out="$tmp/gen" \
    "${service_protos[@]}"
fi

# Descriptor set for server reflection: every Liaison file plus its imports,
# with comments (source info) so reflection clients can show documentation.
protoc -I . -I /usr/include --include_imports --include_source_info \
  --descriptor_set_out="$tmp/liaison.pb" "${liaison_protos[@]}"

# Fully-qualified names of all services, from the proto sources.
services="$(for f in "${liaison_protos[@]}"; do
  pkg="$(sed -n 's/^package \([a-z0-9_.]*\);.*/\1/p' "$f")"
  sed -n 's/^service \([A-Za-z0-9_]*\) *{.*/\1/p' "$f" | sed "s/^/$pkg./"
done | LC_ALL=C sort)"

{
  echo "// DO NOT EDIT."
  echo "// Generated by protos/generate.sh from protos/liaison/**/*.proto."
  echo "//"
  echo "// The serialized google.protobuf.FileDescriptorSet of every Liaison proto"
  echo "// file and its imports (with source info), for gRPC server reflection,"
  echo "// and the fully-qualified names of all Liaison services."
  echo
  echo "import Foundation"
  echo
  echo "/// Descriptors of the Liaison API contract."
  echo "public enum LiaisonDescriptors {"
  echo "  /// Serialized \`google.protobuf.FileDescriptorSet\` (dependencies first)."
  echo "  public static let fileDescriptorSet: [UInt8] = {"
  echo "    guard let data = Data(base64Encoded: base64, options: .ignoreUnknownCharacters) else {"
  echo "      preconditionFailure(\"LiaisonDescriptors: corrupt embedded descriptor set\")"
  echo "    }"
  echo "    return [UInt8](data)"
  echo "  }()"
  echo
  echo "  /// Fully-qualified names of the services, e.g. \"liaison.intake.v1.IntakeService\"."
  echo "  public static let serviceNames: [String] = ["
  for s in $services; do echo "    \"$s\","; done
  echo "  ]"
  echo
  echo "  private static let base64 = \"\"\""
  base64 -w 100 "$tmp/liaison.pb"
  echo "\"\"\""
  echo "}"
} > "$tmp/gen/DescriptorSet.swift"

mkdir -p "$out"
if [ "$descriptor_only" = 1 ]; then
  cp "$tmp/gen/DescriptorSet.swift" "$out/"
  # The files the plugins would write, one per line (for a completeness check).
  for f in "${protos[@]}"; do echo "${f%.proto}.pb.swift" | tr '/' '_'; done > "$out/expected-files"
  for f in "${service_protos[@]}"; do echo "${f%.proto}.grpc.swift" | tr '/' '_'; done >> "$out/expected-files"
  for f in "${service_protos[@]}"; do echo "${f%.proto}.unary.swift" | tr '/' '_'; done >> "$out/expected-files"
  echo "generate.sh: wrote DescriptorSet.swift to $out" >&2
  exit 0
fi
# Replace the previous generation wholesale so deleted protos leave no files.
find "$out" -maxdepth 1 -type f \( -name '*.pb.swift' -o -name '*.grpc.swift' -o -name '*.unary.swift' -o -name 'DescriptorSet.swift' \) -delete
cp "$tmp/gen/"* "$out/"
echo "generate.sh: wrote $(ls "$tmp/gen" | wc -l) files to $out" >&2
