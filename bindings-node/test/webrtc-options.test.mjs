// WebRTC options checked by the runtime: `turnTlsRoots` (PEM CA certificates for `turns:`
// servers) and the path report's `relayProtocol` through a TURN-over-TLS server on loopback.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, connect as tcpConnect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { makeNode } from './helpers.mjs'
import { LOOPBACK, WebRtcLink, webrtcPair } from './webrtc-helpers.mjs'

function have(cmd) {
  try {
    execFileSync(cmd, ['--version'], { stdio: 'ignore', timeout: 10_000 })
    return true
  } catch (e) {
    return e.code !== 'ENOENT'
  }
}

function openssl(dir, args) {
  execFileSync('openssl', args, { cwd: dir, stdio: 'ignore', timeout: 30_000 })
}

/** A CA and a server certificate for 127.0.0.1 signed by it, made with openssl in `dir`. */
function makePki(dir, name) {
  const p = (f) => join(dir, `${name}-${f}`)
  openssl(dir, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', p('ca.key'), '-out', p('ca.pem'), '-days', '2', '-subj', `/CN=peerlink test CA ${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign'])
  openssl(dir, ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', p('server.key'), '-out', p('server.csr'), '-subj', '/CN=127.0.0.1'])
  writeFileSync(p('ext.cnf'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n')
  openssl(dir, ['x509', '-req', '-in', p('server.csr'), '-CA', p('ca.pem'), '-CAkey', p('ca.key'),
    '-CAcreateserial', '-out', p('server.pem'), '-days', '2', '-extfile', p('ext.cnf')])
  return {
    caPem: readFileSync(p('ca.pem'), 'utf8'),
    caKeyPem: readFileSync(p('ca.key'), 'utf8'),
    cert: p('server.pem'),
    key: p('server.key'),
  }
}

async function freePort() {
  const server = createServer()
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  return port
}

async function listening(port) {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host: '127.0.0.1', port })
    socket.setTimeout(200, () => { socket.destroy(); resolve(false) })
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => resolve(false))
  })
}

const USER = 'peerlink'
const PASSWORD = 'turn-secret'

/** coturn on 127.0.0.1 with only a TLS client listener, using `pki`'s server certificate. */
async function startTlsTurn(dir, pki) {
  const port = await freePort()
  const log = join(dir, 'turn.log')
  const child = spawn('turnserver', [
    '-n', '--listening-ip=127.0.0.1', '--relay-ip=127.0.0.1', '--allow-loopback-peers',
    '--lt-cred-mech', '--realm=peerlink.test', '--no-udp', '--no-dtls', '--no-cli', '--simple-log',
    '--no-tcp', `--listening-port=${await freePort()}`, `--tls-listening-port=${port}`,
    `--cert=${pki.cert}`, `--pkey=${pki.key}`, `--user=${USER}:${PASSWORD}`,
    `--log-file=${log}`, `--pidfile=${join(dir, 'turn.pid')}`,
  ], { stdio: 'ignore' })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  let up = false
  for (let i = 0; i < 100 && !up; i++) {
    await new Promise((r) => setTimeout(r, 50))
    up = await listening(port)
  }
  const stop = async () => {
    child.kill('SIGKILL')
    await exited
  }
  if (!up) {
    await stop()
    throw new Error(`coturn did not listen on ${port}: ${readFileSync(log, 'utf8')}`)
  }
  return { url: `turns:127.0.0.1:${port}`, stop }
}

async function rejectsNaming(promise, field) {
  await assert.rejects(promise, (e) => {
    assert.equal(e.code, 'invalid_argument', e.message)
    assert.ok(e.message.includes(field), `${field} not named in: ${e.message}`)
    return true
  })
}

const canMakeCerts = have('openssl')

test('turnTlsRoots: PEM CA certificates are accepted, a bad entry is invalid_argument naming it', { skip: !canMakeCerts && 'openssl is not installed' }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'peerlink-roots-'))
  try {
    const a = makePki(dir, 'a')
    const b = makePki(dir, 'b')
    // One certificate per entry, and a bundle of two in one entry.
    const link = await WebRtcLink.create('offerer', { ...LOOPBACK, turnTlsRoots: [a.caPem, a.caPem + b.caPem] })
    await link.close()
    const bad = [
      'not a certificate',
      '',
      '-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n',
      '-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n',
    ]
    for (const entry of bad) {
      await rejectsNaming(WebRtcLink.create('offerer', { ...LOOPBACK, turnTlsRoots: [a.caPem, entry] }), 'turnTlsRoots[1]')
    }
    // A private key pasted by mistake is refused without echoing it.
    await assert.rejects(WebRtcLink.create('offerer', { ...LOOPBACK, turnTlsRoots: [a.caKeyPem] }), (e) => {
      assert.equal(e.code, 'invalid_argument')
      assert.ok(e.message.includes('turnTlsRoots[0]'), e.message)
      const body = a.caKeyPem.split('\n')[1]
      assert.ok(!e.message.includes(body), 'key material in the message')
      return true
    })
    // A value that is not a string fails napi's conversion, which also names the field.
    await assert.rejects(
      async () => WebRtcLink.create('offerer', { ...LOOPBACK, turnTlsRoots: [42] }),
      (e) => e.message.includes('turnTlsRoots'),
    )
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('turns: server: trusted through turnTlsRoots the link relays over TLS (relayProtocol tls); another CA gathers nothing', {
  skip: (!canMakeCerts && 'openssl is not installed') || (!have('turnserver') && 'coturn is not installed'),
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'peerlink-turns-'))
  let turn = null
  const alice = makeNode()
  const bob = makeNode()
  try {
    const served = makePki(dir, 'served')
    const other = makePki(dir, 'other')
    turn = await startTlsTurn(dir, served)
    const relay = (roots) => ({
      ...LOOPBACK,
      iceTransportPolicy: 'relay',
      iceServers: [{ urls: [turn.url], username: USER, credential: PASSWORD }],
      turnTlsRoots: roots,
    })
    // Another CA than the one that signed the server's certificate: no relay candidate, so
    // a non-trickle offerer has nothing to offer.
    const untrusting = await WebRtcLink.create('offerer', { ...relay([other.caPem]), trickle: false })
    try {
      await assert.rejects(untrusting.start(), (e) => e.code === 'timeout')
    } finally {
      await untrusting.close()
    }
    bob.expose('add', ([x, y]) => x + y)
    const pair = await webrtcPair(alice, bob, relay([served.caPem]))
    try {
      assert.equal(await pair.a.call('add', [40, 2]), 42)
      for (const conn of [pair.a, pair.b]) {
        const path = await conn.path()
        assert.equal(path.local?.candidateType, 'relay', JSON.stringify(path))
        assert.equal(path.local.protocol, 'udp')
        assert.equal(path.local.relayProtocol, 'tls', JSON.stringify(path))
      }
    } finally {
      await pair.offerer.close()
      await pair.answerer.close()
    }
  } finally {
    await alice.close()
    await bob.close()
    await turn?.stop()
    rmSync(dir, { recursive: true, force: true })
  }
})
