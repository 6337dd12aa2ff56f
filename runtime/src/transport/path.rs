//! The path report: which kind of link carries a connection and, where the transport knows
//! it (WebRTC), which candidate pair, the round-trip time and the counters.
//!
//! One type for every transport: a WebSocket, memory or relay link reports its
//! [`TransportKind`] and nothing else; a WebRTC link fills in the selected candidate pair from
//! the engine's statistics (the browser's `getStats()` objects of the same names).

use async_trait::async_trait;
use serde::Serialize;

use super::TransportKind;

/// One end of a WebRTC link's selected candidate pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PathCandidate {
    /// `host`, `srflx`, `prflx` or `relay`.
    pub candidate_type: String,
    /// `udp` or `tcp`.
    pub protocol: String,
    /// The candidate's IP address (or mDNS name).
    pub address: String,
    /// The candidate's port.
    pub port: u16,
    /// For this side's relay candidate: how this device reaches the TURN server (`udp`,
    /// `tcp` or `tls`); the relayed side is UDP either way. `None` for other candidates and
    /// when the engine does not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_protocol: Option<String>,
}

impl std::fmt::Display for PathCandidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {}:{}",
            self.candidate_type, self.protocol, self.address, self.port
        )
    }
}

/// Which path a link uses and what it carried.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PathReport {
    /// The kind of link.
    #[serde(serialize_with = "kind_str")]
    pub kind: TransportKind,
    /// This side's candidate of the selected pair (WebRTC only; `None` before a pair was
    /// selected and for other transports).
    pub local: Option<PathCandidate>,
    /// The peer's candidate of the selected pair (WebRTC only).
    pub remote: Option<PathCandidate>,
    /// Latest round-trip time of the pair's ICE checks, in milliseconds (`None` until one was
    /// measured, and for transports that do not measure it).
    pub rtt_ms: Option<f64>,
    /// Bytes sent over the selected pair (DTLS/SCTP and STUN, as counted where they leave
    /// the engine); 0 where the transport does not count.
    pub bytes_sent: u64,
    /// Bytes received over the selected pair.
    pub bytes_received: u64,
    /// Datagrams sent over the selected pair.
    pub packets_sent: u64,
    /// Datagrams received over the selected pair.
    pub packets_received: u64,
    /// How often the selected pair changed (ICE restarts and re-nominations).
    pub selected_pair_changes: u32,
    /// ICE restarts this side started or asked for.
    pub ice_restarts: u32,
}

fn kind_str<S: serde::Serializer>(kind: &TransportKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.as_str())
}

impl PathReport {
    /// A report that says only which kind of link it is (WebSocket, memory, relay, or a
    /// WebRTC link before ICE selected a pair or after it closed).
    pub fn kind_only(kind: TransportKind) -> Self {
        Self {
            kind,
            local: None,
            remote: None,
            rtt_ms: None,
            bytes_sent: 0,
            bytes_received: 0,
            packets_sent: 0,
            packets_received: 0,
            selected_pair_changes: 0,
            ice_restarts: 0,
        }
    }
}

/// Reads a live link's path on request; a transport that knows more than its kind hands one
/// to the connection through [`super::Transport::path_probe`]. Probes must not keep the link
/// alive (hold a weak handle).
#[async_trait]
pub trait PathProbe: Send + Sync + 'static {
    /// The current path, `None` when the link is gone or no path is known yet.
    async fn path(&self) -> Option<PathReport>;
}
