//! peerlink: not in upstream. A rate-based, loss-tolerant congestion controller, modelled on
//! BBR (version 1), kept deliberately small.
//!
//! The controller measures the path instead of reacting to loss:
//!
//! * every SACK that acknowledges new data gives a *delivery-rate sample*: bytes acknowledged
//!   between sending the most recently sent chunk it covers and now, over the longer of the
//!   send and the acknowledgement intervals (so a compressed burst of SACKs does not inflate
//!   it);
//! * the bottleneck bandwidth is the largest sample of the last [`BW_WINDOW_ROUNDS`] round
//!   trips, and the path's propagation delay the smallest RTT sample of the last
//!   [`MIN_RTT_WINDOW`];
//! * the congestion window is [`CWND_GAIN`] × bandwidth × min RTT (twice the bandwidth-delay
//!   product), at least [`MIN_CWND_PACKETS`] packets.
//!
//! A random loss therefore leaves the window alone: it is repaired by fast retransmit and the
//! delivery rate barely moves. A real capacity drop lowers every delivery-rate sample, so the
//! bandwidth estimate, and with it the window, falls within [`BW_WINDOW_ROUNDS`] round trips.
//! A retransmission timeout still resets the window to one packet (it grows back toward the
//! model's window by the bytes acknowledged, doubling per round trip), and a second timeout in
//! a row discards the bandwidth estimate and starts over in `Startup`, so a path that has
//! collapsed is probed from scratch instead of being sent the old rate.
//!
//! Differences from BBR: no pacing (the association is ACK-clocked, sending only when a SACK
//! frees window), hence no pacing-gain cycle and no `Drain` state; the window alone bounds the
//! queue the sender can build (one bandwidth-delay product). `ProbeRTT` (the window held at
//! four packets for 200 ms when the min-RTT sample is ten seconds old) is kept, since without
//! it a standing queue would inflate the min-RTT estimate and the window with it.

use std::time::{Duration, Instant};

/// Which congestion controller an association uses for the DATA it sends.
///
/// The choice is local: it changes when this side sends, never what it puts on the wire, so
/// either works with any SCTP peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CongestionControl {
    /// RFC 4960 / RFC 9260 section 7.2: slow start and congestion avoidance, the window halved
    /// on every loss detected by fast retransmit and reset to one packet on a retransmission
    /// timeout; initial window min(4 × MTU, max(2 × MTU, 4380 bytes)). Throughput under
    /// random loss p is bounded near MTU / RTT × 1.22 / √p.
    #[default]
    Standard,
    /// Rate-based and loss-tolerant (BBR-style, see the module documentation): the window
    /// follows the measured bandwidth-delay product, random loss does not shrink it, a
    /// retransmission timeout still does. Initial window ten packets (as TCP's RFC 6928).
    RateBased,
}

/// Round trips over which the bottleneck-bandwidth estimate is the maximum sample.
pub(crate) const BW_WINDOW_ROUNDS: u64 = 10;
/// How long a min-RTT sample stays valid before `ProbeRTT` re-measures it.
pub(crate) const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);
/// How long `ProbeRTT` holds the window at [`MIN_CWND_PACKETS`].
const PROBE_RTT_DURATION: Duration = Duration::from_millis(200);
/// Congestion window as a multiple of the estimated bandwidth-delay product.
pub(crate) const CWND_GAIN: f64 = 2.0;
/// `Startup` window gain (BBR's 2/ln 2): room for the bandwidth to double each round trip.
const STARTUP_CWND_GAIN: f64 = 2.89;
/// Floor of the bandwidth filter's age bound (ten min RTTs), for very short paths.
const MIN_BW_AGE: Duration = Duration::from_millis(100);
/// Smallest window, in packets.
pub(crate) const MIN_CWND_PACKETS: u32 = 4;
/// Smallest round trip the window is sized for. On a LAN or loopback the measured min RTT is
/// tens of microseconds, while acknowledgements arrive in bursts spaced by the receiver's
/// scheduling (a busy process, a thread hop into an application runtime) by a millisecond or
/// more; a window of 2 × bandwidth × 50 µs then idles the sender between those bursts (two
/// Node processes moved 48 MB/s instead of the 100+ the standard controller allowed). Sizing
/// the window for at least this round trip leaves room for that aggregation, and changes
/// nothing on paths whose round trip is longer.
pub(crate) const MIN_WINDOW_RTT: Duration = Duration::from_millis(2);
/// The loss rate is judged over this many packets' worth of delivered and lost bytes.
const LOSS_SAMPLE_PACKETS: u32 = 128;
/// A loss rate above this (per mille) over one sample means the window overflowed a queue
/// (a receiver's socket that drops bursts), not random loss: the [`MIN_WINDOW_RTT`] floor is
/// then suspended. Random loss of a few percent stays far below it over 128 packets.
const OVERFLOW_LOSS_PER_MILLE: u64 = 100;
/// How long the floor stays suspended after the first overflow; doubled on every further one.
const FLOOR_BACKOFF_START: Duration = Duration::from_secs(30);
const FLOOR_BACKOFF_MAX: Duration = Duration::from_secs(600);
/// `Startup` ends after this many round trips without 25 % bandwidth growth.
const FULL_BW_ROUNDS: u32 = 3;

/// The rate controller's initial window: RFC 6928's min(10 × MTU, max(2 × MTU, 14600)).
pub(crate) fn initial_window(mtu: u32) -> u32 {
    mtu.saturating_mul(10)
        .min(mtu.saturating_mul(2).max(14600))
}

/// What the controller knew when a chunk was first sent; stored in the chunk and read back
/// when a SACK acknowledges it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SendState {
    /// When the chunk was sent.
    pub(crate) sent: Instant,
    /// Bytes delivered (acknowledged) when it was sent.
    delivered: u64,
    /// When `delivered` last grew, as of sending.
    delivered_time: Instant,
    /// Send time of the most recently sent chunk acknowledged so far, as of sending.
    first_sent_time: Instant,
    /// Sent while the sender had less to send than its window allowed.
    app_limited: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Startup,
    ProbeBw,
    ProbeRtt,
}

/// The rate-based controller's state; see the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct RateController {
    mtu: u32,
    mode: Mode,
    /// Bytes acknowledged so far (cumulatively and by gap reports).
    delivered: u64,
    delivered_time: Option<Instant>,
    first_sent_time: Option<Instant>,
    /// Samples of chunks sent before `delivered` passes this mark are app-limited (0: none).
    app_limited_until: u64,
    /// Round trips counted: a round ends when a chunk sent after it began is acknowledged.
    round: u64,
    next_round_delivered: u64,
    /// Per-round maximum delivery rate (round, bytes/s, when last raised), indexed by round
    /// modulo the window.
    bw_samples: [(u64, u64, Option<Instant>); BW_WINDOW_ROUNDS as usize],
    /// Window to return to (halved) once the peer acknowledges again after one timeout.
    restore_cwnd: Option<u32>,
    /// The latest time the controller saw (for the bandwidth filter's age bound).
    now: Option<Instant>,
    min_rtt: Option<Duration>,
    min_rtt_stamp: Option<Instant>,
    full_bw: u64,
    full_bw_count: u32,
    filled_pipe: bool,
    probe_rtt_done: Option<Instant>,
    probe_rtt_round: Option<u64>,
    prior_cwnd: u32,
    /// `delivered` when the current loss sample began, and the bytes found lost since.
    loss_sample_start: u64,
    loss_sample_lost: u64,
    /// The [`MIN_WINDOW_RTT`] floor is suspended until then (an overflow was seen).
    floor_off_until: Option<Instant>,
    floor_backoff: Duration,
}

impl RateController {
    pub(crate) fn new(mtu: u32) -> Self {
        Self {
            mtu,
            mode: Mode::Startup,
            delivered: 0,
            delivered_time: None,
            first_sent_time: None,
            app_limited_until: 0,
            round: 0,
            next_round_delivered: 0,
            bw_samples: [(0, 0, None); BW_WINDOW_ROUNDS as usize],
            restore_cwnd: None,
            now: None,
            min_rtt: None,
            min_rtt_stamp: None,
            full_bw: 0,
            full_bw_count: 0,
            filled_pipe: false,
            probe_rtt_done: None,
            probe_rtt_round: None,
            prior_cwnd: 0,
            loss_sample_start: 0,
            loss_sample_lost: 0,
            floor_off_until: None,
            floor_backoff: FLOOR_BACKOFF_START,
        }
    }

    /// Bottleneck-bandwidth estimate, bytes per second (0 before any sample): the largest
    /// sample of the last [`BW_WINDOW_ROUNDS`] rounds that is also no older than that many
    /// min RTTs. The age bound matters when a capacity drop fills a queue: round trips then
    /// stretch with the queueing delay, and ten of them would keep the old rate for seconds.
    pub(crate) fn bandwidth(&self) -> u64 {
        let oldest = self.round.saturating_sub(BW_WINDOW_ROUNDS - 1);
        let max_age = self
            .min_rtt
            .map(|rtt| (rtt * BW_WINDOW_ROUNDS as u32).max(MIN_BW_AGE));
        self.bw_samples
            .iter()
            .filter(|(round, _, at)| {
                *round >= oldest
                    && match (max_age, *at, self.now) {
                        (Some(max_age), Some(at), Some(now)) => {
                            now.saturating_duration_since(at) <= max_age
                        }
                        _ => true,
                    }
            })
            .map(|(_, bw, _)| *bw)
            .max()
            .unwrap_or(0)
    }

    /// Min-RTT estimate.
    pub(crate) fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    fn min_cwnd(&self) -> u32 {
        self.mtu.saturating_mul(MIN_CWND_PACKETS)
    }

    /// `gain` × bandwidth × min RTT, at least the minimum window; the initial window while
    /// there is no estimate.
    fn target_cwnd(&self, gain: f64) -> u32 {
        let bw = self.bandwidth();
        match self.min_rtt {
            Some(rtt) if bw > 0 => {
                let rtt = if self.floor_active() {
                    rtt.max(MIN_WINDOW_RTT)
                } else {
                    rtt
                };
                let bdp = bw as f64 * rtt.as_secs_f64();
                ((bdp * gain) as u64).min(u64::from(u32::MAX)) as u32
            }
            _ => initial_window(self.mtu),
        }
        .max(self.min_cwnd())
    }

    /// Whether the window is sized for at least [`MIN_WINDOW_RTT`] (not suspended by an
    /// overflow).
    pub(crate) fn floor_active(&self) -> bool {
        match (self.floor_off_until, self.now) {
            (Some(until), Some(now)) => now >= until,
            _ => true,
        }
    }

    /// Fast retransmission found `bytes` of chunks lost. Over every sample of
    /// [`LOSS_SAMPLE_PACKETS`] packets, a loss rate above [`OVERFLOW_LOSS_PER_MILLE`] suspends
    /// the round-trip floor (a receiver that drops the bursts of the larger window: Chromium's
    /// socket does), for one second, then two, four … up to a minute.
    pub(crate) fn on_lost(&mut self, bytes: u64) {
        self.loss_sample_lost += bytes;
        self.judge_loss_sample();
    }

    fn judge_loss_sample(&mut self) {
        let delivered = self.delivered.saturating_sub(self.loss_sample_start);
        let total = delivered + self.loss_sample_lost;
        if total < u64::from(self.mtu.max(1)) * u64::from(LOSS_SAMPLE_PACKETS) {
            return;
        }
        if self.loss_sample_lost * 1000 > total * OVERFLOW_LOSS_PER_MILLE {
            if let Some(now) = self.now {
                if self.floor_active() {
                    self.floor_off_until = Some(now + self.floor_backoff);
                    self.floor_backoff = (self.floor_backoff * 2).min(FLOOR_BACKOFF_MAX);
                }
            }
        }
        self.loss_sample_start = self.delivered;
        self.loss_sample_lost = 0;
    }

    /// A chunk is sent for the first time; `inflight` is the bytes outstanding before it.
    pub(crate) fn on_send(&mut self, now: Instant, inflight: usize) -> SendState {
        if inflight == 0 || self.delivered_time.is_none() {
            // Nothing in flight: the next sample's intervals start now.
            self.first_sent_time = Some(now);
            self.delivered_time = Some(now);
        }
        SendState {
            sent: now,
            delivered: self.delivered,
            delivered_time: self.delivered_time.unwrap_or(now),
            first_sent_time: self.first_sent_time.unwrap_or(now),
            app_limited: self.app_limited_until != 0,
        }
    }

    /// The sender ran out of data with `inflight` bytes outstanding and window to spare:
    /// samples of what it sends next understate the path until those bytes are acknowledged.
    pub(crate) fn on_app_limited(&mut self, inflight: usize) {
        self.app_limited_until = (self.delivered + inflight as u64).max(1);
    }

    /// A SACK acknowledged `acked` new bytes; `latest` is the send state of the most recently
    /// sent chunk among them that was sent once (none: only retransmissions were acknowledged).
    /// `inflight` is the bytes still outstanding. Returns the new window.
    pub(crate) fn on_ack(
        &mut self,
        now: Instant,
        acked: u64,
        latest: Option<SendState>,
        inflight: usize,
        cwnd: u32,
    ) -> u32 {
        if acked == 0 {
            return cwnd;
        }
        self.delivered += acked;
        self.delivered_time = Some(now);
        self.now = Some(now);
        self.judge_loss_sample();
        if self.app_limited_until != 0 && self.delivered > self.app_limited_until {
            self.app_limited_until = 0;
        }

        let mut round_start = false;
        if let Some(p) = latest {
            self.first_sent_time = Some(p.sent);
            if p.delivered >= self.next_round_delivered {
                self.next_round_delivered = self.delivered;
                self.round += 1;
                round_start = true;
            }

            // Min RTT, refreshed when the old sample has expired.
            let rtt = now.saturating_duration_since(p.sent);
            let expired = self
                .min_rtt_stamp
                .is_some_and(|stamp| now.saturating_duration_since(stamp) > MIN_RTT_WINDOW);
            if self.min_rtt.is_none_or(|min| rtt <= min) || expired {
                self.min_rtt = Some(rtt);
                self.min_rtt_stamp = Some(now);
            }
            if expired && self.mode != Mode::ProbeRtt {
                self.mode = Mode::ProbeRtt;
                self.prior_cwnd = cwnd;
                self.probe_rtt_done = None;
                self.probe_rtt_round = None;
            }

            // Delivery rate over the longer of the send and acknowledgement intervals; an
            // interval shorter than the min RTT comes from compressed SACKs and is dropped.
            let send_elapsed = p.sent.saturating_duration_since(p.first_sent_time);
            let ack_elapsed = now.saturating_duration_since(p.delivered_time);
            let interval = send_elapsed.max(ack_elapsed);
            if !interval.is_zero() && self.min_rtt.is_none_or(|min| interval >= min) {
                let bytes = self.delivered - p.delivered;
                let rate = (bytes as f64 / interval.as_secs_f64()) as u64;
                if !p.app_limited || rate >= self.bandwidth() {
                    let slot = &mut self.bw_samples[(self.round % BW_WINDOW_ROUNDS) as usize];
                    if slot.0 != self.round {
                        *slot = (self.round, 0, None);
                    }
                    if rate >= slot.1 {
                        *slot = (self.round, rate, Some(now));
                    }
                }
            }

            // Startup ends when the bandwidth stops growing by a quarter per round.
            if round_start && !self.filled_pipe && !p.app_limited {
                let bw = self.bandwidth();
                if bw >= self.full_bw.saturating_add(self.full_bw / 4) {
                    self.full_bw = bw;
                    self.full_bw_count = 0;
                } else {
                    self.full_bw_count += 1;
                    if self.full_bw_count >= FULL_BW_ROUNDS {
                        self.filled_pipe = true;
                        if self.mode == Mode::Startup {
                            self.mode = Mode::ProbeBw;
                        }
                    }
                }
            }
        }

        if self.mode == Mode::ProbeRtt {
            let floor = self.min_cwnd();
            if self.probe_rtt_done.is_none() && inflight <= floor as usize {
                self.probe_rtt_done = Some(now + PROBE_RTT_DURATION);
                self.probe_rtt_round = Some(self.round + 1);
            }
            let done = self.probe_rtt_done.is_some_and(|at| now >= at)
                && self.probe_rtt_round.is_some_and(|r| self.round >= r);
            if !done {
                return floor;
            }
            self.min_rtt_stamp = Some(now);
            let gain = if self.filled_pipe {
                self.mode = Mode::ProbeBw;
                CWND_GAIN
            } else {
                self.mode = Mode::Startup;
                STARTUP_CWND_GAIN
            };
            // Back to the window before the probe, but no more than the model allows now.
            return cwnd
                .max(self.prior_cwnd)
                .min(self.target_cwnd(gain))
                .max(self.min_cwnd());
        }

        let acked = u32::try_from(acked).unwrap_or(u32::MAX);
        // After a single timeout the path delivers again: resume from half the old window.
        let cwnd = match self.restore_cwnd.take() {
            Some(restore) => cwnd.max(restore),
            None => cwnd,
        };
        let cwnd = if self.filled_pipe {
            cwnd.saturating_add(acked).min(self.target_cwnd(CWND_GAIN))
        } else if cwnd < self.target_cwnd(STARTUP_CWND_GAIN)
            || self.delivered < u64::from(initial_window(self.mtu))
        {
            cwnd.saturating_add(acked)
        } else {
            cwnd
        };
        cwnd.max(self.min_cwnd())
    }

    /// The retransmission timer expired for the `n_rtos`-th time in a row, with the window at
    /// `cwnd`. Returns the new window: one packet. After a single timeout the first SACK of new
    /// data brings the window back to half of `cwnd` (bounded by the model's window), so a
    /// lost retransmission on a lossy path costs one round trip rather than a slow start from
    /// one packet. From the second timeout in a row on, nothing is restored, the bandwidth
    /// estimate is discarded and the controller starts over in `Startup`.
    pub(crate) fn on_timeout(&mut self, n_rtos: usize, cwnd: u32) -> u32 {
        self.restore_cwnd = None;
        if n_rtos <= 1 {
            self.restore_cwnd = Some((cwnd / 2).max(self.min_cwnd()));
        } else {
            self.bw_samples = [(0, 0, None); BW_WINDOW_ROUNDS as usize];
            self.full_bw = 0;
            self.full_bw_count = 0;
            self.filled_pipe = false;
            self.mode = Mode::Startup;
        }
        self.mtu
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MTU: u32 = 1200;

    /// Drives the controller over a path with a `bw` bytes/s bottleneck and a propagation
    /// round trip of `rtt`, keeping the window full, for `rounds` round trips of virtual time;
    /// every packet is acknowledged on its own. Returns the window.
    fn steady(
        c: &mut RateController,
        start: Instant,
        bw: u64,
        rtt: Duration,
        rounds: u32,
        mut cwnd: u32,
    ) -> (u32, Instant) {
        let per_packet = Duration::from_secs_f64(f64::from(MTU) / bw as f64);
        let mut now = start;
        let mut in_flight: std::collections::VecDeque<(SendState, Instant)> = Default::default();
        let mut last_ack = start;
        let end = start + rtt * rounds;
        while now < end {
            while (in_flight.len() + 1) * (MTU as usize) <= cwnd as usize {
                let state = c.on_send(now, in_flight.len() * MTU as usize);
                // The bottleneck serialises packets: one per `per_packet`.
                let ack_at = (now + rtt).max(last_ack + per_packet);
                last_ack = ack_at;
                in_flight.push_back((state, ack_at));
            }
            let (state, ack_at) = in_flight.pop_front().unwrap();
            now = ack_at;
            let inflight = in_flight.len() * MTU as usize;
            cwnd = c.on_ack(now, u64::from(MTU), Some(state), inflight, cwnd);
        }
        (cwnd, now)
    }

    #[test]
    fn initial_window_is_ten_packets() {
        assert_eq!(initial_window(1200), 12000);
        // RFC 6928's cap for large packets: max(2 × MTU, 14600).
        assert_eq!(initial_window(9000), 18000);
    }

    #[test]
    fn window_converges_to_twice_the_bandwidth_delay_product() {
        let mut c = RateController::new(MTU);
        let bw = 1_000_000; // 1 MB/s
        let rtt = Duration::from_millis(100);
        let (cwnd, _) = steady(&mut c, Instant::now(), bw, rtt, 40, initial_window(MTU));
        let bdp = bw as f64 * rtt.as_secs_f64();
        let ratio = f64::from(cwnd) / bdp;
        assert!(c.filled_pipe, "startup ended");
        assert!((1.5..=2.5).contains(&ratio), "cwnd {cwnd} is {ratio:.2} × BDP");
    }

    #[test]
    fn a_short_round_trip_sizes_the_window_for_the_minimum_window_rtt() {
        let mut c = RateController::new(MTU);
        let bw = 100_000_000; // 100 MB/s
        let rtt = Duration::from_micros(50);
        let (cwnd, _) = steady(&mut c, Instant::now(), bw, rtt, 4000, initial_window(MTU));
        assert!(c.min_rtt().unwrap() < Duration::from_millis(1));
        let floor_bdp = bw as f64 * MIN_WINDOW_RTT.as_secs_f64();
        let ratio = f64::from(cwnd) / floor_bdp;
        // Twice the bandwidth times the floor, not times the 50 µs measured.
        assert!((1.0..=3.0).contains(&ratio), "cwnd {cwnd} is {ratio:.2} × the floor's BDP");
    }

    #[test]
    fn heavy_loss_suspends_the_round_trip_floor_and_random_loss_does_not() {
        let start = Instant::now();
        let mut c = RateController::new(MTU);
        let bw = 100_000_000;
        let (mut cwnd, mut now) =
            steady(&mut c, start, bw, Duration::from_micros(50), 4000, initial_window(MTU));
        let floored = cwnd;
        // 2 % of the packets lost: the floor stays.
        for i in 0..1000u32 {
            now += Duration::from_micros(10);
            if i % 50 == 0 {
                c.on_lost(u64::from(MTU));
            }
            cwnd = c.on_ack(now, u64::from(MTU), None, 0, cwnd);
        }
        assert!(c.floor_active(), "2 % loss kept the floor");
        // Every fourth packet lost: an overflow; the window shrinks to the measured BDP.
        for _ in 0..200u32 {
            now += Duration::from_micros(10);
            c.on_lost(u64::from(MTU));
            for _ in 0..3 {
                cwnd = c.on_ack(now, u64::from(MTU), None, 0, cwnd);
            }
        }
        assert!(!c.floor_active(), "25 % loss suspended the floor");
        assert!(c.target_cwnd(CWND_GAIN) < floored / 10);
        // A second later it is tried again.
        now += FLOOR_BACKOFF_START + Duration::from_millis(1);
        c.on_ack(now, u64::from(MTU), None, 0, cwnd);
        assert!(c.floor_active(), "the floor returns after the backoff");
    }

    #[test]
    fn timeouts_reset_the_window_and_a_second_one_the_estimate() {
        let mut c = RateController::new(MTU);
        let (cwnd, _) = steady(
            &mut c,
            Instant::now(),
            1_000_000,
            Duration::from_millis(50),
            40,
            initial_window(MTU),
        );
        assert!(cwnd > 10 * MTU);
        assert_eq!(c.on_timeout(1, cwnd), MTU);
        assert!(c.bandwidth() > 0, "one timeout keeps the estimate");
        assert_eq!(c.restore_cwnd, Some(cwnd / 2));
        assert_eq!(c.on_timeout(2, MTU), MTU);
        assert_eq!(c.bandwidth(), 0, "a second one in a row discards it");
        assert_eq!(c.restore_cwnd, None, "and restores nothing");
        assert_eq!(c.mode, Mode::Startup);
    }
}
