//! Link configuration: ICE servers, policy, sockets and the tuning that makes the engine fast.

use std::net::SocketAddr;
use std::time::Duration;

use super::error::WebRtcError;
use super::priority::ChannelPriority;

/// One STUN or TURN server, as in the browser's `RTCIceServer`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct IceServer {
    /// `stun:host[:port]`, `turn:host[:port][?transport=udp|tcp]`, `turns:host[:port]` (TURN
    /// over TLS, port 5349 unless given). `stuns:` and `turns:…?transport=udp` (DTLS) are
    /// parsed but not usable (see [`IceServer::unsupported_reason`]).
    pub urls: Vec<String>,
    /// TURN username.
    pub username: String,
    /// TURN credential (password or REST token).
    pub credential: String,
}

impl std::fmt::Debug for IceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceServer")
            .field("urls", &self.urls)
            .field("username", &self.username)
            .field("credential", &"<redacted>")
            .finish()
    }
}

/// How a configured ICE URL will be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IceUrlKind {
    /// A STUN server over UDP.
    Stun,
    /// A TURN server reached over UDP.
    TurnUdp,
    /// A TURN server reached over TCP (`turn:…?transport=tcp`); the relayed side is UDP.
    TurnTcp,
    /// A TURN server reached over TLS (`turns:`); the relayed side is UDP. The server's
    /// certificate is verified against the Mozilla roots plus
    /// [`WebRtcConfig::turn_tls_roots`].
    TurnTls,
}

impl IceUrlKind {
    /// Whether the URL names a TURN server (any transport).
    pub fn is_turn(self) -> bool {
        matches!(self, Self::TurnUdp | Self::TurnTcp | Self::TurnTls)
    }
}

impl IceServer {
    /// Why a URL cannot be used by the current engine, or `None` if it can.
    ///
    /// TURN is reached over UDP, TCP or TLS; `stuns:` and TURN over DTLS
    /// (`turns:…?transport=udp`) are skipped (the link reports them as skipped rather than
    /// failing, so a server list with such entries still works over the others).
    pub fn unsupported_reason(url: &str) -> Option<&'static str> {
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("stuns:") {
            Some("STUN over TLS (stuns:) is not supported by the engine")
        } else if lower.starts_with("turns:") && lower.contains("transport=udp") {
            Some("TURN over DTLS (turns: with transport=udp) is not supported by the engine")
        } else {
            None
        }
    }

    /// Classifies a supported URL, or explains why it is malformed.
    pub fn classify(&self, url: &str) -> Result<IceUrlKind, WebRtcError> {
        let bad = |reason: &str| WebRtcError::BadIceServer {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = url.split_once(':').ok_or_else(|| bad("no scheme"))?;
        let host_port = rest.split('?').next().unwrap_or_default();
        if host_port.is_empty() || host_port.starts_with('/') {
            return Err(bad("no host"));
        }
        if let Some((_, query)) = rest.split_once('?') {
            match query.to_ascii_lowercase().as_str() {
                "transport=udp" | "transport=tcp" => {}
                _ => return Err(bad("unknown query (only ?transport=udp|tcp)")),
            }
        }
        let tcp = rest.to_ascii_lowercase().ends_with("?transport=tcp");
        match scheme.to_ascii_lowercase().as_str() {
            "stun" => Ok(IceUrlKind::Stun),
            scheme @ ("turn" | "turns") => {
                if self.username.is_empty() || self.credential.is_empty() {
                    return Err(bad("TURN needs a username and a credential"));
                }
                Ok(match (scheme, tcp) {
                    ("turns", _) => IceUrlKind::TurnTls,
                    (_, true) => IceUrlKind::TurnTcp,
                    _ => IceUrlKind::TurnUdp,
                })
            }
            _ => Err(bad("scheme must be stun:, turn: or turns:")),
        }
    }
}

/// Which candidates ICE may use (the browser's `iceTransportPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IceTransportPolicy {
    /// Host, server-reflexive and relay candidates.
    #[default]
    All,
    /// Only TURN relay candidates (hides the device's addresses from the peer).
    Relay,
}

/// Options of one data channel (the browser's `RTCDataChannelInit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelOptions {
    /// Deliver in order (default true).
    pub ordered: bool,
    /// Give up on a message after this many retransmissions (partial reliability).
    pub max_retransmits: Option<u16>,
    /// Give up on a message after this many milliseconds (partial reliability).
    pub max_packet_life_time: Option<u16>,
    /// Sub-protocol name carried in the channel-open message.
    pub protocol: String,
    /// Pre-negotiated stream id: both sides create the channel with the same id and no
    /// in-band open message is exchanged.
    pub negotiated: Option<u16>,
    /// Priority, carried to the peer in the channel-open message; this side's sends on the
    /// link are scheduled by it (default low, as in browsers).
    pub priority: ChannelPriority,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        Self {
            ordered: true,
            max_retransmits: None,
            max_packet_life_time: None,
            protocol: String::new(),
            negotiated: None,
            priority: ChannelPriority::default(),
        }
    }
}

/// Engine and socket tuning.
///
/// [`Tuning::default`] is what peerlink uses; [`Tuning::engine_defaults`] leaves every knob at
/// the `webrtc` crate's default (for benchmarks that show the difference). The figures behind
/// each value are in `docs/decisions/webrtc-performance.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuning {
    /// Pace of ICE connectivity checks (engine default 200 ms; 5 ms is RFC 8445's floor).
    /// Below 200 ms it is the spacing of a candidate pair's first checks: each further check
    /// on the same pair waits twice as long as the one before, up to 200 ms, so a LAN path is
    /// found within milliseconds while a pair behind a NAT or through TURN, whose first checks
    /// are lost, keeps being checked (see [`Tuning::ice_max_checks`]).
    pub ice_check_interval: Option<Duration>,
    /// Checks sent on one candidate pair without an answer before it is given up (engine
    /// default 7). The default 40 with the default interval gives a pair about 7 s: the first
    /// six checks within 0.2 s, then one every 200 ms.
    pub ice_max_checks: Option<u16>,
    /// `SO_RCVBUF` requested on each UDP socket (the kernel caps it at `net.core.rmem_max`).
    pub socket_recv_buffer: Option<usize>,
    /// `SO_SNDBUF` requested on each UDP socket.
    pub socket_send_buffer: Option<usize>,
    /// SCTP receive window advertised to the peer. `None` derives it from the socket
    /// receive buffer the kernel grants (so a peer sending a full window cannot overflow it);
    /// the engine's own default is 1 MiB whatever the socket holds. The window bounds what the
    /// peer has in flight plus what this side has received in sequence and not yet read;
    /// data held above a lost chunk until its repair does not close it, and everything queued
    /// is bounded by four windows.
    pub sctp_receive_window: Option<u32>,
    /// When [`Tuning::sctp_receive_window`] is `None`: derive the window from the socket
    /// buffer (true) or keep the engine's 1 MiB (false).
    pub window_from_socket: bool,
    /// Largest message this side accepts, announced as `a=max-message-size`
    /// (engine default 64 KiB, engine maximum 256 KiB). Lowered to the receive window when
    /// that is smaller, since a message larger than the window cannot be reassembled.
    pub max_message_size: u32,
    /// Bytes a channel may have sent but not yet acknowledged before `send` waits
    /// (`None`: no limit, the engine's default).
    pub send_buffer_limit: Option<usize>,
    /// While a channel is opening, wake the engine's driver this often so packets it
    /// produced on its own events leave at once (`None`: the engine's behaviour, which delays
    /// each connection by about 400 ms).
    pub setup_kick_interval: Option<Duration>,
    /// Adaptive cap on each channel's unacknowledged bytes, below
    /// [`Tuning::send_buffer_limit`] (`None`, the default: only the fixed limit); see
    /// [`SendPacing`]. With [`SctpCongestionControl::RateBased`] the association itself paces
    /// new data at its measured rate and caps its window when a peer's socket overflows, which
    /// does better than this cap on every path measured (peerlink → Chromium, 2 % loss), so it
    /// is off by default; it remains for [`SctpCongestionControl::Standard`], whose bursts
    /// overflow a peer whose socket buffer is smaller than the window it advertises.
    pub send_pacing: Option<SendPacing>,
    /// Congestion controller of the SCTP association under the data channels (default
    /// [`SctpCongestionControl::RateBased`]; the engine's own is
    /// [`SctpCongestionControl::Standard`]).
    pub sctp_congestion_control: SctpCongestionControl,
}

/// Congestion controller of the SCTP association that carries a link's data channels. It
/// decides only when this side sends; the wire format is the same, so either works with any
/// peer (browsers, other stacks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SctpCongestionControl {
    /// SCTP's standard controller (RFC 4960 / RFC 9260 section 7.2): the window is halved on
    /// every loss and grows by one packet per round trip, so random loss caps throughput near
    /// packet size / RTT × 1.22 / √loss (about 0.1 MB/s at 100 ms and 2 % loss). Initial
    /// window about 4 KiB.
    Standard,
    /// Rate-based and loss-tolerant, modelled on BBR: the window is twice the measured
    /// bandwidth × minimum RTT; random loss is repaired without shrinking it, while a
    /// retransmission timeout still resets it to one packet and a capacity drop lowers the
    /// bandwidth estimate within ten round trips. Initial window ten packets (RFC 6928).
    #[default]
    RateBased,
}

/// The adaptive in-flight window of [`Tuning::send_pacing`].
///
/// `ChannelSender::send` waits while the channel's unacknowledged bytes fill the window. The
/// window starts at `initial` and grows by half per epoch (at least four windows acknowledged
/// and 20 ms) in which sends waited on it, until the first acknowledgement stall: no
/// acknowledgement for 300 ms while bytes are outstanding, which in the engine means a
/// retransmission timeout. A stall halves the window (per 300 ms of the gap) and caps it at
/// half its size before the stall for 10 s; from then on it hill-climbs on the delivery rate,
/// every few epochs trying a step up (half again) or down (two thirds) and keeping it only if
/// the rate rose by 5 % (down) or at all (up). It stays between `min` and
/// [`Tuning::send_buffer_limit`] (8 MiB without one). Figures in
/// `docs/decisions/webrtc-performance.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendPacing {
    /// Window before any measurement, bytes.
    pub initial: usize,
    /// Smallest window, bytes.
    pub min: usize,
}

impl Default for SendPacing {
    fn default() -> Self {
        Self {
            initial: 256 * 1024,
            min: 64 * 1024,
        }
    }
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            ice_check_interval: Some(Duration::from_millis(5)),
            ice_max_checks: Some(40),
            socket_recv_buffer: Some(4 * 1024 * 1024),
            socket_send_buffer: Some(4 * 1024 * 1024),
            sctp_receive_window: None,
            window_from_socket: true,
            max_message_size: 256 * 1024,
            send_buffer_limit: Some(1024 * 1024),
            setup_kick_interval: Some(Duration::from_millis(1)),
            send_pacing: None,
            sctp_congestion_control: SctpCongestionControl::RateBased,
        }
    }
}

impl Tuning {
    /// Every knob at the engine's own default.
    pub fn engine_defaults() -> Self {
        Self {
            ice_check_interval: None,
            ice_max_checks: None,
            socket_recv_buffer: None,
            socket_send_buffer: None,
            sctp_receive_window: None,
            window_from_socket: false,
            max_message_size: 64 * 1024,
            send_buffer_limit: None,
            setup_kick_interval: None,
            send_pacing: None,
            sctp_congestion_control: SctpCongestionControl::Standard,
        }
    }
}

/// Configuration of one [`WebRtcLink`](super::WebRtcLink).
#[derive(Debug, Clone)]
pub struct WebRtcConfig {
    /// STUN/TURN servers.
    pub ice_servers: Vec<IceServer>,
    /// Candidate policy.
    pub ice_transport_policy: IceTransportPolicy,
    /// Local UDP addresses to bind. `0.0.0.0:0` binds one socket per non-loopback interface;
    /// tests and loopback benchmarks bind `127.0.0.1:0`.
    pub bind_addrs: Vec<SocketAddr>,
    /// Trickle ICE: send the description at once and candidates as they are gathered. When
    /// false, the description is sent once gathering completes (or [`Self::gather_timeout`]
    /// passes) with every candidate inside it.
    pub trickle: bool,
    /// Non-trickle mode: the longest wait for gathering to complete.
    pub gather_timeout: Duration,
    /// Optional id carried in every signal and checked on every received one.
    pub connection_id: Option<String>,
    /// Most remote candidates kept while waiting for the remote description.
    pub max_early_candidates: usize,
    /// Engine and socket tuning.
    pub tuning: Tuning,
    /// ICE liveness timers (consent checks): when a silent path counts as disconnected or
    /// failed.
    pub ice_timeouts: IceTimeouts,
    /// When the link restarts ICE by itself.
    pub ice_restart: IceRestartPolicy,
    /// This side's ICE username fragment and password (`None`: the engine draws 16 + 32
    /// letters). Links made for compact codes use [`IceCredentials::generate_short`], which
    /// saves 15 bytes per code. An ICE restart keeps these credentials.
    pub ice_credentials: Option<IceCredentials>,
    /// Extra trusted CA certificates (DER) for `turns:` servers, on top of the Mozilla root
    /// store. Certificates are always verified: a `turns:` server whose certificate chains to
    /// none of these, or does not name the URL's host, gives no relay candidate.
    pub turn_tls_roots: Vec<Vec<u8>>,
    /// A switch that cuts this link's path on demand ([`super::PathCut`]); `None` (the
    /// default) for real use.
    pub path_cut: Option<super::PathCut>,
}

/// The 64 characters ICE allows in a username fragment and password (`ice-char`, RFC 8839).
const ICE_CHARS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Local ICE credentials (`a=ice-ufrag`, `a=ice-pwd`). The password is redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct IceCredentials {
    ufrag: String,
    pwd: String,
}

impl std::fmt::Debug for IceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceCredentials")
            .field("ufrag", &self.ufrag)
            .field("pwd", &"<redacted>")
            .finish()
    }
}

impl IceCredentials {
    /// Shortest ufrag RFC 8445 allows (24 bits of randomness at 6 bits per character).
    pub const SHORT_UFRAG_LEN: usize = 4;
    /// Shortest password RFC 8445 allows (128 bits: 22 characters carry 132).
    pub const SHORT_PWD_LEN: usize = 22;

    /// Fresh random credentials of the minimum lengths, drawn from the operating system's
    /// random source over all 64 ICE characters.
    pub fn generate_short() -> Self {
        use rand::RngCore as _;
        let mut random = [0u8; Self::SHORT_UFRAG_LEN + Self::SHORT_PWD_LEN];
        rand::rngs::OsRng.fill_bytes(&mut random);
        // 64 divides 256: the low six bits of a uniform byte are uniform.
        let mut chars = random
            .iter()
            .map(|b| char::from(ICE_CHARS[usize::from(b & 63)]));
        let ufrag = chars.by_ref().take(Self::SHORT_UFRAG_LEN).collect();
        let pwd = chars.collect();
        Self { ufrag, pwd }
    }

    /// Given credentials, if they are valid: 4–256 and 22–256 ICE characters.
    pub fn new(ufrag: &str, pwd: &str) -> Option<Self> {
        let valid = |s: &str, min: usize| {
            (min..=256).contains(&s.len()) && s.bytes().all(|b| ICE_CHARS.contains(&b))
        };
        (valid(ufrag, Self::SHORT_UFRAG_LEN) && valid(pwd, Self::SHORT_PWD_LEN)).then(|| Self {
            ufrag: ufrag.to_owned(),
            pwd: pwd.to_owned(),
        })
    }

    /// The username fragment.
    pub fn ufrag(&self) -> &str {
        &self.ufrag
    }

    /// The password.
    pub fn pwd(&self) -> &str {
        &self.pwd
    }
}

/// ICE liveness timers; `None` keeps the engine's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IceTimeouts {
    /// Silence after which the link reports [`Disconnected`](super::LinkState::Disconnected)
    /// (engine default 5 s).
    pub disconnected: Option<Duration>,
    /// Silence after which the link reports [`Failed`](super::LinkState::Failed)
    /// (engine default 25 s).
    pub failed: Option<Duration>,
    /// Interval of keep-alive checks on an idle selected pair (engine default 2 s).
    pub keepalive: Option<Duration>,
}

/// Automatic ICE restart: the connection above (channels, SCTP association, DTLS session and
/// the verified peerlink connection) survives; only the path is searched again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IceRestartPolicy {
    /// Restart after the link has been `Disconnected` this long (at once on `Failed`).
    /// `None`: never restart automatically; [`WebRtcLink::restart_ice`](super::WebRtcLink::restart_ice)
    /// still works.
    pub after_disconnected: Option<Duration>,
    /// How long one restart may take to reconnect before the next attempt.
    pub attempt_timeout: Duration,
    /// Attempts per outage; after the last one the link stays down until the path comes back
    /// by itself or the owner closes it.
    pub max_attempts: u32,
}

impl Default for IceRestartPolicy {
    fn default() -> Self {
        Self {
            after_disconnected: Some(Duration::from_secs(2)),
            attempt_timeout: Duration::from_secs(10),
            max_attempts: 3,
        }
    }
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        Self {
            ice_servers: Vec::new(),
            ice_transport_policy: IceTransportPolicy::All,
            bind_addrs: vec![SocketAddr::from(([0, 0, 0, 0], 0))],
            trickle: true,
            gather_timeout: Duration::from_secs(5),
            connection_id: None,
            max_early_candidates: 64,
            tuning: Tuning::default(),
            ice_timeouts: IceTimeouts::default(),
            ice_restart: IceRestartPolicy::default(),
            ice_credentials: None,
            turn_tls_roots: Vec::new(),
            path_cut: None,
        }
    }
}

impl WebRtcConfig {
    /// A configuration for links inside one machine: binds `127.0.0.1` only, no ICE servers.
    pub fn loopback() -> Self {
        Self {
            bind_addrs: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            ..Self::default()
        }
    }

    /// A configuration for links made by compact codes: non-trickle (one description each
    /// way holds every candidate) and short fresh ICE credentials.
    pub fn for_codes(self) -> Self {
        Self {
            trickle: false,
            ice_credentials: Some(IceCredentials::generate_short()),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_credentials_have_minimum_lengths_ice_chars_and_differ() {
        let a = IceCredentials::generate_short();
        let b = IceCredentials::generate_short();
        assert_eq!(a.ufrag().len(), 4);
        assert_eq!(a.pwd().len(), 22);
        assert!(IceCredentials::new(a.ufrag(), a.pwd()).is_some());
        assert_ne!(a, b, "fresh randomness each time");
        assert!(!format!("{a:?}").contains(a.pwd()), "password redacted");
    }

    #[test]
    fn invalid_credentials_are_refused() {
        assert!(IceCredentials::new("abc", "a".repeat(22).as_str()).is_none());
        assert!(IceCredentials::new("abcd", "a".repeat(21).as_str()).is_none());
        assert!(IceCredentials::new("ab:d", "a".repeat(22).as_str()).is_none());
        assert!(IceCredentials::new("abcd", "a".repeat(257).as_str()).is_none());
        assert!(IceCredentials::new("ab+/", "a".repeat(22).as_str()).is_some());
    }
}
