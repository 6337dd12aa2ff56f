// The far end of bench/run.mjs, in its own process: echo RPC, a raw sink, and a stream reader
// that reports how many bytes it consumed. Exits by itself when told `shutdown`.
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const { Identity, Node } = require('../index.js')

const node = new Node({ identity: Identity.generate(), userId: 'bench', deviceId: 'bench-server' })
node.expose('echo', (args) => args)
node.exposeRaw('sink', (data) => Buffer.from(String(data.length)))
const totals = new Map()
node.expose('streamTotal', async (name) => totals.get(name))
node.expose('shutdown', () => {
  setImmediate(() => node.close())
  return true
})
node.onConnection((connection) => {
  ;(async () => {
    for (;;) {
      const stream = await connection.acceptStream()
      if (!stream) return
      let total = 0
      const done = (async () => {
        for await (const chunk of stream) total += chunk.length
        return total
      })()
      totals.set(stream.name, done)
    }
  })()
})
const listener = await node.listen('127.0.0.1:0')
process.stdout.write(JSON.stringify({ url: listener.url }) + '\n')
while (await node.accept()) {}
