// Side-by-side WebRTC data-channel benchmark; run through run.sh (network namespace, buffer
// limits). Prints one JSON line per configuration with the medians of RUNS runs.
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { spawn } from 'node:child_process';
import path from 'node:path';
import {
  HERE, RUST_PEER, PYTHON, BIND, chromiumPeer, rustPeer, launchChromium, logicPage, relay, withTimeout,
} from '../../tests/interop/lib.mjs';

const RUNS = Number(process.env.RUNS || 5);
const MIB = Number(process.env.BULK_MIB || 256);
const SLOW_MIB = Number(process.env.SLOW_MIB || 64);
const AIORTC_MIB = Number(process.env.AIORTC_MIB || 16);
const ONLY = process.env.ONLY ? process.env.ONLY.split(',') : null;
// Extra arguments for every peerlink process, e.g. PL_RUST_ARGS=--no-pacing.
const RUST_ARGS = (process.env.PL_RUST_ARGS || '').split(' ').filter(Boolean);
const median = (v) => { const s = v.filter((x) => Number.isFinite(x)).sort((a, b) => a - b); return s.length ? s[Math.floor(s.length / 2)] : null; };

function runPair(cmd) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd[0], cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = ''; let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err = (err + d).slice(-4000); });
    const t = setTimeout(() => child.kill('SIGKILL'), 240000);
    child.on('exit', (code) => {
      clearTimeout(t);
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (!line) return reject(new Error(`${cmd.join(' ')} exited ${code}: ${err}`));
      const r = JSON.parse(line);
      if (r.report.error || r.answerer?.error) return reject(new Error(r.report.error || r.answerer.error));
      resolve(r.report);
    });
  });
}

// CPU seconds and summed peak RSS of the Chromium processes in this network namespace.
function chromiumUsage() {
  const myNs = readlinkSync('/proc/self/ns/net');
  let cpu = 0; let rss = 0;
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (!readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('chrom')) continue;
      if (readlinkSync(`/proc/${pid}/ns/net`) !== myNs) continue;
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      cpu += (Number(f[11]) + Number(f[12])) / 100;
      const m = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) rss += Number(m[1]);
    } catch { /* process gone */ }
  }
  return { cpu, rss };
}

let browser;
async function chromiumPair(mib, msg) {
  const { page, context } = await logicPage(browser);
  const u0 = chromiumUsage();
  const r = await withTimeout(page.evaluate((o) => window.PeerLogic.pair({ ...o, RTCPeerConnection: window.RTCPeerConnection }),
    { stack: 'chromium', mode: 'bench', bulk: mib * 1048576, msg, rtt: 200 }), 240000, 'chromium pair');
  const u1 = chromiumUsage();
  await context.close();
  return { ...r.report, cpuS: u1.cpu - u0.cpu, peakRssKiB: u1.rss };
}

async function cross(dir, mib, msg) {
  const rustArgs = ['--mode', 'bench', '--bulk-mib', String(mib), '--msg', String(msg), ...RUST_ARGS];
  const u0 = chromiumUsage();
  // The answerer is created first so the offerer's clock starts with both ready.
  const answerer = dir === 'r2c' ? await chromiumPeer(browser, 'answerer', { mode: 'bench' }) : rustPeer('answerer', rustArgs);
  const offerer = dir === 'r2c' ? rustPeer('offerer', rustArgs) : await chromiumPeer(browser, 'offerer', { mode: 'bench', bulk: mib * 1048576, msg });
  relay(offerer, answerer);
  try {
    const [ro, ra] = await withTimeout(Promise.all([offerer.report, answerer.report]), 240000, dir);
    if (ro.error || ra.error) throw new Error(ro.error || ra.error);
    const u1 = chromiumUsage();
    const rust = dir === 'r2c' ? ro : ra;
    return { ...ro, cpuS: (rust.cpuS || 0) + (u1.cpu - u0.cpu), peakRssKiB: (rust.peakRssKiB || 0) + u1.rss };
  } finally {
    await offerer.close(); await answerer.close();
  }
}

const py = path.join(HERE, 'aiortc_peer.py');
const nodePeer = path.join(HERE, 'node-peer.mjs');
const configs = [
  ['peerlink', 65536, MIB, (m, msg) => runPair([RUST_PEER, '--pair', '--mode', 'bench', '--bind', BIND, '--bulk-mib', String(m), '--msg', String(msg), ...RUST_ARGS])],
  ['peerlink', 262144, MIB, (m, msg) => runPair([RUST_PEER, '--pair', '--mode', 'bench', '--bind', BIND, '--bulk-mib', String(m), '--msg', String(msg), ...RUST_ARGS])],
  ['wrtc', 65536, MIB, (m, msg) => runPair([process.execPath, nodePeer, '--stack', 'wrtc', '--pair', '--mode', 'bench', '--bulk-mib', String(m), '--msg', String(msg)])],
  ['wrtc', 262144, MIB, (m, msg) => runPair([process.execPath, nodePeer, '--stack', 'wrtc', '--pair', '--mode', 'bench', '--bulk-mib', String(m), '--msg', String(msg)])],
  ['node-datachannel', 65536, MIB, (m, msg) => runPair([process.execPath, nodePeer, '--stack', 'ndc', '--pair', '--mode', 'bench', '--bulk-mib', String(m), '--msg', String(msg)])],
  ['node-datachannel', 262144, MIB, (m, msg) => runPair([process.execPath, nodePeer, '--stack', 'ndc', '--pair', '--mode', 'bench', '--bulk-mib', String(m), '--msg', String(msg)])],
  ['chromium', 65536, SLOW_MIB, chromiumPair],
  ['chromium', 262144, SLOW_MIB, chromiumPair],
  ['aiortc', 65536, AIORTC_MIB, (m, msg) => runPair([PYTHON, py, '--pair', '--mode', 'bench', '--bulk-mib', String(m), '--msg', String(msg)])],
  ['peerlink->chromium', 65536, SLOW_MIB, (m, msg) => cross('r2c', m, msg)],
  ['chromium->peerlink', 65536, SLOW_MIB, (m, msg) => cross('c2r', m, msg)],
];

for (const [name, msg, mib, fn] of configs) {
  if (ONLY && !ONLY.includes(name)) continue;
  if (name.includes('chromium') && !browser) browser = await launchChromium();
  const rows = [];
  const errors = [];
  for (let i = 0; i < RUNS; i++) {
    try { rows.push(await fn(mib, msg)); } catch (e) { errors.push(String(e.message || e).slice(0, 300)); }
  }
  const pick = (k) => median(rows.map((r) => r[k]));
  console.log(JSON.stringify({
    stack: name, msg, mib, runs: rows.length, connectMs: pick('connectMs'), bulkMBps: pick('bulkMBps'),
    bulkMin: rows.length ? Math.min(...rows.map((r) => r.bulkMBps)) : null, bulkMax: rows.length ? Math.max(...rows.map((r) => r.bulkMBps)) : null,
    rttUs: pick('rttUs'), cpuS: pick('cpuS'), peakRssKiB: pick('peakRssKiB'), errors,
  }));
}
if (browser) await browser.close();
