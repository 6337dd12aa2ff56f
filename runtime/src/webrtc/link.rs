//! The link engine: one peer connection, its negotiation, candidates, state and channels.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use ::webrtc::data_channel::{DataChannel, RTCDataChannelInit};
use ::webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceGatheringState, RTCIceServer, RTCIceTransportPolicy,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder,
};
use rtc::peer_connection::configuration::RTCOfferOptions;
use tokio::sync::{Mutex, mpsc, watch};

use super::channel::{PacingSetup, WebRtcChannel};
use super::config::{
    ChannelOptions, IceRestartPolicy, IceServer, IceTransportPolicy, SctpCongestionControl,
    WebRtcConfig,
};
use super::error::WebRtcError;
use super::priority::{ChannelPriority, Scheduler};
use super::sdp;
use super::signal::{IceCandidate, MAX_CANDIDATE_LEN, Signal};
use super::socket::{TunedRuntime, effective_recv_buffer, window_for_buffer};
use crate::transport::PathReport;

/// Longest time the setup kicker runs (see `kick_until_channel_opens`).
const KICK_LIMIT: Duration = Duration::from_secs(3);

/// Largest message the engine can send or receive (its SCTP reassembly limit).
pub const ENGINE_MAX_MESSAGE_SIZE: usize = 256 * 1024;

/// Which side of the offer/answer exchange this link plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebRtcRole {
    /// Creates the offer and, by convention here, the channels.
    Offerer,
    /// Answers the offer.
    Answerer,
}

/// The connection state of a link (the browser's `RTCPeerConnectionState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkState {
    /// Not started.
    New,
    /// ICE or DTLS in progress.
    Connecting,
    /// ICE and DTLS up.
    Connected,
    /// Connectivity lost; may recover (or be restarted).
    Disconnected,
    /// ICE or DTLS failed; the link is dead.
    Failed,
    /// Closed locally.
    Closed,
}

/// What a link reports to its owner.
#[derive(Debug)]
#[non_exhaustive]
pub enum WebRtcEvent {
    /// A signal to deliver to the peer.
    Signal(Signal),
    /// The connection state changed.
    State(LinkState),
    /// The peer opened a channel.
    Channel(WebRtcChannel),
    /// Local candidate gathering finished.
    GatheringComplete,
    /// The link restarts ICE by itself ([`IceRestartPolicy`]); `attempt` counts from 1 within
    /// one outage. On the answerer this means it asked the offerer for a restart.
    IceRestarting {
        /// Attempt number within the current outage.
        attempt: u32,
    },
}

/// The stream of [`WebRtcEvent`]s of one link. Ends after the link is closed and the events
/// queued before the close are read, so tasks forwarding it do not outlive the link.
#[derive(Debug)]
pub struct WebRtcEvents {
    rx: mpsc::UnboundedReceiver<WebRtcEvent>,
    state: watch::Receiver<LinkState>,
    ended: bool,
}

impl WebRtcEvents {
    /// The next event, or `None` once the link is closed (or gone) and drained.
    pub async fn next(&mut self) -> Option<WebRtcEvent> {
        if let Ok(event) = self.rx.try_recv() {
            return Some(event);
        }
        if self.ended {
            return None;
        }
        tokio::select! {
            biased;
            event = self.rx.recv() => event,
            _ = self.state.wait_for(|s| *s == LinkState::Closed) => {
                self.ended = true;
                self.rx.try_recv().ok()
            }
        }
    }

    /// The next event if one is queued.
    pub fn try_next(&mut self) -> Option<WebRtcEvent> {
        self.rx.try_recv().ok()
    }
}

/// The DTLS fingerprints of both ends, read from the exchanged descriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprints {
    /// The offerer's certificate fingerprint, `sha-256 AB:CD:…`.
    pub offerer: String,
    /// The answerer's certificate fingerprint.
    pub answerer: String,
}

impl From<Fingerprints> for peerlink_core::handshake::LinkBinding {
    fn from(fp: Fingerprints) -> Self {
        Self::WebRtcFingerprints {
            offerer: fp.offerer,
            answerer: fp.answerer,
        }
    }
}

/// The engine calls this from its driver task: it must never block, and it must never hold
/// the peer connection (a strong reference here would be a cycle that keeps every connection
/// alive). It only forwards.
struct Handler {
    events: mpsc::UnboundedSender<WebRtcEvent>,
    trickle: bool,
    connection_id: Option<String>,
    local_mid: Arc<StdMutex<Option<String>>>,
    state: watch::Sender<LinkState>,
    gathered: watch::Sender<bool>,
    remote_max_message_size: Arc<AtomicUsize>,
    pumps: Arc<StdMutex<Vec<tokio::task::AbortHandle>>>,
    opened: Arc<watch::Sender<u64>>,
    pacing: Option<PacingSetup>,
    scheduler: Arc<Scheduler>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if !self.trickle {
            return;
        }
        let init = match event.candidate.to_json() {
            Ok(init) => init,
            Err(err) => {
                tracing::warn!(%err, "local candidate not serialisable, skipped");
                return;
            }
        };
        let mid = self.local_mid.lock().map(|m| m.clone()).unwrap_or(None);
        let _ = self.events.send(WebRtcEvent::Signal(Signal::Candidate {
            candidate: IceCandidate {
                candidate: init.candidate,
                sdp_m_line_index: Some(0),
                sdp_mid: Some(mid.unwrap_or_else(|| "0".to_owned())),
                username_fragment: None,
            },
            connection_id: self.connection_id.clone(),
        }));
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.send_replace(true);
            let _ = self.events.send(WebRtcEvent::GatheringComplete);
        } else if state == RTCIceGatheringState::Gathering {
            self.gathered.send_replace(false);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let state = match state {
            RTCPeerConnectionState::Connecting => LinkState::Connecting,
            RTCPeerConnectionState::Connected => LinkState::Connected,
            RTCPeerConnectionState::Disconnected => LinkState::Disconnected,
            RTCPeerConnectionState::Failed => LinkState::Failed,
            RTCPeerConnectionState::Closed => LinkState::Closed,
            _ => return,
        };
        if *self.state.borrow() == LinkState::Closed {
            return;
        }
        self.state.send_replace(state);
        let _ = self.events.send(WebRtcEvent::State(state));
    }

    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        let label = dc.label().await.unwrap_or_default();
        // The peer's channel-open message carried its priority; this side's sends on the
        // channel are scheduled by the same one.
        let priority = dc
            .priority()
            .await
            .map_or_else(|_| ChannelPriority::default(), ChannelPriority::from_dcep);
        // The engine announces remote channels on open.
        let (channel, pump) = WebRtcChannel::start(
            dc,
            label,
            true,
            Arc::clone(&self.remote_max_message_size),
            Arc::clone(&self.opened),
            self.pacing,
            self.scheduler.join(priority),
        );
        if let Ok(mut pumps) = self.pumps.lock() {
            pumps.push(pump);
        }
        self.opened.send_modify(|n| *n += 1);
        let _ = self.events.send(WebRtcEvent::Channel(channel));
    }
}

#[derive(Default)]
struct Negotiation {
    local_sdp: Option<String>,
    remote_sdp: Option<String>,
    early_candidates: Vec<RTCIceCandidateInit>,
    /// Offerer: when the ICE-restart offer that awaits its answer was sent.
    restart_pending: Option<std::time::Instant>,
    /// Offerer: a restart was asked for while `restart_pending`; one more restart follows
    /// once its answer is applied (any number of such requests make one).
    restart_queued: bool,
}

struct Inner {
    pc: Arc<dyn PeerConnection>,
    role: WebRtcRole,
    config: WebRtcConfig,
    negotiation: Mutex<Negotiation>,
    events: mpsc::UnboundedSender<WebRtcEvent>,
    local_mid: Arc<StdMutex<Option<String>>>,
    state: watch::Receiver<LinkState>,
    state_tx: watch::Sender<LinkState>,
    gathered: watch::Receiver<bool>,
    remote_max_message_size: Arc<AtomicUsize>,
    pumps: Arc<StdMutex<Vec<tokio::task::AbortHandle>>>,
    closed: AtomicBool,
    skipped_ice_urls: Vec<SkippedIceUrl>,
    /// Count of channels that reached the open state on this side.
    opened: Arc<watch::Sender<u64>>,
    /// ICE restarts this side started (offerer) or asked for (answerer).
    ice_restarts: AtomicU32,
    /// Send pacing for this link's channels.
    pacing: Option<PacingSetup>,
    /// This link's channels by priority.
    scheduler: Arc<Scheduler>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(pumps) = self.pumps.lock() {
            for pump in pumps.iter() {
                pump.abort();
            }
        }
        // The engine's driver task holds the connection's shared state, so a connection that is
        // dropped without `close()` would keep its sockets and task forever.
        if !self.closed.swap(true, Ordering::AcqRel) {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let pc = Arc::clone(&self.pc);
                handle.spawn(async move {
                    let _ = pc.close().await;
                });
            }
        }
    }
}

/// One WebRTC peer connection with its signaling state.
///
/// Cheap to clone; the connection closes when [`WebRtcLink::close`] is called or the last
/// clone is dropped.
#[derive(Clone)]
pub struct WebRtcLink {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for WebRtcLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcLink")
            .field("role", &self.inner.role)
            .field("state", &*self.inner.state.borrow())
            .finish()
    }
}

/// A configured ICE URL the engine cannot use, with the reason.
pub type SkippedIceUrl = (String, &'static str);

/// A handle that does not keep the link alive; see [`WebRtcLink::downgrade`].
#[derive(Clone, Debug)]
pub struct WeakWebRtcLink {
    inner: std::sync::Weak<Inner>,
}

impl WeakWebRtcLink {
    /// The link, if it is still alive.
    pub fn upgrade(&self) -> Option<WebRtcLink> {
        self.inner.upgrade().map(|inner| WebRtcLink { inner })
    }
}

fn engine_ice_servers(
    servers: &[IceServer],
    policy: IceTransportPolicy,
) -> Result<(Vec<RTCIceServer>, Vec<SkippedIceUrl>), WebRtcError> {
    let mut usable = Vec::new();
    let mut skipped = Vec::new();
    let mut has_turn = false;
    for server in servers {
        let mut urls = Vec::new();
        for url in &server.urls {
            if let Some(reason) = IceServer::unsupported_reason(url) {
                tracing::warn!(url, reason, "ICE server URL skipped");
                skipped.push((url.clone(), reason));
                continue;
            }
            if server.classify(url)?.is_turn() {
                has_turn = true;
            }
            urls.push(url.clone());
        }
        if !urls.is_empty() {
            usable.push(RTCIceServer {
                urls,
                username: server.username.clone(),
                credential: server.credential.clone(),
            });
        }
    }
    if policy == IceTransportPolicy::Relay && !has_turn {
        return Err(WebRtcError::NoUsableRelay);
    }
    Ok((usable, skipped))
}

fn application_mid(sdp: &str) -> Option<String> {
    let mut in_application = false;
    for line in sdp.lines() {
        if line.starts_with("m=") {
            in_application = line.starts_with("m=application");
        } else if in_application {
            if let Some(mid) = line.trim_end().strip_prefix("a=mid:") {
                return Some(mid.to_owned());
            }
        }
    }
    None
}

/// Minimal syntax check of a candidate line, so malformed input is refused when it arrives
/// even if it has to wait for the remote description.
fn check_candidate(line: &str) -> Result<(), WebRtcError> {
    if line.len() > MAX_CANDIDATE_LEN {
        return Err(WebRtcError::TooLarge {
            what: "candidate",
            size: line.len(),
            limit: MAX_CANDIDATE_LEN,
        });
    }
    let body = line.strip_prefix("candidate:").unwrap_or(line);
    let fields: Vec<&str> = body.split_ascii_whitespace().collect();
    let bad = |why: &str| WebRtcError::MalformedCandidate(format!("{why} in {line:?}"));
    if fields.len() < 8 {
        return Err(bad("fewer than 8 fields"));
    }
    let (component, transport, priority, address, port, typ, kind) = (
        fields[1], fields[2], fields[3], fields[4], fields[5], fields[6], fields[7],
    );
    component
        .parse::<u16>()
        .map_err(|_| bad("component is not a number"))?;
    if !transport.eq_ignore_ascii_case("udp") && !transport.eq_ignore_ascii_case("tcp") {
        return Err(bad("transport is neither udp nor tcp"));
    }
    priority
        .parse::<u32>()
        .map_err(|_| bad("priority is not a 32-bit number"))?;
    if address.is_empty() {
        return Err(bad("empty address"));
    }
    port.parse::<u16>()
        .map_err(|_| bad("port is not a number"))?;
    if typ != "typ" || !matches!(kind, "host" | "srflx" | "prflx" | "relay") {
        return Err(bad("no valid `typ`"));
    }
    Ok(())
}

/// Watches the link state and restarts ICE after a disconnection outlasts the grace period
/// (at once after `Failed`). Holds the link weakly, so it never keeps it alive; every wait is
/// bounded by the policy, and a closed link ends it.
async fn auto_restart(
    link: WeakWebRtcLink,
    mut state: watch::Receiver<LinkState>,
    policy: IceRestartPolicy,
) {
    let Some(mut grace) = policy.after_disconnected else {
        return;
    };
    // The offerer leads restarts; the answerer asks only if the offerer has not acted within
    // twice the grace, so both sides seeing the same outage do not restart twice.
    if link
        .upgrade()
        .is_some_and(|l| l.inner.role == WebRtcRole::Answerer)
    {
        grace = grace.saturating_mul(2);
    }
    let down = |s: &LinkState| matches!(s, LinkState::Disconnected | LinkState::Failed);
    loop {
        let Ok(now) = state
            .wait_for(|s| down(s) || *s == LinkState::Closed)
            .await
            .map(|s| *s)
        else {
            return;
        };
        if now == LinkState::Closed {
            return;
        }
        if now == LinkState::Disconnected {
            // The path often comes back by itself (a brief loss, a Wi-Fi roam).
            let recovered = tokio::time::timeout(
                grace,
                state.wait_for(|s| matches!(s, LinkState::Connected | LinkState::Closed)),
            )
            .await;
            if recovered.is_ok() {
                continue;
            }
        }
        let mut reconnected = false;
        for attempt in 1..=policy.max_attempts {
            let Some(link) = link.upgrade() else { return };
            let _ = link
                .inner
                .events
                .send(WebRtcEvent::IceRestarting { attempt });
            if let Err(err) = link.restart_ice().await {
                tracing::warn!(%err, attempt, "automatic ICE restart");
            }
            drop(link);
            let outcome = tokio::time::timeout(
                policy.attempt_timeout,
                state.wait_for(|s| matches!(s, LinkState::Connected | LinkState::Closed)),
            )
            .await;
            match outcome {
                Ok(Ok(s)) if *s == LinkState::Connected => {
                    reconnected = true;
                    break;
                }
                Ok(_) => return,
                Err(_) => {}
            }
        }
        if !reconnected {
            tracing::warn!(
                attempts = policy.max_attempts,
                "ICE restarts did not reconnect"
            );
            // Give up on this outage: wait for the path to return by itself or the close.
            if state
                .wait_for(|s| matches!(s, LinkState::Connected | LinkState::Closed))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

impl WebRtcLink {
    /// Creates the peer connection and binds its sockets. Nothing is sent until
    /// [`WebRtcLink::start`] (offerer) or the first [`WebRtcLink::handle_signal`] (answerer).
    pub async fn new(
        config: WebRtcConfig,
        role: WebRtcRole,
    ) -> Result<(Self, WebRtcEvents), WebRtcError> {
        let (ice_servers, skipped_ice_urls) =
            engine_ice_servers(&config.ice_servers, config.ice_transport_policy)?;
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (state_tx, state_rx) = watch::channel(LinkState::New);
        let (gathered_tx, gathered_rx) = watch::channel(false);
        let remote_max_message_size = Arc::new(AtomicUsize::new(sdp::DEFAULT_MAX_MESSAGE_SIZE));
        let pumps = Arc::new(StdMutex::new(Vec::new()));
        let local_mid = Arc::new(StdMutex::new(None));
        let opened = Arc::new(watch::channel(0u64).0);

        let tuning = &config.tuning;
        // Host pairs (loopback, LAN) need not wait for candidates that cannot beat them.
        // An ICE restart binds fresh sockets and gathers (and trickles) fresh candidates: after
        // a network change the old sockets may sit on an interface that is gone, and the engine
        // does not signal candidates it keeps across a restart, so the peer would get none.
        let mut settings = SettingEngineBuilder::new()
            .with_host_acceptance_min_wait(Some(Duration::ZERO))
            .with_discard_local_candidates_during_ice_restart(true);
        // Answer as the DTLS server (`setup:passive`), which makes this side the SCTP server:
        // the engine sends the SCTP INIT from the DTLS client only, while aiortc sends it from
        // the ICE-controlling side (the offerer) only, so with the usual `setup:active` answer
        // neither side of a peerlink <-> aiortc link would accept the other's INIT. The offers
        // we send say `setup:active` for the same reason (`sdp::offer_as_active`): the offerer
        // is then DTLS and SCTP client with every peer. Browsers and libdatachannel accept
        // either.
        settings =
            settings.with_answering_dtls_role(rtc::peer_connection::transport::RTCDtlsRole::Server);
        if let Some(credentials) = &config.ice_credentials {
            settings = settings
                .with_ice_credentials(credentials.ufrag().to_owned(), credentials.pwd().to_owned());
        }
        if tuning.ice_check_interval.is_some() || tuning.ice_max_checks.is_some() {
            settings = settings
                .with_ice_connection_attempts(tuning.ice_check_interval, tuning.ice_max_checks);
        }
        let timeouts = config.ice_timeouts;
        if timeouts != Default::default() {
            settings = settings.with_ice_timeouts(
                timeouts.disconnected,
                timeouts.failed,
                timeouts.keepalive,
            );
        }
        let window = match (tuning.sctp_receive_window, tuning.window_from_socket) {
            (Some(window), _) => Some(window),
            (None, false) => None,
            (None, true) => effective_recv_buffer(tuning.socket_recv_buffer).map(window_for_buffer),
        };
        let max_message_size = match window {
            Some(window) => tuning.max_message_size.min(window),
            None => tuning.max_message_size,
        };
        settings = settings.with_sctp_max_message_size(
            rtc::peer_connection::configuration::setting_engine::SctpMaxMessageSize::Bounded(
                max_message_size,
            ),
        );
        if let Some(window) = window {
            settings = settings.with_sctp_max_receive_buffer_size(window);
        }
        settings = settings.with_sctp_congestion_control(match tuning.sctp_congestion_control {
            SctpCongestionControl::Standard => rtc::sctp::CongestionControl::Standard,
            SctpCongestionControl::RateBased => rtc::sctp::CongestionControl::RateBased,
        });
        let rtc_config = RTCConfigurationBuilder::default()
            .with_ice_servers(ice_servers)
            .with_ice_transport_policy(match config.ice_transport_policy {
                IceTransportPolicy::All => RTCIceTransportPolicy::All,
                IceTransportPolicy::Relay => RTCIceTransportPolicy::Relay,
            })
            .build();

        let scheduler = Scheduler::new(tuning.send_buffer_limit);
        let pacing = tuning.send_pacing.map(|pacing| PacingSetup {
            pacing,
            send_buffer_limit: tuning.send_buffer_limit,
        });
        let handler = Handler {
            events: events_tx.clone(),
            trickle: config.trickle,
            connection_id: config.connection_id.clone(),
            local_mid: Arc::clone(&local_mid),
            state: state_tx.clone(),
            gathered: gathered_tx,
            remote_max_message_size: Arc::clone(&remote_max_message_size),
            pumps: Arc::clone(&pumps),
            opened: Arc::clone(&opened),
            pacing,
            scheduler: Arc::clone(&scheduler),
        };
        let mut builder = PeerConnectionBuilder::new()
            .with_configuration(rtc_config)
            .with_setting_engine(settings.build())
            .with_runtime(Arc::new(TunedRuntime::new(
                tuning.socket_recv_buffer,
                tuning.socket_send_buffer,
                config.path_cut.clone(),
            )))
            .with_handler(Arc::new(handler))
            .with_udp_addrs(config.bind_addrs.clone());
        if let Some(limit) = tuning.send_buffer_limit {
            builder = builder.with_data_channel_send_buffer_limit(limit);
        }
        if !config.turn_tls_roots.is_empty() {
            // Check each on its own first, so the error names the certificate.
            for (index, der) in config.turn_tls_roots.iter().enumerate() {
                PeerConnectionBuilder::<std::net::SocketAddr>::new()
                    .with_turn_tls_extra_roots(std::slice::from_ref(der))
                    .map_err(|err| WebRtcError::BadTurnTlsRoot {
                        index,
                        reason: err.to_string(),
                    })?;
            }
            builder = builder
                .with_turn_tls_extra_roots(&config.turn_tls_roots)
                .map_err(WebRtcError::engine)?;
        }
        let pc = builder.build().await.map_err(WebRtcError::engine)?;

        let link = Self {
            inner: Arc::new(Inner {
                pc: Arc::new(pc),
                role,
                config,
                negotiation: Mutex::new(Negotiation::default()),
                events: events_tx,
                local_mid,
                state: state_rx,
                state_tx,
                gathered: gathered_rx,
                remote_max_message_size,
                pumps,
                closed: AtomicBool::new(false),
                skipped_ice_urls,
                opened,
                ice_restarts: AtomicU32::new(0),
                pacing,
                scheduler,
            }),
        };
        let policy = link.inner.config.ice_restart;
        if policy.after_disconnected.is_some() && policy.max_attempts > 0 {
            let watcher = tokio::spawn(auto_restart(
                link.downgrade(),
                link.inner.state.clone(),
                policy,
            ));
            if let Ok(mut pumps) = link.inner.pumps.lock() {
                pumps.push(watcher.abort_handle());
            }
        }
        let events = WebRtcEvents {
            rx: events_rx,
            state: link.inner.state.clone(),
            ended: false,
        };
        Ok((link, events))
    }

    /// A handle for tasks that feed signals into this link: holding a strong [`WebRtcLink`]
    /// in a task that lives as long as the link's event stream would keep the link alive
    /// forever.
    pub fn downgrade(&self) -> WeakWebRtcLink {
        WeakWebRtcLink {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// This link's role.
    pub fn role(&self) -> WebRtcRole {
        self.inner.role
    }

    /// The current connection state.
    pub fn state(&self) -> LinkState {
        *self.inner.state.borrow()
    }

    /// A receiver of the connection state, to wait for changes (`Closed` is the last).
    pub fn state_changes(&self) -> watch::Receiver<LinkState> {
        self.inner.state.clone()
    }

    /// ICE server URLs that were configured but cannot be used by the engine, with the reason.
    pub fn skipped_ice_urls(&self) -> &[SkippedIceUrl] {
        &self.inner.skipped_ice_urls
    }

    /// Waits until the link is connected; fails if it fails or closes first.
    pub async fn connected(&self) -> Result<(), WebRtcError> {
        let mut state = self.inner.state.clone();
        let reached = state
            .wait_for(|s| {
                matches!(
                    s,
                    LinkState::Connected | LinkState::Failed | LinkState::Closed
                )
            })
            .await
            .map(|s| *s);
        match reached {
            Ok(LinkState::Connected) => Ok(()),
            Ok(LinkState::Failed) => Err(WebRtcError::ConnectionLost("failed")),
            _ => Err(WebRtcError::ConnectionLost("closed")),
        }
    }

    /// Creates a data channel. On the offerer, create channels before [`WebRtcLink::start`]
    /// so the offer carries the SCTP section.
    pub async fn create_channel(
        &self,
        label: &str,
        options: ChannelOptions,
    ) -> Result<WebRtcChannel, WebRtcError> {
        self.ensure_open()?;
        let init = RTCDataChannelInit {
            ordered: options.ordered,
            max_packet_life_time: options.max_packet_life_time,
            max_retransmits: options.max_retransmits,
            protocol: options.protocol,
            negotiated: options.negotiated,
            priority: options.priority.dcep_value(),
        };
        let dc = self
            .inner
            .pc
            .create_data_channel(label, Some(init))
            .await
            .map_err(WebRtcError::engine)?;
        let (channel, pump) = WebRtcChannel::start(
            dc,
            label.to_owned(),
            false,
            Arc::clone(&self.inner.remote_max_message_size),
            Arc::clone(&self.inner.opened),
            self.inner.pacing,
            self.inner.scheduler.join(options.priority),
        );
        if let Ok(mut pumps) = self.inner.pumps.lock() {
            pumps.push(pump);
        }
        if self.state() == LinkState::Connected {
            self.kick_until_channel_opens();
        }
        Ok(channel)
    }

    /// Offerer: creates the offer and emits it (at once with trickle, after gathering without).
    pub async fn start(&self) -> Result<(), WebRtcError> {
        self.ensure_open()?;
        if self.inner.role != WebRtcRole::Offerer {
            return Err(WebRtcError::UnexpectedSignal {
                signal: "offer",
                reason: "only the offerer starts",
            });
        }
        let mut negotiation = self.inner.negotiation.lock().await;
        if negotiation.local_sdp.is_some() {
            return Err(WebRtcError::UnexpectedSignal {
                signal: "offer",
                reason: "the offer was already created",
            });
        }
        let offer = self
            .inner
            .pc
            .create_offer(None)
            .await
            .map_err(WebRtcError::engine)?;
        let connection_id = self.inner.config.connection_id.clone();
        self.apply_local(offer, &mut negotiation, |sdp| Signal::Offer {
            sdp,
            connection_id,
            ice_restart: false,
        })
        .await?;
        self.kick_until_channel_opens();
        Ok(())
    }

    /// Sets a local description and emits it as a signal: with trickle, before the engine
    /// starts gathering (so the description always precedes its candidates); without, once
    /// gathering completes, with every candidate inside it.
    async fn apply_local(
        &self,
        desc: RTCSessionDescription,
        negotiation: &mut Negotiation,
        signal: impl FnOnce(String) -> Signal,
    ) -> Result<(), WebRtcError> {
        if let Ok(mut mid) = self.inner.local_mid.lock() {
            *mid = application_mid(&desc.sdp);
        }
        let trickle = self.inner.config.trickle;
        let is_offer = desc.sdp_type == ::webrtc::peer_connection::RTCSdpType::Offer;
        let outgoing = |text: String| {
            if is_offer {
                sdp::offer_as_active(&text)
            } else {
                text
            }
        };
        let mut sdp_text = outgoing(desc.sdp.clone());
        let mut signal = Some(signal);
        if trickle {
            if let Some(make) = signal.take() {
                let _ = self
                    .inner
                    .events
                    .send(WebRtcEvent::Signal(make(sdp_text.clone())));
            }
        }
        self.inner
            .pc
            .set_local_description(desc)
            .await
            .map_err(WebRtcError::engine)?;
        if !trickle {
            let timeout = self.inner.config.gather_timeout;
            let mut gathered = self.inner.gathered.clone();
            let _ = tokio::time::timeout(timeout, gathered.wait_for(|g| *g)).await;
            if let Some(full) = self.inner.pc.local_description().await {
                sdp_text = outgoing(full.sdp);
            }
            if !sdp::has_candidates(&sdp_text) {
                return Err(WebRtcError::GatheringTimeout(timeout));
            }
        }
        negotiation.local_sdp = Some(sdp_text.clone());
        if let Some(make) = signal {
            let _ = self.inner.events.send(WebRtcEvent::Signal(make(sdp_text)));
        }
        Ok(())
    }

    /// Works around the engine's deferred output: packets the engine produces while handling
    /// its own events — the SCTP INIT once DTLS completes, the channel OPEN once SCTP
    /// completes — leave only at the driver's next wake, which on an idle link is its next
    /// timer, about 200 ms later, twice per connection. Poking the driver every millisecond
    /// until a channel opens sends them at once. Bounded in time, and holding only a weak
    /// reference, so it never keeps a link alive.
    fn kick_until_channel_opens(&self) {
        let Some(interval) = self.inner.config.tuning.setup_kick_interval else {
            return;
        };
        let pc = Arc::downgrade(&self.inner.pc);
        let mut opened = self.inner.opened.subscribe();
        let start = *opened.borrow_and_update();
        let mut state = self.inner.state.clone();
        let kicker = tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + KICK_LIMIT;
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while tokio::time::Instant::now() < deadline {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = opened.wait_for(|n| *n > start) => return,
                    _ = state.wait_for(|s| matches!(s, LinkState::Failed | LinkState::Closed)) => return,
                }
                let Some(pc) = pc.upgrade() else { return };
                let configuration = pc.get_configuration().await;
                // Re-applying the same configuration is a no-op whose side effect is a
                // driver wake.
                if pc.set_configuration(configuration).await.is_err() {
                    return;
                }
            }
        });
        if let Ok(mut pumps) = self.inner.pumps.lock() {
            pumps.retain(|p| !p.is_finished());
            pumps.push(kicker.abort_handle());
        }
    }

    fn ensure_open(&self) -> Result<(), WebRtcError> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(WebRtcError::ConnectionLost("closed"))
        } else {
            Ok(())
        }
    }

    /// Parses a JSON signal and applies it.
    pub async fn handle_signal_json(&self, json: &str) -> Result<(), WebRtcError> {
        self.handle_signal(Signal::from_json(json)?).await
    }

    /// Applies a signal from the peer.
    ///
    /// Roles are fixed when the link is created, so an offer reaching the offerer (glare) is
    /// refused with [`WebRtcError::UnexpectedSignal`]; the signaling layer decides who offers.
    pub async fn handle_signal(&self, signal: Signal) -> Result<(), WebRtcError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(WebRtcError::UnexpectedSignal {
                signal: signal.kind(),
                reason: "the link is closed",
            });
        }
        if let (Some(expected), Some(got)) =
            (&self.inner.config.connection_id, signal.connection_id())
        {
            if expected != got {
                return Err(WebRtcError::WrongConnection {
                    expected: expected.clone(),
                    got: got.to_owned(),
                });
            }
        }
        match signal {
            Signal::Offer {
                sdp, ice_restart, ..
            } => self.handle_offer(sdp, ice_restart).await,
            Signal::Answer { sdp, .. } => self.handle_answer(sdp).await,
            Signal::Renegotiate { ice_restart, .. } => {
                if self.inner.role != WebRtcRole::Offerer {
                    return Err(WebRtcError::UnexpectedSignal {
                        signal: "renegotiate",
                        reason: "only the offerer negotiates",
                    });
                }
                // A data-only link has nothing to renegotiate but its ICE session.
                if ice_restart {
                    self.restart_ice().await
                } else {
                    Ok(())
                }
            }
            Signal::Candidate { candidate, .. } => self.add_remote_candidate(candidate).await,
        }
    }

    async fn handle_offer(&self, sdp_text: String, ice_restart: bool) -> Result<(), WebRtcError> {
        if self.inner.role != WebRtcRole::Answerer {
            return Err(WebRtcError::UnexpectedSignal {
                signal: "offer",
                reason: "this side is the offerer (glare: roles are fixed per link)",
            });
        }
        sdp::check_sdp(&sdp_text)?;
        let remote_fp = sdp::sha256_fingerprint(&sdp_text, "remote")?;
        let max = sdp::max_message_size(&sdp_text)?;
        let mut negotiation = self.inner.negotiation.lock().await;
        if negotiation.remote_sdp.is_some() && !ice_restart {
            return Err(WebRtcError::UnexpectedSignal {
                signal: "offer",
                reason: "a second offer without iceRestart",
            });
        }
        if ice_restart {
            if let Some(previous) = &negotiation.remote_sdp {
                // A restart renews ICE only; a new certificate would be a new peer.
                if sdp::sha256_fingerprint(previous, "remote")? != remote_fp {
                    return Err(WebRtcError::UnexpectedSignal {
                        signal: "offer",
                        reason: "an ICE restart may not change the DTLS certificate",
                    });
                }
            }
        }
        let desc = RTCSessionDescription::offer(sdp::for_engine(&sdp_text))
            .map_err(|e| WebRtcError::MalformedSdp(e.to_string()))?;
        self.inner
            .pc
            .set_remote_description(desc)
            .await
            .map_err(|e| WebRtcError::MalformedSdp(e.to_string()))?;
        self.set_remote_max(max);
        negotiation.remote_sdp = Some(sdp_text);
        self.flush_early_candidates(&mut negotiation).await;
        let answer = self
            .inner
            .pc
            .create_answer(None)
            .await
            .map_err(WebRtcError::engine)?;
        let connection_id = self.inner.config.connection_id.clone();
        self.apply_local(answer, &mut negotiation, |sdp| Signal::Answer {
            sdp,
            connection_id,
        })
        .await?;
        if !ice_restart {
            self.kick_until_channel_opens();
        }
        Ok(())
    }

    async fn handle_answer(&self, sdp_text: String) -> Result<(), WebRtcError> {
        if self.inner.role != WebRtcRole::Offerer {
            return Err(WebRtcError::UnexpectedSignal {
                signal: "answer",
                reason: "this side is the answerer",
            });
        }
        sdp::check_sdp(&sdp_text)?;
        sdp::sha256_fingerprint(&sdp_text, "remote")?;
        let max = sdp::max_message_size(&sdp_text)?;
        let mut negotiation = self.inner.negotiation.lock().await;
        if negotiation.local_sdp.is_none() {
            return Err(WebRtcError::UnexpectedSignal {
                signal: "answer",
                reason: "no offer was made",
            });
        }
        if let Some(previous) = &negotiation.remote_sdp {
            if negotiation.restart_pending.is_none() {
                return Err(WebRtcError::UnexpectedSignal {
                    signal: "answer",
                    reason: "the answer was already applied",
                });
            }
            if sdp::sha256_fingerprint(previous, "remote")?
                != sdp::sha256_fingerprint(&sdp_text, "remote")?
            {
                return Err(WebRtcError::UnexpectedSignal {
                    signal: "answer",
                    reason: "an ICE restart may not change the DTLS certificate",
                });
            }
        }
        let desc = RTCSessionDescription::answer(sdp::for_engine(&sdp_text))
            .map_err(|e| WebRtcError::MalformedSdp(e.to_string()))?;
        self.inner
            .pc
            .set_remote_description(desc)
            .await
            .map_err(|e| WebRtcError::MalformedSdp(e.to_string()))?;
        self.set_remote_max(max);
        negotiation.remote_sdp = Some(sdp_text);
        negotiation.restart_pending = None;
        self.flush_early_candidates(&mut negotiation).await;
        if std::mem::take(&mut negotiation.restart_queued) {
            // A restart asked for while this one was under way: the network it was meant for
            // may be newer than the one this restart gathered on.
            self.offer_restart(&mut negotiation).await?;
        }
        Ok(())
    }

    /// Restarts ICE: new ICE credentials, candidates gathered again, connectivity checks on
    /// every new pair — while the DTLS session, the SCTP association, the channels and
    /// whatever runs over them stay as they are. Messages sent meanwhile wait in SCTP and are
    /// retransmitted once a path works again.
    ///
    /// On the offerer this emits an offer with `iceRestart: true`; on the answerer it emits a
    /// `renegotiate` signal with `iceRestart: true` asking the offerer to do so (roles stay
    /// fixed, so two restart offers can never cross). One restart at a time: requests (from
    /// either side) that arrive while a restart offer awaits its answer are honoured by one
    /// more restart, started as soon as that answer is applied — however many of them came
    /// meanwhile — because the pending restart gathered its candidates before they were made
    /// and may miss the network they are about. Once [`IceRestartPolicy::attempt_timeout`] has
    /// passed without an answer, the offer is presumed lost on the signaling path and a
    /// request replaces it with a fresh offer at once.
    pub async fn restart_ice(&self) -> Result<(), WebRtcError> {
        self.restart(false).await
    }

    /// Restarts ICE at once, even while an earlier restart offer awaits its answer: for when
    /// that offer is known to be lost (the signaling connection that carried it was replaced).
    pub(crate) async fn restart_ice_now(&self) -> Result<(), WebRtcError> {
        self.restart(true).await
    }

    async fn restart(&self, force: bool) -> Result<(), WebRtcError> {
        self.ensure_open()?;
        if self.inner.role == WebRtcRole::Answerer {
            self.inner.ice_restarts.fetch_add(1, Ordering::Relaxed);
            let _ = self
                .inner
                .events
                .send(WebRtcEvent::Signal(Signal::Renegotiate {
                    renegotiate: true,
                    ice_restart: true,
                    connection_id: self.inner.config.connection_id.clone(),
                }));
            return Ok(());
        }
        let mut negotiation = self.inner.negotiation.lock().await;
        if negotiation.remote_sdp.is_none() {
            return Err(WebRtcError::UnexpectedSignal {
                signal: "offer",
                reason: "ICE restart before the first negotiation completed",
            });
        }
        if let Some(since) = negotiation.restart_pending {
            if !force && since.elapsed() < self.inner.config.ice_restart.attempt_timeout {
                negotiation.restart_queued = true;
                return Ok(());
            }
        }
        self.offer_restart(&mut negotiation).await
    }

    /// Offerer: emits an ICE-restart offer (which also covers any queued request).
    async fn offer_restart(&self, negotiation: &mut Negotiation) -> Result<(), WebRtcError> {
        negotiation.restart_queued = false;
        let offer = self
            .inner
            .pc
            .create_offer(Some(RTCOfferOptions { ice_restart: true }))
            .await
            .map_err(WebRtcError::engine)?;
        negotiation.restart_pending = Some(std::time::Instant::now());
        self.inner.ice_restarts.fetch_add(1, Ordering::Relaxed);
        let connection_id = self.inner.config.connection_id.clone();
        self.apply_local(offer, negotiation, |sdp| Signal::Offer {
            sdp,
            connection_id,
            ice_restart: true,
        })
        .await
    }

    /// Offerer: whether an ICE restart is under way, that is, its offer awaits the answer (or
    /// a request waits for that answer to be followed by one more restart). Always `false` on
    /// the answerer, whose requests are the offerer's to run.
    pub async fn ice_restart_pending(&self) -> bool {
        let negotiation = self.inner.negotiation.lock().await;
        negotiation.restart_pending.is_some() || negotiation.restart_queued
    }

    /// ICE restarts this side started (offerer) or asked for (answerer), on request or
    /// automatically.
    pub fn ice_restarts(&self) -> u32 {
        self.inner.ice_restarts.load(Ordering::Relaxed)
    }

    /// The path in use: the selected candidate pair (types, protocol, addresses), its
    /// round-trip time and byte counters. `None` before ICE selected a pair and after close.
    pub async fn path(&self) -> Option<PathReport> {
        if self.inner.closed.load(Ordering::Acquire) {
            return None;
        }
        super::path::report(&*self.inner.pc, self.ice_restarts()).await
    }

    fn set_remote_max(&self, max: usize) {
        self.inner
            .remote_max_message_size
            .store(max.min(ENGINE_MAX_MESSAGE_SIZE), Ordering::Relaxed);
    }

    async fn flush_early_candidates(&self, negotiation: &mut Negotiation) {
        for init in std::mem::take(&mut negotiation.early_candidates) {
            if let Err(err) = self.inner.pc.add_ice_candidate(init).await {
                tracing::warn!(%err, "buffered remote candidate refused");
            }
        }
    }

    /// Adds a remote candidate; buffered if the remote description has not arrived yet. An
    /// empty candidate (end of candidates) is accepted and ignored.
    pub async fn add_remote_candidate(&self, candidate: IceCandidate) -> Result<(), WebRtcError> {
        if candidate.candidate.trim().is_empty() {
            return Ok(());
        }
        check_candidate(&candidate.candidate)?;
        let init = RTCIceCandidateInit {
            candidate: candidate.candidate,
            sdp_mid: candidate.sdp_mid,
            sdp_mline_index: candidate.sdp_m_line_index,
            username_fragment: candidate.username_fragment,
            ..Default::default()
        };
        let mut negotiation = self.inner.negotiation.lock().await;
        if negotiation.remote_sdp.is_none() {
            if negotiation.early_candidates.len() >= self.inner.config.max_early_candidates {
                return Err(WebRtcError::TooManyEarlyCandidates(
                    self.inner.config.max_early_candidates,
                ));
            }
            negotiation.early_candidates.push(init);
            return Ok(());
        }
        drop(negotiation);
        self.inner
            .pc
            .add_ice_candidate(init)
            .await
            .map_err(|e| WebRtcError::MalformedCandidate(e.to_string()))
    }

    /// The DTLS fingerprints of both ends, once both descriptions are known.
    pub async fn fingerprints(&self) -> Result<Fingerprints, WebRtcError> {
        let negotiation = self.inner.negotiation.lock().await;
        let (Some(local), Some(remote)) = (&negotiation.local_sdp, &negotiation.remote_sdp) else {
            return Err(WebRtcError::UnexpectedSignal {
                signal: "fingerprints",
                reason: "both descriptions are needed",
            });
        };
        let local = sdp::sha256_fingerprint(local, "local")?;
        let remote = sdp::sha256_fingerprint(remote, "remote")?;
        Ok(match self.inner.role {
            WebRtcRole::Offerer => Fingerprints {
                offerer: local,
                answerer: remote,
            },
            WebRtcRole::Answerer => Fingerprints {
                offerer: remote,
                answerer: local,
            },
        })
    }

    /// The largest message the peer accepts, from its `a=max-message-size` (64 KiB until its
    /// description arrives), clamped to [`ENGINE_MAX_MESSAGE_SIZE`].
    pub fn remote_max_message_size(&self) -> usize {
        self.inner.remote_max_message_size.load(Ordering::Relaxed)
    }

    /// Closes the connection: stops the channel pumps and the engine's driver and releases its
    /// sockets. Idempotent.
    pub async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Err(err) = self.inner.pc.close().await {
            tracing::debug!(%err, "peer connection close");
        }
        if let Ok(mut pumps) = self.inner.pumps.lock() {
            for pump in pumps.drain(..) {
                pump.abort();
            }
        }
        self.inner.state_tx.send_replace(LinkState::Closed);
        let _ = self
            .inner
            .events
            .send(WebRtcEvent::State(LinkState::Closed));
    }
}
