//! The wire layer: encrypted records, chunked and interleaved messages, MessagePack envelopes,
//! optional raw-deflate compression. Sans-I/O. See `docs/protocol/wire.md`.
//!
//! INTERFACE PINNED — implementation in progress.
//!
//! Data path on send: [`encode_message`] (envelope + body, compressed when it pays) →
//! [`WireSender::push`] (queued; chunks of queued messages interleave round-robin) →
//! [`WireSender::poll_transmit`] (next sealed record, fits the link) → transport.
//! On receive: transport → [`WireReceiver::handle_record`] (open, reassemble, bounded memory)
//! → [`decode_message`].

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::handshake::SessionKeys;

/// Wire format version, first byte of every record.
pub const WIRE_VERSION: u8 = 1;

/// Limits and tunables. `Default` gives the documented values.
#[derive(Debug, Clone)]
pub struct WireConfig {
    /// Largest message (encoded, before compression) accepted or sent. Default 64 MiB.
    pub max_message_size: usize,
    /// Largest record the link carries (WebRTC: the peer's max-message-size; WebSocket: 1 MiB).
    pub max_record_size: usize,
    /// Most partially received messages held at once. Default 64.
    pub max_partial_messages: usize,
    /// Most bytes held by partially received messages. Default 2 × max_message_size.
    pub max_partial_bytes: usize,
    /// Compression rule.
    pub compression: CompressionConfig,
}

impl Default for WireConfig {
    fn default() -> Self {
        Self {
            max_message_size: 64 << 20,
            max_record_size: 1 << 20,
            max_partial_messages: 64,
            max_partial_bytes: 128 << 20,
            compression: CompressionConfig::default(),
        }
    }
}

/// When to compress (see `docs/protocol/wire.md` for the rule).
#[derive(Debug, Clone)]
pub struct CompressionConfig {
    /// Messages shorter than this are never compressed. Default 1024 bytes.
    pub threshold: usize,
    /// Deflate level 0–9 used when compressing. Default 1.
    pub level: u32,
    /// Off switch.
    pub enabled: bool,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self { threshold: 1024, level: 1, enabled: true }
    }
}

/// Errors of the wire layer. Every one is a protocol violation or a limit, never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// A record failed authentication (wrong key, altered, replayed or reordered).
    #[error("record failed decryption or authentication")]
    Decrypt,
    /// A record's counter is not the next expected one.
    #[error("record out of sequence: expected {expected}, got {got}")]
    Sequence {
        /// Expected counter.
        expected: u64,
        /// Counter found.
        got: u64,
    },
    /// Unknown wire version.
    #[error("unsupported wire version {0}")]
    Version(u8),
    /// A frame or envelope could not be parsed.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A message exceeds the configured maximum.
    #[error("message of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Declared or actual size.
        size: u64,
        /// Limit.
        limit: u64,
    },
    /// Too many or too large partial messages.
    #[error("reassembly limit reached: {0}")]
    ReassemblyLimit(String),
    /// Decompression failed or exceeded the limit.
    #[error("decompression failed: {0}")]
    Decompress(String),
}

/// The MessagePack header of every message. The body travels raw after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Envelope {
    /// An RPC call; body = arguments.
    Call {
        /// Request id, unique per sender and connection.
        id: u64,
        /// Handler name (for example `listChanges_<groupId>`).
        name: String,
    },
    /// A successful reply; body = result.
    Reply {
        /// The call's id.
        id: u64,
    },
    /// A failed call; no body.
    Error {
        /// The call's id.
        id: u64,
        /// Stable code: `no_handler`, `handler`, `cancelled`, `too_large`, `closed`, …
        code: String,
        /// Human-readable text.
        message: String,
    },
    /// One-way message; body = arguments.
    Notify {
        /// Handler name.
        name: String,
    },
    /// The caller gave up on a call.
    Cancel {
        /// The call's id.
        id: u64,
    },
    /// Opens a byte stream; `window` is the initial credit the opener grants for replies (0).
    StreamOpen {
        /// Stream id, unique per opener.
        id: u64,
        /// Stream name chosen by the application.
        name: String,
    },
    /// Stream bytes; body = data.
    StreamData {
        /// Stream id.
        id: u64,
    },
    /// Receiver grants the sender `bytes` more credit.
    StreamCredit {
        /// Stream id.
        id: u64,
        /// Additional bytes allowed.
        bytes: u64,
    },
    /// Sender finished the stream.
    StreamEnd {
        /// Stream id.
        id: u64,
    },
    /// Either side aborts the stream.
    StreamReset {
        /// Stream id.
        id: u64,
        /// Stable code.
        code: String,
    },
    /// Liveness probe.
    Ping {
        /// Echoed in the pong.
        nonce: u64,
    },
    /// Answer to a ping.
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// Orderly close with a reason.
    Close {
        /// Stable code.
        code: String,
        /// Human-readable text.
        message: String,
    },
}

/// An encoded message ready to queue.
#[derive(Debug, Clone)]
pub struct EncodedMessage {
    /// Encoded (possibly compressed) bytes.
    pub bytes: Bytes,
    /// Whether `bytes` is raw-deflate compressed.
    pub compressed: bool,
}

/// Encodes an envelope and its body; compresses when it pays.
pub fn encode_message(
    envelope: &Envelope,
    body: &[u8],
    config: &CompressionConfig,
) -> Result<EncodedMessage, WireError> {
    let _ = (envelope, body, config);
    unimplemented!()
}

/// Decodes a reassembled message into envelope and body, decompressing within `max_size`.
pub fn decode_message(
    message: EncodedMessage,
    max_size: usize,
) -> Result<(Envelope, Bytes), WireError> {
    let _ = (message, max_size);
    unimplemented!()
}

/// Identifier of a queued outgoing message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageId(pub u64);

/// Sending half: queue, interleave, chunk, seal.
#[derive(Debug)]
pub struct WireSender {
    _private: (),
}

/// Receiving half: open, reassemble, bound memory.
#[derive(Debug)]
pub struct WireReceiver {
    _private: (),
}

/// Builds both halves from session keys.
pub fn session(keys: &SessionKeys, config: WireConfig) -> (WireSender, WireReceiver) {
    let _ = (keys, config);
    unimplemented!()
}

impl WireSender {
    /// Queues a message. Fails with `TooLarge` above the configured maximum.
    pub fn push(&mut self, message: EncodedMessage) -> Result<MessageId, WireError> {
        let _ = message;
        unimplemented!()
    }

    /// The next sealed record to send, or `None` when the queue is empty.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        unimplemented!()
    }

    /// Bytes queued and not yet handed out by `poll_transmit`.
    pub fn queued_bytes(&self) -> usize {
        unimplemented!()
    }

    /// Changes the largest record size (for example when the link reports a new limit).
    pub fn set_max_record_size(&mut self, size: usize) {
        let _ = size;
        unimplemented!()
    }
}

impl WireReceiver {
    /// Opens one record. Returns a complete message when this record finished one.
    pub fn handle_record(&mut self, record: &[u8]) -> Result<Option<EncodedMessage>, WireError> {
        let _ = record;
        unimplemented!()
    }

    /// Bytes held by partial messages.
    pub fn partial_bytes(&self) -> usize {
        unimplemented!()
    }

    /// Number of partial messages.
    pub fn partial_count(&self) -> usize {
        unimplemented!()
    }
}
