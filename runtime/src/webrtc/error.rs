//! Errors of the WebRTC link.

use std::time::Duration;

/// Why a WebRTC link operation failed.
///
/// Errors that come from the remote side or the signaling path (malformed SDP, malformed
/// candidates, unexpected signals) have their own variants so callers can tell a broken peer
/// from a local failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebRtcError {
    /// A signal could not be parsed as JSON of the documented shape.
    #[error("malformed signal: {0}")]
    MalformedSignal(String),
    /// A session description could not be parsed or lacks what a data-channel link needs.
    #[error("malformed SDP: {0}")]
    MalformedSdp(String),
    /// An ICE candidate line could not be parsed or was rejected.
    #[error("malformed ICE candidate: {0}")]
    MalformedCandidate(String),
    /// A signal exceeded the size limit for its kind.
    #[error("{what} of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// What was too large (`"SDP"`, `"candidate"`, `"signal"`).
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A signal arrived that the link cannot accept in its current state (an answer to an
    /// answerer, an offer to an offerer, a second answer, a signal after close).
    #[error("unexpected {signal} signal: {reason}")]
    UnexpectedSignal {
        /// The signal's type.
        signal: &'static str,
        /// Why it is not accepted now.
        reason: &'static str,
    },
    /// More remote candidates arrived before the remote description than the link buffers.
    #[error("more than {0} remote candidates arrived before the remote description")]
    TooManyEarlyCandidates(usize),
    /// The signal names another connection id than this link's.
    #[error("signal for connection {got:?}, this link is {expected:?}")]
    WrongConnection {
        /// This link's connection id.
        expected: String,
        /// The id the signal carried.
        got: String,
    },
    /// An ICE server URL is not usable (bad syntax, or missing TURN credentials).
    #[error("ICE server URL {url:?}: {reason}")]
    BadIceServer {
        /// The URL as configured.
        url: String,
        /// Why it is rejected.
        reason: String,
    },
    /// A certificate in [`WebRtcConfig::turn_tls_roots`](super::WebRtcConfig::turn_tls_roots)
    /// (the bindings' `turnTlsRoots`) is not a usable trust anchor, or an entry of
    /// [`WebRtcOptions::turn_tls_roots`](super::WebRtcOptions::turn_tls_roots) is neither PEM
    /// nor DER.
    #[error("turnTlsRoots[{index}]: {reason}")]
    BadTurnTlsRoot {
        /// Its position in the list.
        index: usize,
        /// Why it is rejected.
        reason: String,
    },
    /// A value of [`WebRtcOptions`](super::WebRtcOptions) is not usable (a bind address
    /// that does not parse, an unknown ICE transport policy).
    #[error("{field}: {reason}")]
    InvalidOption {
        /// The option as the bindings spell it, with the entry's index for a list
        /// (`bindAddrs[1]`, `iceTransportPolicy`).
        field: String,
        /// Why it is rejected.
        reason: String,
    },
    /// The relay-only policy was requested but no usable TURN server is configured.
    #[error("ICE transport policy is relay-only but no usable TURN server is configured")]
    NoUsableRelay,
    /// Gathering did not complete in time (non-trickle mode sends what it has instead; this is
    /// returned only when not even one candidate was gathered).
    #[error("ICE gathering produced no candidate within {0:?}")]
    GatheringTimeout(Duration),
    /// The description lacks a DTLS fingerprint, or carries one in an unsupported algorithm.
    #[error("no sha-256 DTLS fingerprint in the {0} description")]
    MissingFingerprint(&'static str),
    /// The connection failed (ICE or DTLS) or was closed.
    #[error("connection {0}")]
    ConnectionLost(&'static str),
    /// The data channel is closed.
    #[error("data channel closed")]
    ChannelClosed,
    /// A message is larger than the peer's `max-message-size`.
    #[error("message of {size} bytes exceeds the peer's max-message-size of {limit} bytes")]
    MessageTooLarge {
        /// The message size.
        size: usize,
        /// The peer's limit.
        limit: usize,
    },
    /// A local socket operation failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The WebRTC engine reported an error.
    #[error("webrtc engine: {0}")]
    Engine(String),
}

impl WebRtcError {
    pub(crate) fn engine(err: ::webrtc::error::Error) -> Self {
        Self::Engine(err.to_string())
    }
}
