// Benchmarks of the Node addon, run from JavaScript:
//  - RPC calls/s and bulk MB/s between two Node processes over a loopback WebSocket and over a
//    loopback WebRTC data channel (signals carried over the child's stdin/stdout);
//  - the codec called from JS (encodeMessage/decodeMessage) against msgpackr + fflate on the
//    same values.
//
//   node bench/run.mjs [--json] [--seconds N] [--rounds N] [--only ws|webrtc|codec]
import { createRequire } from 'node:module'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { Packr } from 'msgpackr'
import { deflateSync, inflateSync } from 'fflate'

const require = createRequire(import.meta.url)
const { Identity, Node, WebRtcLink, encodeMessage, decodeMessage } = require('../index.js')

const args = process.argv.slice(2)
const json = args.includes('--json')
const secondsArg = args.indexOf('--seconds')
const seconds = secondsArg >= 0 ? Number(args[secondsArg + 1]) : 2
const roundsArg = args.indexOf('--rounds')
const ROUNDS = roundsArg >= 0 ? Number(args[roundsArg + 1]) : 5
const onlyArg = args.indexOf('--only')
const only = onlyArg >= 0 ? args[onlyArg + 1] : null
const now = () => Number(process.hrtime.bigint()) / 1e9
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

const serverScript = fileURLToPath(new URL('./server.mjs', import.meta.url))

async function startServer() {
  const child = spawn(process.execPath, [serverScript], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  let line = ''
  for await (const chunk of child.stdout) {
    line += chunk
    if (line.includes('\n')) break
  }
  return { child, url: JSON.parse(line).url }
}

/** A WebSocket connection to a fresh server process. */
async function connectWebSocket(node) {
  const server = await startServer()
  return { child: server.child, connection: await node.dial(server.url), link: null }
}

/** A WebRTC connection to a fresh server process; signals travel as JSON lines over its stdio. */
async function connectWebRtc(node) {
  const child = spawn(process.execPath, [serverScript, 'webrtc'], { stdio: ['pipe', 'pipe', 'inherit'] })
  const link = await WebRtcLink.create('offerer', { bindAddrs: ['127.0.0.1:0'] })
  link.onSignal((json) => child.stdin.write(json + '\n'))
  let buffered = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (chunk) => {
    buffered += chunk
    let nl
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl)
      buffered = buffered.slice(nl + 1)
      if (line) link.handleSignal(JSON.parse(line).signal).catch(() => {})
    }
  })
  await link.start()
  const connection = await link.connect(node)
  return { child, connection, link }
}

async function rpcRate(connection, concurrency) {
  const deadline = now() + seconds
  let calls = 0
  const worker = async () => {
    while (now() < deadline) {
      await connection.call('echo', { i: calls, name: 'bench' })
      calls += 1
    }
  }
  const start = now()
  await Promise.all(Array.from({ length: concurrency }, worker))
  return calls / (now() - start)
}

async function streamRate(connection, data, totalBytes, round) {
  const name = `bulk-${round}`
  const start = now()
  const stream = await connection.openStream(name)
  for (let sent = 0; sent < totalBytes; sent += data.length) await stream.write(data)
  await stream.end()
  const received = await connection.call('streamTotal', name)
  const elapsed = now() - start
  if (received !== totalBytes) throw new Error(`receiver got ${received} of ${totalBytes} bytes`)
  return totalBytes / elapsed / 1e6
}

async function callRawRate(connection, data, count) {
  const start = now()
  for (let i = 0; i < count; i++) await connection.callRaw('sink', data)
  return (data.length * count) / (now() - start) / 1e6
}

async function transportBench(connect) {
  const node = new Node({ identity: Identity.generate(), userId: 'bench', deviceId: 'bench-client' })
  const server = await connect(node)
  const { connection } = server
  const results = {}
  try {
    for (const concurrency of [1, 64]) {
      const rates = []
      for (let r = 0; r < ROUNDS; r++) rates.push(await rpcRate(connection, concurrency))
      results[`rpc_calls_per_s_c${concurrency}`] = median(rates)
    }
    const chunk = randomBytes(1 << 20)
    const streamRates = []
    for (let r = 0; r < ROUNDS; r++) streamRates.push(await streamRate(connection, chunk, 512 << 20, r))
    results.stream_mb_per_s = median(streamRates)
    const big = randomBytes(16 << 20)
    const rawRates = []
    for (let r = 0; r < ROUNDS; r++) rawRates.push(await callRawRate(connection, big, 16))
    results.call_raw_16mib_mb_per_s = median(rawRates)
    await connection.call('shutdown')
  } finally {
    if (server.link) await server.link.close()
    await node.close()
  }
  if (server.child.stdin) server.child.stdin.end()
  await new Promise((resolve) => server.child.once('exit', resolve))
  return results
}

// Codec inputs: structured JS values as applications send them.
function records(count) {
  return Array.from({ length: count }, (_, i) => ({
    id: i,
    name: `record-${i % 97}`,
    tags: ['alpha', 'beta'],
    ok: true,
    score: i * 0.5,
  }))
}
function textBuffer(len) {
  const parts = []
  let total = 0
  for (let i = 0; total < len; i++) {
    const s = `{"id":${i},"name":"record-${i % 97}","tags":["alpha","beta"],"ok":true},`
    parts.push(s)
    total += s.length
  }
  return Buffer.from(parts.join('')).subarray(0, len)
}

const packr = new Packr({ useRecords: false })
const codecs = {
  peerlink: (value) => decodeMessage(encodeMessage('bench', value)).value,
  'msgpackr+fflate': (value) => {
    const packed = packr.pack({ type: 'call', id: 1, name: 'bench', body: value })
    return packr.unpack(inflateSync(deflateSync(packed, { level: 1 }))).body
  },
}

function codecRate(fn, value, bytes) {
  const budget = seconds / 4
  const rates = []
  for (let r = 0; r < ROUNDS; r++) {
    let n = 0
    const start = now()
    while (now() - start < budget || n < 3) {
      fn(value)
      n += 1
    }
    rates.push((bytes * n) / (now() - start) / 1e6)
  }
  return median(rates)
}

function codecBench() {
  const inputs = [
    ['records x100', records(100)],
    ['records x10000', records(10000)],
    ['text Buffer 64KiB', textBuffer(64 << 10)],
    ['text Buffer 1MiB', textBuffer(1 << 20)],
    ['random Buffer 1MiB', randomBytes(1 << 20)],
    ['random Buffer 16MiB', randomBytes(16 << 20)],
  ]
  const rows = []
  for (const [label, value] of inputs) {
    // Throughput is counted in MessagePack bytes of the value, the same for both sides.
    const bytes = packr.pack(value).length
    const ours = codecRate(codecs.peerlink, value, bytes)
    const theirs = codecRate(codecs['msgpackr+fflate'], value, bytes)
    rows.push({ input: label, msgpack_bytes: bytes, peerlink_mb_s: ours, msgpackr_fflate_mb_s: theirs, ratio: ours / theirs })
  }
  return rows
}

const transports = {}
if (!only || only === 'ws') transports.websocket = await transportBench(connectWebSocket)
if (!only || only === 'webrtc') transports.webrtc = await transportBench(connectWebRtc)
const codec = !only || only === 'codec' ? codecBench() : []
if (json) {
  console.log(JSON.stringify({ node: process.version, rounds: ROUNDS, transports, codec }, null, 2))
} else {
  console.log(`Node ${process.version}, ${ROUNDS} rounds, medians\n`)
  const names = Object.keys(transports)
  const cell = (key, digits) => names.map((n) => transports[n][key].toFixed(digits)).join(' | ')
  if (names.length) {
    console.log(`| measure (two Node processes, loopback) | ${names.join(' | ')} |`)
    console.log(`|---|${names.map(() => '---:').join('|')}|`)
    console.log(`| RPC calls/s, 1 outstanding | ${cell('rpc_calls_per_s_c1', 0)} |`)
    console.log(`| RPC calls/s, 64 outstanding | ${cell('rpc_calls_per_s_c64', 0)} |`)
    console.log(`| byte stream MB/s (1 MiB writes, 512 MiB, random) | ${cell('stream_mb_per_s', 1)} |`)
    console.log(`| callRaw MB/s (16 MiB random buffers) | ${cell('call_raw_16mib_mb_per_s', 1)} |`)
  }
  if (codec.length) console.log('\n| codec input | MessagePack size | peerlink MB/s | msgpackr+fflate MB/s | ratio |')
  if (codec.length) console.log('|---|---:|---:|---:|---:|')
  for (const r of codec) {
    console.log(`| ${r.input} | ${r.msgpack_bytes} | ${r.peerlink_mb_s.toFixed(1)} | ${r.msgpackr_fflate_mb_s.toFixed(1)} | ${r.ratio.toFixed(2)}× |`)
  }
}
