//! One link per remote device, the better-path rule, and the connection limit.

use std::collections::BTreeMap;
use std::time::Instant;

use super::config::ManagerConfig;
use super::path::PathKind;

/// What the table knows about one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Remote device id.
    pub device_id: String,
    /// Remote user id.
    pub user_id: String,
    /// The driver's id for this link (connection id).
    pub link_id: u64,
    /// How it travels.
    pub path: PathKind,
    /// Same user as this device.
    pub own_device: bool,
    /// Groups shared with the remote device.
    pub shared_groups: usize,
    /// Whether pings currently succeed.
    pub healthy: bool,
    /// Kept regardless of the limit (for example the hub of a group).
    pub pinned: bool,
    /// When the link was added.
    pub since: Instant,
}

/// Why a new link is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// The current link to the same device takes a better path and is healthy.
    WorsePath,
    /// The table is full and every current link ranks at least as high as the new one.
    Limit,
    /// The link id is already in the table.
    Duplicate,
}

/// What to do with a new verified link ([`ConnectionTable::offer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkDecision {
    /// Keep it; no other link changes.
    Accept,
    /// Keep it and close `old`, the previous link to the same device (path changed).
    Replace {
        /// The replaced link's id.
        old: u64,
        /// Its path.
        old_path: PathKind,
    },
    /// Keep it and close the link of `device_id` to stay within the limit.
    Evict {
        /// Evicted device.
        device_id: String,
        /// Evicted link.
        link_id: u64,
    },
    /// Close the new link.
    Reject(RejectReason),
}

/// The set of current links, at most one per remote device.
#[derive(Debug, Clone)]
pub struct ConnectionTable {
    config: ManagerConfig,
    links: BTreeMap<String, LinkInfo>,
}

/// Keep-priority of a link: higher survives eviction.
fn priority(link: &LinkInfo) -> (bool, bool, usize, bool) {
    (
        link.pinned,
        link.own_device,
        link.shared_groups,
        link.healthy,
    )
}

impl ConnectionTable {
    /// An empty table.
    pub fn new(config: ManagerConfig) -> Self {
        Self {
            config,
            links: BTreeMap::new(),
        }
    }

    /// Decides about a new verified link and applies the decision to the table.
    ///
    /// Rules, in order:
    /// 1. One link per device: a new link to a device already linked replaces the old one,
    ///    unless the old one takes a strictly better path (by
    ///    [`ManagerConfig::path_preference`]) and is healthy; then the new one is refused.
    /// 2. At the limit, the lowest-priority link is evicted (priority: pinned, own device,
    ///    number of shared groups, healthy; ties evict the newest, then the largest device
    ///    id) if the new link ranks strictly higher; otherwise the new link is refused.
    pub fn offer(&mut self, link: LinkInfo) -> LinkDecision {
        if self.links.values().any(|l| l.link_id == link.link_id) {
            return LinkDecision::Reject(RejectReason::Duplicate);
        }
        if let Some(old) = self.links.get(&link.device_id) {
            let worse =
                self.config.path_rank(link.path) > self.config.path_rank(old.path) && old.healthy;
            if worse {
                return LinkDecision::Reject(RejectReason::WorsePath);
            }
            let decision = LinkDecision::Replace {
                old: old.link_id,
                old_path: old.path,
            };
            let mut link = link;
            link.pinned |= old.pinned;
            self.links.insert(link.device_id.clone(), link);
            return decision;
        }
        if self.links.len() < self.config.max_connections {
            self.links.insert(link.device_id.clone(), link);
            return LinkDecision::Accept;
        }
        let victim = self
            .links
            .values()
            .min_by(|a, b| {
                priority(a)
                    .cmp(&priority(b))
                    .then_with(|| b.since.cmp(&a.since))
                    .then_with(|| b.device_id.cmp(&a.device_id))
            })
            .cloned();
        match victim {
            Some(victim) if priority(&link) > priority(&victim) => {
                self.links.remove(&victim.device_id);
                self.links.insert(link.device_id.clone(), link);
                LinkDecision::Evict {
                    device_id: victim.device_id,
                    link_id: victim.link_id,
                }
            }
            _ => LinkDecision::Reject(RejectReason::Limit),
        }
    }

    /// Removes the link `link_id` of `device_id`. A stale id (a link already replaced)
    /// leaves the current link alone. Returns whether something was removed.
    pub fn remove(&mut self, device_id: &str, link_id: u64) -> bool {
        if self.links.get(device_id).map(|l| l.link_id) == Some(link_id) {
            self.links.remove(device_id);
            true
        } else {
            false
        }
    }

    /// The current link to `device_id`.
    pub fn get(&self, device_id: &str) -> Option<&LinkInfo> {
        self.links.get(device_id)
    }

    /// Updates health of the current link to `device_id`.
    pub fn set_healthy(&mut self, device_id: &str, healthy: bool) {
        if let Some(l) = self.links.get_mut(device_id) {
            l.healthy = healthy;
        }
    }

    /// Pins or unpins the link to `device_id` (pinned links are never evicted).
    pub fn set_pinned(&mut self, device_id: &str, pinned: bool) {
        if let Some(l) = self.links.get_mut(device_id) {
            l.pinned = pinned;
        }
    }

    /// Updates the number of groups shared with `device_id`.
    pub fn set_shared_groups(&mut self, device_id: &str, shared: usize) {
        if let Some(l) = self.links.get_mut(device_id) {
            l.shared_groups = shared;
        }
    }

    /// Number of links.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// Whether there is no link.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// Whether the limit is reached.
    pub fn is_full(&self) -> bool {
        self.links.len() >= self.config.max_connections
    }

    /// All links, by device id.
    pub fn links(&self) -> impl Iterator<Item = &LinkInfo> {
        self.links.values()
    }
}
