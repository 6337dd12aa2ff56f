#!/usr/bin/env bash
# Compiles the generated Kotlin bindings and the JVM tests with kotlinc (npm package
# `kotlin-compiler`, which also ships kotlinx-coroutines) against JNA, and runs them on the
# host's Java against the Linux library.
#
#   bindings-kotlin/run-jvm-tests.sh [dir containing libpeerlink_ffi.so]   (default target/debug)
#
# The signaling tests start `peerlink serve` from the same directory (or $PEERLINK_BIN).
#
# Needs: java (17+), /usr/share/java/jna.jar (Debian libjna-java), node/npm.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
libdir=$(cd "${1:-$root/target/debug}" && pwd)
jna=${JNA_JAR:-/usr/share/java/jna.jar}
[ -f "$libdir/libpeerlink_ffi.so" ] || { echo "missing $libdir/libpeerlink_ffi.so"; exit 1; }
[ -f "$jna" ] || { echo "missing $jna: apt-get install libjna-java"; exit 1; }

tools="$here/tools"
if [ ! -d "$tools/node_modules/kotlin-compiler" ] || [ "$tools/package-lock.json" -nt "$tools/node_modules" ]; then
  (cd "$tools" && timeout 600 npm ci --no-audit --no-fund --loglevel=error)
fi
kotlin="$tools/node_modules/kotlin-compiler"
coroutines="$kotlin/lib/kotlinx-coroutines-core-jvm.jar"
stdlib="$kotlin/lib/kotlin-stdlib.jar"

build="$here/build/jvm-tests"
mkdir -p "$build"
jar="$build/peerlink-tests.jar"
sources=("$here/src/main/kotlin/dev/peerlink/peerlink_ffi.kt" "$here"/src/test/kotlin/dev/peerlink/tests/*.kt)
stale=1
if [ -f "$jar" ]; then
  stale=0
  for s in "${sources[@]}"; do [ "$s" -nt "$jar" ] && stale=1; done
fi
if [ "$stale" = 1 ]; then
  echo "compiling ${#sources[@]} Kotlin files"
  # -nowarn: the generated bindings use delicate coroutine APIs on purpose.
  "$kotlin/bin/kotlinc-jvm" -nowarn -jvm-target 17 -cp "$jna:$coroutines" -d "$jar" "${sources[@]}"
fi

# The JVM must exit by itself once main returns: a hang (a non-daemon thread, a leaked
# handle keeping one alive) fails the run.
set +e
timeout 600 java -Xmx2g -Djna.library.path="$libdir" -Dpeerlink.bin="${PEERLINK_BIN:-$libdir/peerlink}" -cp "$jar:$jna:$coroutines:$stdlib" \
  dev.peerlink.tests.PeerlinkTestsKt | tee "$build/output.txt"
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" = 124 ]; then echo "the JVM did not exit by itself"; exit 1; fi
[ "$rc" = 0 ] || exit "$rc"
tail -n 1 "$build/output.txt" | grep -Eq '^[0-9]+ passed, 0 failed$'
