//! Messages: `[varint header length][MessagePack Envelope][raw body]`, optionally compressed
//! as a whole.

use bytes::Bytes;
use serde::Deserialize;

use super::compress::{deflate_parts, inflate_bounded, should_try};
use super::{CompressionConfig, EncodedMessage, Envelope, WireError, varint};

/// The header prefix: varint length and the MessagePack envelope (maps with field names, so
/// other implementations can read it with any MessagePack library).
fn encode_prefix(envelope: &Envelope) -> Result<Vec<u8>, WireError> {
    let header = rmp_serde::to_vec_named(envelope)
        .map_err(|e| WireError::Malformed(format!("envelope encoding: {e}")))?;
    let mut prefix = Vec::with_capacity(varint::MAX_LEN + header.len());
    varint::write(&mut prefix, header.len() as u64);
    prefix.extend_from_slice(&header);
    Ok(prefix)
}

/// Encodes, refusing messages whose plain (decompressed) size exceeds `max_size` — the limit
/// the receiver decodes with — before spending any time compressing them.
pub(crate) fn encode(
    envelope: &Envelope,
    body: &[u8],
    config: &CompressionConfig,
    max_size: usize,
) -> Result<EncodedMessage, WireError> {
    let prefix = encode_prefix(envelope)?;
    let total = prefix.len() + body.len();
    if total > max_size {
        return Err(WireError::TooLarge {
            size: total as u64,
            limit: max_size as u64,
        });
    }
    if should_try(config, total, body) {
        // Kept only when strictly smaller than the plain encoding.
        if let Some(deflated) = deflate_parts(&[&prefix, body], config.level, total - 1) {
            return Ok(EncodedMessage {
                bytes: Bytes::from(deflated),
                compressed: true,
            });
        }
    }
    let mut bytes = Vec::with_capacity(total);
    bytes.extend_from_slice(&prefix);
    bytes.extend_from_slice(body);
    Ok(EncodedMessage {
        bytes: Bytes::from(bytes),
        compressed: false,
    })
}

pub(crate) fn decode(
    message: EncodedMessage,
    max_size: usize,
) -> Result<(Envelope, Bytes), WireError> {
    let bytes = if message.compressed {
        Bytes::from(inflate_bounded(&message.bytes, max_size)?)
    } else if message.bytes.len() > max_size {
        return Err(WireError::TooLarge {
            size: message.bytes.len() as u64,
            limit: max_size as u64,
        });
    } else {
        message.bytes
    };
    let (header_len, rest) = varint::read(&bytes, "envelope length")?;
    let header_len = usize::try_from(header_len)
        .ok()
        .filter(|len| *len <= rest.len())
        .ok_or_else(|| WireError::Malformed("envelope length exceeds the message".into()))?;
    let (header, _) = rest.split_at(header_len);
    // A reader over the slice: rmp-serde then copies strings of their actual length instead of
    // trusting declared lengths, and the slice tells us whether the header had trailing bytes.
    let mut reader: &[u8] = header;
    let envelope = Envelope::deserialize(&mut rmp_serde::Deserializer::new(&mut reader))
        .map_err(|e| WireError::Malformed(format!("envelope: {e}")))?;
    if !reader.is_empty() {
        return Err(WireError::Malformed(format!(
            "{} trailing bytes after the envelope",
            reader.len()
        )));
    }
    let body_start = bytes.len() - rest.len() + header_len;
    Ok((envelope, bytes.slice(body_start..)))
}
