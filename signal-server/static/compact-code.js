// Compact offer/answer codes in the browser: the same format as peerlink-core's
// `compact` module (docs/protocol/compact-signal.md), for pages that connect without a server.
// A classic script with no dependencies; it only assigns globalThis.PeerlinkCompact:
//
//   PeerlinkCompact.decode(textOrLink)  -> { kind: 'offer'|'answer', sdp, sessionId, bytes }
//   PeerlinkCompact.encode(sdp, kind, { sessionId }) -> base64url text
//
// decode() throws CompactCodeError (err.code 'bad_code') on malformed input; encode() throws it
// for a description that no code can carry.
(function () {
  'use strict';
  const VERSION = 1;
  const MAX_CODE_LEN = 1024;
  const MAX_CANDIDATES = 32;
  const DEFAULT_MAX_MESSAGE_SIZE = 262144;
  const ICE = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const TYPES = ['host', 'srflx', 'prflx', 'relay'];
  const TYPE_PREF = { host: 126, prflx: 110, srflx: 100, relay: 0 };
  const SETUPS = ['actpass', 'active', 'passive'];

  class CompactCodeError extends Error {
    constructor(message) { super(message); this.name = 'CompactCodeError'; this.code = 'bad_code'; }
  }
  const fail = (m) => { throw new CompactCodeError(m); };

  function b64urlDecode(text) {
    if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) fail('not base64url');
    const std = text.replace(/-/g, '+').replace(/_/g, '/');
    const bin = atob(std + '='.repeat((4 - (std.length % 4)) % 4));
    return Uint8Array.from(bin, (c) => c.charCodeAt(0));
  }
  function b64urlEncode(bytes) {
    let bin = '';
    for (const b of bytes) bin += String.fromCharCode(b);
    return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  // The code part of a link `http(s)://host/path#CODE`, or the text itself.
  function codeText(text) {
    const t = String(text).trim();
    if (/^https?:\/\//i.test(t) || t.includes('#')) {
      const i = t.indexOf('#');
      return i < 0 ? '' : t.slice(i + 1).trim();
    }
    return t;
  }

  function checkIce(what, v, min) {
    if (v.length < min || v.length > 255) fail(`${what}: length out of range`);
    for (const c of v) if (!ICE.includes(c)) fail(`${what}: not an ICE character`);
  }
  const checkHost = (n) => {
    if (!/^[A-Za-z0-9.-]{1,253}$/.test(n)) fail("candidate host name: not 1-253 letters, digits, '-' or '.'");
  };

  function ipv4Text(b) { return Array.from(b).join('.'); }
  function ipv6Text(b) {
    const g = [];
    for (let i = 0; i < 16; i += 2) g.push((b[i] << 8) | b[i + 1]);
    // Longest run of two or more zero groups becomes '::' (RFC 5952), as Rust prints it.
    let best = -1, bestLen = 0;
    for (let i = 0; i < 8;) {
      if (g[i] !== 0) { i++; continue; }
      let j = i;
      while (j < 8 && g[j] === 0) j++;
      if (j - i > bestLen && j - i >= 2) { best = i; bestLen = j - i; }
      i = j;
    }
    if (best === 0 && bestLen === 5 && g[5] === 0xffff) {
      return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
    }
    const hex = (a) => a.map((x) => x.toString(16)).join(':');
    if (best < 0) return hex(g);
    return `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
  }
  function parseIpv4(t) {
    const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(t);
    if (!m) return null;
    const b = m.slice(1).map(Number);
    return b.every((x) => x <= 255) && m.slice(1).every((x) => x === '0' || x[0] !== '0') ? Uint8Array.from(b) : null;
  }
  function parseIpv6(t) {
    if (!/^[0-9A-Fa-f:.]+$/.test(t) || !t.includes(':')) return null;
    let s = t;
    const lastColon = s.lastIndexOf(':');
    if (s.slice(lastColon + 1).includes('.')) {
      // An embedded IPv4 tail (`::ffff:1.2.3.4`) becomes two hex groups.
      const v4 = parseIpv4(s.slice(lastColon + 1));
      if (!v4) return null;
      s = `${s.slice(0, lastColon + 1)}${((v4[0] << 8) | v4[1]).toString(16)}:${((v4[2] << 8) | v4[3]).toString(16)}`;
    }
    const halves = s.split('::');
    if (halves.length > 2) return null;
    const part = (h) => (h === '' ? [] : h.split(':'));
    const head = part(halves[0]);
    const rest = halves.length === 2 ? part(halves[1]) : [];
    const groups = [...head, ...rest];
    if (groups.some((x) => !/^[0-9A-Fa-f]{1,4}$/.test(x))) return null;
    const total = groups.length;
    if (halves.length === 1 ? total !== 8 : total > 7) return null;
    const nums = [
      ...head.map((x) => parseInt(x, 16)),
      ...new Array(halves.length === 2 ? 8 - total : 0).fill(0),
      ...rest.map((x) => parseInt(x, 16)),
    ];
    const out = new Uint8Array(16);
    nums.forEach((n, i) => { out[2 * i] = n >> 8; out[2 * i + 1] = n & 255; });
    return out;
  }
  const UUID = /^([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})\.local$/;
  function hexBytes(h) { const o = new Uint8Array(h.length / 2); for (let i = 0; i < o.length; i++) o[i] = parseInt(h.substr(2 * i, 2), 16); return o; }
  function mdnsText(b) {
    const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}.local`;
  }

  function decodeBytes(bytes) {
    if (bytes.length === 0) fail('empty code');
    if (bytes.length > MAX_CODE_LEN) fail(`code of ${bytes.length} bytes, over ${MAX_CODE_LEN}`);
    let pos = 0;
    const take = (n, what) => {
      if (pos + n > bytes.length) fail(`truncated: ${what}`);
      const s = bytes.subarray(pos, pos + n);
      pos += n;
      return s;
    };
    const u8 = (what) => take(1, what)[0];
    const head = u8('header');
    if (head >> 5 !== VERSION) fail(`unsupported version ${head >> 5}`);
    const kind = head & 0x08 ? 'answer' : 'offer';
    const setupBits = (head >> 1) & 3;
    if (setupBits === 3) fail('reserved setup');
    let ulen, plen;
    if (head & 0x10) {
      const b = u8('credential lengths');
      ulen = 4 + (b >> 4) * 4;
      plen = 22 + (b & 15) * 2;
    } else {
      ulen = u8('ufrag length');
      plen = u8('password length');
      if (ulen >= 4 && (ulen - 4) % 4 === 0 && (ulen - 4) / 4 < 16 && plen >= 22 && (plen - 22) % 2 === 0 && (plen - 22) / 2 < 16) {
        fail('credential lengths written long where the short form applies');
      }
    }
    const fingerprint = take(32, 'fingerprint');
    const count = ulen + plen;
    const packed = take(Math.ceil(count / 4) * 3, 'ICE credentials');
    let chars = '';
    for (let g = 0; g < packed.length; g += 3) {
      const acc = (packed[g] << 16) | (packed[g + 1] << 8) | packed[g + 2];
      for (let i = 0; i < 4; i++) {
        const v = (acc >> (18 - 6 * i)) & 63;
        if ((g / 3) * 4 + i < count) chars += ICE[v];
        else if (v !== 0) fail('reserved ICE credential padding');
      }
    }
    const ufrag = chars.slice(0, ulen);
    const pwd = chars.slice(ulen);
    checkIce('ICE ufrag', ufrag, 4);
    checkIce('ICE password', pwd, 22);
    let sessionId = null;
    let maxMessageSize = DEFAULT_MAX_MESSAGE_SIZE;
    if (head & 1) {
      const flags = u8('extension flags');
      if (flags & ~3) fail('reserved extension flags');
      if (flags === 0) fail('extension flags set but empty');
      if (flags & 1) {
        const n = u8('session id length');
        if (n === 0 || n > 64) fail('session id must be 1 to 64 bytes');
        sessionId = take(n, 'session id').slice();
      }
      if (flags & 2) {
        const b = take(4, 'max-message-size');
        maxMessageSize = ((b[0] << 24) >>> 0) + (b[1] << 16) + (b[2] << 8) + b[3];
        if (maxMessageSize === DEFAULT_MAX_MESSAGE_SIZE) fail('max-message-size: the default is written as absent');
      }
    }
    const candidates = [];
    while (pos < bytes.length) {
      if (candidates.length === MAX_CANDIDATES) fail('too many candidates');
      const d = u8('candidate descriptor');
      const type = TYPES[d >> 6];
      const transport = ['udp', 'tcp active', 'tcp passive', 'tcp so'][d & 3];
      let address;
      switch ((d >> 4) & 3) {
        case 0: address = ipv4Text(take(4, 'candidate address')); break;
        case 1: address = ipv6Text(take(16, 'candidate address')); break;
        case 2: address = mdnsText(take(16, 'candidate address')); break;
        default: {
          const n = u8('candidate host name length');
          address = String.fromCharCode(...take(n, 'candidate host name'));
          checkHost(address);
        }
      }
      const pb = take(2, 'candidate port');
      const port = (pb[0] << 8) | pb[1];
      let related = null;
      const rel = (d >> 2) & 3;
      if (rel === 1) fail('reserved related address');
      if (rel) {
        const ip = rel === 2 ? ipv4Text(take(4, 'related address')) : ipv6Text(take(16, 'related address'));
        const rp = take(2, 'related port');
        related = { ip, port: (rp[0] << 8) | rp[1] };
      }
      candidates.push({ type, transport, address, port, related });
    }
    return { kind, setup: SETUPS[setupBits], fingerprint, ufrag, pwd, sessionId, maxMessageSize, candidates };
  }

  function candidateLine(i, c) {
    const priority = ((TYPE_PREF[c.type] << 24) >>> 0) + ((65535 - i) << 8) + 255;
    const [proto, tcptype] = c.transport.split(' ');
    let line = `${i + 1} 1 ${proto} ${priority} ${c.address} ${c.port} typ ${c.type}`;
    if (c.related) line += ` raddr ${c.related.ip} rport ${c.related.port}`;
    else if (c.type !== 'host') line += ' raddr 0.0.0.0 rport 0';
    if (tcptype) line += ` tcptype ${tcptype}`;
    return `${line} generation 0`;
  }

  // The description a code stands for, line for line as peerlink-core writes it.
  function toSdp(s) {
    let sess = 0n;
    for (let i = 0; i < 8; i++) sess = (sess << 8n) | BigInt(s.fingerprint[i]);
    sess &= 0x7fffffffffffffffn;
    const fp = Array.from(s.fingerprint, (b) => b.toString(16).toUpperCase().padStart(2, '0')).join(':');
    let out = `v=0\r\no=- ${sess} 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n`
      + 'm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n';
    s.candidates.forEach((c, i) => { out += `a=candidate:${candidateLine(i, c)}\r\n`; });
    if (s.candidates.length) out += 'a=end-of-candidates\r\n';
    out += `a=ice-ufrag:${s.ufrag}\r\na=ice-pwd:${s.pwd}\r\na=fingerprint:sha-256 ${fp}\r\n`
      + `a=setup:${s.setup}\r\na=mid:0\r\na=sctp-port:5000\r\na=max-message-size:${s.maxMessageSize}\r\n`;
    return out;
  }

  function decode(text) {
    const t = codeText(text);
    if (!t) fail('empty code');
    if (t.length > Math.ceil(MAX_CODE_LEN / 3) * 4) fail('code too long');
    const bytes = b64urlDecode(t);
    const s = decodeBytes(bytes);
    return { kind: s.kind, sdp: toSdp(s), sessionId: s.sessionId, bytes, signal: s };
  }

  // Reads a local description (from this browser) into the code's fields, keeping only what
  // the peer can use: UDP candidates of component 1, without related addresses, deduplicated.
  function fromSdp(sdp) {
    if (!String(sdp).startsWith('v=0')) fail('SDP does not start with v=0');
    let fingerprint = null, ufrag = null, pwd = null, setup = null, maxMessageSize = DEFAULT_MAX_MESSAGE_SIZE;
    let sections = 0;
    const seen = new Set();
    const candidates = [];
    for (const raw of sdp.split(/\r?\n/)) {
      const line = raw.trimEnd();
      if (line.startsWith('m=')) {
        sections++;
        if (!line.startsWith('m=application ') || !line.includes('webrtc-datachannel') || sections > 1) {
          fail(`media section ${line} (only one data-channel section fits a code)`);
        }
        continue;
      }
      if (!line.startsWith('a=')) continue;
      const attr = line.slice(2);
      const colon = attr.indexOf(':');
      const name = colon < 0 ? attr : attr.slice(0, colon);
      const value = colon < 0 ? '' : attr.slice(colon + 1).trim();
      if (name === 'fingerprint') {
        const [alg, hex] = value.split(' ');
        if (alg.toLowerCase() !== 'sha-256') continue;
        const parts = (hex || '').split(':');
        if (parts.length !== 32 || parts.some((p) => !/^[0-9A-Fa-f]{2}$/.test(p))) fail('sha-256 fingerprint is not 32 hex bytes');
        fingerprint = Uint8Array.from(parts, (p) => parseInt(p, 16));
      } else if (name === 'ice-ufrag') ufrag = value;
      else if (name === 'ice-pwd') pwd = value;
      else if (name === 'setup') {
        if (!SETUPS.includes(value)) fail(`a=setup:${value}`);
        setup = value;
      } else if (name === 'mid' && value !== '0') fail(`a=mid:${value} (codes always use mid 0)`);
      else if (name === 'sctp-port' && value !== '5000') fail(`a=sctp-port:${value}`);
      else if (name === 'max-message-size') maxMessageSize = Number(value);
      else if (name === 'candidate') {
        const f = value.split(/\s+/);
        if (f.length < 8 || f[6] !== 'typ') fail(`candidate ${value}: malformed`);
        if (f[1] !== '1' || f[2].toLowerCase() !== 'udp' || f[4].includes('%')) continue;
        if (!TYPES.includes(f[7])) fail(`candidate ${value}: unknown type`);
        const port = Number(f[5]);
        if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`candidate ${value}: bad port`);
        const key = `${f[7]} ${f[4]} ${port}`;
        if (seen.has(key)) continue;
        seen.add(key);
        candidates.push({ type: f[7], transport: 'udp', address: f[4], port, related: null });
      }
    }
    if (!sections) fail('no m=application section');
    if (!setup) fail('no a=setup');
    if (!fingerprint) fail('no sha-256 fingerprint');
    if (!ufrag || !pwd) fail('no ICE credentials');
    if (candidates.length > MAX_CANDIDATES) fail('too many candidates');
    return { setup, fingerprint, ufrag, pwd, maxMessageSize, candidates };
  }

  function encode(sdp, kind, opts = {}) {
    if (kind !== 'offer' && kind !== 'answer') fail("kind must be 'offer' or 'answer'");
    const s = fromSdp(sdp);
    checkIce('ICE ufrag', s.ufrag, 4);
    checkIce('ICE password', s.pwd, 22);
    const sessionId = opts.sessionId == null ? null
      : typeof opts.sessionId === 'string' ? new TextEncoder().encode(opts.sessionId) : Uint8Array.from(opts.sessionId);
    if (sessionId && (sessionId.length === 0 || sessionId.length > 64)) fail('session id must be 1 to 64 bytes');
    const mms = s.maxMessageSize !== DEFAULT_MAX_MESSAGE_SIZE ? s.maxMessageSize : null;
    if (mms !== null && !(Number.isInteger(mms) && mms >= 0 && mms <= 0xffffffff)) fail('bad max-message-size');
    const out = [];
    const u = s.ufrag.length - 4, p = s.pwd.length - 22;
    const short = u % 4 === 0 && u / 4 < 16 && p % 2 === 0 && p / 2 < 16;
    const ext = sessionId !== null || mms !== null;
    out.push((VERSION << 5) | (short ? 0x10 : 0) | (kind === 'answer' ? 0x08 : 0) | (SETUPS.indexOf(s.setup) << 1) | (ext ? 1 : 0));
    if (short) out.push(((u / 4) << 4) | (p / 2));
    else out.push(s.ufrag.length, s.pwd.length);
    out.push(...s.fingerprint);
    const chars = s.ufrag + s.pwd;
    for (let i = 0; i < chars.length; i += 4) {
      let acc = 0;
      for (let k = 0; k < 4; k++) acc = (acc << 6) | (i + k < chars.length ? ICE.indexOf(chars[i + k]) : 0);
      out.push((acc >> 16) & 255, (acc >> 8) & 255, acc & 255);
    }
    if (ext) {
      out.push((sessionId ? 1 : 0) | (mms !== null ? 2 : 0));
      if (sessionId) out.push(sessionId.length, ...sessionId);
      if (mms !== null) out.push((mms >>> 24) & 255, (mms >>> 16) & 255, (mms >>> 8) & 255, mms & 255);
    }
    for (const c of s.candidates) {
      let addrBits, addr;
      const v4 = parseIpv4(c.address);
      const v6 = v4 ? null : parseIpv6(c.address);
      const mdns = UUID.exec(c.address);
      if (v4) { addrBits = 0; addr = [...v4]; }
      else if (v6) { addrBits = 1; addr = [...v6]; }
      else if (mdns) { addrBits = 2; addr = [...hexBytes(mdns.slice(1).join(''))]; }
      else { checkHost(c.address); addrBits = 3; addr = [c.address.length, ...Array.from(c.address, (ch) => ch.charCodeAt(0))]; }
      out.push((TYPES.indexOf(c.type) << 6) | (addrBits << 4), ...addr, c.port >> 8, c.port & 255);
    }
    if (out.length > MAX_CODE_LEN) fail(`code of ${out.length} bytes, over ${MAX_CODE_LEN}`);
    return b64urlEncode(Uint8Array.from(out));
  }

  globalThis.PeerlinkCompact = { decode, encode, CompactCodeError };
})();
