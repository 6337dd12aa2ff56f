//! Dialling policy: own devices first, then a few users per group, with a retry cooldown.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::config::ManagerConfig;
use super::path::PathKind;

/// What is known about dialling a device (Peers' `notTried` … `connectedThenDisconnected`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceStatus {
    /// Never dialled.
    NotTried,
    /// The last attempt failed.
    TriedButFailed,
    /// Connected now.
    Connected,
    /// Was connected, the link went away.
    ConnectedThenDisconnected,
}

impl DeviceStatus {
    /// Order within a tier: devices that worked before first, failed ones last.
    fn order(self) -> u8 {
        match self {
            Self::ConnectedThenDisconnected => 0,
            Self::NotTried => 1,
            Self::TriedButFailed => 2,
            Self::Connected => 3,
        }
    }
}

/// A device the planner may dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedDevice {
    /// Device id.
    pub device_id: String,
    /// Its user.
    pub user_id: String,
    /// Dialling status.
    pub status: DeviceStatus,
    /// When it was last dialled.
    pub last_attempt: Option<Instant>,
    /// Failed attempts in a row.
    pub failure_count: u32,
    /// Groups it belongs to.
    pub groups: BTreeSet<String>,
    /// Groups whose election made it a preferred device.
    pub preferred_for_groups: BTreeSet<String>,
    /// Paths it can be reached by (from its advertised addresses and signaling).
    pub paths: BTreeSet<PathKind>,
    /// Not dialled before this instant (a reconnect waiting out its backoff).
    pub retry_at: Option<Instant>,
}

impl TrackedDevice {
    /// A device never dialled, in `groups`, reachable by `paths`.
    pub fn new(
        device_id: impl Into<String>,
        user_id: impl Into<String>,
        groups: impl IntoIterator<Item = String>,
        paths: impl IntoIterator<Item = PathKind>,
    ) -> Self {
        Self {
            device_id: device_id.into(),
            user_id: user_id.into(),
            status: DeviceStatus::NotTried,
            last_attempt: None,
            failure_count: 0,
            groups: groups.into_iter().collect(),
            preferred_for_groups: BTreeSet::new(),
            paths: paths.into_iter().collect(),
            retry_at: None,
        }
    }
}

/// One dial the driver should start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialRequest {
    /// Device to dial.
    pub device_id: String,
    /// Path to try (the most preferred the device offers).
    pub path: PathKind,
}

/// Decides whom to dial, like Peers' `NetworkManager`.
#[derive(Debug, Clone)]
pub struct DialPlanner {
    config: ManagerConfig,
    me_device: String,
    me_user: String,
    devices: BTreeMap<String, TrackedDevice>,
    in_flight: BTreeSet<String>,
}

impl DialPlanner {
    /// A planner for device `me_device` of user `me_user`.
    pub fn new(
        config: ManagerConfig,
        me_device: impl Into<String>,
        me_user: impl Into<String>,
    ) -> Self {
        Self {
            config,
            me_device: me_device.into(),
            me_user: me_user.into(),
            devices: BTreeMap::new(),
            in_flight: BTreeSet::new(),
        }
    }

    /// Adds or updates a device (its groups and paths; status is kept for known devices).
    pub fn upsert(&mut self, device: TrackedDevice) {
        if device.device_id == self.me_device {
            return;
        }
        match self.devices.get_mut(&device.device_id) {
            Some(known) => {
                known.user_id = device.user_id;
                known.groups = device.groups;
                known.paths = device.paths;
                known.preferred_for_groups = device.preferred_for_groups;
            }
            None => {
                self.devices.insert(device.device_id.clone(), device);
            }
        }
    }

    /// Forgets a device (it left every shared group).
    pub fn remove(&mut self, device_id: &str) {
        self.devices.remove(device_id);
        self.in_flight.remove(device_id);
    }

    /// A tracked device.
    pub fn device(&self, device_id: &str) -> Option<&TrackedDevice> {
        self.devices.get(device_id)
    }

    /// Records that a dial succeeded (or an incoming link arrived).
    pub fn connected(&mut self, device_id: &str) {
        self.in_flight.remove(device_id);
        if let Some(d) = self.devices.get_mut(device_id) {
            d.status = DeviceStatus::Connected;
            d.failure_count = 0;
        }
    }

    /// Records that a dial failed at `now`.
    pub fn failed(&mut self, device_id: &str, now: Instant) {
        self.in_flight.remove(device_id);
        if let Some(d) = self.devices.get_mut(device_id) {
            d.status = DeviceStatus::TriedButFailed;
            d.failure_count = d.failure_count.saturating_add(1);
            d.last_attempt = Some(now);
        }
    }

    /// Records that the link to a device went away.
    pub fn disconnected(&mut self, device_id: &str) {
        if let Some(d) = self.devices.get_mut(device_id) {
            if d.status == DeviceStatus::Connected {
                d.status = DeviceStatus::ConnectedThenDisconnected;
            }
        }
    }

    /// Holds a device back until `at` (a lost link waits out its reconnect backoff).
    pub fn retry_at(&mut self, device_id: &str, at: Instant) {
        if let Some(d) = self.devices.get_mut(device_id) {
            d.retry_at = Some(at);
        }
    }

    /// Records that re-dialling a device whose link was lost failed at `now`: unlike
    /// [`DialPlanner::failed`] it stays a reconnect (status `ConnectedThenDisconnected`) and is
    /// dialled again at `retry_at`, the next backoff step, instead of after the cooldown.
    pub fn reconnect_failed(&mut self, device_id: &str, now: Instant, retry_at: Instant) {
        self.in_flight.remove(device_id);
        if let Some(d) = self.devices.get_mut(device_id) {
            d.status = DeviceStatus::ConnectedThenDisconnected;
            d.failure_count = d.failure_count.saturating_add(1);
            d.last_attempt = Some(now);
            d.retry_at = Some(retry_at);
        }
    }

    /// The earliest instant after `now` at which a device held back (backoff or cooldown)
    /// becomes eligible, so a driver knows when to plan again.
    pub fn next_due(&self, now: Instant) -> Option<Instant> {
        self.devices
            .values()
            .filter(|d| {
                !self.in_flight.contains(&d.device_id) && d.status != DeviceStatus::Connected
            })
            .filter_map(|d| {
                let cooldown = match (d.status, d.last_attempt) {
                    (DeviceStatus::TriedButFailed, Some(at)) => {
                        Some(at + self.config.retry_cooldown)
                    }
                    _ => None,
                };
                cooldown.max(d.retry_at)
            })
            .filter(|at| *at > now)
            .min()
    }

    /// Tracked devices.
    pub fn devices(&self) -> impl Iterator<Item = &TrackedDevice> {
        self.devices.values()
    }

    fn eligible(&self, d: &TrackedDevice, now: Instant, connected: &BTreeSet<String>) -> bool {
        if connected.contains(&d.device_id) || self.in_flight.contains(&d.device_id) {
            return false;
        }
        if d.paths.is_empty() {
            return false;
        }
        if d.retry_at.is_some_and(|at| now < at) {
            return false;
        }
        match (d.status, d.last_attempt) {
            (DeviceStatus::TriedButFailed, Some(at)) => {
                now.saturating_duration_since(at) >= self.config.retry_cooldown
            }
            _ => true,
        }
    }

    fn best_path(&self, d: &TrackedDevice) -> Option<PathKind> {
        d.paths
            .iter()
            .copied()
            .min_by_key(|p| self.config.path_rank(*p))
    }

    /// The dials to start now, given the devices currently `connected`. Marks them in flight
    /// until [`DialPlanner::connected`] or [`DialPlanner::failed`].
    ///
    /// Phase 1 dials own devices (same user), preferred first, up to `max_own_devices`
    /// connected. Phase 2, per group, aims for `min(other users, max_users_per_group)`
    /// distinct users, taking in order: preferred devices of unconnected users, their other
    /// devices, then (only for a group with no connection at all) devices of connected users
    /// and own devices. Within a tier, devices that worked before come first, failed ones
    /// last, then by device id. Dials never take the total past `max_connections`.
    pub fn plan(&mut self, now: Instant, connected: &BTreeSet<String>) -> Vec<DialRequest> {
        let mut budget = self
            .config
            .max_connections
            .saturating_sub(connected.len() + self.in_flight.len());
        let mut chosen: Vec<DialRequest> = Vec::new();
        let mut chosen_ids: BTreeSet<String> = BTreeSet::new();
        let sort_key = |d: &TrackedDevice| (d.status.order(), d.device_id.clone());

        // Phase 1: own devices.
        let own_connected = self
            .devices
            .values()
            .filter(|d| d.user_id == self.me_user && connected.contains(&d.device_id))
            .count()
            + self
                .in_flight
                .iter()
                .filter(|id| {
                    self.devices
                        .get(*id)
                        .is_some_and(|d| d.user_id == self.me_user)
                })
                .count();
        let mut own: Vec<&TrackedDevice> = self
            .devices
            .values()
            .filter(|d| d.user_id == self.me_user && self.eligible(d, now, connected))
            .collect();
        own.sort_by_key(|d| (d.preferred_for_groups.is_empty(), sort_key(d)));
        for d in own
            .into_iter()
            .take(self.config.max_own_devices.saturating_sub(own_connected))
        {
            if budget == 0 {
                break;
            }
            if let Some(path) = self.best_path(d) {
                chosen_ids.insert(d.device_id.clone());
                chosen.push(DialRequest {
                    device_id: d.device_id.clone(),
                    path,
                });
                budget -= 1;
            }
        }

        // Phase 2: users per group.
        let groups: BTreeSet<String> = self
            .devices
            .values()
            .flat_map(|d| d.groups.iter().cloned())
            .collect();
        for group in groups {
            let members: Vec<&TrackedDevice> = self
                .devices
                .values()
                .filter(|d| d.groups.contains(&group))
                .collect();
            let other_users: BTreeSet<&str> = members
                .iter()
                .filter(|d| d.user_id != self.me_user)
                .map(|d| d.user_id.as_str())
                .collect();
            let linked = |d: &TrackedDevice| {
                connected.contains(&d.device_id)
                    || self.in_flight.contains(&d.device_id)
                    || chosen_ids.contains(&d.device_id)
            };
            let mut users_linked: BTreeSet<String> = members
                .iter()
                .filter(|d| d.user_id != self.me_user && linked(d))
                .map(|d| d.user_id.clone())
                .collect();
            let mut group_has_link = members.iter().any(|d| linked(d));
            let target = other_users.len().min(self.config.max_users_per_group);
            let mut tiers: Vec<(u8, &TrackedDevice)> = members
                .iter()
                .filter(|d| self.eligible(d, now, connected) && !chosen_ids.contains(&d.device_id))
                .map(|d| {
                    let preferred = d.preferred_for_groups.contains(&group);
                    let tier = if d.user_id == self.me_user {
                        if preferred { 4 } else { 5 }
                    } else if !users_linked.contains(&d.user_id) {
                        if preferred { 1 } else { 2 }
                    } else {
                        3
                    };
                    (tier, *d)
                })
                .collect();
            tiers.sort_by_key(|(tier, d)| (*tier, sort_key(d)));
            for (tier, d) in tiers {
                if budget == 0 {
                    break;
                }
                let wanted = if tier <= 2 {
                    users_linked.len() < target && !users_linked.contains(&d.user_id)
                } else {
                    !group_has_link
                };
                if !wanted {
                    continue;
                }
                if let Some(path) = self.best_path(d) {
                    users_linked.insert(d.user_id.clone());
                    group_has_link = true;
                    chosen_ids.insert(d.device_id.clone());
                    chosen.push(DialRequest {
                        device_id: d.device_id.clone(),
                        path,
                    });
                    budget -= 1;
                }
            }
        }
        for request in &chosen {
            self.in_flight.insert(request.device_id.clone());
            if let Some(d) = self.devices.get_mut(&request.device_id) {
                d.last_attempt = Some(now);
            }
        }
        chosen
    }
}
