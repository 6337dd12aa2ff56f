// One ISocket conformance suite, run against the peerlink adapter and the in-memory reference.
import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { connectedPair } from './helpers.mjs'

const require = createRequire(import.meta.url)
const { createMemorySocketPair, toISocket } = require('../isocket.js')

function emit(socket, event, args) {
  return new Promise((resolve) => socket.emit(event, args, (err, result) => resolve({ err, result })))
}

const implementations = {
  'in-memory reference': async () => {
    const [a, b] = createMemorySocketPair()
    return { a, b, close: async () => {} }
  },
  'peerlink adapter': async () => {
    const pair = await connectedPair()
    return { a: toISocket(pair.connection), b: toISocket(pair.serverSide), close: () => pair.close() }
  },
}

for (const [name, make] of Object.entries(implementations)) {
  describe(`ISocket conformance: ${name}`, () => {
    test('has a string id and is connected', async () => {
      const { a, b, close } = await make()
      try {
        assert.equal(typeof a.id, 'string')
        assert.ok(a.id.length > 0)
        assert.equal(a.connected, true)
        assert.equal(b.connected, true)
      } finally {
        await close()
      }
    })

    test('emit reaches the peer handler and the callback gets its answer, both ways', async () => {
      const { a, b, close } = await make()
      try {
        b.on('sum', (args, callback) => callback(null, args.x + args.y))
        a.on('upper', async (args) => args.toUpperCase())
        assert.deepEqual(await emit(a, 'sum', { x: 2, y: 40 }), { err: null, result: 42 })
        assert.deepEqual(await emit(b, 'upper', 'peers'), { err: null, result: 'PEERS' })
      } finally {
        await close()
      }
    })

    test('values arrive equal; Buffers arrive as Buffers', async () => {
      const { a, b, close } = await make()
      try {
        b.on('echo', (args, callback) => callback(null, args))
        const value = { list: [1, 'two', null, true], nested: { n: -3.5 }, data: Buffer.from([9, 8, 7]) }
        const { err, result } = await emit(a, 'echo', value)
        assert.equal(err, null)
        assert.ok(Buffer.isBuffer(result.data))
        assert.deepEqual(result, value)
        assert.deepEqual((await emit(a, 'echo', { skip: undefined, keep: 1 })).result, { keep: 1 })
      } finally {
        await close()
      }
    })

    test('a missing handler answers no_handler', async () => {
      const { a, close } = await make()
      try {
        const { err } = await emit(a, 'nobody-home', {})
        assert.ok(err instanceof Error)
        assert.equal(err.code, 'no_handler')
      } finally {
        await close()
      }
    })

    test('handler errors reach the caller as remote errors with the handler code', async () => {
      const { a, b, close } = await make()
      try {
        b.on('fails', (args, callback) => callback(Object.assign(new Error('denied'), { code: 'E_DENIED' })))
        b.on('throws', () => {
          throw new Error('oops')
        })
        let { err } = await emit(a, 'fails', {})
        assert.equal(err.code, 'remote')
        assert.equal(err.remoteCode, 'E_DENIED')
        assert.equal(err.message, 'denied')
        ;({ err } = await emit(a, 'throws', {}))
        assert.equal(err.code, 'remote')
        assert.equal(err.remoteCode, 'handler')
        assert.equal(err.message, 'oops')
      } finally {
        await close()
      }
    })

    test('removeAllListeners drops the handler', async () => {
      const { a, b, close } = await make()
      try {
        b.on('temp', (args, callback) => callback(null, 'here'))
        assert.equal((await emit(a, 'temp', null)).result, 'here')
        b.removeAllListeners('temp')
        assert.equal((await emit(a, 'temp', null)).err.code, 'no_handler')
      } finally {
        await close()
      }
    })

    test('disconnect closes both sides and later emits fail with closed', async () => {
      const { a, b, close } = await make()
      try {
        const peerSaw = new Promise((resolve) => b.on('disconnect', resolve))
        await a.disconnect()
        assert.equal(a.connected, false)
        assert.equal(await peerSaw, 'closed_by_peer')
        assert.equal(b.connected, false)
        assert.equal((await emit(a, 'anything', null)).err.code, 'closed')
        assert.equal((await emit(b, 'anything', null)).err.code, 'closed')
      } finally {
        await close()
      }
    })

    test('every callback is called exactly once', async () => {
      const { a, b, close } = await make()
      try {
        b.on('twice', (args, callback) => {
          callback(null, 1)
          callback(null, 2)
        })
        let calls = 0
        await new Promise((resolve) =>
          a.emit('twice', null, (err, result) => {
            calls += 1
            assert.equal(result, 1)
            setTimeout(resolve, 50)
          }),
        )
        assert.equal(calls, 1)
      } finally {
        await close()
      }
    })
  })
}
