//! WebRTC for JavaScript: `WebRtcOptions` and `WebRtcLink`, a data-channel link whose signals
//! (offer, answer, candidates; simple-peer JSON) the application carries itself.
//!
//! The offerer creates the `peerlink` channel when the link is made; `start()` sends the offer
//! through the `onSignal` callback. The peer feeds each signal to `handleSignal(json)`. Once
//! the channel is open, `link.connect(node)` runs the handshake over it, bound to both DTLS
//! fingerprints, and resolves with a `Connection`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use napi::bindgen_prelude::{Function, Reference, Unknown};
use napi::{Env, sys};
use napi_derive::napi;
use peerlink::webrtc::{
    ChannelOptions, IceServer as RustIceServer, IceTransportPolicy, LinkState, WebRtcChannel,
    WebRtcConfig, WebRtcEvent, WebRtcEvents, WebRtcRole, WebRtcTransport,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::bridge::{JsCallback, Native, call_js, promise};
use crate::connection::Connection;
use crate::error::Failure;
use crate::node::Node;

/// The channel every peerlink link opens (the same label as the signaling dialer's).
const CHANNEL_LABEL: &str = "peerlink";

/// Default time `connect` waits for the channel to open.
const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_secs(20);

/// One STUN or TURN server, as in the browser's `RTCIceServer`.
#[napi(object)]
#[derive(Clone, Default)]
pub struct IceServer {
    /// `stun:host[:port]` or `turn:host[:port][?transport=udp]` URLs.
    pub urls: Vec<String>,
    /// TURN username.
    pub username: Option<String>,
    /// TURN credential (password or REST token).
    pub credential: Option<String>,
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

/// WebRTC settings (the Rust `WebRtcConfig`).
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct WebRtcOptions {
    /// STUN/TURN servers.
    pub ice_servers: Option<Vec<IceServer>>,
    /// `"all"` (default) or `"relay"` (TURN relay candidates only).
    #[napi(ts_type = "'all' | 'relay'")]
    pub ice_transport_policy: Option<String>,
    /// Local UDP addresses to bind, for example `["127.0.0.1:0"]`. Default `0.0.0.0:0`: one
    /// socket per non-loopback interface.
    pub bind_addrs: Option<Vec<String>>,
    /// Trickle ICE candidates (default true); false sends one description holding them all.
    pub trickle: Option<bool>,
}

/// Builds the Rust configuration, rejecting bad values with `invalid_argument`.
pub(crate) fn webrtc_config(options: Option<WebRtcOptions>) -> Result<WebRtcConfig, Failure> {
    let mut config = WebRtcConfig::default();
    let Some(options) = options else {
        return Ok(config);
    };
    if let Some(servers) = options.ice_servers {
        config.ice_servers = servers
            .into_iter()
            .map(|s| RustIceServer {
                urls: s.urls,
                username: s.username.unwrap_or_default(),
                credential: s.credential.unwrap_or_default(),
            })
            .collect();
        for server in &config.ice_servers {
            for url in &server.urls {
                server
                    .classify(url)
                    .map_err(|e| Failure::new("invalid_argument", e.to_string()))?;
            }
        }
    }
    config.ice_transport_policy = match options.ice_transport_policy.as_deref() {
        None | Some("all") => IceTransportPolicy::All,
        Some("relay") => IceTransportPolicy::Relay,
        Some(other) => {
            return Err(Failure::new(
                "invalid_argument",
                format!("iceTransportPolicy must be \"all\" or \"relay\", not {other:?}"),
            ));
        }
    };
    if let Some(addrs) = options.bind_addrs {
        config.bind_addrs = addrs
            .iter()
            .map(|a| {
                a.parse::<SocketAddr>().map_err(|_| {
                    Failure::new("invalid_argument", format!("bad bind address {a:?}"))
                })
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(trickle) = options.trickle {
        config.trickle = trickle;
    }
    Ok(config)
}

fn state_name(state: LinkState) -> &'static str {
    match state {
        LinkState::New => "new",
        LinkState::Connecting => "connecting",
        LinkState::Connected => "connected",
        LinkState::Disconnected => "disconnected",
        LinkState::Failed => "failed",
        LinkState::Closed => "closed",
        _ => "unknown",
    }
}

type StringCallback = JsCallback<String, String>;

fn ignore_result(_: sys::napi_env, _: sys::napi_value) {}

fn log_failure(thrown: crate::bridge::Thrown) {
    tracing::warn!(message = %thrown.message, "a WebRTC callback failed");
}

/// Signals and states waiting for their callbacks (events that came before registration are
/// delivered on registration, so none is lost).
#[derive(Default)]
struct Outbox {
    signal_callback: Option<Arc<StringCallback>>,
    state_callback: Option<Arc<StringCallback>>,
    signals: Vec<String>,
}

/// The JS thread's view of one link's event pump.
struct Shared {
    outbox: Mutex<Outbox>,
    /// Wakes the pump when a callback is registered.
    wake: mpsc::UnboundedSender<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A WebRTC peer connection with one `peerlink` data channel; the application carries the
/// signals (`onSignal` → the peer's `handleSignal`).
#[napi]
pub struct WebRtcLink {
    link: peerlink::webrtc::WebRtcLink,
    role: WebRtcRole,
    shared: Arc<Shared>,
    /// The offerer's own channel, or the answerer's once the peer opened it; taken by
    /// `connect`.
    channel: Mutex<Option<oneshot::Receiver<WebRtcChannel>>>,
    pump: AbortHandle,
}

async fn pump(
    mut events: WebRtcEvents,
    shared: Arc<Shared>,
    mut wake: mpsc::UnboundedReceiver<()>,
    mut channel: Option<oneshot::Sender<WebRtcChannel>>,
) {
    loop {
        let event = tokio::select! {
            e = events.next() => e,
            Some(()) = wake.recv() => {
                flush(&shared).await;
                continue;
            }
        };
        let Some(event) = event else { break };
        match event {
            WebRtcEvent::Signal(signal) => {
                lock(&shared.outbox).signals.push(signal.to_json());
                flush(&shared).await;
            }
            WebRtcEvent::State(state) => {
                let callback = lock(&shared.outbox).state_callback.clone();
                if let Some(callback) = callback {
                    let name = state_name(state).to_owned();
                    call_js(&callback, name, ignore_result, log_failure).await;
                }
            }
            WebRtcEvent::Channel(ch) => {
                if ch.label() == CHANNEL_LABEL
                    && let Some(tx) = channel.take()
                {
                    let _ = tx.send(ch);
                }
            }
            _ => {}
        }
    }
}

/// Delivers queued signals in order, if a callback is registered.
async fn flush(shared: &Shared) {
    loop {
        let (callback, signal) = {
            let mut outbox = lock(&shared.outbox);
            let Some(callback) = outbox.signal_callback.clone() else {
                return;
            };
            if outbox.signals.is_empty() {
                return;
            }
            (callback, outbox.signals.remove(0))
        };
        call_js(&callback, signal, ignore_result, log_failure).await;
    }
}

fn string_callback(
    callback: &Function<'_, Unknown<'static>, Unknown<'static>>,
) -> napi::Result<StringCallback> {
    callback
        .build_threadsafe_function::<String>()
        .callee_handled::<false>()
        .weak::<true>()
        .build_callback(|ctx| Ok(ctx.value))
}

#[napi]
impl WebRtcLink {
    /// Creates a link (`role` `"offerer"` or `"answerer"`) and binds its sockets. The offerer
    /// also creates the `peerlink` channel. Nothing is sent before `start()` (offerer) or the
    /// first `handleSignal` (answerer).
    #[napi(ts_return_type = "Promise<WebRtcLink>")]
    pub fn create(
        env: Env,
        #[napi(ts_arg_type = "'offerer' | 'answerer'")] role: String,
        options: Option<WebRtcOptions>,
    ) -> napi::Result<sys::napi_value> {
        let role = match role.as_str() {
            "offerer" => Ok(WebRtcRole::Offerer),
            "answerer" => Ok(WebRtcRole::Answerer),
            other => Err(Failure::new(
                "invalid_argument",
                format!("role must be \"offerer\" or \"answerer\", not {other:?}"),
            )),
        };
        let config = webrtc_config(options);
        promise(&env, async move {
            let (role, config) = (role?, config?);
            let (link, events) = peerlink::webrtc::WebRtcLink::new(config, role)
                .await
                .map_err(webrtc_failure)?;
            let (channel_tx, channel_rx) = oneshot::channel();
            let mut channel_tx = Some(channel_tx);
            if role == WebRtcRole::Offerer {
                let channel = link
                    .create_channel(CHANNEL_LABEL, ChannelOptions::default())
                    .await
                    .map_err(webrtc_failure)?;
                if let Some(tx) = channel_tx.take() {
                    let _ = tx.send(channel);
                }
            }
            let (wake_tx, wake_rx) = mpsc::unbounded_channel();
            let shared = Arc::new(Shared {
                outbox: Mutex::new(Outbox::default()),
                wake: wake_tx,
            });
            let task = tokio::spawn(pump(events, Arc::clone(&shared), wake_rx, channel_tx));
            Ok(Native(WebRtcLink {
                link,
                role,
                shared,
                channel: Mutex::new(Some(channel_rx)),
                pump: task.abort_handle(),
            }))
        })
    }

    /// `"offerer"` or `"answerer"`.
    #[napi(getter)]
    pub fn role(&self) -> String {
        match self.role {
            WebRtcRole::Offerer => "offerer".into(),
            WebRtcRole::Answerer => "answerer".into(),
        }
    }

    /// The peer connection state: `new`, `connecting`, `connected`, `disconnected`, `failed`
    /// or `closed`.
    #[napi(getter)]
    pub fn state(&self) -> String {
        state_name(self.link.state()).into()
    }

    /// Calls `callback(json)` with every signal to deliver to the peer (simple-peer JSON:
    /// `{"type":"offer","sdp":…}`, `{"type":"answer",…}`, `{"type":"candidate",…}`). Signals
    /// produced before the callback was set are delivered at once, in order.
    #[napi(ts_args_type = "callback: (json: string) => void")]
    pub fn on_signal(
        &self,
        callback: Function<'_, Unknown<'static>, Unknown<'static>>,
    ) -> napi::Result<()> {
        let callback = Arc::new(string_callback(&callback)?);
        lock(&self.shared.outbox).signal_callback = Some(callback);
        let _ = self.shared.wake.send(());
        Ok(())
    }

    /// Calls `callback(state)` on every connection state change.
    #[napi(ts_args_type = "callback: (state: string) => void")]
    pub fn on_state_change(
        &self,
        callback: Function<'_, Unknown<'static>, Unknown<'static>>,
    ) -> napi::Result<()> {
        let callback = Arc::new(string_callback(&callback)?);
        lock(&self.shared.outbox).state_callback = Some(callback);
        Ok(())
    }

    /// Offerer: creates the offer (delivered through `onSignal`).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn start(&self, env: Env) -> napi::Result<sys::napi_value> {
        let link = self.link.clone();
        promise(&env, async move {
            link.start().await.map_err(webrtc_failure)?;
            Ok(())
        })
    }

    /// Applies a signal from the peer (simple-peer JSON as its `onSignal` produced it).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn handle_signal(&self, env: Env, json: String) -> napi::Result<sys::napi_value> {
        let link = self.link.clone();
        promise(&env, async move {
            link.handle_signal_json(&json)
                .await
                .map_err(webrtc_failure)?;
            Ok(())
        })
    }

    /// Waits for the `peerlink` channel to open (default 20 s), then runs the peerlink
    /// handshake over it on `node`, bound to both DTLS fingerprints. Once per link.
    #[napi(ts_return_type = "Promise<Connection>")]
    pub fn connect(
        &self,
        env: Env,
        node: Reference<Node>,
        timeout_ms: Option<f64>,
    ) -> napi::Result<sys::napi_value> {
        let node = node.inner.clone();
        let link = self.link.clone();
        let channel = lock(&self.channel).take();
        let timeout = match timeout_ms {
            Some(ms) if ms.is_finite() && ms > 0.0 => Ok(Duration::from_secs_f64(ms / 1000.0)),
            Some(_) => Err(Failure::new(
                "invalid_argument",
                "timeoutMs must be a positive number",
            )),
            None => Ok(DEFAULT_OPEN_TIMEOUT),
        };
        promise(&env, async move {
            let timeout = timeout?;
            let Some(channel) = channel else {
                return Err(Failure::new(
                    "invalid_state",
                    "connect() was already called on this link",
                ));
            };
            let open = async {
                let ch = channel
                    .await
                    .map_err(|_| Failure::new("closed", "the link closed"))?;
                ch.opened().await.map_err(webrtc_failure)?;
                Ok::<_, Failure>(ch)
            };
            let ch = match tokio::time::timeout(timeout, open).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(Failure::new(
                        "timeout",
                        format!("the WebRTC channel did not open within {timeout:?}"),
                    ));
                }
            };
            let transport = WebRtcTransport::new(link, ch);
            let binding = transport.binding().await.map_err(webrtc_failure)?;
            let role = transport.handshake_role();
            let connection = node.connect(Box::new(transport), role, binding).await?;
            Ok(Native(Connection::from(connection)))
        })
    }

    /// Closes the peer connection and releases the callbacks.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self, env: Env) -> napi::Result<sys::napi_value> {
        self.release();
        let link = self.link.clone();
        promise(&env, async move {
            link.close().await;
            Ok(())
        })
    }

    /// `await using link = …` closes it.
    #[napi(well_known_symbol = "asyncDispose", ts_return_type = "Promise<void>")]
    pub fn async_dispose(&self, env: Env) -> napi::Result<sys::napi_value> {
        self.close(env)
    }
}

impl WebRtcLink {
    fn release(&self) {
        self.pump.abort();
        let mut outbox = lock(&self.shared.outbox);
        outbox.signal_callback = None;
        outbox.state_callback = None;
        outbox.signals.clear();
    }
}

impl Drop for WebRtcLink {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

impl std::fmt::Debug for WebRtcLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcLink")
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}

/// A WebRTC error with its stable code.
pub(crate) fn webrtc_failure(e: peerlink::webrtc::WebRtcError) -> Failure {
    use peerlink::webrtc::WebRtcError as E;
    let code = match &e {
        E::MalformedSignal(_) | E::MalformedSdp(_) | E::MalformedCandidate(_) => "malformed_signal",
        E::TooLarge { .. } | E::MessageTooLarge { .. } => "too_large",
        E::UnexpectedSignal { .. } | E::WrongConnection { .. } => "unexpected_signal",
        E::TooManyEarlyCandidates(_) => "too_many_candidates",
        E::BadIceServer { .. } | E::NoUsableRelay => "bad_ice_server",
        E::GatheringTimeout(_) => "timeout",
        E::MissingFingerprint(_) => "missing_fingerprint",
        E::ConnectionLost(_) | E::ChannelClosed => "closed",
        E::Io(_) => "io",
        _ => "webrtc",
    };
    Failure::new(code, e.to_string())
}
