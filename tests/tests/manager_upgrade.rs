//! Automatic upgrade to a direct WebRTC link, signalled over device messages, on loopback:
//! a device reached only through another moves to a direct link that survives the middle
//! device leaving, and a WebSocket link moves to WebRTC under 1,000 calls in flight, every
//! call completing exactly once.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::BOUND;
use common::manager::{wait_for, ws_link};
use peerlink::core::device_message::DeliveryStatus;
use peerlink::core::manager::{ManagerConfig, PathKind};
use peerlink::manager::{ConnectionManager, UpgradeConfig};
use peerlink::webrtc::WebRtcConfig;
use peerlink::{HandlerError, TransportKind, typed_handler};

fn managed(device: &str, config: ManagerConfig, upgrade: UpgradeConfig) -> ConnectionManager {
    let manager = common::manager::managed(&format!("user-{device}"), device, config);
    manager.enable_webrtc_upgrade(upgrade);
    manager
}

fn kind(m: &ConnectionManager, device: &str) -> Option<TransportKind> {
    m.connection(device).map(|c| c.transport_kind())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reaches_c_through_b_upgrades_to_webrtc_and_survives_b_leaving() {
    let upgrade = UpgradeConfig::new(WebRtcConfig::loopback());
    let a = managed("a", ManagerConfig::default(), upgrade.clone());
    let b = managed("b", ManagerConfig::default(), upgrade.clone());
    let c = managed("c", ManagerConfig::default(), upgrade);
    c.on_device_message(Arc::new(|_| Box::pin(async { Ok(b"hello a".to_vec()) })));
    c.node().expose(
        "double",
        typed_handler(|n: u32| async move { Ok::<u32, HandlerError>(n * 2) }),
    );
    ws_link(&a, &b).await;
    ws_link(&b, &c).await;
    assert!(a.connection("c").is_none(), "A and C start without a link");
    a.refresh_network_info().await;
    c.refresh_network_info().await;

    let result = tokio::time::timeout(BOUND, a.send_device_message("c", "g1", b"hi".to_vec()))
        .await
        .expect("in bound")
        .expect("sent");
    assert_eq!(result.status, DeliveryStatus::Delivered);
    assert_eq!(result.hops, vec!["b".to_owned(), "c".to_owned()]);

    // The delivery starts the upgrade on its own; signals travel through B.
    let (a2, c2) = (a.clone(), c.clone());
    wait_for("a direct WebRTC link between A and C", move || {
        kind(&a2, "c") == Some(TransportKind::WebRtc)
            && kind(&c2, "a") == Some(TransportKind::WebRtc)
    })
    .await;
    let at_a = a.connection("c").expect("A's link to C");
    assert_eq!(at_a.remote().device_id, "c");
    assert_eq!(at_a.remote().public_key, c.node().public_key());

    // B leaves: the direct link does not depend on it.
    b.shutdown();
    tokio::time::timeout(BOUND, b.node().close())
        .await
        .expect("B closes in bound");
    let a2 = a.clone();
    wait_for("A notices B left", move || a2.connection("b").is_none()).await;
    for n in 0..10u32 {
        let r: u32 = tokio::time::timeout(BOUND, a.call("c", "double", &n))
            .await
            .expect("call in bound")
            .expect("call over the direct link");
        assert_eq!(r, n * 2);
    }
    assert_eq!(kind(&a, "c"), Some(TransportKind::WebRtc));
    // Device messages now go straight over the direct link.
    let direct = tokio::time::timeout(BOUND, a.send_device_message("c", "g1", b"again".to_vec()))
        .await
        .expect("in bound")
        .expect("sent");
    assert_eq!(direct.status, DeliveryStatus::Delivered);
    assert_eq!(direct.hops, vec!["c".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_calls_in_flight_while_websocket_moves_to_webrtc_complete_exactly_once() {
    // WebRTC ranks above WebSocket here, so the direct link replaces the WebSocket one.
    let mut config = ManagerConfig::default();
    config.path_preference = vec![
        PathKind::WebRtc,
        PathKind::Wss,
        PathKind::Ws,
        PathKind::Relay,
    ];
    // Started by hand below, once every call is in flight.
    let mut upgrade = UpgradeConfig::new(WebRtcConfig::loopback());
    upgrade.automatic = false;
    let a = managed("a", config.clone(), upgrade.clone());
    let c = managed("c", config, upgrade);
    let runs: Arc<Mutex<HashMap<u32, u32>>> = Arc::default();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    {
        let runs = Arc::clone(&runs);
        let gate = Arc::clone(&gate);
        c.node().expose(
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
    ws_link(&a, &c).await;
    let old = a.connection("c").expect("ws link");
    assert_eq!(old.transport_kind(), TransportKind::WebSocket);
    let calls: Vec<_> = (0..1000u32)
        .map(|n| {
            let a = a.clone();
            tokio::spawn(async move { (n, a.call::<_, u32>("c", "work", &n).await) })
        })
        .collect();
    let runs2 = Arc::clone(&runs);
    wait_for("all calls reach the handler", move || {
        runs2.lock().expect("lock").len() == 1000
    })
    .await;

    // The path moves while all 1000 are in flight; the signals go as device messages over
    // the WebSocket link itself.
    let new = tokio::time::timeout(BOUND, a.upgrade("c"))
        .await
        .expect("upgrade in bound")
        .expect("upgrade");
    assert_eq!(new.transport_kind(), TransportKind::WebRtc);
    assert_eq!(kind(&a, "c"), Some(TransportKind::WebRtc));
    let c2 = c.clone();
    wait_for("C moved too", move || {
        kind(&c2, "a") == Some(TransportKind::WebRtc)
    })
    .await;
    assert!(
        old.is_open(),
        "the old link drains instead of closing under its calls"
    );
    // New calls take the new path while the old ones are still pending.
    let after = {
        let a = a.clone();
        tokio::spawn(async move { a.call::<_, u32>("c", "work", &5000u32).await })
    };
    gate.add_permits(2000);
    let mut results: HashMap<u32, u32> = HashMap::new();
    for call in calls {
        let (n, result) = tokio::time::timeout(BOUND, call)
            .await
            .expect("in bound")
            .expect("task");
        assert_eq!(result.expect("call completes"), n * 2);
        *results.entry(n).or_default() += 1;
    }
    assert_eq!(results.len(), 1000);
    assert!(results.values().all(|count| *count == 1));
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
        "every call ran exactly once on the callee"
    );
    tokio::time::timeout(BOUND, old.closed())
        .await
        .expect("old link closes once drained");
    assert_eq!(kind(&a, "c"), Some(TransportKind::WebRtc));
}

#[tokio::test]
async fn an_upgrade_is_refused_when_not_enabled() {
    let x = common::manager::managed("user-x", "x", ManagerConfig::default());
    let err = x.upgrade("y").await.expect_err("disabled");
    assert_eq!(err.code(), "upgrade_disabled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_upgrades_keeps_the_websocket_path() {
    let mut config = ManagerConfig::default();
    config.path_preference = vec![PathKind::WebRtc, PathKind::Ws];
    let mut upgrade = UpgradeConfig::new(WebRtcConfig::loopback());
    upgrade.automatic = false;
    upgrade.open_timeout = Duration::from_secs(2);
    let a = managed("a", config.clone(), upgrade);
    let c = common::manager::managed("user-c", "c", config);
    c.node().expose(
        "double",
        typed_handler(|n: u32| async move { Ok::<u32, HandlerError>(n * 2) }),
    );
    ws_link(&a, &c).await;
    let err = tokio::time::timeout(BOUND, a.upgrade("c"))
        .await
        .expect("bounded by the open timeout")
        .expect_err("the peer does not answer offers");
    assert_eq!(err.code(), "upgrade_failed");
    assert_eq!(kind(&a, "c"), Some(TransportKind::WebSocket));
    let r: u32 = a.call("c", "double", &4u32).await.expect("old path works");
    assert_eq!(r, 8);
}
