//! The wire layer: encrypted records, chunked and interleaved messages, MessagePack envelopes,
//! optional raw-deflate compression. Sans-I/O. See `docs/protocol/wire.md`.
//!
//! Data path on send: [`encode_message`] (envelope + body, compressed when it pays) →
//! [`WireSender::push`] (queued; chunks of queued messages interleave round-robin) →
//! [`WireSender::poll_transmit`] (next sealed record, fits the link) → transport.
//! On receive: transport → [`WireReceiver::handle_record`] (open, reassemble, bounded memory)
//! → [`decode_message`].

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::handshake::SessionKeys;

mod compress;
mod envelope;
mod frame;
mod inbox;
mod outbox;
mod record;
mod varint;

pub use inbox::WireReceiver;
pub use outbox::WireSender;

/// Wire format version, first byte of every record.
pub const WIRE_VERSION: u8 = 1;

/// Bytes a record adds around its frame: version (1), counter (8) and tag (16).
pub const RECORD_OVERHEAD: usize = record::OVERHEAD;

/// Smallest usable `max_record_size`; smaller settings are raised to it.
pub const MIN_RECORD_SIZE: usize = 64;

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
        Self {
            threshold: 1024,
            level: 1,
            enabled: true,
        }
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedMessage {
    /// Encoded (possibly compressed) bytes.
    pub bytes: Bytes,
    /// Whether `bytes` is raw-deflate compressed.
    pub compressed: bool,
}

/// Encodes an envelope and its body; compresses when it pays.
///
/// Layout: `[varint header length][MessagePack envelope][body]`. The body is copied once and
/// never re-encoded. The whole message is raw-deflated when compression is enabled, the
/// message is at least `threshold` bytes, a level-1 probe of up to 4 KiB from the middle of the
/// body shrinks below 90 %, and the result is strictly smaller (see `docs/protocol/wire.md`).
pub fn encode_message(
    envelope: &Envelope,
    body: &[u8],
    config: &CompressionConfig,
) -> Result<EncodedMessage, WireError> {
    envelope::encode(envelope, body, config, usize::MAX)
}

/// Like [`encode_message`], but fails with `TooLarge` when the plain message (before
/// compression) exceeds `max_size`. Use the receiver's `max_message_size`: the receiver bounds
/// the *decompressed* size, so a compressible message that only fits after compression would
/// otherwise be sent and then kill the link at the far end.
pub fn encode_message_within(
    envelope: &Envelope,
    body: &[u8],
    config: &CompressionConfig,
    max_size: usize,
) -> Result<EncodedMessage, WireError> {
    envelope::encode(envelope, body, config, max_size)
}

/// Decodes a reassembled message into envelope and body, decompressing within `max_size`.
///
/// `max_size` bounds the decoded message: decompression stops with `TooLarge` as soon as the
/// output passes it, so a deflate bomb costs at most `max_size` bytes of memory.
pub fn decode_message(
    message: EncodedMessage,
    max_size: usize,
) -> Result<(Envelope, Bytes), WireError> {
    envelope::decode(message, max_size)
}

/// Identifier of a queued outgoing message (a varint on the wire, unique per sender).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageId(pub u64);

/// Scheduling class of an outgoing message. Higher classes are always served first; within a
/// class, messages start in push order and their chunks interleave round-robin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[non_exhaustive]
pub enum Priority {
    /// Control traffic (pings, cancels, credits, closes).
    High,
    /// RPC calls, replies and notifications.
    #[default]
    Normal,
    /// Bulk transfers.
    Low,
}

impl Priority {
    const COUNT: usize = 3;

    fn index(self) -> usize {
        match self {
            Self::High => 0,
            Self::Normal => 1,
            Self::Low => 2,
        }
    }
}

/// Builds both halves from session keys.
pub fn session(keys: &SessionKeys, config: WireConfig) -> (WireSender, WireReceiver) {
    (
        WireSender::new(&keys.send, &config),
        WireReceiver::new(&keys.recv, &config),
    )
}

/// Raw frame access for fuzzing and adversarial tests: seal arbitrary frame bytes with a key,
/// bypassing every check the sender makes. Not part of the stable API.
#[doc(hidden)]
pub mod testing {
    use super::record::Sealer;

    /// Frame kind of a chunk.
    pub const KIND_CHUNK: u8 = super::frame::KIND_CHUNK;
    /// Chunk flag: first chunk, declares the total length.
    pub const FLAG_FIRST: u8 = super::frame::FLAG_FIRST;
    /// Chunk flag: last chunk.
    pub const FLAG_LAST: u8 = super::frame::FLAG_LAST;
    /// Chunk flag: the message is raw-deflate compressed.
    pub const FLAG_COMPRESSED: u8 = super::frame::FLAG_COMPRESSED;

    /// Seals caller-built frames into records with consecutive counters from 0.
    #[derive(Debug)]
    pub struct FrameSealer(Sealer);

    impl FrameSealer {
        /// A sealer for the direction keyed by `key`.
        pub fn new(key: &[u8; 32]) -> Self {
            Self(Sealer::new(key))
        }

        /// Seals `frame` as the next record.
        pub fn seal(&mut self, frame: &[u8]) -> Option<Vec<u8>> {
            super::record::seal_one(&mut self.0, frame)
        }
    }

    /// Raw-deflates `input` at `level` exactly as messages are compressed.
    pub fn deflate(input: &[u8], level: u32) -> Vec<u8> {
        // A limit above any possible output size never triggers the early exit.
        let limit = input.len() + input.len() / 8 + 1024;
        super::compress::deflate_parts(&[input], level, limit).unwrap_or_default()
    }

    /// Inflates raw deflate within `max_size`, exactly as messages are decompressed.
    pub fn inflate(input: &[u8], max_size: usize) -> Result<Vec<u8>, super::WireError> {
        super::compress::inflate_bounded(input, max_size)
    }

    /// Opens records into their plaintext frames, checking counters like the receiver.
    #[derive(Debug)]
    pub struct FrameOpener(super::record::Opener);

    impl FrameOpener {
        /// An opener for the direction keyed by `key`.
        pub fn new(key: &[u8; 32]) -> Self {
            Self(super::record::Opener::new(key))
        }

        /// Opens the next record and returns its frame bytes.
        pub fn open(&mut self, record: &[u8]) -> Result<Vec<u8>, super::WireError> {
            self.0.open(record)
        }
    }

    /// Builds a chunk frame: kind, flags, varint id, varint total when given, chunk bytes.
    pub fn chunk_frame(flags: u8, id: u64, total: Option<u64>, chunk: &[u8]) -> Vec<u8> {
        let mut out = vec![KIND_CHUNK, flags];
        super::varint::write(&mut out, id);
        if let Some(total) = total {
            super::varint::write(&mut out, total);
        }
        out.extend_from_slice(chunk);
        out
    }
}
