#!/usr/bin/env bash
# Runs every test suite of the project, installing what is missing first.
#
#   ./scripts/test.sh            everything
#   ./scripts/test.sh rust       one suite (rust, vectors, fuzz)
#
# Works on a fresh Debian machine with Rust, Node and Python; installs Debian packages only when
# run as root. Never reads standard input. Exits non-zero when any suite fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
export CARGO_NET_RETRY=5
SUITES=("$@")
[ ${#SUITES[@]} -gt 0 ] || SUITES=(lint rust vectors fuzz node kotlin swift_abi interop natlab)

step() { printf '\n==> %s\n' "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }

wants() {
  local s
  for s in "${SUITES[@]}"; do [ "$s" = "$1" ] && return 0; done
  return 1
}

# Node packages used by a suite: installed from the committed lock file, offline-safe when cached.
npm_install() {
  local dir=$1
  if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
    # npm ci installs exactly the lock file. npm 11 rejects some lock files whose optional
    # per-platform packages (msgpackr's native extension) it recorded itself; then install
    # from package.json's pinned versions instead of failing the suite.
    (cd "$dir" && { timeout 600 npm ci --no-audit --no-fund --loglevel=error 2>/dev/null ||
      { echo "npm ci rejected $dir/package-lock.json; installing the pinned versions instead";
        timeout 600 npm install --no-save --no-audit --no-fund --loglevel=error; }; })
  fi
}

failed=()
run_suite() {
  local name=$1; shift
  step "$name"
  local start=$SECONDS
  if "$@"; then
    echo "suite $name: ok ($((SECONDS - start)) s)"
  else
    echo "suite $name: FAILED ($((SECONDS - start)) s)"
    failed+=("$name")
  fi
}

# One build of the whole workspace in the `ci` profile (see Cargo.toml) serves every suite: one
# invocation, so features unify and no dependency is compiled twice. Later calls are no-ops.
CI_TARGET=$ROOT/target/ci
ci_build() {
  if [ -z "${CI_BUILT:-}" ]; then
    cargo build --workspace --all-targets --profile ci --locked
    CI_BUILT=1
  fi
}

# Clippy runs in the `ci` profile: the build scripts and proc macros it compiles are then the
# ones the later build uses (about three minutes less than linting in the dev profile).
suite_lint() {
  cargo fmt --all -- --check
  cargo clippy --workspace --all-targets --locked --profile ci -- -D warnings
}

suite_rust() {
  ci_build
  local rc=0
  cargo test --workspace --profile ci --locked --no-fail-fast || rc=1
  # The vendored SCTP engine's own suite (outside the workspace, with its own lock file): its
  # unit tests cover the congestion controllers and timers that peerlink changed. About a minute.
  CARGO_TARGET_DIR=$ROOT/target/vendored \
    cargo test --manifest-path third_party/rtc-sctp/Cargo.toml --locked -q || rc=1
  # The vendored DTLS engine's library tests (handshake retransmission timing among them).
  CARGO_TARGET_DIR=$ROOT/target/vendored \
    cargo test --manifest-path third_party/rtc-dtls/Cargo.toml --locked --lib -q || rc=1
  # The vendored ICE agent's library tests (check pacing, peer-reflexive candidates).
  CARGO_TARGET_DIR=$ROOT/target/vendored \
    cargo test --manifest-path third_party/rtc-ice/Cargo.toml --locked --lib -q || rc=1
  return $rc
}

# The Rust suite includes the signaling server's Redis and browser tests and the WebRTC tests
# against Chromium; they skip loudly without redis-server or chromium, so as root the script
# installs those (and JNA for the Kotlin suite) once, before any suite runs.
install_system_packages() {
  local missing=()
  have redis-server || missing+=(redis-server)
  have chromium || missing+=(chromium)
  [ -f /usr/share/java/jna.jar ] || missing+=(libjna-java)
  # The NAT lab (natlab suite): TURN servers, NAT routers, the NFQUEUE rules of the delayer.
  # coturn also serves the rust suite's TURN-over-TCP/TLS test (runtime/tests/webrtc_turn_stream.rs).
  have turnserver || missing+=(coturn)
  have nft || missing+=(nftables)
  have iptables || missing+=(iptables)
  have conntrack || missing+=(conntrack)
  [ ${#missing[@]} -gt 0 ] || return 0
  if [ "$(id -u)" != 0 ]; then
    echo "not root: cannot install ${missing[*]}; the suites that need them will skip or fail"
    return 0
  fi
  step "apt-get install ${missing[*]}"
  timeout 300 apt-get update -qq
  DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq "${missing[@]}" </dev/null
}

# Regenerates the TweetNaCl/ed2curve vectors with the npm packages and checks they equal the
# committed ones, so the Rust test is checked against the real JavaScript libraries.
suite_vectors() {
  have node || { echo "node is required"; return 1; }
  npm_install scripts/identity-vectors
  local tmp
  tmp=$(mktemp)
  node scripts/identity-vectors/gen.mjs --out "$tmp"
  diff -u core/tests/vectors/identity.json "$tmp"
  rm -f "$tmp"
  # Raw-deflate interop both ways: fflate's fixtures regenerate identically and fflate inflates
  # the fixtures Rust produced.
  npm_install bench/codec-node
  node bench/codec-node/make-fixtures.mjs --check
  # The browser codec of compact codes (lobby page) against vectors from peerlink-core.
  node --test signal-server/tests/compact-code.test.mjs
}

suite_fuzz() {
  # Every fuzz target (fuzz/ is a workspace member, built by ci_build), run on stable as a
  # bounded smoke run over seeded random inputs: FUZZ_SECONDS per target (12 targets).
  ci_build
  local per=${FUZZ_SECONDS:-5}
  "$CI_TARGET/fuzz-smoke" --seconds "$((per * 12))"
}

# The Node addon: @napi-rs/cli from the committed lock file, a release build for this platform,
# then its node --test suite (two processes, exit on its own, ISocket conformance, 10,000
# connections leak check, 64 MiB round trip).
suite_node() {
  have node || { echo "node is required"; return 1; }
  npm_install bindings-node
  # The addon is the workspace's cdylib, built by ci_build; `napi build` would do the same
  # compile again in another profile. binding.js and binding.d.ts are generated and committed.
  ci_build
  cp "$CI_TARGET/libpeerlink_node.so" bindings-node/peerlink.linux-x64-gnu.node
  (cd bindings-node && node --test test/*.test.mjs)
}

# WebRTC interop against real stacks (Chromium via playwright-core, aiortc) inside a private
# network namespace (tests/interop/netns.sh): browsers ignore loopback. Needs root for the
# namespace and apt; installs Debian's chromium, the npm packages and an aiortc virtualenv.
suite_interop() {
  [ "$(id -u)" = 0 ] || { echo "interop needs root (network namespace)"; return 1; }
  if [ ! -x /usr/bin/chromium ]; then
    timeout 300 apt-get update -qq && timeout 600 apt-get install -y -qq chromium
  fi
  npm_install tests/interop
  local venv=$ROOT/target/interop-venv
  if [ ! -x "$venv/bin/python" ] || [ tests/interop/requirements.txt -nt "$venv/bin/python" ]; then
    python3 -m venv "$venv" && timeout 600 "$venv/bin/pip" install -q -r tests/interop/requirements.txt
  fi
  ci_build
  PL_RUST_PEER=$CI_TARGET/examples/webrtc_peer PL_PYTHON=$venv/bin/python timeout 330 tests/interop/netns.sh \
    node --test --test-reporter=spec tests/interop/interop.test.mjs </dev/null
}

# The NAT traversal lab (tests/natlab): real NAT routers (nftables) in network namespaces, two
# coturn servers and the signaling server; the representative matrix of NAT pairs moves 8 MiB
# per pair and checks the chosen path (direct, TURN, server relay), clean and with 50 ms delay
# and 2 % loss. About 4 minutes; `tests/natlab/matrix.sh --full` runs every pair. Needs root.
suite_natlab() {
  [ "$(id -u)" = 0 ] || { echo "natlab needs root (network namespaces)"; return 1; }
  ci_build
  PEERLINK=$CI_TARGET/peerlink NATLAB_PEER=$CI_TARGET/examples/natlab_peer \
    DELAYER=$CI_TARGET/examples/natlab_delay timeout 600 tests/natlab/matrix.sh </dev/null
  # Faults under steady load: a 10 s link cut, a network change, a killed signaling server, a
  # killed TURN server (tests/natlab/faults.sh; about 2.5 minutes).
  PEERLINK=$CI_TARGET/peerlink NATLAB_PEER=$CI_TARGET/examples/natlab_peer \
    DELAYER=$CI_TARGET/examples/natlab_delay timeout 360 tests/natlab/faults.sh </dev/null
}

# The uniffi library for Swift and Kotlin, built unstripped (the dev profile keeps the symbols
# uniffi-bindgen reads), and a check that the committed generated bindings equal what the
# current Rust code generates.
ffi_build() {
  ci_build
  UNIFFI_BINDGEN=$CI_TARGET/uniffi-bindgen ffi/generate-bindings.sh --check "$CI_TARGET/libpeerlink_ffi.so"
}

# Kotlin bindings on the JVM: kotlinc from the npm package kotlin-compiler (committed lock),
# JNA from Debian, Java 17; two nodes over loopback, trust policies, RPC both ways, typed
# exceptions, 16 MiB, leak check; the JVM must exit by itself.
suite_kotlin() {
  have java || { echo "java (17+) is required"; return 1; }
  have node || { echo "node is required"; return 1; }
  if [ ! -f /usr/share/java/jna.jar ] && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libjna-java
  fi
  [ -f /usr/share/java/jna.jar ] || { echo "JNA missing: apt-get install libjna-java"; return 1; }
  ffi_build
  npm_install bindings-kotlin/tools
  bindings-kotlin/run-jvm-tests.sh "$CI_TARGET"
}

# The C ABI the generated Swift uses (no Swift toolchain here): a C program compiled against
# the generated header and linked to the Linux library.
suite_swift_abi() {
  have cc || { echo "a C compiler is required"; return 1; }
  ffi_build
  bindings-swift/Tests/abi/run.sh "$CI_TARGET"
}

install_system_packages

for s in "${SUITES[@]}"; do
  if declare -F "suite_$s" >/dev/null; then
    run_suite "$s" "suite_$s"
  else
    echo "unknown suite: $s"; failed+=("$s")
  fi
done

echo
if [ ${#failed[@]} -eq 0 ]; then
  echo "all suites passed: ${SUITES[*]}"
else
  echo "failed suites: ${failed[*]}"
  exit 1
fi
