//! The path report: which candidate pair carries a link, its round-trip time and counters,
//! read from the engine's statistics (the browser's `getStats()` objects of the same names).

use std::time::Instant;

use ::webrtc::peer_connection::{PeerConnection, RTCStatsReportEntry, StatsSelector};
use serde::Serialize;

/// One end of the selected candidate pair.
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
}

/// Which path a WebRTC link uses and what it carried.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PathReport {
    /// This side's candidate of the selected pair.
    pub local: PathCandidate,
    /// The peer's candidate of the selected pair.
    pub remote: PathCandidate,
    /// Latest round-trip time of the pair's ICE checks, in milliseconds (`None` until one was
    /// measured).
    pub rtt_ms: Option<f64>,
    /// Bytes sent over the pair (DTLS/SCTP and STUN, as counted at the socket).
    pub bytes_sent: u64,
    /// Bytes received over the pair.
    pub bytes_received: u64,
    /// Datagrams sent over the pair.
    pub packets_sent: u64,
    /// Datagrams received over the pair.
    pub packets_received: u64,
    /// How often the selected pair changed (ICE restarts and re-nominations).
    pub selected_pair_changes: u32,
    /// ICE restarts this side started or asked for.
    pub ice_restarts: u32,
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

/// Reads the selected pair from the engine's statistics; `None` while no pair is selected.
pub(crate) async fn report(pc: &dyn PeerConnection, ice_restarts: u32) -> Option<PathReport> {
    let stats = pc.get_stats(Instant::now(), StatsSelector::None).await;
    let (pair_id, changes) = stats.iter().find_map(|entry| match entry {
        RTCStatsReportEntry::Transport(t) if !t.selected_candidate_pair_id.is_empty() => Some((
            t.selected_candidate_pair_id.clone(),
            t.selected_candidate_pair_changes,
        )),
        _ => None,
    })?;
    let Some(RTCStatsReportEntry::IceCandidatePair(pair)) = stats.get(&pair_id) else {
        return None;
    };
    // The pair names its candidates `candidate:…` while the candidate entries are keyed
    // `RTCLocalIceCandidate_candidate:…` / `RTCRemoteIceCandidate_candidate:…` (engine 0.21.1);
    // accept either.
    let find = |id: &str, prefix: &str| {
        stats
            .get(id)
            .or_else(|| stats.get(&format!("{prefix}{id}")))
    };
    let candidate = |id: &str, prefix: &str| match find(id, prefix) {
        Some(RTCStatsReportEntry::LocalCandidate(c) | RTCStatsReportEntry::RemoteCandidate(c)) => {
            Some(PathCandidate {
                candidate_type: c.candidate_type.to_string(),
                protocol: c.protocol.to_ascii_lowercase(),
                address: c.address.clone().unwrap_or_default(),
                port: c.port,
            })
        }
        _ => None,
    };
    let local = candidate(&pair.local_candidate_id, "RTCLocalIceCandidate_")?;
    let remote = candidate(&pair.remote_candidate_id, "RTCRemoteIceCandidate_")?;
    let rtt = pair.current_round_trip_time;
    Some(PathReport {
        local,
        remote,
        rtt_ms: (rtt > 0.0).then_some(rtt * 1e3),
        bytes_sent: pair.bytes_sent,
        bytes_received: pair.bytes_received,
        packets_sent: pair.packets_sent,
        packets_received: pair.packets_received,
        selected_pair_changes: changes,
        ice_restarts,
    })
}
