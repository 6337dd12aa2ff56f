// ES module entry of the ISocket adapter.
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const isocket = require('./isocket.js')

export const { PeerlinkSocket, MemorySocket, createMemorySocketPair, toISocket } = isocket
export default isocket
