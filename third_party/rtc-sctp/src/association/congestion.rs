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
//! New data is *paced*: a token bucket releases it at [`PACING_GAIN`] × the bandwidth
//! estimate ([`STARTUP_PACING_GAIN`] in `Startup`), at most [`PACING_BURST`] of it back to back,
//! and the association reports the release time through `poll_timeout`. A window's worth
//! therefore no longer leaves in one burst when a SACK frees it, which a receiver's socket
//! (Chromium's, at the system's default buffer limits) dropped. Retransmissions and control
//! chunks are not paced.
//!
//! Loss is ignored unless it marks a queue *overflowing*: a run of [`OVERFLOW_RUN_PACKETS`]
//! packets lost back to back, or more than [`OVERFLOW_LOSS_PER_MILLE`] ‰ of a
//! [`LOSS_SAMPLE_PACKETS`]-packet sample. Independent random loss of a few percent almost never
//! does either. An overflow caps the window at [`OVERFLOW_BETA`] of the flight, once per round
//! trip; the cap grows back by one packet per round trip and is dropped when the model's window
//! fits under it (BBRv2's `inflight_hi`, with overflow told apart from random loss).
//!
//! Differences from BBR: no pacing-gain cycle and no `Drain` state (the window bounds the
//! queue the sender can build); `ProbeRTT` (the window held at four packets for 200 ms when
//! the min-RTT sample is ten seconds old) is kept, since without it a standing queue would
//! inflate the min-RTT estimate and the window with it.

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
/// A loss rate above this (per mille) over one sample means the flight overflowed a queue (a
/// receiver's socket, a bottleneck's buffer), not random loss: 2 % random loss exceeds it over
/// 128 packets with a probability near one in a million.
const OVERFLOW_LOSS_PER_MILLE: u64 = 100;
/// This many packets lost back to back (one gap in a SACK) also mean overflow: with
/// independent random loss p a run of three has probability p³ (8 in a million at 2 %).
const OVERFLOW_RUN_PACKETS: u32 = 3;
/// On overflow the flight is capped at this fraction of what was in flight.
const OVERFLOW_BETA: f64 = 0.7;
/// `Startup` ends after this many round trips without 25 % bandwidth growth.
const FULL_BW_ROUNDS: u32 = 3;
/// Pacing rate as a multiple of the bandwidth estimate once the pipe is full: a little above
/// it, so the sender can find more bandwidth (the window still bounds what is in flight).
const PACING_GAIN: f64 = 1.25;
/// Pacing gain in `Startup` (BBR's 2/ln 2), so the rate can double every round trip.
const STARTUP_PACING_GAIN: f64 = 2.89;
/// The pacer lets at most this much time at the pacing rate leave back to back. The drivers'
/// timers resolve about a millisecond, so a smaller bucket would cap the rate below the
/// pacing rate whenever acknowledgements do not refill it in between.
const PACING_BURST: Duration = Duration::from_millis(1);
/// The pacer's bucket holds at least this many packets.
const MIN_PACING_BURST_PACKETS: u32 = 4;

/// The rate controller's initial window: RFC 6928's min(10 × MTU, max(2 × MTU, 14600)).
pub(crate) fn initial_window(mtu: u32) -> u32 {
    mtu.saturating_mul(10).min(mtu.saturating_mul(2).max(14600))
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
    /// Upper bound on the window set by the last overflow (`None`: none seen, or grown out),
    /// and the round it was set in (one cut per round).
    inflight_cap: Option<u32>,
    cap_round: u64,
    /// Bytes the pacer may still send back to back (negative: sent ahead of the rate), as of
    /// `pacing_stamp`.
    pacing_tokens: f64,
    pacing_stamp: Option<Instant>,
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
            inflight_cap: None,
            cap_round: 0,
            pacing_tokens: 0.0,
            pacing_stamp: None,
        }
    }

    /// Pacing rate, bytes per second: the bandwidth estimate times the mode's gain. `None`
    /// (unpaced, the window alone limits) before the first estimate and in `ProbeRTT`, whose
    /// window is a few packets anyway.
    pub(crate) fn pacing_rate(&self) -> Option<f64> {
        let bw = self.bandwidth();
        if bw == 0 || self.mode == Mode::ProbeRtt {
            return None;
        }
        let gain = if self.filled_pipe {
            PACING_GAIN
        } else {
            STARTUP_PACING_GAIN
        };
        Some(bw as f64 * gain)
    }

    /// How many bytes the pacer lets go back to back at `rate`.
    fn pacing_burst(&self, rate: f64) -> f64 {
        (rate * PACING_BURST.as_secs_f64())
            .max(f64::from(self.mtu) * f64::from(MIN_PACING_BURST_PACKETS))
    }

    /// Refills the pacer's bucket up to `now` and returns what it holds: the bytes that may
    /// be sent now (a chunk may go while this is positive, even if it overshoots; the debt is
    /// paid before the next one). `None`: not paced.
    pub(crate) fn pacing_budget(&mut self, now: Instant) -> Option<f64> {
        let Some(rate) = self.pacing_rate() else {
            self.pacing_stamp = None;
            return None;
        };
        let burst = self.pacing_burst(rate);
        let tokens = match self.pacing_stamp {
            Some(stamp) => (self.pacing_tokens
                + rate * now.saturating_duration_since(stamp).as_secs_f64())
            .min(burst),
            // The first paced send after an unpaced stretch: a full bucket.
            None => burst,
        };
        self.pacing_tokens = tokens;
        self.pacing_stamp = Some(now.max(self.pacing_stamp.unwrap_or(now)));
        Some(tokens)
    }

    /// `bytes` left under the pacer's control.
    pub(crate) fn on_paced_send(&mut self, bytes: usize) {
        if self.pacing_stamp.is_some() {
            self.pacing_tokens -= bytes as f64;
        }
    }

    /// When the bucket, empty or in debt as of its last refill, holds a positive amount again.
    pub(crate) fn pacing_resume_at(&self) -> Option<Instant> {
        let (rate, stamp) = (self.pacing_rate()?, self.pacing_stamp?);
        let debt = (-self.pacing_tokens).max(0.0) + 1.0;
        Some(stamp + Duration::from_secs_f64(debt / rate))
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
                let rtt = rtt.max(MIN_WINDOW_RTT);
                let bdp = bw as f64 * rtt.as_secs_f64();
                ((bdp * gain) as u64).min(u64::from(u32::MAX)) as u32
            }
            _ => initial_window(self.mtu),
        }
        .max(self.min_cwnd())
    }

    /// The window's upper bound after an overflow, if one holds.
    pub(crate) fn inflight_cap(&self) -> Option<u32> {
        self.inflight_cap
    }

    /// Fast retransmission found `bytes` of chunks lost, the longest run of them back to back
    /// being `run` bytes, with `inflight` bytes outstanding.
    ///
    /// Random loss is ignored (the window follows the delivery rate). Loss that marks a queue
    /// overflowing — a run of [`OVERFLOW_RUN_PACKETS`] packets, or more than
    /// [`OVERFLOW_LOSS_PER_MILLE`] of a [`LOSS_SAMPLE_PACKETS`]-packet sample — caps the
    /// window at [`OVERFLOW_BETA`] of the flight, once per round trip; the cap then grows by
    /// one packet per round trip (see [`Self::on_ack`]). A receiver whose socket holds less
    /// than the window (Chromium's at the system's default buffer limits) is thus kept just
    /// below what it drops, while a lossy path keeps its full window.
    pub(crate) fn on_lost(&mut self, bytes: u64, run: u64, inflight: usize) {
        self.loss_sample_lost += bytes;
        if run >= u64::from(self.mtu) * u64::from(OVERFLOW_RUN_PACKETS - 1) + 1 {
            self.on_overflow(inflight);
        }
        if self.judge_loss_sample() {
            self.on_overflow(inflight);
        }
    }

    fn on_overflow(&mut self, inflight: usize) {
        if self.inflight_cap.is_some() && self.cap_round >= self.round {
            return;
        }
        self.inflight_cap = Some(((inflight as f64 * OVERFLOW_BETA) as u32).max(self.min_cwnd()));
        self.cap_round = self.round;
        // A queue already overflows: the pipe is full, `Startup` is over.
        if self.mode == Mode::Startup {
            self.filled_pipe = true;
            self.mode = Mode::ProbeBw;
        }
    }

    /// Closes the loss sample once it covers enough packets; returns whether it overflowed.
    fn judge_loss_sample(&mut self) -> bool {
        let delivered = self.delivered.saturating_sub(self.loss_sample_start);
        let total = delivered + self.loss_sample_lost;
        if total < u64::from(self.mtu.max(1)) * u64::from(LOSS_SAMPLE_PACKETS) {
            return false;
        }
        let overflow = self.loss_sample_lost * 1000 > total * OVERFLOW_LOSS_PER_MILLE;
        self.loss_sample_start = self.delivered;
        self.loss_sample_lost = 0;
        overflow
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
        if self.judge_loss_sample() {
            self.on_overflow(inflight);
        }
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
        // After an overflow: the cap grows by one packet per window acknowledged (one per
        // round trip while the window is at the cap) and is dropped once the model's window
        // fits under it.
        let cwnd = match self.inflight_cap {
            Some(cap) => {
                let grown = cap.saturating_add(
                    (u64::from(acked) * u64::from(self.mtu) / u64::from(cap.max(1))).max(1) as u32,
                );
                if grown >= self.target_cwnd(CWND_GAIN) {
                    self.inflight_cap = None;
                    cwnd
                } else {
                    self.inflight_cap = Some(grown);
                    cwnd.min(grown)
                }
            }
            None => cwnd,
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
        assert!(
            (1.5..=2.5).contains(&ratio),
            "cwnd {cwnd} is {ratio:.2} × BDP"
        );
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
        assert!(
            (1.0..=3.0).contains(&ratio),
            "cwnd {cwnd} is {ratio:.2} × the floor's BDP"
        );
    }

    #[test]
    fn overflow_caps_the_window_and_random_loss_does_not() {
        let start = Instant::now();
        let mut c = RateController::new(MTU);
        let bw = 100_000_000;
        let (mut cwnd, mut now) = steady(
            &mut c,
            start,
            bw,
            Duration::from_micros(50),
            4000,
            initial_window(MTU),
        );
        let model = cwnd;
        // 2 % of the packets lost, one at a time: no cap, the window stays.
        for i in 0..2000u32 {
            now += Duration::from_micros(10);
            if i % 50 == 0 {
                c.on_lost(u64::from(MTU), u64::from(MTU), cwnd as usize);
            }
            cwnd = c.on_ack(now, u64::from(MTU), None, cwnd as usize, cwnd);
        }
        assert_eq!(c.inflight_cap(), None, "2 % random loss set no cap");
        assert!(cwnd >= model * 9 / 10, "window {cwnd} kept (was {model})");

        // Three packets lost back to back: the flight overflowed a queue.
        let flight = cwnd as usize;
        c.on_lost(3 * u64::from(MTU), 3 * u64::from(MTU), flight);
        let cap = c.inflight_cap().expect("a run of three set a cap");
        assert_eq!(cap, (flight as f64 * OVERFLOW_BETA) as u32);
        cwnd = c.on_ack(now, u64::from(MTU), None, flight, cwnd);
        assert!(cwnd <= cap + MTU, "window {cwnd} under the cap {cap}");
        // A second run in the same round trip does not cut again.
        c.on_lost(3 * u64::from(MTU), 3 * u64::from(MTU), cwnd as usize);
        assert!(c.inflight_cap().unwrap() >= cap);

        // The cap grows back by about a packet per window acknowledged.
        let cap = c.inflight_cap().unwrap();
        for _ in 0..10 {
            let window = cwnd;
            let mut acked = 0;
            while acked < window {
                now += Duration::from_micros(10);
                cwnd = c.on_ack(now, u64::from(MTU), None, cwnd as usize, cwnd);
                acked += MTU;
            }
        }
        let grown = (c.inflight_cap().expect("still capped") - cap) / MTU;
        assert!((5..=20).contains(&grown), "grew {grown} packets in 10 windows");
        assert!(cwnd <= c.inflight_cap().unwrap());

        // A loss rate above 10 % over a sample (isolated losses, no runs) also caps.
        let mut c2 = RateController::new(MTU);
        let (mut cwnd2, mut now2) = steady(
            &mut c2,
            start,
            bw,
            Duration::from_micros(50),
            4000,
            initial_window(MTU),
        );
        for _ in 0..200u32 {
            now2 += Duration::from_micros(10);
            c2.on_lost(u64::from(MTU), u64::from(MTU), cwnd2 as usize);
            for _ in 0..3 {
                cwnd2 = c2.on_ack(now2, u64::from(MTU), None, cwnd2 as usize, cwnd2);
            }
        }
        assert!(c2.inflight_cap().is_some(), "25 % loss set a cap");
    }

    #[test]
    fn the_pacer_spreads_a_window_at_the_pacing_rate() {
        let mut c = RateController::new(MTU);
        assert_eq!(c.pacing_rate(), None, "no estimate, no pacing");
        let bw = 10_000_000; // 10 MB/s
        let (_, mut now) = steady(
            &mut c,
            Instant::now(),
            bw,
            Duration::from_millis(20),
            100,
            initial_window(MTU),
        );
        let rate = c.pacing_rate().expect("paced once there is an estimate");
        let expected = c.bandwidth() as f64 * PACING_GAIN;
        assert!((rate - expected).abs() < 1.0, "pacing {rate}, expected {expected}");

        // Send as fast as the pacer allows for 100 ms.
        let start = now;
        let mut sent = 0usize;
        let mut burst = 0usize;
        let mut longest_burst = 0usize;
        while now < start + Duration::from_millis(100) {
            let tokens = c.pacing_budget(now).unwrap();
            if tokens > 0.0 {
                c.on_paced_send(MTU as usize);
                sent += MTU as usize;
                burst += MTU as usize;
                longest_burst = longest_burst.max(burst);
            } else {
                let resume = c.pacing_resume_at().unwrap();
                assert!(resume > now, "an empty bucket resumes later");
                now = resume;
                burst = 0;
            }
        }
        let achieved = sent as f64 / 0.1;
        assert!(
            (0.9 * rate..=1.1 * rate + c.pacing_burst(rate) * 10.0).contains(&achieved),
            "sent at {achieved} B/s, pacing rate {rate}"
        );
        // No burst longer than the bucket (plus the one chunk that may overshoot it).
        assert!(
            longest_burst as f64 <= c.pacing_burst(rate) + f64::from(MTU),
            "burst {longest_burst} bytes, bucket {}",
            c.pacing_burst(rate)
        );
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
