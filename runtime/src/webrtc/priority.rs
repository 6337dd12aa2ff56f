//! Data channel priority: the value carried in the channel-open message, and the link-wide
//! scheduling of sends by it.
//!
//! The engine queues every channel's messages in one first-in first-out queue per association
//! (a message, once started, is sent whole), so a message of one channel waits behind every
//! byte that other channels handed to the engine before it. Priority therefore works at
//! admission, in `ChannelSender::send`: while a channel of higher priority is active, a channel
//! of lower priority hands the engine new messages only while its unacknowledged bytes are
//! below its share, `window × weight(own) / weight(highest active)` (at least
//! [`MIN_SHARE`]). That bounds what a higher-priority message waits behind to about that share
//! plus one message, and it costs the lower-priority channel throughput only while the higher
//! one is active and only on paths whose bandwidth-delay product exceeds the share.

use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

/// A channel's priority, as in the W3C WebRTC Priority Control API (`RTCPriorityType`).
///
/// Carried to the peer in the `DATA_CHANNEL_OPEN` message (RFC 8832) as 128, 256, 512 or
/// 1024; browsers and other stacks read it from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[non_exhaustive]
pub enum ChannelPriority {
    /// `very-low` (DCEP 128).
    VeryLow,
    /// `low` (DCEP 256), the W3C default.
    #[default]
    Low,
    /// `medium` (DCEP 512).
    Medium,
    /// `high` (DCEP 1024).
    High,
}

impl ChannelPriority {
    /// The value in the channel-open message.
    pub fn dcep_value(self) -> u16 {
        match self {
            Self::VeryLow => 128,
            Self::Low => 256,
            Self::Medium => 512,
            Self::High => 1024,
        }
    }

    /// The priority a channel-open value stands for: 0–128 very-low, 129–256 low, 257–512
    /// medium, above high (the W3C mapping for values other than the four recommended ones).
    pub fn from_dcep(value: u16) -> Self {
        match value {
            0..=128 => Self::VeryLow,
            129..=256 => Self::Low,
            257..=512 => Self::Medium,
            _ => Self::High,
        }
    }

    /// The W3C name (`"very-low"`, `"low"`, `"medium"`, `"high"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VeryLow => "very-low",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }

    /// Relative weight: 1, 2, 4, 8 (the ratios of the DCEP values).
    fn weight(self) -> usize {
        usize::from(self.dcep_value() / 128)
    }
}

impl std::fmt::Display for ChannelPriority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ChannelPriority {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "very-low" => Ok(Self::VeryLow),
            "low" => Ok(Self::Low),
            "medium" => Ok(Self::Medium),
            "high" => Ok(Self::High),
            other => Err(format!(
                "unknown channel priority {other:?} (very-low, low, medium, high)"
            )),
        }
    }
}

/// The smallest share a lower-priority channel keeps while a higher one is active, bytes.
pub(crate) const MIN_SHARE: usize = 64 * 1024;
/// A channel counts as active this long after its last send.
pub(crate) const ACTIVE_SPAN: Duration = Duration::from_millis(500);
/// How often a channel held back by a higher-priority one re-reads its unacknowledged bytes.
pub(crate) const YIELD_POLL: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Copy)]
struct Entry {
    priority: ChannelPriority,
    /// Sends in progress (waiting for admission or being handed to the engine).
    sending: u32,
    last_send: Option<Instant>,
}

impl Entry {
    fn active(&self, now: Instant) -> bool {
        self.sending > 0
            || self
                .last_send
                .is_some_and(|at| now.saturating_duration_since(at) < ACTIVE_SPAN)
    }
}

/// The window a channel without send pacing and without a send-buffer limit is counted with.
const UNPACED_WINDOW: usize = 1024 * 1024;

/// The channels of one link and their recent activity.
#[derive(Debug)]
pub(crate) struct Scheduler {
    entries: StdMutex<Vec<Option<Entry>>>,
    /// The window of a channel without send pacing: the send-buffer limit.
    unpaced_window: usize,
}

impl Scheduler {
    pub(crate) fn new(send_buffer_limit: Option<usize>) -> Arc<Self> {
        Arc::new(Self {
            entries: StdMutex::new(Vec::new()),
            unpaced_window: send_buffer_limit.unwrap_or(UNPACED_WINDOW),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<Entry>>> {
        // Plain data, consistent after any panic: keep using it.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a channel; it leaves when the returned member is dropped.
    pub(crate) fn join(self: &Arc<Self>, priority: ChannelPriority) -> Member {
        let mut entries = self.lock();
        let entry = Some(Entry {
            priority,
            sending: 0,
            last_send: None,
        });
        let index = match entries.iter().position(Option::is_none) {
            Some(free) => {
                entries[free] = entry;
                free
            }
            None => {
                entries.push(entry);
                entries.len() - 1
            }
        };
        Member {
            scheduler: Arc::clone(self),
            index,
            priority,
        }
    }

    /// The highest priority above `priority` among the active channels, if any.
    fn highest_active_above(
        &self,
        priority: ChannelPriority,
        now: Instant,
    ) -> Option<ChannelPriority> {
        self.lock()
            .iter()
            .flatten()
            .filter(|e| e.priority > priority && e.active(now))
            .map(|e| e.priority)
            .max()
    }
}

/// One channel's place in its link's [`Scheduler`].
#[derive(Debug)]
pub(crate) struct Member {
    scheduler: Arc<Scheduler>,
    index: usize,
    priority: ChannelPriority,
}

impl Member {
    pub(crate) fn priority(&self) -> ChannelPriority {
        self.priority
    }

    /// The window of a channel without send pacing.
    pub(crate) fn unpaced_window(&self) -> usize {
        self.scheduler.unpaced_window
    }

    /// Marks a send in progress until the returned guard is dropped.
    pub(crate) fn begin_send(&self) -> SendGuard<'_> {
        if let Some(Some(e)) = self.scheduler.lock().get_mut(self.index) {
            e.sending += 1;
            e.last_send = Some(Instant::now());
        }
        SendGuard { member: self }
    }

    /// How many unacknowledged bytes this channel may have before handing the engine another
    /// message, given its own window: `None` while no channel of higher priority is active.
    pub(crate) fn share(&self, window: usize, now: Instant) -> Option<usize> {
        let above = self.scheduler.highest_active_above(self.priority, now)?;
        Some(share_of(window, self.priority, above))
    }
}

/// The share of `window` a channel of priority `own` keeps while `above` is active.
pub(crate) fn share_of(window: usize, own: ChannelPriority, above: ChannelPriority) -> usize {
    (window.saturating_mul(own.weight()) / above.weight().max(1)).max(MIN_SHARE)
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(slot) = self.scheduler.lock().get_mut(self.index) {
            *slot = None;
        }
    }
}

/// A send in progress; see [`Member::begin_send`].
#[derive(Debug)]
pub(crate) struct SendGuard<'a> {
    member: &'a Member,
}

impl Drop for SendGuard<'_> {
    fn drop(&mut self) {
        if let Some(Some(e)) = self.member.scheduler.lock().get_mut(self.member.index) {
            e.sending = e.sending.saturating_sub(1);
            e.last_send = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: usize = 1024;

    #[test]
    fn dcep_values_round_trip_and_other_values_map_to_the_w3c_ranges() {
        for p in [
            ChannelPriority::VeryLow,
            ChannelPriority::Low,
            ChannelPriority::Medium,
            ChannelPriority::High,
        ] {
            assert_eq!(ChannelPriority::from_dcep(p.dcep_value()), p);
            assert_eq!(p.as_str().parse::<ChannelPriority>(), Ok(p));
        }
        assert_eq!(ChannelPriority::from_dcep(0), ChannelPriority::VeryLow);
        assert_eq!(ChannelPriority::from_dcep(129), ChannelPriority::Low);
        assert_eq!(ChannelPriority::from_dcep(300), ChannelPriority::Medium);
        assert_eq!(ChannelPriority::from_dcep(u16::MAX), ChannelPriority::High);
        assert_eq!(ChannelPriority::default().dcep_value(), 256);
        assert!("urgent".parse::<ChannelPriority>().is_err());
    }

    /// Values between and beyond the four levels, with the priority Chromium 156 reports for a
    /// channel whose channel-open message carried them (`tests/interop/priority-probe.mjs`,
    /// with the RTCDataChannelPriority runtime feature): both stacks read them the same way.
    #[test]
    fn values_between_the_levels_map_as_chromium_maps_them() {
        use ChannelPriority::*;
        let chromium = [
            (0, VeryLow),
            (1, VeryLow),
            (127, VeryLow),
            (128, VeryLow),
            (129, Low),
            (255, Low),
            (256, Low),
            (257, Medium),
            (511, Medium),
            (512, Medium),
            (513, High),
            (1023, High),
            (1024, High),
            (1025, High),
            (4096, High),
            (65535, High),
        ];
        for (value, priority) in chromium {
            assert_eq!(ChannelPriority::from_dcep(value), priority, "DCEP {value}");
        }
    }

    #[test]
    fn a_channel_yields_only_to_an_active_channel_of_higher_priority() {
        let s = Scheduler::new(None);
        let bulk = s.join(ChannelPriority::Low);
        let same = s.join(ChannelPriority::Low);
        let now = Instant::now();
        assert_eq!(bulk.share(MIB, now), None, "nothing else active");
        {
            let _g = same.begin_send();
            assert_eq!(bulk.share(MIB, now), None, "equal priority does not yield");
        }
        let urgent = s.join(ChannelPriority::High);
        assert_eq!(bulk.share(MIB, now), None, "registered but idle");
        {
            let _g = urgent.begin_send();
            assert_eq!(bulk.share(MIB, Instant::now()), Some(MIB / 4));
            assert_eq!(
                urgent.share(MIB, Instant::now()),
                None,
                "nothing above high"
            );
        }
        // Still active for a while after its last send, then not.
        assert_eq!(bulk.share(MIB, Instant::now()), Some(MIB / 4));
        let later = Instant::now() + ACTIVE_SPAN + Duration::from_millis(1);
        assert_eq!(bulk.share(MIB, later), None);
        // A dropped member no longer counts.
        let _g = urgent.begin_send();
        drop(_g);
        drop(urgent);
        assert_eq!(bulk.share(MIB, Instant::now()), None);
    }

    const MIB: usize = 1024 * KIB;

    #[test]
    fn the_share_follows_the_weights_with_a_floor() {
        use ChannelPriority::*;
        assert_eq!(share_of(MIB, VeryLow, High), 128 * KIB);
        assert_eq!(share_of(MIB, Low, High), 256 * KIB);
        assert_eq!(share_of(MIB, Medium, High), 512 * KIB);
        assert_eq!(share_of(MIB, Low, Medium), 512 * KIB);
        assert_eq!(share_of(256 * KIB, VeryLow, High), MIN_SHARE);
    }
}
