//! WebRTC for JavaScript: `WebRtcOptions` and `WebRtcLink`, a data-channel link whose signals
//! (offer, answer, candidates; simple-peer JSON) the application carries itself.
//!
//! The offerer creates the `peerlink` channel when the link is made; `start()` sends the offer
//! through the `onSignal` callback. The peer feeds each signal to `handleSignal(json)`. Once
//! the channel is open, `link.connect(node)` runs the handshake over it, bound to both DTLS
//! fingerprints, and resolves with a `Connection`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use napi::bindgen_prelude::{Function, Reference, Unknown};
use napi::{Env, sys};
use napi_derive::napi;
use peerlink::webrtc::{
    ChannelOptions as RustChannelOptions, ChannelPriority, ChannelReceiver, ChannelSender,
    IceServer as RustIceServer, IceTransportPolicy, LinkState, WebRtcChannel, WebRtcConfig,
    WebRtcEvent, WebRtcEvents, WebRtcRole, WebRtcTransport,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::bridge::{JsBuffer, JsCallback, Native, call_js, promise};
use crate::connection::{Connection, bytes_arg};
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
    /// `stun:host[:port]`, `turn:host[:port][?transport=udp|tcp]` or `turns:host[:port]`
    /// (TURN over TLS) URLs.
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

/// WebRTC settings (the Rust `WebRtcOptions`, checked into a `WebRtcConfig`).
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct WebRtcOptions {
    /// STUN/TURN servers.
    pub ice_servers: Option<Vec<IceServer>>,
    /// `"all"` (default) or `"relay"` (TURN relay candidates only).
    #[napi(ts_type = "'all' | 'relay'")]
    pub ice_transport_policy: Option<String>,
    /// Local UDP addresses to bind, for example `["127.0.0.1:0"]`. Default (or empty)
    /// `0.0.0.0:0`: one socket per non-loopback interface.
    pub bind_addrs: Option<Vec<String>>,
    /// Trickle ICE candidates (default true); false sends one description holding them all.
    pub trickle: Option<bool>,
    /// Extra trusted CA certificates for `turns:` servers, on top of the Mozilla root store
    /// (default none): PEM text, each entry one or more `-----BEGIN CERTIFICATE-----`
    /// blocks. Certificates are always verified: a `turns:` server whose certificate chains
    /// to none of the trusted roots gives no relay candidate. An entry that is not a CA
    /// certificate fails with `invalid_argument` naming `turnTlsRoots[i]`.
    pub turn_tls_roots: Option<Vec<String>>,
}

/// Builds the Rust configuration; the runtime checks every value and a bad one is
/// `invalid_argument` with the runtime's message (which names the entry).
pub(crate) fn webrtc_config(options: Option<WebRtcOptions>) -> Result<WebRtcConfig, Failure> {
    let Some(options) = options else {
        return Ok(WebRtcConfig::default());
    };
    let invalid =
        |e: peerlink::webrtc::WebRtcError| Failure::new("invalid_argument", e.to_string());
    peerlink::webrtc::WebRtcOptions {
        ice_servers: options
            .ice_servers
            .unwrap_or_default()
            .into_iter()
            .map(|s| RustIceServer {
                urls: s.urls,
                username: s.username.unwrap_or_default(),
                credential: s.credential.unwrap_or_default(),
            })
            .collect(),
        ice_transport_policy: options
            .ice_transport_policy
            .as_deref()
            .map(str::parse::<IceTransportPolicy>)
            .transpose()
            .map_err(invalid)?,
        bind_addrs: options.bind_addrs.unwrap_or_default(),
        trickle: options.trickle,
        turn_tls_roots: options
            .turn_tls_roots
            .unwrap_or_default()
            .into_iter()
            .map(String::into_bytes)
            .collect(),
    }
    .into_config()
    .map_err(invalid)
}

/// Options of one data channel (the browser's `RTCDataChannelInit`; the Rust `ChannelOptions`).
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct ChannelOptions {
    /// Deliver in order (default true).
    pub ordered: Option<bool>,
    /// Give up on a message after this many retransmissions (partial reliability).
    pub max_retransmits: Option<u32>,
    /// Give up on a message after this many milliseconds (partial reliability).
    pub max_packet_life_time: Option<u32>,
    /// Sub-protocol name carried in the channel-open message.
    pub protocol: Option<String>,
    /// Pre-negotiated stream id: both sides create the channel with the same id.
    pub negotiated: Option<u32>,
    /// `very-low`, `low` (default), `medium` or `high`: carried to the peer in the
    /// channel-open message; this side's sends on the link are scheduled by it.
    #[napi(ts_type = "'very-low' | 'low' | 'medium' | 'high'")]
    pub priority: Option<String>,
}

fn u16_option(value: Option<u32>, name: &str) -> Result<Option<u16>, Failure> {
    value
        .map(|v| {
            u16::try_from(v).map_err(|_| {
                Failure::new("invalid_argument", format!("{name} must be at most 65535"))
            })
        })
        .transpose()
}

/// Builds the Rust channel options, rejecting bad values with `invalid_argument`.
pub(crate) fn channel_options(
    options: Option<ChannelOptions>,
) -> Result<RustChannelOptions, Failure> {
    let mut rust = RustChannelOptions::default();
    let Some(options) = options else {
        return Ok(rust);
    };
    if let Some(ordered) = options.ordered {
        rust.ordered = ordered;
    }
    rust.max_retransmits = u16_option(options.max_retransmits, "maxRetransmits")?;
    rust.max_packet_life_time = u16_option(options.max_packet_life_time, "maxPacketLifeTime")?;
    if rust.max_retransmits.is_some() && rust.max_packet_life_time.is_some() {
        return Err(Failure::new(
            "invalid_argument",
            "maxRetransmits and maxPacketLifeTime cannot both be set",
        ));
    }
    if let Some(protocol) = options.protocol {
        rust.protocol = protocol;
    }
    rust.negotiated = u16_option(options.negotiated, "negotiated")?;
    if let Some(priority) = options.priority {
        rust.priority = priority
            .parse::<ChannelPriority>()
            .map_err(|e| Failure::new("invalid_argument", e))?;
    }
    Ok(rust)
}

/// One data channel of a `WebRtcLink`, next to its `peerlink` channel: messages of Buffers,
/// with the options it was created with (ordered, partial reliability, priority).
#[napi]
pub struct DataChannel {
    label: String,
    priority: ChannelPriority,
    sender: ChannelSender,
    receiver: Arc<tokio::sync::Mutex<ChannelReceiver>>,
}

impl From<WebRtcChannel> for DataChannel {
    fn from(channel: WebRtcChannel) -> Self {
        let label = channel.label().to_owned();
        let priority = channel.priority();
        let (sender, receiver) = channel.split();
        Self {
            label,
            priority,
            sender,
            receiver: Arc::new(tokio::sync::Mutex::new(receiver)),
        }
    }
}

#[napi]
impl DataChannel {
    /// The channel's label.
    #[napi(getter)]
    pub fn label(&self) -> String {
        self.label.clone()
    }

    /// `very-low`, `low`, `medium` or `high`: the priority it was created with, or for a
    /// channel the peer opened, the one in the peer's channel-open message.
    #[napi(getter, ts_return_type = "'very-low' | 'low' | 'medium' | 'high'")]
    pub fn priority(&self) -> String {
        self.priority.as_str().to_owned()
    }

    /// The largest message the peer accepts.
    #[napi(getter)]
    pub fn max_message_size(&self) -> f64 {
        self.sender.max_message_size() as f64
    }

    /// Resolves once the channel is open; rejects with `closed` if it closes first.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn opened(&self, env: Env) -> napi::Result<sys::napi_value> {
        let sender = self.sender.clone();
        promise(&env, async move {
            sender.opened().await.map_err(webrtc_failure)?;
            Ok(())
        })
    }

    /// Sends one message (copied); waits while the link's pacing or a channel of higher
    /// priority holds it back. Rejects with `too_large` past `maxMessageSize`.
    #[napi(
        ts_args_type = "data: Uint8Array | ArrayBuffer",
        ts_return_type = "Promise<void>"
    )]
    pub fn send(&self, env: Env, data: Unknown<'_>) -> napi::Result<sys::napi_value> {
        let data = bytes_arg(&env, &data);
        let sender = self.sender.clone();
        promise(&env, async move {
            sender.send(data?).await.map_err(webrtc_failure)?;
            Ok(())
        })
    }

    /// The next message, or `null` once the channel is closed and drained.
    #[napi(ts_return_type = "Promise<Buffer | null>")]
    pub fn recv(&self, env: Env) -> napi::Result<sys::napi_value> {
        let receiver = Arc::clone(&self.receiver);
        promise(&env, async move {
            Ok(receiver.lock().await.recv().await.map(JsBuffer))
        })
    }

    /// Bytes handed to `send` and not yet acknowledged by the peer.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn buffered_amount(&self, env: Env) -> napi::Result<sys::napi_value> {
        let sender = self.sender.clone();
        promise(
            &env,
            async move { Ok(sender.outstanding_bytes().await as f64) },
        )
    }

    /// Closes the channel (the link stays up).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self, env: Env) -> napi::Result<sys::napi_value> {
        let sender = self.sender.clone();
        promise(&env, async move {
            // Closing a channel that already closed is not an error for the caller.
            let _ = sender.close().await;
            Ok(())
        })
    }

    /// `await using channel = …` closes it.
    #[napi(well_known_symbol = "asyncDispose", ts_return_type = "Promise<void>")]
    pub fn async_dispose(&self, env: Env) -> napi::Result<sys::napi_value> {
        self.close(env)
    }
}

impl std::fmt::Debug for DataChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataChannel")
            .field("label", &self.label)
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
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
    /// Channels the peer opened other than `peerlink`, for `acceptChannel`.
    incoming: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<WebRtcChannel>>>,
    pump: AbortHandle,
}

async fn pump(
    mut events: WebRtcEvents,
    shared: Arc<Shared>,
    mut wake: mpsc::UnboundedReceiver<()>,
    mut channel: Option<oneshot::Sender<WebRtcChannel>>,
    incoming: mpsc::UnboundedSender<WebRtcChannel>,
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
                if ch.label() == CHANNEL_LABEL && channel.is_some() {
                    if let Some(tx) = channel.take() {
                        let _ = tx.send(ch);
                    }
                } else {
                    let _ = incoming.send(ch);
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
                    .create_channel(CHANNEL_LABEL, RustChannelOptions::default())
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
            let (incoming_tx, incoming_rx) = mpsc::unbounded_channel();
            let task = tokio::spawn(pump(
                events,
                Arc::clone(&shared),
                wake_rx,
                channel_tx,
                incoming_tx,
            ));
            Ok(Native(WebRtcLink {
                link,
                role,
                shared,
                channel: Mutex::new(Some(channel_rx)),
                incoming: Arc::new(tokio::sync::Mutex::new(incoming_rx)),
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

    /// Opens another data channel on the link with its own options (ordered, partial
    /// reliability, priority). The offerer may call it before `start()`; after the link is
    /// up either side may, and the peer receives it from `acceptChannel()`. The label
    /// `peerlink` is taken by the link's own channel (`invalid_argument`).
    #[napi(ts_return_type = "Promise<DataChannel>")]
    pub fn create_channel(
        &self,
        env: Env,
        label: String,
        options: Option<ChannelOptions>,
    ) -> napi::Result<sys::napi_value> {
        let options = channel_options(options);
        let link = self.link.clone();
        promise(&env, async move {
            let options = options?;
            if label == CHANNEL_LABEL {
                return Err(Failure::new(
                    "invalid_argument",
                    "the label \"peerlink\" belongs to the link's own channel",
                ));
            }
            let channel = link
                .create_channel(&label, options)
                .await
                .map_err(webrtc_failure)?;
            Ok(Native(DataChannel::from(channel)))
        })
    }

    /// The next data channel the peer opened (other than `peerlink`), or `null` once the
    /// link is closed.
    #[napi(ts_return_type = "Promise<DataChannel | null>")]
    pub fn accept_channel(&self, env: Env) -> napi::Result<sys::napi_value> {
        let incoming = Arc::clone(&self.incoming);
        let mut state = self.link.state_changes();
        promise(&env, async move {
            let mut incoming = incoming.lock().await;
            tokio::select! {
                biased;
                ch = incoming.recv() => Ok(ch.map(|c| Native(DataChannel::from(c)))),
                _ = state.wait_for(|s| *s == LinkState::Closed) => {
                    Ok(incoming.try_recv().ok().map(|c| Native(DataChannel::from(c))))
                }
            }
        })
    }

    /// Restarts ICE now (new credentials, new candidates; the link and its channels stay
    /// up): the offerer sends a new offer, the answerer asks the offerer for one. Rejects
    /// with `closed` once the link is closed.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn restart_ice(&self, env: Env) -> napi::Result<sys::napi_value> {
        let link = self.link.clone();
        promise(&env, async move {
            link.restart_ice().await.map_err(webrtc_failure)?;
            Ok(())
        })
    }

    /// ICE restarts this side started or asked for.
    #[napi(getter)]
    pub fn ice_restarts(&self) -> u32 {
        self.link.ice_restarts()
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
        E::BadTurnTlsRoot { .. } | E::InvalidOption { .. } => "invalid_argument",
        E::GatheringTimeout(_) => "timeout",
        E::MissingFingerprint(_) => "missing_fingerprint",
        E::ConnectionLost(_) | E::ChannelClosed => "closed",
        E::Io(_) => "io",
        _ => "webrtc",
    };
    Failure::new(code, e.to_string())
}
