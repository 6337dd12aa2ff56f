// Shared helpers for the addon tests.
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
export const peerlink = require('../index.js')
export const { Identity, Node, TrustLevel } = peerlink

let counter = 0

/** A node with a fresh identity and unique ids. */
export function makeNode(options = {}) {
  counter += 1
  return new Node({
    identity: Identity.generate(),
    userId: `user-${process.pid}-${counter}`,
    deviceId: `device-${process.pid}-${counter}`,
    ...options,
  })
}

/** A listening server node and a client connected to it; `close()` closes both. */
export async function connectedPair(serverOptions = {}, clientOptions = {}) {
  const server = makeNode(serverOptions)
  const client = makeNode(clientOptions)
  const listener = await server.listen('127.0.0.1:0')
  const accepted = server.accept()
  const connection = await client.dial(listener.url)
  const serverSide = await accepted
  return {
    server,
    client,
    listener,
    connection,
    serverSide,
    async close() {
      await client.close()
      await server.close()
    },
  }
}

/** Rejects with `err.code` checked against `code`. */
export async function rejectsWithCode(promise, code) {
  try {
    await promise
  } catch (err) {
    if (!(err instanceof Error)) throw new Error(`rejected with a non-Error: ${err}`)
    if (err.code !== code) throw new Error(`expected code ${code}, got ${err.code}: ${err.message}`)
    return err
  }
  throw new Error(`expected a rejection with code ${code}`)
}
