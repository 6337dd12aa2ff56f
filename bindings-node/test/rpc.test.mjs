// Two nodes in one process: RPC both ways, values, errors with codes, trust, streams, events.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { Identity, makeNode, connectedPair, rejectsWithCode, peerlink, TrustLevel } from './helpers.mjs'

test('identity keys round-trip through the TweetNaCl secret-key format', () => {
  const id = Identity.generate()
  const again = Identity.fromSecretKey(id.secretKey)
  assert.equal(again.publicKey, id.publicKey)
  assert.equal(again.publicBoxKey, id.publicBoxKey)
  assert.equal(Buffer.from(id.secretKey, 'base64').length, 64)
  assert.ok(!String(id).includes(id.secretKey), 'toString must not reveal the secret key')
  assert.throws(() => Identity.fromSecretKey('not base64!'), (e) => e.code === 'invalid_identity')
})

test('RPC with JS handlers both ways', async () => {
  const pair = await connectedPair()
  try {
    pair.server.expose('add', async ([a, b], ctx) => {
      assert.equal(ctx.name, 'add')
      assert.equal(ctx.isNotify, false)
      assert.equal(ctx.connection.remote.deviceId, pair.client.deviceInfo.deviceId)
      return a + b
    })
    // The client exposes on its connection; the server calls it on the accepted connection.
    pair.connection.expose('whoami', () => ({ device: 'client' }))
    assert.equal(await pair.connection.call('add', [2, 3]), 5)
    assert.deepEqual(await pair.serverSide.call('whoami'), { device: 'client' })
    assert.equal(pair.connection.role, 'initiator')
    assert.equal(pair.serverSide.role, 'responder')
    assert.deepEqual(pair.connection.handshakeHash, pair.serverSide.handshakeHash)
    assert.equal(pair.connection.remote.publicKey, pair.server.publicKey)
    assert.equal(typeof (await pair.connection.ping()), 'number')
  } finally {
    await pair.close()
  }
})

test('values keep their types across the wire; Buffers stay Buffers', async () => {
  const pair = await connectedPair()
  try {
    pair.server.expose('echo', (x) => x)
    const value = {
      int: 42,
      neg: -7,
      float: 1.25,
      big: 2n ** 60n,
      negBig: -(2n ** 62n),
      str: 'héllo ✓',
      yes: true,
      nothing: null,
      buf: Buffer.from([0, 1, 2, 255]),
      date: new Date(1700000000123),
      list: [1, 'two', [3], { four: 4 }],
      nested: { deep: { deeper: { deepest: 'ok' } } },
      __proto__: { inherited: 'not sent' },
    }
    Object.defineProperty(value, '__proto__', { value: { polluted: true }, enumerable: true })
    const got = await pair.connection.call('echo', value)
    assert.ok(Buffer.isBuffer(got.buf))
    assert.deepEqual([...got.buf], [0, 1, 2, 255])
    assert.equal(got.big, 2n ** 60n)
    assert.equal(got.negBig, -(2n ** 62n))
    assert.equal(got.date.getTime(), 1700000000123)
    assert.deepEqual(got.list, value.list)
    assert.equal(got.str, value.str)
    assert.equal(got.inherited, undefined)
    assert.equal({}.polluted, undefined, 'a __proto__ key must not pollute prototypes')
    assert.deepEqual(Object.getOwnPropertyDescriptor(got, '__proto__').value, { polluted: true })
    assert.equal(await pair.connection.call('echo', undefined), null)
    const typed = await pair.connection.call('echo', new Uint16Array([1, 2]))
    assert.ok(Buffer.isBuffer(typed))
    assert.equal(typed.length, 4)
  } finally {
    await pair.close()
  }
})

test('errors are Errors with stable codes', async () => {
  const pair = await connectedPair({}, { callTimeoutMs: 200 })
  try {
    pair.server.expose('boom', () => {
      throw new Error('plain failure')
    })
    pair.server.expose('coded', async () => {
      const e = new Error('custom failure')
      e.code = 'E_CUSTOM'
      throw e
    })
    pair.server.expose('rejects', () => Promise.reject('a string'))
    pair.server.expose('slow', () => new Promise((resolve) => setTimeout(resolve, 2000, 'late')))
    pair.server.expose('cyclic', () => {
      const o = {}
      o.self = o
      return o
    })

    await rejectsWithCode(pair.connection.call('missing'), 'no_handler')
    let err = await rejectsWithCode(pair.connection.call('boom'), 'remote')
    assert.equal(err.remoteCode, 'handler')
    assert.equal(err.message, 'plain failure')
    err = await rejectsWithCode(pair.connection.call('coded'), 'remote')
    assert.equal(err.remoteCode, 'E_CUSTOM')
    err = await rejectsWithCode(pair.connection.call('rejects'), 'remote')
    assert.equal(err.message, 'a string')
    err = await rejectsWithCode(pair.connection.call('cyclic'), 'remote')
    assert.equal(err.remoteCode, 'encode')
    await rejectsWithCode(pair.connection.call('slow'), 'timeout')
    await rejectsWithCode(pair.connection.call('slow', null, { timeoutMs: 50 }), 'timeout')

    const cyclic = {}
    cyclic.self = cyclic
    await rejectsWithCode(pair.connection.call('boom', cyclic), 'encode')
    await rejectsWithCode(pair.client.dial('http://127.0.0.1:1'), 'invalid_url')
    await rejectsWithCode(pair.client.dial('ws://127.0.0.1:1'), 'connect_failed')

    await pair.connection.close('bye')
    err = await rejectsWithCode(pair.connection.call('boom'), 'closed')
    assert.equal(err.reason, 'closed_locally')
    assert.equal(pair.connection.isOpen, false)
    const reason = await pair.serverSide.closed
    assert.equal(reason.code, 'closed_by_peer')
  } finally {
    await pair.close()
  }
})

test('a trust callback that rejects refuses the link on both sides', async () => {
  const seen = []
  const server = makeNode({
    trust: async (device) => {
      seen.push(device.deviceId)
      return TrustLevel.Untrusted
    },
  })
  const client = makeNode()
  try {
    const listener = await server.listen('127.0.0.1:0')
    await rejectsWithCode(client.dial(listener.url), 'rejected_by_peer')
    assert.deepEqual(seen, [client.deviceInfo.deviceId])
    assert.equal(server.connections().length, 0)
  } finally {
    await client.close()
    await server.close()
  }
})

test('a throwing or malformed trust callback refuses the peer with a typed error', async () => {
  for (const trust of [
    () => {
      throw new Error('database down')
    },
    async () => {
      throw new Error('async failure')
    },
    () => 'not a number',
  ]) {
    const server = makeNode()
    const client = makeNode({ trust })
    try {
      const listener = await server.listen('127.0.0.1:0')
      await rejectsWithCode(client.dial(listener.url), 'untrusted')
    } finally {
      await client.close()
      await server.close()
    }
  }
})

test('the trust level reaches the connection', async () => {
  const pair = await connectedPair({ trust: () => TrustLevel.Known }, { trust: async () => 50 })
  try {
    assert.equal(pair.serverSide.trustLevel, 30)
    assert.equal(pair.connection.trustLevel, 50)
  } finally {
    await pair.close()
  }
})

test('notifications and connection events', async () => {
  const server = makeNode()
  const client = makeNode()
  try {
    const connected = []
    const closed = []
    server.onConnection((c) => connected.push(c.remote.deviceId))
    server.onConnectionClosed((id, reason) => closed.push([id, reason.code]))
    // A throwing event callback is contained.
    server.onConnection(() => {
      throw new Error('listener bug')
    })
    let notified
    const gotNotify = new Promise((resolve) => (notified = resolve))
    server.expose('note', (args, ctx) => notified([args, ctx.isNotify]))
    const listener = await server.listen('127.0.0.1:0')
    const connection = await client.dial(listener.url)
    await connection.notify('note', { hello: 'world' })
    assert.deepEqual(await gotNotify, [{ hello: 'world' }, true])
    assert.deepEqual(connected, [client.deviceInfo.deviceId])
    await connection.close()
    for (let i = 0; i < 100 && closed.length === 0; i++) await new Promise((r) => setTimeout(r, 20))
    assert.equal(closed.length, 1)
    assert.equal(closed[0][1], 'closed_by_peer')
  } finally {
    await client.close()
    await server.close()
  }
})

test('byte streams deliver Buffers in order with back-pressure', async () => {
  const pair = await connectedPair()
  try {
    const chunk = Buffer.alloc(1 << 20)
    const total = 24
    const received = (async () => {
      const stream = await pair.serverSide.acceptStream()
      assert.equal(stream.name, 'upload')
      let bytes = 0
      let index = 0
      for await (const part of stream) {
        assert.ok(Buffer.isBuffer(part))
        for (let i = 0; i < part.length; i += 4096) {
          // Each MiB is filled with its index: order is preserved.
          assert.equal(part[i], Math.floor((bytes + i) / chunk.length) % 256)
        }
        bytes += part.length
        index += 1
      }
      return bytes
    })()
    const stream = await pair.connection.openStream('upload')
    for (let i = 0; i < total; i++) {
      chunk.fill(i % 256)
      // Awaiting each write is the back-pressure: it resolves within the receiver's credit.
      await stream.write(chunk)
    }
    await stream.end()
    assert.equal(await received, total * chunk.length)
  } finally {
    await pair.close()
  }
})

test('a reader that stops resets the writer', async () => {
  const pair = await connectedPair()
  try {
    const reader = (async () => {
      const stream = await pair.serverSide.acceptStream()
      for await (const part of stream) {
        assert.ok(part.length > 0)
        break
      }
    })()
    const stream = await pair.connection.openStream('cancelled')
    const big = Buffer.alloc(1 << 20)
    // The writer goes on until the reader's reset reaches it; bounded by 64 MiB of writes.
    const writer = (async () => {
      for (let i = 0; i < 64; i++) await stream.write(big)
    })()
    await reader
    await rejectsWithCode(writer, 'stream_reset')
  } finally {
    await pair.close()
  }
})

test('a 64 MiB Buffer round-trips through call and callRaw', async () => {
  const pair = await connectedPair()
  try {
    const size = 64 << 20
    const big = Buffer.alloc(size)
    for (let i = 0; i < size; i += 4096) big.writeUInt32LE(i, i)
    pair.server.expose('echoBuf', (b) => b)
    pair.server.exposeRaw('echoRaw', (b) => b)
    // MessagePack adds a few bytes of header around the bin: still within the limit.
    const echoed = await pair.connection.call('echoBuf', big.subarray(0, size - 64))
    assert.ok(Buffer.isBuffer(echoed))
    assert.equal(echoed.length, size - 64)
    assert.ok(echoed.equals(big.subarray(0, size - 64)))
    const raw = await pair.connection.callRaw('echoRaw', big)
    assert.equal(raw.length, size)
    assert.ok(raw.equals(big))
    // Incompressible, so the size check sees the real size before anything is sent.
    const tooBig = randomBytes(size + (1 << 20))
    await rejectsWithCode(pair.connection.callRaw('echoRaw', tooBig), 'too_large')
    assert.ok(pair.connection.isOpen)
  } finally {
    await pair.close()
  }
})

test('the codec round-trips values from JS', () => {
  const value = { text: 'x'.repeat(5000), buf: Buffer.from('abc'), n: [1, 2, 3] }
  const encoded = peerlink.encodeMessage('bench', value)
  assert.ok(encoded.length < 1000, 'repetitive text is compressed')
  const { name, value: back } = peerlink.decodeMessage(encoded)
  assert.equal(name, 'bench')
  assert.deepEqual(back, value)
  assert.throws(() => peerlink.decodeMessage(Buffer.from([0, 1, 2])), (e) => e.code === 'decode')
})

test('Symbol.asyncDispose closes nodes and connections', async () => {
  const pair = await connectedPair()
  await pair.connection[Symbol.asyncDispose]()
  assert.equal(pair.connection.isOpen, false)
  await pair.client[Symbol.asyncDispose]()
  await pair.server[Symbol.asyncDispose]()
  assert.equal(pair.server.isClosed, true)
  await rejectsWithCode(pair.client.dial(pair.listener.url), 'node_closed')
  assert.equal(await pair.server.accept(), null)
})
