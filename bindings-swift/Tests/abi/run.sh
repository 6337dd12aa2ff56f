#!/usr/bin/env bash
# Compiles abi_test.c against the generated header and links it to the Linux library.
#
#   bindings-swift/Tests/abi/run.sh [dir containing libpeerlink_ffi.so]   (default target/debug)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pkg=$(cd "$here/../.." && pwd)
root=$(cd "$pkg/.." && pwd)
libdir=$(cd "${1:-$root/target/debug}" && pwd)
swift="$pkg/Sources/PeerLink/PeerLink.swift"
build="$pkg/.build/abi-test"
mkdir -p "$build"

contract=$(sed -n 's/^ *let bindings_contract_version = \([0-9][0-9]*\)$/\1/p' "$swift")
[ -n "$contract" ] || { echo "no bindings_contract_version in $swift"; exit 1; }
# Every checksum the Swift code compares at load time, as { name, function, expected }.
grep -o 'uniffi_peerlink_ffi_checksum_[a-z0-9_]*() != [0-9]*' "$swift" \
  | sed -E 's/^([a-z0-9_]+)\(\) != ([0-9]+)$/{ "\1", \1, \2 },/' > "$build/checksums.inc"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)

cc=${CC:-cc}
# The header uses clang's nullability qualifiers (Swift's importer reads them); other
# compilers get them defined away.
nullability=()
if ! "$cc" --version 2>/dev/null | grep -qi clang; then
  nullability=(-D_Nullable= -D_Nonnull=)
fi
"$cc" "${nullability[@]}" -std=c11 -Wall -Wextra -Werror -O1 \
  -I "$pkg/ffi/include" -I "$build" \
  -DEXPECTED_CONTRACT_VERSION="$contract" -DEXPECTED_VERSION="\"$version\"" \
  "$here/abi_test.c" -L "$libdir" -lpeerlink_ffi -Wl,-rpath,"$libdir" -o "$build/abi_test"
"$build/abi_test"
