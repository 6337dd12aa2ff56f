//! RPC request-id correlation with deadlines, on a caller-supplied clock.
//!
//! A [`Correlator`] hands out request ids, remembers who waits for each reply and until when,
//! and tells the driver which calls expired at a given [`Instant`]. It knows nothing about
//! channels or tasks: the waiter is any value `T` (the async runtime stores a one-shot sender).
//!
//! Rules it guarantees:
//! - ids are unique among pending calls and never `0`;
//! - every waiter leaves exactly once: by [`Correlator::complete`], [`Correlator::cancel`],
//!   [`Correlator::expire`] or [`Correlator::drain`];
//! - a reply for an id that already left (late, duplicate or unknown) yields `None` and is
//!   ignored by the caller.
//!
//! Deadlines live in a min-heap with lazy deletion: completing a call leaves its heap entry
//! behind and the entry is skipped when it surfaces. The heap is rebuilt when stale entries
//! outnumber live ones, so memory stays proportional to the pending calls.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

/// Stale heap entries tolerated before the heap is rebuilt (on top of the live count).
const HEAP_SLACK: usize = 1024;

#[derive(Debug)]
struct Entry<T> {
    waiter: T,
    deadline: Option<Instant>,
}

/// What [`Correlator::start`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    /// The request id to put on the wire.
    pub id: u64,
    /// `true` when this call's deadline is now the earliest one: the driver must re-arm its
    /// timer to [`Correlator::poll_timeout`].
    pub rearm: bool,
}

/// Pending-call table with deadlines. See the module docs.
#[derive(Debug)]
pub struct Correlator<T> {
    next_id: u64,
    pending: HashMap<u64, Entry<T>>,
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
}

impl<T> Default for Correlator<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Correlator<T> {
    /// An empty table; the first id is 1.
    pub fn new() -> Self {
        Self {
            next_id: 1,
            pending: HashMap::new(),
            deadlines: BinaryHeap::new(),
        }
    }

    /// Registers a call and allocates its id. `deadline: None` waits forever.
    pub fn start(&mut self, waiter: T, deadline: Option<Instant>) -> Started {
        let id = self.allocate_id();
        let rearm = match deadline {
            Some(at) => {
                let earliest = self.earliest_live();
                self.deadlines.push(Reverse((at, id)));
                self.compact_if_needed();
                earliest.is_none_or(|e| at < e)
            }
            None => false,
        };
        self.pending.insert(id, Entry { waiter, deadline });
        Started { id, rearm }
    }

    /// A reply (or error reply) arrived for `id`. `None` for a late, duplicate or unknown id.
    pub fn complete(&mut self, id: u64) -> Option<T> {
        self.pending.remove(&id).map(|e| e.waiter)
    }

    /// The caller gave up on `id`. `None` if it already left the table.
    pub fn cancel(&mut self, id: u64) -> Option<T> {
        self.complete(id)
    }

    /// The earliest live deadline, if any. Drops stale heap entries it walks over.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.prune_top();
        self.deadlines.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns every call whose deadline is at or before `now`, earliest first.
    pub fn expire(&mut self, now: Instant) -> Vec<(u64, T)> {
        let mut out = Vec::new();
        loop {
            self.prune_top();
            match self.deadlines.peek() {
                Some(Reverse((at, id))) if *at <= now => {
                    let id = *id;
                    self.deadlines.pop();
                    if let Some(entry) = self.pending.remove(&id) {
                        out.push((id, entry.waiter));
                    }
                }
                _ => break,
            }
        }
        out
    }

    /// Removes every pending call (the link closed), in id order.
    pub fn drain(&mut self) -> Vec<(u64, T)> {
        self.deadlines.clear();
        let mut all: Vec<(u64, T)> = self.pending.drain().map(|(id, e)| (id, e.waiter)).collect();
        all.sort_unstable_by_key(|(id, _)| *id);
        all
    }

    /// Whether `id` is still waiting.
    pub fn contains(&self, id: u64) -> bool {
        self.pending.contains_key(&id)
    }

    /// Number of pending calls.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no call is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    fn allocate_id(&mut self) -> u64 {
        // Bounded: at most `pending.len() + 1` candidates can be taken.
        for _ in 0..=self.pending.len() {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1).max(1);
            if !self.pending.contains_key(&id) {
                return id;
            }
        }
        // Unreachable in practice: more than 2^64 pending calls.
        self.next_id
    }

    fn is_live(&self, at: Instant, id: u64) -> bool {
        self.pending
            .get(&id)
            .is_some_and(|e| e.deadline == Some(at))
    }

    fn prune_top(&mut self) {
        while let Some(Reverse((at, id))) = self.deadlines.peek() {
            if self.is_live(*at, *id) {
                break;
            }
            self.deadlines.pop();
        }
    }

    fn earliest_live(&mut self) -> Option<Instant> {
        self.prune_top();
        self.deadlines.peek().map(|Reverse((at, _))| *at)
    }

    fn compact_if_needed(&mut self) {
        if self.deadlines.len() > 2 * self.pending.len() + HEAP_SLACK {
            let live: Vec<_> = self
                .deadlines
                .drain()
                .filter(|Reverse((at, id))| {
                    self.pending
                        .get(id)
                        .is_some_and(|e| e.deadline == Some(*at))
                })
                .collect();
            self.deadlines = BinaryHeap::from(live);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn ids_are_unique_nonzero_and_increasing() {
        let mut c = Correlator::new();
        let a = c.start("a", None).id;
        let b = c.start("b", None).id;
        assert_ne!(a, 0);
        assert!(b > a);
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn reply_completes_once_and_late_replies_are_ignored() {
        let mut c = Correlator::new();
        let id = c.start(7u32, None).id;
        assert_eq!(c.complete(id), Some(7));
        assert_eq!(c.complete(id), None, "duplicate reply must be ignored");
        assert_eq!(c.complete(id + 100), None, "unknown id must be ignored");
        assert!(c.is_empty());
    }

    #[test]
    fn expiry_follows_the_virtual_clock() {
        let t0 = Instant::now();
        let mut c = Correlator::new();
        let slow = c.start("slow", Some(t0 + ms(300))).id;
        let fast = c.start("fast", Some(t0 + ms(100))).id;
        let never = c.start("never", None).id;
        assert_eq!(c.poll_timeout(), Some(t0 + ms(100)));

        assert!(c.expire(t0 + ms(99)).is_empty());
        assert_eq!(c.expire(t0 + ms(100)), vec![(fast, "fast")]);
        assert_eq!(c.poll_timeout(), Some(t0 + ms(300)));
        assert_eq!(c.expire(t0 + ms(1000)), vec![(slow, "slow")]);
        assert_eq!(c.poll_timeout(), None);
        assert!(c.contains(never));
        // A reply after expiry is late and ignored.
        assert_eq!(c.complete(fast), None);
    }

    #[test]
    fn completed_calls_do_not_expire_and_their_deadline_disappears() {
        let t0 = Instant::now();
        let mut c = Correlator::new();
        let a = c.start(1, Some(t0 + ms(10))).id;
        let _b = c.start(2, Some(t0 + ms(20))).id;
        assert_eq!(c.complete(a), Some(1));
        assert_eq!(c.poll_timeout(), Some(t0 + ms(20)));
        assert_eq!(c.expire(t0 + ms(15)), vec![]);
        assert_eq!(c.expire(t0 + ms(20)).len(), 1);
    }

    #[test]
    fn rearm_is_reported_only_for_a_new_earliest_deadline() {
        let t0 = Instant::now();
        let mut c = Correlator::new();
        assert!(c.start((), Some(t0 + ms(50))).rearm);
        assert!(!c.start((), Some(t0 + ms(60))).rearm);
        assert!(c.start((), Some(t0 + ms(10))).rearm);
        assert!(!c.start((), None).rearm);
    }

    #[test]
    fn drain_returns_everything_in_id_order() {
        let t0 = Instant::now();
        let mut c = Correlator::new();
        let ids: Vec<u64> = (0..5).map(|i| c.start(i, Some(t0 + ms(i))).id).collect();
        let drained = c.drain();
        assert_eq!(drained.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids);
        assert_eq!(c.poll_timeout(), None);
        assert!(c.expire(t0 + ms(100)).is_empty());
    }

    #[test]
    fn heap_stays_bounded_under_churn() {
        let t0 = Instant::now();
        let mut c = Correlator::new();
        for i in 0..100_000u64 {
            let id = c.start(i, Some(t0 + ms(i % 1000 + 1))).id;
            assert_eq!(c.complete(id), Some(i));
        }
        assert!(
            c.deadlines.len() <= HEAP_SLACK + 1,
            "heap holds {}",
            c.deadlines.len()
        );
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn ids_skip_pending_ones_after_wrapping() {
        let mut c = Correlator::new();
        let first = c.start("first", None).id;
        c.next_id = u64::MAX;
        assert_eq!(c.start("max", None).id, u64::MAX);
        // Wraps past 0 and skips `first`, still pending.
        let next = c.start("after", None).id;
        assert_ne!(next, 0);
        assert_ne!(next, first);
    }
}
