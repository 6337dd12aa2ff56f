//! The receiving half: open records, reassemble chunks, keep memory bounded.

use std::collections::HashMap;

use bytes::Bytes;

use super::frame::{self, ChunkHeader};
use super::record::Opener;
use super::{EncodedMessage, WireConfig, WireError};

/// A message whose FIRST chunk arrived and whose LAST has not.
#[derive(Debug)]
struct Partial {
    data: Vec<u8>,
    total: usize,
    compressed: bool,
}

/// Receiving half: open, reassemble, bound memory.
///
/// Limits, all checked before any memory is committed:
/// - a FIRST chunk declaring more than `max_message_size` fails with `TooLarge`;
/// - at most `max_partial_messages` messages may be partially received;
/// - the bytes held by partial messages never exceed `max_partial_bytes`.
///
/// The declared length is never preallocated: a partial message's buffer grows with the data
/// that actually arrived (at most doubling, capped at the declared length), so holding memory
/// costs the peer as many bytes on the wire. Any error means the peer broke the protocol and
/// the link should be closed.
#[derive(Debug)]
pub struct WireReceiver {
    opener: Opener,
    max_message_size: usize,
    max_partial_messages: usize,
    max_partial_bytes: usize,
    partials: HashMap<u64, Partial>,
    partial_bytes: usize,
}

impl WireReceiver {
    pub(super) fn new(key: &[u8; 32], config: &WireConfig) -> Self {
        Self {
            opener: Opener::new(key),
            max_message_size: config.max_message_size,
            max_partial_messages: config.max_partial_messages,
            max_partial_bytes: config.max_partial_bytes,
            partials: HashMap::new(),
            partial_bytes: 0,
        }
    }

    /// Opens one record. Returns a complete message when this record finished one.
    pub fn handle_record(&mut self, record: &[u8]) -> Result<Option<EncodedMessage>, WireError> {
        let plain = self.opener.open(record)?;
        let (header, chunk) = frame::parse(&plain)?;
        let chunk_start = plain.len() - chunk.len();
        match header.total {
            Some(total) => self.first_chunk(header, total, plain, chunk_start),
            None => self.next_chunk(header, &plain[chunk_start..]),
        }
    }

    /// Bytes held by partial messages.
    pub fn partial_bytes(&self) -> usize {
        self.partial_bytes
    }

    /// Number of partial messages.
    pub fn partial_count(&self) -> usize {
        self.partials.len()
    }

    fn first_chunk(
        &mut self,
        header: ChunkHeader,
        total: u64,
        plain: Vec<u8>,
        chunk_start: usize,
    ) -> Result<Option<EncodedMessage>, WireError> {
        let limit = self.max_message_size as u64;
        let total = usize::try_from(total)
            .ok()
            .filter(|total| *total as u64 <= limit)
            .ok_or(WireError::TooLarge { size: total, limit })?;
        if self.partials.contains_key(&header.id) {
            return Err(WireError::Malformed(format!(
                "FIRST chunk for message {} already in progress",
                header.id
            )));
        }
        let chunk_len = plain.len() - chunk_start;
        if header.is_last() {
            if chunk_len != total {
                return Err(WireError::Malformed(format!(
                    "single-chunk message {} carries {chunk_len} bytes but declares {total}",
                    header.id
                )));
            }
            // The decrypted buffer becomes the message: no copy for one-record messages.
            let bytes = Bytes::from(plain).slice(chunk_start..);
            return Ok(Some(EncodedMessage {
                bytes,
                compressed: header.is_compressed(),
            }));
        }
        if chunk_len >= total {
            return Err(WireError::Malformed(format!(
                "FIRST chunk of message {} fills its declared {total} bytes without LAST",
                header.id
            )));
        }
        if self.partials.len() >= self.max_partial_messages {
            return Err(WireError::ReassemblyLimit(format!(
                "more than {} partial messages",
                self.max_partial_messages
            )));
        }
        self.reserve_partial_bytes(chunk_len)?;
        let mut data = Vec::with_capacity(chunk_len);
        data.extend_from_slice(&plain[chunk_start..]);
        self.partials.insert(
            header.id,
            Partial {
                data,
                total,
                compressed: header.is_compressed(),
            },
        );
        Ok(None)
    }

    fn next_chunk(
        &mut self,
        header: ChunkHeader,
        chunk: &[u8],
    ) -> Result<Option<EncodedMessage>, WireError> {
        let id = header.id;
        let partial = self.partials.get(&id).ok_or_else(|| {
            WireError::Malformed(format!("continuation chunk for unknown message {id}"))
        })?;
        let new_len = partial.data.len() + chunk.len();
        if new_len > partial.total {
            return Err(WireError::Malformed(format!(
                "message {id} overruns its declared {} bytes",
                partial.total
            )));
        }
        match (header.is_last(), new_len == partial.total) {
            (true, false) => {
                return Err(WireError::Malformed(format!(
                    "LAST chunk of message {id} at {new_len} of {} bytes",
                    partial.total
                )));
            }
            (false, true) => {
                return Err(WireError::Malformed(format!(
                    "message {id} reached its declared {} bytes without LAST",
                    partial.total
                )));
            }
            _ => {}
        }
        self.reserve_partial_bytes(chunk.len())?;
        let Some(partial) = self.partials.get_mut(&id) else {
            return Err(WireError::Malformed(format!(
                "continuation for unknown message {id}"
            )));
        };
        if partial.data.capacity() < new_len {
            // Geometric growth keeps copies amortised; the cap keeps an honest message from
            // ever holding more than its own length.
            let target = new_len
                .max(partial.data.capacity().saturating_mul(2))
                .min(partial.total);
            partial.data.reserve_exact(target - partial.data.len());
        }
        partial.data.extend_from_slice(chunk);
        if !header.is_last() {
            return Ok(None);
        }
        let Some(done) = self.partials.remove(&id) else {
            return Err(WireError::Malformed(format!(
                "continuation for unknown message {id}"
            )));
        };
        self.partial_bytes -= done.data.len();
        Ok(Some(EncodedMessage {
            bytes: Bytes::from(done.data),
            compressed: done.compressed,
        }))
    }

    fn reserve_partial_bytes(&mut self, more: usize) -> Result<(), WireError> {
        let wanted = self.partial_bytes.saturating_add(more);
        if wanted > self.max_partial_bytes {
            return Err(WireError::ReassemblyLimit(format!(
                "partial messages would hold {wanted} bytes, limit {}",
                self.max_partial_bytes
            )));
        }
        self.partial_bytes = wanted;
        Ok(())
    }
}
