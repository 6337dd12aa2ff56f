//! WebRTC links whose signals the application carries: `WebRtcLink`, its extra data channels
//! (`DataChannel`, with ordered/partial-reliability/priority options) and ICE restart.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use peerlink::webrtc::{
    ChannelReceiver, ChannelSender, IceTransportPolicy as RtIceTransportPolicy, LinkState,
    WebRtcChannel, WebRtcConfig, WebRtcEvent, WebRtcEvents, WebRtcTransport,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::connection::Connection;
use crate::error::PeerlinkError;
use crate::node::Node;
use crate::task;

/// The channel every peerlink link opens (the same label as the signaling dialer's).
const CHANNEL_LABEL: &str = "peerlink";

/// Default time `connect` waits for the channel to open.
const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_secs(20);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn invalid(detail: impl Into<String>) -> PeerlinkError {
    PeerlinkError::InvalidArgument {
        code: "invalid_argument".into(),
        detail: detail.into(),
    }
}

/// A data channel's priority (the W3C `RTCPriorityType`): carried to the peer in the
/// channel-open message; this side's sends on the link are scheduled by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, uniffi::Enum)]
pub enum ChannelPriority {
    /// `very-low`.
    VeryLow,
    /// `low`, the default (as in browsers).
    #[default]
    Low,
    /// `medium`.
    Medium,
    /// `high`.
    High,
}

impl From<ChannelPriority> for peerlink::webrtc::ChannelPriority {
    fn from(p: ChannelPriority) -> Self {
        match p {
            ChannelPriority::VeryLow => Self::VeryLow,
            ChannelPriority::Low => Self::Low,
            ChannelPriority::Medium => Self::Medium,
            ChannelPriority::High => Self::High,
        }
    }
}

impl From<peerlink::webrtc::ChannelPriority> for ChannelPriority {
    fn from(p: peerlink::webrtc::ChannelPriority) -> Self {
        use peerlink::webrtc::ChannelPriority as P;
        match p {
            P::VeryLow => Self::VeryLow,
            P::Medium => Self::Medium,
            P::High => Self::High,
            _ => Self::Low,
        }
    }
}

/// Options of one data channel (the browser's `RTCDataChannelInit`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ChannelOptions {
    /// Deliver in order (default true).
    #[uniffi(default = true)]
    pub ordered: bool,
    /// Give up on a message after this many retransmissions (partial reliability).
    #[uniffi(default = None)]
    pub max_retransmits: Option<u16>,
    /// Give up on a message after this many milliseconds (partial reliability).
    #[uniffi(default = None)]
    pub max_packet_life_time: Option<u16>,
    /// Sub-protocol name carried in the channel-open message.
    #[uniffi(default = "")]
    pub protocol: String,
    /// Pre-negotiated stream id: both sides create the channel with the same id.
    #[uniffi(default = None)]
    pub negotiated: Option<u16>,
    /// The channel's priority (default low).
    #[uniffi(default = None)]
    pub priority: Option<ChannelPriority>,
}

impl TryFrom<ChannelOptions> for peerlink::webrtc::ChannelOptions {
    type Error = PeerlinkError;

    fn try_from(o: ChannelOptions) -> Result<Self, PeerlinkError> {
        if o.max_retransmits.is_some() && o.max_packet_life_time.is_some() {
            return Err(invalid(
                "maxRetransmits and maxPacketLifeTime cannot both be set",
            ));
        }
        Ok(Self {
            ordered: o.ordered,
            max_retransmits: o.max_retransmits,
            max_packet_life_time: o.max_packet_life_time,
            protocol: o.protocol,
            negotiated: o.negotiated,
            priority: o.priority.unwrap_or_default().into(),
        })
    }
}

/// One STUN or TURN server, as in the browser's `RTCIceServer`.
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct IceServer {
    /// `stun:host[:port]`, `turn:host[:port][?transport=udp|tcp]` or `turns:host[:port]`
    /// (TURN over TLS) URLs.
    pub urls: Vec<String>,
    /// TURN username.
    #[uniffi(default = None)]
    pub username: Option<String>,
    /// TURN credential (password or REST token).
    #[uniffi(default = None)]
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

/// Which candidates ICE may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, uniffi::Enum)]
pub enum IceTransportPolicy {
    /// Host, server-reflexive and relay candidates.
    #[default]
    All,
    /// Only TURN relay candidates (hides the device's addresses from the peer).
    Relay,
}

/// WebRTC settings (the Rust `WebRtcConfig`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct WebRtcOptions {
    /// STUN/TURN servers.
    #[uniffi(default = [])]
    pub ice_servers: Vec<IceServer>,
    /// Which candidates ICE may use (default all).
    #[uniffi(default = None)]
    pub ice_transport_policy: Option<IceTransportPolicy>,
    /// Local UDP addresses to bind, for example `["127.0.0.1:0"]`. Empty (the default):
    /// `0.0.0.0:0`, one socket per non-loopback interface.
    #[uniffi(default = [])]
    pub bind_addrs: Vec<String>,
    /// Trickle ICE candidates (default true); false sends one description holding them all.
    #[uniffi(default = true)]
    pub trickle: bool,
    /// Extra trusted CA certificates for `turns:` servers, on top of the Mozilla root store
    /// (default none): each entry one DER certificate, or PEM text (UTF-8 bytes) holding one
    /// or more `CERTIFICATE` blocks. Certificates are always verified; an entry that is not a
    /// CA certificate is `InvalidArgument` naming `turnTlsRoots[i]`.
    #[uniffi(default = [])]
    pub turn_tls_roots: Vec<Vec<u8>>,
}

/// Builds the Rust configuration; the runtime checks every value and a bad one is
/// `InvalidArgument` with the runtime's message (which names the entry).
pub(crate) fn webrtc_config(options: Option<WebRtcOptions>) -> Result<WebRtcConfig, PeerlinkError> {
    let Some(options) = options else {
        return Ok(WebRtcConfig::default());
    };
    peerlink::webrtc::WebRtcOptions {
        ice_servers: options
            .ice_servers
            .into_iter()
            .map(|s| peerlink::webrtc::IceServer {
                urls: s.urls,
                username: s.username.unwrap_or_default(),
                credential: s.credential.unwrap_or_default(),
            })
            .collect(),
        ice_transport_policy: options.ice_transport_policy.map(|p| match p {
            IceTransportPolicy::All => RtIceTransportPolicy::All,
            IceTransportPolicy::Relay => RtIceTransportPolicy::Relay,
        }),
        bind_addrs: options.bind_addrs,
        trickle: Some(options.trickle),
        turn_tls_roots: options.turn_tls_roots,
    }
    .into_config()
    .map_err(|e| invalid(e.to_string()))
}

/// A WebRTC error with its stable code (the same codes as the Node addon).
pub(crate) fn webrtc_error(e: peerlink::webrtc::WebRtcError) -> PeerlinkError {
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
        E::ConnectionLost(_) | E::ChannelClosed => {
            return PeerlinkError::Closed {
                code: "closed".into(),
                detail: e.to_string(),
                reason: "transport_closed".into(),
            };
        }
        E::Io(_) => "io",
        _ => "webrtc",
    };
    PeerlinkError::from_code(code, e.to_string())
}

/// Which side of a WebRTC link this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum WebRtcRole {
    /// Creates the offer (and the `peerlink` channel).
    Offerer,
    /// Answers the offer.
    Answerer,
}

/// Receives a link's signals and state changes. Called on a runtime thread: return quickly.
#[uniffi::export(with_foreign)]
pub trait WebRtcLinkListener: Send + Sync {
    /// A signal to deliver to the peer's `handleSignal` (simple-peer JSON).
    fn on_signal(&self, json: String);
    /// The peer connection state changed (`connecting`, `connected`, `disconnected`,
    /// `failed`, `closed`).
    fn on_state_change(&self, state: String);
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

/// Signals waiting for a listener (those produced before `setListener` are delivered then,
/// in order).
#[derive(Default)]
struct Outbox {
    listener: Option<Arc<dyn WebRtcLinkListener>>,
    signals: Vec<String>,
}

/// A WebRTC peer connection with one `peerlink` data channel; the application carries the
/// signals (`setListener` → `onSignal` → the peer's `handleSignal`).
#[derive(uniffi::Object)]
pub struct WebRtcLink {
    link: peerlink::webrtc::WebRtcLink,
    role: WebRtcRole,
    outbox: Arc<Mutex<Outbox>>,
    channel: Mutex<Option<oneshot::Receiver<WebRtcChannel>>>,
    incoming: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<WebRtcChannel>>>,
    pump: AbortHandle,
}

impl std::fmt::Debug for WebRtcLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcLink")
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}

fn flush(outbox: &Mutex<Outbox>) {
    let (listener, signals) = {
        let mut outbox = lock(outbox);
        let Some(listener) = outbox.listener.clone() else {
            return;
        };
        (listener, std::mem::take(&mut outbox.signals))
    };
    for signal in signals {
        listener.on_signal(signal);
    }
}

async fn pump(
    mut events: WebRtcEvents,
    outbox: Arc<Mutex<Outbox>>,
    mut channel: Option<oneshot::Sender<WebRtcChannel>>,
    incoming: mpsc::UnboundedSender<WebRtcChannel>,
) {
    // Ends when the link is closed and its events are drained, or the task is aborted.
    while let Some(event) = events.next().await {
        match event {
            WebRtcEvent::Signal(signal) => {
                lock(&outbox).signals.push(signal.to_json());
                flush(&outbox);
            }
            WebRtcEvent::State(state) => {
                let listener = lock(&outbox).listener.clone();
                if let Some(listener) = listener {
                    listener.on_state_change(state_name(state).to_owned());
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

#[uniffi::export]
impl WebRtcLink {
    /// Creates a link and binds its sockets. The offerer also creates the `peerlink`
    /// channel. Nothing is sent before `start` (offerer) or the first `handleSignal`
    /// (answerer).
    #[uniffi::constructor(default(options = None))]
    pub async fn create(
        role: WebRtcRole,
        options: Option<WebRtcOptions>,
    ) -> Result<Arc<Self>, PeerlinkError> {
        let config = webrtc_config(options)?;
        task::run(async move {
            let rust_role = match role {
                WebRtcRole::Offerer => peerlink::webrtc::WebRtcRole::Offerer,
                WebRtcRole::Answerer => peerlink::webrtc::WebRtcRole::Answerer,
            };
            let (link, events) = peerlink::webrtc::WebRtcLink::new(config, rust_role)
                .await
                .map_err(webrtc_error)?;
            let (channel_tx, channel_rx) = oneshot::channel();
            let mut channel_tx = Some(channel_tx);
            if role == WebRtcRole::Offerer {
                let channel = link
                    .create_channel(CHANNEL_LABEL, Default::default())
                    .await
                    .map_err(webrtc_error)?;
                if let Some(tx) = channel_tx.take() {
                    let _ = tx.send(channel);
                }
            }
            let outbox = Arc::new(Mutex::new(Outbox::default()));
            let (incoming_tx, incoming_rx) = mpsc::unbounded_channel();
            let task = tokio::spawn(pump(events, Arc::clone(&outbox), channel_tx, incoming_tx));
            Ok(Arc::new(Self {
                link,
                role,
                outbox,
                channel: Mutex::new(Some(channel_rx)),
                incoming: Arc::new(tokio::sync::Mutex::new(incoming_rx)),
                pump: task.abort_handle(),
            }))
        })
        .await
    }

    /// This side's role.
    pub fn role(&self) -> WebRtcRole {
        self.role
    }

    /// The peer connection state: `new`, `connecting`, `connected`, `disconnected`, `failed`
    /// or `closed`.
    pub fn state(&self) -> String {
        state_name(self.link.state()).into()
    }

    /// Delivers signals and state changes to `listener` (replacing any previous one);
    /// signals produced before are delivered at once, in order.
    pub fn set_listener(&self, listener: Arc<dyn WebRtcLinkListener>) {
        lock(&self.outbox).listener = Some(listener);
        let outbox = Arc::clone(&self.outbox);
        peerlink::runtime::handle().spawn(async move { flush(&outbox) });
    }

    /// Offerer: creates the offer (delivered to the listener).
    pub async fn start(&self) -> Result<(), PeerlinkError> {
        let link = self.link.clone();
        task::run(async move { link.start().await.map_err(webrtc_error) }).await
    }

    /// Applies a signal from the peer (simple-peer JSON as its listener received it).
    pub async fn handle_signal(&self, json: String) -> Result<(), PeerlinkError> {
        let link = self.link.clone();
        task::run(async move { link.handle_signal_json(&json).await.map_err(webrtc_error) }).await
    }

    /// Waits for the `peerlink` channel to open (default 20 s), then runs the peerlink
    /// handshake over it on `node`, bound to both DTLS fingerprints. Once per link.
    #[uniffi::method(default(timeout_ms = None))]
    pub async fn connect(
        &self,
        node: Arc<Node>,
        timeout_ms: Option<u64>,
    ) -> Result<Arc<Connection>, PeerlinkError> {
        let node = node.inner.clone();
        let link = self.link.clone();
        let channel = lock(&self.channel).take();
        let timeout = timeout_ms.map_or(DEFAULT_OPEN_TIMEOUT, Duration::from_millis);
        task::run(async move {
            let Some(channel) = channel else {
                return Err(PeerlinkError::from_code(
                    "invalid_state",
                    "connect was already called on this link".into(),
                ));
            };
            let open = async {
                let ch = channel
                    .await
                    .map_err(|_| webrtc_error(peerlink::webrtc::WebRtcError::ChannelClosed))?;
                ch.opened().await.map_err(webrtc_error)?;
                Ok::<_, PeerlinkError>(ch)
            };
            let ch = match tokio::time::timeout(timeout, open).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(PeerlinkError::from_code(
                        "timeout",
                        format!("the WebRTC channel did not open within {timeout:?}"),
                    ));
                }
            };
            let transport = WebRtcTransport::new(link, ch);
            let binding = transport.binding().await.map_err(webrtc_error)?;
            let role = transport.handshake_role();
            let connection = node.connect(Box::new(transport), role, binding).await?;
            Ok(Arc::new(Connection::from(connection)))
        })
        .await
    }

    /// Opens another data channel on the link with its own options (ordered, partial
    /// reliability, priority). The offerer may call it before `start`; after the link is up
    /// either side may, and the peer receives it from `acceptChannel`. The label `peerlink`
    /// is taken by the link's own channel (`InvalidArgument`).
    pub async fn create_channel(
        &self,
        label: String,
        options: ChannelOptions,
    ) -> Result<Arc<DataChannel>, PeerlinkError> {
        if label == CHANNEL_LABEL {
            return Err(invalid(
                "the label \"peerlink\" belongs to the link's own channel",
            ));
        }
        let options = peerlink::webrtc::ChannelOptions::try_from(options)?;
        let link = self.link.clone();
        task::run(async move {
            let channel = link
                .create_channel(&label, options)
                .await
                .map_err(webrtc_error)?;
            Ok(Arc::new(DataChannel::from(channel)))
        })
        .await
    }

    /// The next data channel the peer opened (other than `peerlink`), or nothing once the
    /// link is closed.
    pub async fn accept_channel(&self) -> Option<Arc<DataChannel>> {
        let incoming = Arc::clone(&self.incoming);
        let mut state = self.link.state_changes();
        task::run_infallible(
            async move {
                let mut incoming = incoming.lock().await;
                let channel = tokio::select! {
                    biased;
                    ch = incoming.recv() => ch,
                    _ = state.wait_for(|s| *s == LinkState::Closed) => incoming.try_recv().ok(),
                };
                channel.map(|c| Arc::new(DataChannel::from(c)))
            },
            None,
        )
        .await
    }

    /// Restarts ICE now (new credentials, new candidates; the link and its channels stay
    /// up): the offerer sends a new offer, the answerer asks the offerer for one.
    pub async fn restart_ice(&self) -> Result<(), PeerlinkError> {
        let link = self.link.clone();
        task::run(async move { link.restart_ice().await.map_err(webrtc_error) }).await
    }

    /// ICE restarts this side started or asked for.
    pub fn ice_restarts(&self) -> u32 {
        self.link.ice_restarts()
    }

    /// Closes the peer connection and releases the listener. Kotlin: `closeLink`.
    pub async fn close(&self) {
        self.release();
        let link = self.link.clone();
        task::run_infallible(async move { link.close().await }, ()).await;
    }
}

impl WebRtcLink {
    fn release(&self) {
        self.pump.abort();
        let mut outbox = lock(&self.outbox);
        outbox.listener = None;
        outbox.signals.clear();
    }
}

impl Drop for WebRtcLink {
    fn drop(&mut self) {
        self.release();
        if self.link.state() != LinkState::Closed {
            let link = self.link.clone();
            peerlink::runtime::handle().spawn(async move { link.close().await });
        }
    }
}

/// One data channel of a `WebRtcLink`, next to its `peerlink` channel: messages of bytes,
/// with the options it was created with.
#[derive(uniffi::Object)]
pub struct DataChannel {
    label: String,
    priority: ChannelPriority,
    sender: ChannelSender,
    receiver: Arc<tokio::sync::Mutex<ChannelReceiver>>,
}

impl std::fmt::Debug for DataChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataChannel")
            .field("label", &self.label)
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
}

impl From<WebRtcChannel> for DataChannel {
    fn from(channel: WebRtcChannel) -> Self {
        let label = channel.label().to_owned();
        let priority = channel.priority().into();
        let (sender, receiver) = channel.split();
        Self {
            label,
            priority,
            sender,
            receiver: Arc::new(tokio::sync::Mutex::new(receiver)),
        }
    }
}

#[uniffi::export]
impl DataChannel {
    /// The channel's label.
    pub fn label(&self) -> String {
        self.label.clone()
    }

    /// The priority it was created with, or for a channel the peer opened, the one in the
    /// peer's channel-open message.
    pub fn priority(&self) -> ChannelPriority {
        self.priority
    }

    /// The largest message the peer accepts.
    pub fn max_message_size(&self) -> u64 {
        self.sender.max_message_size() as u64
    }

    /// Waits until the channel is open; fails with `Closed` if it closes first.
    pub async fn opened(&self) -> Result<(), PeerlinkError> {
        let sender = self.sender.clone();
        task::run(async move { sender.opened().await.map_err(webrtc_error) }).await
    }

    /// Sends one message; waits while the link's pacing or a channel of higher priority
    /// holds it back. Fails with `TooLarge` past `maxMessageSize`.
    pub async fn send(&self, data: Vec<u8>) -> Result<(), PeerlinkError> {
        let sender = self.sender.clone();
        task::run(async move { sender.send(Bytes::from(data)).await.map_err(webrtc_error) }).await
    }

    /// The next message, or nothing once the channel is closed and drained.
    pub async fn recv(&self) -> Option<Vec<u8>> {
        let receiver = Arc::clone(&self.receiver);
        task::run_infallible(
            async move { receiver.lock().await.recv().await.map(|b| b.to_vec()) },
            None,
        )
        .await
    }

    /// Bytes handed to `send` and not yet acknowledged by the peer.
    pub async fn buffered_amount(&self) -> u64 {
        let sender = self.sender.clone();
        task::run_infallible(async move { sender.outstanding_bytes().await as u64 }, 0).await
    }

    /// Closes the channel (the link stays up). Kotlin: `closeChannel`.
    pub async fn close(&self) {
        let sender = self.sender.clone();
        // Closing a channel that already closed is not an error for the caller.
        task::run_infallible(
            async move {
                let _ = sender.close().await;
            },
            (),
        )
        .await;
    }
}
