// The connection manager from JS over real loopback links: device messages relayed through
// another device, broadcast calls, and the path report of a connection.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { makeNode, peerlink, rejectsWithCode } from './helpers.mjs'
import { until } from './webrtc-helpers.mjs'

const { Identity, ConnectionManager } = peerlink

/** `count` nodes, each with its manager; `close()` ends them all. */
function managedNodes(count) {
  const nodes = []
  const managers = []
  for (let i = 0; i < count; i++) {
    const identity = Identity.generate()
    const node = makeNode({ identity })
    const { userId, deviceId } = node.deviceInfo
    nodes.push(node)
    managers.push(new ConnectionManager(node, identity, { userId, deviceId }))
  }
  return {
    nodes,
    managers,
    ids: nodes.map((n) => n.deviceInfo.deviceId),
    async close() {
      for (const m of managers) await m.close()
      for (const n of nodes) await n.close()
    },
  }
}

/** `from` dials `to` through its manager; waits until both managers list the link. */
async function link(net, from, to) {
  const listener = await net.nodes[to].listen('127.0.0.1:0')
  const connection = await net.managers[from].dial(listener.url)
  await until(
    () => net.managers[to].connectedDevices().includes(net.ids[from]),
    10_000,
    `device ${to} lists device ${from}`,
  )
  return connection
}

test('manager: a device message reaches C through B, with hops, answers and statuses', async () => {
  const net = managedNodes(3)
  const [a, b, c] = net.managers
  const [, idB, idC] = net.ids
  try {
    const received = []
    c.onDeviceMessage(async (message) => {
      received.push(message)
      const text = message.payload.toString()
      if (text === 'missing') throw Object.assign(new Error('nothing here'), { code: '404' })
      if (text === 'busy') throw new Error('try later')
      return Buffer.concat([Buffer.from('got '), message.payload])
    })
    await link(net, 0, 1)
    await link(net, 2, 1)
    assert.equal(a.connection(idC), null, 'A and C have no direct link')
    // A learns that B reaches C (the manager also does this after its pings).
    await a.refreshNetworkInfo()
    const result = await a.sendDeviceMessage(idC, 'g1', Buffer.from('offer'))
    assert.equal(result.status, '200')
    assert.deepEqual(result.hops, [idB, idC])
    assert.equal(result.payload.toString(), 'got offer')
    const [message] = received
    assert.equal(message.fromDeviceId, net.ids[0])
    assert.equal(message.toDeviceId, idC)
    assert.equal(message.dataContextId, 'g1')
    assert.deepEqual(message.hops, [idB])
    assert.ok(Buffer.isBuffer(message.payload))
    // The handler's failures become statuses.
    assert.equal((await a.sendDeviceMessage(idC, 'g1', Buffer.from('missing'))).status, '404')
    assert.equal((await a.sendDeviceMessage(idC, 'g1', Buffer.from('busy'))).status, '503')
    // A target nobody knows is not delivered; bad arguments are typed errors.
    assert.notEqual((await a.sendDeviceMessage('nobody', 'g1', Buffer.alloc(0))).status, '200')
    await rejectsWithCode(a.sendDeviceMessage(idC, 'g1', 'not bytes'), 'invalid_argument')
    await rejectsWithCode(a.sendDeviceMessage(idC, 'g1', Buffer.alloc(0), { ttl: 256 }), 'invalid_argument')
    // B has no handler: a message for B itself is answered 404.
    assert.equal((await a.sendDeviceMessage(idB, 'g1', Buffer.from('hi'))).status, '404')
  } finally {
    await net.close()
  }
})

test('manager: broadcast calls every connected device; one failure does not fail the rest', async () => {
  const net = managedNodes(3)
  const [nodeA, , nodeC] = net.nodes
  const [idA, , idC] = net.ids
  try {
    nodeA.expose('who', () => 'a')
    nodeC.expose('who', () => 'c')
    nodeA.expose('onlyA', (n) => n + 1)
    const toA = await link(net, 1, 0)
    await link(net, 1, 2)
    const results = await net.managers[1].broadcast('who')
    const byDevice = Object.fromEntries(results.map((r) => [r.deviceId, r]))
    assert.deepEqual(Object.keys(byDevice).sort(), [idA, idC].sort())
    assert.equal(byDevice[idA].value, 'a')
    assert.equal(byDevice[idC].value, 'c')
    const partial = Object.fromEntries((await net.managers[1].broadcast('onlyA', 41)).map((r) => [r.deviceId, r]))
    assert.equal(partial[idA].value, 42)
    assert.ok(partial[idC].error instanceof Error)
    assert.equal(partial[idC].error.code, 'no_handler')
    assert.equal(partial[idC].value, undefined)
    // The path report of a WebSocket link: its kind, no candidate pair.
    const path = await toA.path()
    assert.equal(path.kind, 'websocket')
    assert.equal(path.local, undefined)
    assert.equal(path.remote, undefined)
  } finally {
    await net.close()
  }
})

test('manager: group broadcast reaches every other member through its group handler; hub role', async () => {
  const net = managedNodes(3)
  try {
    const [a, b, c] = net.managers
    const events = []
    a.onEvent((e) => events.push(e))
    const got = { b: [], c: [] }
    b.exposeGroup('team', 'note', (args, ctx) => {
      got.b.push([args, ctx.connection.remote.deviceId])
      return 'ok'
    })
    c.exposeGroup('team', 'note', (args) => {
      got.c.push([args])
    })
    for (const m of net.managers) m.addGroup('team')
    await link(net, 0, 1)
    await link(net, 0, 2)
    await until(
      () => ['1', '2'].every((i) => events.some((e) => e.type === 'groupReady' && e.groupId === 'team' && e.deviceId === net.ids[i])),
      10_000,
      'group ready with both members',
    )
    assert.equal(a.hubRole('team').role, 'mesh')
    const reached = await a.broadcastGroup('team', 'note', { n: 1, data: Buffer.from([9]) })
    assert.deepEqual(reached, [net.ids[1], net.ids[2]].sort())
    assert.equal(got.b.length, 1)
    assert.deepEqual(got.b[0][0].n, 1)
    assert.deepEqual([...got.b[0][0].data], [9])
    assert.equal(got.b[0][1], net.ids[0])
    assert.equal(got.c.length, 1)
    // A group nobody else is in reaches nobody.
    assert.deepEqual(await a.broadcastGroup('nobody', 'note', 1), [])
    a.setGroupMembers('team', net.ids)
    assert.equal(typeof a.hubRole('team').role, 'string')
  } finally {
    await net.close()
  }
})
