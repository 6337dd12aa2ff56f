// The message codec from JS: the MessagePack step runs in JavaScript (msgpack.js) and must
// write and read exactly what the native conversion used by call/expose does.
import test from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { connectedPair, peerlink } from './helpers.mjs'

const require = createRequire(import.meta.url)
const msgpack = require('../msgpack.js')
const { Packr } = require('msgpackr')

// A deterministic generator (no Math.random: failures must reproduce).
function rng(seed) {
  let s = seed >>> 0
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0
    return s / 2 ** 32
  }
}

const STRINGS = ['', 'a', 'héllo ✓', '𝄞 clef', 'x'.repeat(31), 'y'.repeat(32), 'z'.repeat(300), '\ud800 lone', 'record-12']
const NUMBERS = [0, 1, -1, 127, 128, 255, 256, -32, -33, -128, -129, 65535, 65536, -32768, -32769,
  2 ** 31, -(2 ** 31), -(2 ** 31) - 1, 2 ** 32, 2 ** 32 - 1, 2 ** 53 - 1, -(2 ** 53 - 1), 2 ** 53,
  0.5, -1.25, 1e300, NaN, Infinity, -Infinity, -0]
const BIGINTS = [0n, 5n, -5n, 2n ** 60n, -(2n ** 62n), 2n ** 64n - 1n, -(2n ** 63n), 2n ** 53n]

function randomValue(next, depth) {
  const pick = (xs) => xs[Math.floor(next() * xs.length)]
  const r = next()
  if (depth > 3 || r < 0.5) {
    switch (Math.floor(next() * 8)) {
      case 0: return pick(STRINGS)
      case 1: return pick(NUMBERS)
      case 2: return pick(BIGINTS)
      case 3: return next() < 0.5
      case 4: return null
      case 5: return Buffer.from(Array.from({ length: Math.floor(next() * 300) }, () => Math.floor(next() * 256)))
      case 6: return new Date(Math.floor(next() * 4e12) - 1e12 + next())
      default: return Math.floor(next() * 1e6) * (next() < 0.5 ? -1 : 1)
    }
  }
  if (r < 0.75) {
    return Array.from({ length: Math.floor(next() * 20) }, () => randomValue(next, depth + 1))
  }
  const o = {}
  const n = Math.floor(next() * 20)
  for (let i = 0; i < n; i++) o[next() < 0.2 ? String(i) : `${pick(STRINGS)}${i}`] = randomValue(next, depth + 1)
  if (next() < 0.2) o.skipped = undefined
  return o
}

test('the JS encoder writes the bytes the native encoder writes, and both read them back', async () => {
  const pair = await connectedPair()
  try {
    // `call` encodes natively and a raw handler sees the bytes; `callRaw` sends JS-encoded
    // bytes to a handler that decodes them natively and answers natively encoded bytes.
    let captured = null
    pair.server.exposeRaw('capture', (body) => {
      captured = Buffer.from(body)
      return Buffer.from([0xc0]) // MessagePack nil: `call` decodes the answer
    })
    pair.server.expose('echo', (value) => value)
    const next = rng(7)
    for (let i = 0; i < 200; i++) {
      const value = randomValue(next, 0)
      await pair.connection.call('capture', value)
      const ours = msgpack.encode(value)
      assert.ok(ours.equals(captured), `case ${i}: JS and native encodings differ`)
      const back = msgpack.decode(await pair.connection.callRaw('echo', ours))
      assert.deepEqual(back, msgpack.decode(ours), `case ${i}`)
    }
  } finally {
    await pair.close()
  }
})

test('encodeMessage/decodeMessage round-trip values and agree with msgpackr on the format', () => {
  const packr = new Packr({ useRecords: false, int64AsType: 'bigint', mapsAsObjects: true })
  const next = rng(11)
  for (let i = 0; i < 500; i++) {
    const value = randomValue(next, 0)
    const { name, value: back } = peerlink.decodeMessage(peerlink.encodeMessage('m', value))
    assert.equal(name, 'm')
    const expected = msgpack.decode(msgpack.encode(value))
    assert.deepEqual(back, expected, `case ${i}`)
    // Another MessagePack implementation reads what we write.
    const theirs = packr.unpack(msgpack.encode(value))
    assert.deepEqual(normalize(theirs), normalize(expected), `case ${i} (msgpackr)`)
  }
})

// msgpackr returns small int64 values as BigInt when asked for BigInt; compare as numbers.
function normalize(v) {
  if (typeof v === 'bigint') return v >= -(2n ** 53n) + 1n && v <= 2n ** 53n - 1n ? Number(v) : v
  if (Array.isArray(v)) return v.map(normalize)
  if (v && typeof v === 'object' && !Buffer.isBuffer(v) && !(v instanceof Date)) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalize(x)]))
  }
  return v
}

test('the JS codec keeps the native rules: skipped properties, depth, BigInt range, __proto__', () => {
  const { encode, decode } = msgpack
  assert.deepEqual(decode(encode({ a: 1, u: undefined, f() {}, s: Symbol('x') })), { a: 1 })
  assert.deepEqual(decode(encode([undefined, () => 1])), [null, null])
  assert.deepEqual(decode(encode(new Uint16Array([1, 2]))), Buffer.from([1, 0, 2, 0]))
  assert.deepEqual(decode(encode(new Uint8Array([9]).buffer)), Buffer.from([9]))
  assert.equal(decode(encode(2n ** 64n - 1n)), 2n ** 64n - 1n)
  assert.throws(() => encode(2n ** 64n), (e) => e.code === 'encode')
  assert.throws(() => encode(new Date(NaN)), (e) => e.code === 'encode')
  const cyclic = {}
  cyclic.self = cyclic
  assert.throws(() => encode(cyclic), (e) => e.code === 'encode' && /nested deeper/.test(e.message))
  assert.throws(() => peerlink.encodeMessage('m', cyclic), (e) => e.code === 'encode')
  // 129 levels of arrays nest too deep; 128 do not.
  assert.throws(() => decode(Buffer.from([...Array(130).fill(0x91), 0xc0])), (e) => e.code === 'decode')
  assert.doesNotThrow(() => decode(Buffer.from([...Array(128).fill(0x91), 0xc0])))
  const polluted = decode(Buffer.from([0x81, 0xa9, ...Buffer.from('__proto__'), 0x81, 0xa1, 0x78, 0x01]))
  assert.equal({}.x, undefined)
  assert.deepEqual(Object.getOwnPropertyDescriptor(polluted, '__proto__').value, { x: 1 })
  // Numeric, boolean and nil keys become strings; other keys are refused.
  assert.deepEqual(decode(Buffer.from([0x83, 0x05, 0x01, 0xc3, 0x02, 0xc0, 0x03])), { 5: 1, true: 2, null: 3 })
  assert.throws(() => decode(Buffer.from([0x81, 0x90, 0xc0])), (e) => e.code === 'decode')
  assert.throws(() => decode(Buffer.from([0x81, 0xa1, 0xff, 0xc0])), (e) => /UTF-8/.test(e.message))
  // Lies and leftovers.
  for (const bad of [[0xdd, 0xff, 0xff, 0xff, 0xff], [0xc4, 10, 1], [0xc1], [0x01, 0x02], [0xd4, 0x05, 0x00], [0xd5, 0xff, 0, 0]]) {
    assert.throws(() => decode(Buffer.from(bad)), (e) => e.code === 'decode', `${bad}`)
  }
  assert.throws(() => peerlink.decodeMessage(Buffer.from([0, 1, 2])), (e) => e.code === 'decode')
})
