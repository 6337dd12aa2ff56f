//! The sending half: per-priority FIFO queues, round-robin chunk interleaving, sealing.

use std::collections::VecDeque;

use bytes::Bytes;

use super::frame::{self, ChunkHeader, FLAG_COMPRESSED, FLAG_FIRST, FLAG_LAST};
use super::record::{self, Sealer};
use super::{EncodedMessage, MIN_RECORD_SIZE, MessageId, Priority, WireConfig, WireError};

/// One queued message and how far it has been sent.
#[derive(Debug)]
struct Outgoing {
    id: u64,
    bytes: Bytes,
    compressed: bool,
    /// Bytes already handed out in records.
    sent: usize,
    /// Whether the FIRST chunk went out.
    started: bool,
}

/// Sending half: queue, interleave, chunk, seal.
///
/// Each priority level holds one queue in push order. [`WireSender::poll_transmit`] takes the
/// highest level with something sendable and, within it, the first message that may send a
/// chunk; after its chunk the message goes to the back of its queue. So every queued message
/// gets one chunk per round and a one-record message behind a 64 MiB transfer leaves within
/// one round.
///
/// The receiver bounds partially received messages (count and bytes); the sender mirrors the
/// same [`WireConfig`] limits so an honest sender never trips them: a message that needs more
/// than one record starts only when the messages already in flight leave room for its whole
/// length. Multi-record messages start in push order within a level (a waiting large message
/// is not overtaken by later multi-record ones); single-record messages are never held back.
#[derive(Debug)]
pub struct WireSender {
    sealer: Sealer,
    max_record_size: usize,
    max_message_size: usize,
    max_partial_messages: usize,
    max_partial_bytes: usize,
    next_id: u64,
    queues: [VecDeque<Outgoing>; Priority::COUNT],
    in_flight_count: usize,
    in_flight_bytes: usize,
    queued_bytes: usize,
}

impl WireSender {
    pub(super) fn new(key: &[u8; 32], config: &WireConfig) -> Self {
        Self {
            sealer: Sealer::new(key),
            max_record_size: config.max_record_size.max(MIN_RECORD_SIZE),
            max_message_size: config.max_message_size,
            max_partial_messages: config.max_partial_messages,
            max_partial_bytes: config.max_partial_bytes,
            next_id: 0,
            queues: Default::default(),
            in_flight_count: 0,
            in_flight_bytes: 0,
            queued_bytes: 0,
        }
    }

    /// Queues a message at [`Priority::Normal`]. Fails with `TooLarge` above the configured
    /// maximum (the smaller of `max_message_size` and `max_partial_bytes`).
    pub fn push(&mut self, message: EncodedMessage) -> Result<MessageId, WireError> {
        self.push_with_priority(message, Priority::Normal)
    }

    /// Queues a message at the given priority. Higher levels are always served first.
    pub fn push_with_priority(
        &mut self,
        message: EncodedMessage,
        priority: Priority,
    ) -> Result<MessageId, WireError> {
        let limit = self.max_message_size.min(self.max_partial_bytes);
        let size = message.bytes.len();
        if size > limit {
            return Err(WireError::TooLarge {
                size: size as u64,
                limit: limit as u64,
            });
        }
        let id = self.next_id;
        self.next_id += 1;
        self.queued_bytes += size;
        self.queues[priority.index()].push_back(Outgoing {
            id,
            bytes: message.bytes,
            compressed: message.compressed,
            sent: 0,
            started: false,
        });
        Ok(MessageId(id))
    }

    /// The next sealed record to send, or `None` when nothing is sendable (queue empty, or
    /// the record counter is exhausted after 2^64 − 1 records — the link must be rekeyed by
    /// reconnecting).
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.sealer.is_exhausted() {
            return None;
        }
        for level in 0..Priority::COUNT {
            if let Some(index) = self.next_sendable(level) {
                let mut message = self.queues[level].remove(index)?;
                let record = self.emit_chunk(&mut message);
                if message.sent < message.bytes.len() {
                    self.queues[level].push_back(message);
                }
                return record;
            }
        }
        None
    }

    /// Bytes queued and not yet handed out by `poll_transmit` (message bytes, not framing).
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Number of messages queued and not completely sent.
    pub fn queued_messages(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    /// Number of messages queued at `priority` or above and not completely sent.
    pub fn queued_messages_at_least(&self, priority: Priority) -> usize {
        self.queues[..=priority.index()]
            .iter()
            .map(VecDeque::len)
            .sum()
    }

    /// Changes the largest record size (for example when the link reports a new limit).
    /// Values below [`MIN_RECORD_SIZE`] are raised to it. Applies from the next record on.
    pub fn set_max_record_size(&mut self, size: usize) {
        self.max_record_size = size.max(MIN_RECORD_SIZE);
    }

    /// The largest record size in force.
    pub fn max_record_size(&self) -> usize {
        self.max_record_size
    }

    fn fits_one_record(&self, message: &Outgoing) -> bool {
        let header = ChunkHeader {
            flags: FLAG_FIRST | FLAG_LAST,
            id: message.id,
            total: Some(message.bytes.len() as u64),
        };
        header.len() + message.bytes.len() + record::OVERHEAD <= self.max_record_size
    }

    /// Index of the first message of `level` allowed to send a chunk now.
    fn next_sendable(&self, level: usize) -> Option<usize> {
        let mut multi_start_blocked = false;
        for (index, message) in self.queues[level].iter().enumerate() {
            if message.started || self.fits_one_record(message) {
                return Some(index);
            }
            if !multi_start_blocked {
                let room = self.in_flight_count < self.max_partial_messages
                    && self.in_flight_bytes + message.bytes.len() <= self.max_partial_bytes;
                if room {
                    return Some(index);
                }
                multi_start_blocked = true;
            }
        }
        None
    }

    fn emit_chunk(&mut self, message: &mut Outgoing) -> Option<Vec<u8>> {
        let total = message.bytes.len();
        let first = !message.started;
        let mut header = ChunkHeader {
            flags: 0,
            id: message.id,
            total: first.then_some(total as u64),
        };
        if first {
            header.flags |= FLAG_FIRST;
            if message.compressed {
                header.flags |= FLAG_COMPRESSED;
            }
        }
        // MIN_RECORD_SIZE leaves room for the longest header plus at least one byte.
        let room = self
            .max_record_size
            .saturating_sub(record::OVERHEAD + header.len())
            .max(1);
        let remaining = total - message.sent;
        let take = remaining.min(room);
        let last = take == remaining;
        if last {
            header.flags |= FLAG_LAST;
        }
        let mut buf = Sealer::start(header.len() + take);
        header.write(&mut buf);
        buf.extend_from_slice(message.bytes.get(message.sent..message.sent + take)?);
        let record = self.sealer.seal(buf)?;

        if first && !last {
            self.in_flight_count += 1;
            self.in_flight_bytes += total;
        } else if !first && last {
            self.in_flight_count -= 1;
            self.in_flight_bytes -= total;
        }
        message.started = true;
        message.sent += take;
        self.queued_bytes -= take;
        Some(record)
    }
}

// The longest frame header plus one data byte must fit the smallest record.
const _: () = assert!(MIN_RECORD_SIZE > record::OVERHEAD + frame::MAX_HEADER_LEN);
