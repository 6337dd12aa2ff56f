#!/usr/bin/env bash
# Signaling server load benchmark: the peerlink signaling server against peerjs-server (npm
# package `peer`, pinned by peerjs/package-lock.json), each in its own process, driven by the
# same Rust load generator (bench/signaling, `signal-bench load`) over loopback, with clients
# spread over 127.1.0.1-16. Per server: the most idle authenticated clients held and the
# server's RSS growth per client; signals per second at saturation and p50/p99 latency at a
# fixed rate, with 1,000 and 10,000 clients. Prints the raw JSON lines, then a markdown table
# of medians and ratios, with the CPU the server and the generator used (in cores).
#
# The server runs pinned to CPU $SERVER_CPU and the generator to CPU $LOAD_CPU (taskset), the
# same for both servers, so neither competes with the generator for a core; the generator is
# one thread. Runs at nice $NICE (the machine is shared): on a busy machine the figures are
# CPU-starved, which the CPU columns show.
#
#   bench/signaling/run.sh        # IDLE=19900 SIZES=1000,10000 RATE=20000 REPEAT=5 WINDOW=5
#                                 # SERVER_CPU=0 LOAD_CPU=1 NICE=5
set -euo pipefail
cd "$(dirname "$0")/../.."
IDLE=${IDLE:-19900}
SIZES=${SIZES:-1000,10000}
RATE=${RATE:-20000}
REPEAT=${REPEAT:-5}
SECONDS_PER_WINDOW=${WINDOW:-5}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
NICE=${NICE:-5}
OUT=$(mktemp -d)
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$OUT"
}
trap cleanup EXIT

(cd bench/signaling/peerjs && { [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error; })
[ -n "${NO_BUILD:-}" ] || cargo build --profile ci --locked -p peerlink-signal-bench
BIN=${SIGNAL_BENCH:-${CARGO_TARGET_DIR:-target}/ci/signal-bench}
ulimit -n 20000 2>/dev/null || true

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "server on port $1 did not start" >&2; return 1
}

echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg); server on CPU $SERVER_CPU, generator on CPU $LOAD_CPU"
for kind in peerlink peerjs; do
  port=$(free_port)
  if [ "$kind" = peerlink ]; then
    nice -n "$NICE" taskset -c "$SERVER_CPU" "$BIN" server --listen "127.0.0.1:$port" >"$OUT/$kind.log" 2>&1 &
  else
    nice -n "$NICE" taskset -c "$SERVER_CPU" node bench/signaling/peerjs/node_modules/peer/dist/bin/peerjs.js \
      --port "$port" --key peerjs --path / --concurrent_limit 1000000 \
      >"$OUT/$kind.log" 2>&1 &
  fi
  SERVER_PID=$!
  wait_port "$port"
  nice -n "$NICE" taskset -c "$LOAD_CPU" "$BIN" load --kind "$kind" --addr "127.0.0.1:$port" --server-pid "$SERVER_PID" \
    --idle "$IDLE" --sizes "$SIZES" --rate "$RATE" --repeat "$REPEAT" \
    --seconds "$SECONDS_PER_WINDOW" | tee -a "$OUT/results.jsonl"
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
done

echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
node - "$OUT/results.jsonl" <<'JS'
const fs = require('fs');
const rows = fs.readFileSync(process.argv[2], 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN; };
const pick = (server, test, clients) => rows.filter((r) => r.server === server && r.test === test && (clients === undefined || r.clients === clients));
const f = (x, d = 0) => (Number.isFinite(x) ? x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }) : 'n/a');
const idle = (s) => pick(s, 'idle')[0] || {};
const [pl, pj] = [idle('peerlink'), idle('peerjs')];
console.log('\n| measurement | peerlink | peerjs-server | ratio |');
console.log('|---|---:|---:|---:|');
console.log(`| idle clients held (of ${f(pl.tried)}) | ${f(pl.held)} | ${f(pj.held)} | |`);
console.log(`| server RSS per idle client | ${f(pl.bytes_per_client / 1024, 2)} KiB | ${f(pj.bytes_per_client / 1024, 2)} KiB | ${f(pj.bytes_per_client / pl.bytes_per_client, 1)}× less |`);
const sizes = [...new Set(rows.filter((r) => r.clients).map((r) => r.clients))];
for (const n of sizes) {
  const a = median(pick('peerlink', 'saturate', n).map((r) => r.per_second));
  const b = median(pick('peerjs', 'saturate', n).map((r) => r.per_second));
  console.log(`| signals/s at saturation, ${f(n)} clients | ${f(a)} | ${f(b)} | ${f(a / b, 1)}× |`);
  const cpu = (s, k) => median(pick(s, 'saturate', n).map((r) => r[k]));
  console.log(`| server / generator CPU at saturation, ${f(n)} clients (cores) | ${f(cpu('peerlink', 'server_cpu'), 2)} / ${f(cpu('peerlink', 'load_cpu'), 2)} | ${f(cpu('peerjs', 'server_cpu'), 2)} / ${f(cpu('peerjs', 'load_cpu'), 2)} | |`);
  const per = (s) => median(pick(s, 'saturate', n).map((r) => r.per_second / r.server_cpu));
  console.log(`| signals per server CPU-second, ${f(n)} clients | ${f(per('peerlink'))} | ${f(per('peerjs'))} | ${f(per('peerlink') / per('peerjs'), 1)}× |`);
}
for (const n of sizes) {
  for (const [key, label] of [['p50_ms', 'p50'], ['p99_ms', 'p99']]) {
    const ra = pick('peerlink', 'rate', n); const rb = pick('peerjs', 'rate', n);
    if (!ra.length) continue;
    const a = median(ra.map((r) => r[key])); const b = median(rb.map((r) => r[key]));
    console.log(`| ${label} latency at ${f(ra[0].target_per_second)} signals/s, ${f(n)} clients | ${f(a, 2)} ms | ${f(b, 2)} ms | ${f(b / a, 1)}× lower |`);
  }
  const cpu = (s) => median(pick(s, 'rate', n).map((r) => r.server_cpu));
  if (pick('peerlink', 'rate', n).length) {
    console.log(`| server CPU at ${f(pick('peerlink', 'rate', n)[0].target_per_second)} signals/s, ${f(n)} clients (cores) | ${f(cpu('peerlink'), 2)} | ${f(cpu('peerjs'), 2)} | |`);
  }
}
JS
