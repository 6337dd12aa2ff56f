//! ConnectionManager over real loopback links: one link per device, path changes that drain,
//! groups, pings and device messages relayed through a middle device.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::BOUND;
use common::manager::{managed, wait_for, ws_link};
use peerlink::core::device_message::DeliveryStatus;
use peerlink::core::manager::{ManagerConfig, PathKind};
use peerlink::manager::{ConnectionManager, ManagerEvent};
use peerlink::{HandlerError, RpcError, typed_handler};

async fn link(a: &ConnectionManager, b: &ConnectionManager) {
    ws_link(a, b).await;
}

async fn memory_link(a: &ConnectionManager, b: &ConnectionManager) {
    common::manager::memory_link(a.node(), b.node()).await;
}

#[tokio::test]
async fn one_link_per_device_a_new_link_replaces_the_old_and_events_say_so() {
    let a = managed("ua", "a", ManagerConfig::default());
    let b = managed("ub", "b", ManagerConfig::default());
    let mut events = a.events();
    link(&a, &b).await;
    let first = a.connection("b").expect("linked");
    match tokio::time::timeout(BOUND, events.recv())
        .await
        .expect("event")
        .expect("open")
    {
        ManagerEvent::Added { device_id, .. } => assert_eq!(device_id, "b"),
        other => panic!("expected Added, got {other:?}"),
    }
    // A second link of the same kind: the newer one wins.
    let listener = b.node().listen("127.0.0.1:0").await.expect("listen");
    a.dial(&listener.url()).await.expect("second dial");
    let changed = loop {
        match tokio::time::timeout(BOUND, events.recv())
            .await
            .expect("event")
            .expect("open")
        {
            ManagerEvent::PathChanged {
                device_id,
                connection,
                ..
            } => break (device_id, connection),
            ManagerEvent::GroupReady { .. } => continue,
            other => panic!("expected PathChanged, got {other:?}"),
        }
    };
    assert_eq!(changed.0, "b");
    assert_ne!(changed.1, first);
    assert_eq!(a.connected_devices(), vec!["b".to_owned()]);
    // The old link drains and closes; the new one stays.
    tokio::time::timeout(BOUND, first.closed())
        .await
        .expect("old link closes");
    assert!(a.connection("b").is_some_and(|c| c.is_open()));
    let b2 = b.clone();
    wait_for("b sees one link", move || {
        b2.node().connections().len() == 1
    })
    .await;
}

#[tokio::test]
async fn a_thousand_calls_in_flight_during_a_path_change_complete_exactly_once() {
    // Prefer the in-memory path so that it replaces the WebSocket link (an upgrade).
    let mut config = ManagerConfig::default();
    config.path_preference = vec![PathKind::Memory, PathKind::Wss, PathKind::Ws];
    let a = managed("ua", "a", config.clone());
    let b = managed("ub", "b", config);
    let runs: Arc<Mutex<HashMap<u32, u32>>> = Arc::default();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    {
        let runs = Arc::clone(&runs);
        let gate = Arc::clone(&gate);
        b.node().expose(
            "work",
            typed_handler(move |n: u32| {
                let runs = Arc::clone(&runs);
                let gate = Arc::clone(&gate);
                async move {
                    *runs.lock().expect("lock").entry(n).or_default() += 1;
                    let _permit = gate
                        .acquire()
                        .await
                        .map_err(|_| HandlerError::new("gate", "closed"))?;
                    Ok::<u32, HandlerError>(n * 2)
                }
            }),
        );
    }
    link(&a, &b).await;
    let old = a.connection("b").expect("ws link");
    let calls: Vec<_> = (0..1000u32)
        .map(|n| {
            let a = a.clone();
            tokio::spawn(async move { (n, a.call::<_, u32>("b", "work", &n).await) })
        })
        .collect();
    let runs2 = Arc::clone(&runs);
    wait_for("all calls reach the handler", move || {
        runs2.lock().expect("lock").len() == 1000
    })
    .await;
    // The path moves while all 1000 are in flight.
    memory_link(&a, &b).await;
    let a2 = a.clone();
    wait_for("path changed", move || {
        a2.connection("b")
            .is_some_and(|c| c.transport_kind() == peerlink::TransportKind::Memory)
    })
    .await;
    assert!(
        old.is_open(),
        "the old link drains instead of closing under its calls"
    );
    // New calls take the new path while the old ones are still pending.
    let after = {
        let a = a.clone();
        tokio::spawn(async move { a.call::<_, u32>("b", "work", &5000u32).await })
    };
    gate.add_permits(2000);
    for call in calls {
        let (n, result) = tokio::time::timeout(BOUND, call)
            .await
            .expect("in bound")
            .expect("task");
        assert_eq!(result.expect("call completes"), n * 2);
    }
    assert_eq!(
        tokio::time::timeout(BOUND, after)
            .await
            .expect("bound")
            .expect("task")
            .expect("call"),
        10000
    );
    let runs = runs.lock().expect("lock").clone();
    assert_eq!(runs.len(), 1001);
    assert!(
        runs.values().all(|count| *count == 1),
        "every call ran exactly once"
    );
    tokio::time::timeout(BOUND, old.closed())
        .await
        .expect("old link closes once drained");
}

#[tokio::test]
async fn group_handlers_are_scoped_ready_and_removable() {
    let a = managed("ua", "a", ManagerConfig::default());
    let b = managed("ub", "b", ManagerConfig::default());
    for m in [&a, &b] {
        m.add_group("g1");
        m.expose_group(
            "g1",
            "listChanges",
            typed_handler(|x: u32| async move { Ok::<u32, HandlerError>(x + 1) }),
        );
    }
    let mut events = a.events();
    link(&a, &b).await;
    let ready = loop {
        match tokio::time::timeout(BOUND, events.recv())
            .await
            .expect("event")
            .expect("open")
        {
            ManagerEvent::GroupReady {
                device_id,
                group_id,
            } => break (device_id, group_id),
            _ => continue,
        }
    };
    assert_eq!(ready, ("b".to_owned(), "g1".to_owned()));
    let r: u32 = a
        .call("b", "listChanges_g1", &1u32)
        .await
        .expect("group call");
    assert_eq!(r, 2);
    b.remove_group("g1");
    let err = a
        .call::<_, u32>("b", "listChanges_g1", &1u32)
        .await
        .expect_err("removed");
    assert!(
        matches!(
            err,
            peerlink::manager::ManagerError::Rpc(RpcError::NoHandler { .. })
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn pings_fill_the_latency_window() {
    let mut config = ManagerConfig::default();
    config.ping_interval = Duration::from_millis(50);
    let a = managed("ua", "a", config.clone());
    let b = managed("ub", "b", config);
    link(&a, &b).await;
    let a2 = a.clone();
    wait_for("a latency sample", move || {
        a2.health("b")
            .is_some_and(|(latency, _, _)| latency.is_some())
    })
    .await;
    let (_, error_rate, missed) = a.health("b").expect("health");
    assert_eq!(missed, 0);
    assert!(error_rate < 1e-9);
}

#[tokio::test]
async fn a_device_message_reaches_c_through_b_and_reports_its_hops() {
    let a = managed("ua", "a", ManagerConfig::default());
    let b = managed("ub", "b", ManagerConfig::default());
    let c = managed("uc", "c", ManagerConfig::default());
    c.on_device_message(Arc::new(|m| {
        Box::pin(async move {
            let mut answer = b"got ".to_vec();
            answer.extend_from_slice(&m.payload);
            Ok(answer)
        })
    }));
    link(&a, &b).await;
    link(&b, &c).await;
    assert!(a.connection("c").is_none(), "A and C have no direct link");
    // A learns that B reaches C (normally after a ping).
    a.refresh_network_info().await;
    let result = tokio::time::timeout(BOUND, a.send_device_message("c", "g1", b"offer".to_vec()))
        .await
        .expect("in bound")
        .expect("sent");
    assert_eq!(result.status, DeliveryStatus::Delivered);
    assert_eq!(result.hops, vec!["b".to_owned(), "c".to_owned()]);
    assert_eq!(result.payload, b"got offer".to_vec());
    // A target nobody knows is answered 404, not flooded forever.
    let lost = a
        .send_device_message("zed", "g1", vec![])
        .await
        .expect("sent");
    assert_ne!(lost.status, DeliveryStatus::Delivered);
}
