//! Reconnect delays: exponential with jitter.

use std::time::Duration;

use super::config::ManagerConfig;
use super::rng::SimRng;

/// Reconnect delays for one lost link. Delay `n` is `min(max, initial · 2ⁿ)` with a random
/// fraction (`jitter`) taken off, so that many devices losing the same hub do not all dial
/// back at the same instant.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    jitter: f64,
    attempt: u32,
    rng: SimRng,
}

impl Backoff {
    /// A schedule using `config`'s settings and jitter drawn from `seed`.
    pub fn new(config: &ManagerConfig, seed: u64) -> Self {
        Self {
            initial: config.backoff_initial,
            max: config.backoff_max.max(config.backoff_initial),
            jitter: config.backoff_jitter.clamp(0.0, 1.0),
            attempt: 0,
            rng: SimRng::new(seed),
        }
    }

    /// The delay before the next attempt; each call counts one attempt.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        let base = self.initial.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        base.mul_f64(1.0 - self.jitter * self.rng.next_f64())
    }

    /// Attempts so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Starts over (after a link came back).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}
