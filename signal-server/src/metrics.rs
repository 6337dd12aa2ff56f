//! Counters exposed at `/metrics` in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::protocol::ErrorCode;

/// Server counters. All relaxed atomics: they are statistics, not synchronisation.
#[derive(Debug, Default)]
pub struct Metrics {
    pub(crate) connections_open: AtomicI64,
    pub(crate) connections_total: AtomicU64,
    pub(crate) authenticated_open: AtomicI64,
    pub(crate) rooms_open: AtomicI64,
    pub(crate) messages_in: AtomicU64,
    pub(crate) signals_relayed: AtomicU64,
    pub(crate) relay_frames: AtomicU64,
    pub(crate) relay_bytes: AtomicU64,
    pub(crate) relay_dropped: AtomicU64,
    pub(crate) backplane_messages: AtomicU64,
    rejections: [AtomicU64; ErrorCode::ALL.len()],
}

impl Metrics {
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn gauge(gauge: &AtomicI64, delta: i64) {
        gauge.fetch_add(delta, Ordering::Relaxed);
    }

    pub(crate) fn reject(&self, code: ErrorCode) {
        if let Some(c) = self.rejections.get(code.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Rejections so far for `code`.
    pub fn rejections(&self, code: ErrorCode) -> u64 {
        self.rejections
            .get(code.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Open WebSocket connections (authenticated or not).
    pub fn connections_open(&self) -> i64 {
        self.connections_open.load(Ordering::Relaxed)
    }

    /// Authenticated connections.
    pub fn authenticated_open(&self) -> i64 {
        self.authenticated_open.load(Ordering::Relaxed)
    }

    /// Relay frames from other instances dropped because the target's queue was full.
    pub fn relay_dropped(&self) -> u64 {
        self.relay_dropped.load(Ordering::Relaxed)
    }

    /// Payload bytes of relay frames forwarded so far.
    pub fn relay_bytes(&self) -> u64 {
        self.relay_bytes.load(Ordering::Relaxed)
    }

    /// Signals delivered or forwarded so far.
    pub fn signals_relayed(&self) -> u64 {
        self.signals_relayed.load(Ordering::Relaxed)
    }

    /// Renders every counter in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let r = Ordering::Relaxed;
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "peerlink_signal_connections",
            "gauge",
            "Open WebSocket connections.",
            self.connections_open.load(r).to_string(),
        );
        metric(
            "peerlink_signal_connections_total",
            "counter",
            "WebSocket connections accepted.",
            self.connections_total.load(r).to_string(),
        );
        metric(
            "peerlink_signal_authenticated",
            "gauge",
            "Authenticated connections.",
            self.authenticated_open.load(r).to_string(),
        );
        metric(
            "peerlink_signal_rooms",
            "gauge",
            "Rooms with at least one local member.",
            self.rooms_open.load(r).to_string(),
        );
        metric(
            "peerlink_signal_messages_total",
            "counter",
            "Text messages received.",
            self.messages_in.load(r).to_string(),
        );
        metric(
            "peerlink_signal_signals_relayed_total",
            "counter",
            "Signals delivered or forwarded.",
            self.signals_relayed.load(r).to_string(),
        );
        metric(
            "peerlink_signal_relay_frames_total",
            "counter",
            "Binary relay frames forwarded.",
            self.relay_frames.load(r).to_string(),
        );
        metric(
            "peerlink_signal_relay_bytes_total",
            "counter",
            "Payload bytes of relay frames forwarded.",
            self.relay_bytes.load(r).to_string(),
        );
        metric(
            "peerlink_signal_relay_dropped_total",
            "counter",
            "Relay frames from other instances dropped at a full target queue.",
            self.relay_dropped.load(r).to_string(),
        );
        metric(
            "peerlink_signal_backplane_messages_total",
            "counter",
            "Messages received from the Redis backplane.",
            self.backplane_messages.load(r).to_string(),
        );
        let _ = writeln!(
            out,
            "# HELP peerlink_signal_rejections_total Messages or connections rejected, by error code.\n# TYPE peerlink_signal_rejections_total counter"
        );
        for code in ErrorCode::ALL {
            let _ = writeln!(
                out,
                "peerlink_signal_rejections_total{{reason=\"{}\"}} {}",
                code.as_str(),
                self.rejections(code)
            );
        }
        out
    }
}
