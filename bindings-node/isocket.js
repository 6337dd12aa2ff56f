'use strict'
// ISocket for peers-sdk: the socket shape its Connection is written against, on top of a
// peerlink Connection, plus a small in-memory reference implementation of the same contract.
//
// The contract (what the conformance suite in test/ checks against both):
// - `emit(event, args, callback)` calls the peer's handler for `event` with `args` and calls
//   `callback(err, result)` exactly once. `err` is an `Error` with a string `code`:
//   `no_handler` (peer has no handler), `remote` (the handler failed; `err.remoteCode` is the
//   handler error's own `code` or `handler`), `closed` (the socket is disconnected), `timeout`.
// - `on(event, handler)` registers `handler(args, callback)`; the handler answers through
//   `callback(err, result)` (or by returning a promise). `on('disconnect', fn)` is told when the
//   link closes.
// - `removeAllListeners(event?)` drops the handler(s).
// - `disconnect()` closes the link; `connected` turns false on both sides.
// - Buffers arrive as Buffers; plain objects, arrays, numbers, strings, booleans and null
//   arrive equal.

const { EventEmitter } = require('node:events')

function codedError(code, message, extra) {
  const err = new Error(message)
  err.code = code
  return Object.assign(err, extra)
}

// Turns a Node-style handler `(args, callback)` into an async function; a handler may also
// return a promise (or a value) instead of calling back.
function promisifyHandler(handler) {
  return (args) =>
    new Promise((resolve, reject) => {
      let settled = false
      const callback = (err, result) => {
        if (settled) return
        settled = true
        if (err) reject(err instanceof Error ? err : codedError('handler', String(err)))
        else resolve(result)
      }
      try {
        const returned = handler(args, callback)
        if (returned && typeof returned.then === 'function') {
          returned.then((v) => callback(null, v), (e) => callback(e || new Error('handler failed')))
        }
      } catch (e) {
        callback(e)
      }
    })
}

function once(callback) {
  let called = false
  return (err, result) => {
    if (called || typeof callback !== 'function') return
    called = true
    callback(err, result)
  }
}

/**
 * An ISocket over a peerlink `Connection`.
 */
class PeerlinkSocket {
  /**
   * @param {import('./index').Connection} connection
   * @param {{ timeoutMs?: number }} [options]
   */
  constructor(connection, options = {}) {
    this.connection = connection
    this.options = options
    this.id = String(connection.id)
    this._events = new Set()
    this._disconnectHandlers = []
    this._watching = false
  }

  get connected() {
    return this.connection.isOpen
  }

  emit(event, args, callback) {
    const done = once(callback)
    if (!this.connection.isOpen) {
      queueMicrotask(() => done(codedError('closed', 'socket is disconnected')))
      return
    }
    const options = this.options.timeoutMs ? { timeoutMs: this.options.timeoutMs } : undefined
    this.connection.call(event, args === undefined ? null : args, options).then(
      (result) => done(null, result),
      (err) => done(err),
    )
  }

  on(event, handler) {
    if (event === 'disconnect') {
      this._disconnectHandlers.push(handler)
      this._watchClose()
      return this
    }
    this.connection.expose(event, promisifyHandler(handler))
    this._events.add(event)
    return this
  }

  removeAllListeners(event) {
    const events = event === undefined ? [...this._events, 'disconnect'] : [event]
    for (const e of events) {
      if (e === 'disconnect') {
        this._disconnectHandlers = []
        continue
      }
      this.connection.unexpose(e)
      this._events.delete(e)
    }
    return this
  }

  disconnect() {
    const closing = this.connection.close('disconnect')
    this._events.clear()
    return closing
  }

  // The close watch is a pending promise, which keeps the process alive while the link is
  // open: it is only started when someone listens for 'disconnect'.
  _watchClose() {
    if (this._watching) return
    this._watching = true
    this.connection.closed.then((reason) => {
      for (const handler of this._disconnectHandlers.splice(0)) {
        try {
          handler(reason.code)
        } catch (e) {
          queueMicrotask(() => {
            throw e
          })
        }
      }
    })
  }
}

// Copies a value the way MessagePack would carry it: Buffers stay Buffers, typed arrays become
// Buffers, undefined object members vanish.
function wireCopy(value, depth = 0) {
  if (depth > 128) throw codedError('encode', 'value nested too deeply (or cyclic)')
  if (value === undefined || value === null) return null
  if (Buffer.isBuffer(value)) return Buffer.from(value)
  if (ArrayBuffer.isView(value)) return Buffer.from(value.buffer.slice(value.byteOffset, value.byteOffset + value.byteLength))
  if (value instanceof ArrayBuffer) return Buffer.from(value.slice(0))
  if (value instanceof Date) return new Date(value.getTime())
  if (Array.isArray(value)) return value.map((v) => (typeof v === 'function' || typeof v === 'symbol' ? null : wireCopy(v, depth + 1)))
  if (typeof value === 'object') {
    const out = {}
    for (const key of Object.keys(value)) {
      const v = value[key]
      if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue
      Object.defineProperty(out, key, { value: wireCopy(v, depth + 1), enumerable: true, writable: true, configurable: true })
    }
    return out
  }
  if (typeof value === 'function' || typeof value === 'symbol') return null
  return value
}

let memoryIds = 0

/**
 * The in-memory reference ISocket: one end of a pair made by `createMemorySocketPair()`.
 */
class MemorySocket {
  constructor() {
    this.id = `memory-${++memoryIds}`
    this.peer = null
    this._handlers = new Map()
    this._connected = true
    this._closeEvents = new EventEmitter()
  }

  get connected() {
    return this._connected
  }

  emit(event, args, callback) {
    const done = once(callback)
    const peer = this.peer
    let copied
    try {
      copied = wireCopy(args)
    } catch (e) {
      queueMicrotask(() => done(e))
      return
    }
    setImmediate(() => {
      if (!this._connected || !peer || !peer._connected) {
        done(codedError('closed', 'socket is disconnected'))
        return
      }
      const handler = peer._handlers.get(event)
      if (!handler) {
        done(codedError('no_handler', `no handler for ${JSON.stringify(event)}`))
        return
      }
      handler(copied).then(
        (result) => {
          if (!this._connected) return done(codedError('closed', 'socket is disconnected'))
          let reply
          try {
            reply = wireCopy(result)
          } catch (e) {
            return done(codedError('remote', e.message, { remoteCode: 'encode' }))
          }
          done(null, reply)
        },
        (err) => {
          const remoteCode = err && typeof err.code === 'string' ? err.code : 'handler'
          done(codedError('remote', (err && err.message) || String(err), { remoteCode }))
        },
      )
    })
  }

  on(event, handler) {
    if (event === 'disconnect') {
      this._closeEvents.on('disconnect', handler)
      return this
    }
    this._handlers.set(event, promisifyHandler(handler))
    return this
  }

  removeAllListeners(event) {
    if (event === undefined) {
      this._handlers.clear()
      this._closeEvents.removeAllListeners()
    } else if (event === 'disconnect') {
      this._closeEvents.removeAllListeners('disconnect')
    } else {
      this._handlers.delete(event)
    }
    return this
  }

  disconnect() {
    for (const side of [this, this.peer]) {
      if (side && side._connected) {
        side._connected = false
        const code = side === this ? 'closed_locally' : 'closed_by_peer'
        setImmediate(() => side._closeEvents.emit('disconnect', code))
      }
    }
    return Promise.resolve()
  }
}

/** Two connected in-memory ISockets. */
function createMemorySocketPair() {
  const a = new MemorySocket()
  const b = new MemorySocket()
  a.peer = b
  b.peer = a
  return [a, b]
}

/** Wraps a peerlink `Connection` as an ISocket. */
function toISocket(connection, options) {
  return new PeerlinkSocket(connection, options)
}

module.exports = { PeerlinkSocket, MemorySocket, createMemorySocketPair, toISocket }
