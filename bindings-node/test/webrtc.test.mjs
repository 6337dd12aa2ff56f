// WebRTC with signals carried by JS, connections by device id through a signaling server, and
// the connection manager's events.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { makeNode, peerlink, rejectsWithCode } from './helpers.mjs'
import { LOOPBACK, WebRtcLink, startSignalingServer, until, webrtcPair } from './webrtc-helpers.mjs'

const { Identity, SignalingClient, WebRtcDialer, ConnectionManager } = peerlink

test('two nodes over WebRTC with signals passed in JS: RPC both ways, states, close', async () => {
  const alice = makeNode()
  const bob = makeNode()
  try {
    bob.expose('add', ([x, y]) => x + y)
    const pair = await webrtcPair(alice, bob)
    assert.equal(pair.offerer.role, 'offerer')
    assert.equal(pair.answerer.role, 'answerer')
    assert.equal(pair.offerer.state, 'connected')
    assert.equal(pair.a.transportKind, 'webrtc')
    assert.equal(pair.b.transportKind, 'webrtc')
    assert.equal(pair.a.remote.deviceId, bob.deviceInfo.deviceId)
    assert.equal(pair.b.remote.deviceId, alice.deviceInfo.deviceId)
    assert.deepEqual(pair.a.handshakeHash, pair.b.handshakeHash)
    // The path report names the selected candidate pair (loopback host candidates here).
    const path = await pair.a.path()
    assert.equal(path.kind, 'webrtc')
    assert.equal(path.local?.address, '127.0.0.1')
    assert.equal(path.remote?.address, '127.0.0.1')
    assert.equal(path.local.candidateType, 'host')
    assert.equal(path.local.protocol, 'udp')
    // Not relayed: no TURN server leg to report.
    assert.equal(path.local.relayProtocol ?? null, null, JSON.stringify(path))
    assert.equal(path.remote.relayProtocol ?? null, null, JSON.stringify(path))
    assert.ok(path.bytesSent > 0 && path.packetsReceived > 0, JSON.stringify(path))
    assert.ok(pair.states.offerer.includes('connected'), `offerer states: ${pair.states.offerer}`)
    assert.ok(pair.states.answerer.includes('connected'), `answerer states: ${pair.states.answerer}`)
    assert.equal(pair.signals.offerer[0], 'offer')
    assert.equal(pair.signals.answerer[0], 'answer')
    pair.b.expose('whoami', (_, ctx) => ctx.connection.remote.deviceId)
    assert.equal(await pair.a.call('add', [40, 2]), 42)
    assert.equal(await pair.b.call('whoami').catch((e) => e.code), 'no_handler')
    pair.a.expose('whoami', () => 'alice here')
    assert.equal(await pair.b.call('whoami'), 'alice here')
    // A multi-megabyte argument crosses many data-channel messages.
    const big = Buffer.alloc(3 << 20, 9)
    bob.exposeRaw('len', (data) => Buffer.from(String(data.length)))
    assert.equal(String(await pair.a.callRaw('len', big)), String(big.length))
    await rejectsWithCode(pair.offerer.connect(alice), 'invalid_state')
    await pair.offerer.close()
    const reason = await pair.b.closed
    assert.ok(reason.code, 'the peer sees the link close')
    assert.equal(pair.a.isOpen, false)
    assert.equal(pair.offerer.state, 'closed')
    await pair.answerer.close()
  } finally {
    await alice.close()
    await bob.close()
  }
})

test('bad WebRTC options and signals are typed errors', async () => {
  await rejectsWithCode(WebRtcLink.create('sideways', LOOPBACK), 'invalid_argument')
  await rejectsWithCode(WebRtcLink.create('offerer', { iceTransportPolicy: 'some' }), 'invalid_argument')
  await rejectsWithCode(WebRtcLink.create('offerer', { bindAddrs: ['nowhere'] }), 'invalid_argument')
  await rejectsWithCode(
    WebRtcLink.create('offerer', { iceServers: [{ urls: ['http://example.invalid'] }] }),
    'invalid_argument',
  )
  // TURN servers take a username and credential; the relay policy accepts them.
  const relay = await WebRtcLink.create('offerer', {
    ...LOOPBACK,
    iceTransportPolicy: 'relay',
    iceServers: [{ urls: ['turn:127.0.0.1:3478'], username: 'u', credential: 'secret' }],
  })
  await relay.close()
  const link = await WebRtcLink.create('answerer', LOOPBACK)
  try {
    await rejectsWithCode(link.handleSignal('{"type":"offer"'), 'malformed_signal')
    await rejectsWithCode(link.handleSignal('{"type":"answer","sdp":"v=0"}'), 'unexpected_signal')
  } finally {
    await link.close()
  }
})

test('connect by device id through a signaling server: RPC both ways, room events', async () => {
  const server = await startSignalingServer()
  const made = []
  try {
    const peers = []
    for (const name of ['alice', 'bob']) {
      const identity = Identity.generate()
      const node = makeNode({ identity })
      const { deviceId, userId } = node.deviceInfo
      const client = await SignalingClient.connect({ urls: [server.url], identity, userId, deviceId })
      const dialer = new WebRtcDialer(client, { webrtc: LOOPBACK })
      const events = []
      dialer.onEvent((e) => events.push(e))
      made.push(node, dialer)
      peers.push({ name, node, client, dialer, deviceId, events })
    }
    const [alice, bob] = peers
    assert.equal(alice.client.isConnected, true)
    assert.deepEqual(await alice.client.join('room'), [])
    const members = await bob.client.join('room')
    assert.deepEqual(members.map((m) => m.deviceId), [alice.deviceId])
    assert.equal(members[0].publicKey, alice.node.publicKey)
    await until(() => alice.events.some((e) => e.type === 'joined' && e.member.deviceId === bob.deviceId), 10_000, 'joined event')
    // A second dialer on the same client is refused.
    assert.throws(() => new WebRtcDialer(alice.client), (e) => e.code === 'invalid_state')

    bob.node.expose('greet', (name, ctx) => `hello ${name} from ${ctx.connection.remote.deviceId}`)
    const accepted = bob.dialer.accept(bob.node)
    const a = await alice.dialer.connect(alice.node, bob.deviceId)
    const b = await accepted
    assert.equal(a.transportKind, 'webrtc')
    assert.equal(a.remote.deviceId, bob.deviceId)
    assert.equal(b.remote.deviceId, alice.deviceId)
    assert.equal(await a.call('greet', 'x'), `hello x from ${alice.deviceId}`)
    b.expose('back', (n) => n * 2)
    assert.equal(await b.call('ping').catch((e) => e.code), 'no_handler')
    a.expose('ping', () => 'pong')
    assert.equal(await b.call('ping'), 'pong')
    assert.equal(await a.call('back', 21), 42)

    // An unknown device id fails with the server's code.
    await rejectsWithCode(alice.dialer.connect(alice.node, 'nobody-here'), 'target_offline')
    await bob.client.leave('room')
    await until(() => alice.events.some((e) => e.type === 'left' && e.deviceId === bob.deviceId), 10_000, 'left event')
  } finally {
    for (const thing of made) await thing.close()
    await server.stop()
  }
})

test('a signaling client with a bad URL fails with a code', async () => {
  const identity = Identity.generate()
  await rejectsWithCode(
    SignalingClient.connect({ urls: ['http://127.0.0.1:1/ws'], identity, userId: 'u', deviceId: 'd' }),
    'invalid_url',
  )
  await rejectsWithCode(
    SignalingClient.connect({ urls: ['ws://127.0.0.1:1/ws'], identity, userId: 'u', deviceId: 'd', connectTimeoutMs: 2000 }),
    'connect_failed',
  )
})

test('manager: added and removed events, calls by device id', async () => {
  const identities = [Identity.generate(), Identity.generate()]
  const [server, client] = identities.map((identity) => makeNode({ identity }))
  const managers = []
  try {
    const events = [[], []]
    const [serverManager, clientManager] = [server, client].map((node, i) => {
      const { userId, deviceId } = node.deviceInfo
      const m = new ConnectionManager(node, identities[i], { userId, deviceId })
      m.onEvent((e) => events[i].push(e))
      managers.push(m)
      return m
    })
    // The identity must be the node's own.
    assert.throws(
      () => new ConnectionManager(server, Identity.generate(), { userId: 'u', deviceId: 'd' }),
      (e) => e.code === 'identity_mismatch',
    )
    const serverId = server.deviceInfo.deviceId
    const clientId = client.deviceInfo.deviceId
    assert.equal(serverManager.deviceId, serverId)
    server.expose('double', (n) => n * 2)
    client.expose('triple', (n) => n * 3)
    const listener = await server.listen('127.0.0.1:0')
    const connection = await clientManager.dial(listener.url)
    await until(() => events[0].some((e) => e.type === 'added') && events[1].some((e) => e.type === 'added'), 10_000, 'added events')
    const added = events[1].find((e) => e.type === 'added')
    assert.equal(added.deviceId, serverId)
    assert.equal(added.connectionId, connection.id)
    assert.equal(added.transportKind, 'websocket')
    assert.equal(events[0].find((e) => e.type === 'added').deviceId, clientId)
    assert.deepEqual(clientManager.connectedDevices(), [serverId])
    assert.equal(clientManager.connection(serverId).id, connection.id)
    assert.equal(clientManager.connection('nobody'), null)
    assert.equal(await clientManager.call(serverId, 'double', 21), 42)
    assert.equal(await serverManager.call(clientId, 'triple', 5), 15)
    await rejectsWithCode(clientManager.call('nobody', 'double', 1), 'not_connected')

    await connection.close('done')
    await until(() => events[0].some((e) => e.type === 'removed') && events[1].some((e) => e.type === 'removed'), 10_000, 'removed events')
    assert.equal(events[1].find((e) => e.type === 'removed').connectionId, connection.id)
    assert.deepEqual(clientManager.connectedDevices(), [])
    listener.close()
  } finally {
    for (const m of managers) await m.close()
    await client.close()
    await server.close()
  }
})

test('manager: upgrade to a direct WebRTC link signalled over the current connection', async () => {
  const identities = [Identity.generate(), Identity.generate()]
  const [server, client] = identities.map((identity) => makeNode({ identity }))
  const managers = []
  const events = [[], []]
  try {
    assert.throws(
      () => new ConnectionManager(server, identities[0], { userId: 'u', deviceId: 'd', pathPreference: ['carrier-pigeon'] }),
      (e) => e.code === 'invalid_argument',
    )
    const [serverManager, clientManager] = [server, client].map((node, i) => {
      const { userId, deviceId } = node.deviceInfo
      // Direct WebRTC ranks above a LAN WebSocket here, so the upgrade replaces the path.
      const m = new ConnectionManager(node, identities[i], { userId, deviceId, pathPreference: ['webrtc', 'wss', 'ws', 'relay'] })
      m.enableWebrtcUpgrade({ webrtc: LOOPBACK, automatic: false })
      m.onEvent((e) => events[i].push(e))
      managers.push(m)
      return m
    })
    assert.throws(() => serverManager.enableWebrtcUpgrade({ webrtc: { iceTransportPolicy: 'x' } }), (e) => e.code === 'invalid_argument')
    const listener = await server.listen('127.0.0.1:0')
    await clientManager.dial(listener.url)
    server.expose('where', (_, ctx) => ctx.connection.transportKind)
    const serverId = server.deviceInfo.deviceId
    const direct = await clientManager.upgrade(serverId)
    assert.equal(direct.transportKind, 'webrtc')
    assert.equal(direct.remote.deviceId, serverId)
    assert.equal(await direct.call('where'), 'webrtc')
    await until(() => events[1].some((e) => e.type === 'pathChanged'), 10_000, 'pathChanged event')
    const changed = events[1].find((e) => e.type === 'pathChanged')
    assert.deepEqual([changed.deviceId, changed.from, changed.transportKind, changed.connectionId], [serverId, 'websocket', 'webrtc', direct.id])
    assert.equal(clientManager.connection(serverId).id, direct.id)
    assert.equal(await clientManager.call(serverId, 'where'), 'webrtc')
    listener.close()
  } finally {
    for (const m of managers) await m.close()
    await client.close()
    await server.close()
  }
})

test('a process with WebRTC links, a dialer and a manager exits by itself after close()', async () => {
  const script = fileURLToPath(new URL('./fixtures/webrtc-exit-child.mjs', import.meta.url))
  const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] })
  let stdout = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (d) => (stdout += d))
  const result = await new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      resolve({ timedOut: true })
    }, 30_000)
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, timedOut: false })
    })
  })
  assert.equal(result.timedOut, false, 'the process did not exit by itself')
  assert.equal(result.code, 0)
  assert.equal(stdout, '42\n')
})
