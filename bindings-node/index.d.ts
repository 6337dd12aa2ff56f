/* The package entry: the native addon's API (binding.d.ts, generated) and the parts written
 * in JavaScript. */
export * from './binding'

/** Encodes `value` as a `Call` message named `name` (MessagePack, deflate when it pays). */
export declare function encodeMessage(name: string, value: unknown): Buffer

/** Decodes what `encodeMessage` produced back into `{ name, value }`. */
export declare function decodeMessage(data: Uint8Array): { name: string; value: any }
