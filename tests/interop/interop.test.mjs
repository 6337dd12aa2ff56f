// Interop: peerlink's WebRTC link against Chromium and aiortc, each side once as offerer.
// Run inside tests/interop/netns.sh (browsers ignore loopback); see docs/testing.md.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { RUST_PEER, rustPeer, aiortcPeer, chromiumPeer, launchChromium, runInterop } from './lib.mjs';

let browser;
before(async () => {
  assert.ok(existsSync(RUST_PEER), `build the peer first: cargo build --release -p peerlink --example webrtc_peer (${RUST_PEER})`);
  browser = await launchChromium();
});
after(async () => { if (browser) await browser.close(); });

function check(result) {
  assert.deepEqual(result.problems, []);
  // The channel opened on the offerer and the figures are real.
  assert.ok(result.offerer.connectMs > 0);
}

// aiortc answering a peerlink offer is a known incompatibility: aiortc makes the ICE-controlled
// side (its answer) the SCTP server and always answers setup:active, which makes our offerer the
// DTLS server and so, in the engine, also the SCTP server: both wait for an INIT. It still runs
// (bounded) so a fix on either side shows up as a pass. See docs/testing.md.
const AIORTC_ANSWER = 'known incompatibility: both ends wait as SCTP server';
// With peerlink answering setup:passive the channels open, but the 16 MiB stream from aiortc
// stalls part-way; kept as a todo with a shorter bound until that is understood.
const AIORTC_BULK = 'known failure: aiortc -> peerlink bulk stalls after the channels open';
const cases = [
  ['peerlink offers, Chromium answers', () => rustPeer('offerer'), () => chromiumPeer(browser, 'answerer')],
  ['Chromium offers, peerlink answers', () => chromiumPeer(browser, 'offerer'), () => rustPeer('answerer')],
  ['aiortc offers, peerlink answers', () => aiortcPeer('offerer'), () => rustPeer('answerer'), { todo: AIORTC_BULK, limit: 60000 }],
  ['peerlink offers, aiortc answers', () => rustPeer('offerer'), () => aiortcPeer('answerer'), { todo: AIORTC_ANSWER, limit: 40000 }],
];
for (const [name, makeOfferer, makeAnswerer, extra = {}] of cases) {
  test(name, { timeout: 170000, todo: extra.todo }, async () => {
    const offerer = await makeOfferer();
    const answerer = await makeAnswerer();
    const result = await runInterop(offerer, answerer, extra.limit);
    console.log(`# ${name}: connect ${result.offerer.connectMs.toFixed(1)} ms, max message ${result.offerer.remoteMaxMessageSize} / ${result.answerer.remoteMaxMessageSize} B, lossy ${result.offerer.received.lossy}/${result.answerer.received.lossy}`);
    check(result);
  });
}
