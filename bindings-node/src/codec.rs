//! The wire codec as seen from JavaScript, for applications that frame messages themselves
//! and for measuring the codec against JS libraries.
//!
//! `encodeMessage(name, value)` (index.js) is what a call puts on the wire before sealing: the
//! value as MessagePack (encoded in JavaScript, msgpack.js), behind a `Call` envelope,
//! raw-deflated when it pays. The first byte of the result says whether it is compressed (the
//! wire carries that flag in its frame header). The envelope and deflate are done here, in one
//! crossing per message.

use bytes::Bytes;
use napi::bindgen_prelude::Buffer;
use napi::{Env, sys};
use napi_derive::napi;
use peerlink::core::wire::{self, CompressionConfig, EncodedMessage, Envelope};

use crate::error::sync_error;
use crate::value;

/// Largest message `decodeMessage` accepts (decompressed).
const MAX_MESSAGE: usize = (64 << 20) + (64 << 10);

/// Wraps MessagePack bytes in a `Call` message named `name` (deflated when it pays). The
/// package's `encodeMessage(name, value)` encodes the value in JavaScript and calls this once.
#[napi(ts_args_type = "name: string, body: Uint8Array")]
pub fn encode_message_bytes(name: String, body: &[u8]) -> Result<Buffer, napi::Error<String>> {
    let encoded = wire::encode_message(
        &Envelope::Call { id: 0, name },
        body,
        &CompressionConfig::default(),
    )
    .map_err(|e| sync_error("encode", e))?;
    let mut out = Vec::with_capacity(encoded.bytes.len() + 1);
    out.push(u8::from(encoded.compressed));
    out.extend_from_slice(&encoded.bytes);
    Ok(out.into())
}

/// Unwraps what `encodeMessageBytes` (or `encodeMessage`) produced: the call's name and its
/// MessagePack bytes (inflated), not decoded.
#[napi(
    ts_args_type = "data: Uint8Array",
    ts_return_type = "{ name: string, body: Buffer }"
)]
pub fn decode_message_bytes(env: Env, data: &[u8]) -> Result<sys::napi_value, napi::Error<String>> {
    let (&flag, bytes) = data
        .split_first()
        .ok_or_else(|| sync_error("decode", "empty message"))?;
    let message = EncodedMessage {
        bytes: Bytes::copy_from_slice(bytes),
        compressed: flag == 1,
    };
    let (envelope, body) =
        wire::decode_message(message, MAX_MESSAGE).map_err(|e| sync_error("decode", e))?;
    let Envelope::Call { name, .. } = envelope else {
        return Err(sync_error("decode", "not a call message"));
    };
    let raw = env.raw();
    let internal = |e| sync_error("internal", e);
    let object = value::object(raw).map_err(internal)?;
    let name = value::string(raw, &name).map_err(internal)?;
    let body = value::buffer(raw, &body).map_err(internal)?;
    value::set_own(raw, object, "name", name).map_err(internal)?;
    value::set_own(raw, object, "body", body).map_err(internal)?;
    Ok(object)
}
