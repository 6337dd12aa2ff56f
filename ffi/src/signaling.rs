//! The signaling server from Swift and Kotlin: `SignalingClient`, `WebRtcDialer` (connect to a
//! device by id over WebRTC, over the server relay, or hybrid: relay at once, then WebRTC) and
//! `HybridConnection` with its path changes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use peerlink::TransportKind;
use peerlink::signaling::{
    DialError, DialerConfig, HybridAcceptor, HybridConfig, HybridEvent, HybridEvents,
    IncomingLinks, SignalingConfig, SignalingError, SignalingEvents,
};

use crate::connection::Connection;
use crate::error::PeerlinkError;
use crate::identity::{DeviceInfo, Identity};
use crate::node::Node;
use crate::task;
use crate::webrtc::{WebRtcOptions, webrtc_config, webrtc_error};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn signaling_error(e: SignalingError) -> PeerlinkError {
    PeerlinkError::from_code(e.code(), e.to_string())
}

pub(crate) fn dial_error(e: DialError) -> PeerlinkError {
    match e {
        DialError::Signaling(e) => signaling_error(e),
        DialError::WebRtc(e) => webrtc_error(e),
        DialError::Handshake(e) => e.into(),
        DialError::Timeout(_) => PeerlinkError::from_code("timeout", e.to_string()),
        DialError::IdentityMismatch(_) => {
            PeerlinkError::from_code("identity_mismatch", e.to_string())
        }
        other => PeerlinkError::Closed {
            code: "closed".into(),
            detail: other.to_string(),
            reason: "closed_locally".into(),
        },
    }
}

/// Settings of `SignalingClient.connect`.
#[derive(uniffi::Record)]
pub struct SignalingOptions {
    /// Server URLs (`ws://host:port/ws`), tried in turn.
    pub urls: Vec<String>,
    /// The identity the client authenticates with (the node's).
    pub identity: Arc<Identity>,
    /// The user id announced to other members.
    pub user_id: String,
    /// The device id others connect to.
    pub device_id: String,
    /// Admission token, when the server requires one.
    #[uniffi(default = None)]
    pub token: Option<String>,
    /// Deadline for connecting and authenticating once (default 10 000 ms).
    #[uniffi(default = None)]
    pub connect_timeout_ms: Option<u64>,
    /// Deadline for a request's reply (default 10 000 ms).
    #[uniffi(default = None)]
    pub request_timeout_ms: Option<u64>,
}

impl std::fmt::Debug for SignalingOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalingOptions")
            .field("urls", &self.urls)
            .field("user_id", &self.user_id)
            .field("device_id", &self.device_id)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// A room member as the server lists it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Member {
    /// Its device id.
    pub device_id: String,
    /// Its user id.
    pub user_id: String,
    /// Its Ed25519 public key, base64.
    pub public_key: String,
}

impl From<peerlink::signaling::Member> for Member {
    fn from(m: peerlink::signaling::Member) -> Self {
        Self {
            device_id: m.device_id,
            user_id: m.user_id,
            public_key: m.public_key,
        }
    }
}

/// An authenticated session with a signaling server; reconnects by itself.
#[derive(uniffi::Object)]
pub struct SignalingClient {
    inner: peerlink::signaling::SignalingClient,
    events: Mutex<Option<SignalingEvents>>,
}

impl std::fmt::Debug for SignalingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalingClient")
            .field("device_id", &self.inner.device_id())
            .finish_non_exhaustive()
    }
}

#[uniffi::export]
impl SignalingClient {
    /// Connects and authenticates to the first reachable URL.
    #[uniffi::constructor]
    pub async fn connect(options: SignalingOptions) -> Result<Arc<Self>, PeerlinkError> {
        let mut config = SignalingConfig::new(
            String::new(),
            options.identity.inner.clone(),
            options.user_id,
            options.device_id,
        );
        config.urls = options.urls;
        config.token = options.token;
        if let Some(ms) = options.connect_timeout_ms {
            config.connect_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = options.request_timeout_ms {
            config.request_timeout = Duration::from_millis(ms);
        }
        task::run(async move {
            let (inner, events) = peerlink::signaling::SignalingClient::connect(config)
                .await
                .map_err(signaling_error)?;
            Ok(Arc::new(Self {
                inner,
                events: Mutex::new(Some(events)),
            }))
        })
        .await
    }

    /// This client's device id.
    pub fn device_id(&self) -> String {
        self.inner.device_id().to_owned()
    }

    /// Whether the session to the server is up right now.
    pub fn is_connected(&self) -> bool {
        self.inner.is_connected()
    }

    /// Joins `room` and returns the other members (re-joined after reconnects).
    pub async fn join(&self, room: String) -> Result<Vec<Member>, PeerlinkError> {
        let client = self.inner.clone();
        task::run(async move {
            let members = client.join(&room).await.map_err(signaling_error)?;
            Ok(members.into_iter().map(Member::from).collect())
        })
        .await
    }

    /// Leaves `room`.
    pub async fn leave(&self, room: String) -> Result<(), PeerlinkError> {
        let client = self.inner.clone();
        task::run(async move { client.leave(&room).await.map_err(signaling_error) }).await
    }

    /// Disconnects for good. Kotlin: `closeClient`.
    pub async fn close(&self) {
        let client = self.inner.clone();
        task::run_infallible(async move { client.close().await }, ()).await;
    }
}

/// Settings of a `WebRtcDialer`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DialerOptions {
    /// Settings of every link.
    #[uniffi(default = None)]
    pub webrtc: Option<WebRtcOptions>,
    /// How long a link may take from the offer to an open channel (default 20 000 ms).
    #[uniffi(default = None)]
    pub open_timeout_ms: Option<u64>,
    /// Take the relay links other devices open through the server (`connectRelay`,
    /// `connectHybrid`) as incoming links too (default false: they are refused).
    #[uniffi(default = false)]
    pub accept_relay: bool,
}

/// Settings of `WebRtcDialer.connectHybrid`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct HybridOptions {
    /// Wait between failed WebRTC attempts, and after a WebRTC link dies before trying again
    /// (default 5 000 ms).
    #[uniffi(default = None)]
    pub retry_delay_ms: Option<u64>,
    /// WebRTC attempts before staying on the relay for good (default 3; 0: never try).
    #[uniffi(default = None)]
    pub max_webrtc_attempts: Option<u32>,
}

/// What `accept` and `acceptHybrid` take incoming links from.
enum Incoming {
    Links(IncomingLinks),
    Hybrid(HybridAcceptor),
    Taken,
}

/// Connects to devices by id through a signaling client (WebRTC, server relay or hybrid),
/// and accepts the links other devices open.
#[derive(uniffi::Object)]
pub struct WebRtcDialer {
    inner: peerlink::signaling::WebRtcDialer,
    incoming: Arc<tokio::sync::Mutex<Incoming>>,
    /// Set by the first `acceptHybrid`: from then on the dialer accepts only that way.
    hybrid: std::sync::atomic::AtomicBool,
    /// Set by `close()`: pending and later accepts resolve with nothing.
    closed: Arc<tokio::sync::watch::Sender<bool>>,
    events_task: tokio::task::AbortHandle,
}

impl std::fmt::Debug for WebRtcDialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcDialer")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

fn invalid_state(detail: &str) -> PeerlinkError {
    PeerlinkError::from_code("invalid_state", detail.into())
}

#[uniffi::export]
impl WebRtcDialer {
    /// Takes over `client`'s events (once per client; `invalid_state` after).
    #[uniffi::constructor(default(options = None))]
    pub fn new(
        client: Arc<SignalingClient>,
        options: Option<DialerOptions>,
    ) -> Result<Arc<Self>, PeerlinkError> {
        let options = options.unwrap_or(DialerOptions {
            webrtc: None,
            open_timeout_ms: None,
            accept_relay: false,
        });
        let mut config = DialerConfig::new(webrtc_config(options.webrtc)?);
        if let Some(ms) = options.open_timeout_ms {
            config.open_timeout = Duration::from_millis(ms);
        }
        config.accept_relay = options.accept_relay;
        let Some(events) = lock(&client.events).take() else {
            return Err(invalid_state("the client already has a dialer"));
        };
        let _runtime = peerlink::runtime::handle().enter();
        let (inner, mut rest, incoming) =
            peerlink::signaling::WebRtcDialer::new(client.inner.clone(), events, config);
        // Reads the events the dialer does not consume, so the client's queue never fills.
        let events_task = tokio::spawn(async move { while rest.next().await.is_some() {} });
        Ok(Arc::new(Self {
            inner,
            incoming: Arc::new(tokio::sync::Mutex::new(Incoming::Links(incoming))),
            hybrid: std::sync::atomic::AtomicBool::new(false),
            closed: Arc::new(tokio::sync::watch::channel(false).0),
            events_task: events_task.abort_handle(),
        }))
    }

    /// Connects `node` to device `deviceId` over WebRTC and checks that the peer proves the
    /// identity the server authenticated for that device id.
    pub async fn connect(
        &self,
        node: Arc<Node>,
        device_id: String,
    ) -> Result<Arc<Connection>, PeerlinkError> {
        let node = node.inner.clone();
        let dialer = self.inner.clone();
        task::run(async move {
            let c = dialer
                .connect(&node, &device_id)
                .await
                .map_err(dial_error)?;
            Ok(Arc::new(Connection::from(c)))
        })
        .await
    }

    /// Connects `node` to device `deviceId` through the signaling server's relay instead of
    /// WebRTC (the server forwards the end-to-end encrypted link). The peer's dialer needs
    /// `acceptRelay`.
    pub async fn connect_relay(
        &self,
        node: Arc<Node>,
        device_id: String,
    ) -> Result<Arc<Connection>, PeerlinkError> {
        let node = node.inner.clone();
        let dialer = self.inner.clone();
        task::run(async move {
            let c = dialer
                .connect_relay(&node, &device_id)
                .await
                .map_err(dial_error)?;
            Ok(Arc::new(Connection::from(c)))
        })
        .await
    }

    /// Connects in hybrid mode: over the relay at once, then WebRTC in the background; new
    /// calls move to WebRTC once it is verified and to the relay while it is down. The peer's
    /// dialer needs `acceptRelay` and takes the connection with `acceptHybrid`.
    #[uniffi::method(default(options = None))]
    pub async fn connect_hybrid(
        &self,
        node: Arc<Node>,
        device_id: String,
        options: Option<HybridOptions>,
    ) -> Result<Arc<HybridConnection>, PeerlinkError> {
        let mut config = HybridConfig::default();
        if let Some(options) = options {
            if let Some(ms) = options.retry_delay_ms {
                config.retry_delay = Duration::from_millis(ms);
            }
            if let Some(n) = options.max_webrtc_attempts {
                config.max_webrtc_attempts = n;
            }
        }
        let node = node.inner.clone();
        let dialer = self.inner.clone();
        task::run(async move {
            let hybrid =
                peerlink::signaling::HybridConnection::dial(&dialer, &node, &device_id, config)
                    .await
                    .map_err(dial_error)?;
            Ok(HybridConnection::new(hybrid))
        })
        .await
    }

    /// The next link another device opened, accepted on `node` (handshake as responder,
    /// identity checked); nothing once the client is closed.
    pub async fn accept(&self, node: Arc<Node>) -> Result<Option<Arc<Connection>>, PeerlinkError> {
        let node = node.inner.clone();
        let incoming = Arc::clone(&self.incoming);
        let mut closed = self.closed.subscribe();
        if self.hybrid.load(std::sync::atomic::Ordering::Acquire) {
            return Err(invalid_state("this dialer accepts hybrid connections"));
        }
        task::run(async move {
            let next = match &mut *incoming.lock().await {
                Incoming::Links(links) => tokio::select! {
                    biased;
                    _ = closed.wait_for(|c| *c) => None,
                    next = links.next() => next,
                },
                _ => return Err(invalid_state("this dialer accepts hybrid connections")),
            };
            let Some(link) = next else { return Ok(None) };
            let c = link.accept(&node).await.map_err(dial_error)?;
            Ok(Some(Arc::new(Connection::from(c))))
        })
        .await
    }

    /// The next device that connected in hybrid mode (or over the relay or WebRTC alone),
    /// accepted on `node`; its later WebRTC link joins the same `HybridConnection`. Nothing
    /// once the client is closed. The first call binds the dialer to `node` and to hybrid
    /// accepting (`accept` then fails with `invalid_state`).
    pub async fn accept_hybrid(
        &self,
        node: Arc<Node>,
    ) -> Result<Option<Arc<HybridConnection>>, PeerlinkError> {
        self.hybrid
            .store(true, std::sync::atomic::Ordering::Release);
        let node = node.inner.clone();
        let incoming = Arc::clone(&self.incoming);
        let mut closed = self.closed.subscribe();
        task::run(async move {
            let mut incoming = incoming.lock().await;
            if let Incoming::Links(_) = &*incoming
                && let Incoming::Links(links) = std::mem::replace(&mut *incoming, Incoming::Taken)
            {
                *incoming = Incoming::Hybrid(HybridAcceptor::new(node, links));
            }
            let Incoming::Hybrid(acceptor) = &mut *incoming else {
                return Err(invalid_state(
                    "this dialer already accepts plain connections",
                ));
            };
            let next = tokio::select! {
                biased;
                _ = closed.wait_for(|c| *c) => None,
                next = acceptor.accept() => next,
            };
            Ok(next.map(HybridConnection::new))
        })
        .await
    }

    /// Closes the signaling client (links already verified stay open). Kotlin:
    /// `closeDialer`.
    pub async fn close(&self) {
        self.events_task.abort();
        self.closed.send_replace(true);
        let dialer = self.inner.clone();
        task::run_infallible(async move { dialer.client().close().await }, ()).await;
    }
}

impl Drop for WebRtcDialer {
    fn drop(&mut self) {
        self.events_task.abort();
    }
}

/// Something that happened to a hybrid connection's paths.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct HybridEventInfo {
    /// `path`, `webrtcDisconnected`, `webrtcRestarting`, `webrtcBack`, `webrtcFailed`,
    /// `webrtcClosed` or `relayClosed`.
    pub kind: String,
    /// `path`: the path new calls take now (`relay` or `webrtc`).
    pub path: Option<String>,
}

impl From<HybridEvent> for HybridEventInfo {
    fn from(event: HybridEvent) -> Self {
        let (kind, path) = match event {
            HybridEvent::Path(kind) => ("path", Some(kind.as_str().to_owned())),
            HybridEvent::WebRtcDisconnected => ("webrtcDisconnected", None),
            HybridEvent::WebRtcRestarting => ("webrtcRestarting", None),
            HybridEvent::WebRtcBack => ("webrtcBack", None),
            HybridEvent::WebRtcFailed => ("webrtcFailed", None),
            HybridEvent::WebRtcClosed => ("webrtcClosed", None),
            HybridEvent::RelayClosed => ("relayClosed", None),
            HybridEvent::RelayBack => ("relayBack", None),
            _ => ("unknown", None),
        };
        Self {
            kind: kind.to_owned(),
            path,
        }
    }
}

/// One peer reachable over the server relay and, when a direct link opens, WebRTC: new calls
/// take the best open path (`current`).
#[derive(uniffi::Object)]
pub struct HybridConnection {
    inner: peerlink::signaling::HybridConnection,
    events: Arc<tokio::sync::Mutex<HybridEvents>>,
}

impl std::fmt::Debug for HybridConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HybridConnection")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl HybridConnection {
    fn new(inner: peerlink::signaling::HybridConnection) -> Arc<Self> {
        let events = Arc::new(tokio::sync::Mutex::new(inner.events()));
        Arc::new(Self { inner, events })
    }
}

#[uniffi::export]
impl HybridConnection {
    /// The connection new calls go to: WebRTC while it is open, else the relay.
    pub fn current(&self) -> Arc<Connection> {
        Arc::new(Connection::from(self.inner.current()))
    }

    /// The path new calls take now (`relay` or `webrtc`).
    pub fn path(&self) -> String {
        self.inner.path().as_str().to_owned()
    }

    /// The relay connection, if this side has one.
    pub fn relay(&self) -> Option<Arc<Connection>> {
        self.inner.relay().map(|c| Arc::new(Connection::from(c)))
    }

    /// The WebRTC connection while it is up.
    pub fn webrtc(&self) -> Option<Arc<Connection>> {
        self.inner.webrtc().map(|c| Arc::new(Connection::from(c)))
    }

    /// The verified peer.
    pub fn remote(&self) -> DeviceInfo {
        DeviceInfo::from(&self.inner.remote())
    }

    /// Whether any path is open.
    pub fn is_open(&self) -> bool {
        self.inner.is_open()
    }

    /// Waits (at most `timeoutMs`) until new calls take `path` (`relay` or `webrtc`);
    /// returns whether they do.
    pub async fn wait_for_path(
        &self,
        path: String,
        timeout_ms: u64,
    ) -> Result<bool, PeerlinkError> {
        let kind = match path.as_str() {
            "relay" => TransportKind::Relay,
            "webrtc" => TransportKind::WebRtc,
            other => {
                return Err(PeerlinkError::from_code(
                    "invalid_argument",
                    format!("path must be \"relay\" or \"webrtc\", not {other:?}"),
                ));
            }
        };
        let hybrid = self.inner.clone();
        task::run(async move {
            Ok(hybrid
                .wait_for_path(kind, Duration::from_millis(timeout_ms))
                .await)
        })
        .await
    }

    /// The next event of the connection's paths (`path` when new calls move to `webrtc` or
    /// back to `relay`; `webrtcDisconnected`, `webrtcRestarting`, `webrtcBack`,
    /// `webrtcFailed`, `webrtcClosed`, `relayClosed`), or nothing once the connection is
    /// closed. Events since the connection was made are kept between calls (past 64, the
    /// oldest are dropped).
    pub async fn next_event(&self) -> Option<HybridEventInfo> {
        let events = Arc::clone(&self.events);
        task::run_infallible(
            async move {
                let next = events.lock().await.next().await;
                next.map(HybridEventInfo::from)
            },
            None,
        )
        .await
    }

    /// Closes both paths and stops trying WebRTC. Kotlin: `closeHybrid`.
    #[uniffi::method(default(reason = None))]
    pub async fn close(&self, reason: Option<String>) {
        let hybrid = self.inner.clone();
        let reason = reason.unwrap_or_else(|| "closed".into());
        task::run_infallible(async move { hybrid.close(&reason).await }, ()).await;
    }
}
