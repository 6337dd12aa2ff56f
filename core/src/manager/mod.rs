//! Connection-manager policy: which devices to keep connected and how, decided without I/O.
//!
//! Every decision the runtime's `ConnectionManager` applies is made here, on a caller-supplied
//! clock and a seeded random source, so that the same inputs give the same decisions and a
//! whole network can be simulated in a test without sockets or sleeps.
//!
//! - [`ConnectionTable`]: one link per remote device, the better-path rule, the connection
//!   limit and eviction.
//! - [`DialPlanner`]: which devices to dial (own devices first, then a few users per group),
//!   retry cooldown, path preference.
//! - [`Health`]: pings, latency window, error rate, drop after missed pings.
//! - [`GroupReadyTracker`]: the `groupReady` exchange, retried a bounded number of times.
//! - [`Backoff`]: reconnect delays, exponential with jitter.
//! - [`elect_hub`]: which member relays broadcasts in a large group, and failover.
//!
//! The rules are written down in `docs/connections/manager.md`.

mod backoff;
mod config;
mod dial;
mod group_ready;
mod health;
mod hub;
mod path;
mod rng;
mod table;

pub use backoff::Backoff;
pub use config::ManagerConfig;
pub use dial::{DeviceStatus, DialPlanner, DialRequest, TrackedDevice};
pub use group_ready::{GroupReadyAction, GroupReadyTracker};
pub use health::{Health, PingOutcome};
pub use hub::{HubRole, elect_hub, hub_role};
pub use path::PathKind;
pub use rng::SimRng;
pub use table::{ConnectionTable, LinkDecision, LinkInfo, RejectReason};
