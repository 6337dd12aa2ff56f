//! Compact offer/answer codes: a WebRTC description packed into a few dozen bytes.
//!
//! Two devices with no server exchange one code each way — in a link, a QR code, or sound. A
//! code holds only what the other side cannot assume about a data-channel-only session: the
//! kind (offer or answer), the DTLS role, the certificate's sha-256 fingerprint (raw 32 bytes),
//! the ICE username fragment and password (6 bits per character), the candidates (binary
//! addresses and ports), and optionally a session id and a non-default `max-message-size`.
//! Everything else in the SDP (`m=application 9 UDP/DTLS/SCTP webrtc-datachannel`,
//! `a=mid:0`, `a=sctp-port:5000`, …) is fixed and restored by [`CompactSignal::to_sdp`].
//!
//! * Binary form: [`CompactSignal::to_bytes`] / [`CompactSignal::from_bytes`] (QR byte mode,
//!   sound). The byte layout is in `docs/protocol/compact-signal.md`.
//! * Text form: base64url without padding, [`CompactSignal::to_text`] /
//!   [`CompactSignal::from_text`]; [`CompactSignal::from_text`] also takes a link
//!   `http(s)://host/path#CODE`.
//! * SDP: [`CompactSignal::from_sdp`] reads a local description (from the engine or a
//!   browser); [`CompactSignal::to_sdp`] writes the description the peer applies.
//!
//! Every malformed input is a [`CompactError`]; nothing here panics on untrusted bytes.

mod sdp;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The format version this module writes and reads.
pub const COMPACT_VERSION: u8 = 1;

/// Largest binary code accepted (a code with a dozen IPv6 candidates stays far below).
pub const MAX_CODE_LEN: usize = 1024;

/// Most candidates one code may carry.
pub const MAX_CANDIDATES: usize = 32;

/// Longest session id.
pub const MAX_SESSION_ID_LEN: usize = 64;

/// The `max-message-size` assumed when a code carries none (what browsers and peerlink announce).
pub const DEFAULT_CODE_MAX_MESSAGE_SIZE: u32 = 262_144;

/// The SCTP port of every expanded description (the browsers' and the engine's default).
pub const SCTP_PORT: u16 = 5000;

/// The ICE character set (RFC 8839 `ice-char`) in the order of its 6-bit values.
const ICE_CHARS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Offer or answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodeKind {
    /// The offerer's description.
    Offer,
    /// The answerer's description.
    Answer,
}

/// The DTLS role announced with `a=setup` (RFC 5763).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DtlsSetup {
    /// Either role (what an offer announces).
    ActPass,
    /// DTLS client (what browsers and the engine answer).
    Active,
    /// DTLS server.
    Passive,
}

impl DtlsSetup {
    fn as_str(self) -> &'static str {
        match self {
            Self::ActPass => "actpass",
            Self::Active => "active",
            Self::Passive => "passive",
        }
    }
}

/// An ICE candidate type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CandidateType {
    /// An address of the device itself.
    Host,
    /// The device's address as a STUN server saw it.
    ServerReflexive,
    /// An address learned from a peer's connectivity check.
    PeerReflexive,
    /// An address on a TURN server.
    Relay,
}

impl CandidateType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::ServerReflexive => "srflx",
            Self::PeerReflexive => "prflx",
            Self::Relay => "relay",
        }
    }

    /// RFC 8445 §5.1.2.2 recommended type preference.
    fn type_preference(self) -> u32 {
        match self {
            Self::Host => 126,
            Self::PeerReflexive => 110,
            Self::ServerReflexive => 100,
            Self::Relay => 0,
        }
    }
}

/// The candidate's transport: UDP, or TCP with its RFC 6544 `tcptype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CandidateTransport {
    /// UDP.
    Udp,
    /// TCP, actively opening.
    TcpActive,
    /// TCP, accepting.
    TcpPassive,
    /// TCP simultaneous open.
    TcpSimultaneousOpen,
}

/// Where a candidate is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CandidateAddress {
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A browser's mDNS name hiding a host address: `<uuid>.local`, held as the UUID's 16
    /// bytes and written in lower-case hex.
    Mdns([u8; 16]),
    /// Any other host name (letters, digits, `-` and `.`, at most 253 bytes).
    Hostname(String),
}

impl std::fmt::Display for CandidateAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Mdns(uuid) => {
                for (i, b) in uuid.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{b:02x}")?;
                }
                f.write_str(".local")
            }
            Self::Hostname(name) => f.write_str(name),
        }
    }
}

/// One ICE candidate (component 1; data channels multiplex RTCP).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CompactCandidate {
    /// Candidate type.
    pub kind: CandidateType,
    /// Transport.
    pub transport: CandidateTransport,
    /// Address.
    pub address: CandidateAddress,
    /// Port.
    pub port: u16,
    /// The related address (`raddr`/`rport`): informational only, ICE does not need it, and
    /// browsers send `0.0.0.0 0` to hide it. `None` is written as that placeholder for
    /// non-host candidates.
    pub related: Option<SocketAddr>,
}

/// A compact offer or answer.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CompactSignal {
    /// Offer or answer.
    pub kind: CodeKind,
    /// `a=setup`.
    pub setup: DtlsSetup,
    /// The sha-256 fingerprint of the sender's DTLS certificate.
    pub fingerprint: [u8; 32],
    /// ICE username fragment (4–255 ICE characters).
    pub ice_ufrag: String,
    /// ICE password (22–255 ICE characters).
    pub ice_pwd: String,
    /// Candidates, in the sender's order (at most [`MAX_CANDIDATES`]).
    pub candidates: Vec<CompactCandidate>,
    /// An application session id (at most [`MAX_SESSION_ID_LEN`] bytes).
    pub session_id: Option<Vec<u8>>,
    /// `a=max-message-size`; `None` means [`DEFAULT_CODE_MAX_MESSAGE_SIZE`].
    pub max_message_size: Option<u32>,
}

impl std::fmt::Debug for CompactSignal {
    // The ICE password authenticates connectivity checks for this session: keep it out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompactSignal")
            .field("kind", &self.kind)
            .field("setup", &self.setup)
            .field("fingerprint", &self.fingerprint_hex())
            .field("ice_ufrag", &self.ice_ufrag)
            .field("ice_pwd", &"<redacted>")
            .field("candidates", &self.candidates)
            .field("session_id", &self.session_id)
            .field("max_message_size", &self.max_message_size)
            .finish()
    }
}

/// Why a code or a description cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompactError {
    /// The code has no bytes.
    #[error("empty code")]
    Empty,
    /// The code is longer than [`MAX_CODE_LEN`].
    #[error("code of {len} bytes exceeds the limit of {limit}")]
    TooLong {
        /// Bytes given.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A version this build does not read.
    #[error("unsupported code version {0}")]
    UnsupportedVersion(u8),
    /// The code ends inside a field.
    #[error("code truncated inside {0}")]
    Truncated(&'static str),
    /// A reserved bit or value is set.
    #[error("reserved value set in {0}")]
    Reserved(&'static str),
    /// A field value is out of range.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// More candidates than [`MAX_CANDIDATES`].
    #[error("more than {0} candidates")]
    TooManyCandidates(usize),
    /// The text form is not base64url.
    #[error("code text is not base64url: {0}")]
    BadText(String),
    /// The description lacks something a code needs.
    #[error("description has no {0}")]
    MissingSdpField(&'static str),
    /// The description has a line this module cannot read.
    #[error("malformed description: {0}")]
    MalformedSdp(String),
    /// The description is valid but not a single data-channel section a code can carry.
    #[error("description cannot be carried by a code: {0}")]
    UnsupportedSdp(String),
}

impl CompactSignal {
    /// The fingerprint as SDP writes it: `AB:CD:…`.
    pub fn fingerprint_hex(&self) -> String {
        let mut out = String::with_capacity(95);
        for (i, b) in self.fingerprint.iter().enumerate() {
            if i > 0 {
                out.push(':');
            }
            out.push_str(&format!("{b:02X}"));
        }
        out
    }

    /// Drops what the peer does not need to connect, to make the code shorter: related
    /// addresses (informational only) and TCP candidates (not usable by the engine, and a UDP
    /// path exists whenever a TCP one does between two browsers or devices on one network).
    pub fn minimize(&mut self) {
        self.candidates
            .retain(|c| c.transport == CandidateTransport::Udp);
        for c in &mut self.candidates {
            c.related = None;
        }
        let mut seen = std::collections::HashSet::new();
        self.candidates.retain(|c| seen.insert(c.clone()));
    }

    /// Checks every field against the limits the binary form can carry.
    pub fn validate(&self) -> Result<(), CompactError> {
        check_ice("ICE ufrag", &self.ice_ufrag, 4)?;
        check_ice("ICE password", &self.ice_pwd, 22)?;
        if self.candidates.len() > MAX_CANDIDATES {
            return Err(CompactError::TooManyCandidates(MAX_CANDIDATES));
        }
        if let Some(id) = &self.session_id {
            if id.is_empty() || id.len() > MAX_SESSION_ID_LEN {
                return Err(CompactError::Invalid {
                    what: "session id",
                    reason: "must be 1 to 64 bytes",
                });
            }
        }
        if self.max_message_size == Some(DEFAULT_CODE_MAX_MESSAGE_SIZE) {
            return Err(CompactError::Invalid {
                what: "max-message-size",
                reason: "the default is written as absent",
            });
        }
        for c in &self.candidates {
            if let CandidateAddress::Hostname(name) = &c.address {
                check_hostname(name)?;
            }
        }
        Ok(())
    }

    /// The binary form.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CompactError> {
        self.validate()?;
        let mut out = Vec::with_capacity(96);
        let has_ext = self.session_id.is_some() || self.max_message_size.is_some();
        let setup_bits = match self.setup {
            DtlsSetup::ActPass => 0,
            DtlsSetup::Active => 1,
            DtlsSetup::Passive => 2,
        };
        let kind_bit = match self.kind {
            CodeKind::Offer => 0,
            CodeKind::Answer => 1,
        };
        let short = short_lengths(self.ice_ufrag.len(), self.ice_pwd.len());
        out.push(
            COMPACT_VERSION << 5
                | u8::from(short.is_some()) << 4
                | kind_bit << 3
                | setup_bits << 1
                | u8::from(has_ext),
        );
        match short {
            Some(b) => out.push(b),
            None => {
                out.push(len_u8(self.ice_ufrag.len()));
                out.push(len_u8(self.ice_pwd.len()));
            }
        }
        out.extend_from_slice(&self.fingerprint);
        pack_ice(&mut out, self.ice_ufrag.bytes().chain(self.ice_pwd.bytes()));
        if has_ext {
            let flags = u8::from(self.session_id.is_some())
                | u8::from(self.max_message_size.is_some()) << 1;
            out.push(flags);
            if let Some(id) = &self.session_id {
                out.push(len_u8(id.len()));
                out.extend_from_slice(id);
            }
            if let Some(max) = self.max_message_size {
                out.extend_from_slice(&max.to_be_bytes());
            }
        }
        for c in &self.candidates {
            write_candidate(&mut out, c);
        }
        if out.len() > MAX_CODE_LEN {
            return Err(CompactError::TooLong {
                len: out.len(),
                limit: MAX_CODE_LEN,
            });
        }
        Ok(out)
    }

    /// Reads the binary form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CompactError> {
        if bytes.is_empty() {
            return Err(CompactError::Empty);
        }
        if bytes.len() > MAX_CODE_LEN {
            return Err(CompactError::TooLong {
                len: bytes.len(),
                limit: MAX_CODE_LEN,
            });
        }
        let mut r = Reader { bytes, pos: 0 };
        let head = r.u8("header")?;
        let version = head >> 5;
        if version != COMPACT_VERSION {
            return Err(CompactError::UnsupportedVersion(version));
        }
        let kind = if head & 0x08 == 0 {
            CodeKind::Offer
        } else {
            CodeKind::Answer
        };
        let setup = match (head >> 1) & 0x03 {
            0 => DtlsSetup::ActPass,
            1 => DtlsSetup::Active,
            2 => DtlsSetup::Passive,
            _ => return Err(CompactError::Reserved("setup")),
        };
        let has_ext = head & 0x01 == 1;
        let (ufrag_len, pwd_len) = if head & 0x10 != 0 {
            let b = usize::from(r.u8("credential lengths")?);
            (4 + (b >> 4) * 4, 22 + (b & 0x0f) * 2)
        } else {
            let ufrag_len = usize::from(r.u8("ufrag length")?);
            let pwd_len = usize::from(r.u8("password length")?);
            if short_lengths(ufrag_len, pwd_len).is_some() {
                return Err(CompactError::Invalid {
                    what: "credential lengths",
                    reason: "written long where the short form applies",
                });
            }
            (ufrag_len, pwd_len)
        };
        let fingerprint: [u8; 32] = r.array("fingerprint")?;
        let packed = r.take("ICE credentials", (ufrag_len + pwd_len).div_ceil(4) * 3)?;
        let chars = unpack_ice(packed, ufrag_len + pwd_len)?;
        let (ufrag, pwd) = chars.split_at(ufrag_len);
        let ice_ufrag = ufrag.to_owned();
        let ice_pwd = pwd.to_owned();
        let mut session_id = None;
        let mut max_message_size = None;
        if has_ext {
            let flags = r.u8("extension flags")?;
            if flags & !0x03 != 0 {
                return Err(CompactError::Reserved("extension flags"));
            }
            if flags == 0 {
                return Err(CompactError::Invalid {
                    what: "extension flags",
                    reason: "set but empty",
                });
            }
            if flags & 0x01 != 0 {
                let len = usize::from(r.u8("session id length")?);
                session_id = Some(r.take("session id", len)?.to_vec());
            }
            if flags & 0x02 != 0 {
                let b: [u8; 4] = r.array("max-message-size")?;
                max_message_size = Some(u32::from_be_bytes(b));
            }
        }
        let mut candidates = Vec::new();
        while !r.is_empty() {
            if candidates.len() == MAX_CANDIDATES {
                return Err(CompactError::TooManyCandidates(MAX_CANDIDATES));
            }
            candidates.push(read_candidate(&mut r)?);
        }
        let signal = Self {
            kind,
            setup,
            fingerprint,
            ice_ufrag,
            ice_pwd,
            candidates,
            session_id,
            max_message_size,
        };
        signal.validate()?;
        Ok(signal)
    }

    /// The text form: base64url without padding.
    pub fn to_text(&self) -> Result<String, CompactError> {
        Ok(URL_SAFE_NO_PAD.encode(self.to_bytes()?))
    }

    /// Reads the text form, or a link whose fragment is the text form
    /// (`https://host/path#CODE`). Surrounding whitespace is ignored.
    pub fn from_text(text: &str) -> Result<Self, CompactError> {
        let code = code_text_of(text);
        if code.is_empty() {
            return Err(CompactError::Empty);
        }
        if code.len() > MAX_CODE_LEN.div_ceil(3) * 4 {
            return Err(CompactError::TooLong {
                len: code.len() / 4 * 3,
                limit: MAX_CODE_LEN,
            });
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(code)
            .map_err(|e| CompactError::BadText(e.to_string()))?;
        Self::from_bytes(&bytes)
    }

    /// A link carrying the code in its fragment (never sent to the server): `{base}#CODE`.
    pub fn to_link(&self, base: &str) -> Result<String, CompactError> {
        let base = base.split('#').next().unwrap_or_default();
        Ok(format!("{base}#{}", self.to_text()?))
    }

    /// Reads a description (an offer or answer the engine or a browser produced) into a code.
    pub fn from_sdp(sdp: &str, kind: CodeKind) -> Result<Self, CompactError> {
        sdp::parse(sdp, kind)
    }

    /// Writes the data-channel-only description this code stands for.
    pub fn to_sdp(&self) -> String {
        sdp::write(self)
    }
}

/// The code part of a pasted text: the fragment of a link, or the text itself.
fn code_text_of(text: &str) -> &str {
    let text = text.trim();
    let lower = text
        .get(..8)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if lower.starts_with("http://") || lower.starts_with("https://") || text.contains('#') {
        return text.split_once('#').map(|(_, c)| c.trim()).unwrap_or("");
    }
    text
}

/// The one-byte form of the credential lengths: ufrag 4–64 in steps of 4 (high nibble),
/// password 22–52 in steps of 2 (low nibble). Covers what browsers and the engine generate
/// (4/24, 8/32, 16/32).
fn short_lengths(ufrag: usize, pwd: usize) -> Option<u8> {
    let u = ufrag.checked_sub(4).filter(|u| u % 4 == 0).map(|u| u / 4)?;
    let p = pwd.checked_sub(22).filter(|p| p % 2 == 0).map(|p| p / 2)?;
    (u < 16 && p < 16).then(|| len_u8(u << 4 | p))
}

fn len_u8(len: usize) -> u8 {
    // Lengths are checked by `validate` before writing.
    u8::try_from(len).unwrap_or(u8::MAX)
}

fn check_ice(what: &'static str, value: &str, min: usize) -> Result<(), CompactError> {
    if value.len() < min || value.len() > 255 {
        return Err(CompactError::Invalid {
            what,
            reason: "length out of range",
        });
    }
    if !value.bytes().all(|b| ICE_CHARS.contains(&b)) {
        return Err(CompactError::Invalid {
            what,
            reason: "not an ICE character",
        });
    }
    Ok(())
}

fn check_hostname(name: &str) -> Result<(), CompactError> {
    if name.is_empty()
        || name.len() > 253
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(CompactError::Invalid {
            what: "candidate host name",
            reason: "not 1-253 letters, digits, '-' or '.'",
        });
    }
    Ok(())
}

fn ice_value(c: u8) -> u8 {
    // Callers validated the character.
    ICE_CHARS
        .iter()
        .position(|&x| x == c)
        .and_then(|p| u8::try_from(p).ok())
        .unwrap_or(0)
}

/// Packs ICE characters at 6 bits each, big-endian, 4 characters per 3 bytes; the last group
/// is padded with zero bits to whole 3-byte groups.
fn pack_ice(out: &mut Vec<u8>, chars: impl Iterator<Item = u8>) {
    let mut acc: u32 = 0;
    let mut n = 0;
    for c in chars {
        acc = acc << 6 | u32::from(ice_value(c));
        n += 1;
        if n == 4 {
            out.extend_from_slice(&acc.to_be_bytes()[1..]);
            acc = 0;
            n = 0;
        }
    }
    if n > 0 {
        acc <<= 6 * (4 - n);
        out.extend_from_slice(&acc.to_be_bytes()[1..]);
    }
}

fn unpack_ice(packed: &[u8], count: usize) -> Result<String, CompactError> {
    let mut out = String::with_capacity(count);
    for (g, group) in packed.chunks(3).enumerate() {
        let [a, b, c] = group else {
            return Err(CompactError::Truncated("ICE credentials"));
        };
        let acc = u32::from(*a) << 16 | u32::from(*b) << 8 | u32::from(*c);
        for i in 0..4 {
            let v = (acc >> (18 - 6 * i)) & 0x3f;
            if g * 4 + i < count {
                let ch = ICE_CHARS
                    .get(v as usize)
                    .copied()
                    .ok_or(CompactError::Truncated("ICE credentials"))?;
                out.push(char::from(ch));
            } else if v != 0 {
                return Err(CompactError::Reserved("ICE credential padding"));
            }
        }
    }
    Ok(out)
}

fn write_candidate(out: &mut Vec<u8>, c: &CompactCandidate) {
    let type_bits: u8 = match c.kind {
        CandidateType::Host => 0,
        CandidateType::ServerReflexive => 1,
        CandidateType::PeerReflexive => 2,
        CandidateType::Relay => 3,
    };
    let addr_bits: u8 = match &c.address {
        CandidateAddress::Ip(IpAddr::V4(_)) => 0,
        CandidateAddress::Ip(IpAddr::V6(_)) => 1,
        CandidateAddress::Mdns(_) => 2,
        CandidateAddress::Hostname(_) => 3,
    };
    let transport_bits: u8 = match c.transport {
        CandidateTransport::Udp => 0,
        CandidateTransport::TcpActive => 1,
        CandidateTransport::TcpPassive => 2,
        CandidateTransport::TcpSimultaneousOpen => 3,
    };
    let related_bits: u8 = match c.related {
        None => 0,
        Some(SocketAddr::V4(_)) => 0b10,
        Some(SocketAddr::V6(_)) => 0b11,
    };
    out.push(type_bits << 6 | addr_bits << 4 | related_bits << 2 | transport_bits);
    match &c.address {
        CandidateAddress::Ip(IpAddr::V4(ip)) => out.extend_from_slice(&ip.octets()),
        CandidateAddress::Ip(IpAddr::V6(ip)) => out.extend_from_slice(&ip.octets()),
        CandidateAddress::Mdns(uuid) => out.extend_from_slice(uuid),
        CandidateAddress::Hostname(name) => {
            out.push(len_u8(name.len()));
            out.extend_from_slice(name.as_bytes());
        }
    }
    out.extend_from_slice(&c.port.to_be_bytes());
    match c.related {
        None => {}
        Some(SocketAddr::V4(a)) => {
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_be_bytes());
        }
        Some(SocketAddr::V6(a)) => {
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_be_bytes());
        }
    }
}

fn read_candidate(r: &mut Reader<'_>) -> Result<CompactCandidate, CompactError> {
    let d = r.u8("candidate descriptor")?;
    let kind = match d >> 6 {
        0 => CandidateType::Host,
        1 => CandidateType::ServerReflexive,
        2 => CandidateType::PeerReflexive,
        _ => CandidateType::Relay,
    };
    let transport = match d & 0x03 {
        0 => CandidateTransport::Udp,
        1 => CandidateTransport::TcpActive,
        2 => CandidateTransport::TcpPassive,
        _ => CandidateTransport::TcpSimultaneousOpen,
    };
    let address = match (d >> 4) & 0x03 {
        0 => CandidateAddress::Ip(IpAddr::V4(Ipv4Addr::from(
            r.array::<4>("candidate address")?,
        ))),
        1 => CandidateAddress::Ip(IpAddr::V6(Ipv6Addr::from(
            r.array::<16>("candidate address")?,
        ))),
        2 => CandidateAddress::Mdns(r.array("candidate address")?),
        _ => {
            let len = usize::from(r.u8("candidate host name length")?);
            let name = r.take("candidate host name", len)?;
            let name = std::str::from_utf8(name).map_err(|_| CompactError::Invalid {
                what: "candidate host name",
                reason: "not ASCII",
            })?;
            check_hostname(name)?;
            CandidateAddress::Hostname(name.to_owned())
        }
    };
    let port = u16::from_be_bytes(r.array("candidate port")?);
    let related = match (d >> 2) & 0x03 {
        0 => None,
        0b10 => {
            let ip = Ipv4Addr::from(r.array::<4>("related address")?);
            let port = u16::from_be_bytes(r.array("related port")?);
            Some(SocketAddr::from((ip, port)))
        }
        0b11 => {
            let ip = Ipv6Addr::from(r.array::<16>("related address")?);
            let port = u16::from_be_bytes(r.array("related port")?);
            Some(SocketAddr::from((ip, port)))
        }
        _ => return Err(CompactError::Reserved("candidate related-address bits")),
    };
    Ok(CompactCandidate {
        kind,
        transport,
        address,
        port,
        related,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, what: &'static str, n: usize) -> Result<&'a [u8], CompactError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(CompactError::Truncated(what))?;
        let slice = self
            .bytes
            .get(self.pos..end)
            .ok_or(CompactError::Truncated(what))?;
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, CompactError> {
        let [b] = self.array::<1>(what)?;
        Ok(b)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], CompactError> {
        let s = self.take(what, N)?;
        s.try_into().map_err(|_| CompactError::Truncated(what))
    }

    fn is_empty(&self) -> bool {
        self.pos >= self.bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ice_packing_round_trips_odd_lengths() {
        for n in 1..10 {
            let s: String = ICE_CHARS.iter().take(n).map(|&b| char::from(b)).collect();
            let mut out = Vec::new();
            pack_ice(&mut out, s.bytes());
            assert_eq!(out.len(), n.div_ceil(4) * 3);
            assert_eq!(unpack_ice(&out, n).unwrap(), s);
        }
    }

    #[test]
    fn link_fragment_is_the_code() {
        assert_eq!(code_text_of(" https://x.example/lobby#AbC_- "), "AbC_-");
        assert_eq!(code_text_of("http://h/#Q"), "Q");
        assert_eq!(code_text_of("AbC"), "AbC");
        assert_eq!(code_text_of("https://x.example/"), "");
    }
}
