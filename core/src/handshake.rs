//! The link handshake: Noise XX with signed device info, as a sans-I/O state machine.
//!
//! INTERFACE PINNED — implementation in progress. See `docs/protocol/handshake.md`.

use std::time::{Duration, Instant};

use zeroize::Zeroize;

use crate::identity::{DeviceInfo, Identity, IdentityError, PublicKey, SignedDeviceInfo};

/// Handshake protocol version carried in the first byte of every handshake message.
pub const HANDSHAKE_VERSION: u8 = 1;

/// A Peers trust level. Any `i32` can be carried; the named constants are Peers' levels.
/// A level below [`TrustLevel::UNKNOWN`] (0) closes the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrustLevel(pub i32);

impl TrustLevel {
    /// Known bad actor.
    pub const MALICIOUS: Self = Self(-20);
    /// Not trusted; the link is refused.
    pub const UNTRUSTED: Self = Self(-10);
    /// Nothing known; the link is allowed.
    pub const UNKNOWN: Self = Self(0);
    /// A user seen for the first time.
    pub const NEW_USER: Self = Self(10);
    /// A new device of a known user.
    pub const NEW_DEVICE: Self = Self(20);
    /// Seen long enough to be known.
    pub const KNOWN: Self = Self(30);
    /// Explicitly trusted.
    pub const TRUSTED: Self = Self(50);
    /// One of our own devices.
    pub const SELF: Self = Self(100);

    /// Whether a link at this level may stay open (`level >= 0`).
    pub fn is_allowed(self) -> bool {
        self.0 >= 0
    }

    /// The Peers name of a named level, or `None` for other values.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            -20 => "Malicious",
            -10 => "Untrusted",
            0 => "Unknown",
            10 => "NewUser",
            20 => "NewDevice",
            30 => "Known",
            50 => "Trusted",
            100 => "Self",
            _ => return None,
        })
    }
}

/// What the prologue binds the handshake to, so a relayed or re-signalled link is detected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkBinding {
    /// The WebSocket URL the initiator dialled (normalised: lower-case scheme and host,
    /// explicit port, path kept, no trailing `/` on an empty path).
    WebSocketUrl(String),
    /// The sha-256 DTLS certificate fingerprints of offerer and answerer, from the SDPs.
    WebRtcFingerprints {
        /// The offerer's fingerprint as in SDP (`sha-256 AB:CD:…`).
        offerer: String,
        /// The answerer's fingerprint.
        answerer: String,
    },
    /// An in-process link; carries a free label (tests, benchmarks).
    Memory(String),
}

/// Tunables. `Default` gives the documented values.
#[derive(Debug, Clone)]
pub struct HandshakeConfig {
    /// Whole-handshake deadline (default 10 s).
    pub timeout: Duration,
    /// Allowed difference between the peer's device-info timestamp and our clock (default 5 min).
    pub max_clock_skew: Duration,
    /// Responder only: bindings it accepts. For WebSocket, the normalised URLs it serves.
    /// Empty means: accept any binding of the expected kind (used for in-memory links).
    pub accepted_bindings: Vec<LinkBinding>,
    /// Initiator only: if set, the responder must have this public key.
    pub expected_remote: Option<PublicKey>,
}

impl Default for HandshakeConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_clock_skew: Duration::from_secs(5 * 60),
            accepted_bindings: Vec::new(),
            expected_remote: None,
        }
    }
}

/// Why a handshake failed. Every failure closes the link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The peer's device-info signature does not verify (or its box key is not its own).
    #[error("bad device-info signature: {0}")]
    BadSignature(IdentityError),
    /// The device info names keys other than the Noise static key that proved possession.
    #[error("device info does not match the Noise static key")]
    KeyMismatch,
    /// The initiator expected another responder key.
    #[error("unexpected remote identity {actual}")]
    UnexpectedRemote {
        /// The key the peer proved.
        actual: PublicKey,
    },
    /// The peer's clock differs from ours by more than allowed.
    #[error("clock skew of {skew_ms} ms exceeds the allowed {allowed_ms} ms")]
    ClockSkew {
        /// Observed difference (absolute).
        skew_ms: u64,
        /// Configured limit.
        allowed_ms: u64,
    },
    /// Our trust policy rated the peer below 0.
    #[error("peer is untrusted (level {})", level.0)]
    Untrusted {
        /// The level our policy returned.
        level: TrustLevel,
    },
    /// The peer closed the handshake with a reason (for example it does not trust us).
    #[error("rejected by peer: {reason:?}: {message}")]
    RejectedByPeer {
        /// The peer's reason code.
        reason: RejectReason,
        /// Free text from the peer (informational, untrusted).
        message: String,
    },
    /// The peer speaks another handshake version.
    #[error("handshake version mismatch: ours {ours}, theirs {theirs}")]
    VersionMismatch {
        /// Our version.
        ours: u8,
        /// Theirs.
        theirs: u8,
    },
    /// The responder does not serve the address the initiator dialled (a relay in between).
    #[error("link binding not accepted: {0}")]
    BindingNotAccepted(String),
    /// Both sides hold different transcripts: the binding differs or a message was altered.
    #[error("handshake transcript mismatch (link binding differs or message altered)")]
    TranscriptMismatch,
    /// The deadline passed.
    #[error("handshake timed out")]
    Timeout,
    /// The transport closed before the handshake finished.
    #[error("transport closed during handshake")]
    TransportClosed,
    /// A message could not be parsed or came out of order.
    #[error("malformed handshake message: {0}")]
    Malformed(String),
}

/// Reason codes carried in a handshake rejection (wire values in the doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// Version not supported.
    Version,
    /// Binding not accepted.
    Binding,
    /// Signature or keys invalid.
    Identity,
    /// Clock skew.
    ClockSkew,
    /// Trust policy said no.
    Untrusted,
    /// Anything else.
    Other,
}

/// Which side of the link this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Dialled the link; sends the first message.
    Initiator,
    /// Accepted the link.
    Responder,
}

/// The symmetric keys of an established session. Zeroized on drop, redacted in `Debug`.
#[derive(Clone, Zeroize)]
#[zeroize(drop)]
pub struct SessionKeys {
    /// Key for frames we send.
    pub send: [u8; 32],
    /// Key for frames we receive.
    pub recv: [u8; 32],
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(<redacted>)")
    }
}

/// The result of a successful handshake.
#[derive(Debug)]
pub struct Established {
    /// The peer's verified device info.
    pub remote: SignedDeviceInfo,
    /// The level our trust policy gave the peer.
    pub trust_level: TrustLevel,
    /// Transport keys for the wire layer.
    pub keys: SessionKeys,
    /// The Noise handshake hash (channel binding for upper layers).
    pub handshake_hash: [u8; 32],
    /// Our role.
    pub role: Role,
}

/// What the driver must do next.
#[derive(Debug)]
#[non_exhaustive]
pub enum HandshakeOutput {
    /// Send these bytes as one transport message.
    Transmit(Vec<u8>),
    /// Ask the trust policy about this verified peer and answer with
    /// [`Handshake::set_trust_level`].
    TrustRequired(DeviceInfo),
    /// Done: the link is verified.
    Complete(Box<Established>),
    /// Failed: close the transport (after sending any queued `Transmit`).
    Failed(HandshakeError),
}

/// The handshake state machine. Feed it input, drain outputs until `None`, re-arm the timer
/// from [`Handshake::poll_timeout`].
#[derive(Debug)]
pub struct Handshake {
    _private: (),
}

impl Handshake {
    /// Starts as initiator. Queues the first message at once.
    pub fn initiator(
        identity: &Identity,
        local: SignedDeviceInfo,
        binding: LinkBinding,
        config: HandshakeConfig,
        now: Instant,
        unix_ms: u64,
    ) -> Result<Self, HandshakeError> {
        let _ = (identity, local, binding, config, now, unix_ms);
        unimplemented!("handshake initiator")
    }

    /// Starts as responder; waits for the initiator's first message.
    pub fn responder(
        identity: &Identity,
        local: SignedDeviceInfo,
        config: HandshakeConfig,
        now: Instant,
        unix_ms: u64,
    ) -> Result<Self, HandshakeError> {
        let _ = (identity, local, config, now, unix_ms);
        unimplemented!("handshake responder")
    }

    /// Feeds one transport message. Errors are also reported as `Failed` output.
    pub fn handle_input(
        &mut self,
        message: &[u8],
        now: Instant,
        unix_ms: u64,
    ) -> Result<(), HandshakeError> {
        let _ = (message, now, unix_ms);
        unimplemented!()
    }

    /// Answers a `TrustRequired` output.
    pub fn set_trust_level(&mut self, level: TrustLevel, now: Instant) {
        let _ = (level, now);
        unimplemented!()
    }

    /// Advances time; fails with `Timeout` past the deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        unimplemented!()
    }

    /// Reports that the transport closed.
    pub fn handle_transport_closed(&mut self) {
        unimplemented!()
    }

    /// When to call `handle_timeout` next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        unimplemented!()
    }

    /// Next thing to do, or `None` when waiting for input, trust or time.
    pub fn poll_output(&mut self) -> Option<HandshakeOutput> {
        unimplemented!()
    }
}
