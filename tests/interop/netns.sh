#!/usr/bin/env bash
# Runs a command inside a fresh network namespace with one veth address, 10.99.0.2, and a
# default route through the host end (10.99.0.1): Chromium and libwebrtc ignore loopback and
# Chromium gathers no candidates without a default route. Exports PL_BIND=10.99.0.2.
# Everything started inside is killed and the namespace removed on exit. Needs root.
#
#   tests/interop/netns.sh COMMAND [ARGS...]
set -euo pipefail
ns=pl-interop-$$
host_if=plh$$
ns_if=pln$$
cleanup() {
  local pids
  pids=$(ip netns pids "$ns" 2>/dev/null || true)
  # shellcheck disable=SC2086
  [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
  ip link del "$host_if" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
ip netns add "$ns"
ip link add "$host_if" type veth peer name "$ns_if"
ip link set "$ns_if" netns "$ns"
ip addr add 10.99.0.1/24 dev "$host_if"
ip link set "$host_if" up
ip netns exec "$ns" ip link set lo up
ip netns exec "$ns" ip addr add 10.99.0.2/24 dev "$ns_if"
ip netns exec "$ns" ip link set "$ns_if" up
ip netns exec "$ns" ip route add default via 10.99.0.1
PL_BIND=10.99.0.2 ip netns exec "$ns" "$@"
