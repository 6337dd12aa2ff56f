//! The WebRTC path report: which candidate pair carries a link, its round-trip time and counters,
//! read from the engine's statistics (the browser's `getStats()` objects of the same names).

use std::time::Instant;

use ::webrtc::peer_connection::{
    PeerConnection, RTCIceCandidate, RTCStatsReportEntry, StatsSelector,
};

use crate::transport::{PathCandidate, PathReport, TransportKind};

fn from_engine(c: &RTCIceCandidate) -> PathCandidate {
    PathCandidate {
        candidate_type: c.typ.to_string(),
        protocol: c.protocol.to_string().to_ascii_lowercase(),
        address: c.address.clone(),
        port: c.port,
        relay_protocol: c.url.as_deref().and_then(relay_protocol),
    }
}

/// How a relay candidate's TURN server is reached, from the server URL it was gathered
/// through: `turns:` is TLS, `?transport=tcp` TCP, anything else UDP.
fn relay_protocol(url: &str) -> Option<String> {
    let lower = url.to_ascii_lowercase();
    let protocol = if lower.starts_with("turns:") {
        "tls"
    } else if lower.starts_with("turn:") && lower.contains("transport=tcp") {
        "tcp"
    } else if lower.starts_with("turn:") {
        "udp"
    } else {
        return None;
    };
    Some(protocol.to_owned())
}

/// Both ends of the pair the ICE agent selected, from the agent rather than the statistics.
async fn selected_pair(pc: &dyn PeerConnection) -> Option<(PathCandidate, PathCandidate)> {
    let sctp = pc.sctp().await?;
    let pair = sctp
        .transport()
        .ice_transport()
        .get_selected_candidate_pair()
        .await
        .ok()??;
    Some((from_engine(pair.local()), from_engine(pair.remote())))
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
                relay_protocol: (c.candidate_type.to_string() == "relay")
                    .then(|| relay_protocol(&c.url))
                    .flatten(),
            })
        }
        _ => None,
    };
    // The statistics know only candidates that were gathered or signalled: a peer-reflexive
    // remote candidate (learnt from a connectivity check that overtook the trickled candidate,
    // common right after an ICE restart) has no entry, and keeps its id when the trickled
    // candidate arrives and takes its place in the agent (third_party/rtc-ice/PEERLINK.md). The
    // ICE agent's selected pair always has both ends, with the signalled type once known.
    let (local, remote) = match (
        candidate(&pair.local_candidate_id, "RTCLocalIceCandidate_"),
        candidate(&pair.remote_candidate_id, "RTCRemoteIceCandidate_"),
    ) {
        (Some(local), Some(remote)) => (local, remote),
        _ => selected_pair(pc).await?,
    };
    // The statistics do not say how a local relay candidate reaches its TURN server; the ICE
    // agent's candidate keeps the server URL it was gathered through.
    let mut local = local;
    if local.candidate_type == "relay"
        && local.relay_protocol.is_none()
        && let Some((agent_local, _)) = selected_pair(pc).await
        && agent_local.address == local.address
        && agent_local.port == local.port
    {
        local.relay_protocol = agent_local.relay_protocol;
    }
    let rtt = pair.current_round_trip_time;
    Some(PathReport {
        kind: TransportKind::WebRtc,
        local: Some(local),
        remote: Some(remote),
        rtt_ms: (rtt > 0.0).then_some(rtt * 1e3),
        bytes_sent: pair.bytes_sent,
        bytes_received: pair.bytes_received,
        packets_sent: pair.packets_sent,
        packets_received: pair.packets_received,
        selected_pair_changes: changes,
        ice_restarts,
    })
}
