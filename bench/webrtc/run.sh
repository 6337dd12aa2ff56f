#!/usr/bin/env bash
# Side-by-side WebRTC data-channel benchmark: peerlink, @roamhq/wrtc (libwebrtc),
# node-datachannel (libdatachannel), Chromium (two peer connections in one page), aiortc, and
# peerlink <-> Chromium in both directions. Runs everything inside a private network namespace
# (browsers and libwebrtc ignore loopback), once with the Linux default socket-buffer limits
# (net.core.rmem_max = wmem_max = 212992) and once with raised ones (8 MiB); the limits in
# force before are restored on exit. Needs root, Debian's chromium, Node and Python 3.
#
#   bench/webrtc/run.sh            # RUNS=5 BULK_MIB=256 SLOW_MIB=64 AIORTC_MIB=16
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
VENV=${PL_VENV:-$ROOT/target/interop-venv}
[ -x /usr/bin/chromium ] || { apt-get update -qq && apt-get install -y -qq chromium; }
[ -d tests/interop/node_modules ] || (cd tests/interop && npm ci --no-audit --no-fund --loglevel=error)
[ -x "$VENV/bin/python" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q -r tests/interop/requirements.txt; }
cargo build --release --locked -p peerlink --example webrtc_peer
export PL_PYTHON=$VENV/bin/python

saved=()
for k in rmem_max wmem_max; do saved+=("$(cat /proc/sys/net/core/$k)"); done
restore() {
  echo "${saved[0]}" > /proc/sys/net/core/rmem_max
  echo "${saved[1]}" > /proc/sys/net/core/wmem_max
}
trap restore EXIT

for limits in default raised; do
  if [ "$limits" = default ]; then value=212992; else value=8388608; fi
  echo "$value" > /proc/sys/net/core/rmem_max
  echo "$value" > /proc/sys/net/core/wmem_max
  echo "## limits: $limits (net.core.rmem_max = wmem_max = $value)"
  LIMITS=$limits tests/interop/netns.sh node bench/webrtc/bench.mjs
done
