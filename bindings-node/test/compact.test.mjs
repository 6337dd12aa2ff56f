// Compact codes: two nodes connect with one code each way and no server.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { makeNode, peerlink } from './helpers.mjs'

const { createCodeOffer, createCodeAnswer } = peerlink
const options = { bindAddrs: ['127.0.0.1:0'], timeoutMs: 30_000 }

test('offer code, answer code, verified connection and RPC over WebRTC', { timeout: 60_000 }, async () => {
  const alice = makeNode()
  const bob = makeNode()
  try {
    bob.expose('add', ([a, b]) => a + b)
    const offer = await createCodeOffer(options)
    const offerCode = offer.code()
    assert.match(offerCode, /^[A-Za-z0-9_-]+$/)
    // One host candidate and 4 + 22-character ICE credentials: 62 bytes, 83 characters.
    assert.equal(Buffer.from(offerCode, 'base64url').length, 62)
    // A link carries the same code after '#'.
    const answer = await createCodeAnswer(`https://lobby.example/#${offerCode}`, options)
    assert.match(answer.code(), /^[A-Za-z0-9_-]+$/)
    const [a, b] = await Promise.all([offer.connect(alice, answer.code()), answer.connect(bob)])
    assert.equal(a.remote.publicKey, bob.publicKey)
    assert.equal(b.remote.publicKey, alice.publicKey)
    assert.equal(a.transportKind, 'webrtc')
    assert.equal(await a.call('add', [20, 22]), 42)
    await assert.rejects(offer.connect(alice, answer.code()), { code: 'invalid_state' })
  } finally {
    await alice.close()
    await bob.close()
  }
})

test('bad codes and options reject with stable codes', { timeout: 60_000 }, async () => {
  await assert.rejects(createCodeAnswer('not a code!', options), { code: 'bad_code' })
  await assert.rejects(createCodeOffer({ bindAddrs: ['nowhere'] }), { code: 'invalid_config' })
  const offer = await createCodeOffer(options)
  const answer = await createCodeAnswer(offer.code(), options)
  // An answer code where an offer is expected, and the reverse.
  await assert.rejects(createCodeAnswer(answer.code(), options), { code: 'wrong_code_kind' })
  const node = makeNode()
  try {
    await assert.rejects(offer.connect(node, offer.code()), { code: 'wrong_code_kind' })
  } finally {
    await answer.close()
    await node.close()
  }
})

test('an offerer whose peer never connects times out', { timeout: 60_000 }, async () => {
  const offer = await createCodeOffer({ ...options, timeoutMs: 1500 })
  // An answer to some other offer: valid, but nobody behind it answers this offerer's checks.
  const other = await createCodeOffer(options)
  const stranger = await createCodeAnswer(other.code(), options)
  const node = makeNode()
  try {
    await assert.rejects(offer.connect(node, stranger.code()), { code: 'timeout' })
  } finally {
    await stranger.close()
    await other.close()
    await node.close()
  }
})
