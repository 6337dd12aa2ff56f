#!/usr/bin/env bash
# Generates the Kotlin and Swift bindings from the peerlink-ffi library and writes them where
# the packages expect them, or with --check compares them with the committed files and fails
# on any difference.
#
#   ffi/generate-bindings.sh [--check] [path/to/libpeerlink_ffi.so]
#
# The library must be unstripped: uniffi reads the interface from metadata symbols in it.
set -euo pipefail
cd "$(dirname "$0")/.."
check=0
if [ "${1:-}" = "--check" ]; then check=1; shift; fi
lib=${1:-target/debug/libpeerlink_ffi.so}
[ -f "$lib" ] || { echo "missing $lib: build it with 'cargo build -p peerlink-ffi'"; exit 1; }
# UNIFFI_BINDGEN points at an already built binary (the test suite builds it with the rest).
bindgen=${UNIFFI_BINDGEN:-target/debug/uniffi-bindgen}
[ -x "$bindgen" ] || cargo build --quiet -p uniffi-bindgen

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# --no-format: the output must not depend on whether ktlint or swiftformat is installed.
"$bindgen" generate --config uniffi.toml --no-format -l kotlin -o "$out/kotlin" "$lib"
"$bindgen" generate --config uniffi.toml --no-format -l swift -o "$out/swift" "$lib"

# generated file -> committed location
pairs=(
  "kotlin/dev/peerlink/peerlink_ffi.kt:bindings-kotlin/src/main/kotlin/dev/peerlink/peerlink_ffi.kt"
  "swift/PeerLink.swift:bindings-swift/Sources/PeerLink/PeerLink.swift"
  "swift/peerlink_ffiFFI.h:bindings-swift/ffi/include/peerlink_ffiFFI.h"
  "swift/peerlink_ffiFFI.modulemap:bindings-swift/ffi/include/module.modulemap"
)
status=0
for pair in "${pairs[@]}"; do
  src="$out/${pair%%:*}"
  dst="${pair#*:}"
  if [ "$check" = 1 ]; then
    if ! diff -u "$dst" "$src" >"$out/diff" 2>&1; then
      echo "stale generated file: $dst (run ffi/generate-bindings.sh)"
      head -40 "$out/diff"
      status=1
    fi
  else
    mkdir -p "$(dirname "$dst")"
    cp "$src" "$dst"
    echo "wrote $dst"
  fi
done
exit $status
