//! Server settings. Defaults suit a public deployment; tests and benchmarks loosen them.

use std::collections::HashSet;
use std::time::Duration;

use peerlink_core::identity::PublicKey;

/// Who may authenticate.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Admission {
    /// Anyone with a valid signature.
    #[default]
    Open,
    /// Only these public keys.
    AllowList(HashSet<PublicKey>),
    /// Only clients presenting a token minted with this secret (see [`crate::mint_token`]).
    Token {
        /// The HMAC-SHA256 key shared with whoever mints tokens.
        secret: Vec<u8>,
    },
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Open => f.write_str("Open"),
            Self::AllowList(keys) => write!(f, "AllowList({} keys)", keys.len()),
            Self::Token { .. } => f.write_str("Token(<secret>)"),
        }
    }
}

/// coturn `use-auth-secret` settings.
#[derive(Clone)]
pub struct TurnConfig {
    /// The `static-auth-secret` shared with coturn.
    pub secret: Vec<u8>,
    /// STUN and TURN URLs handed out with the credentials.
    pub urls: Vec<String>,
    /// How long credentials stay valid.
    pub ttl: Duration,
}

impl std::fmt::Debug for TurnConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnConfig")
            .field("secret", &"<redacted>")
            .field("urls", &self.urls)
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// A token bucket's rate and burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Sustained units per second.
    pub per_second: f64,
    /// Most units available at once.
    pub burst: f64,
}

impl Rate {
    /// `per_second` sustained with a burst of `burst`.
    pub const fn new(per_second: f64, burst: f64) -> Self {
        Self { per_second, burst }
    }

    /// A rate that never limits (benchmarks).
    pub const fn unlimited() -> Self {
        Self {
            per_second: f64::INFINITY,
            burst: f64::INFINITY,
        }
    }
}

/// Settings of a [`crate::Server`].
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest accepted text message, in bytes. Default 64 KiB.
    pub max_text_bytes: usize,
    /// Largest relay payload (binary frame minus its header), in bytes. Default 64 KiB.
    pub max_relay_payload: usize,
    /// Most rooms one connection may be in. Default 16.
    pub max_rooms_per_client: usize,
    /// Most members in one room. Default 1,000.
    pub max_room_members: usize,
    /// Most concurrent connections from one IP address. Default 256.
    pub max_connections_per_ip: usize,
    /// Text messages per connection. Default 20/s, burst 60.
    pub message_rate: Rate,
    /// Text messages per IP address, over all its connections. Default 200/s, burst 400.
    pub ip_message_rate: Rate,
    /// Relayed bytes per connection (binary frames). Default 4 MiB/s, burst 8 MiB.
    pub relay_byte_rate: Rate,
    /// Rejected messages tolerated per heartbeat interval before the connection is closed
    /// with `abuse`. Default 50.
    pub max_strikes: u32,
    /// Interval of server pings. Default 15 s.
    pub heartbeat_interval: Duration,
    /// Silence after which a connection is dropped. Default 40 s.
    pub heartbeat_timeout: Duration,
    /// Time allowed from connect to a successful `auth`. Default 10 s.
    pub auth_timeout: Duration,
    /// Time a write to a client may take before the client is dropped. Default 10 s.
    pub write_timeout: Duration,
    /// Messages queued for one client before it counts as a slow consumer. Default 256.
    pub client_queue: usize,
    /// Who may authenticate. Default: anyone.
    pub admission: Admission,
    /// Hosts a client may sign (compared case-insensitively). Empty (default): the `Host`
    /// header of the client's own request, which is right unless a proxy rewrites it.
    pub allowed_hosts: Vec<String>,
    /// TURN credentials; `None` (default) answers `turn` with `turn_unavailable`.
    pub turn: Option<TurnConfig>,
    /// Redis URL for scale-out; `None` (default) keeps all state in this process.
    pub redis_url: Option<String>,
    /// Delay suggested to clients in the shutdown `reconnect` message. Default 500 ms.
    pub reconnect_hint: Duration,
    /// Serve the browser lobby page at `/`. Default true.
    pub lobby: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_text_bytes: 64 << 10,
            max_relay_payload: 64 << 10,
            max_rooms_per_client: 16,
            max_room_members: 1_000,
            max_connections_per_ip: 256,
            message_rate: Rate::new(20.0, 60.0),
            ip_message_rate: Rate::new(200.0, 400.0),
            relay_byte_rate: Rate::new(4.0 * 1024.0 * 1024.0, 8.0 * 1024.0 * 1024.0),
            max_strikes: 50,
            heartbeat_interval: Duration::from_secs(15),
            heartbeat_timeout: Duration::from_secs(40),
            auth_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            client_queue: 256,
            admission: Admission::Open,
            allowed_hosts: Vec::new(),
            turn: None,
            redis_url: None,
            reconnect_hint: Duration::from_millis(500),
            lobby: true,
        }
    }
}
