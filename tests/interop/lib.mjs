// Shared driver code: peers as child processes speaking JSON lines (peerlink, Node stacks,
// aiortc) or as a Chromium page, a signal relay between two of them, and report checks.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import readline from 'node:readline';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '../..');
export const BIND = process.env.PL_BIND || '127.0.0.1';
export const RUST_PEER = process.env.PL_RUST_PEER || path.join(ROOT, 'target/release/examples/webrtc_peer');
export const PYTHON = process.env.PL_PYTHON || 'python3';

// Signals a peer emits before the relay is attached are kept and delivered on attach.
function signalSink() {
  let target = null;
  const pending = [];
  return {
    emit(s) { if (target) target(s); else pending.push(s); },
    attach(cb) { target = cb; for (const s of pending.splice(0)) cb(s); },
  };
}

// A peer in a child process. `command` is [program, ...args].
export function processPeer(name, command, { onExit } = {}) {
  const child = spawn(command[0], command.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  const sink = signalSink();
  let stderr = '';
  const report = new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: child.stdout });
    rl.on('line', (line) => {
      let msg;
      try { msg = JSON.parse(line); } catch { return; }
      if (msg.signal) sink.emit(msg.signal);
      if (msg.code) sink.emit({ code: msg.code, bytes: msg.bytes });
      if (msg.report) resolve(msg.report);
    });
    child.on('exit', (code) => {
      if (onExit) onExit(code);
      reject(new Error(`${name} exited (${code}) before reporting:\n${stderr.slice(-3000)}`));
    });
  });
  report.catch(() => {});
  child.stderr.on('data', (d) => { stderr += d; if (stderr.length > 100000) stderr = stderr.slice(-50000); });
  child.stdin.on('error', () => {});
  return {
    name,
    pid: child.pid,
    set onSignal(cb) { sink.attach(cb); },
    send(signal) {
      const line = signal.code ? { code: signal.code } : { signal };
      if (child.stdin.writable) child.stdin.write(`${JSON.stringify(line)}\n`);
    },
    report,
    async close() {
      child.stdin.end();
      const exited = new Promise((r) => child.once('exit', r));
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      if (child.exitCode === null && child.signalCode === null) await exited;
      clearTimeout(t);
    },
  };
}

export const rustPeer = (role, extra = []) =>
  processPeer(`peerlink(${role})`, [RUST_PEER, '--role', role, '--bind', BIND, ...extra]);
export const aiortcPeer = (role, extra = []) =>
  processPeer(`aiortc(${role})`, [PYTHON, path.join(HERE, 'aiortc_peer.py'), '--role', role, ...extra]);
export const nodePeer = (stack, role, extra = []) =>
  processPeer(`${stack}(${role})`, [process.execPath, path.join(HERE, 'node-peer.mjs'), '--stack', stack, '--role', role, ...extra]);

export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-features=WebRtcHideLocalIpsWithMdns',
];

// `extraArgs`: further switches, e.g. PRIORITY_ARGS.
// Chromium (156) exposes RTCDataChannel.priority and reads RTCDataChannelInit.priority only
// with this runtime feature; without it, it ignores the init field and sends 256 (low).
export const PRIORITY_ARGS = ['--enable-blink-features=RTCDataChannelPriority'];

export async function launchChromium(extraArgs = []) {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: process.env.PL_CHROMIUM || '/usr/bin/chromium',
    args: [...CHROMIUM_ARGS, ...extraArgs],
    timeout: 60000,
  });
}

const LOGIC = readFileSync(path.join(HERE, 'peer-logic.js'), 'utf8');
// The lobby page's code format in JavaScript (decode a code to SDP, encode a description).
export const COMPACT_JS = readFileSync(path.join(ROOT, 'signal-server/static/compact-code.js'), 'utf8');

// A fresh page with peer-logic.js loaded.
export async function logicPage(browser) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto('about:blank');
  await page.addScriptTag({ content: LOGIC });
  return { page, context };
}

// A peer in a Chromium page. With `codes: true` the page exchanges compact codes only: it waits
// for gathering to complete, encodes its description with compact-code.js (no candidate
// signals), and expands the peer's code into the SDP it applies.
export async function chromiumPeer(browser, role, opts = {}) {
  const { page, context } = await logicPage(browser);
  if (opts.codes) await page.addScriptTag({ content: COMPACT_JS });
  const sink = signalSink();
  await page.exposeFunction('plSignal', (s) => sink.emit(s));
  await page.evaluate((o) => {
    let send = (s) => window.plSignal(s);
    if (o.codes) {
      send = async (s) => {
        if (s.type !== 'offer' && s.type !== 'answer') return;
        const pc = window.plPeer.pc;
        const deadline = Date.now() + 10000;
        while (pc.iceGatheringState !== 'complete' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        const code = window.PeerlinkCompact.encode(pc.localDescription.sdp, s.type);
        window.plSignal({ code, bytes: window.PeerlinkCompact.decode(code).bytes.length });
      };
    }
    window.plPeer = new window.PeerLogic.Peer({
      ...o, RTCPeerConnection: window.RTCPeerConnection, sendSignal: send,
    });
  }, { stack: 'chromium', mode: 'interop', bulk: 16 << 20, msg: 65536, rtt: 200, ...opts, role });
  const report = page.evaluate(() => window.plPeer.run());
  report.catch(() => {});
  return {
    name: `chromium(${role})`,
    set onSignal(cb) { sink.attach(cb); },
    send(signal) {
      page.evaluate((s) => {
        if (s.code) {
          const { kind, sdp } = window.PeerlinkCompact.decode(s.code);
          return window.plPeer.handleSignal({ type: kind, sdp });
        }
        return window.plPeer.handleSignal(s);
      }, signal)
        .catch((e) => { if (!page.isClosed()) console.error('chromium refused a signal:', e.message); });
    },
    report,
    async close() { await page.evaluate(() => window.plPeer.close()).catch(() => {}); await context.close(); },
  };
}

// Serves the lobby page (signal-server/static/lobby.html with compact-code.js inlined, as the
// server does) at `/` on BIND; resolves with { base, close }. Only the page: its signaling
// WebSocket finds nothing here, which the code flow does not need.
export async function serveLobby() {
  const http = await import('node:http');
  const page = readFileSync(path.join(ROOT, 'signal-server/static/lobby.html'), 'utf8')
    .replace('<!-- compact-code.js -->', `<script>\n${COMPACT_JS}</script>`);
  const server = http.createServer((req, res) => {
    if (req.url.split('?')[0] !== '/') { res.writeHead(404).end(); return; }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page);
  });
  await new Promise((r) => server.listen(0, BIND, r));
  return { base: `http://${BIND}:${server.address().port}`, close: () => new Promise((r) => server.close(r)) };
}

// Passes signals both ways; `codes`, if given, collects every code that went through.
export function relay(a, b, codes) {
  const pass = (to) => (s) => { if (codes && s.code) codes.push(s); to.send(s); };
  a.onSignal = pass(b);
  b.onSignal = pass(a);
}

export function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise.finally(() => clearTimeout(t)),
    new Promise((_, reject) => { t = setTimeout(() => reject(new Error(`${what}: no result in ${ms / 1000} s`)), ms); }),
  ]);
}

const ALL_SIZES = [0, 1, 16 * 1024, 64 * 1024, 256 * 1024];

// What one direction must show: every message the sender's header announced arrived with the
// same length and CRC-32, the bulk stream is complete and equal, all unordered messages arrived
// intact, and whatever arrived on the maxRetransmits=0 channel is intact.
export function directionProblems(from, to, senderReport, receiverReport) {
  const p = [];
  const s = senderReport.sent;
  const r = receiverReport.received;
  const label = `${from} -> ${to}`;
  const allowed = ALL_SIZES.filter((n) => n <= senderReport.remoteMaxMessageSize);
  if (JSON.stringify(s.sizes) !== JSON.stringify(allowed)) p.push(`${label}: sent sizes ${s.sizes}, expected ${allowed}`);
  if (JSON.stringify(r.sizes) !== JSON.stringify(s.sizes)) p.push(`${label}: received sizes ${r.sizes} != sent ${s.sizes}`);
  if (JSON.stringify(r.crcs) !== JSON.stringify(s.crcs)) p.push(`${label}: message CRCs differ`);
  if (r.bulkBytes !== s.bulkBytes || r.bulkCrc !== s.bulkCrc) p.push(`${label}: bulk ${r.bulkBytes} B crc ${r.bulkCrc}, sent ${s.bulkBytes} B crc ${s.bulkCrc}`);
  if (r.unordered !== s.unordered || !r.unorderedIntact) p.push(`${label}: unordered ${r.unordered}/${s.unordered} intact=${r.unorderedIntact}`);
  if (r.lossy < 1 || r.lossy > s.lossy || !r.lossyIntact) p.push(`${label}: maxRetransmits=0 channel ${r.lossy}/${s.lossy} intact=${r.lossyIntact}`);
  return p;
}

// Relays signals until both peers reported; fails on a report with an error. Closes both and
// resolves with [offerer's report, answerer's report].
export async function exchange(offerer, answerer, ms, codes = undefined) {
  relay(offerer, answerer, codes);
  try {
    const reports = await withTimeout(Promise.all([offerer.report, answerer.report]), ms, `${offerer.name} <-> ${answerer.name}`);
    for (const [n, r] of [[offerer.name, reports[0]], [answerer.name, reports[1]]]) if (r.error) throw new Error(`${n}: ${r.error}`);
    return reports;
  } finally {
    await Promise.all([offerer.close(), answerer.close()]);
  }
}

export async function runInterop(offerer, answerer, ms = 150000, codes = undefined) {
  const [ro, ra] = await exchange(offerer, answerer, ms, codes);
  const problems = [
    ...directionProblems(offerer.name, answerer.name, ro, ra),
    ...directionProblems(answerer.name, offerer.name, ra, ro),
  ];
  return { offerer: ro, answerer: ra, problems };
}
