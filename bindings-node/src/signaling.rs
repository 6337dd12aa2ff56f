//! The signaling server from JavaScript: `SignalingClient` (authenticated session, rooms) and
//! `WebRtcDialer` (connect to a device by id over WebRTC, the server carrying the signals;
//! accept the links other devices open).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use napi::bindgen_prelude::{Function, Reference, Unknown};
use napi::{Env, sys};
use napi_derive::napi;
use peerlink::signaling::{
    DialError, DialerConfig, IncomingLinks, SignalingConfig, SignalingError, SignalingEvent,
    SignalingEvents,
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
    incoming: Arc<tokio::sync::Mutex<IncomingLinks>>,
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
            incoming: Arc::new(tokio::sync::Mutex::new(incoming)),
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
        promise(&env, async move {
            let next = incoming.lock().await.next().await;
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
        let _runtime = peerlink::runtime::handle().enter();
        tokio::spawn(async move {
            loop {
                let next = incoming.lock().await.next().await;
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

    /// Closes the signaling client (links already verified stay open) and releases the
    /// event callback.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self, env: Env) -> napi::Result<sys::napi_value> {
        self.events_task.abort();
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
