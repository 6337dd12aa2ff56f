'use strict'
// JavaScript values <-> MessagePack, in JavaScript: the same format, rules and errors as the
// addon's native conversion (src/value.rs), used where crossing into native code once per
// value would cost more than the work itself (the message codec: `encodeMessage` hands the
// bytes to native code once, `decodeMessage` gets them back once).
//
// Encoding: null/undefined -> nil, booleans, numbers (integers up to 2^53 as MessagePack
// integers, the rest as float 64), BigInt (int 64 / uint 64), strings, Buffer/typed arrays/
// ArrayBuffer/DataView -> bin, Date -> timestamp extension (-1), arrays, and objects (own
// enumerable string keys; properties holding undefined, functions or symbols are skipped).
// Decoding checks every length against its input, refuses nesting deeper than 128 levels,
// unknown extensions and non-scalar map keys; integers beyond 2^53 become BigInt, bin becomes
// a Buffer (a copy), maps become plain objects (`__proto__` is defined as an own property).

const { isUtf8 } = require('node:buffer')
const { types } = require('node:util')

const MAX_DEPTH = 128
const MAX_SAFE = Number.MAX_SAFE_INTEGER
const TWO_32 = 4294967296
/// Encoder buffers larger than this are not kept between calls.
const KEEP_BUFFER = 1 << 20

/// Property names decoded before, by a hash of their bytes (shared by every decode).
const KEY_SLOTS = 4096
const keyCache = new Array(KEY_SLOTS)

class CodecError extends Error {
  constructor(code, message) {
    super(message)
    this.code = code
  }
}

// ---------------------------------------------------------------------------------------------
// Encoding

class Encoder {
  constructor() {
    this.alloc(8192)
    this.pos = 0
    this.busy = false
  }

  alloc(size) {
    this.buf = Buffer.allocUnsafeSlow(size)
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.length)
  }

  grow(need) {
    let size = this.buf.length * 2
    while (size < this.pos + need) size *= 2
    const old = this.buf
    this.alloc(size)
    old.copy(this.buf, 0, 0, this.pos)
  }

  // Encodes `value`; returns a view of the encoder's buffer, valid until the next call.
  encode(value) {
    this.pos = 0
    this.value(value, 0)
    return this.buf.subarray(0, this.pos)
  }

  value(v, depth) {
    if (depth > MAX_DEPTH) {
      throw new CodecError('encode', `value nested deeper than ${MAX_DEPTH} levels (or cyclic)`)
    }
    if (this.pos + 9 > this.buf.length) this.grow(9)
    switch (typeof v) {
      case 'string':
        return this.string(v)
      case 'number':
        return this.number(v)
      case 'boolean':
        this.buf[this.pos++] = v ? 0xc3 : 0xc2
        return
      case 'object':
        if (v === null) {
          this.buf[this.pos++] = 0xc0
          return
        }
        return this.object(v, depth)
      case 'bigint':
        return this.bigint(v)
      default:
        // undefined, functions and symbols: nil (as JSON does in arrays).
        this.buf[this.pos++] = 0xc0
    }
  }

  number(v) {
    if (Number.isInteger(v) && v <= MAX_SAFE && v >= -MAX_SAFE) return this.int(v)
    this.buf[this.pos] = 0xcb
    this.view.setFloat64(this.pos + 1, v)
    this.pos += 9
  }

  // An integer within +-2^53 (room for 9 bytes is reserved by the caller).
  int(v) {
    const buf = this.buf
    if (v >= 0) {
      if (v < 0x80) {
        buf[this.pos++] = v
      } else if (v < 0x100) {
        buf[this.pos++] = 0xcc
        buf[this.pos++] = v
      } else if (v < 0x10000) {
        buf[this.pos++] = 0xcd
        buf[this.pos++] = v >>> 8
        buf[this.pos++] = v & 0xff
      } else if (v < TWO_32) {
        buf[this.pos++] = 0xce
        this.view.setUint32(this.pos, v)
        this.pos += 4
      } else {
        buf[this.pos++] = 0xcf
        this.view.setUint32(this.pos, Math.floor(v / TWO_32))
        this.view.setUint32(this.pos + 4, v >>> 0)
        this.pos += 8
      }
    } else if (v >= -32) {
      buf[this.pos++] = v & 0xff
    } else if (v >= -0x80) {
      buf[this.pos++] = 0xd0
      buf[this.pos++] = v & 0xff
    } else if (v >= -0x8000) {
      buf[this.pos++] = 0xd1
      this.view.setInt16(this.pos, v)
      this.pos += 2
    } else if (v >= -0x80000000) {
      buf[this.pos++] = 0xd2
      this.view.setInt32(this.pos, v)
      this.pos += 4
    } else {
      buf[this.pos++] = 0xd3
      const hi = Math.floor(v / TWO_32)
      this.view.setInt32(this.pos, hi)
      this.view.setUint32(this.pos + 4, v - hi * TWO_32)
      this.pos += 8
    }
  }

  bigint(v) {
    if (v >= -0x8000000000000000n && v <= 0xffffffffffffffffn) {
      if (v >= -BigInt(MAX_SAFE) && v <= BigInt(MAX_SAFE)) return this.int(Number(v))
      if (v < 0n) {
        this.buf[this.pos] = 0xd3
        this.view.setBigInt64(this.pos + 1, v)
      } else {
        this.buf[this.pos] = 0xcf
        this.view.setBigUint64(this.pos + 1, v)
      }
      this.pos += 9
      return
    }
    throw new CodecError('encode', 'BigInt outside the 64-bit range')
  }

  string(s) {
    const len = s.length
    if (len < 32) {
      // Short strings: UTF-8 by hand behind a one-byte header, moved if it needs two.
      if (this.pos + 2 + len * 3 > this.buf.length) this.grow(2 + len * 3)
      const buf = this.buf
      const start = this.pos
      let p = start + 1
      for (let i = 0; i < len; i++) {
        let c = s.charCodeAt(i)
        if (c < 0x80) {
          buf[p++] = c
        } else if (c < 0x800) {
          buf[p++] = 0xc0 | (c >> 6)
          buf[p++] = 0x80 | (c & 0x3f)
        } else {
          if (c >= 0xd800 && c <= 0xdfff) {
            const next = i + 1 < len ? s.charCodeAt(i + 1) : 0
            if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
              c = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00)
              i++
              buf[p++] = 0xf0 | (c >> 18)
              buf[p++] = 0x80 | ((c >> 12) & 0x3f)
              buf[p++] = 0x80 | ((c >> 6) & 0x3f)
              buf[p++] = 0x80 | (c & 0x3f)
              continue
            }
            // A lone surrogate becomes U+FFFD, as Node-API and Buffer do.
            c = 0xfffd
          }
          buf[p++] = 0xe0 | (c >> 12)
          buf[p++] = 0x80 | ((c >> 6) & 0x3f)
          buf[p++] = 0x80 | (c & 0x3f)
        }
      }
      const bytes = p - start - 1
      if (bytes < 32) {
        buf[start] = 0xa0 | bytes
        this.pos = p
      } else {
        buf.copyWithin(start + 2, start + 1, p)
        buf[start] = 0xd9
        buf[start + 1] = bytes
        this.pos = p + 1
      }
      return
    }
    const max = len * 3
    if (this.pos + 5 + max > this.buf.length) this.grow(5 + max)
    const guess = max < 0x100 ? 2 : max < 0x10000 ? 3 : 5
    const start = this.pos
    const bytes = this.buf.utf8Write(s, start + guess)
    const header = bytes < 32 ? 1 : bytes < 0x100 ? 2 : bytes < 0x10000 ? 3 : 5
    if (header !== guess) {
      this.buf.copyWithin(start + header, start + guess, start + guess + bytes)
    }
    this.header(bytes, 0xa0, 0xd9, 0xda, 0xdb)
    this.pos = start + header + bytes
  }

  // A length header at `pos` (fix form when `fix` is given and len < 32/16).
  header(len, fix, m8, m16, m32) {
    const buf = this.buf
    const p = this.pos
    if (fix === 0xa0 ? len < 32 : fix !== 0 && len < 16) {
      buf[p] = fix | len
    } else if (m8 !== 0 && len < 0x100) {
      buf[p] = m8
      buf[p + 1] = len
    } else if (len < 0x10000) {
      buf[p] = m16
      buf[p + 1] = len >>> 8
      buf[p + 2] = len & 0xff
    } else if (len < TWO_32) {
      buf[p] = m32
      this.view.setUint32(p + 1, len)
    } else {
      throw new CodecError('encode', 'value longer than 4 GiB')
    }
  }

  bin(bytes) {
    const len = bytes.length
    if (this.pos + 5 + len > this.buf.length) this.grow(5 + len)
    this.header(len, 0, 0xc4, 0xc5, 0xc6)
    this.pos += len < 0x100 ? 2 : len < 0x10000 ? 3 : 5
    this.buf.set(bytes, this.pos)
    this.pos += len
  }

  object(o, depth) {
    if (Array.isArray(o)) {
      const n = o.length
      this.header(n, 0x90, 0, 0xdc, 0xdd)
      this.pos += n < 16 ? 1 : n < 0x10000 ? 3 : 5
      for (let i = 0; i < n; i++) this.value(o[i], depth + 1)
      return
    }
    if (o.constructor !== Object) {
      if (ArrayBuffer.isView(o)) {
        return this.bin(new Uint8Array(o.buffer, o.byteOffset, o.byteLength))
      }
      if (types.isArrayBuffer(o)) return this.bin(new Uint8Array(o))
      if (types.isDate(o)) return this.date(o.getTime())
    }
    const keys = Object.keys(o)
    // The header is sized for every key; properties that are skipped may shrink it after.
    const n = keys.length
    const start = this.pos
    const reserved = n < 16 ? 1 : n < 0x10000 ? 3 : 5
    this.pos += reserved
    let count = 0
    for (let i = 0; i < n; i++) {
      const key = keys[i]
      const item = o[key]
      const t = typeof item
      if (t === 'undefined' || t === 'function' || t === 'symbol') continue
      this.string(key)
      this.value(item, depth + 1)
      count++
    }
    const needed = count < 16 ? 1 : count < 0x10000 ? 3 : 5
    const end = this.pos
    if (needed !== reserved) {
      this.buf.copyWithin(start + needed, start + reserved, end)
    }
    this.pos = start
    this.header(count, 0x80, 0, 0xde, 0xdf)
    this.pos = end - reserved + needed
  }

  date(ms) {
    if (!Number.isFinite(ms)) throw new CodecError('encode', 'invalid Date')
    const secs = Math.floor(ms / 1000)
    const nanos = Math.min(Math.max(Math.round((ms - secs * 1000) * 1000000), 0), 999999999)
    if (this.pos + 15 > this.buf.length) this.grow(15)
    const buf = this.buf
    if (secs >= 0 && secs < 2 ** 34) {
      // (nanos << 34) | secs, as 64 bits: high word nanos << 2 | secs >> 32.
      const hi = nanos * 4 + Math.floor(secs / TWO_32)
      const lo = secs % TWO_32
      if (hi === 0) {
        buf[this.pos] = 0xd6
        buf[this.pos + 1] = 0xff
        this.view.setUint32(this.pos + 2, lo)
        this.pos += 6
      } else {
        buf[this.pos] = 0xd7
        buf[this.pos + 1] = 0xff
        this.view.setUint32(this.pos + 2, hi)
        this.view.setUint32(this.pos + 6, lo)
        this.pos += 10
      }
    } else {
      buf[this.pos] = 0xc7
      buf[this.pos + 1] = 12
      buf[this.pos + 2] = 0xff
      this.view.setUint32(this.pos + 3, nanos)
      this.view.setBigInt64(this.pos + 7, BigInt(secs))
      this.pos += 15
    }
  }
}

let shared = new Encoder()

// Calls `use(bytes)` with the MessagePack encoding of `value`; the bytes are only valid inside
// `use`. Re-entrant calls (a getter encoding something) get their own encoder.
function withEncoded(value, use) {
  const encoder = shared.busy ? new Encoder() : shared
  encoder.busy = true
  try {
    return use(encoder.encode(value))
  } finally {
    encoder.busy = false
    if (encoder === shared && encoder.buf.length > KEEP_BUFFER) shared = new Encoder()
  }
}

/** The MessagePack encoding of `value`, as a new Buffer. */
function encode(value) {
  return withEncoded(value, (bytes) => Buffer.from(bytes))
}

// ---------------------------------------------------------------------------------------------
// Decoding

class Decoder {
  constructor(bytes) {
    this.src = bytes
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length)
    this.pos = 0
    this.end = bytes.length
  }

  fail(message) {
    throw new CodecError('decode', message)
  }

  need(n) {
    if (this.pos + n > this.end) this.fail('truncated MessagePack')
  }

  value(depth) {
    if (depth > MAX_DEPTH) this.fail(`MessagePack nested deeper than ${MAX_DEPTH} levels`)
    if (this.pos >= this.end) this.fail('truncated MessagePack')
    const b = this.src[this.pos++]
    if (b < 0x80) return b
    if (b < 0x90) return this.map(b & 0x0f, depth)
    if (b < 0xa0) return this.array(b & 0x0f, depth)
    if (b < 0xc0) return this.str(b & 0x1f)
    if (b >= 0xe0) return b - 0x100
    return this.other(b, depth)
  }

  other(b, depth) {
    const view = this.view
    let n
    switch (b) {
      case 0xc0:
        return null
      case 0xc2:
        return false
      case 0xc3:
        return true
      case 0xc4:
      case 0xc5:
      case 0xc6:
        return this.bin(this.len(b - 0xc4))
      case 0xc7:
      case 0xc8:
      case 0xc9:
        n = this.len(b - 0xc7)
        return this.ext(n)
      case 0xca:
        this.need(4)
        this.pos += 4
        return view.getFloat32(this.pos - 4)
      case 0xcb:
        this.need(8)
        this.pos += 8
        return view.getFloat64(this.pos - 8)
      case 0xcc:
        this.need(1)
        return this.src[this.pos++]
      case 0xcd:
        this.need(2)
        this.pos += 2
        return view.getUint16(this.pos - 2)
      case 0xce:
        this.need(4)
        this.pos += 4
        return view.getUint32(this.pos - 4)
      case 0xcf:
        return this.uint64()
      case 0xd0:
        this.need(1)
        this.pos += 1
        return view.getInt8(this.pos - 1)
      case 0xd1:
        this.need(2)
        this.pos += 2
        return view.getInt16(this.pos - 2)
      case 0xd2:
        this.need(4)
        this.pos += 4
        return view.getInt32(this.pos - 4)
      case 0xd3:
        return this.int64()
      case 0xd4:
      case 0xd5:
      case 0xd6:
      case 0xd7:
      case 0xd8:
        return this.ext(1 << (b - 0xd4))
      case 0xd9:
      case 0xda:
      case 0xdb:
        return this.str(this.len(b - 0xd9))
      case 0xdc:
        return this.array(this.len(1), depth)
      case 0xdd:
        return this.array(this.len(2), depth)
      case 0xde:
        return this.map(this.len(1), depth)
      case 0xdf:
        return this.map(this.len(2), depth)
      default:
        return this.fail('invalid MessagePack byte 0xc1')
    }
  }

  // A length of 1, 2 or 4 bytes (`width` 0, 1, 2).
  len(width) {
    if (width === 0) {
      this.need(1)
      return this.src[this.pos++]
    }
    if (width === 1) {
      this.need(2)
      this.pos += 2
      return this.view.getUint16(this.pos - 2)
    }
    this.need(4)
    this.pos += 4
    return this.view.getUint32(this.pos - 4)
  }

  uint64() {
    this.need(8)
    const hi = this.view.getUint32(this.pos)
    const lo = this.view.getUint32(this.pos + 4)
    this.pos += 8
    if (hi < 0x200000) return hi * TWO_32 + lo
    return this.view.getBigUint64(this.pos - 8)
  }

  int64() {
    this.need(8)
    const hi = this.view.getInt32(this.pos)
    const lo = this.view.getUint32(this.pos + 4)
    this.pos += 8
    if (hi >= -0x200000 && hi < 0x200000) {
      const v = hi * TWO_32 + lo
      if (v >= -MAX_SAFE && v <= MAX_SAFE) return v
    }
    return this.view.getBigInt64(this.pos - 8)
  }

  str(n) {
    this.need(n)
    const src = this.src
    const start = this.pos
    this.pos += n
    if (n < 16) {
      // Short ASCII without leaving JavaScript.
      let out = ''
      for (let i = start; i < start + n; i++) {
        const c = src[i]
        if (c >= 0x80) return src.utf8Slice(start, start + n)
        out += String.fromCharCode(c)
      }
      return out
    }
    return src.utf8Slice(start, start + n)
  }

  bin(n) {
    this.need(n)
    const out = Buffer.allocUnsafe(n)
    this.src.copy(out, 0, this.pos, this.pos + n)
    this.pos += n
    return out
  }

  ext(n) {
    this.need(1)
    const kind = this.view.getInt8(this.pos)
    this.pos += 1
    this.need(n)
    const at = this.pos
    this.pos += n
    if (kind !== -1) this.fail(`unsupported MessagePack extension type ${kind}`)
    const view = this.view
    let secs
    let nanos
    if (n === 4) {
      secs = view.getUint32(at)
      nanos = 0
    } else if (n === 8) {
      const hi = view.getUint32(at)
      secs = (hi & 3) * TWO_32 + view.getUint32(at + 4)
      nanos = hi >>> 2
    } else if (n === 12) {
      nanos = view.getUint32(at)
      secs = Number(view.getBigInt64(at + 4))
    } else {
      this.fail(`timestamp extension of ${n} bytes`)
    }
    return new Date(secs * 1000 + nanos / 1000000)
  }

  array(n, depth) {
    // Every element takes at least one byte: a count beyond the input is a lie.
    if (n > this.end - this.pos) this.fail('array longer than its input')
    const out = new Array(n)
    for (let i = 0; i < n; i++) out[i] = this.value(depth + 1)
    return out
  }

  map(n, depth) {
    if (n > Math.floor((this.end - this.pos) / 2)) this.fail('map longer than its input')
    const out = {}
    for (let i = 0; i < n; i++) {
      const key = this.key()
      const item = this.value(depth + 1)
      if (key === '__proto__') {
        Object.defineProperty(out, key, { value: item, writable: true, enumerable: true, configurable: true })
      } else {
        out[key] = item
      }
    }
    return out
  }

  key() {
    this.need(1)
    const src = this.src
    const b = src[this.pos]
    let n
    if (b >= 0xa0 && b < 0xc0) {
      n = b & 0x1f
      this.pos += 1
    } else if (b >= 0xd9 && b <= 0xdb) {
      this.pos += 1
      n = this.len(b - 0xd9)
    } else if (b < 0x80 || b >= 0xe0 || (b >= 0xcc && b <= 0xd3) || b === 0xc2 || b === 0xc3) {
      return String(this.value(0))
    } else if (b === 0xc0) {
      this.pos += 1
      return 'null'
    } else if (b === 0xc1) {
      return this.fail('invalid MessagePack byte 0xc1')
    } else {
      return this.fail('map keys must be strings or numbers')
    }
    this.need(n)
    if (n > 24 || n === 0) return this.keyString(n)
    // Records repeat their keys: reuse the string made earlier for the same bytes.
    const start = this.pos
    const slot = (((n << 8) | src[start]) ^ (src[start + n - 1] << 4) ^ (src[start + (n >> 1)] << 9)) & (KEY_SLOTS - 1)
    const cached = keyCache[slot]
    if (cached !== undefined && cached.length === n) {
      const bytes = cached.bytes
      let i = 0
      while (i < n && bytes[i] === src[start + i]) i++
      if (i === n) {
        this.pos += n
        return cached.s
      }
    }
    const s = this.keyString(n)
    keyCache[slot] = { length: n, s, bytes: src.slice(start, start + n) }
    return s
  }

  keyString(n) {
    const start = this.pos
    const src = this.src
    for (let i = start; i < start + n; i++) {
      if (src[i] >= 0x80) {
        if (!isUtf8(src.subarray(start, start + n))) this.fail('map key is not UTF-8')
        break
      }
    }
    return this.str(n)
  }
}

/** The value of MessagePack `bytes` (exactly one value; throws a `decode` error otherwise). */
function decode(bytes) {
  const decoder = new Decoder(bytes)
  const value = decoder.value(0)
  if (decoder.pos !== decoder.end) decoder.fail('trailing bytes after the MessagePack value')
  return value
}

module.exports = { encode, decode, withEncoded, CodecError }
