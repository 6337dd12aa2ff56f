//! The `groupReady` exchange: tell a peer a group is wired, retried a bounded number of times.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::config::ManagerConfig;

/// What the driver must do for a `(device, group)` pair.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupReadyAction {
    /// Send `groupReady(group)` to `device` (attempt number `attempt`, from 1).
    Send {
        /// Remote device.
        device: String,
        /// Group id.
        group: String,
        /// Attempt number.
        attempt: u32,
    },
    /// Every attempt went unanswered: proceed without this peer in this group.
    GiveUp {
        /// Remote device.
        device: String,
        /// Group id.
        group: String,
    },
}

#[derive(Debug, Clone)]
struct Pending {
    attempts: u32,
    deadline: Instant,
}

/// Pending `groupReady` exchanges on the caller's clock.
#[derive(Debug, Clone)]
pub struct GroupReadyTracker {
    attempts: u32,
    timeout: Duration,
    pending: BTreeMap<(String, String), Pending>,
}

impl GroupReadyTracker {
    /// A tracker using `config`'s attempts and per-attempt timeout.
    pub fn new(config: &ManagerConfig) -> Self {
        Self {
            attempts: config.group_ready_attempts.max(1),
            timeout: config.group_ready_timeout,
            pending: BTreeMap::new(),
        }
    }

    /// Starts the exchange: returns the first send.
    pub fn start(&mut self, device: &str, group: &str, now: Instant) -> GroupReadyAction {
        self.pending.insert(
            (device.to_owned(), group.to_owned()),
            Pending {
                attempts: 1,
                deadline: now + self.timeout,
            },
        );
        GroupReadyAction::Send {
            device: device.to_owned(),
            group: group.to_owned(),
            attempt: 1,
        }
    }

    /// The peer acknowledged: stop retrying. Returns whether it was pending.
    pub fn acknowledge(&mut self, device: &str, group: &str) -> bool {
        self.pending
            .remove(&(device.to_owned(), group.to_owned()))
            .is_some()
    }

    /// Forgets every exchange with `device` (its link went away).
    pub fn forget_device(&mut self, device: &str) {
        self.pending.retain(|(d, _), _| d != device);
    }

    /// Retries and give-ups due at `now`.
    pub fn poll(&mut self, now: Instant) -> Vec<GroupReadyAction> {
        let mut actions = Vec::new();
        let mut done = Vec::new();
        for ((device, group), p) in self.pending.iter_mut() {
            if now < p.deadline {
                continue;
            }
            if p.attempts >= self.attempts {
                done.push((device.clone(), group.clone()));
                actions.push(GroupReadyAction::GiveUp {
                    device: device.clone(),
                    group: group.clone(),
                });
            } else {
                p.attempts += 1;
                p.deadline = now + self.timeout;
                actions.push(GroupReadyAction::Send {
                    device: device.clone(),
                    group: group.clone(),
                    attempt: p.attempts,
                });
            }
        }
        for key in done {
            self.pending.remove(&key);
        }
        actions
    }

    /// The earliest deadline, for the driver's timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.deadline).min()
    }
}
