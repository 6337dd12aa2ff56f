//! Signaling client: connects to a peerlink signaling server, authenticates with the node's
//! identity, joins rooms, sends and receives signals and presence, and opens relay links
//! (peerlink transports whose frames travel through the server). It reconnects on its own
//! with exponential backoff and jitter, re-joining its rooms. The protocol is in
//! `docs/protocol/signaling.md`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use peerlink::signaling::{SignalingClient, SignalingConfig, SignalingEvent};
//! use peerlink::core::Identity;
//!
//! let identity = Identity::generate(&mut rand::rngs::OsRng);
//! let config = SignalingConfig::new("ws://127.0.0.1:8787/ws", identity, "alice", "laptop");
//! let (client, mut events) = SignalingClient::connect(config).await?;
//! let members = client.join("lobby").await?;
//! println!("already here: {members:?}");
//! while let Some(event) = events.next().await {
//!     if let SignalingEvent::Signal { from, data } = event {
//!         println!("{} says {data}", from.device_id);
//!     }
//! }
//! # Ok(()) }
//! ```

pub(crate) mod client;
mod hybrid;
mod webrtc;
pub(crate) mod wire;

pub use client::{SignalingClient, SignalingEvents};
pub use hybrid::{HybridAcceptor, HybridConfig, HybridConnection, HybridEvent, HybridEvents};
pub use webrtc::{
    CONNECTION_ID_PREFIX, DialError, DialerConfig, Incoming, IncomingLinks, WebRtcDialer,
};

use std::time::Duration;

use peerlink_core::Identity;
use serde::{Deserialize, Serialize};

use crate::transport::relay::RelayTransport;

/// Settings of a [`SignalingClient`].
#[derive(Clone)]
pub struct SignalingConfig {
    /// Server URLs (`ws://host:port/ws`), tried in turn; after a disconnect the client moves on
    /// to the next one.
    pub urls: Vec<String>,
    /// The identity the client authenticates with.
    pub identity: Identity,
    /// The user id announced to other members.
    pub user_id: String,
    /// The device id others address signals and relay frames to.
    pub device_id: String,
    /// Admission token, when the server requires one.
    pub token: Option<String>,
    /// Deadline for connecting and authenticating once. Default 10 s.
    pub connect_timeout: Duration,
    /// Deadline for a request's reply. Default 10 s.
    pub request_timeout: Duration,
    /// First reconnect delay; doubles per failed attempt. Default 250 ms.
    pub backoff_initial: Duration,
    /// Largest reconnect delay. Default 10 s.
    pub backoff_max: Duration,
    /// Interval of the client's own pings, which detect a dead server. Default 15 s.
    pub ping_interval: Duration,
    /// How long the server may stay silent after the client sent it something it answers (a
    /// request, a ping) before the connection is taken for dead and replaced. After a network
    /// change the old TCP connection often neither delivers nor fails; this notices it
    /// within one request instead of the server's full silence limit. Default 5 s.
    pub answer_timeout: Duration,
}

impl std::fmt::Debug for SignalingConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalingConfig")
            .field("urls", &self.urls)
            .field("identity", &self.identity)
            .field("user_id", &self.user_id)
            .field("device_id", &self.device_id)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl SignalingConfig {
    /// Defaults for one server URL.
    pub fn new(
        url: impl Into<String>,
        identity: Identity,
        user_id: impl Into<String>,
        device_id: impl Into<String>,
    ) -> Self {
        Self {
            urls: vec![url.into()],
            identity,
            user_id: user_id.into(),
            device_id: device_id.into(),
            token: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
            ping_interval: Duration::from_secs(15),
            answer_timeout: Duration::from_secs(5),
        }
    }
}

/// A room member as the server lists it (identity taken from its authenticated session).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// Its device id.
    pub device_id: String,
    /// Its user id.
    pub user_id: String,
    /// Its Ed25519 public key, standard base64.
    pub public_key: String,
}

/// TURN credentials with the URLs to use them on.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct TurnCredentials {
    /// `<expiry>:<deviceId>`.
    pub username: String,
    /// The password.
    pub credential: String,
    /// Seconds they stay valid.
    pub ttl: u64,
    /// STUN and TURN URLs.
    pub urls: Vec<String>,
}

impl std::fmt::Debug for TurnCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnCredentials")
            .field("username", &self.username)
            .field("credential", &"<redacted>")
            .field("ttl", &self.ttl)
            .field("urls", &self.urls)
            .finish()
    }
}

/// Something the signaling client saw.
#[derive(Debug)]
#[non_exhaustive]
pub enum SignalingEvent {
    /// Authenticated (first time or after a reconnect) to the server at `url`.
    Connected {
        /// The server URL.
        url: String,
    },
    /// The connection to the server ended; the client reconnects by itself.
    Disconnected {
        /// Why, in words.
        reason: String,
    },
    /// The members of a room, after joining or re-joining it.
    Members {
        /// The room.
        room: String,
        /// The other members.
        members: Vec<Member>,
    },
    /// A member joined a room.
    Joined {
        /// The room.
        room: String,
        /// Who.
        member: Member,
    },
    /// A member left a room.
    Left {
        /// The room.
        room: String,
        /// Its device id.
        device_id: String,
    },
    /// A signal from another device.
    Signal {
        /// The sender, as authenticated by the server.
        from: Member,
        /// The JSON it sent.
        data: serde_json::Value,
    },
    /// Another device opened a relay link to this one.
    IncomingRelay {
        /// The peer's device id.
        from: String,
        /// The link; run [`crate::Node::connect`] on it as responder with
        /// [`RelayTransport::binding`].
        transport: RelayTransport,
    },
    /// An error the server sent outside any request (for example a relay frame to a device
    /// that went offline).
    Error {
        /// The server's error code.
        code: String,
        /// The device concerned, if any.
        to: Option<String>,
    },
}

/// Errors of the signaling client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignalingError {
    /// The server refused a request or the authentication.
    #[error("server error {code}: {message}")]
    Server {
        /// The documented error code (`target_offline`, `bad_signature`, …).
        code: String,
        /// The server's text.
        message: String,
    },
    /// The server could not be reached or the upgrade failed.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The URL is not a ws:// or wss:// URL.
    #[error("invalid server URL {0}")]
    InvalidUrl(String),
    /// No reply in time.
    #[error("signaling request timed out")]
    Timeout,
    /// The connection dropped before the reply came (the client reconnects by itself).
    #[error("disconnected from the signaling server")]
    Disconnected,
    /// The client was closed.
    #[error("signaling client closed")]
    Closed,
    /// The server broke the protocol.
    #[error("signaling protocol error: {0}")]
    Protocol(String),
}

impl SignalingError {
    /// Stable code: the server's code for [`SignalingError::Server`], else a fixed name.
    pub fn code(&self) -> &str {
        match self {
            Self::Server { code, .. } => code,
            Self::Connect(_) => "connect_failed",
            Self::InvalidUrl(_) => "invalid_url",
            Self::Timeout => "timeout",
            Self::Disconnected => "disconnected",
            Self::Closed => "closed",
            Self::Protocol(_) => "signaling_protocol",
        }
    }
}
