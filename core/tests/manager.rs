//! Manager policy rules on a virtual clock.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use peerlink_core::manager::{
    Backoff, ConnectionTable, DeviceStatus, DialPlanner, GroupReadyAction, GroupReadyTracker,
    Health, HubRole, LinkDecision, LinkInfo, ManagerConfig, PathKind, PingOutcome, RejectReason,
    TrackedDevice, elect_hub, hub_role,
};

fn link(device: &str, id: u64, path: PathKind, now: Instant) -> LinkInfo {
    LinkInfo {
        device_id: device.into(),
        user_id: format!("user-{device}"),
        link_id: id,
        path,
        own_device: false,
        shared_groups: 1,
        healthy: true,
        pinned: false,
        since: now,
    }
}

#[test]
fn a_new_link_replaces_the_old_one_unless_the_old_path_is_better_and_healthy() {
    let now = Instant::now();
    let mut t = ConnectionTable::new(ManagerConfig::default());
    assert_eq!(
        t.offer(link("b", 1, PathKind::Relay, now)),
        LinkDecision::Accept
    );
    // WebRTC ranks above relay: replace.
    assert_eq!(
        t.offer(link("b", 2, PathKind::WebRtc, now)),
        LinkDecision::Replace {
            old: 1,
            old_path: PathKind::Relay
        }
    );
    // Relay ranks below a healthy WebRTC link: refused.
    assert_eq!(
        t.offer(link("b", 3, PathKind::Relay, now)),
        LinkDecision::Reject(RejectReason::WorsePath)
    );
    // Same rank: the newer link wins (Peers' "a new connection replaces the old").
    assert!(matches!(
        t.offer(link("b", 4, PathKind::WebRtc, now)),
        LinkDecision::Replace { old: 2, .. }
    ));
    // An unhealthy better link gives way to a worse one.
    t.set_healthy("b", false);
    assert!(matches!(
        t.offer(link("b", 5, PathKind::Relay, now)),
        LinkDecision::Replace { old: 4, .. }
    ));
    assert_eq!(t.len(), 1);
    // A stale close of a replaced link leaves the current one.
    assert!(!t.remove("b", 4));
    assert_eq!(t.get("b").map(|l| l.link_id), Some(5));
    assert!(t.remove("b", 5));
    assert!(t.is_empty());
}

#[test]
fn the_limit_evicts_the_lowest_priority_link_or_refuses() {
    let now = Instant::now();
    let mut config = ManagerConfig::default();
    config.max_connections = 3;
    let mut t = ConnectionTable::new(config);
    let mut own = link("own", 1, PathKind::Ws, now);
    own.own_device = true;
    t.offer(own);
    let mut two = link("two-groups", 2, PathKind::Ws, now);
    two.shared_groups = 2;
    t.offer(two);
    t.offer(link("one-group", 3, PathKind::Ws, now));
    assert!(t.is_full());
    // Same priority as the weakest: refused.
    assert_eq!(
        t.offer(link("other", 4, PathKind::Ws, now)),
        LinkDecision::Reject(RejectReason::Limit)
    );
    // Higher priority: evicts the weakest.
    let mut better = link("three-groups", 5, PathKind::Ws, now);
    better.shared_groups = 3;
    assert_eq!(
        t.offer(better),
        LinkDecision::Evict {
            device_id: "one-group".into(),
            link_id: 3
        }
    );
    assert_eq!(t.len(), 3);
    // Pinned links are never evicted.
    t.set_pinned("two-groups", true);
    let mut pushy = link("pushy", 6, PathKind::Ws, now);
    pushy.shared_groups = 9;
    assert_eq!(
        t.offer(pushy),
        LinkDecision::Evict {
            device_id: "three-groups".into(),
            link_id: 5
        }
    );
}

#[test]
fn three_missed_pings_drop_a_connection_and_latency_is_windowed() {
    let config = ManagerConfig::default();
    let t0 = Instant::now();
    let mut h = Health::new(&config, t0);
    assert!(!h.poll_ping(t0 + Duration::from_secs(14)));
    assert!(h.poll_ping(t0 + Duration::from_secs(15)));
    // No second ping while one is in flight.
    assert!(!h.poll_ping(t0 + Duration::from_secs(40)));
    for i in 0..12u64 {
        assert!(!h.record(PingOutcome::Answered(Duration::from_millis(10 * (i + 1)))));
    }
    assert_eq!(h.latencies().count(), 10);
    assert_eq!(h.mean_latency(), Some(Duration::from_millis(75)));
    assert!(!h.record(PingOutcome::Missed));
    assert!((h.error_rate() - 0.1).abs() < 1e-9);
    // A success in between resets the count.
    assert!(!h.record(PingOutcome::Answered(Duration::from_millis(5))));
    assert!(!h.record(PingOutcome::Missed));
    assert!(!h.record(PingOutcome::Missed));
    assert!(h.record(PingOutcome::Missed));
    assert_eq!(h.missed(), 3);
}

#[test]
fn group_ready_is_retried_three_times_two_seconds_apart_then_given_up() {
    let config = ManagerConfig::default();
    let t0 = Instant::now();
    let mut g = GroupReadyTracker::new(&config);
    assert!(matches!(
        g.start("b", "g1", t0),
        GroupReadyAction::Send { attempt: 1, .. }
    ));
    assert!(g.poll(t0 + Duration::from_millis(1999)).is_empty());
    assert!(matches!(
        g.poll(t0 + Duration::from_secs(2)).as_slice(),
        [GroupReadyAction::Send { attempt: 2, .. }]
    ));
    assert!(matches!(
        g.poll(t0 + Duration::from_secs(4)).as_slice(),
        [GroupReadyAction::Send { attempt: 3, .. }]
    ));
    assert!(matches!(
        g.poll(t0 + Duration::from_secs(6)).as_slice(),
        [GroupReadyAction::GiveUp { .. }]
    ));
    assert!(g.poll(t0 + Duration::from_secs(60)).is_empty());
    // An answer stops the retries.
    g.start("c", "g1", t0);
    assert!(g.acknowledge("c", "g1"));
    assert!(g.poll(t0 + Duration::from_secs(10)).is_empty());
}

#[test]
fn backoff_grows_exponentially_with_seeded_jitter_and_a_cap() {
    let mut config = ManagerConfig::default();
    config.backoff_jitter = 0.5;
    let mut a = Backoff::new(&config, 7);
    let mut b = Backoff::new(&config, 7);
    let mut c = Backoff::new(&config, 8);
    let da: Vec<Duration> = (0..10).map(|_| a.next_delay()).collect();
    let db: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
    let dc: Vec<Duration> = (0..10).map(|_| c.next_delay()).collect();
    assert_eq!(da, db, "same seed, same delays");
    assert_ne!(da, dc, "different seed, different jitter");
    for (n, d) in da.iter().enumerate() {
        let base = Duration::from_secs(1 << n.min(6)).min(Duration::from_secs(60));
        assert!(
            *d <= base && *d >= base / 2,
            "delay {n} = {d:?} outside [{:?}, {base:?}]",
            base / 2
        );
    }
    a.reset();
    assert!(a.next_delay() <= Duration::from_secs(1));
}

fn groups(g: &[&str]) -> Vec<String> {
    g.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn own_devices_come_first_then_users_per_group_with_cooldown_and_path_preference() {
    let mut config = ManagerConfig::default();
    config.max_own_devices = 2;
    config.max_users_per_group = 2;
    let t0 = Instant::now();
    let mut p = DialPlanner::new(config, "me-1", "me");
    for i in 2..=4 {
        p.upsert(TrackedDevice::new(
            format!("me-{i}"),
            "me",
            groups(&[]),
            [PathKind::Ws],
        ));
    }
    for u in ["u1", "u2", "u3"] {
        p.upsert(TrackedDevice::new(
            format!("{u}-a"),
            u,
            groups(&["g"]),
            [PathKind::WebRtc, PathKind::Relay, PathKind::Wss],
        ));
        p.upsert(TrackedDevice::new(
            format!("{u}-b"),
            u,
            groups(&["g"]),
            [PathKind::Relay],
        ));
    }
    let plan = p.plan(t0, &BTreeSet::new());
    let ids: Vec<&str> = plan.iter().map(|r| r.device_id.as_str()).collect();
    // Two own devices, then one device each of two distinct users.
    assert_eq!(ids, vec!["me-2", "me-3", "u1-a", "u2-a"]);
    assert_eq!(
        plan[2].path,
        PathKind::Wss,
        "wss preferred over WebRTC and relay"
    );
    // In flight: nothing new.
    assert!(p.plan(t0, &BTreeSet::new()).is_empty());
    p.failed("u1-a", t0);
    p.connected("u2-a");
    let connected: BTreeSet<String> = ["me-2", "me-3", "u2-a"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    // u1-a is cooling down: the next user's device is tried instead of it.
    let plan = p.plan(t0 + Duration::from_secs(1), &connected);
    let ids: Vec<&str> = plan.iter().map(|r| r.device_id.as_str()).collect();
    assert_eq!(ids, vec!["u1-b"]);
    p.failed("u1-b", t0 + Duration::from_secs(1));
    let plan = p.plan(t0 + Duration::from_secs(30), &connected);
    assert_eq!(
        plan.iter()
            .map(|r| r.device_id.as_str())
            .collect::<Vec<_>>(),
        vec!["u3-a"]
    );
    p.failed("u3-a", t0 + Duration::from_secs(30));
    // A device never tried goes before ones that failed.
    let plan = p.plan(t0 + Duration::from_secs(61), &connected);
    assert_eq!(
        plan.iter()
            .map(|r| r.device_id.as_str())
            .collect::<Vec<_>>(),
        vec!["u3-b"]
    );
    p.failed("u3-b", t0 + Duration::from_secs(61));
    // After the 60 s cooldown u1-a is eligible again.
    let plan = p.plan(t0 + Duration::from_secs(62), &connected);
    assert_eq!(
        plan.iter()
            .map(|r| r.device_id.as_str())
            .collect::<Vec<_>>(),
        vec!["u1-a"]
    );
}

#[test]
fn hub_election_is_agreed_and_fails_over_to_the_next_member() {
    let members: BTreeSet<String> = (0..10).map(|i| format!("peer{i}")).collect();
    let hub = elect_hub("room", members.iter().map(String::as_str)).expect("a hub");
    // Every member computes the same role assignment.
    let mut hubs = 0;
    for m in &members {
        match hub_role("room", m, &members, 5) {
            HubRole::Hub => hubs += 1,
            HubRole::Spoke { hub: h } => assert_eq!(h, hub),
            other => panic!("unexpected role {other:?}"),
        }
    }
    assert_eq!(hubs, 1);
    let mut alive = members.clone();
    alive.remove(&hub);
    let next = elect_hub("room", alive.iter().map(String::as_str)).expect("a new hub");
    assert_ne!(next, hub);
    assert!(alive.contains(&next));
    // Small groups stay a mesh.
    assert_eq!(hub_role("room", "peer0", &members, 30), HubRole::Mesh);
}

#[test]
fn a_lost_link_is_redialled_after_its_backoff_not_the_cooldown() {
    let config = ManagerConfig::default();
    let t0 = Instant::now();
    let mut p = DialPlanner::new(config, "me-1", "me");
    p.upsert(TrackedDevice::new(
        "u1-a",
        "u1",
        groups(&["g"]),
        [PathKind::Ws],
    ));
    let none = BTreeSet::new();
    let plan = p.plan(t0, &none);
    assert_eq!(plan.len(), 1);
    p.connected("u1-a");
    let connected: BTreeSet<String> = ["u1-a".to_owned()].into();
    assert!(
        p.plan(t0, &connected).is_empty(),
        "connected: nothing to dial"
    );
    assert_eq!(p.next_due(t0), None);

    // The link is lost; the driver holds the device back for 1 s of backoff.
    p.disconnected("u1-a");
    p.retry_at("u1-a", t0 + Duration::from_secs(1));
    assert!(p.plan(t0, &none).is_empty(), "held back by the backoff");
    assert_eq!(p.next_due(t0), Some(t0 + Duration::from_secs(1)));
    let plan = p.plan(t0 + Duration::from_secs(1), &none);
    assert_eq!(plan.len(), 1, "due after the backoff");

    // The re-dial fails: the next attempt waits for the next backoff step (2 s), not 60 s.
    let t1 = t0 + Duration::from_secs(1);
    p.reconnect_failed("u1-a", t1, t1 + Duration::from_secs(2));
    let d = p.device("u1-a").expect("tracked");
    assert_eq!(d.status, DeviceStatus::ConnectedThenDisconnected);
    assert_eq!(d.failure_count, 1);
    assert!(p.plan(t1 + Duration::from_secs(1), &none).is_empty());
    assert_eq!(p.next_due(t1), Some(t1 + Duration::from_secs(2)));
    assert_eq!(p.plan(t1 + Duration::from_secs(2), &none).len(), 1);

    // A first dial that fails waits the cooldown, and next_due says when.
    p.upsert(TrackedDevice::new(
        "u2-a",
        "u2",
        groups(&["g"]),
        [PathKind::Ws],
    ));
    let plan = p.plan(t1 + Duration::from_secs(2), &none);
    assert_eq!(plan.len(), 1);
    p.failed("u2-a", t1 + Duration::from_secs(2));
    assert_eq!(
        p.next_due(t1 + Duration::from_secs(2)),
        Some(t1 + Duration::from_secs(62))
    );
}
