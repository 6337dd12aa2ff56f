// Interleaved comparison of senders into Chromium: each round runs every configuration once,
// so a shared machine's load changes hit all of them alike. A configuration is either `c2c`
// (two connections in one Chromium page) or extra webrtc_peer arguments for a peerlink
// offerer sending to a Chromium answerer (empty = peerlink defaults). Prints one line per run
// (bulk MB/s, the pacing window at the end, UDP receive-buffer drops in this namespace) and
// the medians. Run inside tests/interop/netns.sh; see docs/decisions/webrtc-performance.md.
//
//   CONFIGS='c2c;--no-pacing;' RUNS=8 MIB=64 tests/interop/netns.sh node bench/webrtc/chromium-send.mjs
import { readFileSync } from 'node:fs';
import {
  chromiumPeer, rustPeer, launchChromium, logicPage, relay, withTimeout,
} from '../../tests/interop/lib.mjs';

const RUNS = Number(process.env.RUNS || 5);
const MIB = Number(process.env.MIB || 64);
const CONFIGS = (process.env.CONFIGS ?? 'c2c;--no-pacing;').split(';');
const LIMIT_MS = 120000;

function rcvbufErrors() {
  const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Udp:'));
  const names = lines[0].split(/\s+/);
  return Number(lines[1].split(/\s+/)[names.indexOf('RcvbufErrors')]);
}

async function chromiumToChromium(browser) {
  const { page, context } = await logicPage(browser);
  try {
    const r = await withTimeout(page.evaluate((o) => window.PeerLogic.pair({ ...o, RTCPeerConnection: window.RTCPeerConnection }),
      { stack: 'chromium', mode: 'bench', bulk: MIB * 1048576, msg: 65536, rtt: 20 }), LIMIT_MS, 'chromium pair');
    if (r.report.error) throw new Error(r.report.error);
    return { bulk: r.report.bulkMBps, window: null };
  } finally {
    await context.close();
  }
}

async function peerlinkToChromium(browser, extra) {
  const answerer = await chromiumPeer(browser, 'answerer', { mode: 'bench' });
  const offerer = rustPeer('offerer', ['--mode', 'bench', '--bulk-mib', String(MIB), '--msg', '65536', '--rtt', '20', ...extra]);
  relay(offerer, answerer);
  try {
    const [ro, ra] = await withTimeout(Promise.all([offerer.report, answerer.report]), LIMIT_MS, 'peerlink -> chromium');
    if (ro.error || ra.error) throw new Error(ro.error || ra.error);
    return { bulk: ro.bulkMBps, window: ro.pacingWindow };
  } finally {
    await offerer.close();
    await answerer.close();
  }
}

const browser = await launchChromium();
const results = new Map(CONFIGS.map((c) => [c, []]));
for (let round = 0; round < RUNS; round++) {
  for (const config of CONFIGS) {
    const drops0 = rcvbufErrors();
    let r;
    try {
      r = config === 'c2c' ? await chromiumToChromium(browser) : await peerlinkToChromium(browser, config.split(' ').filter(Boolean));
    } catch (e) {
      r = { bulk: NaN, window: null, error: String(e.message || e).slice(0, 200) };
    }
    results.get(config).push(r.bulk);
    console.log(JSON.stringify({ config, bulkMBps: Number(r.bulk.toFixed(1)), pacingWindow: r.window, rcvbufErrors: rcvbufErrors() - drops0, error: r.error }));
  }
}
for (const [config, v] of results) {
  const ok = v.filter(Number.isFinite).sort((a, b) => a - b);
  const median = ok.length ? ok[Math.floor(ok.length / 2)].toFixed(1) : '-';
  console.log(`${JSON.stringify(config)}: median ${median} MB/s, min ${ok[0]?.toFixed(1) ?? '-'}, max ${ok.at(-1)?.toFixed(1) ?? '-'}, ${ok.length}/${v.length} runs`);
}
await browser.close();
