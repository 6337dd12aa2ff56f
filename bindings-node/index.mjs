// ES module entry: the same native binding as `require('@peerlink/node')`.
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const binding = require('./index.js')

export const {
  CodeAnswer,
  CodeOffer,
  Connection,
  ConnectionManager,
  DataChannel,
  HybridConnection,
  Identity,
  Listener,
  Node,
  RecvStream,
  SendStream,
  SignalingClient,
  TrustLevel,
  WebRtcDialer,
  WebRtcLink,
  createCodeAnswer,
  createCodeOffer,
  decodeMessage,
  decodeMessageBytes,
  encodeMessage,
  encodeMessageBytes,
  version,
} = binding

export default binding
