/* The package entry: the native addon's API (binding.d.ts, generated) and the parts written
 * in JavaScript. */
export * from './binding'

/** Encodes `value` as a `Call` message named `name` (MessagePack, deflate when it pays). */
export declare function encodeMessage(name: string, value: unknown): Buffer

/** Decodes what `encodeMessage` produced back into `{ name, value }`. */
export declare function decodeMessage(data: Uint8Array): { name: string; value: any }


/** The Peers trust levels, as the Rust `TrustLevel` constants (a level below 0 refuses the link). */
export declare const TrustLevel: {
  /** Known bad actor. */
  readonly Malicious: -20
  /** Not trusted; the link is refused. */
  readonly Untrusted: -10
  /** Nothing known; the link is allowed. */
  readonly Unknown: 0
  /** A user seen for the first time. */
  readonly NewUser: 10
  /** A new device of a known user. */
  readonly NewDevice: 20
  /** Seen long enough to be known. */
  readonly Known: 30
  /** Explicitly trusted. */
  readonly Trusted: 50
  /** One of this user's own devices (the Rust `TrustLevel::SELF`). */
  readonly Self: 100
}
