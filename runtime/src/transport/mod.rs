//! One trait for every link: WebSocket (client and server), in-memory pairs, and later WebRTC
//! data channels and relays. See `docs/decisions/transport-trait.md`.
//!
//! A transport moves whole binary messages of at most [`Transport::max_message_size`] bytes,
//! in order and reliably. It is split into a sending and a receiving half so that one task can
//! block on reading while another blocks on writing, without a lock between them.

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::TransportError;

pub mod memory;
mod path;
pub mod relay;
pub mod websocket;

pub use path::{PathCandidate, PathProbe, PathReport};

/// Which kind of link a transport is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportKind {
    /// A WebSocket (ws:// or wss://).
    WebSocket,
    /// An in-process pair (tests, benchmarks).
    Memory,
    /// A WebRTC data channel.
    WebRtc,
    /// Frames relayed by a signaling server.
    Relay,
}

impl TransportKind {
    /// Stable lower-case name: `"websocket"`, `"memory"`, `"webrtc"`, `"relay"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WebSocket => "websocket",
            Self::Memory => "memory",
            Self::WebRtc => "webrtc",
            Self::Relay => "relay",
        }
    }
}

impl std::fmt::Display for TransportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reliable, ordered, message-oriented link.
pub trait Transport: Send + 'static {
    /// What kind of link this is.
    fn kind(&self) -> TransportKind;
    /// Largest message [`TransportSender::send`] accepts; the wire layer sizes records to it.
    fn max_message_size(&self) -> usize;
    /// Splits the link into independently usable halves.
    fn split(self: Box<Self>) -> (Box<dyn TransportSender>, Box<dyn TransportReceiver>);
    /// Where the connection reads the link's [`PathReport`] from; `None` (the default) means
    /// the report carries only [`Transport::kind`].
    fn path_probe(&self) -> Option<std::sync::Arc<dyn PathProbe>> {
        None
    }
}

/// Sending half of a transport.
#[async_trait]
pub trait TransportSender: Send + 'static {
    /// Sends one message. Waits while the link cannot take more (back-pressure); returns once
    /// the message is handed to the link, not when the peer has it.
    async fn send(&mut self, message: Bytes) -> Result<(), TransportError>;

    /// Like [`TransportSender::send`] but may keep the message in a local buffer until
    /// [`TransportSender::flush`], so that a burst of small messages costs one system call.
    /// The default sends at once.
    async fn feed(&mut self, message: Bytes) -> Result<(), TransportError> {
        self.send(message).await
    }

    /// Pushes out anything [`TransportSender::feed`] buffered.
    async fn flush(&mut self) -> Result<(), TransportError> {
        Ok(())
    }

    /// Closes the link in an orderly way (the peer's receiver then sees the end).
    async fn close(&mut self);
}

/// Receiving half of a transport.
#[async_trait]
pub trait TransportReceiver: Send + 'static {
    /// The next message, `Ok(None)` once the link ended. Must be cancel-safe: dropping the
    /// future before it completes loses no message (the driver selects on it against timers).
    async fn recv(&mut self) -> Result<Option<Bytes>, TransportError>;
}
