#!/usr/bin/env bash
# Codec speed: peerlink's whole wire path (encode, deflate when it pays, chunk, seal, open,
# reassemble, inflate, decode) against msgpackr + fflate in Node doing pack, deflateSync,
# inflateSync, unpack. Prints a markdown table of medians and ratios.
#
#   bench/codec.sh [seconds-per-case]      (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_CASE=${1:-2}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

(cd bench/codec-node && { [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error; })
cargo bench -p peerlink-core --bench codec -- --json --seconds "$SECONDS_PER_CASE" \
  | grep '^{' >"$OUT/rust.jsonl"
node bench/codec-node/bench.mjs --json --seconds "$SECONDS_PER_CASE" >"$OUT/node.jsonl"

node - "$OUT/rust.jsonl" "$OUT/node.jsonl" <<'JS'
const fs = require('fs');
const read = (p) => fs.readFileSync(p, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const rust = read(process.argv[2]);
const node = read(process.argv[3]);
const find = (payload, size, level) =>
  node.find((r) => r.payload === payload && r.size === size && r.level === level);
console.log('| payload | size | peerlink L1 MB/s | msgpackr+fflate L1 MB/s | ratio L1 | msgpackr+fflate L6 MB/s | ratio vs L6 |');
console.log('|---|---|---:|---:|---:|---:|---:|');
let worst = Infinity;
for (const r of rust) {
  const n1 = find(r.payload, r.size, 1);
  const n6 = find(r.payload, r.size, 6);
  const ratio1 = r.mb_per_s / n1.mb_per_s;
  const ratio6 = r.mb_per_s / n6.mb_per_s;
  worst = Math.min(worst, ratio1);
  console.log(`| ${r.payload} | ${r.size} | ${r.mb_per_s.toFixed(1)} | ${n1.mb_per_s.toFixed(1)} | ${ratio1.toFixed(1)}× | ${n6.mb_per_s.toFixed(1)} | ${ratio6.toFixed(1)}× |`);
}
console.log(`\nLowest like-for-like (level 1) ratio: ${worst.toFixed(1)}×`);
JS
