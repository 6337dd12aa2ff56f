//! Dialling driven by the manager: the host hands over the devices it could reach
//! ([`Candidate`]s, from signaling rooms, its rosters or known addresses); the core
//! [`DialPlanner`] decides whom to dial and over which path, and lost links are dialled again
//! after the core [`Backoff`] (exponential with jitter) until they come back.
//!
//! - A link that closes for a device that is a candidate holds it back for the next backoff
//!   delay, then dials it again; a failed re-dial waits the next (longer) delay; the backoff
//!   starts over once the device is linked again (by either side).
//! - A first dial that fails waits the retry cooldown, as the planner rules.
//! - Each dial tries the candidate's paths best first (the configured path preference) and
//!   stops at the first that links.
//!
//! The driver sleeps until the planner's next due instant or a change (a candidate, a link
//! added or lost), on the tokio clock, so a test with a paused clock runs it virtually.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use peerlink_core::manager::{Backoff, DeviceStatus, DialPlanner, PathKind, TrackedDevice};
use tokio::sync::Notify;

use super::{ConnectionManager, ManagerError, lock};
use crate::connection::Connection;

/// Longest time one dial over one path may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(20);

/// A device the manager may dial, and how it can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Candidate {
    /// Its device id.
    pub device_id: String,
    /// Its user id (own devices are dialled first).
    pub user_id: String,
    /// The groups it shares with this device.
    pub groups: Vec<String>,
    /// The paths it can be reached by, each with its address: a `ws://` or `wss://` URL for
    /// [`PathKind::Ws`] / [`PathKind::Wss`]; for [`PathKind::WebRtc`] and [`PathKind::Relay`]
    /// whatever the dial function needs (empty for the built-in WebRTC upgrade).
    pub addresses: Vec<(PathKind, String)>,
}

impl Candidate {
    /// A candidate of `user_id` in `groups`, reachable at `addresses`.
    pub fn new(
        device_id: impl Into<String>,
        user_id: impl Into<String>,
        groups: impl IntoIterator<Item = String>,
        addresses: impl IntoIterator<Item = (PathKind, String)>,
    ) -> Self {
        Self {
            device_id: device_id.into(),
            user_id: user_id.into(),
            groups: groups.into_iter().collect(),
            addresses: addresses.into_iter().collect(),
        }
    }
}

/// Opens a link to a candidate over one path. The default dials WebSocket URLs with the node
/// and WebRTC through the upgrade over device messages; a host with a signaling client or a
/// relay sets its own ([`ConnectionManager::set_dialer`]).
pub type DialFn = Arc<
    dyn Fn(Candidate, PathKind, String) -> BoxFuture<'static, Result<Connection, ManagerError>>
        + Send
        + Sync,
>;

pub(super) struct DialerState {
    planner: DialPlanner,
    candidates: BTreeMap<String, Candidate>,
    backoff: HashMap<String, Backoff>,
    dial_fn: Option<DialFn>,
    wake: Arc<Notify>,
    running: bool,
    /// Dial attempts started, per device (for hosts and tests).
    attempts: HashMap<String, u32>,
}

impl DialerState {
    pub(super) fn new(planner: DialPlanner) -> Self {
        Self {
            planner,
            candidates: BTreeMap::new(),
            backoff: HashMap::new(),
            dial_fn: None,
            wake: Arc::new(Notify::new()),
            running: false,
            attempts: HashMap::new(),
        }
    }
}

/// The tokio clock as a `std` instant: the planner's clock, virtual under a paused runtime.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl ConnectionManager {
    /// Replaces the devices the manager dials on its own. Devices no longer listed are not
    /// dialled again (their links stay). Starts the dial driver.
    pub fn set_candidates(&self, candidates: impl IntoIterator<Item = Candidate>) {
        let fresh: BTreeMap<String, Candidate> = candidates
            .into_iter()
            .filter(|c| c.device_id != self.inner.device_id)
            .map(|c| (c.device_id.clone(), c))
            .collect();
        {
            let mut st = lock(&self.inner.dialer);
            let gone: Vec<String> = st
                .candidates
                .keys()
                .filter(|d| !fresh.contains_key(*d))
                .cloned()
                .collect();
            for d in gone {
                st.planner.remove(&d);
                st.candidates.remove(&d);
                st.backoff.remove(&d);
            }
            for c in fresh.into_values() {
                st.planner.upsert(TrackedDevice::new(
                    c.device_id.clone(),
                    c.user_id.clone(),
                    c.groups.iter().cloned(),
                    c.addresses.iter().map(|(k, _)| *k),
                ));
                st.candidates.insert(c.device_id.clone(), c);
            }
            // Devices already linked count as connected, so losing them means a reconnect.
            let linked: Vec<String> = lock(&self.inner.state).entries.keys().cloned().collect();
            for d in linked {
                if st.candidates.contains_key(&d) {
                    st.planner.connected(&d);
                }
            }
        }
        self.start_dialing();
    }

    /// Adds or updates one candidate (see [`ConnectionManager::set_candidates`]).
    pub fn add_candidate(&self, candidate: Candidate) {
        let mut all: Vec<Candidate> = lock(&self.inner.dialer)
            .candidates
            .values()
            .filter(|c| c.device_id != candidate.device_id)
            .cloned()
            .collect();
        all.push(candidate);
        self.set_candidates(all);
    }

    /// Stops dialling `device_id` on its own (its link, if any, stays).
    pub fn remove_candidate(&self, device_id: &str) {
        let all: Vec<Candidate> = lock(&self.inner.dialer)
            .candidates
            .values()
            .filter(|c| c.device_id != device_id)
            .cloned()
            .collect();
        self.set_candidates(all);
    }

    /// Sets how a candidate is dialled over one path (see [`DialFn`]).
    pub fn set_dialer(&self, dial: DialFn) {
        lock(&self.inner.dialer).dial_fn = Some(dial);
    }

    /// Dial attempts the driver has started to `device_id` so far.
    pub fn dial_attempts(&self, device_id: &str) -> u32 {
        lock(&self.inner.dialer)
            .attempts
            .get(device_id)
            .copied()
            .unwrap_or(0)
    }

    /// The planner's view of a candidate (status, failures, next retry).
    pub fn dial_status(&self, device_id: &str) -> Option<TrackedDevice> {
        lock(&self.inner.dialer).planner.device(device_id).cloned()
    }

    fn start_dialing(&self) {
        let wake = {
            let mut st = lock(&self.inner.dialer);
            if st.running {
                st.wake.notify_one();
                return;
            }
            st.running = true;
            Arc::clone(&st.wake)
        };
        let weak = Arc::downgrade(&self.inner);
        let task = tokio::spawn(async move {
            // Ends when the manager is dropped or shut down.
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let manager = ConnectionManager { inner };
                let due = manager.plan_dials();
                drop(manager);
                match due {
                    Some(at) => {
                        let at = tokio::time::Instant::from_std(at);
                        tokio::select! {
                            _ = tokio::time::sleep_until(at) => {}
                            _ = wake.notified() => {}
                        }
                    }
                    None => wake.notified().await,
                }
            }
        });
        lock(&self.inner.tasks).push(task.abort_handle());
    }

    /// Starts the dials the planner wants now; returns when to plan again.
    fn plan_dials(&self) -> Option<Instant> {
        let connected: BTreeSet<String> = lock(&self.inner.state).entries.keys().cloned().collect();
        let at = now();
        let (requests, due) = {
            let mut st = lock(&self.inner.dialer);
            let requests = st.planner.plan(at, &connected);
            let mut dials = Vec::new();
            for r in requests {
                *st.attempts.entry(r.device_id.clone()).or_default() += 1;
                if let Some(c) = st.candidates.get(&r.device_id) {
                    dials.push((c.clone(), r.path));
                }
            }
            (dials, st.planner.next_due(at))
        };
        for (candidate, first) in requests {
            tokio::spawn(self.clone().dial_candidate(candidate, first));
        }
        due
    }

    async fn dial_candidate(self, candidate: Candidate, first: PathKind) {
        let config = &self.inner.config;
        let mut paths = candidate.addresses.clone();
        paths.sort_by_key(|(k, _)| (*k != first, config.path_rank(*k)));
        let dial_fn = lock(&self.inner.dialer).dial_fn.clone();
        let mut linked = None;
        for (kind, address) in paths {
            let attempt = match &dial_fn {
                Some(f) => f(candidate.clone(), kind, address),
                None => Box::pin(self.clone().default_dial(candidate.clone(), kind, address)),
            };
            match tokio::time::timeout(DIAL_TIMEOUT, attempt).await {
                Ok(Ok(c)) if c.remote().device_id == candidate.device_id => {
                    linked = Some(c);
                    break;
                }
                Ok(Ok(c)) => {
                    tracing::debug!(device = %candidate.device_id, "dial reached another device");
                    c.close("not the device dialled").await;
                }
                Ok(Err(e)) => {
                    tracing::debug!(device = %candidate.device_id, path = %kind, error = %e, "dial failed");
                }
                Err(_) => {
                    tracing::debug!(device = %candidate.device_id, path = %kind, "dial timed out")
                }
            }
        }
        match linked {
            // The node's Connected event adds it too; adding twice is a no-op.
            Some(c) => self.add_connection(c),
            None => self.dial_failed(&candidate.device_id),
        }
        self.wake_dialer();
    }

    async fn default_dial(
        self,
        candidate: Candidate,
        kind: PathKind,
        address: String,
    ) -> Result<Connection, ManagerError> {
        match kind {
            PathKind::WebRtc => self.upgrade(&candidate.device_id).await,
            PathKind::Ws | PathKind::Wss if !address.is_empty() => {
                Ok(self.inner.node.dial(&address).await?)
            }
            _ => Err(ManagerError::NoDialer { path: kind }),
        }
    }

    fn dial_failed(&self, device_id: &str) {
        let at = now();
        let mut st = lock(&self.inner.dialer);
        let reconnect = st
            .planner
            .device(device_id)
            .is_some_and(|d| d.status == DeviceStatus::ConnectedThenDisconnected);
        if reconnect {
            let delay = backoff(&mut st, device_id, &self.inner.config).next_delay();
            st.planner.reconnect_failed(device_id, at, at + delay);
        } else {
            st.planner.failed(device_id, at);
        }
    }

    fn wake_dialer(&self) {
        lock(&self.inner.dialer).wake.notify_one();
    }

    /// A device got a current link (dialled or incoming): its backoff starts over.
    pub(super) fn dial_linked(&self, device_id: &str) {
        let mut st = lock(&self.inner.dialer);
        st.planner.connected(device_id);
        if let Some(b) = st.backoff.get_mut(device_id) {
            b.reset();
        }
    }

    /// A device's current link closed: dial it again after the next backoff delay.
    pub(super) fn dial_lost(&self, device_id: &str) {
        let at = now();
        {
            let mut st = lock(&self.inner.dialer);
            if !st.candidates.contains_key(device_id) {
                return;
            }
            st.planner.disconnected(device_id);
            let delay = backoff(&mut st, device_id, &self.inner.config).next_delay();
            st.planner.retry_at(device_id, at + delay);
        }
        self.wake_dialer();
    }

    /// A device's link was evicted for a better one: left alone for the retry cooldown.
    pub(super) fn dial_evicted(&self, device_id: &str) {
        let at = now();
        let mut st = lock(&self.inner.dialer);
        st.planner.disconnected(device_id);
        st.planner
            .retry_at(device_id, at + self.inner.config.retry_cooldown);
    }
}

fn backoff<'a>(
    st: &'a mut DialerState,
    device_id: &str,
    config: &peerlink_core::manager::ManagerConfig,
) -> &'a mut Backoff {
    st.backoff
        .entry(device_id.to_owned())
        .or_insert_with(|| Backoff::new(config, rand::random()))
}
