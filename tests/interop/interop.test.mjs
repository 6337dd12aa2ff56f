// Interop: peerlink's WebRTC link against Chromium and aiortc, each side once as offerer.
// Run inside tests/interop/netns.sh (browsers ignore loopback); see docs/testing.md.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { PRIORITY_ARGS, RUST_PEER, rustPeer, aiortcPeer, chromiumPeer, exchange, launchChromium, runInterop, serveLobby, withTimeout } from './lib.mjs';

let browser;
before(async () => {
  assert.ok(existsSync(RUST_PEER), `build the peer first: cargo build --release -p peerlink --example webrtc_peer (${RUST_PEER})`);
  browser = await launchChromium();
});
// Chromium with RTCDataChannel.priority enabled, for the priority cases (launched by the first).
let priorityBrowser;
after(async () => {
  if (browser) await browser.close();
  if (priorityBrowser) await priorityBrowser.close();
});

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
// Compact codes only: each side sees nothing of the other but one code (the Rust peer makes
// and reads codes with peerlink-core, the page with signal-server/static/compact-code.js).
const codeCases = [
  ['codes: peerlink offers, Chromium answers', () => rustPeer('offerer', ['--codes']), () => chromiumPeer(browser, 'answerer', { codes: true })],
  ['codes: Chromium offers, peerlink answers', () => chromiumPeer(browser, 'offerer', { codes: true }), () => rustPeer('answerer', ['--codes'])],
];
for (const [name, makeOfferer, makeAnswerer] of codeCases) {
  test(name, { timeout: 170000 }, async () => {
    const offerer = await makeOfferer();
    const answerer = await makeAnswerer();
    const codes = [];
    const result = await runInterop(offerer, answerer, 150000, codes);
    console.log(`# ${name}: offer ${codes[0]?.bytes} B, answer ${codes[1]?.bytes} B, connect ${result.offerer.connectMs.toFixed(1)} ms`);
    check(result);
    assert.equal(codes.length, 2, 'one code each way and nothing else');
    for (const c of codes) {
      assert.ok(/^[A-Za-z0-9_-]+$/.test(c.code), 'base64url');
      // One host candidate each inside the namespace: well under the 80-byte target.
      assert.ok(c.bytes <= 80, `${c.bytes} bytes`);
    }
  });
}

// The lobby page's serverless flow against the Rust peer (chat mode: it sends `hello-code` and
// reports the reply; `?echo` makes the page answer "echo: " + message).
async function lobbyCase(body) {
  const lobby = await serveLobby();
  const context = await browser.newContext();
  const page = await context.newPage();
  let rust;
  try {
    rust = await body(page, lobby.base, (r) => { rust = r; });
    const report = await withTimeout(rust.report, 60000, 'chat over the code link');
    assert.equal(report.chat, 'echo: hello-code', JSON.stringify(report));
    const log = await page.locator('#log').innerText();
    assert.match(log, /code-peer: hello-code/);
  } finally {
    if (rust) await rust.close();
    await context.close();
    await lobby.close();
  }
}
const firstCode = (peer) => withTimeout(new Promise((resolve) => { peer.onSignal = (s) => { if (s.code) resolve(s.code); }; }), 30000, 'a code');
const codeOut = async (page) => {
  await page.waitForFunction(() => document.getElementById('code-out').value.length > 0, null, { timeout: 30000 });
  return page.locator('#code-out').inputValue();
};

test('lobby: a link /#<offer code> from peerlink is answered by the page', { timeout: 120000 }, async () => {
  await lobbyCase(async (page, base, hold) => {
    const rust = rustPeer('offerer', ['--codes', '--mode', 'chat']);
    hold(rust);
    const offer = await firstCode(rust);
    await page.goto(`${base}/?echo#${offer}`);
    const answer = await codeOut(page);
    assert.equal(Buffer.from(answer, 'base64url')[0] & 0x08, 0x08, 'the page shows an answer code');
    rust.send({ code: answer });
    return rust;
  });
});

test('lobby: the page makes an offer code and peerlink answers it', { timeout: 120000 }, async () => {
  await lobbyCase(async (page, base, hold) => {
    await page.goto(`${base}/?echo`);
    await page.click('#make-offer');
    const offer = await codeOut(page);
    assert.ok((await page.locator('#code-link').getAttribute('href')).endsWith(`#${offer}`));
    const rust = rustPeer('answerer', ['--codes', '--mode', 'chat']);
    hold(rust);
    const answerPromise = firstCode(rust);
    rust.send({ code: offer });
    await page.fill('#code-in', await answerPromise);
    await page.click('#use-code');
    return rust;
  });
});

for (const [name, makeOfferer, makeAnswerer] of cases) {
  test(name, { timeout: 170000 }, async () => {
    const offerer = await makeOfferer();
    const answerer = await makeAnswerer();
    const result = await runInterop(offerer, answerer);
    console.log(`# ${name}: connect ${result.offerer.connectMs.toFixed(1)} ms, max message ${result.offerer.remoteMaxMessageSize} / ${result.answerer.remoteMaxMessageSize} B, lossy ${result.offerer.received.lossy}/${result.answerer.received.lossy}`);
    check(result);
  });
}

// Data channel priority, both ways (`--mode priority` / peer-logic.js `priority()`): the offerer
// opens very-low, low, medium and high channels and one without a priority (`default`); one
// message crosses each channel each way. Chromium 156 exposes RTCDataChannel.priority and
// reads RTCDataChannelInit.priority only with the RTCDataChannelPriority runtime feature.
const EXPECTED = { 'very-low': 'very-low', low: 'low', medium: 'medium', high: 'high', default: 'low' };
const same = (v) => Object.fromEntries(Object.keys(EXPECTED).map((k) => [k, v]));

function checkPriorities(report, expected, who) {
  assert.deepEqual(Object.keys(report.channels).sort(), Object.keys(expected).sort(), `${who}: channels`);
  for (const [label, want] of Object.entries(expected)) {
    const c = report.channels[label];
    assert.equal(c.received, label, `${who}: the message on ${label}`);
    assert.equal(c.priority, want, `${who}: the priority of ${label}`);
  }
}

const priorityCases = [
  ['priority: peerlink opens each level, Chromium reads it', 'rust'],
  ['priority: Chromium opens each level, peerlink reads it', 'chromium'],
];
for (const [name, opener] of priorityCases) {
  test(name, { timeout: 60000 }, async () => {
    priorityBrowser ??= await launchChromium(PRIORITY_ARGS);
    const page = await chromiumPeer(priorityBrowser, opener === 'rust' ? 'answerer' : 'offerer', { mode: 'priority' });
    const rust = rustPeer(opener === 'rust' ? 'offerer' : 'answerer', ['--mode', 'priority']);
    const [ro, ra] = opener === 'rust' ? await exchange(rust, page, 45000) : await exchange(page, rust, 45000);
    // The opener's own channels, and the peer's reading of the DCEP OPEN it sent.
    checkPriorities(ro, EXPECTED, 'opener');
    checkPriorities(ra, EXPECTED, 'peer');
  });
}

// Chromium as shipped: if it does not expose the attribute it also ignores the init field,
// and every channel it opens reaches peerlink as low (DCEP 256).
test('priority: stock Chromium opens channels with each level, peerlink reads what it sent', { timeout: 60000 }, async () => {
  const page = await chromiumPeer(browser, 'offerer', { mode: 'priority' });
  const [ro, ra] = await exchange(page, rustPeer('answerer', ['--mode', 'priority']), 45000);
  const exposed = Object.values(ro.channels).some((c) => c.priority !== null);
  console.log(`# stock Chromium: RTCDataChannel.priority ${exposed ? 'exposed' : 'absent'}; peerlink read ${JSON.stringify(Object.fromEntries(Object.entries(ra.channels).map(([k, c]) => [k, c.priority])))}`);
  checkPriorities(ro, exposed ? EXPECTED : same(null), 'Chromium');
  checkPriorities(ra, exposed ? EXPECTED : same('low'), 'peerlink');
});
