//! The connection manager: one connection per remote device, groups over it, health pings,
//! device messages and draining path changes. A driver only: every policy decision comes from
//! [`peerlink_core::manager`] and [`peerlink_core::device_message`].
//!
//! # Path changes complete calls exactly once
//!
//! When a new verified link to a device replaces the current one (the better-path rule in
//! [`ConnectionTable::offer`]), the old link is *retired*, not closed:
//!
//! 1. Under the manager's lock the new link becomes current; [`ConnectionManager::call`]
//!    picks the current link and counts the call on it under that same lock, so no call
//!    starts on the old link afterwards.
//! 2. Calls already sent on the old link finish there (their replies come back on it).
//! 3. When its own count reaches zero, each side notifies `peerlinkDrained` on the old link.
//! 4. A side closes the old link only when it has drained and has heard the peer's
//!    `peerlinkDrained` — so neither side closes a link the other still waits on — or when
//!    the drain timeout (the call timeout) passes.
//!
//! A call is sent on exactly one link and never re-sent, so it completes exactly once.
//! Details and diagrams: `docs/connections/manager.md`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use peerlink_core::device_message::{
    DEFAULT_TTL, DeliveryStatus, DeviceMessage, DeviceMessageError, DeviceMessageResult,
    RouteDecision, Router, RouterConfig,
};
use peerlink_core::manager::{
    ConnectionTable, DialPlanner, Health, LinkDecision, LinkInfo, ManagerConfig, PathKind,
    PingOutcome,
};
use peerlink_core::{DeviceInfo, Identity};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, broadcast};
use tokio::task::AbortHandle;

use crate::connection::Connection;
use crate::error::{Error, RpcError};
use crate::handler::{Handler, HandlerError, Request, group_rpc_name, handler_fn};
use crate::node::{Node, NodeEvent};
use crate::transport::TransportKind;

mod dialer;
pub(crate) mod hub;
mod upgrade;

pub use dialer::{Candidate, DialFn};
pub use hub::{HUB_RELAY, MEMBER_DOWN};
pub use upgrade::{UpgradeConfig, WEBRTC_CONTEXT};

/// Connection-level RPC: deliver or relay a device message.
pub const SEND_DEVICE_MESSAGE: &str = "sendDeviceMessage";
/// Connection-level RPC: the peer has wired a group.
pub const GROUP_READY: &str = "groupReady";
/// Connection-level RPC: the device ids the peer is connected to.
pub const GET_NETWORK_INFO: &str = "getNetworkInfo";
/// Connection-level notification: the peer has no call left in flight on this link.
pub const DRAINED: &str = "peerlinkDrained";
const EVENT_QUEUE: usize = 256;

/// Errors of the manager.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// No current connection to this device.
    #[error("not connected to device {device_id:?}")]
    NotConnected {
        /// The device.
        device_id: String,
    },
    /// The identity given does not belong to the node.
    #[error("the identity does not belong to the node")]
    IdentityMismatch,
    /// The call failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// A device message could not be built or was refused.
    #[error(transparent)]
    DeviceMessage(#[from] DeviceMessageError),
    /// The node failed.
    #[error(transparent)]
    Node(#[from] Error),
    /// WebRTC upgrades are not enabled ([`ConnectionManager::enable_webrtc_upgrade`]).
    #[error("WebRTC upgrade is not enabled")]
    UpgradeDisabled,
    /// No way to dial this path: the default dialler knows WebSocket URLs and the WebRTC
    /// upgrade; other paths need [`ConnectionManager::set_dialer`].
    #[error("no dialler for the {path} path")]
    NoDialer {
        /// The path.
        path: PathKind,
    },
    /// The upgrade to a direct WebRTC link did not complete; the current path stays.
    #[error("WebRTC upgrade to {device_id:?} failed: {reason}")]
    UpgradeFailed {
        /// The device.
        device_id: String,
        /// What went wrong.
        reason: String,
    },
}

impl ManagerError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotConnected { .. } => "not_connected",
            Self::IdentityMismatch => "identity_mismatch",
            Self::Rpc(e) => e.code(),
            Self::DeviceMessage(_) => "device_message",
            Self::Node(e) => e.code(),
            Self::NoDialer { .. } => "no_dialer",
            Self::UpgradeDisabled => "upgrade_disabled",
            Self::UpgradeFailed { .. } => "upgrade_failed",
        }
    }
}

/// Something that happened to the manager's set of connections.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ManagerEvent {
    /// A device got its (first) connection.
    Added {
        /// Remote device.
        device_id: String,
        /// The connection.
        connection: Connection,
    },
    /// The device's connection moved to another link (the old one drains, then closes).
    PathChanged {
        /// Remote device.
        device_id: String,
        /// The previous link kind.
        from: TransportKind,
        /// The new connection.
        connection: Connection,
    },
    /// The device has no connection any more.
    Removed {
        /// Remote device.
        device_id: String,
        /// The connection that went away.
        connection_id: u64,
    },
    /// The remote device confirmed a shared group (`groupReady` answered).
    GroupReady {
        /// Remote device.
        device_id: String,
        /// The group.
        group_id: String,
    },
    /// No `groupReady` answer after every attempt: the group proceeds without this device.
    GroupReadyFailed {
        /// Remote device.
        device_id: String,
        /// The group.
        group_id: String,
    },
    /// The device's WebRTC link lost its path; the manager restarts ICE first, keeping the
    /// connection. If the path does not come back in time the connection closes
    /// ([`ManagerEvent::Removed`]) and a candidate device is dialled again with backoff.
    IceRestarting {
        /// Remote device.
        device_id: String,
        /// The connection kept across the restart.
        connection_id: u64,
    },
    /// The ICE restart found a path again: the same connection carries on.
    IceRestarted {
        /// Remote device.
        device_id: String,
        /// The connection kept across the restart.
        connection_id: u64,
    },
    /// A large group elected another hub (`None`: the group is mesh-sized again). Members
    /// keep links to the hub and the standby; a host that dials itself dials the new hub.
    HubChanged {
        /// The group.
        group_id: String,
        /// The hub's device id (this device's own id when it is the hub).
        hub: Option<String>,
    },
}

/// Decides which of this device's groups a remote device shares (the host knows its rosters).
pub type SharedGroupsFn = Arc<dyn Fn(&DeviceInfo, &BTreeSet<String>) -> Vec<String> + Send + Sync>;

/// Handles a device message addressed to this device (or a broadcast in one of its groups):
/// returns the answer payload, or a status such as [`DeliveryStatus::NotFound`].
pub type DeviceMessageHandler =
    Arc<dyn Fn(DeviceMessage) -> BoxFuture<'static, Result<Vec<u8>, DeliveryStatus>> + Send + Sync>;

struct Entry {
    connection: Connection,
    in_flight: Arc<AtomicUsize>,
    idle: Arc<Notify>,
    groups: BTreeSet<String>,
    health: Health,
    tasks: Vec<AbortHandle>,
}

struct State {
    table: ConnectionTable,
    entries: BTreeMap<String, Entry>,
    groups: BTreeSet<String>,
    group_handlers: BTreeMap<(String, String), Handler>,
    router: Router,
    /// Connection ids whose peer said it drained them.
    peer_drained: HashMap<u64, Arc<Notify>>,
    peer_drained_flag: HashMap<u64, Arc<AtomicBool>>,
    /// Group rosters given by the host (hub election).
    rosters: BTreeMap<String, BTreeSet<String>>,
    /// Roster members whose link closed and who have not linked again.
    down: BTreeSet<String>,
    /// The last hub elected per group (to report changes).
    hubs: BTreeMap<String, Option<String>>,
}

struct Inner {
    node: Node,
    identity: Identity,
    device_id: String,
    user_id: String,
    config: ManagerConfig,
    drain_timeout: Duration,
    state: Mutex<State>,
    events: broadcast::Sender<ManagerEvent>,
    shared_groups: Mutex<SharedGroupsFn>,
    message_handler: Mutex<Option<DeviceMessageHandler>>,
    next_message: AtomicU64,
    tasks: Mutex<Vec<AbortHandle>>,
    upgrade: Mutex<upgrade::UpgradeState>,
    dialer: Mutex<dialer::DialerState>,
}

/// Keeps one connection per remote device of a [`Node`] and drives the core manager policy.
/// Cheap to clone.
#[derive(Clone)]
pub struct ConnectionManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ConnectionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionManager")
            .field("device_id", &self.inner.device_id)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The manager's path kind for a link kind.
pub fn path_kind(kind: TransportKind) -> PathKind {
    match kind {
        TransportKind::WebSocket => PathKind::Ws,
        TransportKind::WebRtc => PathKind::WebRtc,
        TransportKind::Relay => PathKind::Relay,
        _ => PathKind::Memory,
    }
}

struct InFlight(Arc<AtomicUsize>, Arc<Notify>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.1.notify_waiters();
        }
    }
}

impl ConnectionManager {
    /// Starts managing `node`'s connections. `identity` must be the node's (it signs device
    /// messages); `user_id`/`device_id` are the node's ids.
    pub fn new(
        node: Node,
        identity: Identity,
        user_id: impl Into<String>,
        device_id: impl Into<String>,
        config: ManagerConfig,
    ) -> Result<ConnectionManager, ManagerError> {
        if identity.public_key() != node.public_key() {
            return Err(ManagerError::IdentityMismatch);
        }
        let device_id = device_id.into();
        let user_id = user_id.into();
        let planner = DialPlanner::new(config.clone(), device_id.clone(), user_id.clone());
        let inner = Arc::new(Inner {
            identity,
            user_id: user_id.clone(),
            drain_timeout: Duration::from_secs(30),
            state: Mutex::new(State {
                table: ConnectionTable::new(config.clone()),
                entries: BTreeMap::new(),
                groups: BTreeSet::new(),
                group_handlers: BTreeMap::new(),
                router: Router::new(device_id.clone(), RouterConfig::default()),
                peer_drained: HashMap::new(),
                peer_drained_flag: HashMap::new(),
                rosters: BTreeMap::new(),
                down: BTreeSet::new(),
                hubs: BTreeMap::new(),
            }),
            device_id,
            config,
            events: broadcast::channel(EVENT_QUEUE).0,
            shared_groups: Mutex::new(Arc::new(|_: &DeviceInfo, mine: &BTreeSet<String>| {
                mine.iter().cloned().collect()
            })),
            message_handler: Mutex::new(None),
            next_message: AtomicU64::new(1),
            tasks: Mutex::new(Vec::new()),
            upgrade: Mutex::new(upgrade::UpgradeState::default()),
            dialer: Mutex::new(dialer::DialerState::new(planner)),
            node,
        });
        let manager = ConnectionManager { inner };
        let mut events = manager.inner.node.events();
        let weak = Arc::downgrade(&manager.inner);
        let task = tokio::spawn(async move {
            // Ends when the node's event channel closes or the manager is dropped.
            loop {
                let event = match events.recv().await {
                    Ok(e) => e,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let Some(inner) = weak.upgrade() else { return };
                let manager = ConnectionManager { inner };
                match event {
                    NodeEvent::Connected { connection } => manager.add_connection(connection),
                    NodeEvent::Closed { connection_id, .. } => manager.on_closed(connection_id),
                }
            }
        });
        lock(&manager.inner.tasks).push(task.abort_handle());
        // Connections that finished before the manager subscribed.
        for connection in manager.inner.node.connections() {
            manager.add_connection(connection);
        }
        Ok(manager)
    }

    /// The managed node.
    pub fn node(&self) -> &Node {
        &self.inner.node
    }

    /// This device's id.
    pub fn device_id(&self) -> &str {
        &self.inner.device_id
    }

    /// Subscribes to manager events.
    pub fn events(&self) -> broadcast::Receiver<ManagerEvent> {
        self.inner.events.subscribe()
    }

    /// Sets the host callback deciding which groups a remote device shares. Default: all of
    /// this device's groups.
    pub fn set_shared_groups(&self, f: SharedGroupsFn) {
        *lock(&self.inner.shared_groups) = f;
    }

    /// Sets the handler of device messages addressed to this device.
    pub fn on_device_message(&self, handler: DeviceMessageHandler) {
        *lock(&self.inner.message_handler) = Some(handler);
    }

    /// The current connection to `device_id`.
    pub fn connection(&self, device_id: &str) -> Option<Connection> {
        lock(&self.inner.state)
            .entries
            .get(device_id)
            .map(|e| e.connection.clone())
    }

    /// Devices with a current connection.
    pub fn connected_devices(&self) -> Vec<String> {
        lock(&self.inner.state).entries.keys().cloned().collect()
    }

    /// Dials `url` and adds the connection (the better-path rule may refuse it).
    pub async fn dial(&self, url: &str) -> Result<Connection, ManagerError> {
        let connection = self.inner.node.dial(url).await?;
        self.add_connection(connection.clone());
        Ok(connection)
    }

    /// Adds a verified connection (called for every node connection; idempotent).
    pub fn add_connection(&self, connection: Connection) {
        if !connection.is_open() {
            return;
        }
        let remote = connection.remote().clone();
        if remote.device_id == self.inner.device_id {
            return;
        }
        let shared = self.shared_with(&remote);
        let now = Instant::now();
        let info = LinkInfo {
            device_id: remote.device_id.clone(),
            user_id: remote.user_id.clone(),
            link_id: connection.id(),
            path: path_kind(connection.transport_kind()),
            own_device: remote.user_id == self.inner.user_id,
            shared_groups: shared.len(),
            healthy: true,
            pinned: false,
            since: now,
        };
        let mut st = lock(&self.inner.state);
        let decision = st.table.offer(info);
        let (old, evicted) = match &decision {
            LinkDecision::Reject(peerlink_core::manager::RejectReason::Duplicate) => return,
            LinkDecision::Reject(reason) => {
                drop(st);
                tracing::debug!(device = %remote.device_id, ?reason, "link refused");
                let c = connection.clone();
                let reason = format!("refused: {reason:?}");
                tokio::spawn(async move { c.close(&reason).await });
                return;
            }
            LinkDecision::Replace { .. } => (st.entries.remove(&remote.device_id), None),
            LinkDecision::Evict { device_id, .. } => (None, st.entries.remove(device_id)),
            _ => (None, None),
        };
        let drained = Arc::new(Notify::new());
        let drained_flag = Arc::new(AtomicBool::new(false));
        st.peer_drained
            .insert(connection.id(), Arc::clone(&drained));
        st.peer_drained_flag
            .insert(connection.id(), Arc::clone(&drained_flag));
        self.register_rpcs(&connection, &shared, &st);
        st.router
            .set_neighbour(&remote.device_id, shared.iter().cloned());
        let health = Health::new(&self.inner.config, now);
        st.entries.insert(
            remote.device_id.clone(),
            Entry {
                connection: connection.clone(),
                in_flight: Arc::new(AtomicUsize::new(0)),
                idle: Arc::new(Notify::new()),
                groups: shared.iter().cloned().collect(),
                health,
                tasks: Vec::new(),
            },
        );
        drop(st);
        let health_task = tokio::spawn(
            self.clone()
                .health_loop(remote.device_id.clone(), connection.clone()),
        );
        if let Some(e) = lock(&self.inner.state).entries.get_mut(&remote.device_id) {
            e.tasks.push(health_task.abort_handle());
        } else {
            health_task.abort();
        }
        if let Some(victim) = evicted {
            self.dial_evicted(&victim.connection.remote().device_id);
            self.retire(victim, "evicted");
        }
        self.dial_linked(&remote.device_id);
        let event = match old {
            Some(old) => {
                let from = old.connection.transport_kind();
                self.retire(old, "replaced by a better path");
                ManagerEvent::PathChanged {
                    device_id: remote.device_id.clone(),
                    from,
                    connection: connection.clone(),
                }
            }
            None => ManagerEvent::Added {
                device_id: remote.device_id.clone(),
                connection: connection.clone(),
            },
        };
        let _ = self.inner.events.send(event);
        self.hub_member_linked(&remote.device_id);
        // A link on a path ranking below WebRTC is upgraded; the smaller device id starts,
        // so the two sides do not both offer.
        if self.inner.device_id.as_str() < remote.device_id.as_str()
            && self.webrtc_preferred_over(connection.transport_kind())
        {
            self.maybe_upgrade(&remote.device_id);
        }
        for group in shared {
            tokio::spawn(self.clone().group_ready(
                remote.device_id.clone(),
                connection.clone(),
                group,
            ));
        }
    }

    fn shared_with(&self, remote: &DeviceInfo) -> Vec<String> {
        let mine = lock(&self.inner.state).groups.clone();
        let f = Arc::clone(&*lock(&self.inner.shared_groups));
        f(remote, &mine)
            .into_iter()
            .filter(|g| mine.contains(g))
            .collect()
    }

    fn register_rpcs(&self, connection: &Connection, shared: &[String], st: &State) {
        let weak = Arc::downgrade(&self.inner);
        connection.expose(
            SEND_DEVICE_MESSAGE,
            handler_fn(move |req: Request| {
                let weak = weak.clone();
                async move {
                    let inner = weak
                        .upgrade()
                        .ok_or_else(|| HandlerError::new("unavailable", "manager gone"))?;
                    let manager = ConnectionManager { inner };
                    let message = DeviceMessage::from_bytes(&req.body)
                        .map_err(|e| HandlerError::new("bad_request", e.to_string()))?;
                    let from = req.connection.remote().device_id.clone();
                    let result = manager.handle_device_message(message, Some(from)).await;
                    rmp_serde::to_vec_named(&result)
                        .map(Bytes::from)
                        .map_err(|e| HandlerError::new("encode", e.to_string()))
                }
            }),
        );
        let weak = Arc::downgrade(&self.inner);
        connection.expose(
            GROUP_READY,
            handler_fn(move |req: Request| {
                let weak = weak.clone();
                async move {
                    let group: String = req.args()?;
                    let inner = weak
                        .upgrade()
                        .ok_or_else(|| HandlerError::new("unavailable", "manager gone"))?;
                    let device = req.connection.remote().device_id.clone();
                    let st = lock(&inner.state);
                    let ready = st
                        .entries
                        .get(&device)
                        .is_some_and(|e| e.groups.contains(&group));
                    if ready {
                        Ok(Bytes::from(rmp_serde::to_vec(&true).unwrap_or_default()))
                    } else {
                        Err(HandlerError::new("not_ready", "group not wired yet"))
                    }
                }
            }),
        );
        let weak = Arc::downgrade(&self.inner);
        connection.expose(
            GET_NETWORK_INFO,
            handler_fn(move |_req: Request| {
                let weak = weak.clone();
                async move {
                    let inner = weak
                        .upgrade()
                        .ok_or_else(|| HandlerError::new("unavailable", "manager gone"))?;
                    let devices: Vec<String> = lock(&inner.state).entries.keys().cloned().collect();
                    rmp_serde::to_vec_named(&devices)
                        .map(Bytes::from)
                        .map_err(|e| HandlerError::new("encode", e.to_string()))
                }
            }),
        );
        connection.expose(
            HUB_RELAY,
            self.manager_handler(|m, req| async move { m.on_hub_relay(req).await }),
        );
        connection.expose(
            MEMBER_DOWN,
            self.manager_handler(|m, req| async move { m.on_member_down(req).await }),
        );
        let weak = Arc::downgrade(&self.inner);
        connection.expose(
            DRAINED,
            handler_fn(move |req: Request| {
                let weak = weak.clone();
                async move {
                    if let Some(inner) = weak.upgrade() {
                        let st = lock(&inner.state);
                        let id = req.connection.id();
                        if let Some(flag) = st.peer_drained_flag.get(&id) {
                            flag.store(true, Ordering::Release);
                        }
                        if let Some(n) = st.peer_drained.get(&id) {
                            n.notify_waiters();
                        }
                    }
                    Ok(Bytes::new())
                }
            }),
        );
        for ((name, group), handler) in &st.group_handlers {
            if shared.contains(group) {
                connection.expose(group_rpc_name(name, group), Arc::clone(handler));
            }
        }
    }

    /// A connection handler running `f` on this manager, held weakly: once the manager is
    /// gone the handler answers `unavailable`.
    fn manager_handler<F, Fut>(&self, f: F) -> Handler
    where
        F: Fn(ConnectionManager, Request) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Bytes, HandlerError>> + Send + 'static,
    {
        let weak = Arc::downgrade(&self.inner);
        let f = Arc::new(f);
        handler_fn(move |req: Request| {
            let (weak, f) = (weak.clone(), Arc::clone(&f));
            async move {
                let inner = weak
                    .upgrade()
                    .ok_or_else(|| HandlerError::new("unavailable", "manager gone"))?;
                f(ConnectionManager { inner }, req).await
            }
        })
    }

    /// Retires a link that is no longer current: waits for its calls, agrees with the peer,
    /// then closes it (see the module docs).
    fn retire(&self, entry: Entry, why: &'static str) {
        for t in &entry.tasks {
            t.abort();
        }
        let (drained, flag) = {
            let st = lock(&self.inner.state);
            (
                st.peer_drained.get(&entry.connection.id()).cloned(),
                st.peer_drained_flag.get(&entry.connection.id()).cloned(),
            )
        };
        let timeout = self.inner.drain_timeout;
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            // Our calls on this link finish first.
            loop {
                let idle = entry.idle.notified();
                if entry.in_flight.load(Ordering::Acquire) == 0 {
                    break;
                }
                if tokio::time::timeout_at(deadline, idle).await.is_err() {
                    break;
                }
            }
            let _ = entry.connection.notify(DRAINED, &()).await;
            // Then the peer's.
            if let (Some(drained), Some(flag)) = (drained, flag) {
                loop {
                    let wait = drained.notified();
                    if flag.load(Ordering::Acquire) || !entry.connection.is_open() {
                        break;
                    }
                    if tokio::time::timeout_at(deadline, wait).await.is_err() {
                        break;
                    }
                }
            }
            entry.connection.close(why).await;
        });
    }

    fn on_closed(&self, connection_id: u64) {
        let removed = {
            let mut st = lock(&self.inner.state);
            st.peer_drained.remove(&connection_id);
            st.peer_drained_flag.remove(&connection_id);
            let device = st
                .entries
                .iter()
                .find(|(_, e)| e.connection.id() == connection_id)
                .map(|(d, _)| d.clone());
            match device {
                Some(device) if st.table.remove(&device, connection_id) => {
                    let entry = st.entries.remove(&device);
                    st.router.remove_neighbour(&device);
                    entry.map(|e| (device, e))
                }
                _ => None,
            }
        };
        if let Some((device_id, entry)) = removed {
            for t in entry.tasks {
                t.abort();
            }
            let _ = self.inner.events.send(ManagerEvent::Removed {
                device_id: device_id.clone(),
                connection_id,
            });
            self.hub_member_lost(&device_id);
            self.dial_lost(&device_id);
        }
    }

    async fn health_loop(self, device_id: String, connection: Connection) {
        let interval = self.inner.config.ping_interval;
        let timeout = self.inner.config.ping_timeout;
        // Runs until the entry's tasks are aborted (link removed or replaced).
        loop {
            tokio::time::sleep(interval).await;
            let due = {
                let mut st = lock(&self.inner.state);
                match st.entries.get_mut(&device_id) {
                    Some(e) if e.connection == connection => e.health.poll_ping(Instant::now()),
                    _ => return,
                }
            };
            if !due {
                continue;
            }
            let outcome = match tokio::time::timeout(timeout, connection.ping()).await {
                Ok(Ok(rtt)) => PingOutcome::Answered(rtt),
                _ => PingOutcome::Missed,
            };
            let drop_it = {
                let mut st = lock(&self.inner.state);
                let drop_it = match st.entries.get_mut(&device_id) {
                    Some(e) if e.connection == connection => e.health.record(outcome),
                    _ => return,
                };
                let healthy = matches!(outcome, PingOutcome::Answered(_));
                st.table.set_healthy(&device_id, healthy);
                drop_it
            };
            if drop_it {
                connection.close("missed pings").await;
                return;
            }
            // Refresh the 2-hop network cache for device-message routing.
            if let Ok(Ok(reach)) = tokio::time::timeout(
                timeout,
                connection.call::<_, Vec<String>>(GET_NETWORK_INFO, &()),
            )
            .await
            {
                lock(&self.inner.state).router.set_reach(&device_id, reach);
            }
        }
    }

    /// Health of the current connection to `device_id`: mean latency, error rate, misses.
    pub fn health(&self, device_id: &str) -> Option<(Option<Duration>, f64, u32)> {
        lock(&self.inner.state).entries.get(device_id).map(|e| {
            (
                e.health.mean_latency(),
                e.health.error_rate(),
                e.health.missed(),
            )
        })
    }

    /// Asks every neighbour for its connections now (normally done after each ping).
    pub async fn refresh_network_info(&self) {
        let conns: Vec<(String, Connection)> = lock(&self.inner.state)
            .entries
            .iter()
            .map(|(d, e)| (d.clone(), e.connection.clone()))
            .collect();
        for (device, c) in conns {
            if let Ok(reach) = c.call::<_, Vec<String>>(GET_NETWORK_INFO, &()).await {
                lock(&self.inner.state).router.set_reach(&device, reach);
            }
        }
    }

    async fn group_ready(self, device_id: String, connection: Connection, group: String) {
        let attempts = self.inner.config.group_ready_attempts.max(1);
        let timeout = self.inner.config.group_ready_timeout;
        for _ in 0..attempts {
            let started = tokio::time::Instant::now();
            let answer =
                tokio::time::timeout(timeout, connection.call::<_, bool>(GROUP_READY, &group))
                    .await;
            if let Ok(Ok(true)) = answer {
                let _ = self.inner.events.send(ManagerEvent::GroupReady {
                    device_id,
                    group_id: group,
                });
                return;
            }
            if !connection.is_open() {
                return;
            }
            // A quick refusal (peer not wired yet) waits out the rest of the attempt.
            tokio::time::sleep_until(started + timeout).await;
        }
        let _ = self.inner.events.send(ManagerEvent::GroupReadyFailed {
            device_id,
            group_id: group,
        });
    }

    /// Joins `group_id`: connections whose device shares it get the group's handlers and a
    /// `groupReady` exchange.
    pub fn add_group(&self, group_id: &str) {
        lock(&self.inner.state).groups.insert(group_id.to_owned());
        let conns: Vec<Connection> = lock(&self.inner.state)
            .entries
            .values()
            .map(|e| e.connection.clone())
            .collect();
        for c in conns {
            let remote = c.remote().clone();
            if !self.shared_with(&remote).iter().any(|g| g == group_id) {
                continue;
            }
            let handlers: Vec<(String, Handler)> = {
                let mut st = lock(&self.inner.state);
                if let Some(e) = st.entries.get_mut(&remote.device_id) {
                    e.groups.insert(group_id.to_owned());
                }
                let groups: Vec<String> = st
                    .entries
                    .get(&remote.device_id)
                    .map(|e| e.groups.iter().cloned().collect())
                    .unwrap_or_default();
                st.router.set_neighbour(&remote.device_id, groups);
                st.group_handlers
                    .iter()
                    .filter(|((_, g), _)| g == group_id)
                    .map(|((n, _), h)| (n.clone(), Arc::clone(h)))
                    .collect()
            };
            for (name, h) in handlers {
                c.expose(group_rpc_name(&name, group_id), h);
            }
            tokio::spawn(self.clone().group_ready(
                remote.device_id.clone(),
                c,
                group_id.to_owned(),
            ));
        }
    }

    /// Leaves `group_id`: its handlers are removed from every connection.
    pub fn remove_group(&self, group_id: &str) {
        let (names, conns) = {
            let mut st = lock(&self.inner.state);
            st.groups.remove(group_id);
            let names: Vec<String> = st
                .group_handlers
                .keys()
                .filter(|(_, g)| g == group_id)
                .map(|(n, _)| n.clone())
                .collect();
            st.group_handlers.retain(|(_, g), _| g != group_id);
            let mut conns = Vec::new();
            let devices: Vec<String> = st.entries.keys().cloned().collect();
            for d in devices {
                if let Some(e) = st.entries.get_mut(&d) {
                    e.groups.remove(group_id);
                    conns.push(e.connection.clone());
                    let groups: Vec<String> = e.groups.iter().cloned().collect();
                    st.router.set_neighbour(&d, groups);
                }
            }
            (names, conns)
        };
        for c in conns {
            for n in &names {
                c.unexpose(&group_rpc_name(n, group_id));
            }
        }
    }

    /// Registers `handler` as `name_<groupId>` on every connection sharing the group, now and
    /// later.
    pub fn expose_group(&self, group_id: &str, name: &str, handler: Handler) {
        let conns: Vec<Connection> = {
            let mut st = lock(&self.inner.state);
            st.group_handlers
                .insert((name.to_owned(), group_id.to_owned()), Arc::clone(&handler));
            st.entries
                .values()
                .filter(|e| e.groups.contains(group_id))
                .map(|e| e.connection.clone())
                .collect()
        };
        for c in conns {
            c.expose(group_rpc_name(name, group_id), Arc::clone(&handler));
        }
    }

    /// Calls `name` on the device's current connection. The call stays on that link even if
    /// the path changes meanwhile (the old link drains), so it completes exactly once.
    pub async fn call<A, R>(&self, device_id: &str, name: &str, args: &A) -> Result<R, ManagerError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let (connection, _guard) = self.current(device_id)?;
        Ok(connection.call(name, args).await?)
    }

    /// [`ConnectionManager::call`] with raw bytes.
    pub async fn call_raw(
        &self,
        device_id: &str,
        name: &str,
        body: Bytes,
    ) -> Result<Bytes, ManagerError> {
        let (connection, _guard) = self.current(device_id)?;
        Ok(connection.call_raw(name, body, Default::default()).await?)
    }

    /// The current connection, with the call counted on it (under the lock a path change
    /// takes, so the call never starts on a retired link).
    fn current(&self, device_id: &str) -> Result<(Connection, InFlight), ManagerError> {
        let st = lock(&self.inner.state);
        let e = st
            .entries
            .get(device_id)
            .ok_or_else(|| ManagerError::NotConnected {
                device_id: device_id.to_owned(),
            })?;
        e.in_flight.fetch_add(1, Ordering::AcqRel);
        Ok((
            e.connection.clone(),
            InFlight(Arc::clone(&e.in_flight), Arc::clone(&e.idle)),
        ))
    }

    /// Calls `name` on every current connection at once; one result per device.
    pub async fn broadcast<A, R>(
        &self,
        name: &str,
        args: &A,
    ) -> Vec<(String, Result<R, ManagerError>)>
    where
        A: Serialize + ?Sized + Sync,
        R: DeserializeOwned,
    {
        let devices = self.connected_devices();
        let calls = devices.iter().map(|d| self.call::<A, R>(d, name, args));
        let results = futures_util::future::join_all(calls).await;
        devices.into_iter().zip(results).collect()
    }

    /// Sends a signed device message to `to_device_id` (empty: every device of the group
    /// `data_context_id`) with the default ttl, relayed through other devices as needed.
    pub async fn send_device_message(
        &self,
        to_device_id: &str,
        data_context_id: &str,
        payload: Vec<u8>,
    ) -> Result<DeviceMessageResult, ManagerError> {
        self.send_device_message_ttl(to_device_id, data_context_id, payload, DEFAULT_TTL)
            .await
    }

    /// [`ConnectionManager::send_device_message`] with an explicit ttl.
    pub async fn send_device_message_ttl(
        &self,
        to_device_id: &str,
        data_context_id: &str,
        payload: Vec<u8>,
        ttl: u8,
    ) -> Result<DeviceMessageResult, ManagerError> {
        let n = self.inner.next_message.fetch_add(1, Ordering::Relaxed);
        let nonce: u64 = rand::random();
        let id = format!("{}-{n}-{nonce:016x}", self.inner.device_id);
        let message = DeviceMessage::new_signed(
            &self.inner.identity,
            id,
            self.inner.device_id.clone(),
            to_device_id,
            data_context_id,
            ttl,
            payload,
        )?;
        let result = self.handle_device_message(message, None).await;
        // A device reached only through others is a candidate for a direct link.
        if result.status == DeliveryStatus::Delivered
            && data_context_id != WEBRTC_CONTEXT
            && !to_device_id.is_empty()
            && self.connection(to_device_id).is_none()
        {
            self.maybe_upgrade(to_device_id);
        }
        Ok(result)
    }

    fn handle_device_message(
        &self,
        message: DeviceMessage,
        from: Option<String>,
    ) -> BoxFuture<'static, DeviceMessageResult> {
        let this = self.clone();
        Box::pin(async move {
            let answer = |status, hops: Vec<String>| DeviceMessageResult {
                status,
                hops,
                payload: Vec::new(),
            };
            let me = this.inner.device_id.clone();
            let decision = {
                let mut st = lock(&this.inner.state);
                let expected = st
                    .entries
                    .get(&message.from_device_id)
                    .map(|e| e.connection.remote().public_key);
                if message.verify(expected.as_ref()).is_err() {
                    return answer(DeliveryStatus::Rejected, message.hops.clone());
                }
                st.router.route(&message, from.as_deref(), Instant::now())
            };
            let outgoing = if from.is_some() {
                message.forwarded_by(&me)
            } else {
                message.clone()
            };
            match decision {
                RouteDecision::Deliver { forward } => {
                    let mut hops = message.hops.clone();
                    hops.push(me.clone());
                    if !forward.is_empty() {
                        let t = this.clone();
                        let out = outgoing.clone();
                        tokio::spawn(async move {
                            for n in forward {
                                let _ = t.forward_to(&n, &out).await;
                            }
                        });
                    }
                    if message.data_context_id == WEBRTC_CONTEXT && !message.is_broadcast() {
                        return match this.on_webrtc_signal(&message) {
                            Ok(payload) => DeviceMessageResult {
                                status: DeliveryStatus::Delivered,
                                hops,
                                payload,
                            },
                            Err(status) => answer(status, hops),
                        };
                    }
                    let handler = lock(&this.inner.message_handler).clone();
                    match handler {
                        Some(h) => match h(message).await {
                            Ok(payload) => DeviceMessageResult {
                                status: DeliveryStatus::Delivered,
                                hops,
                                payload,
                            },
                            Err(status) => answer(status, hops),
                        },
                        None => answer(DeliveryStatus::NotFound, hops),
                    }
                }
                RouteDecision::Forward { to } => {
                    if message.is_broadcast() {
                        let mut reached = Vec::new();
                        for n in &to {
                            if let Some(r) = this.forward_to(n, &outgoing).await {
                                if r.status == DeliveryStatus::Delivered {
                                    reached = r.hops;
                                }
                            }
                        }
                        return if reached.is_empty() {
                            answer(DeliveryStatus::NotFound, message.hops)
                        } else {
                            answer(DeliveryStatus::Delivered, reached)
                        };
                    }
                    let mut last = answer(DeliveryStatus::NotFound, message.hops.clone());
                    for n in &to {
                        if let Some(r) = this.forward_to(n, &outgoing).await {
                            if r.status == DeliveryStatus::Delivered {
                                return r;
                            }
                            if r.status != DeliveryStatus::Rejected {
                                last = r;
                            }
                        }
                    }
                    last
                }
                RouteDecision::Answer(status) => answer(status, message.hops),
                _ => answer(DeliveryStatus::Rejected, message.hops),
            }
        })
    }

    async fn forward_to(
        &self,
        device: &str,
        message: &DeviceMessage,
    ) -> Option<DeviceMessageResult> {
        let c = self.connection(device)?;
        let reply = c
            .call_raw(
                SEND_DEVICE_MESSAGE,
                Bytes::from(message.to_bytes()),
                Default::default(),
            )
            .await;
        match reply {
            Ok(bytes) => rmp_serde::from_slice(&bytes).ok(),
            Err(_) => Some(DeviceMessageResult {
                status: DeliveryStatus::Unavailable,
                hops: message.hops.clone(),
                payload: Vec::new(),
            }),
        }
    }

    /// Stops the manager's tasks (connections stay open; close the node to end them).
    pub fn shutdown(&self) {
        for t in lock(&self.inner.tasks).drain(..) {
            t.abort();
        }
        let mut st = lock(&self.inner.state);
        for e in st.entries.values_mut() {
            for t in e.tasks.drain(..) {
                t.abort();
            }
        }
    }
}
