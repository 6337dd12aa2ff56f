//! Hybrid connections: usable at once over the server relay, moved to WebRTC when a direct
//! link opens, back on the relay when WebRTC fails.
//!
//! A peerlink [`Connection`] is bound by its handshake to one link, so the path switch lives
//! one level up: a [`HybridConnection`] holds a verified connection per path (the relay one,
//! and the WebRTC one while it is up) and sends each new call on the best open path. A call
//! runs on exactly one connection from start to end, so calls in flight when the path changes
//! finish on the connection they started on, exactly once; nothing is retried behind the
//! caller's back (a handler may have side effects). Calls in flight on a WebRTC link that dies
//! fail with the connection's error; the next call goes over the relay.
//!
//! A WebRTC link that loses its path (ICE `Disconnected`, an ICE restart under way, `Failed`)
//! is not closed at once: it may come back, with its calls in flight intact. Meanwhile new
//! calls go over the relay (when it is open), and they return to WebRTC when the link is
//! connected again. [`HybridConnection::events`] reports each of these steps.
//!
//! The relay connection ends with the signaling connection it runs on (a network change, a
//! server restart). The dialling side then opens a new relay link once the signaling client
//! has reconnected, runs the handshake over it and accepts it only if the peer proves the same
//! device id and public key as before; the accepting side attaches it to the hybrid connection
//! of that peer. New calls use it from then on ([`HybridEvent::RelayBack`]). Calls in flight
//! on the old relay failed with it; none is repeated.
//!
//! The relay connection is kept, idle, while WebRTC carries the traffic rather than drained
//! and closed: it costs one link id on the server and no traffic beyond keep-alives, and
//! falling back to it needs no new handshake. Both paths carry the same verified identity; the
//! WebRTC connection is accepted only if it proves the same public key as the relay one.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{broadcast, watch};

use super::SignalingClient;
use super::webrtc::{
    DialError, Incoming, IncomingLinks, WebRtcDialer, check_identity, connect_relay,
};
use crate::webrtc::LinkState;
use crate::{CloseReason, Connection, DeviceInfo, Node, RpcError, TransportKind};

/// Events buffered per [`HybridEvents`] receiver; a receiver that falls further behind loses
/// the oldest.
const EVENT_BUFFER: usize = 64;

/// Tries to re-establish the relay after it was lost, before giving up on it.
const RELAY_REOPEN_ATTEMPTS: u32 = 5;
/// How long one of those tries waits for the signaling client to reconnect.
const RELAY_REOPEN_WAIT: Duration = Duration::from_secs(60);

/// What happens to the paths of a [`HybridConnection`] ([`HybridConnection::events`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HybridEvent {
    /// New calls now take this path: WebRTC once a link is verified or back, the relay while
    /// WebRTC is down or gone.
    Path(TransportKind),
    /// The WebRTC link lost its path (ICE `Disconnected`); calls in flight on it wait for it
    /// to return.
    WebRtcDisconnected,
    /// The WebRTC link is searching for a path again (an ICE restart, or the path checks
    /// resumed).
    WebRtcRestarting,
    /// The WebRTC link is connected again; calls that waited on it go on.
    WebRtcBack,
    /// ICE failed on the WebRTC link; it may still come back by an ICE restart.
    WebRtcFailed,
    /// The WebRTC connection closed; its calls in flight failed.
    WebRtcClosed,
    /// The relay connection closed (it ends with the signaling connection).
    RelayClosed,
    /// A new relay connection replaced the one that closed: the signaling client reconnected
    /// and the peer proved the same identity over a new relay link. New calls use it while
    /// WebRTC is down.
    RelayBack,
}

/// The event stream of one [`HybridConnection`].
#[derive(Debug)]
pub struct HybridEvents {
    rx: broadcast::Receiver<HybridEvent>,
    closed: watch::Receiver<bool>,
}

impl HybridEvents {
    /// The next event, or `None` once the hybrid connection is closed or dropped. A receiver
    /// that fell more than 64 events behind skips the oldest.
    pub async fn next(&mut self) -> Option<HybridEvent> {
        // Each turn takes one event or skips a lag report; ends with the connection.
        loop {
            tokio::select! {
                biased;
                event = self.rx.recv() => match event {
                    Ok(event) => return Some(event),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = stopped(&mut self.closed) => return None,
            }
        }
    }
}

/// Settings of the dialling side of a hybrid connection.
#[derive(Debug, Clone, Copy)]
pub struct HybridConfig {
    /// Wait between failed WebRTC attempts, and after a WebRTC link dies before trying again.
    pub retry_delay: Duration,
    /// WebRTC attempts before staying on the relay for good (0: never try).
    pub max_webrtc_attempts: u32,
}

impl Default for HybridConfig {
    fn default() -> Self {
        Self {
            retry_delay: Duration::from_secs(5),
            max_webrtc_attempts: 3,
        }
    }
}

struct Inner {
    /// The current relay connection (replaced when it is re-established).
    relay: Mutex<Option<Connection>>,
    /// Set once the relay is lost for good (closed on purpose, or not re-established).
    relay_gone: watch::Sender<bool>,
    /// The connection the hybrid was made with (the relay one, or a WebRTC one when the peer
    /// dialled WebRTC alone); used when nothing better is open, so callers see its error.
    first: Connection,
    webrtc: watch::Sender<Option<Connection>>,
    /// Whether the current WebRTC link has its path (ICE connected).
    webrtc_connected: AtomicBool,
    /// The path last reported as [`HybridEvent::Path`].
    reported_path: Mutex<TransportKind>,
    events: broadcast::Sender<HybridEvent>,
    closed: watch::Sender<bool>,
}

impl Inner {
    fn new(relay: Option<Connection>, first: Connection) -> Self {
        let path = first.transport_kind();
        Self {
            relay: Mutex::new(relay),
            relay_gone: watch::channel(false).0,
            first,
            webrtc: watch::channel(None).0,
            webrtc_connected: AtomicBool::new(false),
            reported_path: Mutex::new(path),
            events: broadcast::channel(EVENT_BUFFER).0,
            closed: watch::channel(false).0,
        }
    }

    fn emit(&self, event: HybridEvent) {
        let _ = self.events.send(event);
    }

    fn relay(&self) -> Option<Connection> {
        self.relay.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn relay_is_open(&self) -> bool {
        self.relay().is_some_and(|r| r.is_open())
    }

    fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Reports when `relay` closes, if it is still the current relay then.
    fn watch_relay(self: &Arc<Self>, relay: Connection) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            relay.closed().await;
            if let Some(inner) = weak.upgrade()
                && inner.relay().is_some_and(|r| r.id() == relay.id())
            {
                inner.emit(HybridEvent::RelayClosed);
                inner.path_may_have_changed();
            }
        });
    }

    /// Makes `relay` (the peer's identity already checked) the current relay connection.
    fn replace_relay(self: &Arc<Self>, relay: Connection) {
        *self.relay.lock().unwrap_or_else(|p| p.into_inner()) = Some(relay.clone());
        self.watch_relay(relay);
        self.emit(HybridEvent::RelayBack);
        self.path_may_have_changed();
    }

    /// Wakes path watchers and reports the path if it changed.
    fn path_may_have_changed(self: &Arc<Self>) {
        self.webrtc.send_modify(|_| {});
        let path = HybridConnection {
            inner: Arc::clone(self),
        }
        .path();
        let changed = {
            let mut reported = self.reported_path.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *reported, path) != path
        };
        if changed {
            self.emit(HybridEvent::Path(path));
        }
    }
}

/// One verified peer reachable over the relay and, when possible, WebRTC. Cheap to clone.
#[derive(Clone)]
pub struct HybridConnection {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HybridConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HybridConnection")
            .field("path", &self.path())
            .field("peer", &self.remote().device_id)
            .finish()
    }
}

impl HybridConnection {
    fn from_relay(relay: Connection) -> Self {
        let hybrid = Self {
            inner: Arc::new(Inner::new(Some(relay.clone()), relay.clone())),
        };
        hybrid.inner.watch_relay(relay);
        hybrid
    }

    fn from_webrtc(webrtc: Connection, state: watch::Receiver<LinkState>) -> Self {
        let hybrid = Self {
            inner: Arc::new(Inner::new(None, webrtc.clone())),
        };
        hybrid.attach_webrtc(webrtc, state);
        hybrid
    }

    /// Dials `to`: connects over the relay and returns at once; a background task then opens
    /// WebRTC through `dialer` and moves new calls to it once it is verified.
    pub async fn dial(
        dialer: &WebRtcDialer,
        node: &Node,
        to: &str,
        config: HybridConfig,
    ) -> Result<HybridConnection, DialError> {
        let relay = connect_relay(dialer.client(), node, to, None).await?;
        let hybrid = HybridConnection::from_relay(relay.clone());
        tokio::spawn(keep_relay(
            Arc::downgrade(&hybrid.inner),
            dialer.client().clone(),
            node.clone(),
            to.to_owned(),
            relay,
            config,
        ));
        tokio::spawn(upgrade(
            Arc::downgrade(&hybrid.inner),
            dialer.clone(),
            node.clone(),
            to.to_owned(),
            config,
        ));
        Ok(hybrid)
    }

    /// Uses `connection` for new calls while it is open and its link (whose state `state`
    /// follows) is connected, if it proves the same key as the relay.
    fn attach_webrtc(&self, connection: Connection, mut state: watch::Receiver<LinkState>) {
        if let Some(relay) = self.inner.relay()
            && relay.remote().public_key != connection.remote().public_key
        {
            tracing::warn!("WebRTC connection proved a different key; not used");
            return;
        }
        let id = connection.id();
        let connected = *state.borrow_and_update() == LinkState::Connected;
        self.inner
            .webrtc_connected
            .store(connected, Ordering::Release);
        self.inner.webrtc.send_replace(Some(connection.clone()));
        self.inner.path_may_have_changed();
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            // Each turn handles one change of the link's state; ends when the connection
            // closes, the link is gone or the hybrid connection is dropped.
            loop {
                tokio::select! {
                    _ = connection.closed() => break,
                    changed = state.changed() => {
                        if changed.is_err() {
                            connection.closed().await;
                            break;
                        }
                    }
                }
                let now = *state.borrow_and_update();
                let Some(inner) = weak.upgrade() else { return };
                let is_current = inner.webrtc.borrow().as_ref().is_some_and(|c| c.id() == id);
                if !is_current {
                    return;
                }
                let was = inner
                    .webrtc_connected
                    .swap(now == LinkState::Connected, Ordering::AcqRel);
                let event = match now {
                    LinkState::Connected if !was => Some(HybridEvent::WebRtcBack),
                    LinkState::Disconnected => Some(HybridEvent::WebRtcDisconnected),
                    LinkState::Connecting => Some(HybridEvent::WebRtcRestarting),
                    LinkState::Failed => Some(HybridEvent::WebRtcFailed),
                    _ => None,
                };
                if let Some(event) = event {
                    tracing::debug!(?event, "hybrid WebRTC path");
                    inner.emit(event);
                }
                inner.path_may_have_changed();
            }
            if let Some(inner) = weak.upgrade() {
                let cleared = inner.webrtc.send_if_modified(|c| match c {
                    Some(current) if current.id() == id => {
                        *c = None;
                        true
                    }
                    _ => false,
                });
                if cleared {
                    inner.webrtc_connected.store(false, Ordering::Release);
                    inner.emit(HybridEvent::WebRtcClosed);
                    inner.path_may_have_changed();
                }
            }
        });
    }

    /// The connection new calls go to: WebRTC while its link is connected; the relay while
    /// the WebRTC link is down (or gone), if the relay is open; otherwise the WebRTC
    /// connection while it is open (its calls wait for the link to come back), else the
    /// connection the hybrid was made with.
    pub fn current(&self) -> Connection {
        let webrtc = self
            .inner
            .webrtc
            .borrow()
            .clone()
            .filter(Connection::is_open);
        let relay = self.inner.relay().filter(Connection::is_open);
        match (webrtc, relay) {
            (Some(w), _) if self.inner.webrtc_connected.load(Ordering::Acquire) => w,
            (_, Some(r)) => r,
            (Some(w), None) => w,
            (None, None) => self.inner.first.clone(),
        }
    }

    /// The events of this connection's paths from now on (see [`HybridEvent`]).
    pub fn events(&self) -> HybridEvents {
        HybridEvents {
            rx: self.inner.events.subscribe(),
            closed: self.inner.closed.subscribe(),
        }
    }

    /// The path new calls take now.
    pub fn path(&self) -> TransportKind {
        self.current().transport_kind()
    }

    /// Waits (at most `timeout`) until new calls take `kind`; returns whether they do.
    pub async fn wait_for_path(&self, kind: TransportKind, timeout: Duration) -> bool {
        let mut rx = self.inner.webrtc.subscribe();
        let wait = async {
            // Bounded by the timeout around it; each turn waits for a path change.
            loop {
                if self.path() == kind {
                    return true;
                }
                if rx.changed().await.is_err() {
                    return self.path() == kind;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }

    /// The relay connection, if this side has one (the current one, after it was
    /// re-established).
    pub fn relay(&self) -> Option<Connection> {
        self.inner.relay()
    }

    /// The WebRTC connection while it is up.
    pub fn webrtc(&self) -> Option<Connection> {
        self.inner
            .webrtc
            .borrow()
            .clone()
            .filter(Connection::is_open)
    }

    /// The verified peer.
    pub fn remote(&self) -> DeviceInfo {
        self.current().remote().clone()
    }

    /// Calls `name` on the current path (see the module documentation for what happens to
    /// calls in flight when the path changes).
    pub async fn call<A, R>(&self, name: &str, args: &A) -> Result<R, RpcError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.current().call(name, args).await
    }

    /// Whether any path is open.
    pub fn is_open(&self) -> bool {
        self.webrtc().is_some() || self.inner.relay_is_open()
    }

    /// Closes both paths and stops trying WebRTC.
    pub async fn close(&self, reason: &str) {
        self.inner.closed.send_replace(true);
        let webrtc = self.inner.webrtc.borrow().clone();
        if let Some(w) = webrtc {
            w.close(reason).await;
        }
        if let Some(relay) = self.inner.relay() {
            relay.close(reason).await;
        }
        self.inner.first.close(reason).await;
    }
}

/// Resolves once the hybrid connection is closed (or dropped).
async fn stopped(closed: &mut watch::Receiver<bool>) {
    let _ = closed.wait_for(|c| *c).await;
}

/// Opens a WebRTC connection to `to` (as [`WebRtcDialer::connect`]) and returns it with a
/// receiver of its link's state.
async fn connect_webrtc(
    dialer: &WebRtcDialer,
    node: &Node,
    to: &str,
) -> Result<(Connection, watch::Receiver<LinkState>), DialError> {
    let (key, transport) = dialer.open(to).await?;
    let state = transport.link().state_changes();
    let binding = transport.binding().await?;
    let role = transport.handshake_role();
    let connection = node.connect(Box::new(transport), role, binding).await?;
    check_identity(&connection, to, Some(&key)).await?;
    Ok((connection, state))
}

/// Resolves once the relay is lost for good (or the hybrid connection is dropped).
async fn relay_lost(gone: &mut watch::Receiver<bool>) {
    let _ = gone.wait_for(|g| *g).await;
}

/// Re-establishes the relay each time it ends with its signaling connection: waits for the
/// signaling client to reconnect, opens a new relay link, runs the handshake and keeps the
/// connection only if the peer proves the same device id and key. Gives up (and marks the
/// relay gone) when the relay was closed on purpose, by either side, or after
/// [`RELAY_REOPEN_ATTEMPTS`] failed tries in a row.
async fn keep_relay(
    inner: Weak<Inner>,
    client: SignalingClient,
    node: Node,
    to: String,
    mut relay: Connection,
    config: HybridConfig,
) {
    let Some(mut closed) = inner.upgrade().map(|i| i.closed.subscribe()) else {
        return;
    };
    let key = relay.remote().public_key.to_base64();
    // One turn per relay connection; each turn's tries are bounded by RELAY_REOPEN_ATTEMPTS.
    loop {
        let reason = tokio::select! {
            r = relay.closed() => r,
            _ = stopped(&mut closed) => return,
        };
        let lost_path = matches!(
            reason,
            CloseReason::TransportClosed | CloseReason::Transport(_)
        );
        let mut reopened = None;
        if lost_path {
            for attempt in 1..=RELAY_REOPEN_ATTEMPTS {
                let result = tokio::select! {
                    r = async {
                        if !client.wait_connected(RELAY_REOPEN_WAIT).await {
                            return Err(DialError::Signaling(super::SignalingError::Disconnected));
                        }
                        connect_relay(&client, &node, &to, Some(&key)).await
                    } => r,
                    _ = stopped(&mut closed) => return,
                };
                match result {
                    Ok(connection) => {
                        reopened = Some(connection);
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(peer = to, attempt, error = %e, "relay not re-established");
                    }
                }
                if attempt < RELAY_REOPEN_ATTEMPTS {
                    tokio::select! {
                        _ = tokio::time::sleep(config.retry_delay) => {}
                        _ = stopped(&mut closed) => return,
                    }
                }
            }
        }
        let Some(strong) = inner.upgrade() else {
            if let Some(connection) = reopened {
                connection.close("hybrid connection dropped").await;
            }
            return;
        };
        match reopened {
            Some(connection) if !strong.is_closed() => {
                tracing::debug!(peer = to, "relay re-established");
                strong.replace_relay(connection.clone());
                relay = connection;
            }
            Some(connection) => {
                connection.close("hybrid connection closed").await;
                return;
            }
            None => {
                strong.relay_gone.send_replace(true);
                return;
            }
        }
    }
}

/// Opens WebRTC, uses it until it dies, and tries again, until the relay is lost for good.
async fn upgrade(
    inner: Weak<Inner>,
    dialer: WebRtcDialer,
    node: Node,
    to: String,
    config: HybridConfig,
) {
    let Some((mut closed, mut gone)) = inner
        .upgrade()
        .map(|i| (i.closed.subscribe(), i.relay_gone.subscribe()))
    else {
        return;
    };
    // Bounded by max_webrtc_attempts failures; a working link resets nothing, so a peer
    // whose links keep dying costs at most that many attempts too.
    for attempt in 1..=config.max_webrtc_attempts {
        let result = tokio::select! {
            r = connect_webrtc(&dialer, &node, &to) => r,
            _ = relay_lost(&mut gone) => return,
            _ = stopped(&mut closed) => return,
        };
        match result {
            Ok((connection, state)) => {
                let Some(strong) = inner.upgrade() else {
                    connection.close("hybrid connection dropped").await;
                    return;
                };
                tracing::debug!(peer = to, attempt, "moved to WebRTC");
                HybridConnection { inner: strong }.attach_webrtc(connection.clone(), state);
                tokio::select! {
                    _ = connection.closed() => {
                        tracing::debug!(peer = to, "WebRTC lost; back on the relay");
                    }
                    _ = relay_lost(&mut gone) => {
                        // The relay could not be re-established after its signaling
                        // connection ended (or was closed); the WebRTC link does not depend
                        // on it and keeps carrying calls until it closes itself. No relay to
                        // fall back on and no attempts after that: the hybrid connection then
                        // has no path, and the caller dials again.
                        tracing::debug!(peer = to, "relay lost; staying on WebRTC");
                        tokio::select! {
                            _ = connection.closed() => {}
                            _ = stopped(&mut closed) => {}
                        }
                        return;
                    }
                    _ = stopped(&mut closed) => return,
                }
            }
            Err(e) => tracing::debug!(peer = to, attempt, error = %e, "WebRTC attempt failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(config.retry_delay) => {}
            _ = relay_lost(&mut gone) => return,
            _ = stopped(&mut closed) => return,
        }
    }
}

/// Accepts hybrid connections: relay links become new [`HybridConnection`]s; a WebRTC link
/// from a peer that already has one is attached to it.
#[derive(Debug)]
pub struct HybridAcceptor {
    node: Node,
    incoming: IncomingLinks,
    by_peer: HashMap<(String, String), Weak<Inner>>,
}

impl HybridAcceptor {
    /// Accepts from `incoming` (the dialer needs [`super::DialerConfig::accept_relay`]).
    pub fn new(node: Node, incoming: IncomingLinks) -> Self {
        Self {
            node,
            incoming,
            by_peer: HashMap::new(),
        }
    }

    /// The next new peer. WebRTC links of known peers are attached while waiting. `None`
    /// once the signaling client is closed.
    pub async fn accept(&mut self) -> Option<HybridConnection> {
        // Each turn consumes one incoming link; ends when the stream ends.
        while let Some(incoming) = self.incoming.next().await {
            let is_relay = matches!(incoming, Incoming::Relay { .. });
            let state = match &incoming {
                Incoming::WebRtc { transport, .. } => Some(transport.link().state_changes()),
                _ => None,
            };
            let connection = match incoming.accept(&self.node).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "incoming link refused");
                    continue;
                }
            };
            let remote = connection.remote();
            let key = (remote.device_id.clone(), remote.public_key.to_base64());
            self.by_peer.retain(|_, w| w.strong_count() > 0);
            if is_relay {
                // A relay link from a peer that has a hybrid connection here re-establishes
                // its relay (the peer's signaling connection was replaced; this side may not
                // have noticed the old relay die yet, so an old one still open is closed).
                // `key` holds the device id and key that hybrid connection verified.
                let existing = self
                    .by_peer
                    .get(&key)
                    .and_then(Weak::upgrade)
                    .filter(|i| i.relay().is_some() && !i.is_closed());
                if let Some(inner) = existing {
                    tracing::debug!(peer = key.0, "relay re-established by the peer");
                    let old = inner.relay();
                    inner.replace_relay(connection);
                    if let Some(old) = old.filter(Connection::is_open) {
                        old.close("relay replaced").await;
                    }
                    continue;
                }
                let hybrid = HybridConnection::from_relay(connection);
                self.by_peer.insert(key, Arc::downgrade(&hybrid.inner));
                return Some(hybrid);
            }
            let existing = self
                .by_peer
                .get(&key)
                .and_then(Weak::upgrade)
                .filter(|i| i.relay_is_open());
            let Some(state) = state else { continue };
            match existing {
                Some(inner) => HybridConnection { inner }.attach_webrtc(connection, state),
                None => return Some(HybridConnection::from_webrtc(connection, state)),
            }
        }
        None
    }
}
