//! The wire codec as seen from JavaScript, for applications that frame messages themselves
//! and for measuring the codec against JS libraries.
//!
//! `encodeMessage(name, value)` is what a call puts on the wire before sealing: the value as
//! MessagePack, behind a `Call` envelope, raw-deflated when it pays. The first byte of the
//! result says whether it is compressed (the wire carries that flag in its frame header).

use bytes::Bytes;
use napi::bindgen_prelude::{Buffer, Unknown};
use napi::{Env, JsValue, sys};
use napi_derive::napi;
use peerlink::core::wire::{self, CompressionConfig, EncodedMessage, Envelope};

use crate::error::sync_error;
use crate::value;

/// Largest message `decodeMessage` accepts (decompressed).
const MAX_MESSAGE: usize = (64 << 20) + (64 << 10);

/// Encodes `value` as a `Call` message named `name` (MessagePack, deflate when it pays).
#[napi(ts_args_type = "name: string, value: unknown")]
pub fn encode_message(
    env: Env,
    name: String,
    value: Unknown<'_>,
) -> Result<Buffer, napi::Error<String>> {
    let body = value::encode(env.raw(), value.raw()).map_err(|e| sync_error("encode", e))?;
    let encoded = wire::encode_message(
        &Envelope::Call { id: 0, name },
        &body,
        &CompressionConfig::default(),
    )
    .map_err(|e| sync_error("encode", e))?;
    let mut out = Vec::with_capacity(encoded.bytes.len() + 1);
    out.push(u8::from(encoded.compressed));
    out.extend_from_slice(&encoded.bytes);
    Ok(out.into())
}

/// Decodes what `encodeMessage` produced back into `{ name, value }`.
#[napi(
    ts_args_type = "data: Uint8Array",
    ts_return_type = "{ name: string, value: any }"
)]
pub fn decode_message(env: Env, data: Buffer) -> Result<sys::napi_value, napi::Error<String>> {
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
    value::validate(&body).map_err(|e| sync_error("decode", e))?;
    let raw = env.raw();
    let decoded = value::to_js(raw, &body).map_err(|e| sync_error("decode", e))?;
    let object = value::object(raw).map_err(|e| sync_error("internal", e))?;
    let name = value::string(raw, &name).map_err(|e| sync_error("internal", e))?;
    value::set_own(raw, object, "name", name).map_err(|e| sync_error("internal", e))?;
    value::set_own(raw, object, "value", decoded).map_err(|e| sync_error("internal", e))?;
    Ok(object)
}
