// A Node WebRTC peer (@roamhq/wrtc = libwebrtc, or node-datachannel = libdatachannel) running
// peer-logic.js, with the same command line and JSON-lines protocol as webrtc_peer.rs:
//   node node-peer.mjs --stack wrtc|ndc --role offerer|answerer [--mode interop|bench]
//        [--bulk-mib 16] [--msg 65536] [--rtt 200] [--pair]
import readline from 'node:readline';
import './peer-logic.js';

const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
const stack = opt('--stack', 'wrtc');
const RTCPeerConnection = stack === 'ndc'
  ? (await import('node-datachannel/polyfill')).RTCPeerConnection
  : (await import('@roamhq/wrtc')).default.RTCPeerConnection;
const opts = {
  RTCPeerConnection, stack, mode: opt('--mode', 'interop'), role: opt('--role', 'offerer'),
  bulk: Math.round(Number(opt('--bulk-mib', '16')) * 1048576), msg: Number(opt('--msg', '65536')),
  rtt: Number(opt('--rtt', '200')),
};
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const usage = () => {
  const cpu = process.cpuUsage();
  return { cpuS: (cpu.user + cpu.system) / 1e6, peakRssKiB: process.resourceUsage().maxRSS };
};

if (args.includes('--pair')) {
  const r = await globalThis.PeerLogic.pair(opts);
  Object.assign(r.report, usage());
  out(r);
  process.exit(0);
}
const peer = new globalThis.PeerLogic.Peer({ ...opts, sendSignal: (signal) => out({ signal }) });
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  let msg;
  try { msg = JSON.parse(line); } catch { return; }
  if (msg.signal) peer.handleSignal(msg.signal).catch((e) => console.error('signal refused', e));
});
rl.on('close', () => { peer.close(); process.exit(0); });
const report = await peer.run();
out({ report: { ...report, ...usage() } });
