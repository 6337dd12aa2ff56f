// Helpers for the WebRTC, signaling and manager tests.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { peerlink } from './helpers.mjs'

export const { WebRtcLink } = peerlink

/** Every link in the tests binds 127.0.0.1 only (a wildcard bind makes one socket per interface). */
export const LOOPBACK = { bindAddrs: ['127.0.0.1:0'] }

/**
 * An offerer and an answerer whose signals are carried by JS (as an app would carry them over
 * its own channel); resolves with both links and the connections `from` and `to` made over them.
 */
export async function webrtcPair(from, to, options = LOOPBACK) {
  const offerer = await WebRtcLink.create('offerer', options)
  const answerer = await WebRtcLink.create('answerer', options)
  const signals = { offerer: [], answerer: [] }
  // Signal types each side has applied (its handleSignal resolved).
  const applied = { offerer: [], answerer: [] }
  const states = { offerer: [], answerer: [] }
  offerer.onStateChange((s) => states.offerer.push(s))
  answerer.onStateChange((s) => states.answerer.push(s))
  offerer.onSignal((json) => {
    const type = JSON.parse(json).type
    signals.offerer.push(type)
    answerer.handleSignal(json).then(() => applied.answerer.push(type), () => {})
  })
  answerer.onSignal((json) => {
    const type = JSON.parse(json).type
    signals.answerer.push(type)
    offerer.handleSignal(json).then(() => applied.offerer.push(type), () => {})
  })
  await offerer.start()
  const [a, b] = await Promise.all([offerer.connect(from), answerer.connect(to)])
  return { offerer, answerer, a, b, signals, states, applied }
}

/** The `peerlink` binary the workspace builds (the `ci` profile first, as scripts/test.sh builds). */
export function peerlinkBinary() {
  const candidates = [
    process.env.PEERLINK_BIN,
    fileURLToPath(new URL('../../target/ci/peerlink', import.meta.url)),
    fileURLToPath(new URL('../../target/debug/peerlink', import.meta.url)),
  ]
  return candidates.find((p) => p && existsSync(p))
}

/** Starts `peerlink serve` on 127.0.0.1 (an ephemeral port); resolves with its ws URL and a stop(). */
export async function startSignalingServer() {
  const bin = peerlinkBinary()
  if (!bin) throw new Error('the peerlink binary is not built (cargo build -p peerlink-cli)')
  const child = spawn(bin, ['serve', '--listen', '127.0.0.1:0', '--no-lobby'], {
    stdio: ['ignore', 'pipe', 'ignore'],
    env: { ...process.env, RUST_LOG: 'warn' },
  })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  let out = ''
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no server address within 20 s: ${out}`)), 20_000)
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (d) => {
      out += d
      const m = /signaling server on (ws:\/\/\S+)/.exec(out)
      if (m) {
        clearTimeout(timer)
        resolve(m[1])
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`the server exited with ${code}: ${out}`))
    })
  })
  child.stdout.removeAllListeners('data')
  child.stdout.resume()
  return {
    url,
    async stop() {
      child.kill('SIGTERM')
      const killer = setTimeout(() => child.kill('SIGKILL'), 5_000)
      await exited
      clearTimeout(killer)
    },
  }
}

/** Resolves once `predicate()` holds, polling every 20 ms; rejects after `ms`. */
export async function until(predicate, ms = 10_000, what = 'condition') {
  const deadline = Date.now() + ms
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}
