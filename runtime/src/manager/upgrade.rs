//! Automatic path upgrade: two devices linked by WebSocket or the relay, or reachable only
//! through other devices, exchange WebRTC [`Signal`]s as device messages (data context
//! [`WEBRTC_CONTEXT`]) and move to a direct [`WebRtcLink`].
//!
//! The new link runs the usual handshake, bound to both DTLS fingerprints, and must prove the
//! key that signed the peer's signals; then it is offered to the connection table like any
//! other link, so the draining path change (calls in flight complete exactly once) applies
//! unchanged. Who offers: the device that asks for the upgrade; when both ask at once, the
//! offer of the smaller device id wins and the other side answers it.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::{Duration, Instant};

use peerlink_core::PublicKey;
use peerlink_core::device_message::{DeliveryStatus, DeviceMessage};
use peerlink_core::manager::PathKind;
use tokio::sync::{mpsc, oneshot};

use super::{ConnectionManager, Inner, ManagerError, lock, path_kind};
use crate::connection::Connection;
use crate::transport::TransportKind;
use crate::webrtc::{
    ChannelOptions, Signal, WebRtcChannel, WebRtcConfig, WebRtcEvent, WebRtcEvents, WebRtcLink,
    WebRtcRole, WebRtcTransport,
};

/// Data context of the device messages that carry WebRTC signals.
pub const WEBRTC_CONTEXT: &str = "peerlink-webrtc";
const CHANNEL_LABEL: &str = "peerlink";
/// Most upgrade sessions (links being set up or alive) per remote device; more is a
/// misbehaving peer.
const MAX_SESSIONS_PER_DEVICE: usize = 4;
/// [`UpgradeConfig::ice_restart_timeout`] by default, and for links the host hands over.
const DEFAULT_ICE_RESTART_TIMEOUT: Duration = Duration::from_secs(30);
/// ICE restarts asked for within one outage.
const ICE_RESTART_ATTEMPTS: u32 = 3;

/// Settings of the upgrade to a direct WebRTC link.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UpgradeConfig {
    /// Settings of each WebRTC link (ICE servers, bound addresses, trickle).
    pub webrtc: WebRtcConfig,
    /// Longest time from the offer to a verified connection.
    pub open_timeout: Duration,
    /// Upgrade on its own: after a device message reached a device with no direct link, and
    /// when a device is linked by a path that ranks below WebRTC in the path preference.
    /// Without it, only [`ConnectionManager::upgrade`] starts one (answering is always on).
    pub automatic: bool,
    /// After a WebRTC link loses its path, how long ICE restarts may take to find one
    /// before the connection is closed (and a candidate device is dialled again).
    pub ice_restart_timeout: Duration,
}

impl UpgradeConfig {
    /// Automatic upgrades with `webrtc` links and a 20 s open timeout.
    pub fn new(webrtc: WebRtcConfig) -> Self {
        Self {
            webrtc,
            open_timeout: Duration::from_secs(20),
            automatic: true,
            ice_restart_timeout: DEFAULT_ICE_RESTART_TIMEOUT,
        }
    }
}

struct Session {
    /// Feeds the peer's signals into the link.
    signals: mpsc::UnboundedSender<Signal>,
    /// This side offers (only one offer per device is pending at a time).
    offering: bool,
    /// The key that signed the peer's signals; the link must prove it.
    peer_key: Option<PublicKey>,
    /// The connection over the link exists.
    established: bool,
}

#[derive(Default)]
pub(super) struct UpgradeState {
    config: Option<UpgradeConfig>,
    /// Links being set up or alive, by (peer device, session id).
    sessions: HashMap<(String, String), Session>,
    /// When the last upgrade to a device failed (left alone for the retry cooldown).
    failed: HashMap<String, Instant>,
}

impl UpgradeState {
    fn pending_offer(&self, device: &str) -> Option<String> {
        self.sessions
            .iter()
            .find(|((d, _), s)| d == device && s.offering && !s.established)
            .map(|((_, id), _)| id.clone())
    }

    fn pending(&self, device: &str) -> bool {
        self.sessions
            .iter()
            .any(|((d, _), s)| d == device && !s.established)
    }
}

fn session_id() -> String {
    let n: u128 = rand::random();
    format!("up-{n:032x}")
}

fn failed(device_id: &str, reason: impl Into<String>) -> ManagerError {
    ManagerError::UpgradeFailed {
        device_id: device_id.to_owned(),
        reason: reason.into(),
    }
}

impl ConnectionManager {
    /// Turns on the upgrade to direct WebRTC links (off by default: a manager without it
    /// refuses offers with 404).
    pub fn enable_webrtc_upgrade(&self, config: UpgradeConfig) {
        lock(&self.inner.upgrade).config = Some(config);
    }

    pub(super) fn webrtc_preferred_over(&self, kind: TransportKind) -> bool {
        let config = &self.inner.config;
        config.path_rank(PathKind::WebRtc) < config.path_rank(path_kind(kind))
    }

    /// Starts an automatic upgrade to `device_id` if one is due: upgrades are on and automatic,
    /// the device has no direct link or one on a path ranking below WebRTC, none is pending,
    /// and the last failure is older than the retry cooldown.
    pub(super) fn maybe_upgrade(&self, device_id: &str) {
        if device_id == self.inner.device_id || device_id.is_empty() {
            return;
        }
        {
            let st = lock(&self.inner.upgrade);
            let Some(config) = &st.config else { return };
            if !config.automatic || st.pending(device_id) {
                return;
            }
            if st
                .failed
                .get(device_id)
                .is_some_and(|at| at.elapsed() < self.inner.config.retry_cooldown)
            {
                return;
            }
        }
        if let Some(c) = self.connection(device_id)
            && !self.webrtc_preferred_over(c.transport_kind())
        {
            return;
        }
        let this = self.clone();
        let device = device_id.to_owned();
        tokio::spawn(async move {
            if let Err(e) = this.upgrade(&device).await {
                tracing::debug!(device, error = %e, "automatic WebRTC upgrade failed");
            }
        });
    }

    /// Opens a direct WebRTC link to `device_id`, signalled over device messages, and adds
    /// it (it replaces the current link if it ranks better; calls in flight finish on the old
    /// one). Returns the new connection once it is the device's current one.
    pub async fn upgrade(&self, device_id: &str) -> Result<Connection, ManagerError> {
        let (config, session) = {
            let mut st = lock(&self.inner.upgrade);
            let config = st.config.clone().ok_or(ManagerError::UpgradeDisabled)?;
            if st.pending(device_id) {
                return Err(failed(device_id, "an upgrade is already in progress"));
            }
            let session = session_id();
            let (tx, rx) = mpsc::unbounded_channel();
            st.sessions.insert(
                (device_id.to_owned(), session.clone()),
                Session {
                    signals: tx,
                    offering: true,
                    peer_key: None,
                    established: false,
                },
            );
            (config, (session, rx))
        };
        let (session, rx) = session;
        let result = tokio::time::timeout(
            config.open_timeout,
            self.offer(device_id, &session, &config, rx),
        )
        .await
        .unwrap_or_else(|_| Err(failed(device_id, "timed out")));
        self.finish(device_id, &session, &result);
        result
    }

    async fn offer(
        &self,
        device_id: &str,
        session: &str,
        config: &UpgradeConfig,
        rx: mpsc::UnboundedReceiver<Signal>,
    ) -> Result<Connection, ManagerError> {
        let mut webrtc = config.webrtc.clone();
        webrtc.connection_id = Some(session.to_owned());
        let (link, events) = WebRtcLink::new(webrtc, WebRtcRole::Offerer)
            .await
            .map_err(|e| failed(device_id, e.to_string()))?;
        let opened = async {
            let channel = link
                .create_channel(CHANNEL_LABEL, ChannelOptions::default())
                .await?;
            feed(&link, rx);
            tokio::spawn(forward_events(
                std::sync::Arc::downgrade(&self.inner),
                device_id.to_owned(),
                session.to_owned(),
                events,
                None,
            ));
            link.start().await?;
            channel.opened().await?;
            Ok::<_, crate::webrtc::WebRtcError>(channel)
        };
        let channel = match opened.await {
            Ok(c) => c,
            Err(e) => {
                link.close().await;
                return Err(failed(device_id, e.to_string()));
            }
        };
        self.connect_link(device_id, session, link, channel).await
    }

    /// Handshake over an open link, then the identity check and the connection table.
    async fn connect_link(
        &self,
        device_id: &str,
        session: &str,
        link: WebRtcLink,
        channel: WebRtcChannel,
    ) -> Result<Connection, ManagerError> {
        let transport = WebRtcTransport::new(link.clone(), channel);
        let binding = match transport.binding().await {
            Ok(b) => b,
            Err(e) => {
                link.close().await;
                return Err(failed(device_id, e.to_string()));
            }
        };
        let role = transport.handshake_role();
        let connection = self
            .inner
            .node
            .connect(Box::new(transport), role, binding)
            .await?;
        let expected = lock(&self.inner.upgrade)
            .sessions
            .get(&(device_id.to_owned(), session.to_owned()))
            .and_then(|s| s.peer_key);
        let remote = connection.remote();
        if remote.device_id != device_id || Some(remote.public_key) != expected {
            connection.close("not the device that signalled").await;
            return Err(failed(device_id, "the link proved another identity"));
        }
        if let Some(s) = lock(&self.inner.upgrade)
            .sessions
            .get_mut(&(device_id.to_owned(), session.to_owned()))
        {
            s.established = true;
        }
        // The node's Connected event adds it too; adding twice is a no-op.
        self.add_connection(connection.clone());
        self.watch_webrtc_link(&connection, &link);
        if self.connection(device_id).as_ref() == Some(&connection) {
            Ok(connection)
        } else {
            Err(failed(
                device_id,
                "the connection table kept the current link",
            ))
        }
    }

    /// Keeps `connection`, carried by `link`, alive across path losses: when the link
    /// reports `Disconnected` or `Failed`, the manager restarts ICE at once (the connection,
    /// its calls and streams stay), asking again up to three times within the ICE restart
    /// timeout; if no path is found by then it closes the connection, and a device that is a
    /// dial candidate is dialled again with backoff. Links the manager opens itself are
    /// watched already; a host that opens WebRTC links itself hands them over here.
    pub fn watch_webrtc_link(&self, connection: &Connection, link: &WebRtcLink) {
        let timeout = lock(&self.inner.upgrade)
            .config
            .as_ref()
            .map_or(DEFAULT_ICE_RESTART_TIMEOUT, |c| c.ice_restart_timeout);
        tokio::spawn(ice_restart_first(
            std::sync::Arc::downgrade(&self.inner),
            connection.clone(),
            {
                let weak = link.downgrade();
                move || weak.upgrade()
            },
            link.state_changes(),
            timeout,
        ));
    }

    fn finish(&self, device_id: &str, session: &str, result: &Result<Connection, ManagerError>) {
        let mut st = lock(&self.inner.upgrade);
        match result {
            Ok(_) => {
                st.failed.remove(device_id);
            }
            Err(_) => {
                st.sessions
                    .remove(&(device_id.to_owned(), session.to_owned()));
                st.failed.insert(device_id.to_owned(), Instant::now());
            }
        }
    }

    /// A signal addressed to this device: fed to its link, or (an offer) answered with a new
    /// link. The answer payload is empty; errors are delivery statuses.
    pub(super) fn on_webrtc_signal(
        &self,
        message: &DeviceMessage,
    ) -> Result<Vec<u8>, DeliveryStatus> {
        let json = std::str::from_utf8(&message.payload).map_err(|_| DeliveryStatus::Rejected)?;
        let signal = Signal::from_json(json).map_err(|_| DeliveryStatus::Rejected)?;
        let session = signal
            .connection_id()
            .ok_or(DeliveryStatus::Rejected)?
            .to_owned();
        let peer = message.from_device_id.clone();
        let key = (peer.clone(), session.clone());
        let mut st = lock(&self.inner.upgrade);
        if let Some(s) = st.sessions.get_mut(&key) {
            if s.peer_key.is_some_and(|k| k != message.from_public_key) {
                return Err(DeliveryStatus::Rejected);
            }
            s.peer_key = Some(message.from_public_key);
            return s
                .signals
                .send(signal)
                .map(|()| Vec::new())
                .map_err(|_| DeliveryStatus::NotFound);
        }
        let Signal::Offer {
            ice_restart: false, ..
        } = signal
        else {
            return Err(DeliveryStatus::NotFound);
        };
        let config = st.config.clone().ok_or(DeliveryStatus::NotFound)?;
        if st.sessions.keys().filter(|(d, _)| *d == peer).count() >= MAX_SESSIONS_PER_DEVICE {
            return Err(DeliveryStatus::Unavailable);
        }
        // Both sides offered at once: the smaller device id's offer wins.
        if let Some(mine) = st.pending_offer(&peer) {
            if self.inner.device_id < peer {
                return Err(DeliveryStatus::Unavailable);
            }
            // Dropping the session's sender ends the feed; the offer task then times out
            // or fails its handshake and closes its link.
            st.sessions.remove(&(peer.clone(), mine));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(signal);
        st.sessions.insert(
            key,
            Session {
                signals: tx,
                offering: false,
                peer_key: Some(message.from_public_key),
                established: false,
            },
        );
        drop(st);
        let this = self.clone();
        tokio::spawn(async move {
            let result = tokio::time::timeout(
                config.open_timeout,
                this.answer(&peer, &session, &config, rx),
            )
            .await
            .unwrap_or_else(|_| Err(failed(&peer, "timed out")));
            if let Err(e) = &result {
                tracing::debug!(peer, error = %e, "answering a WebRTC upgrade failed");
            }
            this.finish(&peer, &session, &result);
        });
        Ok(Vec::new())
    }

    async fn answer(
        &self,
        device_id: &str,
        session: &str,
        config: &UpgradeConfig,
        rx: mpsc::UnboundedReceiver<Signal>,
    ) -> Result<Connection, ManagerError> {
        let mut webrtc = config.webrtc.clone();
        webrtc.connection_id = Some(session.to_owned());
        let (link, events) = WebRtcLink::new(webrtc, WebRtcRole::Answerer)
            .await
            .map_err(|e| failed(device_id, e.to_string()))?;
        let (channel_tx, channel_rx) = oneshot::channel();
        feed(&link, rx);
        tokio::spawn(forward_events(
            std::sync::Arc::downgrade(&self.inner),
            device_id.to_owned(),
            session.to_owned(),
            events,
            Some(channel_tx),
        ));
        let opened = async {
            let channel = channel_rx
                .await
                .map_err(|_| crate::webrtc::WebRtcError::ChannelClosed)?;
            channel.opened().await?;
            Ok::<_, crate::webrtc::WebRtcError>(channel)
        };
        let channel = match opened.await {
            Ok(c) => c,
            Err(e) => {
                link.close().await;
                return Err(failed(device_id, e.to_string()));
            }
        };
        self.connect_link(device_id, session, link, channel).await
    }
}

/// Feeds signals into `link` until the session's sender is dropped or the link is gone.
fn feed(link: &WebRtcLink, mut rx: mpsc::UnboundedReceiver<Signal>) {
    // Weak: the transport owns the link; this task must not keep it alive.
    let weak = link.downgrade();
    tokio::spawn(async move {
        while let Some(signal) = rx.recv().await {
            let Some(link) = weak.upgrade() else { return };
            if let Err(e) = link.handle_signal(signal).await {
                tracing::debug!(error = %e, "signal refused by the link");
            }
        }
    });
}

/// Sends the link's signals to the peer as device messages, one at a time so they arrive in
/// order; hands the first channel the peer opens to `channel`. Ends with the link's events
/// (after the link closes), removing the session.
async fn forward_events(
    inner: Weak<Inner>,
    peer: String,
    session: String,
    mut events: WebRtcEvents,
    mut channel: Option<oneshot::Sender<WebRtcChannel>>,
) {
    while let Some(event) = events.next().await {
        match event {
            WebRtcEvent::Signal(signal) => {
                let Some(inner) = inner.upgrade() else { break };
                let manager = ConnectionManager { inner };
                let payload = signal.to_json().into_bytes();
                let sent = tokio::time::timeout(
                    manager.inner.config.ping_timeout,
                    manager.send_device_message(&peer, WEBRTC_CONTEXT, payload),
                )
                .await;
                match sent {
                    Ok(Ok(r)) if r.status == DeliveryStatus::Delivered => {}
                    Ok(Ok(r)) => {
                        tracing::debug!(
                            peer,
                            status = r.status.code(),
                            "WebRTC signal not delivered"
                        );
                    }
                    Ok(Err(e)) => tracing::debug!(peer, error = %e, "WebRTC signal not sent"),
                    Err(_) => tracing::debug!(peer, "WebRTC signal timed out"),
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
    if let Some(inner) = inner.upgrade() {
        lock(&inner.upgrade).sessions.remove(&(peer, session));
    }
}

/// The reconnect step for a WebRTC link (see [`ConnectionManager::watch_webrtc_link`]).
/// Ends when the link or the connection closes, or the manager is gone.
async fn ice_restart_first(
    inner: Weak<Inner>,
    connection: Connection,
    link: impl Fn() -> Option<WebRtcLink>,
    mut state: tokio::sync::watch::Receiver<crate::webrtc::LinkState>,
    timeout: Duration,
) {
    use crate::webrtc::LinkState;
    let device_id = connection.remote().device_id.clone();
    let connection_id = connection.id();
    let emit = |event: super::ManagerEvent| {
        if let Some(inner) = inner.upgrade() {
            let _ = inner.events.send(event);
        }
    };
    loop {
        let down = state
            .wait_for(|s| {
                matches!(
                    s,
                    LinkState::Disconnected | LinkState::Failed | LinkState::Closed
                )
            })
            .await
            .map(|s| *s);
        if !matches!(down, Ok(LinkState::Disconnected | LinkState::Failed))
            || !connection.is_open()
            || inner.upgrade().is_none()
        {
            return;
        }
        emit(super::ManagerEvent::IceRestarting {
            device_id: device_id.clone(),
            connection_id,
        });
        let deadline = tokio::time::Instant::now() + timeout;
        let per_attempt = timeout / ICE_RESTART_ATTEMPTS;
        let mut recovered = false;
        for _ in 0..ICE_RESTART_ATTEMPTS {
            let Some(l) = link() else { return };
            if let Err(e) = l.restart_ice().await {
                tracing::debug!(device = %device_id, error = %e, "ICE restart refused");
            }
            drop(l);
            let until = (tokio::time::Instant::now() + per_attempt).min(deadline);
            let outcome = tokio::time::timeout_at(
                until,
                state.wait_for(|s| matches!(s, LinkState::Connected | LinkState::Closed)),
            )
            .await;
            match outcome {
                Ok(Ok(s)) if *s == LinkState::Connected => {
                    recovered = true;
                    break;
                }
                Ok(_) => return,
                Err(_) => {}
            }
        }
        if recovered {
            emit(super::ManagerEvent::IceRestarted {
                device_id: device_id.clone(),
                connection_id,
            });
            continue;
        }
        // No path: the connection goes; its removal starts the re-dial with backoff.
        connection.close("ICE restart found no path").await;
        return;
    }
}
