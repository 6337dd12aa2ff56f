//! Token buckets on a caller-supplied clock.

use std::time::Instant;

use crate::config::Rate;

/// A token bucket. Starts full.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub(crate) fn new(rate: Rate, now: Instant) -> Self {
        Self {
            tokens: rate.burst,
            last: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
    }

    /// Takes `amount` tokens if available.
    pub(crate) fn try_take(&mut self, rate: Rate, amount: f64, now: Instant) -> bool {
        if rate.per_second.is_infinite() {
            return true;
        }
        self.refill(rate, now);
        if self.tokens >= amount {
            self.tokens -= amount;
            true
        } else {
            false
        }
    }

    /// Takes `amount` tokens, going into debt if needed, and returns how long to wait until
    /// the debt is repaid (zero when there was enough). Lets a large frame pass at once while
    /// still holding the average to the rate.
    pub(crate) fn take_with_debt(
        &mut self,
        rate: Rate,
        amount: f64,
        now: Instant,
    ) -> std::time::Duration {
        if rate.per_second.is_infinite() {
            return std::time::Duration::ZERO;
        }
        self.refill(rate, now);
        self.tokens -= amount;
        if self.tokens >= 0.0 || rate.per_second <= 0.0 {
            return std::time::Duration::ZERO;
        }
        std::time::Duration::from_secs_f64(-self.tokens / rate.per_second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let rate = Rate::new(10.0, 3.0);
        let t0 = Instant::now();
        let mut b = Bucket::new(rate, t0);
        assert!(b.try_take(rate, 1.0, t0));
        assert!(b.try_take(rate, 1.0, t0));
        assert!(b.try_take(rate, 1.0, t0));
        assert!(!b.try_take(rate, 1.0, t0));
        assert!(b.try_take(rate, 1.0, t0 + Duration::from_millis(100)));
        assert!(!b.try_take(rate, 1.0, t0 + Duration::from_millis(100)));
    }

    #[test]
    fn debt_gives_the_wait_until_repaid() {
        let rate = Rate::new(100.0, 100.0);
        let t0 = Instant::now();
        let mut b = Bucket::new(rate, t0);
        assert_eq!(b.take_with_debt(rate, 50.0, t0), Duration::ZERO);
        assert_eq!(
            b.take_with_debt(rate, 100.0, t0),
            Duration::from_millis(500)
        );
    }
}
