// 10,000 connections opened and closed: memory and sockets return to their level.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdirSync } from 'node:fs'
import v8 from 'node:v8'
import vm from 'node:vm'
import { makeNode } from './helpers.mjs'

const TOTAL = Number(process.env.PEERLINK_LEAK_CONNECTIONS || 10_000)
const PARALLEL = 16
const WARMUP = 500
// Bytes of RSS growth tolerated over the whole run after warm-up: a leak of 8 KiB per
// connection (a socket buffer, a task, a handler) over 9,500 connections would exceed it.
const RSS_BOUND = 80 << 20

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc')

const openFds = () => readdirSync('/proc/self/fd').length
const settle = async () => {
  for (let i = 0; i < 5; i++) {
    gc()
    await new Promise((r) => setTimeout(r, 50))
  }
}

async function waitFor(predicate, ms) {
  const deadline = Date.now() + ms
  while (!predicate() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
  return predicate()
}

test(`${TOTAL} connections opened and closed keep RSS and file descriptors bounded`, { timeout: 180_000 }, async () => {
  const server = makeNode()
  const client = makeNode()
  server.expose('ping', () => 'pong')
  const listener = await server.listen('127.0.0.1:0')
  // Drain the accept queue so that accepted connections are not held there.
  const accepting = (async () => {
    while ((await server.accept()) !== null) {}
  })()

  let done = 0
  async function churn(count) {
    const target = done + count
    const worker = async () => {
      while (done < target) {
        done += 1
        const connection = await client.dial(listener.url)
        assert.equal(await connection.call('ping'), 'pong')
        await connection.close()
      }
    }
    await Promise.all(Array.from({ length: PARALLEL }, worker))
  }

  try {
    await churn(WARMUP)
    assert.ok(await waitFor(() => server.connections().length === 0, 10_000))
    await settle()
    const baseRss = process.memoryUsage().rss
    const baseFds = openFds()

    await churn(TOTAL - WARMUP)
    // Closing really frees sockets: both ends drop their connections and descriptors.
    assert.ok(await waitFor(() => server.connections().length === 0 && client.connections().length === 0, 10_000), 'connections still registered')
    assert.ok(await waitFor(() => openFds() <= baseFds + 4, 10_000), `file descriptors: ${openFds()} vs ${baseFds} before`)
    await settle()
    const growth = process.memoryUsage().rss - baseRss
    console.log(`# ${done} connections; RSS growth after warm-up ${(growth / 1048576).toFixed(1)} MiB; fds ${openFds()} (baseline ${baseFds})`)
    assert.ok(growth < RSS_BOUND, `RSS grew by ${(growth / 1048576).toFixed(1)} MiB`)
  } finally {
    await client.close()
    await server.close()
    await accepting
  }
})
