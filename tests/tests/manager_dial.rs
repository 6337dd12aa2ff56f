//! The manager dials on its own: the host gives candidates, the core planner picks whom to
//! dial (own devices first, then a few users per group), and a lost link is dialled again
//! with exponential backoff until the device is back. Runs on a paused tokio clock over
//! in-memory links, so backoff delays pass virtually and the dial times are exact.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::manager::{managed, memory_link};
use peerlink::core::manager::{DeviceStatus, ManagerConfig, PathKind};
use peerlink::manager::{Candidate, ConnectionManager, ManagerError, ManagerEvent};
use peerlink::{Node, NodeConfig};
use tokio::time::Instant;

const GROUP: &str = "g";

/// A device the test can take down and bring back.
struct Remote {
    node: Node,
    alive: AtomicBool,
}

type Remotes = Arc<BTreeMap<String, Remote>>;
type Dials = Arc<Mutex<Vec<(String, Instant)>>>;

fn remote(user: &str, device: &str) -> (String, Remote) {
    let id = common::identity();
    let node = Node::new(NodeConfig::new(id, user, device)).expect("node");
    (
        device.to_owned(),
        Remote {
            node,
            alive: AtomicBool::new(true),
        },
    )
}

/// The host's dialler: an in-memory link to the device when it is up, an error otherwise.
/// Records each attempt with its (virtual) time.
fn install_dialer(m: &ConnectionManager, remotes: &Remotes, dials: &Dials) {
    let (me, remotes, dials) = (m.node().clone(), Arc::clone(remotes), Arc::clone(dials));
    m.set_dialer(Arc::new(move |c: Candidate, _path, _address| {
        let (me, remotes, dials) = (me.clone(), Arc::clone(&remotes), Arc::clone(&dials));
        Box::pin(async move {
            dials
                .lock()
                .expect("lock")
                .push((c.device_id.clone(), Instant::now()));
            match remotes.get(&c.device_id) {
                Some(r) if r.alive.load(Ordering::Acquire) => Ok(memory_link(&me, &r.node).await),
                _ => Err(ManagerError::NotConnected {
                    device_id: c.device_id,
                }),
            }
        })
    }));
}

fn candidate(device: &str, user: &str) -> Candidate {
    Candidate::new(
        device,
        user,
        [GROUP.to_owned()],
        [
            (PathKind::Ws, String::new()),
            (PathKind::Relay, String::new()),
        ],
    )
}

/// The times `device` was dialled (one attempt tries each path at the same instant).
fn dials_to(dials: &Dials, device: &str) -> Vec<Instant> {
    let mut times: Vec<Instant> = dials
        .lock()
        .expect("lock")
        .iter()
        .filter(|(d, _)| d == device)
        .map(|(_, t)| *t)
        .collect();
    times.dedup();
    times
}

/// Advances the paused clock in small steps until `f` holds (bounded in steps).
async fn run_until(what: &str, f: impl Fn() -> bool) {
    for _ in 0..20_000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test(start_paused = true)]
async fn candidates_are_dialled_by_the_planner_and_a_lost_link_is_redialled_with_backoff() {
    let mut config = ManagerConfig::default();
    config.max_users_per_group = 2;
    config.backoff_initial = Duration::from_secs(1);
    config.backoff_max = Duration::from_secs(60);
    config.backoff_jitter = 0.25;
    let me = managed("me", "me-1", config);
    me.add_group(GROUP);
    let remotes: Remotes = Arc::new(BTreeMap::from([
        remote("me", "me-2"),
        remote("u1", "u1-a"),
        remote("u2", "u2-a"),
        remote("u3", "u3-a"),
    ]));
    let dials: Dials = Arc::default();
    install_dialer(&me, &remotes, &dials);
    let mut events = me.events();

    // The host only lists candidates; the manager dials.
    me.set_candidates([
        candidate("u1-a", "u1"),
        candidate("u2-a", "u2"),
        candidate("u3-a", "u3"),
        candidate("me-2", "me"),
    ]);
    let m = me.clone();
    run_until("own device and two users linked", move || {
        m.connected_devices().len() == 3
    })
    .await;
    // Own device first, then two of the three users (the per-group limit), by device id.
    let mut linked = me.connected_devices();
    linked.sort();
    assert_eq!(linked, ["me-2", "u1-a", "u2-a"]);
    let order: Vec<String> = dials
        .lock()
        .expect("lock")
        .iter()
        .map(|(d, _)| d.clone())
        .collect();
    assert_eq!(
        order,
        ["me-2", "u1-a", "u2-a"],
        "one dial each, own device first"
    );
    let mut added = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let ManagerEvent::Added { device_id, .. } = e {
            added.push(device_id);
        }
    }
    added.sort();
    assert_eq!(
        added,
        ["me-2", "u1-a", "u2-a"],
        "an Added event per dialled device"
    );

    // The host drops u3-a from the candidates (it left the room): it is not dialled when a
    // slot frees up, so the slot stays u1-a's.
    me.remove_candidate("u3-a");
    assert!(me.dial_status("u3-a").is_none());

    // u1-a dies: its link closes and dials fail until it is back.
    let u1 = &remotes["u1-a"];
    u1.alive.store(false, Ordering::Release);
    let lost_at = Instant::now();
    for c in u1.node.connections() {
        c.close("device gone").await;
    }
    let d = dials.clone();
    let m = me.clone();
    run_until("the lost link removed", move || {
        m.connection("u1-a").is_none()
    })
    .await;
    run_until("five re-dials of the dead device", move || {
        dials_to(&d, "u1-a").len() >= 6
    })
    .await;
    let attempts = dials_to(&dials, "u1-a");
    let mut gaps = vec![attempts[1] - lost_at];
    gaps.extend(attempts.windows(2).skip(1).map(|w| w[1] - w[0]));
    // Delay n lies in [0.75, 1] × 2ⁿ s: each gap is longer than the one before.
    for (n, gap) in gaps.iter().enumerate() {
        let base = Duration::from_secs(1 << n);
        assert!(
            *gap >= base.mul_f64(0.75) && *gap <= base + Duration::from_millis(100),
            "gap {n} is {gap:?}, outside the backoff step {base:?} with jitter"
        );
    }
    assert!(gaps.windows(2).all(|w| w[1] > w[0]), "gaps grow: {gaps:?}");
    let status = me.dial_status("u1-a").expect("tracked");
    assert_eq!(status.status, DeviceStatus::ConnectedThenDisconnected);
    assert!(me.connection("u1-a").is_none());
    assert!(
        dials_to(&dials, "u3-a").is_empty(),
        "u3-a was never dialled"
    );

    // u1-a comes back: the next re-dial links it and the dialling stops.
    u1.alive.store(true, Ordering::Release);
    let m = me.clone();
    run_until("u1-a linked again", move || m.connection("u1-a").is_some()).await;
    let count = dials_to(&dials, "u1-a").len();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(dials_to(&dials, "u1-a").len(), count, "no dial once linked");
    assert_eq!(
        me.dial_status("u1-a").expect("tracked").status,
        DeviceStatus::Connected
    );
    me.shutdown();
}

#[tokio::test(start_paused = true)]
async fn a_first_dial_that_fails_waits_the_cooldown() {
    let mut config = ManagerConfig::default();
    config.retry_cooldown = Duration::from_secs(60);
    let me = managed("me", "me-1", config);
    me.add_group(GROUP);
    let (id, r) = remote("u1", "u1-a");
    r.alive.store(false, Ordering::Release);
    let remotes: Remotes = Arc::new(BTreeMap::from([(id, r)]));
    let dials: Dials = Arc::default();
    install_dialer(&me, &remotes, &dials);
    let start = Instant::now();
    me.set_candidates([candidate("u1-a", "u1")]);
    let d = dials.clone();
    run_until("three attempts", move || dials_to(&d, "u1-a").len() >= 3).await;
    let attempts = dials_to(&dials, "u1-a");
    // Both paths are tried in one attempt (ws, then relay): count attempts by time.
    let mut times = attempts.clone();
    times.dedup();
    assert!(times.len() >= 2, "{times:?}");
    assert!(times[0] - start < Duration::from_secs(1), "dialled at once");
    assert!(
        times[1] - times[0] >= Duration::from_secs(60),
        "the retry waits the cooldown: {:?}",
        times[1] - times[0]
    );
    assert_eq!(
        me.dial_status("u1-a").expect("tracked").status,
        DeviceStatus::TriedButFailed
    );
    me.shutdown();
}
