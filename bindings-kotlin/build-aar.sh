#!/usr/bin/env bash
# Builds the Android AAR: the Rust library for arm64-v8a, armeabi-v7a and x86_64 with
# cargo-ndk into src/main/jniLibs, then the Gradle module.
#
#   bindings-kotlin/build-aar.sh
#
# Needs ANDROID_NDK_HOME (or ANDROID_NDK_ROOT / ANDROID_HOME/ndk/<version>), ANDROID_HOME
# (or ANDROID_SDK_ROOT), cargo-ndk, the Rust Android targets and Gradle.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

sdk=${ANDROID_HOME:-${ANDROID_SDK_ROOT:-}}
ndk=${ANDROID_NDK_HOME:-${ANDROID_NDK_ROOT:-}}
if [ -z "$ndk" ] && [ -n "$sdk" ] && [ -d "$sdk/ndk" ]; then
  ndk=$(find "$sdk/ndk" -mindepth 1 -maxdepth 1 -type d | sort -V | tail -n 1)
fi
if [ -z "$sdk" ] || [ ! -d "$sdk" ] || [ -z "$ndk" ] || [ ! -d "$ndk" ]; then
  echo "build-aar.sh: no Android SDK/NDK found (set ANDROID_HOME and ANDROID_NDK_HOME)." >&2
  echo "The AAR cannot be built on this machine; the JVM tests (run-jvm-tests.sh) still run." >&2
  exit 2
fi
command -v cargo-ndk >/dev/null 2>&1 || { echo "build-aar.sh: cargo-ndk missing: cargo install cargo-ndk" >&2; exit 2; }
export ANDROID_NDK_HOME=$ndk ANDROID_HOME=$sdk

rustup target add aarch64-linux-android armv7-linux-androideabi x86_64-linux-android
cd "$root"
cargo ndk -t arm64-v8a -t armeabi-v7a -t x86_64 -o "$here/src/main/jniLibs" \
  build --release --locked -p peerlink-ffi

# The committed Kotlin must match the library being packaged.
ffi/generate-bindings.sh --check

cd "$here"
gradle=${GRADLE:-gradle}
[ -x ./gradlew ] && gradle=./gradlew
"$gradle" --no-daemon assembleRelease
ls -l build/outputs/aar/
