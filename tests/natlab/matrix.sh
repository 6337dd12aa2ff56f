#!/usr/bin/env bash
# The NAT traversal matrix: for each pair of NAT modes, two natlab_peer processes (one behind
# each router of tests/natlab/lab.sh) connect through the signaling server with coturn
# configured, move 8 MiB, verify its SHA-256, and the path they used is checked against what
# the pair of NATs allows. Needs root.
#
#   matrix.sh            the representative set (the test suite's natlab suite)
#   matrix.sh --full     every pair of modes, clean and impaired
#   matrix.sh CASE...    given cases, each MODE_A:MODE_B[:VARIANT] (see below)
#
# Variants: clean (default); impaired (50 ms delay each way and 2% loss, seeded, on router a);
# noturn (both coturns stopped: no STUN, no TURN); lt (the long-term-credential coturn instead
# of the server's REST credentials).
#
# Expected path (dialer behind router a, acceptor behind router b):
#   direct   WebRTC, neither selected candidate a TURN relay: cone/cone, full with anything that
#            sends UDP, symmetric/full
#   turn     WebRTC through coturn: symmetric/symmetric, symmetric/cone, and udpblock or tcp443
#            on either side (such a side reaches coturn by TURN over TCP on 3478 or over TLS on
#            443; the relayed side is UDP)
#   server   the signaling server's relay (WebSocket): whenever WebRTC finds no path (noturn
#            with a symmetric NAT, udpblock or tcp443)
#
# Environment: PEERLINK, NATLAB_PEER (default target/ci/examples/natlab_peer), DELAYER (see
# lab.sh), NATLAB_BYTES (default 8 MiB), NATLAB_ID (the lab's run id, default m<pid>; see
# lab.sh). Prints one result line per case and a summary; exits non-zero when any case fails.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LAB=$HERE/lab.sh
PEER=${NATLAB_PEER:-$ROOT/target/ci/examples/natlab_peer}
BYTES=${NATLAB_BYTES:-$((8 << 20))}
ID=${NATLAB_ID:-m$(( $$ % 100000 ))}
MODES=(cone full symmetric udpblock tcp443)

[ "$(id -u)" = 0 ] || { echo "matrix: needs root"; exit 1; }
[ -x "$PEER" ] || { echo "matrix: no peer binary at $PEER (cargo build --profile ci -p peerlink-tests --examples)"; exit 1; }

# The suite's set: one pair per expected path and NAT mode, TURN with both credential kinds
# (symmetric:symmetric with REST credentials, symmetric:cone with the long-term user).
REPRESENTATIVE=(
  cone:cone full:symmetric symmetric:full full:cone udpblock:cone tcp443:full
  symmetric:symmetric symmetric:cone:lt
  symmetric:symmetric:noturn cone:cone:impaired tcp443:cone:impaired
)

cases=()
if [ "${1:-}" = --full ]; then
  for a in "${MODES[@]}"; do
    for b in "${MODES[@]}"; do
      cases+=("$a:$b" "$a:$b:impaired")
    done
  done
  cases+=(symmetric:symmetric:noturn cone:symmetric:noturn symmetric:symmetric:lt)
elif [ $# -gt 0 ]; then
  cases=("$@")
else
  cases=("${REPRESENTATIVE[@]}")
fi

expected() { # expected MODE_A MODE_B VARIANT
  local a=$1 b=$2 v=$3
  if [ "$v" = noturn ]; then
    # Without STUN only host candidates exist; no two private networks reach each other.
    echo server; return
  fi
  # A side without UDP out has only its relay candidate (TURN over TCP or TLS).
  case "$a $b" in *udpblock*|*tcp443*) echo turn; return ;; esac
  if [ "$a" = full ] || [ "$b" = full ] || [ "$a $b" = "cone cone" ]; then echo direct; else echo turn; fi
}

cleanup() { "$LAB" "$ID" down || true; }
trap cleanup EXIT
timeout 120 "$LAB" "$ID" up cone cone >/dev/null
eval "$("$LAB" "$ID" info)"

url_for() { if [ "$1" = tcp443 ]; then echo "$NATLAB_SIGNAL_URL_443"; else echo "$NATLAB_SIGNAL_URL"; fi; }

pass=0; failures=()
turn_up=1
n=0
for c in "${cases[@]}"; do
  IFS=: read -r ma mb variant <<<"$c"
  variant=${variant:-clean}
  n=$((n + 1))
  want=$(expected "$ma" "$mb" "$variant")
  "$LAB" "$ID" nat a "$ma"
  "$LAB" "$ID" nat b "$mb"
  if [ "$variant" = noturn ] && [ $turn_up = 1 ]; then
    "$LAB" "$ID" service turn-rest stop; "$LAB" "$ID" service turn-lt stop; turn_up=0
  elif [ "$variant" != noturn ] && [ $turn_up = 0 ]; then
    "$LAB" "$ID" service turn-rest start; "$LAB" "$ID" service turn-lt start; turn_up=1
  fi
  turn=rest
  [ "$variant" = lt ] && turn="lt:turn:$NATLAB_TURN_LT:3478:$NATLAB_TURN_USER:$NATLAB_TURN_PASS"
  if [ "$variant" = impaired ]; then
    "$LAB" "$ID" impair a 50 0 2 "$n"
  fi
  # Long enough for the dialer's three WebRTC attempts (10 s each).
  wait=35
  out_dir=$(mktemp -d)
  timeout 170 "$LAB" "$ID" exec b "$PEER" --server "$(url_for "$mb")" --device "b$n" --room "r$n" \
    --turn "$turn" --turn-ca "$NATLAB_TURN_CA" --seconds 150 >"$out_dir/b.out" 2>"$out_dir/b.err" &
  bpid=$!
  set +e
  timeout 170 "$LAB" "$ID" exec a "$PEER" --server "$(url_for "$ma")" --device "a$n" --room "r$n" \
    --to "b$n" --turn "$turn" --turn-ca "$NATLAB_TURN_CA" --bytes "$BYTES" --webrtc-wait "$wait" \
    --seconds 150 --seed "$n" \
    >"$out_dir/a.out" 2>"$out_dir/a.err"
  arc=$?
  wait "$bpid"; brc=$?
  set -e
  [ "$variant" = impaired ] && "$LAB" "$ID" impair a off
  result=$(tail -n 1 "$out_dir/a.out")
  got=$(python3 - "$result" <<'PY'
import json, sys
try:
    r = json.loads(sys.argv[1])
except Exception:
    print("error"); sys.exit()
if not r.get("ok"):
    print("error")
elif r["kind"] == "relay":
    print("server")
elif r["kind"] == "webrtc":
    # The selected pair as the dialer saw it, else as the acceptor saw it (the engine's stats
    # sometimes lack a peer-reflexive candidate on one side); neither: unknown, a failure.
    peer = r.get("peerPath") or {}
    views = [(r.get("local"), r.get("remote")), (peer.get("local"), peer.get("remote"))]
    known = [v for v in views if v[0] and v[1]]
    if not known:
        print("unknown")
    elif any(c["candidateType"] == "relay" for v in known for c in v):
        print("turn")
    else:
        print("direct")
else:
    print("other:" + r["kind"])
PY
)
  summary=$(python3 - "$result" <<'PY'
import json, sys
try:
    r = json.loads(sys.argv[1])
except Exception:
    print(sys.argv[1][:300]); sys.exit()
c = lambda x: "%s/%s" % (x["candidateType"], x["protocol"]) if x else "-"
if not r.get("local") and (r.get("peerPath") or {}).get("local"):
    # Only the acceptor's view: its remote is the dialer's local.
    r["local"], r["remote"] = r["peerPath"]["remote"], r["peerPath"]["local"]
print("%s -> %s, %.1f MB/s, rtt %s ms, webrtc after %s ms" % (
    c(r.get("local")), c(r.get("remote")), r.get("mbytesPerSecond", 0),
    "%.0f" % r["rttMs"] if r.get("rttMs") else "-",
    "%.0f" % r["webrtcMs"] if r.get("webrtcMs") else "-"))
PY
)
  line=$(printf '%-28s want %-6s got %-6s %s' "$ma:$mb:$variant" "$want" "$got" "$summary")
  if [ "$got" = "$want" ] && [ $arc = 0 ] && [ $brc = 0 ]; then
    pass=$((pass + 1)); echo "ok   $line"
  else
    failures+=("$c"); echo "FAIL $line (dialer exit $arc, acceptor exit $brc)"
    echo "     dialer: $result"
    sed 's/^/     acceptor: /' "$out_dir/b.out" "$out_dir/b.err" | tail -n 5
    sed 's/^/     dialer stderr: /' "$out_dir/a.err" | tail -n 5
  fi
  rm -rf "$out_dir"
done

echo "natlab matrix: $pass/${#cases[@]} passed"
[ ${#failures[@]} -eq 0 ] || { echo "failed: ${failures[*]}"; exit 1; }
