//! A data channel of a link: a send half and a receive half fed by a pump task.
//!
//! The engine delivers a channel's events through one `poll()` stream, and a channel whose
//! stream is not drained makes the driver hold back every other channel's events too. So each
//! channel gets a pump task that drains it for the whole life of the channel — into a bounded
//! queue while someone reads, into the void once the reader is gone — which also turns a slow
//! reader into SCTP back-pressure instead of unbounded memory.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use ::webrtc::data_channel::{DataChannel, DataChannelEvent};
use bytes::{Bytes, BytesMut};
use tokio::sync::{Notify, mpsc, watch};

use super::config::SendPacing;
use super::error::WebRtcError;
use super::priority::{ChannelPriority, Member, YIELD_POLL};

/// Received messages buffered per channel before the pump stops draining the engine.
const RECV_QUEUE: usize = 64;

/// How often a sender waiting on the pacing window re-reads the engine's counter when no
/// buffered-amount-low event wakes it first.
const PACING_POLL: Duration = Duration::from_millis(1);
/// Pacing window ceiling when the engine has no send-buffer limit.
const PACING_CEILING: usize = 8 * 1024 * 1024;

/// The state of one data channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelState {
    /// Created, not yet open.
    Connecting,
    /// Open for messages.
    Open,
    /// Closed (by either side, or with its link).
    Closed,
}

/// One data channel of a [`WebRtcLink`](super::WebRtcLink).
#[derive(Debug)]
pub struct WebRtcChannel {
    /// Sending half.
    pub sender: ChannelSender,
    /// Receiving half.
    pub receiver: ChannelReceiver,
}

/// The sending half of a [`WebRtcChannel`].
#[derive(Clone)]
pub struct ChannelSender {
    dc: Arc<dyn DataChannel>,
    label: Arc<str>,
    state: watch::Receiver<ChannelState>,
    remote_max_message_size: Arc<AtomicUsize>,
    pacer: Option<Arc<Pacer>>,
    priority: Arc<Member>,
}

impl std::fmt::Debug for ChannelSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelSender")
            .field("label", &self.label)
            .field("priority", &self.priority.priority())
            .field("state", &*self.state.borrow())
            .finish()
    }
}

/// The receiving half of a [`WebRtcChannel`].
#[derive(Debug)]
pub struct ChannelReceiver {
    rx: mpsc::Receiver<Bytes>,
    state: watch::Receiver<ChannelState>,
}

impl WebRtcChannel {
    /// Wraps an engine channel and starts its pump. Returns the pump's abort handle so the
    /// link can stop it on close.
    pub(crate) fn start(
        dc: Arc<dyn DataChannel>,
        label: String,
        already_open: bool,
        remote_max_message_size: Arc<AtomicUsize>,
        opened: Arc<watch::Sender<u64>>,
        pacing: Option<PacingSetup>,
        priority: Member,
    ) -> (Self, tokio::task::AbortHandle) {
        let initial = if already_open {
            ChannelState::Open
        } else {
            ChannelState::Connecting
        };
        let (state_tx, state_rx) = watch::channel(initial);
        let (tx, rx) = mpsc::channel(RECV_QUEUE);
        let pacer = pacing.map(|setup| Arc::new(Pacer::new(setup)));
        let pump = tokio::spawn(pump(Arc::clone(&dc), tx, state_tx, opened, pacer.clone()));
        let channel = Self {
            sender: ChannelSender {
                dc,
                label: label.into(),
                state: state_rx.clone(),
                remote_max_message_size,
                pacer,
                priority: Arc::new(priority),
            },
            receiver: ChannelReceiver {
                rx,
                state: state_rx,
            },
        };
        (channel, pump.abort_handle())
    }

    /// The channel's label.
    pub fn label(&self) -> &str {
        &self.sender.label
    }

    /// The channel's priority: the one it was created with, or for a channel the peer opened,
    /// the one in the peer's channel-open message.
    pub fn priority(&self) -> ChannelPriority {
        self.sender.priority()
    }

    /// Waits until the channel is open; fails if it closes first.
    pub async fn opened(&self) -> Result<(), WebRtcError> {
        self.sender.opened().await
    }

    /// Splits into the two halves.
    pub fn split(self) -> (ChannelSender, ChannelReceiver) {
        (self.sender, self.receiver)
    }
}

async fn pump(
    dc: Arc<dyn DataChannel>,
    tx: mpsc::Sender<Bytes>,
    state: watch::Sender<ChannelState>,
    opened: Arc<watch::Sender<u64>>,
    pacer: Option<Arc<Pacer>>,
) {
    let mut reader_gone = false;
    let mark_open = |state: &watch::Sender<ChannelState>| {
        let changed = state.send_if_modified(|s| {
            let changed = *s == ChannelState::Connecting;
            if changed {
                *s = ChannelState::Open;
            }
            changed
        });
        if changed {
            opened.send_modify(|n| *n += 1);
        }
    };
    while let Some(event) = dc.poll().await {
        match event {
            DataChannelEvent::OnOpen => mark_open(&state),
            DataChannelEvent::OnMessage(message) => {
                mark_open(&state);
                if !reader_gone && tx.send(message.data.freeze()).await.is_err() {
                    // Keep draining: an undrained channel stalls the whole association.
                    reader_gone = true;
                }
            }
            DataChannelEvent::OnBufferedAmountLow => {
                if let Some(pacer) = &pacer {
                    pacer.wake.notify_waiters();
                }
            }
            DataChannelEvent::OnClose => break,
            _ => {}
        }
    }
    state.send_replace(ChannelState::Closed);
    if let Some(pacer) = &pacer {
        pacer.wake.notify_waiters();
    }
}

/// What a channel needs to pace its sends: the configuration and the engine's fixed limit
/// (the window's ceiling).
#[derive(Clone, Copy)]
pub(crate) struct PacingSetup {
    pub(crate) pacing: SendPacing,
    pub(crate) send_buffer_limit: Option<usize>,
}

/// The adaptive in-flight window of one channel ([`SendPacing`]), shared by the clones of its
/// [`ChannelSender`].
///
/// The engine sends whatever its congestion and peer windows allow back to back and exposes
/// neither pacing nor its loss or round-trip estimates, only the channel's unacknowledged byte
/// count. Two things show in that count. An acknowledgement gap of [`STALL`] while bytes are
/// outstanding is a retransmission timeout (at least 200 ms in the
/// vendored engine, `third_party/rtc-sctp`), the costly kind of
/// loss: the window halves (once per [`STALL`] of the gap) and may not grow past half of what
/// it was for [`CEILING_SPAN`]. And the delivery rate: until the first stall the window grows
/// by half per epoch in which it was the limit (a peer whose advertised window matches its
/// socket, as peerlink's does, never stalls and ends at the ceiling); after one it
/// hill-climbs, trying a step up or down every few epochs and keeping the step only if the rate
/// rose. A long path keeps rewarding steps up; a peer whose socket buffer is smaller than the
/// window it advertises (Chromium) stalls and is held below the size that overflowed it.
struct Pacer {
    state: StdMutex<PacerState>,
    /// Woken by the pump on the engine's buffered-amount-low event and on close.
    wake: Notify,
}

/// An epoch delivers at least this many windows...
const EPOCH_WINDOWS: u64 = 4;
/// ...and lasts at least this long, so one epoch's rate is not one burst's.
const EPOCH_MIN: Duration = Duration::from_millis(20);
/// Epochs spent at a window before probing again.
const HOLD_EPOCHS: u32 = 4;
/// A step up must raise the rate by this factor to be kept.
const GAIN_UP: f64 = 1.0;
/// A step down must raise the rate by this factor to be kept: in a flat region the window
/// drifts up, not down, since a larger window only costs memory there.
const KEEP_DOWN: f64 = 1.05;
/// No acknowledgement for this long while bytes are outstanding: a retransmission timeout.
const STALL: Duration = Duration::from_millis(300);
/// How long a stall caps the window's growth.
const CEILING_SPAN: Duration = Duration::from_secs(10);

/// What the window is doing.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Probe {
    /// Just stepped up from `from`, where the rate was `before`.
    Up { from: usize, before: f64 },
    /// Just stepped down from `from`, where the rate was `before`.
    Down { from: usize, before: f64 },
    /// Staying at the window for `epochs` more epochs; the next probe goes up if `up`.
    Hold { epochs: u32, up: bool },
}

struct PacerState {
    window: usize,
    min: usize,
    max: usize,
    /// Bytes handed to the engine, ever.
    sent: u64,
    /// Bytes the engine released (acknowledged or abandoned), ever: `sent - outstanding`.
    acked: u64,
    last_progress: Instant,
    /// Whether the current acknowledgement gap already counted as a stall.
    in_stall: bool,
    /// Since the last stall (`None`: none yet): the window may not exceed `ceiling`.
    stalled_at: Option<Instant>,
    ceiling: usize,
    epoch_start: Instant,
    epoch_acked: u64,
    /// Whether a send waited on the window during this epoch: only then does the epoch
    /// measure the path rather than the application.
    limited: bool,
    probe: Probe,
    /// The buffered-amount-low threshold last given to the engine.
    threshold: Option<usize>,
}

impl Pacer {
    fn new(setup: PacingSetup) -> Self {
        let max = setup.send_buffer_limit.unwrap_or(PACING_CEILING).max(1);
        let min = setup.pacing.min.clamp(1, max);
        let now = Instant::now();
        Self {
            state: StdMutex::new(PacerState {
                window: setup.pacing.initial.clamp(min, max),
                min,
                max,
                sent: 0,
                acked: 0,
                last_progress: now,
                in_stall: false,
                stalled_at: None,
                ceiling: max,
                epoch_start: now,
                epoch_acked: 0,
                limited: false,
                // The first measured epoch probes (upwards, as a long path needs; at the
                // ceiling that turns into a step down).
                probe: Probe::Hold {
                    epochs: 0,
                    up: true,
                },
                threshold: None,
            }),
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PacerState> {
        // Plain numbers, consistent after any panic: keep using them.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sent(&self, n: usize) {
        self.lock().sent += n as u64;
    }
}

impl PacerState {
    /// Takes one reading of the engine's unacknowledged bytes: may the next message go now,
    /// and the buffered-amount-low threshold to give the engine if it changed.
    fn observe(&mut self, now: Instant, outstanding: usize) -> (bool, Option<usize>) {
        let acked = self.sent.saturating_sub(outstanding as u64);
        if acked > self.acked || outstanding == 0 {
            // Progress, or nothing in flight (an idle channel has no gap).
            self.acked = self.acked.max(acked);
            self.last_progress = now;
            self.in_stall = false;
        } else if outstanding > 0 && now.duration_since(self.last_progress) >= STALL {
            if !self.in_stall {
                self.ceiling = (self.window / 2).max(self.min);
                self.in_stall = true;
            }
            self.stalled_at = Some(now);
            self.window = (self.window / 2).max(self.min);
            tracing::debug!(
                window = self.window,
                outstanding,
                "pacing: acknowledgement stall"
            );
            self.probe = Probe::Hold {
                epochs: HOLD_EPOCHS,
                up: true,
            };
            self.last_progress = now;
            self.new_epoch(now);
        }
        // Like the engine's own limit, a message is admitted while the window is not yet full,
        // even if it then overshoots: waiting for room for the whole message would let the
        // flight drain to nothing between messages larger than the window, and the last
        // packet of each would wait for the peer's delayed acknowledgement (200 ms).
        let admit = outstanding < self.window;
        if !admit {
            self.limited = true;
        }
        let delivered = self.acked.saturating_sub(self.epoch_acked);
        let elapsed = now.duration_since(self.epoch_start);
        if delivered >= EPOCH_WINDOWS.saturating_mul(self.window as u64) && elapsed >= EPOCH_MIN {
            if self.limited {
                self.end_epoch(now, delivered as f64 / elapsed.as_secs_f64());
            }
            self.new_epoch(now);
        }
        // Wake the sender as soon as the window has room.
        let threshold = self.window.saturating_sub(1);
        let threshold = (self.threshold != Some(threshold)).then(|| {
            self.threshold = Some(threshold);
            threshold
        });
        (admit, threshold)
    }

    fn new_epoch(&mut self, now: Instant) {
        self.epoch_start = now;
        self.epoch_acked = self.acked;
        self.limited = false;
    }

    fn step_up(&self) -> usize {
        let ceiling = if self.stalled_at.is_some() {
            self.ceiling
        } else {
            self.max
        };
        (self.window.saturating_mul(3) / 2)
            .min(ceiling)
            .max(self.window)
    }

    fn step_down(&self) -> usize {
        (self.window.saturating_mul(2) / 3).max(self.min)
    }

    /// One epoch in which the window was the limit delivered `rate` bytes per second.
    fn end_epoch(&mut self, now: Instant, rate: f64) {
        tracing::trace!(window = self.window, rate, probe = ?self.probe, "pacing: epoch");
        if self
            .stalled_at
            .is_some_and(|at| now.duration_since(at) >= CEILING_SPAN)
        {
            self.ceiling = self.max;
        }
        if self.stalled_at.is_none() {
            // Start-up: no sign yet that the peer drops what the window lets through.
            self.window = self.step_up();
            return;
        }
        let hold = |up: bool| Probe::Hold {
            epochs: HOLD_EPOCHS,
            up,
        };
        self.probe = match self.probe {
            Probe::Up { from, before } => {
                if rate >= before * GAIN_UP && self.step_up() > self.window {
                    let from = self.window;
                    self.window = self.step_up();
                    Probe::Up { from, before: rate }
                } else if rate >= before * GAIN_UP {
                    hold(false)
                } else {
                    self.window = from;
                    hold(false)
                }
            }
            Probe::Down { from, before } => {
                if rate >= before * KEEP_DOWN && self.step_down() < self.window {
                    let from = self.window;
                    self.window = self.step_down();
                    Probe::Down {
                        from,
                        before: rate.max(before),
                    }
                } else if rate >= before * KEEP_DOWN {
                    hold(true)
                } else {
                    self.window = from;
                    hold(true)
                }
            }
            Probe::Hold { epochs, up } if epochs > 0 => Probe::Hold {
                epochs: epochs - 1,
                up,
            },
            Probe::Hold { up, .. } => {
                let from = self.window;
                let next = if up { self.step_up() } else { self.step_down() };
                if next == from {
                    // Already at that bound: probe the other way next time.
                    hold(!up)
                } else {
                    self.window = next;
                    if up {
                        Probe::Up { from, before: rate }
                    } else {
                        Probe::Down { from, before: rate }
                    }
                }
            }
        };
    }
}

impl ChannelSender {
    /// The channel's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The current state.
    pub fn state(&self) -> ChannelState {
        *self.state.borrow()
    }

    /// The channel's priority ([`WebRtcChannel::priority`]).
    pub fn priority(&self) -> ChannelPriority {
        self.priority.priority()
    }

    /// The largest message the peer accepts (its SDP `a=max-message-size`, clamped to what the
    /// engine can send).
    pub fn max_message_size(&self) -> usize {
        self.remote_max_message_size.load(Ordering::Relaxed)
    }

    /// Waits until the channel is open; fails if it closes first.
    pub async fn opened(&self) -> Result<(), WebRtcError> {
        let mut state = self.state.clone();
        let result = state
            .wait_for(|s| *s != ChannelState::Connecting)
            .await
            .map(|s| *s);
        match result {
            Ok(ChannelState::Open) => Ok(()),
            _ => Err(WebRtcError::ChannelClosed),
        }
    }

    /// Sends one message. Waits while the channel's unacknowledged bytes would exceed the
    /// pacing window ([`SendPacing`]) or the configured send-buffer limit, which is what
    /// paces a bulk sender to the path and the peer.
    pub async fn send(&self, data: Bytes) -> Result<(), WebRtcError> {
        let limit = self.max_message_size();
        if data.len() > limit {
            return Err(WebRtcError::MessageTooLarge {
                size: data.len(),
                limit,
            });
        }
        if self.state() == ChannelState::Closed {
            return Err(WebRtcError::ChannelClosed);
        }
        let len = data.len();
        let _sending = self.priority.begin_send();
        if let Some(pacer) = &self.pacer {
            self.wait_for_window(pacer).await?;
        }
        self.wait_for_turn().await?;
        self.dc
            .send(BytesMut::from(data))
            .await
            .map_err(|err| match err {
                ::webrtc::error::Error::ErrDataChannelClosed => WebRtcError::ChannelClosed,
                other => WebRtcError::engine(other),
            })?;
        if let Some(pacer) = &self.pacer {
            pacer.sent(len);
        }
        Ok(())
    }

    /// Waits until the pacing window has room. Each wait is one engine event
    /// or [`PACING_POLL`]; the loop ends when the window admits the message or the channel
    /// closes (the engine releases every byte of a live channel eventually: acknowledged, or
    /// abandoned when the association fails).
    async fn wait_for_window(&self, pacer: &Pacer) -> Result<(), WebRtcError> {
        loop {
            if self.state() == ChannelState::Closed {
                return Err(WebRtcError::ChannelClosed);
            }
            // Registered before reading the counter, so an event in between is not lost.
            let notified = pacer.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let outstanding = match self.dc.outstanding_bytes().await {
                Ok(n) => n,
                Err(_) => return Err(WebRtcError::ChannelClosed),
            };
            let (admit, threshold) = pacer.lock().observe(Instant::now(), outstanding);
            if let Some(threshold) = threshold {
                let threshold = u32::try_from(threshold).unwrap_or(u32::MAX);
                let _ = self.dc.set_buffered_amount_low_threshold(threshold).await;
            }
            if admit {
                return Ok(());
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(PACING_POLL) => {}
            }
        }
    }

    /// Waits while a channel of higher priority on the same link is active and this one has
    /// its share of the window or more unacknowledged (see [`ChannelPriority`]). Each wait is
    /// [`YIELD_POLL`]; the loop ends when the higher-priority channel goes quiet, the engine
    /// releases enough of this channel's bytes, or the channel closes.
    async fn wait_for_turn(&self) -> Result<(), WebRtcError> {
        loop {
            if self.state() == ChannelState::Closed {
                return Err(WebRtcError::ChannelClosed);
            }
            let window = self
                .pacing_window()
                .unwrap_or_else(|| self.priority.unpaced_window());
            let Some(share) = self.priority.share(window, Instant::now()) else {
                return Ok(());
            };
            let outstanding = match self.dc.outstanding_bytes().await {
                Ok(n) => n,
                Err(_) => return Err(WebRtcError::ChannelClosed),
            };
            if outstanding < share {
                return Ok(());
            }
            tokio::time::sleep(YIELD_POLL).await;
        }
    }

    /// The current pacing window in bytes (`None` without [`SendPacing`]).
    pub fn pacing_window(&self) -> Option<usize> {
        self.pacer.as_ref().map(|p| p.lock().window)
    }

    /// Bytes handed to `send` and not yet acknowledged by the peer.
    pub async fn outstanding_bytes(&self) -> usize {
        self.dc.outstanding_bytes().await.unwrap_or(0)
    }

    /// Closes the channel (the link stays up).
    pub async fn close(&self) -> Result<(), WebRtcError> {
        match self.dc.close().await {
            Ok(()) | Err(::webrtc::error::Error::ErrDataChannelClosed) => Ok(()),
            Err(err) => Err(WebRtcError::engine(err)),
        }
    }
}

impl ChannelReceiver {
    /// The next message, or `None` once the channel is closed and drained.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }

    /// The current state.
    pub fn state(&self) -> ChannelState {
        *self.state.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: usize = 1024;
    const MIB: usize = 1024 * KIB;

    fn pacer(initial: usize, min: usize, limit: usize) -> Pacer {
        Pacer::new(PacingSetup {
            pacing: SendPacing { initial, min },
            send_buffer_limit: Some(limit),
        })
    }

    /// Drives a sender that keeps the window full and a peer that acknowledges `per_ms` bytes
    /// each millisecond, for `ms` virtual milliseconds; returns the last time.
    fn run(p: &Pacer, start: Instant, ms: u64, per_ms: u64) -> Instant {
        let mut now = start;
        for _ in 0..ms {
            now += Duration::from_millis(1);
            let mut s = p.lock();
            let acked = (s.acked + per_ms).min(s.sent);
            let mut outstanding = (s.sent - acked) as usize;
            while s.observe(now, outstanding).0 {
                s.sent += 16 * KIB as u64;
                outstanding += 16 * KIB;
            }
        }
        now
    }

    #[test]
    fn admits_while_the_window_has_room_even_if_the_message_overshoots() {
        let p = pacer(128 * KIB, 64 * KIB, MIB);
        let now = Instant::now();
        let mut s = p.lock();
        assert!(s.observe(now, 0).0);
        assert!(s.observe(now, 128 * KIB - 1).0);
        assert!(!s.observe(now, 128 * KIB).0);
    }

    #[test]
    fn grows_to_the_ceiling_while_the_peer_never_stalls() {
        let p = pacer(256 * KIB, 64 * KIB, MIB);
        run(&p, Instant::now(), 2_000, 200 * KIB as u64);
        assert_eq!(p.lock().window, MIB);
    }

    #[test]
    fn a_stall_halves_the_window_and_caps_its_growth() {
        let p = pacer(MIB, 64 * KIB, MIB);
        let t = run(&p, Instant::now(), 200, 200 * KIB as u64);
        assert_eq!(p.lock().window, MIB);
        // No acknowledgement for 350 ms with bytes outstanding: one stall.
        let t = t + Duration::from_millis(350);
        {
            let mut s = p.lock();
            let outstanding = (s.sent - s.acked) as usize;
            s.observe(t, outstanding);
            assert_eq!(s.window, MIB / 2);
            assert_eq!(s.ceiling, MIB / 2);
        }
        // Fast progress afterwards does not take it past the ceiling within its span.
        run(&p, t, 5_000, 200 * KIB as u64);
        assert!(p.lock().window <= MIB / 2);
    }

    #[test]
    fn repeated_stalls_stop_at_the_minimum() {
        let p = pacer(MIB, 64 * KIB, MIB);
        let mut t = run(&p, Instant::now(), 50, 200 * KIB as u64);
        for _ in 0..10 {
            t += Duration::from_millis(301);
            let mut s = p.lock();
            let outstanding = (s.sent - s.acked) as usize;
            s.observe(t, outstanding);
        }
        assert_eq!(p.lock().window, 64 * KIB);
    }

    #[test]
    fn an_idle_channel_is_not_a_stall() {
        let p = pacer(256 * KIB, 64 * KIB, MIB);
        let t = Instant::now() + Duration::from_secs(5);
        let mut s = p.lock();
        s.observe(t, 0);
        s.sent = 38;
        s.observe(t + Duration::from_millis(100), 38);
        assert_eq!(s.window, 256 * KIB);
        assert!(s.stalled_at.is_none());
    }

    #[test]
    fn hill_climbing_keeps_a_step_down_only_if_the_rate_rose() {
        let p = pacer(MIB, 64 * KIB, MIB);
        let mut s = p.lock();
        s.stalled_at = Some(Instant::now());
        s.ceiling = MIB;
        s.probe = Probe::Down {
            from: MIB,
            before: 100.0,
        };
        s.window = MIB * 2 / 3;
        s.end_epoch(Instant::now(), 101.0);
        assert_eq!(
            s.window, MIB,
            "a 1 % gain does not justify the smaller window"
        );
        s.probe = Probe::Down {
            from: MIB,
            before: 100.0,
        };
        s.window = MIB * 2 / 3;
        s.end_epoch(Instant::now(), 120.0);
        assert!(s.window < MIB * 2 / 3, "a 20 % gain keeps stepping down");
    }
}
