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

const cases = [
  ['peerlink offers, Chromium answers', () => rustPeer('offerer'), () => chromiumPeer(browser, 'answerer')],
  ['Chromium offers, peerlink answers', () => chromiumPeer(browser, 'offerer'), () => rustPeer('answerer')],
  ['aiortc offers, peerlink answers', () => aiortcPeer('offerer'), () => rustPeer('answerer')],
  ['peerlink offers, aiortc answers', () => rustPeer('offerer'), () => aiortcPeer('answerer')],
];
for (const [name, makeOfferer, makeAnswerer] of cases) {
  test(name, { timeout: 170000 }, async () => {
    const offerer = await makeOfferer();
    const answerer = await makeAnswerer();
    const result = await runInterop(offerer, answerer);
    console.log(`# ${name}: connect ${result.offerer.connectMs.toFixed(1)} ms, max message ${result.offerer.remoteMaxMessageSize} / ${result.answerer.remoteMaxMessageSize} B, lossy ${result.offerer.received.lossy}/${result.answerer.received.lossy}`);
    check(result);
  });
}
