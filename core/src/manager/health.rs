//! Connection health: pings, latency window, error rate.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::config::ManagerConfig;

/// Result of one ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingOutcome {
    /// Answered after this round-trip time.
    Answered(Duration),
    /// Timed out or failed.
    Missed,
}

/// Health of one connection, on the caller's clock.
#[derive(Debug, Clone)]
pub struct Health {
    interval: Duration,
    window: usize,
    weight: f64,
    max_missed: u32,
    latencies: VecDeque<Duration>,
    error_rate: f64,
    missed: u32,
    next_ping: Instant,
    in_flight: bool,
}

impl Health {
    /// Fresh health for a link added at `now`; the first ping is due one interval later.
    pub fn new(config: &ManagerConfig, now: Instant) -> Self {
        Self {
            interval: config.ping_interval,
            window: config.latency_window.max(1),
            weight: config.error_rate_weight.clamp(0.0, 1.0),
            max_missed: config.max_missed_pings.max(1),
            latencies: VecDeque::new(),
            error_rate: 0.0,
            missed: 0,
            next_ping: now + config.ping_interval,
            in_flight: false,
        }
    }

    /// When the next ping is due.
    pub fn next_ping(&self) -> Instant {
        self.next_ping
    }

    /// Whether a ping should be sent at `now`; if so, marks it as sent and schedules the next.
    pub fn poll_ping(&mut self, now: Instant) -> bool {
        if self.in_flight || now < self.next_ping {
            return false;
        }
        self.in_flight = true;
        self.next_ping = now + self.interval;
        true
    }

    /// Records a ping's outcome. Returns `true` when the connection must be dropped (too many
    /// consecutive misses).
    pub fn record(&mut self, outcome: PingOutcome) -> bool {
        self.in_flight = false;
        let failed = match outcome {
            PingOutcome::Answered(rtt) => {
                if self.latencies.len() == self.window {
                    self.latencies.pop_front();
                }
                self.latencies.push_back(rtt);
                self.missed = 0;
                0.0
            }
            PingOutcome::Missed => {
                self.missed += 1;
                1.0
            }
        };
        self.error_rate = self.error_rate * (1.0 - self.weight) + failed * self.weight;
        self.missed >= self.max_missed
    }

    /// Mean of the latency window, if any sample exists.
    pub fn mean_latency(&self) -> Option<Duration> {
        let n = u32::try_from(self.latencies.len())
            .ok()
            .filter(|n| *n > 0)?;
        Some(self.latencies.iter().sum::<Duration>() / n)
    }

    /// Latency samples, oldest first.
    pub fn latencies(&self) -> impl Iterator<Item = Duration> + '_ {
        self.latencies.iter().copied()
    }

    /// Exponentially weighted failure rate in `[0, 1]`.
    pub fn error_rate(&self) -> f64 {
        self.error_rate
    }

    /// Consecutive missed pings.
    pub fn missed(&self) -> u32 {
        self.missed
    }

    /// Whether the last ping was answered (or none failed yet).
    pub fn is_healthy(&self) -> bool {
        self.missed == 0
    }
}
