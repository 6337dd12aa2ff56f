//! The signaling server from JavaScript: `SignalingClient` (authenticated session, rooms) and
//! `WebRtcDialer` (connect to a device by id over WebRTC, the server carrying the signals;
//! accept the links other devices open).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use napi::bindgen_prelude::{Function, Reference, Unknown};
use napi::{Env, sys};
use napi_derive::napi;
use peerlink::signaling::{
    DialError, DialerConfig, HybridAcceptor, HybridConfig, HybridEvent, HybridEvents,
    IncomingLinks, SignalingConfig, SignalingError, SignalingEvent, SignalingEvents,
};
use tokio::task::AbortHandle;

use crate::bridge::{JsCallback, Native, call_js, promise};
use crate::connection::Connection;
use crate::error::{Failure, sync_error};
use crate::identity::Identity;
use crate::node::Node;
use crate::webrtc::{WebRtcOptions, webrtc_config, webrtc_failure};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn millis(ms: Option<f64>, name: &str) -> Result<Option<Duration>, napi::Error<String>> {
    match ms {
        None => Ok(None),
        Some(ms) if ms.is_finite() && ms > 0.0 => Ok(Some(Duration::from_secs_f64(ms / 1000.0))),
        Some(_) => Err(sync_error(
            "invalid_argument",
            format!("{name} must be a positive number of milliseconds"),
        )),
    }
}

pub(crate) fn signaling_failure(e: SignalingError) -> Failure {
    Failure::new(e.code(), e.to_string())
}

pub(crate) fn dial_failure(e: DialError) -> Failure {
    match e {
        DialError::Signaling(e) => signaling_failure(e),
        DialError::WebRtc(e) => webrtc_failure(e),
        DialError::Handshake(e) => Failure::from(e),
        DialError::Timeout(_) => Failure::new("timeout", e.to_string()),
        DialError::IdentityMismatch(_) => Failure::new("identity_mismatch", e.to_string()),
        other => Failure::new("closed", other.to_string()),
    }
}

/// Options of `SignalingClient.connect(options)`.
#[napi(object, object_to_js = false)]
pub struct SignalingOptions {
    /// Server URLs (`ws://host:port/ws`), tried in turn.
    pub urls: Vec<String>,
    /// The identity the client authenticates with (the node's).
    pub identity: Reference<Identity>,
    /// The user id announced to other members.
    pub user_id: String,
    /// The device id others connect to.
    pub device_id: String,
    /// Admission token, when the server requires one.
    pub token: Option<String>,
    /// Deadline for connecting and authenticating once (default 10 000 ms).
    pub connect_timeout_ms: Option<f64>,
    /// Deadline for a request's reply (default 10 000 ms).
    pub request_timeout_ms: Option<f64>,
}

/// A room member as the server lists it.
#[napi(object)]
#[derive(Debug, Clone)]
#[allow(unreachable_pub)] // a JS type: only ever passed out to callbacks
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

/// Something the signaling client saw (`type`: `connected`, `disconnected`, `members`,
/// `joined`, `left`, `signal`, `error`).
#[napi(object)]
#[derive(Debug, Clone, Default)]
#[allow(unreachable_pub)] // a JS type: only ever passed out to callbacks
pub struct SignalingEventInfo {
    /// The kind of event.
    #[napi(js_name = "type")]
    pub kind: String,
    /// `connected`: the server URL.
    pub url: Option<String>,
    /// `disconnected`: why.
    pub reason: Option<String>,
    /// `members`, `joined`, `left`: the room.
    pub room: Option<String>,
    /// `members`: the other members.
    pub members: Option<Vec<Member>>,
    /// `joined`, `signal`: the member.
    pub member: Option<Member>,
    /// `left`: its device id; `error`: the device concerned.
    pub device_id: Option<String>,
    /// `signal`: the JSON the member sent.
    pub data: Option<String>,
    /// `error`: the server's error code.
    pub code: Option<String>,
}

fn event_info(event: SignalingEvent) -> Option<SignalingEventInfo> {
    let mut info = SignalingEventInfo::default();
    match event {
        SignalingEvent::Connected { url } => {
            info.kind = "connected".into();
            info.url = Some(url);
        }
        SignalingEvent::Disconnected { reason } => {
            info.kind = "disconnected".into();
            info.reason = Some(reason);
        }
        SignalingEvent::Members { room, members } => {
            info.kind = "members".into();
            info.room = Some(room);
            info.members = Some(members.into_iter().map(Member::from).collect());
        }
        SignalingEvent::Joined { room, member } => {
            info.kind = "joined".into();
            info.room = Some(room);
            info.member = Some(member.into());
        }
        SignalingEvent::Left { room, device_id } => {
            info.kind = "left".into();
            info.room = Some(room);
            info.device_id = Some(device_id);
        }
        SignalingEvent::Signal { from, data } => {
            info.kind = "signal".into();
            info.member = Some(from.into());
            info.data = Some(data.to_string());
        }
        SignalingEvent::Error { code, to } => {
            info.kind = "error".into();
            info.code = Some(code);
            info.device_id = to;
        }
        // Relay links are dropped (refused) here: the JS API offers WebRTC links.
        _ => return None,
    }
    Some(info)
}

/// An authenticated session with a signaling server; reconnects by itself.
#[napi]
pub struct SignalingClient {
    inner: peerlink::signaling::SignalingClient,
    events: Mutex<Option<SignalingEvents>>,
}

#[napi]
impl SignalingClient {
    /// Connects and authenticates to the first reachable URL.
    #[napi(ts_return_type = "Promise<SignalingClient>")]
    pub fn connect(env: Env, options: SignalingOptions) -> napi::Result<sys::napi_value> {
        let mut config = SignalingConfig::new(
            String::new(),
            options.identity.inner.clone(),
            options.user_id,
            options.device_id,
        );
        config.urls = options.urls;
        config.token = options.token;
        let timeouts = millis(options.connect_timeout_ms, "connectTimeoutMs")
            .and_then(|c| Ok((c, millis(options.request_timeout_ms, "requestTimeoutMs")?)));
        promise(&env, async move {
            let (connect, request) =
                timeouts.map_err(|e| Failure::new("invalid_argument", e.reason))?;
            if let Some(d) = connect {
                config.connect_timeout = d;
            }
            if let Some(d) = request {
                config.request_timeout = d;
            }
            let (inner, events) = peerlink::signaling::SignalingClient::connect(config)
                .await
                .map_err(signaling_failure)?;
            Ok(Native(SignalingClient {
                inner,
                events: Mutex::new(Some(events)),
            }))
        })
    }

    /// This client's device id.
    #[napi(getter)]
    pub fn device_id(&self) -> String {
        self.inner.device_id().to_owned()
    }

    /// Whether the session to the server is up right now.
    #[napi(getter)]
    pub fn is_connected(&self) -> bool {
        self.inner.is_connected()
    }

    /// Joins `room` and resolves with the other members (re-joined after reconnects).
    #[napi(ts_return_type = "Promise<Member[]>")]
    pub fn join(&self, env: Env, room: String) -> napi::Result<sys::napi_value> {
        let client = self.inner.clone();
        promise(&env, async move {
            let members = client.join(&room).await.map_err(signaling_failure)?;
            let members: Vec<Member> = members.into_iter().map(Member::from).collect();
            Ok(Native(members))
        })
    }

    /// Leaves `room`.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn leave(&self, env: Env, room: String) -> napi::Result<sys::napi_value> {
        let client = self.inner.clone();
        promise(&env, async move {
            client.leave(&room).await.map_err(signaling_failure)?;
            Ok(())
        })
    }

    /// Disconnects for good.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self, env: Env) -> napi::Result<sys::napi_value> {
        lock(&self.events).take();
        let client = self.inner.clone();
        promise(&env, async move {
            client.close().await;
            Ok(())
        })
    }

    /// `await using client = …` closes it.
    #[napi(well_known_symbol = "asyncDispose", ts_return_type = "Promise<void>")]
    pub fn async_dispose(&self, env: Env) -> napi::Result<sys::napi_value> {
        self.close(env)
    }
}

impl std::fmt::Debug for SignalingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalingClient")
            .field("device_id", &self.inner.device_id())
            .finish_non_exhaustive()
    }
}

/// Options of `new WebRtcDialer(client, options)`.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct DialerOptions {
    /// Settings of every link.
    pub webrtc: Option<WebRtcOptions>,
    /// How long a link may take from the offer to an open channel (default 20 000 ms).
    pub open_timeout_ms: Option<f64>,
    /// Take the relay links other devices open through the server (`connectRelay`,
    /// `connectHybrid`) as incoming links too (default false: they are refused).
    pub accept_relay: Option<bool>,
}

/// Options of `dialer.connectHybrid(node, deviceId, options)`.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct HybridOptions {
    /// Wait between failed WebRTC attempts, and after a WebRTC link dies before trying again
    /// (default 5 000 ms).
    pub retry_delay_ms: Option<f64>,
    /// WebRTC attempts before staying on the relay for good (default 3; 0: never try).
    pub max_webrtc_attempts: Option<u32>,
}

/// What `accept` and `acceptHybrid` take incoming links from: the dialer's stream, or the
/// hybrid acceptor made from it by the first `acceptHybrid`.
enum Incoming {
    Links(IncomingLinks),
    Hybrid(HybridAcceptor),
    Taken,
}

type EventCallback = JsCallback<SignalingEventInfo, SignalingEventInfo>;

fn ignore_result(_: sys::napi_env, _: sys::napi_value) {}

fn log_failure(thrown: crate::bridge::Thrown) {
    tracing::warn!(message = %thrown.message, "a signaling event callback failed");
}

/// Connects to devices by id over WebRTC through a signaling client, and accepts the links
/// other devices open (`accept(node)`).
#[napi]
pub struct WebRtcDialer {
    inner: peerlink::signaling::WebRtcDialer,
    incoming: Arc<tokio::sync::Mutex<Incoming>>,
    /// Set by the first `acceptHybrid`: from then on the dialer accepts only that way.
    hybrid: std::sync::atomic::AtomicBool,
    /// Set by `close()`: pending and later accepts resolve with nothing.
    closed: Arc<tokio::sync::watch::Sender<bool>>,
    callback: Arc<Mutex<Option<Arc<EventCallback>>>>,
    events_task: AbortHandle,
}

#[napi]
impl WebRtcDialer {
    /// Takes over `client`'s events (once per client).
    #[napi(constructor)]
    pub fn new(
        client: &SignalingClient,
        options: Option<DialerOptions>,
    ) -> Result<Self, napi::Error<String>> {
        let options = options.unwrap_or_default();
        let webrtc = webrtc_config(options.webrtc).map_err(|f| sync_error(&f.code, f.message))?;
        let mut config = DialerConfig::new(webrtc);
        if let Some(d) = millis(options.open_timeout_ms, "openTimeoutMs")? {
            config.open_timeout = d;
        }
        if let Some(accept_relay) = options.accept_relay {
            config.accept_relay = accept_relay;
        }
        let Some(events) = lock(&client.events).take() else {
            return Err(sync_error(
                "invalid_state",
                "the client is closed or already has a dialer",
            ));
        };
        let _runtime = peerlink::runtime::handle().enter();
        let (inner, mut rest, incoming) =
            peerlink::signaling::WebRtcDialer::new(client.inner.clone(), events, config);
        let callback: Arc<Mutex<Option<Arc<EventCallback>>>> = Arc::default();
        let slot = Arc::clone(&callback);
        // Reads the events the dialer does not consume, so the client's queue never fills.
        let events_task = tokio::spawn(async move {
            while let Some(event) = rest.next().await {
                let Some(info) = event_info(event) else {
                    continue;
                };
                let callback = lock(&slot).clone();
                if let Some(callback) = callback {
                    call_js(&callback, info, ignore_result, log_failure).await;
                }
            }
        });
        Ok(Self {
            inner,
            incoming: Arc::new(tokio::sync::Mutex::new(Incoming::Links(incoming))),
            hybrid: std::sync::atomic::AtomicBool::new(false),
            closed: Arc::new(tokio::sync::watch::channel(false).0),
            callback,
            events_task: events_task.abort_handle(),
        })
    }

    /// Calls `callback(event)` for every signaling event the dialer does not consume itself
    /// (members joining and leaving, reconnects, server errors).
    #[napi(ts_args_type = "callback: (event: SignalingEventInfo) => void")]
    pub fn on_event(
        &self,
        callback: Function<'_, Unknown<'static>, Unknown<'static>>,
    ) -> napi::Result<()> {
        let callback: EventCallback = callback
            .build_threadsafe_function::<SignalingEventInfo>()
            .callee_handled::<false>()
            .weak::<true>()
            .build_callback(|ctx| Ok(ctx.value))?;
        *lock(&self.callback) = Some(Arc::new(callback));
        Ok(())
    }

    /// Connects `node` to device `deviceId` over WebRTC and checks that the peer proves the
    /// identity the server authenticated for that device id.
    #[napi(ts_return_type = "Promise<Connection>")]
    pub fn connect(
        &self,
        env: Env,
        node: Reference<Node>,
        device_id: String,
    ) -> napi::Result<sys::napi_value> {
        let node = node.inner.clone();
        let dialer = self.inner.clone();
        promise(&env, async move {
            let connection = dialer
                .connect(&node, &device_id)
                .await
                .map_err(dial_failure)?;
            Ok(Native(Connection::from(connection)))
        })
    }

    /// The next link another device opened, accepted on `node` (handshake as responder,
    /// identity checked); `null` once the client is closed.
    #[napi(ts_return_type = "Promise<Connection | null>")]
    pub fn accept(&self, env: Env, node: Reference<Node>) -> napi::Result<sys::napi_value> {
        let node = node.inner.clone();
        let incoming = Arc::clone(&self.incoming);
        let mut closed = self.closed.subscribe();
        let hybrid = self.hybrid.load(std::sync::atomic::Ordering::Acquire);
        promise(&env, async move {
            if hybrid {
                return Err(hybrid_taken());
            }
            let next = match &mut *incoming.lock().await {
                Incoming::Links(links) => tokio::select! {
                    biased;
                    _ = closed.wait_for(|c| *c) => None,
                    next = links.next() => next,
                },
                _ => return Err(hybrid_taken()),
            };
            let Some(link) = next else {
                return Ok(None);
            };
            let connection = link.accept(&node).await.map_err(dial_failure)?;
            Ok(Some(Native(Connection::from(connection))))
        })
    }

    /// Accepts every link other devices open on `node` until `close()`; each connection
    /// shows up in `node.onConnection` (and the node's connection manager). Failed
    /// handshakes are skipped.
    #[napi]
    pub fn accept_all(&self, node: Reference<Node>) {
        let node = node.inner.clone();
        let incoming = Arc::clone(&self.incoming);
        let mut closed = self.closed.subscribe();
        let _runtime = peerlink::runtime::handle().enter();
        tokio::spawn(async move {
            loop {
                let next = match &mut *incoming.lock().await {
                    Incoming::Links(links) => tokio::select! {
                        biased;
                        _ = closed.wait_for(|c| *c) => None,
                        next = links.next() => next,
                    },
                    _ => return,
                };
                let Some(link) = next else { return };
                let node = node.clone();
                tokio::spawn(async move {
                    if let Err(e) = link.accept(&node).await {
                        tracing::debug!(error = %e, "incoming WebRTC link refused");
                    }
                });
            }
        });
    }

    /// Connects `node` to device `deviceId` through the signaling server's relay instead of
    /// WebRTC (the server forwards the end-to-end encrypted link): for networks where no
    /// direct path opens. The peer's dialer needs `acceptRelay`. Rejects with
    /// `identity_mismatch` if the peer is not the device the server authenticated.
    #[napi(ts_return_type = "Promise<Connection>")]
    pub fn connect_relay(
        &self,
        env: Env,
        node: Reference<Node>,
        device_id: String,
    ) -> napi::Result<sys::napi_value> {
        let node = node.inner.clone();
        let dialer = self.inner.clone();
        promise(&env, async move {
            let connection = dialer
                .connect_relay(&node, &device_id)
                .await
                .map_err(dial_failure)?;
            Ok(Native(Connection::from(connection)))
        })
    }

    /// Connects `node` to device `deviceId` in hybrid mode: over the relay at once, then
    /// WebRTC in the background; new calls move to WebRTC once it is verified and back to the
    /// relay while it is down (`onEvent`). The peer's dialer needs `acceptRelay` and takes
    /// the connection with `acceptHybrid`.
    #[napi(ts_return_type = "Promise<HybridConnection>")]
    pub fn connect_hybrid(
        &self,
        env: Env,
        node: Reference<Node>,
        device_id: String,
        options: Option<HybridOptions>,
    ) -> napi::Result<sys::napi_value> {
        let options = options.unwrap_or_default();
        let mut config = HybridConfig::default();
        let delay = millis(options.retry_delay_ms, "retryDelayMs");
        if let Some(n) = options.max_webrtc_attempts {
            config.max_webrtc_attempts = n;
        }
        let node = node.inner.clone();
        let dialer = self.inner.clone();
        promise(&env, async move {
            if let Some(d) = delay.map_err(|e| Failure::new("invalid_argument", e.reason))? {
                config.retry_delay = d;
            }
            let hybrid =
                peerlink::signaling::HybridConnection::dial(&dialer, &node, &device_id, config)
                    .await
                    .map_err(dial_failure)?;
            Ok(Native(HybridConnection::new(hybrid)))
        })
    }

    /// The next device that connected in hybrid mode (or over the relay or WebRTC alone),
    /// accepted on `node`; its later WebRTC link joins the same `HybridConnection`. `null`
    /// once the client is closed. The first call binds the dialer to `node` and to hybrid
    /// accepting (`accept` and `acceptAll` then fail with `invalid_state`).
    #[napi(ts_return_type = "Promise<HybridConnection | null>")]
    pub fn accept_hybrid(&self, env: Env, node: Reference<Node>) -> napi::Result<sys::napi_value> {
        self.hybrid
            .store(true, std::sync::atomic::Ordering::Release);
        let node = node.inner.clone();
        let incoming = Arc::clone(&self.incoming);
        let mut closed = self.closed.subscribe();
        promise(&env, async move {
            let mut incoming = incoming.lock().await;
            if let Incoming::Links(_) = &*incoming
                && let Incoming::Links(links) = std::mem::replace(&mut *incoming, Incoming::Taken)
            {
                *incoming = Incoming::Hybrid(HybridAcceptor::new(node, links));
            }
            let Incoming::Hybrid(acceptor) = &mut *incoming else {
                return Err(Failure::new(
                    "invalid_state",
                    "this dialer already accepts plain connections",
                ));
            };
            let next = tokio::select! {
                biased;
                _ = closed.wait_for(|c| *c) => None,
                next = acceptor.accept() => next,
            };
            Ok(next.map(|h| Native(HybridConnection::new(h))))
        })
    }

    /// Closes the signaling client (links already verified stay open) and releases the
    /// event callback.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self, env: Env) -> napi::Result<sys::napi_value> {
        self.events_task.abort();
        self.closed.send_replace(true);
        lock(&self.callback).take();
        let dialer = self.inner.clone();
        promise(&env, async move {
            dialer.client().close().await;
            Ok(())
        })
    }

    /// `await using dialer = …` closes it.
    #[napi(well_known_symbol = "asyncDispose", ts_return_type = "Promise<void>")]
    pub fn async_dispose(&self, env: Env) -> napi::Result<sys::napi_value> {
        self.close(env)
    }
}

fn hybrid_taken() -> Failure {
    Failure::new(
        "invalid_state",
        "this dialer accepts hybrid connections (acceptHybrid)",
    )
}

/// Something that happened to a hybrid connection's paths (`type`: `path`,
/// `webrtcDisconnected`, `webrtcRestarting`, `webrtcBack`, `webrtcFailed`, `webrtcClosed`,
/// `relayClosed`).
#[napi(object)]
#[derive(Debug, Clone)]
pub struct HybridEventInfo {
    /// The kind of event.
    #[napi(js_name = "type")]
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

type HybridCallback = JsCallback<HybridEventInfo, HybridEventInfo>;

/// One peer reachable over the server relay and, when a direct link opens, WebRTC (the Rust
/// `HybridConnection`): new calls take the best open path (`current`).
#[napi]
pub struct HybridConnection {
    inner: peerlink::signaling::HybridConnection,
    /// Events since the connection was made, until `onEvent` takes them.
    events: Mutex<Option<HybridEvents>>,
    path_task: Mutex<Option<AbortHandle>>,
}

impl HybridConnection {
    fn new(inner: peerlink::signaling::HybridConnection) -> Self {
        Self {
            events: Mutex::new(Some(inner.events())),
            inner,
            path_task: Mutex::new(None),
        }
    }
}

#[napi]
impl HybridConnection {
    /// The connection new calls go to: WebRTC while it is open, else the relay.
    #[napi(getter)]
    pub fn current(&self) -> Connection {
        Connection::from(self.inner.current())
    }

    /// The path new calls take now (`relay` or `webrtc`).
    #[napi(getter)]
    pub fn path(&self) -> String {
        self.inner.path().as_str().to_owned()
    }

    /// The relay connection, if this side has one.
    #[napi(getter)]
    pub fn relay(&self) -> Option<Connection> {
        self.inner.relay().map(Connection::from)
    }

    /// The WebRTC connection while it is up.
    #[napi(getter)]
    pub fn webrtc(&self) -> Option<Connection> {
        self.inner.webrtc().map(Connection::from)
    }

    /// The verified peer.
    #[napi(getter)]
    pub fn remote(&self) -> crate::identity::DeviceInfo {
        crate::identity::DeviceInfo::from(&self.inner.remote())
    }

    /// Whether any path is open.
    #[napi(getter)]
    pub fn is_open(&self) -> bool {
        self.inner.is_open()
    }

    /// Waits (at most `timeoutMs`) until new calls take `path` (`relay` or `webrtc`);
    /// resolves with whether they do.
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn wait_for_path(
        &self,
        env: Env,
        #[napi(ts_arg_type = "'relay' | 'webrtc'")] path: String,
        timeout_ms: f64,
    ) -> napi::Result<sys::napi_value> {
        let kind = match path.as_str() {
            "relay" => Ok(peerlink::TransportKind::Relay),
            "webrtc" => Ok(peerlink::TransportKind::WebRtc),
            other => Err(Failure::new(
                "invalid_argument",
                format!("path must be \"relay\" or \"webrtc\", not {other:?}"),
            )),
        };
        let timeout = millis(Some(timeout_ms), "timeoutMs");
        let hybrid = self.inner.clone();
        promise(&env, async move {
            let kind = kind?;
            let timeout = timeout
                .map_err(|e| Failure::new("invalid_argument", e.reason))?
                .unwrap_or_default();
            Ok(hybrid.wait_for_path(kind, timeout).await)
        })
    }

    /// Calls `callback(event)` for every event of the connection's paths (`{ type: 'path',
    /// path }` when new calls move to `webrtc` or back to `relay`; `webrtcDisconnected`,
    /// `webrtcRestarting`, `webrtcBack`, `webrtcFailed`, `webrtcClosed`, `relayClosed`),
    /// replacing any previous callback. The first callback also gets the events since the
    /// connection was made. Does not keep the process alive; released by `close()`.
    #[napi(ts_args_type = "callback: (event: HybridEventInfo) => void")]
    pub fn on_event(
        &self,
        callback: Function<'_, Unknown<'static>, Unknown<'static>>,
    ) -> napi::Result<()> {
        let callback: HybridCallback = callback
            .build_threadsafe_function::<HybridEventInfo>()
            .callee_handled::<false>()
            .weak::<true>()
            .build_callback(|ctx| Ok(ctx.value))?;
        let taken = lock(&self.events).take();
        let mut events = taken.unwrap_or_else(|| self.inner.events());
        let _runtime = peerlink::runtime::handle().enter();
        let task = tokio::spawn(async move {
            // Ends when the hybrid connection closes or the callback is replaced.
            while let Some(event) = events.next().await {
                let info = HybridEventInfo::from(event);
                call_js(&callback, info, ignore_result, log_failure).await;
            }
        });
        if let Some(old) = lock(&self.path_task).replace(task.abort_handle()) {
            old.abort();
        }
        Ok(())
    }

    /// Closes both paths, stops trying WebRTC and releases the event callback.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self, env: Env, reason: Option<String>) -> napi::Result<sys::napi_value> {
        if let Some(task) = lock(&self.path_task).take() {
            task.abort();
        }
        let hybrid = self.inner.clone();
        promise(&env, async move {
            hybrid.close(reason.as_deref().unwrap_or("closed")).await;
            Ok(())
        })
    }

    /// `await using hybrid = …` closes it.
    #[napi(well_known_symbol = "asyncDispose", ts_return_type = "Promise<void>")]
    pub fn async_dispose(&self, env: Env) -> napi::Result<sys::napi_value> {
        self.close(env, None)
    }
}

impl Drop for HybridConnection {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.path_task).take() {
            task.abort();
        }
    }
}

impl std::fmt::Debug for HybridConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HybridConnection")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl Drop for WebRtcDialer {
    fn drop(&mut self) {
        self.events_task.abort();
    }
}

impl std::fmt::Debug for WebRtcDialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcDialer")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
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
