#!/usr/bin/env bash
# WebRTC data-channel throughput under delay and loss, with TCP on the same impaired path as
# the reference, and through coturn (TURN relay, clean). Needs root, iptables and coturn.
#
#   bench/webrtc/loss.sh [CASE...]     # cases: clean delay loss both turn (default: all)
#
# TCP runs twice: with the system's congestion control (bbr on the machine measured, which does
# not treat random loss as congestion) and with cubic (loss-based, like SCTP's).
#
# Everything runs in a private network namespace (plloss-<pid>) on its loopback interface,
# with the MTU at 1500 and segmentation offloads off so TCP sends Ethernet-sized segments
# like a real path, not 64 KiB loopback ones. Impairment: an iptables NFQUEUE rule in raw
# PREROUTING hands every UDP (WebRTC) or TCP (reference) packet to the NAT lab's delayer
# (tests/examples/natlab_delay.rs), which holds it DELAY_MS and drops LOSS percent of them
# from a seeded generator. Each packet passes the rule once, so DELAY_MS applies in each
# direction (50 ms adds 100 ms of round trip) and both directions lose packets. (PREROUTING,
# not OUTPUT: loopback has already detached the packet from its socket there; held in OUTPUT,
# it would still count against the sender's socket, and TCP's small-queue limit would
# throttle TCP to a fraction of the path.)
#
# Environment: RUNS (5), MIB (8), DELAY_MS (50), LOSS (2), SEED (7), BENCH (the webrtc_bench
# binary, default target/ci/examples/webrtc_bench), DELAYER (default
# target/ci/examples/natlab_delay), BENCH_ARGS (extra webrtc_bench arguments), SCTP_CC (the
# SCTP congestion controllers to run WebRTC with, side by side: "rate" (default, the runtime's
# default controller), "standard" (RFC 4960), or both, e.g. SCTP_CC="standard rate").
# Build: cargo build --profile ci -p peerlink --example webrtc_bench -p peerlink-tests --example natlab_delay
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
BENCH=${BENCH:-$ROOT/target/ci/examples/webrtc_bench}
DELAYER=${DELAYER:-$ROOT/target/ci/examples/natlab_delay}
RUNS=${RUNS:-5}
MIB=${MIB:-8}
DELAY_MS=${DELAY_MS:-50}
LOSS=${LOSS:-2}
SEED=${SEED:-7}
SCTP_CC=${SCTP_CC:-rate}
NS=plloss-$$
Q=$(( 2000 + $$ % 30000 ))
STATE=$(mktemp -d /tmp/plloss.XXXXXX)

[ "$(id -u)" = 0 ] || { echo "loss.sh: needs root"; exit 1; }
for b in "$BENCH" "$DELAYER"; do [ -x "$b" ] || { echo "loss.sh: no binary $b"; exit 1; }; done
command -v iptables >/dev/null || { echo "loss.sh: needs iptables"; exit 1; }

inns() { timeout 30 ip netns exec "$NS" "$@"; }
cleanup() {
  for f in "$STATE"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  sleep 0.2
  timeout 10 ip netns del "$NS" 2>/dev/null || true
  rm -rf "$STATE"
}
trap cleanup EXIT

timeout 10 ip netns add "$NS"
inns ip link set lo mtu 1500 up
# The engine needs a multicast-capable interface with a route (it fails with ENODEV on a
# namespace that has only loopback); the links still bind 127.0.0.1.
inns ip link add pl0 type veth peer name pl1
inns ip link set pl1 up
inns ip addr add 10.231.0.1/24 dev pl0
inns ip link set pl0 up
inns ip route add default dev pl0
inns ethtool -K lo tso off gso off gro off >/dev/null 2>&1 || echo "loss.sh: ethtool missing, offloads stay on"

# impair PROTO DELAY LOSS: queue PROTO's packets through the delayer (DELAY 0 and LOSS 0: none).
impair() {
  inns iptables -t raw -F PREROUTING
  if [ -f "$STATE/delay.pid" ]; then
    kill "$(cat "$STATE/delay.pid")" 2>/dev/null || true
    rm -f "$STATE/delay.pid"
    sleep 0.2
  fi
  [ "$2" = 0 ] && [ "$3" = 0 ] && return 0
  ip netns exec "$NS" "$DELAYER" --queue "$Q" --delay-ms "$2" --loss-percent "$3" --seed "$SEED" \
    --seconds 3600 >"$STATE/delay.log" 2>&1 &
  echo $! >"$STATE/delay.pid"
  for _ in $(seq 50); do grep -q '^bound' "$STATE/delay.log" && break; sleep 0.1; done
  grep -q '^bound' "$STATE/delay.log" || { cat "$STATE/delay.log"; exit 1; }
  inns iptables -t raw -A PREROUTING -i lo -p "$1" -j NFQUEUE --queue-num "$Q" --queue-bypass
}

turn_up() {
  [ -f "$STATE/turn.pid" ] && return 0
  ip netns exec "$NS" turnserver -n --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 \
    --listening-port=3478 --min-port=49152 --max-port=49400 --allow-loopback-peers \
    --lt-cred-mech --user=bench:bench --realm=peerlink.bench --no-tls --no-dtls --no-cli \
    --log-file=stdout --simple-log >"$STATE/turn.log" 2>&1 &
  echo $! >"$STATE/turn.pid"
  for _ in $(seq 50); do grep -q 'listener opened on' "$STATE/turn.log" 2>/dev/null && break; sleep 0.1; done
}

# run LABEL ARGS...: webrtc_bench with ARGS; prints its per-run lines and median.
run() {
  local label=$1; shift
  echo "### $label"
  # shellcheck disable=SC2086
  timeout 1800 ip netns exec "$NS" "$BENCH" --mib "$MIB" --runs "$RUNS" --ice-interval-ms 20 ${BENCH_ARGS:-} "$@" \
    | grep --line-buffered -E "^(run|median)|rror|anic" || true
}

CC=$(inns cat /proc/sys/net/ipv4/tcp_congestion_control)
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(clean delay loss both turn)
echo "# $MIB MiB per run, $RUNS runs; delay ${DELAY_MS} ms each way, loss ${LOSS} %, seed $SEED"
for c in "${cases[@]}"; do
  case $c in
    clean) d=0; l=0 ;;
    delay) d=$DELAY_MS; l=0 ;;
    loss) d=0; l=$LOSS ;;
    both) d=$DELAY_MS; l=$LOSS ;;
    turn) d=0; l=0 ;;
    *) echo "unknown case $c"; exit 2 ;;
  esac
  if [ "$c" = turn ]; then
    turn_up
    impair udp 0 0
    for cc in $SCTP_CC; do
      run "turn (coturn relay, clean): WebRTC, SCTP $cc" --sctp-cc "$cc" \
        --turn turn:127.0.0.1:3478 --turn-user bench --turn-pass bench
    done
    continue
  fi
  impair udp "$d" "$l"
  for cc in $SCTP_CC; do
    run "$c (delay $d ms each way, loss $l %): WebRTC, SCTP $cc" --sctp-cc "$cc"
  done
  impair tcp "$d" "$l"
  run "$c (delay $d ms each way, loss $l %): TCP ($CC, the system default)" --tcp
  run "$c (delay $d ms each way, loss $l %): TCP (cubic)" --tcp --tcp-cc cubic
done
impair udp 0 0
