// Writes the fflate interoperability fixtures used by core/tests/wire_compress.rs and checks
// that fflate reads what the Rust side deflated.
//
//   node make-fixtures.mjs            # (re)write fflate-*.deflate from input.bin
//   node make-fixtures.mjs --check    # also inflate rust-*.deflate with fflate and compare
import { deflateSync, inflateSync } from 'fflate';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const dir = join(here, '..', '..', 'core', 'tests', 'wire_fixtures');

// Deterministic input: JSON-like text followed by xorshift noise, so both the literal and the
// match paths of the decoder are exercised.
function makeInput() {
  const parts = [];
  for (let i = 0; i < 600; i++) {
    parts.push(`{"id":${i},"name":"record-${i % 97}","tags":["alpha","beta"],"ok":true},`);
  }
  const text = Buffer.from(parts.join(''));
  const noise = Buffer.alloc(4096);
  let s = 0x9e3779b97f4a7c15n;
  const mask = (1n << 64n) - 1n;
  for (let i = 0; i < noise.length; i++) {
    s ^= (s << 13n) & mask;
    s ^= s >> 7n;
    s ^= (s << 17n) & mask;
    noise[i] = Number(s & 0xffn);
  }
  return Buffer.concat([text, noise, text.subarray(0, 1000)]);
}

const inputPath = join(dir, 'input.bin');
const input = makeInput();
writeFileSync(inputPath, input);
for (const level of [1, 6, 9]) {
  const out = deflateSync(input, { level });
  writeFileSync(join(dir, `fflate-l${level}.deflate`), out);
  console.log(`fflate level ${level}: ${input.length} -> ${out.length} bytes`);
}

if (process.argv.includes('--check')) {
  let checked = 0;
  for (const level of [1, 6, 9]) {
    const path = join(dir, `rust-l${level}.deflate`);
    if (!existsSync(path)) continue;
    const back = Buffer.from(inflateSync(readFileSync(path)));
    if (!back.equals(input)) {
      console.error(`fflate.inflateSync(${path}) differs from input.bin`);
      process.exit(1);
    }
    checked++;
    console.log(`fflate.inflateSync reads rust-l${level}.deflate`);
  }
  if (checked === 0) {
    console.error('no rust-*.deflate fixtures found; run the Rust test with WIRE_BLESS=1 first');
    process.exit(1);
  }
}
