//! Manager settings, with the Peers values as defaults.

use std::time::Duration;

use super::path::PathKind;

/// Settings of the connection manager policy.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ManagerConfig {
    /// Most connections kept at once (Peers: 30).
    pub max_connections: usize,
    /// Most own devices (same user) dialled (Peers: 8).
    pub max_own_devices: usize,
    /// Distinct other users each group aims to be connected to (Peers: 5).
    pub max_users_per_group: usize,
    /// How long a failed device is left alone before it is dialled again (Peers: 60 s).
    pub retry_cooldown: Duration,
    /// Path kinds in order of preference, best first (wss → ws → WebRTC → relay).
    pub path_preference: Vec<PathKind>,
    /// Time between pings (Peers: 15 s).
    pub ping_interval: Duration,
    /// How long a ping may take before it counts as missed.
    pub ping_timeout: Duration,
    /// Consecutive missed pings that drop a connection (Peers: 3).
    pub max_missed_pings: u32,
    /// Latency samples kept per connection (Peers: 10).
    pub latency_window: usize,
    /// Weight of the newest sample in the error-rate average (Peers: 0.1).
    pub error_rate_weight: f64,
    /// `groupReady` attempts (Peers: 3).
    pub group_ready_attempts: u32,
    /// Wait for a `groupReady` answer per attempt (Peers: 2 s).
    pub group_ready_timeout: Duration,
    /// First reconnect delay.
    pub backoff_initial: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Fraction of each delay that is randomised (0 = none, 1 = full jitter).
    pub backoff_jitter: f64,
    /// Groups with more members than this elect a hub instead of a full mesh.
    pub hub_threshold: usize,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            max_connections: 30,
            max_own_devices: 8,
            max_users_per_group: 5,
            retry_cooldown: Duration::from_secs(60),
            path_preference: vec![
                PathKind::Wss,
                PathKind::Ws,
                PathKind::WebRtc,
                PathKind::Relay,
            ],
            ping_interval: Duration::from_secs(15),
            ping_timeout: Duration::from_secs(10),
            max_missed_pings: 3,
            latency_window: 10,
            error_rate_weight: 0.1,
            group_ready_attempts: 3,
            group_ready_timeout: Duration::from_secs(2),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            backoff_jitter: 0.5,
            hub_threshold: 30,
        }
    }
}

impl ManagerConfig {
    /// Rank of `kind` in [`ManagerConfig::path_preference`]: lower is better; kinds not
    /// listed rank after every listed one.
    pub fn path_rank(&self, kind: PathKind) -> usize {
        self.path_preference
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(self.path_preference.len())
    }
}
