//! The link handshake: Noise XX with signed device info, as a sans-I/O state machine.
//!
//! The full protocol, with byte layouts, is in `docs/protocol/handshake.md`. In short:
//!
//! 1. **Hello** (initiator → responder): version, type, the link binding in clear, Noise
//!    message 1 (`-> e`). The responder checks the version and whether it accepts the binding.
//! 2. **Response** (responder → initiator): Noise message 2 (`<- e, ee, s, es`) carrying the
//!    responder's [`SignedDeviceInfo`]. The initiator verifies it and asks its trust policy.
//! 3. **Finish** (initiator → responder): Noise message 3 (`-> s, se`) carrying the initiator's
//!    signed device info. The responder verifies it and asks its trust policy.
//! 4. **Confirm** (responder → initiator): one AEAD-sealed byte proving the responder finished
//!    and accepted. Either side may instead send a plaintext **Reject** with a reason code.
//!
//! Both sides feed the Noise prologue with `"peerlink/handshake/v1\0"` and the link binding
//! (dialled WebSocket URL, or both DTLS fingerprints), so a relay that terminates the link on
//! each side ends up with two different transcripts and the handshake fails.
//!
//! The Noise static key is the identity's X25519 box key, so the key that proves possession in
//! Noise is the `publicBoxKey` of the device info, which in turn is derived from (and signed by)
//! the Ed25519 `publicKey`.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::Digest as _;
use zeroize::{Zeroize, Zeroizing};

use crate::identity::{
    BoxSecret, DeviceInfo, Identity, IdentityError, PublicKey, SignedDeviceInfo,
};

/// Handshake protocol version carried in the first byte of every handshake message.
pub const HANDSHAKE_VERSION: u8 = 1;

/// The Noise protocol name. The static key is the identity's X25519 box key.
pub const NOISE_PATTERN: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";

/// First bytes of the Noise prologue; the encoded link binding follows.
pub const PROLOGUE_LABEL: &[u8] = b"peerlink/handshake/v1\0";

/// Label of the key that seals the Confirm message (see [`Handshake`] docs and the protocol doc).
pub const CONFIRM_KEY_LABEL: &[u8] = b"peerlink/handshake/v1/confirm\0";

/// Largest handshake message accepted (whole transport message, header included).
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;

/// Largest encoded link binding (the bytes after the kind and length).
pub const MAX_BINDING_LEN: usize = 2048;

/// Largest free-text message in a Reject.
pub const MAX_REJECT_MESSAGE_LEN: usize = 200;

/// Largest encoded local device info: it must fit in one Noise message with its key and tags.
pub const MAX_DEVICE_INFO_LEN: usize = 60_000;

const TYPE_HELLO: u8 = 0x01;
const TYPE_RESPONSE: u8 = 0x02;
const TYPE_FINISH: u8 = 0x03;
const TYPE_CONFIRM: u8 = 0x04;
const TYPE_REJECT: u8 = 0x0F;

const BINDING_WEBSOCKET: u8 = 0x01;
const BINDING_WEBRTC: u8 = 0x02;
const BINDING_MEMORY: u8 = 0x03;

const CONFIRM_PLAINTEXT: [u8; 1] = [0x01];

/// Largest Noise message (the Noise spec's limit).
const NOISE_MAX: usize = 65_535;

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

impl LinkBinding {
    /// The canonical form both sides feed into the prologue: WebSocket URLs normalised as
    /// described on [`LinkBinding::WebSocketUrl`], fingerprints as `algorithm HEX:HEX:…` with a
    /// lower-case algorithm name (default `sha-256` when absent) and upper-case hex.
    pub fn normalized(&self) -> LinkBinding {
        match self {
            LinkBinding::WebSocketUrl(url) => LinkBinding::WebSocketUrl(normalize_ws_url(url)),
            LinkBinding::WebRtcFingerprints { offerer, answerer } => {
                LinkBinding::WebRtcFingerprints {
                    offerer: normalize_fingerprint(offerer),
                    answerer: normalize_fingerprint(answerer),
                }
            }
            LinkBinding::Memory(label) => LinkBinding::Memory(label.clone()),
        }
    }

    /// The kind byte and binding bytes as they appear in Hello and in the prologue.
    fn encode(&self) -> Result<(u8, Vec<u8>), HandshakeError> {
        let (kind, bytes) = match self {
            LinkBinding::WebSocketUrl(url) => (BINDING_WEBSOCKET, url.as_bytes().to_vec()),
            LinkBinding::WebRtcFingerprints { offerer, answerer } => {
                if offerer.contains('\0') || answerer.contains('\0') {
                    return Err(HandshakeError::InvalidConfig(
                        "a DTLS fingerprint contains a NUL byte".into(),
                    ));
                }
                let mut bytes = Vec::with_capacity(offerer.len() + 1 + answerer.len());
                bytes.extend_from_slice(offerer.as_bytes());
                bytes.push(0);
                bytes.extend_from_slice(answerer.as_bytes());
                (BINDING_WEBRTC, bytes)
            }
            LinkBinding::Memory(label) => (BINDING_MEMORY, label.as_bytes().to_vec()),
        };
        if bytes.len() > MAX_BINDING_LEN {
            return Err(HandshakeError::InvalidConfig(format!(
                "link binding of {} bytes exceeds {MAX_BINDING_LEN}",
                bytes.len()
            )));
        }
        Ok((kind, bytes))
    }

    fn decode(kind: u8, bytes: &[u8]) -> Result<Self, HandshakeError> {
        let text = |b: &[u8]| {
            String::from_utf8(b.to_vec())
                .map_err(|_| HandshakeError::Malformed("link binding is not UTF-8".into()))
        };
        match kind {
            BINDING_WEBSOCKET => Ok(LinkBinding::WebSocketUrl(text(bytes)?)),
            BINDING_WEBRTC => {
                let split = bytes.iter().position(|&b| b == 0).ok_or_else(|| {
                    HandshakeError::Malformed("WebRTC binding lacks its separator".into())
                })?;
                let (offerer, rest) = bytes.split_at(split);
                Ok(LinkBinding::WebRtcFingerprints {
                    offerer: text(offerer)?,
                    answerer: text(rest.get(1..).unwrap_or_default())?,
                })
            }
            BINDING_MEMORY => Ok(LinkBinding::Memory(text(bytes)?)),
            other => Err(HandshakeError::Malformed(format!(
                "unknown link binding kind {other:#04x}"
            ))),
        }
    }

    fn describe(&self) -> String {
        match self {
            LinkBinding::WebSocketUrl(url) => url.clone(),
            LinkBinding::WebRtcFingerprints { offerer, answerer } => {
                format!("webrtc offerer {offerer} / answerer {answerer}")
            }
            LinkBinding::Memory(label) => format!("memory:{label}"),
        }
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "ws" | "http" => Some(80),
        "wss" | "https" => Some(443),
        _ => None,
    }
}

/// Normalises a WebSocket URL so the dialled form and the served form compare equal.
/// Anything that does not look like `scheme://authority…` is kept as given (trimmed).
fn normalize_ws_url(url: &str) -> String {
    let url = url.trim();
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let scheme = scheme.to_ascii_lowercase();
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    let (host, port) = if hostport.starts_with('[') {
        match hostport.find(']') {
            Some(close) => {
                let (host, after) = hostport.split_at(close + 1);
                (host, after.strip_prefix(':'))
            }
            None => (hostport, None),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    let port = match port.filter(|p| !p.is_empty()) {
        Some(p) => match p.parse::<u16>() {
            Ok(n) => Some(n.to_string()),
            Err(_) => Some(p.to_owned()),
        },
        None => default_port(&scheme).map(|n| n.to_string()),
    };
    let path_end = tail.find(['?', '#']).unwrap_or(tail.len());
    let (path, query) = tail.split_at(path_end);
    let path = if path == "/" { "" } else { path };
    let mut out = format!("{scheme}://{userinfo}{}", host.to_ascii_lowercase());
    if let Some(port) = port {
        out.push(':');
        out.push_str(&port);
    }
    out.push_str(path);
    out.push_str(query);
    out
}

/// `sha-256 ab:cd` → `sha-256 AB:CD`; a bare hex string is taken as sha-256.
fn normalize_fingerprint(fp: &str) -> String {
    let parts: Vec<&str> = fp.split_whitespace().collect();
    match parts.as_slice() {
        [algorithm, hex] => format!(
            "{} {}",
            algorithm.to_ascii_lowercase(),
            hex.to_ascii_uppercase()
        ),
        [hex] => format!("sha-256 {}", hex.to_ascii_uppercase()),
        _ => parts.join(" "),
    }
}

/// Tunables. `Default` gives the documented values.
#[derive(Debug, Clone)]
pub struct HandshakeConfig {
    /// Whole-handshake deadline (default 10 s), including the wait for the trust decision.
    pub timeout: Duration,
    /// Allowed difference between the peer's device-info timestamp and our clock (default 5 min).
    pub max_clock_skew: Duration,
    /// Responder only: bindings it accepts. For WebSocket, the normalised URLs it serves.
    /// Empty means: accept any binding of the expected kind (used for in-memory links).
    pub accepted_bindings: Vec<LinkBinding>,
    /// If set, the peer must have this public key (normally set by the initiator, which knows
    /// whom it dialled; a responder may set it too).
    pub expected_remote: Option<PublicKey>,
    /// Responder only: the binding as this side sees it (WebRTC: both fingerprints from the
    /// local and remote SDP). When set it is fed into the prologue instead of the binding the
    /// Hello carries, which is then only a diagnostic.
    pub local_binding: Option<LinkBinding>,
}

impl Default for HandshakeConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_clock_skew: Duration::from_secs(5 * 60),
            accepted_bindings: Vec::new(),
            expected_remote: None,
            local_binding: None,
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
    /// The local side was set up wrongly (binding or device info too large, bad fingerprint).
    #[error("invalid handshake configuration: {0}")]
    InvalidConfig(String),
}

impl HandshakeError {
    /// The reason to send to the peer before failing, for failures we detected ourselves.
    fn reject_reason(&self) -> Option<RejectReason> {
        Some(match self {
            HandshakeError::VersionMismatch { .. } => RejectReason::Version,
            HandshakeError::BindingNotAccepted(_) => RejectReason::Binding,
            HandshakeError::BadSignature(_)
            | HandshakeError::KeyMismatch
            | HandshakeError::UnexpectedRemote { .. } => RejectReason::Identity,
            HandshakeError::ClockSkew { .. } => RejectReason::ClockSkew,
            HandshakeError::Untrusted { .. } => RejectReason::Untrusted,
            HandshakeError::TranscriptMismatch | HandshakeError::Malformed(_) => {
                RejectReason::Other
            }
            HandshakeError::RejectedByPeer { .. }
            | HandshakeError::Timeout
            | HandshakeError::TransportClosed
            | HandshakeError::InvalidConfig(_) => return None,
        })
    }
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

impl RejectReason {
    /// The reason byte on the wire.
    pub fn code(self) -> u8 {
        match self {
            RejectReason::Version => 0x01,
            RejectReason::Binding => 0x02,
            RejectReason::Identity => 0x03,
            RejectReason::ClockSkew => 0x04,
            RejectReason::Untrusted => 0x05,
            RejectReason::Other => 0xFF,
        }
    }

    /// Reads a reason byte; codes this version does not know read as [`RejectReason::Other`].
    pub fn from_code(code: u8) -> Self {
        match code {
            0x01 => RejectReason::Version,
            0x02 => RejectReason::Binding,
            0x03 => RejectReason::Identity,
            0x04 => RejectReason::ClockSkew,
            0x05 => RejectReason::Untrusted,
            _ => RejectReason::Other,
        }
    }
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

/// The verified result of a finished Noise exchange, waiting for a trust decision or Confirm.
struct Verified {
    remote: SignedDeviceInfo,
    keys: SessionKeys,
    handshake_hash: [u8; 32],
    confirm_key: Zeroizing<[u8; 32]>,
}

enum State {
    /// Initiator: Hello sent, waiting for Response.
    AwaitResponse(Box<snow::HandshakeState>),
    /// Initiator: Response verified, waiting for our trust decision before sending Finish.
    InitiatorAwaitTrust(Box<snow::HandshakeState>, Box<SignedDeviceInfo>),
    /// Initiator: Finish sent, waiting for Confirm.
    AwaitConfirm(Box<Verified>, TrustLevel),
    /// Responder: waiting for Hello.
    AwaitHello(BoxSecret),
    /// Responder: Response sent, waiting for Finish.
    AwaitFinish(Box<snow::HandshakeState>),
    /// Responder: Finish verified, waiting for our trust decision before sending Confirm.
    ResponderAwaitTrust(Box<Verified>),
    /// Completed or failed; nothing more happens.
    Done,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::AwaitResponse(_) => "awaiting Response",
            State::InitiatorAwaitTrust(..) | State::ResponderAwaitTrust(_) => "awaiting trust",
            State::AwaitConfirm(..) => "awaiting Confirm",
            State::AwaitHello(_) => "awaiting Hello",
            State::AwaitFinish(_) => "awaiting Finish",
            State::Done => "finished",
        }
    }
}

/// The handshake state machine. Feed it input, drain outputs until `None`, re-arm the timer
/// from [`Handshake::poll_timeout`].
///
/// Every failure is reported twice: as the `Err` of the call that caused it (when the call
/// returns a `Result`) and as a [`HandshakeOutput::Failed`], preceded by a `Transmit` of a
/// Reject when the failure is one the peer should hear about. After `Complete` or `Failed` no
/// further output is produced.
pub struct Handshake {
    role: Role,
    local_info: Vec<u8>,
    config: HandshakeConfig,
    deadline: Option<Instant>,
    state: State,
    outputs: VecDeque<HandshakeOutput>,
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake")
            .field("role", &self.role)
            .field("state", &self.state.name())
            .field("deadline", &self.deadline)
            .field("queued_outputs", &self.outputs.len())
            .finish_non_exhaustive()
    }
}

fn prologue(kind: u8, binding: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PROLOGUE_LABEL.len() + 3 + binding.len());
    out.extend_from_slice(PROLOGUE_LABEL);
    out.push(kind);
    // Lengths were checked against MAX_BINDING_LEN, which fits in a u16.
    out.extend_from_slice(&(binding.len() as u16).to_be_bytes());
    out.extend_from_slice(binding);
    out
}

fn build_noise(
    secret: &BoxSecret,
    prologue: &[u8],
    initiator: bool,
) -> Result<snow::HandshakeState, HandshakeError> {
    let setup = |e: snow::Error| HandshakeError::InvalidConfig(format!("noise setup: {e}"));
    let params: snow::params::NoiseParams = NOISE_PATTERN.parse().map_err(setup)?;
    let builder = snow::Builder::new(params)
        .local_private_key(secret.as_bytes())
        .map_err(setup)?
        .prologue(prologue)
        .map_err(setup)?;
    if initiator {
        builder.build_initiator().map_err(setup)
    } else {
        builder.build_responder().map_err(setup)
    }
}

fn noise_read_error(e: snow::Error) -> HandshakeError {
    match e {
        snow::Error::Decrypt => HandshakeError::TranscriptMismatch,
        snow::Error::Input => {
            HandshakeError::Malformed("noise message truncated or too long".into())
        }
        snow::Error::Dh => HandshakeError::Malformed("invalid noise public key".into()),
        other => HandshakeError::Malformed(format!("noise: {other}")),
    }
}

fn noise_write_error(e: snow::Error) -> HandshakeError {
    HandshakeError::InvalidConfig(format!("noise write: {e}"))
}

fn header(kind: u8, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + capacity);
    out.push(HANDSHAKE_VERSION);
    out.push(kind);
    out
}

fn encode_reject(reason: RejectReason, message: &str) -> Vec<u8> {
    let mut end = message.len().min(MAX_REJECT_MESSAGE_LEN);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let text = message.get(..end).unwrap_or_default().as_bytes();
    let mut out = header(TYPE_REJECT, 3 + text.len());
    out.push(reason.code());
    out.extend_from_slice(&(text.len() as u16).to_be_bytes());
    out.extend_from_slice(text);
    out
}

fn decode_reject(body: &[u8]) -> HandshakeError {
    let [code, hi, lo, text @ ..] = body else {
        return HandshakeError::Malformed("Reject shorter than its header".into());
    };
    let len = usize::from(u16::from_be_bytes([*hi, *lo]));
    if len > MAX_REJECT_MESSAGE_LEN || len != text.len() {
        return HandshakeError::Malformed("Reject message length is wrong".into());
    }
    HandshakeError::RejectedByPeer {
        reason: RejectReason::from_code(*code),
        message: String::from_utf8_lossy(text).into_owned(),
    }
}

/// The key that seals Confirm: SHA-256 over a label and the responder's sending key. A key of
/// its own, used for exactly one message, can never share a (key, nonce) pair with a wire record.
fn confirm_key(responder_send: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut hasher = sha2::Sha256::new();
    hasher.update(CONFIRM_KEY_LABEL);
    hasher.update(responder_send);
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&hasher.finalize());
    key
}

fn confirm_cipher(key: &[u8; 32]) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new(Key::from_slice(key))
}

/// What finishing the Noise side yields: session keys, handshake hash, Confirm key.
type Split = (SessionKeys, [u8; 32], Zeroizing<[u8; 32]>);

/// Finishes the Noise side: handshake hash and the two transport keys, oriented for `role`.
fn split(noise: &mut snow::HandshakeState, role: Role) -> Result<Split, HandshakeError> {
    let handshake_hash: [u8; 32] = noise
        .get_handshake_hash()
        .try_into()
        .map_err(|_| HandshakeError::InvalidConfig("handshake hash is not 32 bytes".into()))?;
    let (initiator_to_responder, responder_to_initiator) = noise.dangerously_get_raw_split();
    let i2r = Zeroizing::new(initiator_to_responder);
    let r2i = Zeroizing::new(responder_to_initiator);
    let keys = match role {
        Role::Initiator => SessionKeys {
            send: *i2r,
            recv: *r2i,
        },
        Role::Responder => SessionKeys {
            send: *r2i,
            recv: *i2r,
        },
    };
    Ok((keys, handshake_hash, confirm_key(&r2i)))
}

impl Handshake {
    /// Starts as initiator. Queues the first message at once.
    ///
    /// `local` is sent as given: a device info that does not belong to `identity` is refused
    /// by the peer, not here.
    pub fn initiator(
        identity: &Identity,
        local: SignedDeviceInfo,
        binding: LinkBinding,
        config: HandshakeConfig,
        now: Instant,
        unix_ms: u64,
    ) -> Result<Self, HandshakeError> {
        let _ = unix_ms;
        let local_info = encode_local(&local)?;
        let binding = binding.normalized();
        let (kind, bytes) = binding.encode()?;
        let mut noise = build_noise(&identity.box_secret(), &prologue(kind, &bytes), true)?;
        let mut msg1 = [0u8; 64];
        let n = noise
            .write_message(&[], &mut msg1)
            .map_err(noise_write_error)?;
        let mut hello = header(TYPE_HELLO, 3 + bytes.len() + n);
        hello.push(kind);
        hello.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        hello.extend_from_slice(&bytes);
        hello.extend_from_slice(msg1.get(..n).unwrap_or_default());
        let mut outputs = VecDeque::new();
        outputs.push_back(HandshakeOutput::Transmit(hello));
        Ok(Self {
            role: Role::Initiator,
            local_info,
            deadline: now.checked_add(config.timeout),
            config,
            state: State::AwaitResponse(Box::new(noise)),
            outputs,
        })
    }

    /// Starts as responder; waits for the initiator's first message.
    pub fn responder(
        identity: &Identity,
        local: SignedDeviceInfo,
        config: HandshakeConfig,
        now: Instant,
        unix_ms: u64,
    ) -> Result<Self, HandshakeError> {
        let _ = unix_ms;
        let local_info = encode_local(&local)?;
        if let Some(binding) = &config.local_binding {
            binding.normalized().encode()?;
        }
        Ok(Self {
            role: Role::Responder,
            local_info,
            deadline: now.checked_add(config.timeout),
            config,
            state: State::AwaitHello(identity.box_secret()),
            outputs: VecDeque::new(),
        })
    }

    /// Which side this is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the handshake completed or failed.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Feeds one transport message. Errors are also reported as `Failed` output.
    pub fn handle_input(
        &mut self,
        message: &[u8],
        now: Instant,
        unix_ms: u64,
    ) -> Result<(), HandshakeError> {
        if self.is_finished() {
            return Err(HandshakeError::Malformed(
                "message after the handshake finished".into(),
            ));
        }
        if self.deadline_passed(now) {
            self.fail(HandshakeError::Timeout);
            return Err(HandshakeError::Timeout);
        }
        let state = std::mem::replace(&mut self.state, State::Done);
        match self.process(state, message, unix_ms) {
            Ok(next) => {
                self.state = next;
                Ok(())
            }
            Err(error) => {
                self.fail(error.clone());
                Err(error)
            }
        }
    }

    /// Answers a `TrustRequired` output. Ignored when no trust decision is pending.
    pub fn set_trust_level(&mut self, level: TrustLevel, now: Instant) {
        if !matches!(
            self.state,
            State::InitiatorAwaitTrust(..) | State::ResponderAwaitTrust(_)
        ) {
            return;
        }
        if self.deadline_passed(now) {
            self.fail(HandshakeError::Timeout);
            return;
        }
        if !level.is_allowed() {
            self.fail(HandshakeError::Untrusted { level });
            return;
        }
        let state = std::mem::replace(&mut self.state, State::Done);
        let result = match state {
            State::InitiatorAwaitTrust(noise, remote) => self.send_finish(noise, *remote, level),
            State::ResponderAwaitTrust(verified) => self.send_confirm(*verified, level),
            other => Ok(other),
        };
        match result {
            Ok(next) => self.state = next,
            Err(error) => self.fail(error),
        }
    }

    /// Advances time; fails with `Timeout` past the deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.is_finished() && self.deadline_passed(now) {
            self.fail(HandshakeError::Timeout);
        }
    }

    /// Reports that the transport closed.
    pub fn handle_transport_closed(&mut self) {
        if !self.is_finished() {
            self.fail(HandshakeError::TransportClosed);
        }
    }

    /// When to call `handle_timeout` next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_finished() {
            None
        } else {
            self.deadline
        }
    }

    /// Next thing to do, or `None` when waiting for input, trust or time.
    pub fn poll_output(&mut self) -> Option<HandshakeOutput> {
        self.outputs.pop_front()
    }

    fn deadline_passed(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|deadline| now >= deadline)
    }

    /// Ends the handshake: a Reject for the peer when it should hear why, then `Failed`.
    fn fail(&mut self, error: HandshakeError) {
        self.state = State::Done;
        if let Some(reason) = error.reject_reason() {
            // The trust level stays private: the peer only learns that it was refused.
            let text = match &error {
                HandshakeError::Untrusted { .. } => "not trusted".to_owned(),
                other => other.to_string(),
            };
            self.outputs
                .push_back(HandshakeOutput::Transmit(encode_reject(reason, &text)));
        }
        self.outputs.push_back(HandshakeOutput::Failed(error));
    }

    fn process(
        &mut self,
        state: State,
        message: &[u8],
        unix_ms: u64,
    ) -> Result<State, HandshakeError> {
        if message.len() > MAX_MESSAGE_LEN {
            return Err(HandshakeError::Malformed(format!(
                "message of {} bytes exceeds {MAX_MESSAGE_LEN}",
                message.len()
            )));
        }
        let [version, kind, body @ ..] = message else {
            return Err(HandshakeError::Malformed(
                "message shorter than its header".into(),
            ));
        };
        if *version != HANDSHAKE_VERSION {
            return Err(HandshakeError::VersionMismatch {
                ours: HANDSHAKE_VERSION,
                theirs: *version,
            });
        }
        match (state, *kind) {
            (_, TYPE_REJECT) => Err(decode_reject(body)),
            (State::AwaitHello(secret), TYPE_HELLO) => self.on_hello(&secret, body),
            (State::AwaitResponse(noise), TYPE_RESPONSE) => self.on_response(noise, body, unix_ms),
            (State::AwaitFinish(noise), TYPE_FINISH) => self.on_finish(noise, body, unix_ms),
            (State::AwaitConfirm(verified, level), TYPE_CONFIRM) => {
                self.on_confirm(*verified, level, body)
            }
            (state, kind) => Err(HandshakeError::Malformed(format!(
                "unexpected message type {kind:#04x} while {}",
                state.name()
            ))),
        }
    }

    fn on_hello(&mut self, secret: &BoxSecret, body: &[u8]) -> Result<State, HandshakeError> {
        let [kind, hi, lo, rest @ ..] = body else {
            return Err(HandshakeError::Malformed(
                "Hello shorter than its header".into(),
            ));
        };
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        if len > MAX_BINDING_LEN {
            return Err(HandshakeError::Malformed(format!(
                "link binding of {len} bytes exceeds {MAX_BINDING_LEN}"
            )));
        }
        let (binding_bytes, noise_msg) = rest
            .split_at_checked(len)
            .ok_or_else(|| HandshakeError::Malformed("Hello binding truncated".into()))?;
        let received = LinkBinding::decode(*kind, binding_bytes)?.normalized();
        let effective = match &self.config.local_binding {
            Some(local) => local.normalized(),
            None => received.clone(),
        };
        let accepted = &self.config.accepted_bindings;
        if !accepted.is_empty() && !accepted.iter().any(|a| a.normalized() == effective) {
            return Err(HandshakeError::BindingNotAccepted(received.describe()));
        }
        let (kind, bytes) = effective.encode()?;
        let mut noise = build_noise(secret, &prologue(kind, &bytes), false)?;
        let mut payload = vec![0u8; noise_msg.len()];
        let n = noise
            .read_message(noise_msg, &mut payload)
            .map_err(noise_read_error)?;
        if n != 0 {
            return Err(HandshakeError::Malformed(
                "Hello carries unexpected bytes".into(),
            ));
        }
        let mut msg2 = vec![0u8; NOISE_MAX];
        let n = noise
            .write_message(&self.local_info, &mut msg2)
            .map_err(noise_write_error)?;
        let mut response = header(TYPE_RESPONSE, n);
        response.extend_from_slice(msg2.get(..n).unwrap_or_default());
        self.outputs.push_back(HandshakeOutput::Transmit(response));
        Ok(State::AwaitFinish(Box::new(noise)))
    }

    fn on_response(
        &mut self,
        mut noise: Box<snow::HandshakeState>,
        body: &[u8],
        unix_ms: u64,
    ) -> Result<State, HandshakeError> {
        let mut payload = vec![0u8; body.len()];
        let n = noise
            .read_message(body, &mut payload)
            .map_err(noise_read_error)?;
        let remote = self.verify_remote(&noise, payload.get(..n).unwrap_or_default(), unix_ms)?;
        self.outputs
            .push_back(HandshakeOutput::TrustRequired(remote.info.clone()));
        Ok(State::InitiatorAwaitTrust(noise, Box::new(remote)))
    }

    fn on_finish(
        &mut self,
        mut noise: Box<snow::HandshakeState>,
        body: &[u8],
        unix_ms: u64,
    ) -> Result<State, HandshakeError> {
        let mut payload = vec![0u8; body.len()];
        let n = noise
            .read_message(body, &mut payload)
            .map_err(noise_read_error)?;
        let remote = self.verify_remote(&noise, payload.get(..n).unwrap_or_default(), unix_ms)?;
        let (keys, handshake_hash, confirm_key) = split(&mut noise, Role::Responder)?;
        self.outputs
            .push_back(HandshakeOutput::TrustRequired(remote.info.clone()));
        Ok(State::ResponderAwaitTrust(Box::new(Verified {
            remote,
            keys,
            handshake_hash,
            confirm_key,
        })))
    }

    fn on_confirm(
        &mut self,
        verified: Verified,
        level: TrustLevel,
        body: &[u8],
    ) -> Result<State, HandshakeError> {
        let plaintext = confirm_cipher(&verified.confirm_key)
            .decrypt(
                Nonce::from_slice(&[0u8; 12]),
                Payload {
                    msg: body,
                    aad: &verified.handshake_hash,
                },
            )
            .map_err(|_| HandshakeError::TranscriptMismatch)?;
        if plaintext != CONFIRM_PLAINTEXT {
            return Err(HandshakeError::Malformed("Confirm content unknown".into()));
        }
        self.complete(verified, level);
        Ok(State::Done)
    }

    fn send_finish(
        &mut self,
        mut noise: Box<snow::HandshakeState>,
        remote: SignedDeviceInfo,
        level: TrustLevel,
    ) -> Result<State, HandshakeError> {
        let mut msg3 = vec![0u8; NOISE_MAX];
        let n = noise
            .write_message(&self.local_info, &mut msg3)
            .map_err(noise_write_error)?;
        let mut finish = header(TYPE_FINISH, n);
        finish.extend_from_slice(msg3.get(..n).unwrap_or_default());
        let (keys, handshake_hash, confirm_key) = split(&mut noise, Role::Initiator)?;
        self.outputs.push_back(HandshakeOutput::Transmit(finish));
        Ok(State::AwaitConfirm(
            Box::new(Verified {
                remote,
                keys,
                handshake_hash,
                confirm_key,
            }),
            level,
        ))
    }

    fn send_confirm(
        &mut self,
        verified: Verified,
        level: TrustLevel,
    ) -> Result<State, HandshakeError> {
        let sealed = confirm_cipher(&verified.confirm_key)
            .encrypt(
                Nonce::from_slice(&[0u8; 12]),
                Payload {
                    msg: &CONFIRM_PLAINTEXT,
                    aad: &verified.handshake_hash,
                },
            )
            .map_err(|_| HandshakeError::InvalidConfig("sealing Confirm failed".into()))?;
        let mut confirm = header(TYPE_CONFIRM, sealed.len());
        confirm.extend_from_slice(&sealed);
        self.outputs.push_back(HandshakeOutput::Transmit(confirm));
        self.complete(verified, level);
        Ok(State::Done)
    }

    fn complete(&mut self, verified: Verified, trust_level: TrustLevel) {
        let Verified {
            remote,
            keys,
            handshake_hash,
            confirm_key: _,
        } = verified;
        self.outputs
            .push_back(HandshakeOutput::Complete(Box::new(Established {
                remote,
                trust_level,
                keys,
                handshake_hash,
                role: self.role,
            })));
    }

    /// The checks both sides run on the peer's device info, in the documented order.
    fn verify_remote(
        &self,
        noise: &snow::HandshakeState,
        payload: &[u8],
        unix_ms: u64,
    ) -> Result<SignedDeviceInfo, HandshakeError> {
        let remote_static = noise
            .get_remote_static()
            .ok_or_else(|| HandshakeError::Malformed("peer's Noise static key missing".into()))?;
        let signed = SignedDeviceInfo::from_bytes(payload)
            .map_err(|e| HandshakeError::Malformed(format!("device info: {e}")))?;
        signed.verify().map_err(HandshakeError::BadSignature)?;
        if signed.info.public_box_key.as_bytes()[..] != *remote_static {
            return Err(HandshakeError::KeyMismatch);
        }
        if let Some(expected) = &self.config.expected_remote {
            if signed.info.public_key != *expected {
                return Err(HandshakeError::UnexpectedRemote {
                    actual: signed.info.public_key,
                });
            }
        }
        let skew_ms = unix_ms.abs_diff(signed.info.timestamp);
        let allowed_ms = u64::try_from(self.config.max_clock_skew.as_millis()).unwrap_or(u64::MAX);
        if skew_ms > allowed_ms {
            return Err(HandshakeError::ClockSkew {
                skew_ms,
                allowed_ms,
            });
        }
        Ok(signed)
    }
}

fn encode_local(local: &SignedDeviceInfo) -> Result<Vec<u8>, HandshakeError> {
    let bytes = local.to_bytes();
    if bytes.is_empty() || bytes.len() > MAX_DEVICE_INFO_LEN {
        return Err(HandshakeError::InvalidConfig(format!(
            "local device info encodes to {} bytes (limit {MAX_DEVICE_INFO_LEN})",
            bytes.len()
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_urls_normalise() {
        let cases = [
            ("WS://LocalHost:8080/", "ws://localhost:8080"),
            ("ws://127.0.0.1", "ws://127.0.0.1:80"),
            (
                "wss://Example.COM/Path/?q=A",
                "wss://example.com:443/Path/?q=A",
            ),
            ("wss://example.com/?q=1", "wss://example.com:443?q=1"),
            ("ws://[::1]:9000/ws", "ws://[::1]:9000/ws"),
            ("ws://[::1]", "ws://[::1]:80"),
            ("ws://user@Host:0080", "ws://user@host:80"),
            ("  ws://h:1  ", "ws://h:1"),
            ("not a url", "not a url"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_ws_url(input), expected, "{input}");
            assert_eq!(
                normalize_ws_url(expected),
                expected,
                "idempotent: {expected}"
            );
        }
    }

    #[test]
    fn fingerprints_normalise() {
        assert_eq!(normalize_fingerprint("SHA-256 ab:cd"), "sha-256 AB:CD");
        assert_eq!(normalize_fingerprint("ab:cd"), "sha-256 AB:CD");
    }

    #[test]
    fn prologue_layout_is_label_kind_length_bytes() {
        let (kind, bytes) = LinkBinding::WebSocketUrl("ws://a:1".into())
            .encode()
            .unwrap();
        let p = prologue(kind, &bytes);
        let mut expected = b"peerlink/handshake/v1\0".to_vec();
        expected.extend_from_slice(&[0x01, 0x00, 0x08]);
        expected.extend_from_slice(b"ws://a:1");
        assert_eq!(p, expected);

        let (kind, bytes) = LinkBinding::WebRtcFingerprints {
            offerer: "sha-256 AA".into(),
            answerer: "sha-256 BB".into(),
        }
        .encode()
        .unwrap();
        assert_eq!(kind, 0x02);
        assert_eq!(bytes, b"sha-256 AA\0sha-256 BB");
    }

    #[test]
    fn reject_round_trips_and_truncates_long_text() {
        let long = "é".repeat(150);
        let msg = encode_reject(RejectReason::ClockSkew, &long);
        assert_eq!(&msg[..3], &[HANDSHAKE_VERSION, TYPE_REJECT, 0x04]);
        match decode_reject(&msg[2..]) {
            HandshakeError::RejectedByPeer { reason, message } => {
                assert_eq!(reason, RejectReason::ClockSkew);
                assert_eq!(message.len(), MAX_REJECT_MESSAGE_LEN);
                assert!(long.starts_with(&message));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
