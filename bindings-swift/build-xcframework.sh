#!/usr/bin/env bash
# Builds peerlink_ffiFFI.xcframework for iOS devices (arm64), the iOS simulator (arm64 +
# x86_64) and macOS (arm64 + x86_64) from the peerlink-ffi static library, with the generated
# header and module map, next to Package.swift. Needs macOS with Xcode and rustup.
#
#   bindings-swift/build-xcframework.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

if [ "$(uname -s)" != Darwin ] || ! command -v xcodebuild >/dev/null 2>&1; then
  echo "build-xcframework.sh: needs macOS with Xcode (xcodebuild, lipo); nothing built." >&2
  echo "On Linux the Swift ABI is checked by Tests/abi/run.sh instead." >&2
  exit 2
fi

targets=(aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios aarch64-apple-darwin x86_64-apple-darwin)
rustup target add "${targets[@]}"
cd "$root"
for t in "${targets[@]}"; do
  cargo build --release --locked -p peerlink-ffi --target "$t"
done

# The committed Swift must match the library being packaged (read from an unstripped build).
ffi/generate-bindings.sh --check "target/aarch64-apple-darwin/release/libpeerlink_ffi.dylib"

work="$root/target/xcframework"
rm -rf "$work"
mkdir -p "$work/headers" "$work/ios-sim" "$work/macos"
cp "$here/ffi/include/peerlink_ffiFFI.h" "$here/ffi/include/module.modulemap" "$work/headers/"
lipo -create target/aarch64-apple-ios-sim/release/libpeerlink_ffi.a \
  target/x86_64-apple-ios/release/libpeerlink_ffi.a -output "$work/ios-sim/libpeerlink_ffi.a"
lipo -create target/aarch64-apple-darwin/release/libpeerlink_ffi.a \
  target/x86_64-apple-darwin/release/libpeerlink_ffi.a -output "$work/macos/libpeerlink_ffi.a"

out="$here/peerlink_ffiFFI.xcframework"
rm -rf "$out"
xcodebuild -create-xcframework \
  -library target/aarch64-apple-ios/release/libpeerlink_ffi.a -headers "$work/headers" \
  -library "$work/ios-sim/libpeerlink_ffi.a" -headers "$work/headers" \
  -library "$work/macos/libpeerlink_ffi.a" -headers "$work/headers" \
  -output "$out"
echo "built $out; run 'swift test' in $here to run the XCTest suite on macOS"
