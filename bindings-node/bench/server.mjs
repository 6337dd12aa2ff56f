// The far end of bench/run.mjs, in its own process: echo RPC, a raw sink, and a stream reader
// that reports how many bytes it consumed. Exits by itself when told `shutdown`.
//
//   node bench/server.mjs            listens on a loopback WebSocket, prints {"url"}
//   node bench/server.mjs webrtc     answers a WebRTC link: signals arrive as JSON lines on
//                                    stdin and leave as {"signal"} lines on stdout
import { createRequire } from 'node:module'
import { createInterface } from 'node:readline'

const require = createRequire(import.meta.url)
const { Identity, Node, WebRtcLink } = require('../index.js')
const webrtc = process.argv[2] === 'webrtc'

const node = new Node({ identity: Identity.generate(), userId: 'bench', deviceId: 'bench-server' })
node.expose('echo', (args) => args)
node.exposeRaw('sink', (data) => Buffer.from(String(data.length)))
const totals = new Map()
node.expose('streamTotal', async (name) => totals.get(name))
let link = null
node.expose('shutdown', () => {
  setImmediate(async () => {
    if (link) await link.close()
    await node.close()
  })
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
if (webrtc) {
  link = await WebRtcLink.create('answerer', { bindAddrs: ['127.0.0.1:0'] })
  link.onSignal((signal) => process.stdout.write(JSON.stringify({ signal }) + '\n'))
  const lines = createInterface({ input: process.stdin })
  lines.on('line', (line) => link.handleSignal(line).catch(() => {}))
  await link.connect(node)
  lines.close()
} else {
  const listener = await node.listen('127.0.0.1:0')
  process.stdout.write(JSON.stringify({ url: listener.url }) + '\n')
  while (await node.accept()) {}
}
