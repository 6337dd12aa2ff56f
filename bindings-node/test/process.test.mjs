// Two processes, and processes that must exit on their own.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { makeNode } from './helpers.mjs'

const fixture = (name) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url))
const EXIT_BOUND_MS = 20_000

/** Spawns a node script; resolves with its exit code, stdout and whether it exited in time. */
function run(script, args = []) {
  const child = spawn(process.execPath, [fixture(script), ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  let stdout = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (d) => (stdout += d))
  const exited = new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      resolve({ code: null, timedOut: true })
    }, EXIT_BOUND_MS)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, timedOut: false })
    })
  })
  return { child, exited, stdout: () => stdout }
}

test('two nodes in two processes: RPC both ways, bulk, and a server that exits by itself', async () => {
  const server = run('server.mjs')
  let line = ''
  for await (const chunk of server.child.stdout) {
    line += chunk
    if (line.includes('\n')) break
  }
  const { url } = JSON.parse(line)
  const client = makeNode()
  try {
    const connection = await client.dial(url)
    connection.expose('clientEcho', (value, ctx) => ({ echoed: value, from: ctx.connection.remote.deviceId }))
    assert.equal(await connection.call('add', [20, 22]), 42)
    const pid = await connection.call('pid')
    assert.equal(pid, server.child.pid)
    assert.notEqual(pid, process.pid)
    assert.deepEqual(await connection.call('relay', { n: 1 }), { echoed: { n: 1 }, from: 'server-device' })
    const size = 8 << 20
    assert.equal(String(await connection.callRaw('bulk', Buffer.alloc(size, 7))), String(size))
    assert.equal(await connection.call('shutdown'), 'bye')
    const reason = await connection.closed
    assert.equal(reason.code, 'closed_by_peer')
  } finally {
    await client.close()
  }
  const result = await server.exited
  assert.equal(result.timedOut, false, 'the server process did not exit by itself')
  assert.equal(result.code, 0)
})

for (const mode of ['close', 'open']) {
  test(`the process exits by itself (${mode === 'close' ? 'after closing everything' : 'with nodes and callbacks left open'})`, async () => {
    const child = run('exit-child.mjs', [mode])
    const result = await child.exited
    assert.equal(result.timedOut, false, 'the process did not exit by itself')
    assert.equal(result.code, 0)
    assert.equal(child.stdout(), 'hello exit test\n')
  })
}
