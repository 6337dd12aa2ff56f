#!/usr/bin/env bash
# Faults in the NAT lab: two natlab_peer processes behind port-restricted cone NATs
# (tests/natlab/lab.sh) keep a steady stream of numbered calls going while this script breaks
# something at a known time; each case asserts how the connection comes through it. Needs root.
#
#   faults.sh            cut, move, signal, turn (the test suite's natlab suite runs this after
#                        matrix.sh)
#   faults.sh CASE...    given cases: cut move signal turn
#
# Cases (the fault starts 4 s after the steady load does):
#   cut     router a forwards nothing for 10 s, then everything again. The WebRTC link must
#           come back (ICE restart; the DTLS session, SCTP association and peerlink connection
#           stay) and every call must complete exactly once: no call fails, none is lost or
#           taken twice, the payload digests match, calls flow again at the end.
#   move    host a changes network: its private address 10.0.1.2 -> 10.0.1.3 and router a's
#           public address 198.18.0.11 -> 198.18.0.21 (masquerade forgets its mappings). The
#           connection must recover by an ICE restart on the same WebRTC connection (the
#           signaling client replaces its dead connection to the server, which restarts ICE):
#           no call fails, none is lost or taken twice, calls flow again at the end, on WebRTC.
#   signal  the signaling server is killed for 10 s, then started again. Calls on the existing
#           WebRTC link must go on every second while it is down, none failing; once it is
#           back, a new pair of peers connects through it and moves 1 MiB.
#   turn    both peers use relay-only ICE, so the link runs through coturn (opened by retry,
#           at most 3 runs); coturn is stopped for 15 s, then started again. The calls must
#           stall (the fault took effect), the link must restart ICE, and calls must flow again
#           at the end, none failed, lost or taken twice.
#
# Environment: PEERLINK, NATLAB_PEER, DELAYER as for matrix.sh; NATLAB_ID names the lab (default
# f<pid>, so concurrent runs do not collide); FAULTS_KEEP=1 keeps each case's peer logs. Prints
# one result line per case and a summary; exits non-zero when any case fails.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LAB=$HERE/lab.sh
PEER=${NATLAB_PEER:-$ROOT/target/ci/examples/natlab_peer}
ID=${NATLAB_ID:-f$(( $$ % 100000 ))}
FAULT_AT=4

[ "$(id -u)" = 0 ] || { echo "faults: needs root"; exit 1; }
[ -x "$PEER" ] || { echo "faults: no peer binary at $PEER (cargo build --profile ci -p peerlink-tests --examples)"; exit 1; }

cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(cut move signal turn)

cleanup() { "$LAB" "$ID" down || true; }
trap cleanup EXIT

inns() { local node=$1; shift; timeout 20 "$LAB" "$ID" exec "$node" "$@"; }

# Starts the acceptor in b and the steady dialer in a; returns once the load runs (or the
# dialer ended before it began). Sets WORK, APID, BPID.
start_pair() { # start_pair CASE STEADY_SECONDS EXTRA_ARGS...
  local c=$1 steady=$2; shift 2
  WORK=$(mktemp -d)
  local limit=$((steady + 90))
  timeout $((limit + 20)) "$LAB" "$ID" exec b "$PEER" --server "$NATLAB_SIGNAL_URL" \
    --device "b-$c" --room "f-$c" --seconds "$limit" "$@" >"$WORK/b.out" 2>"$WORK/b.err" &
  BPID=$!
  timeout $((limit + 20)) "$LAB" "$ID" exec a "$PEER" --server "$NATLAB_SIGNAL_URL" \
    --device "a-$c" --room "f-$c" --to "b-$c" --webrtc-wait 35 --steady "$steady" \
    --call-timeout 30 --seconds "$limit" --seed 7 "$@" >"$WORK/a.out" 2>"$WORK/a.err" &
  APID=$!
  # Bounded: 60 s for the relay, WebRTC (three 10 s attempts) and the start of the load.
  for _ in $(seq 1 600); do
    grep -q '^steady started' "$WORK/a.err" 2>/dev/null && return 0
    kill -0 "$APID" 2>/dev/null || return 0
    sleep 0.1
  done
}

# Waits for both peers; prints the dialer's JSON line (or nothing).
finish_pair() {
  ARC=0; BRC=0
  wait "$APID" || ARC=$?
  wait "$BPID" || BRC=$?
  RESULT=$(tail -n 1 "$WORK/a.out" 2>/dev/null || true)
}

# check CASE PYTHON-ASSERTIONS: evaluates assertions over the dialer's result `r`; prints
# `ok`/`FAIL` and a summary line.
check() {
  local c=$1 rules=$2
  python3 - "$RESULT" "$rules" <<'PY'
import json, sys
raw, rules = sys.argv[1], sys.argv[2]
try:
    r = json.loads(raw)
except Exception:
    print("FAIL no result: " + raw[:300]); sys.exit(1)
t = r.get("tally") or {}
tl = r.get("timeline") or []
w = r.get("webrtcPath") or {}
failures = []
def need(cond, what):
    if not cond:
        failures.append(what)
need(r.get("ok"), "the acceptor's tally is complete and in order (gaps %s, duplicates %s, digest %s)"
     % (t.get("gaps"), t.get("duplicates"), r.get("digestMatches")))
need(sum(tl[-6:-1]) > 0, "calls flow again at the end (last 5 s: %s)" % tl[-6:-1])
exec(rules)
changes = " ".join("%s@%.1fs%s" % (c["path"], c["ms"] / 1e3, "(" + c["reason"] + ")" if c.get("reason") else "")
                   for c in r.get("changes", []))
print("     %scalls %d, failed %d, duplicates %s, gaps %s, redials %d, longest stall %.1f s, "
      "ICE restarts %s, path %s; changes: %s" % (
    "" if not failures else "(failed) ", r.get("calls", 0), r.get("failedCalls", 0),
    t.get("duplicates"), t.get("gaps"), r.get("redials", 0), r.get("maxStallMs", 0) / 1e3,
    w.get("iceRestarts", "-"), r.get("kind"), changes))
for f in failures:
    print("     not met: " + f)
if failures:
    for e in r.get("errors", [])[:5]:
        print("     error: %s" % json.dumps(e))
    print("     timeline: %s" % tl)
sys.exit(1 if failures else 0)
PY
}

show_logs() {
  sed 's/^/     dialer stderr: /' "$WORK/a.err" | grep -v 'steady t=' | tail -n 5 || true
  sed 's/^/     acceptor: /' "$WORK/b.out" "$WORK/b.err" | tail -n 3 || true
}

# The first path (and so whether the case tests what it says) must be WebRTC.
ON_WEBRTC='need((r.get("changes") or [{}])[0].get("path") == "webrtc", "the load starts on WebRTC")'

case_cut() {
  start_pair cut 35
  sleep "$FAULT_AT"
  inns ra nft -f - <<'NFT'
table ip faultcut {
  chain forward { type filter hook forward priority -50; policy drop; }
}
NFT
  sleep 10
  inns ra nft delete table ip faultcut
  finish_pair
  check cut "$ON_WEBRTC
need(r.get('failedCalls') == 0, 'no call failed (the link, its association and calls in flight survive)')
need(t.get('duplicates') == 0, 'no call taken twice')
need(r.get('maxStallMs', 0) >= 5000, 'the cut stalled the calls (it took effect)')
need(r.get('kind') == 'webrtc', 'back on WebRTC at the end')"
}

case_move() {
  start_pair move 35
  sleep "$FAULT_AT"
  # A new network: new private address, new public address; the router's masquerade drops
  # every mapping of the old one. (The new address is added first; promote_secondaries keeps
  # it when the old primary goes.)
  inns a sysctl -qw net.ipv4.conf.eth0.promote_secondaries=1
  inns ra sysctl -qw net.ipv4.conf.wan.promote_secondaries=1
  inns a ip addr add 10.0.1.3/24 dev eth0
  inns a ip addr del 10.0.1.2/24 dev eth0
  inns a ip route replace default via 10.0.1.1 src 10.0.1.3
  inns ra ip addr add 198.18.0.21/24 dev wan
  inns ra ip addr del 198.18.0.11/24 dev wan
  inns ra conntrack -F >/dev/null 2>&1 || true
  finish_pair
  # Back to the lab's addresses for the next case.
  inns ra ip addr add 198.18.0.11/24 dev wan
  inns ra ip addr del 198.18.0.21/24 dev wan
  inns a ip addr add 10.0.1.2/24 dev eth0
  inns a ip addr del 10.0.1.3/24 dev eth0
  inns a ip route replace default via 10.0.1.1
  inns ra conntrack -F >/dev/null 2>&1 || true
  check move "$ON_WEBRTC
need(r.get('failedCalls') == 0, 'no call failed (the link, its association and calls in flight survive)')
need(t.get('duplicates') == 0, 'no call taken twice')
need((r.get('webrtcPath') or {}).get('iceRestarts', 0) >= 1, 'the link recovered by an ICE restart')
need(r.get('kind') == 'webrtc', 'back on WebRTC at the end')"
}

case_signal() {
  start_pair signal 30
  sleep "$FAULT_AT"
  "$LAB" "$ID" service signal stop
  sleep 10
  "$LAB" "$ID" service signal start
  finish_pair
  local down_from=$((FAULT_AT + 1)) down_to=$((FAULT_AT + 9))
  check signal "$ON_WEBRTC
down = tl[$down_from:$down_to + 1]
need(all(n > 0 for n in down), 'calls completed in every second the server was down: %s' % down)
need(r.get('failedCalls') == 0, 'no call failed')
need(t.get('duplicates') == 0, 'no call taken twice')
need(r.get('kind') == 'webrtc', 'still on WebRTC at the end')" || return 1
  # A new connection through the restarted server.
  local new=$WORK/new
  mkdir -p "$new"
  timeout 110 "$LAB" "$ID" exec b "$PEER" --server "$NATLAB_SIGNAL_URL" --device b-new \
    --room f-new --seconds 90 >"$new/b.out" 2>"$new/b.err" &
  local nb=$!
  set +e
  timeout 110 "$LAB" "$ID" exec a "$PEER" --server "$NATLAB_SIGNAL_URL" --device a-new \
    --room f-new --to b-new --bytes $((1 << 20)) --webrtc-wait 35 --seconds 90 \
    >"$new/a.out" 2>"$new/a.err"
  local na=$?
  wait "$nb"; local nbr=$?
  set -e
  if [ $na = 0 ] && [ $nbr = 0 ]; then
    echo "     a new pair connected through the restarted server: $(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r["kind"], "%d bytes verified" % r["bytes"])' "$(tail -n 1 "$new/a.out")")"
  else
    echo "     not met: a new pair connects through the restarted server (exits $na, $nbr): $(tail -n 1 "$new/a.out")"
    return 1
  fi
}

case_turn() {
  local run
  for run in 1 2 3; do
    start_pair "turn$run" 45 --policy relay
    grep -q '^steady started on webrtc' "$WORK/a.err" && break
    echo "     run $run: WebRTC through coturn did not open; again"
    kill "$APID" "$BPID" 2>/dev/null || true
    finish_pair
    rm -rf "$WORK"
    [ $run = 3 ] && { echo "     not met: WebRTC through coturn opens within 3 runs"; return 1; }
  done
  sleep "$FAULT_AT"
  "$LAB" "$ID" service turn-rest stop
  sleep 15
  "$LAB" "$ID" service turn-rest start
  finish_pair
  check turn "$ON_WEBRTC
need(r.get('maxStallMs', 0) >= 5000, 'losing coturn stalled the calls (it took effect)')
need((r.get('webrtcPath') or {}).get('iceRestarts', 0) >= 1, 'the link tried to recover (ICE restarts)')
need(r.get('failedCalls') == 0, 'no call failed')
need(t.get('duplicates') == 0, 'no call taken twice')"
}

timeout 120 "$LAB" "$ID" up cone cone >/dev/null
eval "$("$LAB" "$ID" info)"

pass=0; failures=()
for c in "${cases[@]}"; do
  declare -F "case_$c" >/dev/null || { echo "faults: unknown case '$c' (cut move signal turn)"; failures+=("$c"); continue; }
  echo "== $c"
  started=$(date +%s)
  WORK=
  set +e
  "case_$c"; rc=$?
  set -e
  took=$(( $(date +%s) - started ))
  if [ $rc = 0 ]; then
    pass=$((pass + 1)); echo "ok   $c (${took} s)"
  else
    failures+=("$c"); echo "FAIL $c (${took} s)"
    [ -n "$WORK" ] && [ -d "$WORK" ] && show_logs
  fi
  if [ -n "${FAULTS_KEEP:-}" ] && [ -n "$WORK" ]; then echo "     logs kept in $WORK"; elif [ -n "$WORK" ]; then rm -rf "$WORK"; fi
done

echo "natlab faults: $pass/${#cases[@]} passed"
[ ${#failures[@]} -eq 0 ] || { echo "failed: ${failures[*]}"; exit 1; }
