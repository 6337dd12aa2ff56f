//! The one error type crossing into Swift and Kotlin.
//!
//! Each variant groups failures an application handles the same way (a Kotlin `catch` clause,
//! a Swift `catch` pattern); `code` inside it is the stable snake_case code of the Rust error
//! (`Error::code()`), the same string the Node addon puts in `err.code`.

use peerlink::{CloseReason, RpcError};

/// A peerlink failure. `code` is stable and machine-readable; `detail` is for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
#[non_exhaustive]
pub enum PeerlinkError {
    /// The trust policy refused the peer (`untrusted`) or the peer refused us
    /// (`rejected_by_peer`).
    #[error("{code}: {detail}")]
    Untrusted {
        /// Stable code.
        code: String,
        /// Human-readable text.
        detail: String,
    },
    /// Any other handshake failure (`bad_signature`, `clock_skew`, `binding_not_accepted`,
    /// `handshake_timeout`…).
    #[error("{code}: {detail}")]
    Handshake {
        /// Stable code.
        code: String,
        /// Human-readable text.
        detail: String,
    },
    /// The peer has no handler with the called name (`no_handler`).
    #[error("{code}: {detail}")]
    NoHandler {
        /// Stable code.
        code: String,
        /// Human-readable text.
        detail: String,
    },
    /// The remote handler failed (`remote`); `remote_code` is the handler's own code.
    #[error("{code} ({remote_code}): {detail}")]
    Remote {
        /// Stable code (`remote`).
        code: String,
        /// The handler's message.
        detail: String,
        /// The code the remote handler chose.
        remote_code: String,
    },
    /// A deadline passed: a call's timeout or establishing a link (`timeout`).
    #[error("{code}: {detail}")]
    Timeout {
        /// Stable code.
        code: String,
        /// Human-readable text.
        detail: String,
    },
    /// The call was cancelled (`cancelled`).
    #[error("{code}: {detail}")]
    Cancelled {
        /// Stable code.
        code: String,
        /// Human-readable text.
        detail: String,
    },
    /// The connection is closed (`closed`); `reason` is the close reason's code
    /// (`closed_locally`, `closed_by_peer`, `transport_closed`, `node_closed`…).
    #[error("{code} ({reason}): {detail}")]
    Closed {
        /// Stable code (`closed`).
        code: String,
        /// Human-readable text.
        detail: String,
        /// The close reason's code.
        reason: String,
    },
    /// The node was shut down (`node_closed`).
    #[error("{code}: {detail}")]
    NodeClosed {
        /// Stable code.
        code: String,
        /// Human-readable text.
        detail: String,
    },
    /// A byte stream was reset (`stream_reset`); `detail` holds the reset code.
    #[error("{code}: {detail}")]
    StreamReset {
        /// Stable code.
        code: String,
        /// Human-readable text.
        detail: String,
    },
    /// The link failed (`connect_failed`, `io`, `transport_closed`, `transport_protocol`).
    #[error("{code}: {detail}")]
    Transport {
        /// Stable code.
        code: String,
        /// Human-readable text.
        detail: String,
    },
    /// An argument was rejected (`invalid_url`, `invalid_identity`, `invalid_config`).
    #[error("{code}: {detail}")]
    InvalidArgument {
        /// Stable code.
        code: String,
        /// Human-readable text.
        detail: String,
    },
    /// A message exceeds the size limit (`too_large`).
    #[error("{code}: {detail}")]
    TooLarge {
        /// Stable code.
        code: String,
        /// Human-readable text.
        detail: String,
    },
    /// The peer broke the wire or connection protocol (`decrypt`, `malformed`,
    /// `protocol_violation`…), or encoding failed.
    #[error("{code}: {detail}")]
    Protocol {
        /// Stable code.
        code: String,
        /// Human-readable text.
        detail: String,
    },
    /// Thrown by an application's `RpcHandler` to fail a call with its own `code`; the caller
    /// receives `Remote` with `remote_code == code`.
    #[error("{code}: {detail}")]
    Handler {
        /// The application's code.
        code: String,
        /// The application's message.
        detail: String,
    },
    /// A failure inside the bindings themselves (a callback threw something unexpected, a
    /// task failed): `internal`.
    #[error("{code}: {detail}")]
    Internal {
        /// Stable code.
        code: String,
        /// Human-readable text.
        detail: String,
    },
}

impl PeerlinkError {
    /// The variant for a stable `code` with `detail`.
    pub(crate) fn from_code(code: &str, detail: String) -> Self {
        let code_s = code.to_owned();
        match code {
            "untrusted" | "rejected_by_peer" => Self::Untrusted {
                code: code_s,
                detail,
            },
            "bad_signature"
            | "key_mismatch"
            | "unexpected_remote"
            | "clock_skew"
            | "version_mismatch"
            | "binding_not_accepted"
            | "transcript_mismatch"
            | "handshake_timeout"
            | "malformed_handshake"
            | "handshake" => Self::Handshake {
                code: code_s,
                detail,
            },
            "no_handler" => Self::NoHandler {
                code: code_s,
                detail,
            },
            "timeout" => Self::Timeout {
                code: code_s,
                detail,
            },
            "cancelled" => Self::Cancelled {
                code: code_s,
                detail,
            },
            "node_closed" => Self::NodeClosed {
                code: code_s,
                detail,
            },
            "stream_reset" => Self::StreamReset {
                code: code_s,
                detail,
            },
            "connect_failed" | "io" | "transport_closed" | "transport_protocol" => {
                Self::Transport {
                    code: code_s,
                    detail,
                }
            }
            "invalid_url" | "invalid_identity" | "invalid_config" | "invalid_argument"
            | "invalid_state" => Self::InvalidArgument {
                code: code_s,
                detail,
            },
            "too_large" => Self::TooLarge {
                code: code_s,
                detail,
            },
            "internal" => Self::Internal {
                code: code_s,
                detail,
            },
            _ => Self::Protocol {
                code: code_s,
                detail,
            },
        }
    }

    /// The error of a closed connection.
    pub(crate) fn closed(reason: &CloseReason) -> Self {
        Self::Closed {
            code: "closed".into(),
            detail: format!("connection closed: {reason}"),
            reason: reason.code().into(),
        }
    }

    /// An `internal` failure.
    pub(crate) fn internal(detail: impl Into<String>) -> Self {
        Self::Internal {
            code: "internal".into(),
            detail: detail.into(),
        }
    }

    /// The stable code.
    pub fn code(&self) -> &str {
        match self {
            Self::Untrusted { code, .. }
            | Self::Handshake { code, .. }
            | Self::NoHandler { code, .. }
            | Self::Remote { code, .. }
            | Self::Timeout { code, .. }
            | Self::Cancelled { code, .. }
            | Self::Closed { code, .. }
            | Self::NodeClosed { code, .. }
            | Self::StreamReset { code, .. }
            | Self::Transport { code, .. }
            | Self::InvalidArgument { code, .. }
            | Self::TooLarge { code, .. }
            | Self::Protocol { code, .. }
            | Self::Handler { code, .. }
            | Self::Internal { code, .. } => code,
        }
    }

    /// The human-readable text.
    pub fn detail(&self) -> &str {
        match self {
            Self::Untrusted { detail, .. }
            | Self::Handshake { detail, .. }
            | Self::NoHandler { detail, .. }
            | Self::Remote { detail, .. }
            | Self::Timeout { detail, .. }
            | Self::Cancelled { detail, .. }
            | Self::Closed { detail, .. }
            | Self::NodeClosed { detail, .. }
            | Self::StreamReset { detail, .. }
            | Self::Transport { detail, .. }
            | Self::InvalidArgument { detail, .. }
            | Self::TooLarge { detail, .. }
            | Self::Protocol { detail, .. }
            | Self::Handler { detail, .. }
            | Self::Internal { detail, .. } => detail,
        }
    }
}

impl From<peerlink::Error> for PeerlinkError {
    fn from(e: peerlink::Error) -> Self {
        match e {
            peerlink::Error::Rpc(rpc) => rpc.into(),
            peerlink::Error::Closed(reason) => Self::closed(&reason),
            peerlink::Error::StreamReset { code } => Self::StreamReset {
                code: "stream_reset".into(),
                detail: code,
            },
            other => Self::from_code(other.code(), other.to_string()),
        }
    }
}

impl From<RpcError> for PeerlinkError {
    fn from(e: RpcError) -> Self {
        match e {
            RpcError::Remote { code, message } => Self::Remote {
                code: "remote".into(),
                detail: message,
                remote_code: code,
            },
            RpcError::Closed { reason } => Self::closed(&reason),
            other => Self::from_code(other.code(), other.to_string()),
        }
    }
}

/// A Swift or Kotlin callback threw something other than a `PeerlinkError`.
impl From<uniffi::UnexpectedUniFFICallbackError> for PeerlinkError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        Self::internal(format!("callback failed: {}", e.reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peerlink::{HandshakeError, TrustLevel};

    #[test]
    fn variants_follow_the_rust_codes() {
        let untrusted: PeerlinkError = peerlink::Error::Handshake(HandshakeError::Untrusted {
            level: TrustLevel::UNTRUSTED,
        })
        .into();
        assert!(matches!(&untrusted, PeerlinkError::Untrusted { code, .. } if code == "untrusted"));

        let no_handler: PeerlinkError = RpcError::NoHandler { name: "x".into() }.into();
        assert!(matches!(no_handler, PeerlinkError::NoHandler { .. }));
        assert_eq!(no_handler.code(), "no_handler");

        let timeout: PeerlinkError = peerlink::Error::Rpc(RpcError::Timeout).into();
        assert!(matches!(timeout, PeerlinkError::Timeout { .. }));

        let closed: PeerlinkError = RpcError::Closed {
            reason: CloseReason::NodeClosed,
        }
        .into();
        assert!(
            matches!(&closed, PeerlinkError::Closed { code, reason, .. } if code == "closed" && reason == "node_closed")
        );

        let remote: PeerlinkError = RpcError::Remote {
            code: "denied".into(),
            message: "no".into(),
        }
        .into();
        assert_eq!(
            remote,
            PeerlinkError::Remote {
                code: "remote".into(),
                detail: "no".into(),
                remote_code: "denied".into()
            }
        );

        let url: PeerlinkError = peerlink::Error::InvalidUrl {
            url: "x".into(),
            reason: "y".into(),
        }
        .into();
        assert!(matches!(url, PeerlinkError::InvalidArgument { .. }));
        assert_eq!(url.code(), "invalid_url");
    }
}
