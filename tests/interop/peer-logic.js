// The interop and benchmark script for W3C-style WebRTC stacks (Chromium, @roamhq/wrtc,
// node-datachannel's polyfill). The same script, with the same bytes and checks, is
// runtime/examples/webrtc_peer.rs for peerlink and aiortc_peer.py for aiortc, so any two can be
// paired. Loaded as a classic script in the browser and as a side-effect module in Node: it only
// assigns globalThis.PeerLogic.
(function () {
  'use strict';
  const SIZES = [0, 1, 16 * 1024, 64 * 1024, 256 * 1024];
  const INDEXED = 100;
  const STEP_LIMIT_MS = 120000;
  const HIGH_WATER = 1024 * 1024;
  const LOW_WATER = 256 * 1024;

  const CRC_TABLE = (() => {
    const t = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      t[n] = c >>> 0;
    }
    return t;
  })();
  class Crc {
    constructor() { this.c = 0xffffffff; }
    update(a) {
      let c = this.c;
      for (let i = 0; i < a.length; i++) c = CRC_TABLE[(c ^ a[i]) & 0xff] ^ (c >>> 8);
      this.c = c;
    }
    finish() { return (this.c ^ 0xffffffff) >>> 0; }
  }
  const crcOf = (a) => { const c = new Crc(); c.update(a); return c.finish(); };
  function pattern(n, seed) {
    const a = new Uint8Array(n);
    for (let j = 0; j < n; j++) a[j] = (j * 131 + seed * 7 + (j >> 8)) & 255;
    return a;
  }
  function indexed(k) {
    const m = new Uint8Array(1024);
    new DataView(m.buffer).setUint32(0, k);
    m.set(pattern(1020, k), 4);
    return m;
  }
  function bulkChunk(base, k, n) {
    const c = base.slice(0, n);
    if (base.length >= 4) {
      const head = new Uint8Array(4);
      new DataView(head.buffer).setUint32(0, k);
      c.set(head.subarray(0, Math.min(4, n)), 0);
    }
    return c;
  }
  const equal = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);
  const toU8 = (d) =>
    typeof d === 'string' ? new TextEncoder().encode(d)
      : d instanceof ArrayBuffer ? new Uint8Array(d)
        : ArrayBuffer.isView(d) ? new Uint8Array(d.buffer, d.byteOffset, d.byteLength)
          : new Uint8Array(0);
  const json = (a) => JSON.parse(new TextDecoder().decode(a));
  const enc = (o) => new TextEncoder().encode(JSON.stringify(o));
  const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());
  const median = (v) => { const s = [...v].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
  const withTimeout = (p, what) => new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), STEP_LIMIT_MS);
    p.then((v) => { clearTimeout(t); resolve(v); }, (e) => { clearTimeout(t); reject(e); });
  });

  // A channel with a receive queue and a send that waits on the buffered amount.
  class Chan {
    constructor(dc) {
      this.dc = dc;
      dc.binaryType = 'arraybuffer';
      this.queue = [];
      this.waiter = null;
      this.closed = false;
      this.open = new Promise((resolve, reject) => {
        if (dc.readyState === 'open') resolve();
        dc.onopen = () => resolve();
        dc.onclose = () => { this.closed = true; reject(new Error(`channel ${dc.label} closed`)); this.wake(); };
      });
      this.open.catch(() => {});
      dc.onmessage = (e) => { this.queue.push(toU8(e.data)); this.wake(); };
      try { dc.bufferedAmountLowThreshold = LOW_WATER; } catch { /* optional in some stacks */ }
      dc.onbufferedamountlow = () => { const w = this.lowWaiter; this.lowWaiter = null; if (w) w(); };
    }
    wake() { const w = this.waiter; this.waiter = null; if (w) w(); }
    async recv(what) {
      const deadline = now() + STEP_LIMIT_MS;
      while (this.queue.length === 0) {
        if (this.closed) throw new Error(`channel closed while waiting for ${what}`);
        if (now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => { this.waiter = r; setTimeout(r, 1000); });
      }
      return this.queue.shift();
    }
    // Some stacks only deliver messages received while a timer runs; polling at most every
    // 10 ms keeps the wait bounded even if the low-water event is missed.
    async send(a) {
      const deadline = now() + STEP_LIMIT_MS;
      while (this.dc.bufferedAmount > HIGH_WATER) {
        if (this.closed) throw new Error('channel closed');
        if (now() > deadline) throw new Error('send timed out');
        await new Promise((r) => { this.lowWaiter = r; setTimeout(r, 10); });
      }
      this.dc.send(a);
    }
    async drained() {
      const deadline = now() + STEP_LIMIT_MS;
      while (this.dc.bufferedAmount > 0 && now() < deadline) await new Promise((r) => setTimeout(r, 5));
    }
  }

  class Peer {
    // opts: { RTCPeerConnection, role, mode: 'interop'|'bench'|'priority', bulk, msg, rtt, sendSignal, stack }
    constructor(opts) {
      this.o = opts;
      this.pc = new opts.RTCPeerConnection({ iceServers: [] });
      this.remoteSet = false;
      this.early = [];
      this.remoteMax = 65536;
      this.incoming = [];
      this.incomingWaiter = null;
      this.pc.onicecandidate = (e) => {
        if (e.candidate && e.candidate.candidate) {
          this.o.sendSignal({ type: 'candidate', candidate: { candidate: e.candidate.candidate, sdpMLineIndex: e.candidate.sdpMLineIndex ?? 0, sdpMid: e.candidate.sdpMid ?? '0' } });
        }
      };
      this.pc.ondatachannel = (e) => {
        this.incoming.push(new Chan(e.channel));
        const w = this.incomingWaiter; this.incomingWaiter = null; if (w) w();
      };
    }
    noteRemote(sdp) {
      const m = /a=max-message-size:(\d+)/.exec(sdp);
      this.remoteMax = m ? Number(m[1]) : 65536;
      if (this.remoteMax === 0) this.remoteMax = 256 * 1024;
    }
    async handleSignal(s) {
      if (s.type === 'offer') {
        this.noteRemote(s.sdp);
        await this.pc.setRemoteDescription({ type: 'offer', sdp: s.sdp });
        await this.flushEarly();
        const answer = await this.pc.createAnswer();
        await this.pc.setLocalDescription(answer);
        this.o.sendSignal({ type: 'answer', sdp: this.pc.localDescription.sdp });
      } else if (s.type === 'answer') {
        this.noteRemote(s.sdp);
        await this.pc.setRemoteDescription({ type: 'answer', sdp: s.sdp });
        await this.flushEarly();
      } else if (s.type === 'candidate') {
        if (!this.remoteSet) this.early.push(s.candidate);
        else await this.pc.addIceCandidate(s.candidate);
      }
    }
    async flushEarly() {
      this.remoteSet = true;
      for (const c of this.early.splice(0)) await this.pc.addIceCandidate(c);
    }
    // The offerer creates the channels and offers; the answerer waits for the peer's.
    async openChannels(specs) {
      const t0 = now();
      const chans = {};
      if (this.o.role === 'offerer') {
        for (const [label, init] of specs) chans[label] = new Chan(this.pc.createDataChannel(label, init));
        const offer = await this.pc.createOffer();
        await this.pc.setLocalDescription(offer);
        this.o.sendSignal({ type: 'offer', sdp: this.pc.localDescription.sdp });
        await withTimeout(Promise.all(Object.values(chans).map((c) => c.open)), 'channels to open');
      } else {
        const deadline = now() + 30000;
        while (this.incoming.length < specs.length) {
          if (now() > deadline) throw new Error('no channel from the peer');
          await new Promise((r) => { this.incomingWaiter = r; setTimeout(r, 500); });
        }
        for (const c of this.incoming) chans[c.dc.label] = c;
        await withTimeout(Promise.all(Object.values(chans).map((c) => c.open)), 'channels to open');
      }
      return { chans, connectMs: now() - t0 };
    }
    maxMessage() { return Math.min(this.remoteMax, 256 * 1024); }

    async interop() {
      const { chans, connectMs } = await this.openChannels([
        ['reliable', { ordered: true }],
        ['unordered', { ordered: false }],
        ['lossy', { ordered: false, maxRetransmits: 0 }],
      ]);
      const { reliable, unordered, lossy } = chans;
      if (!reliable || !unordered || !lossy) throw new Error('missing channel');
      const max = this.maxMessage();
      const sizes = SIZES.filter((s) => s <= max);
      const chunk = Math.min(this.o.msg, max);
      const bulk = this.o.bulk;
      const base = pattern(chunk, 0);
      const bulkCrc = new Crc();
      for (let left = bulk, k = 0; left > 0; k++) {
        const n = Math.min(left, chunk);
        bulkCrc.update(bulkChunk(base, k, n));
        left -= n;
      }
      const sent = { sizes, crcs: sizes.map((s, i) => crcOf(pattern(s, i))), bulkBytes: bulk, bulkCrc: bulkCrc.finish(), unordered: INDEXED, lossy: INDEXED };

      const sending = (async () => {
        await reliable.send(enc({ sizes, bulk, chunk }));
        for (let i = 0; i < sizes.length; i++) await reliable.send(pattern(sizes[i], i));
        for (let k = 0; k < INDEXED; k++) { await unordered.send(indexed(k)); await lossy.send(indexed(k)); }
        for (let left = bulk, k = 0; left > 0; k++) {
          const n = Math.min(left, chunk);
          await reliable.send(bulkChunk(base, k, n));
          left -= n;
        }
      })();

      const indexedRecv = async (ch, bounded) => {
        const seen = new Set();
        let intact = true; let outOfOrder = false; let last = -1;
        while (seen.size < INDEXED) {
          let m;
          if (bounded) {
            if (ch.queue.length === 0) break;
            m = ch.queue.shift();
          } else m = await ch.recv('indexed messages');
          const k = m.length >= 4 ? new DataView(m.buffer, m.byteOffset, 4).getUint32(0) : -1;
          if (k < 0 || !equal(m, indexed(k))) { intact = false; if (!bounded) break; continue; }
          if (k < last) outOfOrder = true;
          last = k; seen.add(k);
        }
        return { count: seen.size, intact, outOfOrder };
      };
      const unorderedP = indexedRecv(unordered, false);

      const header = json(await reliable.recv('header'));
      const gotSizes = []; const gotCrcs = [];
      for (let i = 0; i < header.sizes.length; i++) {
        const m = await reliable.recv('a sized message');
        gotSizes.push(m.length); gotCrcs.push(crcOf(m));
      }
      let gotBulk = 0; const crc = new Crc();
      while (gotBulk < header.bulk) {
        const m = await reliable.recv('bulk');
        gotBulk += m.length; crc.update(m);
      }
      const uno = await unorderedP;
      await sending;
      // Messages of the partially reliable channel that arrived; wait briefly for stragglers.
      for (let i = 0; i < 100 && lossy.queue.length < INDEXED; i++) await new Promise((r) => setTimeout(r, 20));
      const lo = await indexedRecv(lossy, true);
      await reliable.drained();
      return {
        stack: this.o.stack, connectMs, remoteMaxMessageSize: max, sent,
        received: { sizes: gotSizes, crcs: gotCrcs, bulkBytes: gotBulk, bulkCrc: crc.finish(), unordered: uno.count, unorderedIntact: uno.intact, unorderedOutOfOrder: uno.outOfOrder, lossy: lo.count, lossyIntact: lo.intact },
      };
    }

    // Priority script (the same as webrtc_peer.rs --mode priority): the offerer opens
    // `very-low`, `low`, `medium` and `high` with that priority and `default` without one; each
    // side sends the label once on every channel and reports, per label, the channel's
    // `priority` attribute (null where the stack has none) and what arrived on it.
    async priority() {
      const levels = ['very-low', 'low', 'medium', 'high'];
      const { chans, connectMs } = await this.openChannels([...levels.map((p) => [p, { priority: p }]), ['default', {}]]);
      for (const [label, ch] of Object.entries(chans)) await ch.send(label);
      const channels = {};
      for (const [label, ch] of Object.entries(chans)) {
        const got = await ch.recv('a message on a priority channel');
        channels[label] = { priority: 'priority' in ch.dc ? ch.dc.priority : null, received: new TextDecoder().decode(got) };
      }
      // No wait for bufferedAmount to reach 0: the peer's report shows what arrived, and
      // Chromium 156 leaves it above 0 for a message sent on a channel the peer opened as soon
      // as that channel opens, although the message is delivered.
      return { stack: this.o.stack, connectMs, channels };
    }

    async bench() {
      const { chans, connectMs } = await this.openChannels([['bench', { ordered: true }]]);
      const ch = chans.bench;
      if (this.o.role === 'offerer') {
        const msg = Math.min(this.o.msg, this.maxMessage());
        await ch.send(enc({ bulk: this.o.bulk, msg, rtt: this.o.rtt }));
        const payload = pattern(msg, 0);
        const t1 = now();
        for (let left = this.o.bulk; left > 0;) {
          const n = Math.min(left, msg);
          await ch.send(n === msg ? payload : payload.subarray(0, n));
          left -= n;
        }
        const done = await ch.recv('bulk confirmation');
        const elapsed = now() - t1;
        if (done.length !== 1) throw new Error('unexpected confirmation');
        const ping = pattern(1024, 1); const rtts = [];
        for (let i = 0; i < this.o.rtt; i++) {
          const t = now();
          await ch.send(ping);
          const echo = await ch.recv('echo');
          rtts.push((now() - t) * 1000);
          if (!equal(echo, ping)) throw new Error('echo differs');
        }
        return { connectMs, bulkMBps: this.o.bulk / (elapsed / 1000) / 1e6, msg, rttUs: median(rtts) };
      }
      const header = json(await ch.recv('header'));
      let got = 0;
      while (got < header.bulk) got += (await ch.recv('bulk')).length;
      await ch.send(new Uint8Array([33]));
      for (let i = 0; i < header.rtt; i++) await ch.send(await ch.recv('ping'));
      return { received: got };
    }

    async run() {
      try {
        if (this.o.mode === 'priority') return await this.priority();
        return this.o.mode === 'bench' ? await this.bench() : await this.interop();
      } catch (e) {
        return { error: String(e && e.stack || e) };
      }
    }
    close() { try { this.pc.close(); } catch { /* already closed */ } }
  }

  // Two peers of one stack in one process (or page), signals passed directly.
  async function pair(opts) {
    let a; let b;
    const relay = (to) => (s) => { setTimeout(() => to().handleSignal(s).catch((e) => console.error('signal refused', e)), 0); };
    a = new Peer({ ...opts, role: 'offerer', sendSignal: relay(() => b) });
    b = new Peer({ ...opts, role: 'answerer', sendSignal: relay(() => a) });
    const [ra, rb] = await Promise.all([a.run(), b.run()]);
    a.close(); b.close();
    return { report: ra, answerer: rb };
  }

  globalThis.PeerLogic = { Peer, pair, crcOf, pattern };
})();
