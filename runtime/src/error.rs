//! Error types, one per layer, each with a stable snake_case code for the bindings.

use peerlink_core::{HandshakeError, IdentityError, WireError};

/// Errors of a transport (the link below the wire layer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The link could not be established (TCP connect, TLS or WebSocket upgrade failed).
    #[error("connect failed: {0}")]
    Connect(String),
    /// An I/O error on an established link.
    #[error("i/o error: {0}")]
    Io(String),
    /// The peer broke the transport protocol (for example a text WebSocket message).
    #[error("transport protocol error: {0}")]
    Protocol(String),
    /// A message larger than the link carries.
    #[error("message of {size} bytes exceeds the link limit of {limit}")]
    TooLarge {
        /// Size of the rejected message.
        size: usize,
        /// The link's limit.
        limit: usize,
    },
    /// The link is closed.
    #[error("transport closed")]
    Closed,
    /// Establishing the link took too long.
    #[error("transport timed out")]
    Timeout,
}

impl TransportError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Connect(_) => "connect_failed",
            Self::Io(_) => "io",
            Self::Protocol(_) => "transport_protocol",
            Self::TooLarge { .. } => "too_large",
            Self::Closed => "transport_closed",
            Self::Timeout => "timeout",
        }
    }
}

/// Why a connection closed. Delivered by [`crate::Connection::closed`] and
/// [`crate::NodeEvent::Closed`], and carried by [`RpcError::Closed`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// This side called `close`.
    #[error("closed locally: {message}")]
    Local {
        /// The reason given to `close`.
        message: String,
    },
    /// The peer closed the connection with a reason.
    #[error("closed by peer ({code}): {message}")]
    Remote {
        /// The peer's stable code.
        code: String,
        /// The peer's text (untrusted).
        message: String,
    },
    /// The link ended without an orderly close (peer gone, socket reset).
    #[error("transport closed")]
    TransportClosed,
    /// The link failed.
    #[error("transport error: {0}")]
    Transport(TransportError),
    /// The peer sent something the wire layer rejects; the connection cannot continue.
    #[error("wire protocol violation: {0}")]
    Wire(WireError),
    /// The peer broke a connection-level rule (for example exceeded stream credit).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The node closed (all its connections go with it).
    #[error("node closed")]
    NodeClosed,
}

impl CloseReason {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Local { .. } => "closed_locally",
            Self::Remote { .. } => "closed_by_peer",
            Self::TransportClosed => "transport_closed",
            Self::Transport(e) => e.code(),
            Self::Wire(e) => wire_code(e),
            Self::Protocol(_) => "protocol_violation",
            Self::NodeClosed => "node_closed",
        }
    }
}

/// Errors of an RPC call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// The peer has no handler with this name.
    #[error("no handler for {name:?}")]
    NoHandler {
        /// The name that was called.
        name: String,
    },
    /// The handler failed with an application error.
    #[error("remote error ({code}): {message}")]
    Remote {
        /// The handler's code.
        code: String,
        /// The handler's message.
        message: String,
    },
    /// No reply within the call's timeout.
    #[error("call timed out")]
    Timeout,
    /// The call was cancelled (by the peer or because the handler was aborted).
    #[error("call cancelled")]
    Cancelled,
    /// The connection closed before a reply arrived.
    #[error("connection closed: {reason}")]
    Closed {
        /// Why it closed.
        reason: CloseReason,
    },
    /// The arguments or the result exceed the message size limit.
    #[error("message too large")]
    TooLarge,
    /// The arguments could not be encoded.
    #[error("encode failed: {0}")]
    Encode(String),
    /// The result could not be decoded.
    #[error("decode failed: {0}")]
    Decode(String),
}

impl RpcError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoHandler { .. } => "no_handler",
            Self::Remote { .. } => "remote",
            Self::Timeout => "timeout",
            Self::Cancelled => "cancelled",
            Self::Closed { .. } => "closed",
            Self::TooLarge => "too_large",
            Self::Encode(_) => "encode",
            Self::Decode(_) => "decode",
        }
    }
}

/// Errors of the public API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The link failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The handshake failed (identity, binding, trust, clock, timeout…).
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The wire layer rejected a message.
    #[error("wire error: {0}")]
    Wire(#[from] WireError),
    /// An RPC failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The configured identity or device info is invalid.
    #[error("invalid identity or device info: {0}")]
    Identity(#[from] IdentityError),
    /// The URL is not a usable `ws://` or `wss://` URL.
    #[error("invalid url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The connection is closed.
    #[error("connection closed: {0}")]
    Closed(CloseReason),
    /// The node is closed.
    #[error("node closed")]
    NodeClosed,
    /// A byte stream was reset by the peer (or by this side).
    #[error("stream reset: {code}")]
    StreamReset {
        /// The stable code given by the side that reset it.
        code: String,
    },
    /// A socket operation failed (for example binding a listener).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Stable snake_case code, exposed by the bindings as `err.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Transport(e) => e.code(),
            Self::Handshake(e) => handshake_code(e),
            Self::Wire(e) => wire_code(e),
            Self::Rpc(e) => e.code(),
            Self::Identity(_) => "invalid_identity",
            Self::InvalidUrl { .. } => "invalid_url",
            Self::Closed(_) => "closed",
            Self::NodeClosed => "node_closed",
            Self::StreamReset { .. } => "stream_reset",
            Self::Io(_) => "io",
        }
    }
}

/// Stable code of a handshake failure.
pub(crate) fn handshake_code(e: &HandshakeError) -> &'static str {
    match e {
        HandshakeError::BadSignature(_) => "bad_signature",
        HandshakeError::KeyMismatch => "key_mismatch",
        HandshakeError::UnexpectedRemote { .. } => "unexpected_remote",
        HandshakeError::ClockSkew { .. } => "clock_skew",
        HandshakeError::Untrusted { .. } => "untrusted",
        HandshakeError::RejectedByPeer { .. } => "rejected_by_peer",
        HandshakeError::VersionMismatch { .. } => "version_mismatch",
        HandshakeError::BindingNotAccepted(_) => "binding_not_accepted",
        HandshakeError::TranscriptMismatch => "transcript_mismatch",
        HandshakeError::Timeout => "handshake_timeout",
        HandshakeError::TransportClosed => "transport_closed",
        HandshakeError::Malformed(_) => "malformed_handshake",
        HandshakeError::InvalidConfig(_) => "invalid_config",
        _ => "handshake",
    }
}

/// Stable code of a wire failure.
pub(crate) fn wire_code(e: &WireError) -> &'static str {
    match e {
        WireError::Decrypt => "decrypt",
        WireError::Sequence { .. } => "sequence",
        WireError::Version(_) => "wire_version",
        WireError::Malformed(_) => "malformed",
        WireError::TooLarge { .. } => "too_large",
        WireError::ReassemblyLimit(_) => "reassembly_limit",
        WireError::Decompress(_) => "decompress",
        _ => "wire",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peerlink_core::{TrustLevel, handshake::RejectReason};

    #[test]
    fn codes_are_stable_snake_case() {
        let cases: Vec<(Error, &str)> = vec![
            (
                RpcError::NoHandler { name: "x".into() }.into(),
                "no_handler",
            ),
            (RpcError::Timeout.into(), "timeout"),
            (
                RpcError::Remote {
                    code: "boom".into(),
                    message: String::new(),
                }
                .into(),
                "remote",
            ),
            (
                RpcError::Closed {
                    reason: CloseReason::TransportClosed,
                }
                .into(),
                "closed",
            ),
            (
                HandshakeError::Untrusted {
                    level: TrustLevel::UNTRUSTED,
                }
                .into(),
                "untrusted",
            ),
            (
                HandshakeError::BadSignature(IdentityError::BadSignature).into(),
                "bad_signature",
            ),
            (
                HandshakeError::ClockSkew {
                    skew_ms: 1,
                    allowed_ms: 0,
                }
                .into(),
                "clock_skew",
            ),
            (
                HandshakeError::BindingNotAccepted("ws://x:1".into()).into(),
                "binding_not_accepted",
            ),
            (
                HandshakeError::RejectedByPeer {
                    reason: RejectReason::Untrusted,
                    message: String::new(),
                }
                .into(),
                "rejected_by_peer",
            ),
            (WireError::Decrypt.into(), "decrypt"),
            (TransportError::Closed.into(), "transport_closed"),
            (
                Error::InvalidUrl {
                    url: "x".into(),
                    reason: "y".into(),
                },
                "invalid_url",
            ),
            (
                Error::StreamReset {
                    code: "cancelled".into(),
                },
                "stream_reset",
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code, "{error}");
            assert!(code.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        }
    }

    #[test]
    fn close_reason_codes_follow_the_cause() {
        assert_eq!(CloseReason::Wire(WireError::Decrypt).code(), "decrypt");
        assert_eq!(
            CloseReason::Transport(TransportError::Io("x".into())).code(),
            "io"
        );
        assert_eq!(CloseReason::NodeClosed.code(), "node_closed");
    }
}
