#!/usr/bin/env bash
# The NAT traversal lab: network namespaces joined by veth pairs, with real NAT routers
# (nftables), two coturn servers and a peerlink signaling server. Needs root.
#
#   lab.sh ID up MODE_A MODE_B     build the lab (idempotent: an existing lab ID is torn down first)
#   lab.sh ID nat a|b MODE         switch router a or b to another NAT mode (flushes its conntrack)
#   lab.sh ID exec NODE CMD...     run CMD in a namespace: a, b (hosts), ra, rb (routers), pub
#   lab.sh ID impair a|b DELAY_MS JITTER_MS LOSS_PCT SEED
#                                  delay/jitter/loss every packet router a|b forwards (both ways)
#   lab.sh ID impair a|b off       stop it (every held packet is released first)
#   lab.sh ID service NAME stop|start   NAME: turn-rest, turn-lt, signal
#   lab.sh ID down                 remove everything (idempotent)
#   lab.sh ID info                 addresses and URLs, as shell assignments
#
# ID is a short run id (letters/digits, at most 6 characters) prefixed to every namespace,
# interface and state directory, so parallel runs do not collide.
#
# Topology (addresses exist only inside the lab's namespaces):
#
#   ID-a 10.0.1.2 ── 10.0.1.1 ID-ra 198.18.0.11 ─┐             ┌─ 198.18.0.1  signaling (8787; 443 → 8787)
#                                                ├─ ID-pub br ─┼─ 198.18.0.2  coturn, use-auth-secret
#   ID-b 10.0.2.2 ── 10.0.2.1 ID-rb 198.18.0.12 ─┘             └─ 198.18.0.3  coturn, long-term user
#
# Each coturn listens on UDP and TCP 3478 and TLS 443 (self-signed certificate).
#
# NAT modes (router's WAN is its veth into ID-pub):
#   cone       port-restricted cone: masquerade (ports kept) and drop unsolicited inbound
#   full       full cone: masquerade, and inbound UDP to the router is forwarded to its host
#   symmetric  masquerade fully-random, drop unsolicited inbound
#   udpblock   cone, and no UDP leaves at all
#   tcp443     only TCP to ports 80 and 443 leaves
#
# Environment: PEERLINK (the peerlink binary; default target/ci/peerlink), DELAYER (the
# natlab_delay binary; default target/ci/examples/natlab_delay), NATLAB_STATE (default /tmp).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PEERLINK=${PEERLINK:-$ROOT/target/ci/peerlink}
DELAYER=${DELAYER:-$ROOT/target/ci/examples/natlab_delay}
T=20 # seconds any single setup command may take

die() { echo "lab: $*" >&2; exit 1; }
[ $# -ge 2 ] || die "usage: lab.sh ID up|nat|exec|impair|service|down|info ..."
ID=$1; CMD=$2; shift 2
[[ $ID =~ ^[a-z][a-z0-9]{0,5}$ ]] || die "bad id '$ID' (a-z0-9, 1-6 characters, starting with a letter)"
[ "$(id -u)" = 0 ] || die "needs root"
STATE=${NATLAB_STATE:-/tmp}/natlab-$ID
TURN_SECRET=natlab-secret-$ID
TURN_USER=lab
TURN_PASS=natlab-pass-$ID

ns() { echo "$ID-$1"; }
inns() { local n; n=$(ns "$1"); shift; timeout "$T" ip netns exec "$n" "$@"; }

info() {
  cat <<INFO
NATLAB_SIGNAL_URL=ws://198.18.0.1:8787/ws
NATLAB_SIGNAL_URL_443=ws://198.18.0.1:443/ws
NATLAB_TURN_REST=198.18.0.2
NATLAB_TURN_LT=198.18.0.3
NATLAB_TURN_USER=$TURN_USER
NATLAB_TURN_PASS=$TURN_PASS
NATLAB_HOST_A=10.0.1.2
NATLAB_HOST_B=10.0.2.2
NATLAB_WAN_A=198.18.0.11
NATLAB_WAN_B=198.18.0.12
NATLAB_TURN_CA=$STATE/ca.der
INFO
}

# Kills every process in the lab's namespaces, then removes them and the state directory.
down() {
  local side n pids
  for side in a b ra rb pub; do
    n=$(ns $side)
    ip netns list 2>/dev/null | grep -qw "^$n" || continue
    pids=$(ip netns pids "$n" 2>/dev/null || true)
    # Delayers first, politely: they release what they hold before exiting.
    [ -z "$pids" ] || kill -TERM $pids 2>/dev/null || true
  done
  for _ in $(seq 1 20); do
    local left=0
    for side in a b ra rb pub; do
      [ -z "$(ip netns pids "$(ns $side)" 2>/dev/null || true)" ] || left=1
    done
    [ $left = 1 ] || break
    sleep 0.1
  done
  for side in a b ra rb pub; do
    n=$(ns $side)
    pids=$(ip netns pids "$n" 2>/dev/null || true)
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
    timeout "$T" ip netns del "$n" 2>/dev/null || true
  done
  rm -rf "$STATE"
}

sysctl_ns() { inns "$1" sysctl -qw "$2=$3" >/dev/null; }

# A new namespace with loopback up and IPv6 off.
mkns() {
  local n; n=$(ns "$1")
  timeout "$T" ip netns add "$n"
  inns "$1" ip link set lo up
  sysctl_ns "$1" net.ipv6.conf.all.disable_ipv6 1
  sysctl_ns "$1" net.ipv6.conf.default.disable_ipv6 1
}

# veth pair: $1 side in namespace $2 named $3, $4 side in namespace $5 named $6.
veth() {
  timeout "$T" ip link add "$3" netns "$(ns "$2")" type veth peer name "$6" netns "$(ns "$5")"
  inns "$2" ip link set "$3" up
  inns "$5" ip link set "$6" up
}

# The NAT ruleset of router $1 (a|b) in mode $2.
nat_rules() {
  local side=$1 mode=$2 lan=$3 host=$4
  local drop_unsolicited="iifname \"wan\" ct state new drop"
  cat <<NFT
table ip natlab
delete table ip natlab
table ip natlab {
  chain input {
    type filter hook input priority filter; policy accept;
    # A home router answers nothing on its WAN side: an unsolicited packet must not create a
    # conntrack entry on the router that later collides with the host's own mapping.
    iifname "wan" ct state established,related accept
    iifname "wan" drop
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    ct state established,related accept
NFT
  case $mode in
    cone|symmetric) echo "    $drop_unsolicited" ;;
    full) echo "    iifname \"wan\" ct status dnat accept"; echo "    $drop_unsolicited" ;;
    udpblock) echo "    oifname \"wan\" meta l4proto udp drop"; echo "    $drop_unsolicited" ;;
    tcp443)
      echo "    oifname \"wan\" tcp dport { 80, 443 } accept"
      echo "    oifname \"wan\" drop"
      echo "    $drop_unsolicited" ;;
    *) die "unknown NAT mode '$mode' (cone, full, symmetric, udpblock, tcp443)" ;;
  esac
  cat <<NFT
  }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
NFT
  # Full cone: any inbound UDP to the router's address goes to the host, port unchanged (the
  # masquerade below keeps the host's ports, so the mapping is endpoint-independent both ways).
  [ "$mode" = full ] && echo "    iifname \"wan\" meta l4proto udp dnat to $host"
  cat <<NFT
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
NFT
  if [ "$mode" = symmetric ]; then
    echo "    oifname \"wan\" ip saddr $lan masquerade fully-random"
  else
    echo "    oifname \"wan\" ip saddr $lan masquerade"
  fi
  echo "  }"
  echo "}"
}

set_nat() {
  local side=$1 mode=$2 lan host
  case $side in
    a) lan=10.0.1.0/24; host=10.0.1.2 ;;
    b) lan=10.0.2.0/24; host=10.0.2.2 ;;
    *) die "router is a or b, not '$side'" ;;
  esac
  nat_rules "$side" "$mode" "$lan" "$host" > "$STATE/nat-$side.nft"
  inns "r$side" nft -f "$STATE/nat-$side.nft"
  inns "r$side" conntrack -F >/dev/null 2>&1 || true
  echo "$mode" > "$STATE/mode-$side"
}

start_bg() { # start_bg NAME NODE CMD...: runs CMD in the background in NODE, logs to STATE/NAME.log
  local name=$1 node=$2; shift 2
  ip netns exec "$(ns "$node")" "$@" >"$STATE/$name.log" 2>&1 &
  echo $! > "$STATE/$name.pid"
}

stop_bg() {
  local name=$1 pid
  [ -f "$STATE/$name.pid" ] || return 0
  pid=$(cat "$STATE/$name.pid")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -f "$STATE/$name.pid"
}

# Waits (bounded) until something listens on TCP $3 in namespace $1 at address $2.
wait_listen() {
  for _ in $(seq 1 100); do
    inns "$1" ss -Hltn "src $2:$3" 2>/dev/null | grep -q . && return 0
    sleep 0.1
  done
  die "nothing listens on $2:$3 in $(ns "$1") (see $STATE/*.log)"
}

turn_conf() { # turn_conf NAME IP AUTH-LINES
  cat > "$STATE/$1.conf" <<CONF
listening-ip=$2
relay-ip=$2
listening-port=3478
tls-listening-port=443
min-port=40000
max-port=49999
realm=natlab
fingerprint
no-cli
no-multicast-peers
no-software-attribute
cert=$STATE/cert.pem
pkey=$STATE/key.pem
log-file=stdout
simple-log
pidfile=$STATE/$1.turnpid
userdb=$STATE/$1.db
$3
CONF
}

service() {
  local name=$1 action=$2
  case $name:$action in
    turn-rest:start|turn-lt:start)
      start_bg "$name" pub turnserver -c "$STATE/$name.conf"
      wait_listen pub "$([ "$name" = turn-rest ] && echo 198.18.0.2 || echo 198.18.0.3)" 3478 ;;
    signal:start)
      [ -x "$PEERLINK" ] || die "no peerlink binary at $PEERLINK (set PEERLINK)"
      PEERLINK_TURN_SECRET=$TURN_SECRET RUST_LOG=${NATLAB_SIGNAL_LOG:-warn} start_bg signal pub \
        "$PEERLINK" serve --listen 198.18.0.1:8787 --no-lobby \
        --turn-url "stun:198.18.0.2:3478" \
        --turn-url "turn:198.18.0.2:3478?transport=udp" \
        --turn-url "turn:198.18.0.2:3478?transport=tcp" \
        --turn-url "turns:198.18.0.2:443?transport=tcp"
      wait_listen pub 198.18.0.1 8787 ;;
    *:stop) stop_bg "$name" ;;
    *) die "service turn-rest|turn-lt|signal start|stop" ;;
  esac
}

up() {
  local mode_a=$1 mode_b=$2
  down
  mkdir -p "$STATE"
  trap 'echo "lab: up failed; tearing down" >&2; down' EXIT
  for side in pub ra rb a b; do mkns $side; done
  # The public segment: a bridge; its own addresses host the servers.
  inns pub ip link add br0 type bridge
  inns pub ip link set br0 up
  [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] && sysctl_ns pub net.bridge.bridge-nf-call-iptables 0
  inns pub ip addr add 198.18.0.1/24 dev br0
  inns pub ip addr add 198.18.0.2/24 dev br0
  inns pub ip addr add 198.18.0.3/24 dev br0
  # A default route into a sink, as any server on the internet has one: packets to the hosts'
  # private addresses leave and are lost instead of failing in sendto(). coturn marks a relay
  # socket for closing after any failed send, so without this the first relayed packet to a
  # peer's host candidate (ENETUNREACH) silently ends that allocation's relaying. The sink end
  # is local and the namespace does not forward, so it drops what arrives without an ICMP error.
  inns pub ip link add sink0 type veth peer name sink1
  inns pub ip addr add 198.18.255.1/30 dev sink0
  inns pub ip addr add 198.18.255.2/30 dev sink1
  inns pub ip link set sink0 up
  inns pub ip link set sink1 up
  inns pub ip route add default via 198.18.255.2 dev sink0
  # The signaling server also on TCP 443: the only port a tcp443 network lets out.
  inns pub nft -f - <<NFT
table ip natlab {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr 198.18.0.1 tcp dport 443 redirect to :8787
  }
}
NFT
  local side n wanip lanip hostip
  for side in a b; do
    if [ $side = a ]; then n=1; else n=2; fi
    wanip=198.18.0.1$n; lanip=10.0.$n.1; hostip=10.0.$n.2
    veth x "r$side" wan x pub "${ID}w$side"
    inns pub ip link set "${ID}w$side" master br0
    inns "r$side" ip addr add "$wanip/24" dev wan
    veth x "r$side" lan x "$side" eth0
    inns "r$side" ip addr add "$lanip/24" dev lan
    inns "$side" ip addr add "$hostip/24" dev eth0
    inns "$side" ip route add default via "$lanip"
    sysctl_ns "r$side" net.ipv4.ip_forward 1
    # Routers have no default route: the public segment is the whole internet here.
  done
  set_nat a "$mode_a"
  set_nat b "$mode_b"
  # Certificates for the TLS listeners: a lab CA (ca.der, what peers are told to trust) and a
  # server certificate from it for both coturn addresses.
  timeout "$T" openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=natlab CA" -keyout "$STATE/ca.key" -out "$STATE/ca.pem" >/dev/null 2>&1
  timeout "$T" openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=turn.natlab" -keyout "$STATE/key.pem" -out "$STATE/cert.csr" >/dev/null 2>&1
  printf 'basicConstraints=CA:FALSE\nsubjectAltName=IP:198.18.0.2,IP:198.18.0.3\n' >"$STATE/cert.ext"
  timeout "$T" openssl x509 -req -in "$STATE/cert.csr" -CA "$STATE/ca.pem" -CAkey "$STATE/ca.key" \
    -CAcreateserial -days 2 -extfile "$STATE/cert.ext" -out "$STATE/cert.pem" >/dev/null 2>&1
  timeout "$T" openssl x509 -in "$STATE/ca.pem" -outform der -out "$STATE/ca.der"
  turn_conf turn-rest 198.18.0.2 "use-auth-secret
static-auth-secret=$TURN_SECRET"
  turn_conf turn-lt 198.18.0.3 "lt-cred-mech
user=$TURN_USER:$TURN_PASS"
  service turn-rest start
  service turn-lt start
  service signal start
  trap - EXIT
  echo "lab $ID up: a=$mode_a b=$mode_b (state in $STATE)"
}

impair() {
  local side=$1; shift
  case $side in a|b) ;; *) die "impair a|b ..." ;; esac
  local q=1
  [ "$side" = a ] || q=2
  if [ "${1:-}" = off ]; then
    # Rule first (new packets pass again), then the delayer releases what it holds and exits.
    inns "r$side" iptables -t raw -F PREROUTING 2>/dev/null || true
    stop_bg "delay-$side"
    return 0
  fi
  [ $# = 4 ] || die "impair a|b DELAY_MS JITTER_MS LOSS_PCT SEED | off"
  [ -x "$DELAYER" ] || die "no delayer binary at $DELAYER (set DELAYER)"
  impair "$side" off
  # Wait until the delayer has bound its queue (it says so on its first line). On a loaded
  # machine a start has been seen to print nothing for the whole wait (cause unknown): such a
  # start is stopped and tried again, at most three times, before the lab gives up.
  local attempt
  for attempt in 1 2 3; do
    start_bg "delay-$side" "r$side" "$DELAYER" --queue "$q" --delay-ms "$1" --jitter-ms "$2" \
      --loss-percent "$3" --seed "$4" --seconds "${NATLAB_IMPAIR_SECONDS:-900}"
    for _ in $(seq 1 200); do grep -q '^bound' "$STATE/delay-$side.log" 2>/dev/null && break; sleep 0.1; done
    grep -q '^bound' "$STATE/delay-$side.log" && break
    echo "lab: delayer $side did not start (attempt $attempt): $(cat "$STATE/delay-$side.log")" >&2
    cp "$STATE/delay-$side.log" "$STATE/delay-$side.failed-$attempt.log" 2>/dev/null || true
    stop_bg "delay-$side"
  done
  grep -q '^bound' "$STATE/delay-$side.log" 2>/dev/null || die "delayer did not start after 3 attempts"
  # Raw prerouting sees every packet before conntrack and NAT, in both directions; bypass
  # lets packets through unharmed if the delayer is gone. (iptables' NFQUEUE target: nft's own
  # queue statement needs nft_queue, which this kernel lacks.)
  local dev
  for dev in wan lan; do
    inns "r$side" iptables -t raw -A PREROUTING -i "$dev" -j NFQUEUE --queue-num "$q" --queue-bypass
  done
}

case $CMD in
  up) [ $# = 2 ] || die "up MODE_A MODE_B"; up "$1" "$2" ;;
  down) down ;;
  info) info ;;
  nat) [ $# = 2 ] || die "nat a|b MODE"; set_nat "$1" "$2" ;;
  exec) [ $# -ge 2 ] || die "exec NODE CMD..."; n=$(ns "$1"); shift; exec ip netns exec "$n" "$@" ;;
  impair) impair "$@" ;;
  service) [ $# = 2 ] || die "service NAME start|stop"; service "$1" "$2" ;;
  *) die "unknown command '$CMD'" ;;
esac
