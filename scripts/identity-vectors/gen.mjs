// Writes core/tests/vectors/identity.json: identity keys, box keys and detached signatures as
// TweetNaCl 1.0.3 and ed2curve 0.3.0 compute them. The Rust identity code is checked against
// this file byte for byte, so the output must be deterministic: fixed seeds, fixed messages,
// stable key order. Run: npm ci && node gen.mjs
import { writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import nacl from "tweetnacl";
import ed2curve from "ed2curve";

const here = dirname(fileURLToPath(import.meta.url));
// `--out FILE` writes elsewhere (the test suite regenerates into a temporary file and diffs).
const outFlag = process.argv.indexOf("--out");
const out =
  outFlag >= 0 && process.argv[outFlag + 1]
    ? process.argv[outFlag + 1]
    : join(here, "..", "..", "core", "tests", "vectors", "identity.json");

const b64 = (bytes) => Buffer.from(bytes).toString("base64");

function filled(value) {
  return new Uint8Array(32).fill(value);
}

function counting() {
  return Uint8Array.from({ length: 32 }, (_, i) => i);
}

// Random-looking but reproducible: the first half of SHA-512 over a fixed label.
function derived(label) {
  return nacl.hash(new TextEncoder().encode(label)).slice(0, 32);
}

const seeds = [
  ["all-zero", filled(0x00)],
  ["all-ff", filled(0xff)],
  ["counting", counting()],
  ["all-07", filled(0x07)],
  ["derived-1", derived("peerlink identity vector 1")],
  ["derived-2", derived("peerlink identity vector 2")],
  ["derived-3", derived("peerlink identity vector 3")],
  ["derived-4", derived("peerlink identity vector 4")],
];

const messages = [
  ["empty", new Uint8Array(0)],
  ["hello", new TextEncoder().encode("hello")],
  ["pattern-1000", Uint8Array.from({ length: 1000 }, (_, i) => i % 251)],
];

const cases = seeds.map(([name, seed]) => {
  const pair = nacl.sign.keyPair.fromSeed(seed);
  const boxSecret = ed2curve.convertSecretKey(pair.secretKey);
  const boxPair = nacl.box.keyPair.fromSecretKey(boxSecret);
  const converted = ed2curve.convertPublicKey(pair.publicKey);
  if (converted === null) {
    throw new Error(`ed2curve rejected the public key of ${name}`);
  }
  const signatures = messages.map(([label, message]) => {
    const signature = nacl.sign.detached(message, pair.secretKey);
    if (!nacl.sign.detached.verify(message, signature, pair.publicKey)) {
      throw new Error(`signature of ${label} under ${name} does not verify`);
    }
    return { message: label, messageBase64: b64(message), signature: b64(signature) };
  });
  return {
    name,
    seed: b64(seed),
    secretKey: b64(pair.secretKey),
    publicKey: b64(pair.publicKey),
    boxSecretKey: b64(boxSecret),
    publicBoxKey: b64(boxPair.publicKey),
    convertPublicKey: b64(converted),
    signatures,
  };
});

const document = {
  generator: "scripts/identity-vectors/gen.mjs",
  libraries: { tweetnacl: "1.0.3", ed2curve: "0.3.0" },
  cases,
};

writeFileSync(out, JSON.stringify(document, null, 2) + "\n");
console.log(`wrote ${cases.length} cases to ${out}`);
