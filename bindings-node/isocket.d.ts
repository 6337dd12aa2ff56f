import type { Connection } from './index'

/** Node-style callback: `err` is an `Error` with a string `code` when the call failed. */
export type RPCCallback<T = any> = (err: (Error & { code?: string; remoteCode?: string }) | null, result?: T) => void

/** The socket shape peers-sdk's `Connection` is written against. */
export interface ISocket {
  id?: string
  readonly connected?: boolean
  emit(eventName: string, args: any, callback: RPCCallback): void
  on(eventName: string, handler: (args: any, callback: RPCCallback) => void | Promise<unknown>): this
  on(eventName: 'disconnect', handler: (reason: string) => void): this
  removeAllListeners(eventName?: string): this
  disconnect(): Promise<void> | void
}

/** An ISocket over a peerlink `Connection`. */
export declare class PeerlinkSocket implements ISocket {
  constructor(connection: Connection, options?: { timeoutMs?: number })
  readonly connection: Connection
  id: string
  readonly connected: boolean
  emit(eventName: string, args: any, callback: RPCCallback): void
  on(eventName: string, handler: (args: any, callback: RPCCallback) => void | Promise<unknown>): this
  removeAllListeners(eventName?: string): this
  disconnect(): Promise<void>
}

/** The in-memory reference ISocket (one end of `createMemorySocketPair()`). */
export declare class MemorySocket implements ISocket {
  id: string
  readonly connected: boolean
  emit(eventName: string, args: any, callback: RPCCallback): void
  on(eventName: string, handler: (args: any, callback: RPCCallback) => void | Promise<unknown>): this
  removeAllListeners(eventName?: string): this
  disconnect(): Promise<void>
}

/** Two connected in-memory ISockets. */
export declare function createMemorySocketPair(): [MemorySocket, MemorySocket]

/** Wraps a peerlink `Connection` as an ISocket. */
export declare function toISocket(connection: Connection, options?: { timeoutMs?: number }): PeerlinkSocket
