// The Node codec path peerlink's wire layer replaces, measured the same way as
// core/benches/codec.rs: msgpackr pack of {type:'call', id, name, body} → fflate deflateSync →
// inflateSync → unpack, median MB/s per payload size, at fflate levels 1 and 6.
//
//   node bench.mjs [--json] [--seconds N]
import { Packr } from 'msgpackr';
import { deflateSync, inflateSync } from 'fflate';

const args = process.argv.slice(2);
const json = args.includes('--json');
const secondsArg = args.indexOf('--seconds');
const budgetMs = (secondsArg >= 0 ? Number(args[secondsArg + 1]) : 2) * 1000;

const SIZES = [
  [1 << 10, '1KiB'],
  [64 << 10, '64KiB'],
  [1 << 20, '1MiB'],
  [16 << 20, '16MiB'],
];

// Same generators as the Rust bench.
function text(len) {
  const parts = [];
  let total = 0;
  for (let i = 0; total < len; i++) {
    const s = `{"id":${i},"name":"record-${i % 97}","tags":["alpha","beta"],"ok":true},`;
    parts.push(s);
    total += s.length;
  }
  return Buffer.from(parts.join('')).subarray(0, len);
}

function random(len) {
  const out = Buffer.alloc(Math.ceil(len / 8) * 8);
  let s = 0x9e3779b97f4a7c15n;
  const mask = (1n << 64n) - 1n;
  // BigInt xorshift is slow; generate 64 KiB and tile it would compress, so fill fully.
  for (let i = 0; i < out.length; i += 8) {
    s ^= (s << 13n) & mask;
    s ^= s >> 7n;
    s ^= (s << 17n) & mask;
    out.writeBigUInt64LE(s, i);
  }
  return out.subarray(0, len);
}

const packr = new Packr();

function roundTrip(id, body, level) {
  const packed = packr.pack({ type: 'call', id, name: 'bench', body });
  const deflated = deflateSync(packed, { level });
  const inflated = inflateSync(deflated);
  const message = packr.unpack(inflated);
  return message.body.length;
}

function now() {
  return Number(process.hrtime.bigint()) / 1e9;
}

for (const [payloadName, make] of [['text', text], ['random', random]]) {
  for (const [size, label] of SIZES) {
    const body = make(size);
    for (const level of [1, 6]) {
      let id = 0;
      const warmStart = now();
      let warm = 0;
      while (now() - warmStart < 0.2 || warm < 2) {
        roundTrip(++id, body, level);
        warm++;
      }
      const perIter = (now() - warmStart) / warm;
      const batch = Math.max(1, Math.ceil(0.02 / perIter));
      const samples = [];
      const runStart = now();
      while ((now() - runStart < budgetMs / 1000 || samples.length < 5) && samples.length < 1000) {
        const t = now();
        for (let k = 0; k < batch; k++) {
          if (roundTrip(++id, body, level) !== size) throw new Error('round trip lost bytes');
        }
        samples.push((now() - t) / batch);
      }
      samples.sort((a, b) => a - b);
      const median = samples[samples.length >> 1];
      const mbps = size / median / 1e6;
      const row = {
        impl: 'node',
        level,
        payload: payloadName,
        size: label,
        bytes: size,
        median_us: Number((median * 1e6).toFixed(3)),
        mb_per_s: Number(mbps.toFixed(1)),
        samples: samples.length,
      };
      if (json) console.log(JSON.stringify(row));
      else console.log(`${payloadName} ${label} level ${level}: ${row.mb_per_s} MB/s (median ${row.median_us} µs)`);
    }
  }
}
