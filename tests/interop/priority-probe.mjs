// What Chromium does with data channel priority, by hand (not part of the suite): the DCEP
// priority value it sends for channels opened with each RTCDataChannelInit.priority and without
// one, and the RTCDataChannel.priority it reports for channels whose DCEP OPEN carried other
// values. The other end is aiortc (priority_probe.py), which lets us read and write the raw
// field. Inside the interop namespace (Chromium ignores loopback):
//
//   PL_PYTHON=target/interop-venv/bin/python tests/interop/netns.sh node tests/interop/priority-probe.mjs [--stock]
//
// --stock: without the RTCDataChannelPriority runtime feature.
import { spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { HERE, PRIORITY_ARGS, PYTHON, launchChromium, withTimeout } from './lib.mjs';

const stock = process.argv.includes('--stock');
const browser = await launchChromium(stock ? [] : PRIORITY_ARGS);
const py = spawn(PYTHON, [path.join(HERE, 'priority_probe.py')], { stdio: ['pipe', 'pipe', 'inherit'] });
try {
  const page = await (await browser.newContext()).newPage();
  await page.goto('about:blank');
  const offer = await page.evaluate(async () => {
    const pc = new RTCPeerConnection();
    window.pc = pc;
    window.got = [];
    pc.ondatachannel = (e) => window.got.push([e.channel.label, 'priority' in e.channel ? e.channel.priority : null]);
    for (const p of ['very-low', 'low', 'medium', 'high', undefined]) pc.createDataChannel(p ?? 'default', p ? { priority: p } : {});
    await pc.setLocalDescription();
    const deadline = Date.now() + 10000;
    while (pc.iceGatheringState !== 'complete' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return pc.localDescription.sdp;
  });
  py.stdin.write(`${JSON.stringify({ sdp: offer })}\n`);
  const sent = {};
  await withTimeout((async () => {
    for await (const line of readline.createInterface({ input: py.stdout })) {
      const m = JSON.parse(line);
      if (m.answer) await page.evaluate((sdp) => window.pc.setRemoteDescription({ type: 'answer', sdp }), m.answer);
      else if (m.open) sent[m.open] = m.priority;
    }
  })(), 20000, 'aiortc');
  const read = Object.fromEntries(await page.evaluate(() => window.got));
  console.log(JSON.stringify({ chromium: await browser.version(), priorityFeature: !stock, dcepChromiumSent: sent, chromiumRead: read }, null, 1));
} finally {
  py.kill();
  await browser.close();
}
