// Data channels with their own options and priority, ICE restart on request, connections over
// the signaling server's relay and hybrid connections with their path changes, trust levels.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { makeNode, peerlink, rejectsWithCode } from './helpers.mjs'
import { LOOPBACK, startSignalingServer, until, webrtcPair } from './webrtc-helpers.mjs'

const { Identity, SignalingClient, WebRtcDialer, TrustLevel } = peerlink

test('data channels: the peer sees each priority and option set, messages flow both ways', async () => {
  const [a, b] = [makeNode(), makeNode()]
  const pair = await webrtcPair(a, b)
  try {
    const priorities = ['very-low', 'low', 'medium', 'high']
    const made = []
    for (const priority of priorities) {
      made.push(await pair.offerer.createChannel(`ch-${priority}`, { priority }))
    }
    made.push(await pair.offerer.createChannel('default'))
    made.push(await pair.offerer.createChannel('lossy', { ordered: false, maxRetransmits: 0, priority: 'high' }))
    made.push(await pair.offerer.createChannel('timed', { maxPacketLifeTime: 500 }))
    // Channels opened on a running link may arrive in any order: pair them by label.
    const byLabel = new Map()
    for (let i = 0; i < made.length; i++) {
      const ch = await pair.answerer.acceptChannel()
      assert.ok(ch, 'the answerer receives every channel the offerer opened')
      byLabel.set(ch.label, ch)
    }
    const seen = made.map((c) => byLabel.get(c.label))
    assert.ok(seen.every(Boolean), `the answerer got ${[...byLabel.keys()]}`)
    assert.deepEqual(made.map((c) => c.priority), [...priorities, 'low', 'high', 'low'])
    assert.deepEqual(seen.map((c) => c.priority), made.map((c) => c.priority), 'the peer reads the priority set here')

    for (const [mine, theirs] of made.map((c, i) => [c, seen[i]])) {
      await mine.opened()
      await theirs.opened()
      assert.ok(mine.maxMessageSize >= 65536)
      await mine.send(Buffer.from(`to ${mine.label}`))
      assert.equal((await theirs.recv()).toString(), `to ${mine.label}`)
      await theirs.send(new Uint8Array([1, 2, 3]))
      assert.deepEqual([...(await mine.recv())], [1, 2, 3])
      assert.equal(typeof (await mine.bufferedAmount()), 'number')
    }

    // The answerer may open one too; the offerer accepts it.
    const back = await pair.answerer.createChannel('from-answerer', { priority: 'medium' })
    const got = await pair.offerer.acceptChannel()
    assert.equal(got.label, 'from-answerer')
    assert.equal(got.priority, 'medium')
    await back.opened()
    await back.send(Buffer.alloc(32 * 1024, 7))
    assert.equal((await got.recv()).length, 32 * 1024)

    // The peerlink connection carries on beside the channels.
    b.expose('echo', (x) => x)
    assert.equal(await pair.a.call('echo', 'still here'), 'still here')

    // Closing a channel ends its reader; the link stays up.
    await made[0].close()
    assert.equal(await seen[0].recv(), null)
    assert.equal(await pair.a.call('echo', 1), 1)

    // After the link closes, acceptChannel resolves with null.
    await pair.offerer.close()
    assert.equal(await pair.offerer.acceptChannel(), null)
  } finally {
    await pair.offerer.close()
    await pair.answerer.close()
    await a.close()
    await b.close()
  }
})

test('bad channel options are typed errors', async () => {
  const [a, b] = [makeNode(), makeNode()]
  const pair = await webrtcPair(a, b)
  try {
    await rejectsWithCode(pair.offerer.createChannel('x', { priority: 'urgent' }), 'invalid_argument')
    await rejectsWithCode(pair.offerer.createChannel('x', { maxRetransmits: 1, maxPacketLifeTime: 1 }), 'invalid_argument')
    await rejectsWithCode(pair.offerer.createChannel('x', { maxRetransmits: 70000 }), 'invalid_argument')
    await rejectsWithCode(pair.offerer.createChannel('peerlink'), 'invalid_argument')
  } finally {
    await pair.offerer.close()
    await pair.answerer.close()
    await a.close()
    await b.close()
  }
})

test('ICE restart on request, from either side: the connection carries on', async () => {
  const [a, b] = [makeNode(), makeNode()]
  const pair = await webrtcPair(a, b)
  try {
    b.expose('echo', (x) => x)
    assert.equal(pair.offerer.iceRestarts, 0)
    await pair.offerer.restartIce()
    assert.equal(pair.offerer.iceRestarts, 1)
    assert.equal(await pair.a.call('echo', 'after restart'), 'after restart')
    // One restart at a time: the offerer ignores requests until the restart's answer is in.
    await until(() => pair.applied.offerer.filter((t) => t === 'answer').length === 2, 10_000, 'the restart answer')
    // The answerer asks the offerer, which restarts.
    await pair.answerer.restartIce()
    assert.equal(pair.answerer.iceRestarts, 1)
    await until(() => pair.offerer.iceRestarts === 2, 10_000, 'the offerer restarting for the answerer')
    await until(() => pair.offerer.state === 'connected', 10_000, 'connected again')
    assert.equal(await pair.a.call('echo', 'twice'), 'twice')
    assert.equal(pair.a.isOpen, true)
    assert.equal((await pair.a.path()).iceRestarts >= 1, true)
    await pair.offerer.close()
    await rejectsWithCode(pair.offerer.restartIce(), 'closed')
  } finally {
    await pair.offerer.close()
    await pair.answerer.close()
    await a.close()
    await b.close()
  }
})

/** Two nodes with signaling clients and dialers on `server`. */
async function signalingPeers(server, options) {
  const peers = []
  for (const name of ['alice', 'bob']) {
    const identity = Identity.generate()
    const node = makeNode({ identity })
    const { deviceId, userId } = node.deviceInfo
    const client = await SignalingClient.connect({ urls: [server.url], identity, userId, deviceId })
    const dialer = new WebRtcDialer(client, { webrtc: LOOPBACK, ...options })
    peers.push({ name, node, dialer, deviceId })
  }
  return peers
}

test('connect through the signaling server relay', async () => {
  const server = await startSignalingServer()
  const peers = await signalingPeers(server, { acceptRelay: true })
  const [alice, bob] = peers
  try {
    bob.node.expose('who', (_, ctx) => ctx.connection.transportKind)
    const accepted = bob.dialer.accept(bob.node)
    const a = await alice.dialer.connectRelay(alice.node, bob.deviceId)
    const b = await accepted
    assert.equal(a.transportKind, 'relay')
    assert.equal(b.transportKind, 'relay')
    assert.equal(a.remote.deviceId, bob.deviceId)
    assert.equal(b.remote.deviceId, alice.deviceId)
    assert.equal(await a.call('who'), 'relay')
    assert.equal((await a.path()).kind, 'relay')
    // The server has no such device: the same code as a WebRTC dial.
    await rejectsWithCode(alice.dialer.connectRelay(alice.node, 'nobody-here'), 'target_offline')
  } finally {
    for (const p of peers) {
      await p.dialer.close()
      await p.node.close()
    }
    await server.stop()
  }
})

test('hybrid: relay at once, WebRTC when it opens, back to the relay when WebRTC dies; path events', async () => {
  const server = await startSignalingServer()
  const peers = await signalingPeers(server, { acceptRelay: true })
  const [alice, bob] = peers
  try {
    bob.node.expose('who', (_, ctx) => ctx.connection.transportKind)
    // The accepting side keeps an acceptHybrid() pending: that is when the WebRTC links of
    // peers it already has are attached to their hybrid connections.
    const accepted = []
    const acceptLoop = (async () => {
      for (let i = 0; i < 10; i++) {
        const next = await bob.dialer.acceptHybrid(bob.node)
        if (!next) return
        accepted.push(next)
      }
    })()
    // One WebRTC attempt: once it dies, the connection stays on the relay.
    const h = await alice.dialer.connectHybrid(alice.node, bob.deviceId, { retryDelayMs: 100, maxWebrtcAttempts: 1 })
    const events = []
    h.onEvent((e) => events.push(e))
    const paths = () => events.filter((e) => e.type === 'path').map((e) => e.path)
    assert.ok(h.relay, 'the dialling side has a relay connection')
    assert.equal(h.relay.transportKind, 'relay')
    assert.equal(h.remote.deviceId, bob.deviceId)
    await until(() => accepted.length === 1, 10_000, 'the accepted hybrid connection')
    const hb = accepted[0]
    assert.equal(hb.remote.deviceId, alice.deviceId)

    assert.equal(await h.waitForPath('webrtc', 20_000), true)
    assert.equal(h.path, 'webrtc')
    assert.equal(h.current.transportKind, 'webrtc')
    assert.equal(await h.current.call('who'), 'webrtc')
    await until(() => paths().includes('webrtc'), 5_000, 'the webrtc path event')
    // The accepting side's hybrid connection moves too.
    assert.equal(await hb.waitForPath('webrtc', 10_000), true)

    await h.webrtc.close('test')
    assert.equal(await h.waitForPath('relay', 10_000), true)
    await until(() => paths().length === 2, 5_000, 'the relay path event')
    assert.deepEqual(paths(), ['webrtc', 'relay'])
    assert.ok(events.some((e) => e.type === 'webrtcClosed'), 'the webrtcClosed event')
    assert.equal(h.webrtc, null)
    assert.equal(await h.current.call('who'), 'relay')
    assert.equal(h.isOpen, true)

    await rejectsWithCode(h.waitForPath('carrier-pigeon', 10), 'invalid_argument')
    // A dialer that accepts hybrid connections no longer accepts plain ones.
    await rejectsWithCode(bob.dialer.accept(bob.node), 'invalid_state')
    await h.close()
    assert.equal(h.isOpen, false)
    await bob.dialer.close()
    await acceptLoop
    assert.equal(accepted.length, 1, 'one peer, one hybrid connection')
  } finally {
    for (const p of peers) {
      await p.dialer.close()
      await p.node.close()
    }
    await server.stop()
  }
})

test('trust levels carry the Rust names', () => {
  assert.deepEqual(TrustLevel, {
    Malicious: -20,
    Untrusted: -10,
    Unknown: 0,
    NewUser: 10,
    NewDevice: 20,
    Known: 30,
    Trusted: 50,
    Self: 100,
  })
  assert.ok(Object.isFrozen(TrustLevel))
})

test('the ES module entry exports the WebRTC, signaling and manager classes', async () => {
  const esm = await import('../index.mjs')
  for (const name of ['WebRtcLink', 'DataChannel', 'SignalingClient', 'WebRtcDialer', 'HybridConnection', 'ConnectionManager', 'TrustLevel']) {
    assert.ok(esm[name], `${name} is exported`)
    assert.equal(esm[name], peerlink[name])
  }
})
