//! WebRTC through a signaling server: two devices that know only each other's device id
//! exchange WebRTC [`Signal`]s as signaling messages, open a [`WebRtcLink`] and run the
//! peerlink handshake over it, bound to both DTLS fingerprints.
//!
//! A [`WebRtcDialer`] takes over a client's event stream. It consumes the signals of peerlink
//! WebRTC links (their `connectionId` starts with [`CONNECTION_ID_PREFIX`]) and hands every
//! other event on, unchanged, through the [`SignalingEvents`] it returns, so applications still
//! see presence, their own signals (a browser chat offer, for example) and relay links.
//!
//! Once the link is up it no longer needs the server: the connection keeps working when the
//! server goes away (only an ICE restart would need it again).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::RngCore as _;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::client::SignalingEvents;
use super::{Member, SignalingClient, SignalingError, SignalingEvent};
use crate::transport::relay::RelayTransport;
use crate::webrtc::{
    ChannelOptions, LinkState, Signal, WeakWebRtcLink, WebRtcChannel, WebRtcConfig, WebRtcError,
    WebRtcEvent, WebRtcLink, WebRtcRole, WebRtcTransport,
};
use crate::{Connection, Error, Node};

/// Prefix of the `connectionId` of every signal that belongs to a peerlink WebRTC link.
/// Signals without it are left to the application.
pub const CONNECTION_ID_PREFIX: &str = "pl1-";

/// Label of the data channel the peerlink connection runs on.
const CHANNEL_LABEL: &str = "peerlink";

/// Incoming links buffered until the application accepts them.
const INCOMING_QUEUE: usize = 64;

/// Links being negotiated or open, per peer (a hostile peer cannot make us hold more).
const MAX_LINKS_PER_PEER: usize = 8;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Errors of connecting through a signaling server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The signaling server refused or could not carry a message (`target_offline`, …).
    #[error(transparent)]
    Signaling(#[from] SignalingError),
    /// The WebRTC link failed.
    #[error(transparent)]
    WebRtc(#[from] WebRtcError),
    /// The link did not open in time.
    #[error("the WebRTC link did not open within {0:?}")]
    Timeout(Duration),
    /// The peerlink handshake failed.
    #[error(transparent)]
    Handshake(#[from] Error),
    /// The peer proved an identity other than the one the server authenticated for its
    /// device id.
    #[error("peer identity mismatch: {0}")]
    IdentityMismatch(String),
    /// The dialer was dropped.
    #[error("dialer closed")]
    Closed,
}

/// Settings of a [`WebRtcDialer`].
#[derive(Debug, Clone)]
pub struct DialerConfig {
    /// Configuration of every link (its `connection_id` is set per link).
    pub webrtc: WebRtcConfig,
    /// How long a link may take from the offer to an open channel.
    pub open_timeout: Duration,
    /// Take incoming relay links too ([`Incoming::Relay`]) instead of passing them on as
    /// [`SignalingEvent::IncomingRelay`]; hybrid connections need both.
    pub accept_relay: bool,
}

impl DialerConfig {
    /// Defaults around `webrtc`: 20 s to open, relay links passed on.
    pub fn new(webrtc: WebRtcConfig) -> Self {
        Self {
            webrtc,
            open_timeout: Duration::from_secs(20),
            accept_relay: false,
        }
    }
}

/// A link another device opened to this one.
#[derive(Debug)]
#[non_exhaustive]
pub enum Incoming {
    /// A WebRTC link whose channel is open.
    WebRtc {
        /// The peer, as the server authenticated it.
        from: Member,
        /// The link; see [`Incoming::accept`].
        transport: WebRtcTransport,
    },
    /// A relay link (only with [`DialerConfig::accept_relay`]).
    Relay {
        /// The peer's device id.
        from: String,
        /// The link.
        transport: RelayTransport,
    },
}

impl Incoming {
    /// The peer's device id.
    pub fn from_device(&self) -> &str {
        match self {
            Self::WebRtc { from, .. } => &from.device_id,
            Self::Relay { from, .. } => from,
        }
    }

    /// Runs the handshake as responder and checks that the peer is the device the server
    /// authenticated (same device id and, for WebRTC links, the same public key).
    pub async fn accept(self, node: &Node) -> Result<Connection, DialError> {
        match self {
            Self::WebRtc { from, transport } => {
                let binding = transport.binding().await?;
                let role = transport.handshake_role();
                let connection = node.connect(Box::new(transport), role, binding).await?;
                check_identity(&connection, &from.device_id, Some(&from.public_key)).await?;
                Ok(connection)
            }
            Self::Relay { from, transport } => {
                let binding = transport.binding();
                let connection = node
                    .connect(Box::new(transport), crate::Role::Responder, binding)
                    .await?;
                check_identity(&connection, &from, None).await?;
                Ok(connection)
            }
        }
    }
}

/// Opens a relay link to `to`, runs the handshake over it as initiator and checks the peer's
/// identity (its device id, and its key when `public_key` is given, base64). When the server
/// reports `to` offline the link closes under the handshake; the dial then fails with that
/// report (`target_offline`) rather than with the closed link.
pub(super) async fn connect_relay(
    client: &SignalingClient,
    node: &Node,
    to: &str,
    public_key: Option<&str>,
) -> Result<Connection, DialError> {
    // Subscribed before the open frame leaves, so the server's answer to it cannot be missed.
    let mut offline = client.offline_notices();
    let link = client.open_relay(to).await?;
    let binding = link.binding();
    let result = {
        let handshake = node.connect(Box::new(link), crate::Role::Initiator, binding);
        let reported_offline = async {
            // Ends at the first notice for `to`, or never (the handshake decides then).
            loop {
                match offline.recv().await {
                    Ok(device) if device == to => return,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
                }
            }
        };
        tokio::select! {
            biased;
            () = reported_offline => None,
            r = handshake => Some(r),
        }
    };
    let connection = match result {
        Some(Ok(connection)) => connection,
        None => return Err(target_offline(to)),
        // The notice is queued before the link closes: a handshake that failed on the closed
        // link finds it here.
        Some(Err(_)) if offline_seen(&mut offline, to) => return Err(target_offline(to)),
        Some(Err(e)) => return Err(e.into()),
    };
    check_identity(&connection, to, public_key).await?;
    Ok(connection)
}

/// Whether a notice that `to` is offline is waiting in `offline`.
fn offline_seen(offline: &mut broadcast::Receiver<String>, to: &str) -> bool {
    // Bounded by the receiver's buffer.
    loop {
        match offline.try_recv() {
            Ok(device) if device == to => return true,
            Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => return false,
        }
    }
}

/// The error of a dial to a device the server reports offline, as the server words it for
/// signals.
fn target_offline(to: &str) -> DialError {
    DialError::Signaling(SignalingError::Server {
        code: "target_offline".into(),
        message: format!("{to} is not connected"),
    })
}

pub(super) async fn check_identity(
    connection: &Connection,
    device_id: &str,
    public_key: Option<&str>,
) -> Result<(), DialError> {
    let remote = connection.remote();
    let problem = if remote.device_id != device_id {
        Some(format!(
            "server says {device_id}, handshake says {}",
            remote.device_id
        ))
    } else if let Some(key) = public_key
        && remote.public_key.to_base64() != key
    {
        Some(format!("{device_id} proved a key the server did not see"))
    } else {
        None
    };
    match problem {
        Some(problem) => {
            connection.close("identity mismatch").await;
            Err(DialError::IdentityMismatch(problem))
        }
        None => Ok(()),
    }
}

/// Where the signals of one link go.
struct LinkEntry {
    signals: mpsc::UnboundedSender<Signal>,
    /// The link, to restart its ICE when the signaling connection is replaced.
    link: WeakWebRtcLink,
    /// The peer's key as the server stamped it on the first signal from it.
    peer_key: Arc<Mutex<Option<String>>>,
}

struct Shared {
    client: SignalingClient,
    config: DialerConfig,
    links: Mutex<HashMap<(String, String), LinkEntry>>,
    incoming: mpsc::Sender<Incoming>,
}

/// Connects to devices by id over WebRTC, with the signaling server carrying the signals, and
/// accepts the links they open. Cheap to clone; the routing task ends when the client closes.
#[derive(Clone)]
pub struct WebRtcDialer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WebRtcDialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcDialer")
            .field("device_id", &self.shared.client.device_id())
            .field("links", &lock(&self.shared.links).len())
            .finish_non_exhaustive()
    }
}

/// Links opened to this device, in arrival order.
#[derive(Debug)]
pub struct IncomingLinks {
    rx: mpsc::Receiver<Incoming>,
}

impl IncomingLinks {
    /// The next incoming link, or `None` once the signaling client is closed.
    pub async fn next(&mut self) -> Option<Incoming> {
        self.rx.recv().await
    }
}

impl WebRtcDialer {
    /// Takes over `events`. Returns the dialer, the events it does not consume (everything
    /// but peerlink WebRTC signals, and relay links with [`DialerConfig::accept_relay`]) and
    /// the links other devices open to this one.
    pub fn new(
        client: SignalingClient,
        events: SignalingEvents,
        config: DialerConfig,
    ) -> (Self, SignalingEvents, IncomingLinks) {
        let (incoming_tx, incoming_rx) = mpsc::channel(INCOMING_QUEUE);
        let (rest_tx, rest_rx) = mpsc::channel(1024);
        let shared = Arc::new(Shared {
            client,
            config,
            links: Mutex::new(HashMap::new()),
            incoming: incoming_tx,
        });
        tokio::spawn(route(Arc::downgrade(&shared), events, rest_tx));
        (
            Self { shared },
            SignalingEvents::from_receiver(rest_rx),
            IncomingLinks { rx: incoming_rx },
        )
    }

    /// The signaling client under the dialer.
    pub fn client(&self) -> &SignalingClient {
        &self.shared.client
    }

    /// The dialer's settings.
    pub fn config(&self) -> &DialerConfig {
        &self.shared.config
    }

    /// Opens a WebRTC link to device `to` and waits for its channel to open. Returns the
    /// peer's public key as the server stamped it on its answer, with the transport.
    pub async fn open(&self, to: &str) -> Result<(String, WebRtcTransport), DialError> {
        let mut id = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let connection_id = format!("{CONNECTION_ID_PREFIX}{}", hex_string(&id));
        let mut config = self.shared.config.webrtc.clone();
        config.connection_id = Some(connection_id.clone());
        let (link, events) = WebRtcLink::new(config, WebRtcRole::Offerer).await?;
        let channel = link
            .create_channel(CHANNEL_LABEL, ChannelOptions::default())
            .await?;
        let peer_key = self.register(to, &connection_id, &link)?;
        let (offline_tx, offline_rx) = oneshot::channel();
        tokio::spawn(forward_link_events(
            Arc::downgrade(&self.shared),
            to.to_owned(),
            connection_id.clone(),
            events,
            None,
            Some(offline_tx),
        ));
        let opened = async {
            link.start().await?;
            tokio::select! {
                r = channel.opened() => r?,
                Ok(e) = offline_rx => return Err(DialError::Signaling(e)),
            }
            Ok::<_, DialError>(())
        };
        let timeout = self.shared.config.open_timeout;
        let result = match tokio::time::timeout(timeout, opened).await {
            Ok(r) => r,
            Err(_) => Err(DialError::Timeout(timeout)),
        };
        if let Err(e) = result {
            link.close().await;
            return Err(e);
        }
        let key = lock(&peer_key).clone().unwrap_or_default();
        Ok((key, WebRtcTransport::new(link, channel)))
    }

    /// Connects `node` to device `to` over WebRTC: opens the link, runs the handshake as
    /// initiator bound to both fingerprints, and checks that the peer proved the identity the
    /// server authenticated for `to`.
    pub async fn connect(&self, node: &Node, to: &str) -> Result<Connection, DialError> {
        let (key, transport) = self.open(to).await?;
        let binding = transport.binding().await?;
        let role = transport.handshake_role();
        let connection = node.connect(Box::new(transport), role, binding).await?;
        check_identity(&connection, to, Some(&key)).await?;
        Ok(connection)
    }

    /// Connects `node` to device `to` through the signaling server's relay instead of WebRTC:
    /// the server forwards the (end-to-end encrypted) link, the handshake runs as initiator and
    /// the peer must prove the device id the server authenticated. The peer's dialer takes the
    /// link only with [`DialerConfig::accept_relay`].
    ///
    /// Fails with [`DialError::Signaling`] carrying the server's `target_offline`, as
    /// [`WebRtcDialer::connect`] does, when the server reports that `to` is not connected.
    pub async fn connect_relay(&self, node: &Node, to: &str) -> Result<Connection, DialError> {
        connect_relay(self.client(), node, to, None).await
    }

    fn register(
        &self,
        peer: &str,
        connection_id: &str,
        link: &WebRtcLink,
    ) -> Result<Arc<Mutex<Option<String>>>, DialError> {
        register_link(&self.shared, peer, connection_id, link).ok_or(DialError::WebRtc(
            WebRtcError::UnexpectedSignal {
                signal: "offer",
                reason: "too many links to this peer",
            },
        ))
    }
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts feeding signals into `link`; `None` if the peer has too many links already.
fn register_link(
    shared: &Arc<Shared>,
    peer: &str,
    connection_id: &str,
    link: &WebRtcLink,
) -> Option<Arc<Mutex<Option<String>>>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Signal>();
    let peer_key = Arc::new(Mutex::new(None));
    {
        let mut links = lock(&shared.links);
        if links.keys().filter(|(p, _)| p == peer).count() >= MAX_LINKS_PER_PEER {
            return None;
        }
        links.insert(
            (peer.to_owned(), connection_id.to_owned()),
            LinkEntry {
                signals: tx,
                link: link.downgrade(),
                peer_key: Arc::clone(&peer_key),
            },
        );
    }
    // Holds the link weakly: the application owns it through the transport.
    let weak = link.downgrade();
    tokio::spawn(async move {
        // Ends when the entry is removed (the link's events ended) or the link is gone.
        while let Some(signal) = rx.recv().await {
            let Some(link) = weak.upgrade() else { return };
            if let Err(e) = link.handle_signal(signal).await {
                tracing::debug!(error = %e, "signal refused by the link");
            }
        }
    });
    Some(peer_key)
}

/// Sends the link's signals to the peer; on the answerer, hands the first channel the peer
/// opens to `channel`. Returns when the link's event stream ends, after removing its routing
/// entry.
async fn forward_link_events(
    shared: std::sync::Weak<Shared>,
    peer: String,
    connection_id: String,
    mut events: crate::webrtc::WebRtcEvents,
    mut channel: Option<oneshot::Sender<WebRtcChannel>>,
    mut undeliverable: Option<oneshot::Sender<SignalingError>>,
) {
    // Bounded by the link's lifetime: the stream ends once the link is closed.
    while let Some(event) = events.next().await {
        match event {
            WebRtcEvent::Signal(signal) => {
                let Some(shared) = shared.upgrade() else {
                    break;
                };
                let data = serde_json::to_value(&signal).unwrap_or_default();
                if let Err(e) = shared.client.signal(&peer, data).await {
                    tracing::debug!(peer, error = %e, "could not send a WebRTC signal");
                    if e.code() == "target_offline"
                        && let Some(tx) = undeliverable.take()
                    {
                        let _ = tx.send(e);
                    }
                }
            }
            WebRtcEvent::Channel(ch) => {
                if let Some(tx) = channel.take() {
                    let _ = tx.send(ch);
                }
            }
            _ => {}
        }
    }
    if let Some(shared) = shared.upgrade() {
        lock(&shared.links).remove(&(peer, connection_id));
    }
}

/// Answers an offer for a new peerlink link and queues it as incoming once its channel opens.
async fn answer(shared: Arc<Shared>, from: Member, connection_id: String, offer: Signal) {
    let mut config = shared.config.webrtc.clone();
    config.connection_id = Some(connection_id.clone());
    let (link, events) = match WebRtcLink::new(config, WebRtcRole::Answerer).await {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!(error = %e, "cannot answer a WebRTC offer");
            return;
        }
    };
    let Some(peer_key) = register_link(&shared, &from.device_id, &connection_id, &link) else {
        tracing::debug!(peer = from.device_id, "too many WebRTC links from one peer");
        link.close().await;
        return;
    };
    *lock(&peer_key) = Some(from.public_key.clone());
    let (channel_tx, channel_rx) = oneshot::channel();
    tokio::spawn(forward_link_events(
        Arc::downgrade(&shared),
        from.device_id.clone(),
        connection_id,
        events,
        Some(channel_tx),
        None,
    ));
    let timeout = shared.config.open_timeout;
    let incoming = shared.incoming.clone();
    drop(shared);
    let opened = async {
        link.handle_signal(offer).await?;
        let channel = channel_rx.await.map_err(|_| WebRtcError::ChannelClosed)?;
        channel.opened().await?;
        Ok::<_, WebRtcError>(channel)
    };
    match tokio::time::timeout(timeout, opened).await {
        Ok(Ok(channel)) => {
            let transport = WebRtcTransport::new(link, channel);
            let _ = incoming.send(Incoming::WebRtc { from, transport }).await;
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "incoming WebRTC link failed");
            link.close().await;
        }
        Err(_) => {
            tracing::debug!("incoming WebRTC link did not open in time");
            link.close().await;
        }
    }
}

/// Restarts ICE on every link whose path is down or being searched again. Called when the signaling client has a
/// new connection to the server: the old one may have died with the network the links were
/// on (a network change), taking restart offers and answers with it, and the link's own
/// restart attempts may be spent or waiting out a lost offer. A new connection is the moment
/// a restart can get through, so it starts at once.
fn restart_stalled_links(shared: &Shared) {
    let stalled: Vec<WebRtcLink> = lock(&shared.links)
        .values()
        .filter_map(|entry| entry.link.upgrade())
        // `Connecting` too: a restart under way (its offer possibly lost) reports it.
        .filter(|link| {
            matches!(
                link.state(),
                LinkState::Connecting | LinkState::Disconnected | LinkState::Failed
            )
        })
        .collect();
    for link in stalled {
        tracing::debug!(role = ?link.role(), "signaling reconnected; restarting ICE of a stalled link");
        tokio::spawn(async move {
            if let Err(err) = link.restart_ice_now().await {
                tracing::debug!(%err, "ICE restart after the signaling reconnect");
            }
        });
    }
}

/// Routes the client's events: peerlink WebRTC signals to their links (new offers start an
/// answer), everything else to the application.
async fn route(
    shared: std::sync::Weak<Shared>,
    mut events: SignalingEvents,
    rest: mpsc::Sender<SignalingEvent>,
) {
    // Ends when the client closes (its event stream ends) or the dialer is dropped.
    while let Some(event) = events.next().await {
        let Some(shared) = shared.upgrade() else {
            let _ = rest.send(event).await;
            continue;
        };
        match event {
            SignalingEvent::Signal { from, data } => {
                let ours = data
                    .get("connectionId")
                    .and_then(|c| c.as_str())
                    .is_some_and(|c| c.starts_with(CONNECTION_ID_PREFIX));
                if !ours {
                    let _ = rest.send(SignalingEvent::Signal { from, data }).await;
                    continue;
                }
                let signal: Signal = match serde_json::from_value(data) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(peer = from.device_id, error = %e, "malformed signal");
                        continue;
                    }
                };
                let Some(connection_id) = signal.connection_id().map(str::to_owned) else {
                    continue;
                };
                let key = (from.device_id.clone(), connection_id.clone());
                let known = {
                    let links = lock(&shared.links);
                    links.get(&key).map(|entry| {
                        let mut stamped = lock(&entry.peer_key);
                        if stamped.is_none() {
                            *stamped = Some(from.public_key.clone());
                        }
                        entry.signals.clone()
                    })
                };
                match known {
                    Some(tx) => {
                        let _ = tx.send(signal);
                    }
                    None if matches!(signal, Signal::Offer { .. }) => {
                        tokio::spawn(answer(shared, from, connection_id, signal));
                    }
                    None => {}
                }
            }
            SignalingEvent::Connected { url } => {
                restart_stalled_links(&shared);
                let _ = rest.send(SignalingEvent::Connected { url }).await;
            }
            SignalingEvent::IncomingRelay { from, transport } if shared.config.accept_relay => {
                let _ = shared
                    .incoming
                    .send(Incoming::Relay { from, transport })
                    .await;
            }
            other => {
                let _ = rest.send(other).await;
            }
        }
    }
}
