//! Native peers that know only each other's device id: WebRTC through the signaling server
//! (identities verified against the server's view, RPC, still working after the server stops),
//! and hybrid connections (relay at once, WebRTC when it opens, relay again when it dies).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use peerlink::signaling::{
    DialerConfig, HybridAcceptor, HybridConfig, HybridConnection, HybridEvent, IncomingLinks,
    SignalingClient, SignalingConfig, SignalingEvents, WebRtcDialer,
};
use peerlink::webrtc::{IceTimeouts, IceTransportPolicy, PathCut, WebRtcConfig};
use peerlink::{
    CallOptions, HandlerError, Identity, Node, NodeConfig, TransportKind, handler_fn, typed_handler,
};
use tokio::sync::Semaphore;

use common::signaling::{server, wait_for_event};

const BOUND: Duration = Duration::from_secs(30);

fn identity() -> Identity {
    Identity::generate(&mut rand::rngs::OsRng)
}

async fn client(url: &str, identity: Identity, device: &str) -> (SignalingClient, SignalingEvents) {
    let config = SignalingConfig::new(url, identity, format!("user-{device}"), device);
    tokio::time::timeout(BOUND, SignalingClient::connect(config))
        .await
        .expect("connect within bound")
        .expect("connect")
}

/// A node and a dialer on the same identity.
async fn peer(
    url: &str,
    device: &str,
    config: DialerConfig,
) -> (Node, Identity, WebRtcDialer, SignalingEvents, IncomingLinks) {
    let id = identity();
    let node = Node::new(NodeConfig::new(
        id.clone(),
        format!("user-{device}"),
        device,
    ))
    .unwrap();
    let (client, events) = client(url, id.clone(), device).await;
    let (dialer, rest, incoming) = WebRtcDialer::new(client, events, config);
    (node, id, dialer, rest, incoming)
}

fn digest(body: &[u8]) -> u64 {
    body.iter().fold(0u64, |acc, b| {
        acc.wrapping_mul(31).wrapping_add(u64::from(*b))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_through_the_server_verifies_identities_and_outlives_the_server() {
    let server = server().await;
    let config = DialerConfig::new(WebRtcConfig::loopback());
    let (alice, alice_id, alice_dialer, _a_rest, _a_in) =
        peer(&server.ws_url(), "alice-laptop", config.clone()).await;
    let (bob, bob_id, _bob_dialer, _b_rest, mut bob_incoming) =
        peer(&server.ws_url(), "bob-phone", config).await;
    bob.expose(
        "add",
        typed_handler(|(a, b): (i64, i64)| async move { Ok::<_, HandlerError>(a + b) }),
    );

    let accept = async {
        let incoming = bob_incoming.next().await.expect("an incoming link");
        assert_eq!(incoming.from_device(), "alice-laptop");
        incoming.accept(&bob).await
    };
    let (to_bob, to_alice) = tokio::time::timeout(BOUND, async {
        tokio::join!(alice_dialer.connect(&alice, "bob-phone"), accept)
    })
    .await
    .expect("WebRTC and handshake within bound");
    let (to_bob, to_alice) = (to_bob.unwrap(), to_alice.unwrap());

    assert_eq!(to_bob.transport_kind(), TransportKind::WebRtc);
    assert_eq!(to_bob.remote().public_key, bob_id.public_key());
    assert_eq!(to_bob.remote().device_id, "bob-phone");
    assert_eq!(to_alice.remote().public_key, alice_id.public_key());
    assert_eq!(to_alice.handshake_hash(), to_bob.handshake_hash());
    let sum: i64 = to_bob.call("add", &(2, 40)).await.unwrap();
    assert_eq!(sum, 42);
    let relayed = server.metrics().relay_bytes();

    server.shutdown().await;
    for i in 0..20i64 {
        let sum: i64 = tokio::time::timeout(BOUND, to_bob.call("add", &(i, 1)))
            .await
            .expect("call within bound")
            .unwrap();
        assert_eq!(sum, i + 1);
    }
    assert!(to_bob.is_open() && to_alice.is_open());
    assert_eq!(relayed, 0, "no RPC byte went through the server relay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialling_an_offline_device_fails_with_the_server_code() {
    let server = server().await;
    let config = DialerConfig::new(WebRtcConfig::loopback());
    let (alice, _, dialer, _rest, _incoming) = peer(&server.ws_url(), "alice", config).await;
    let err = tokio::time::timeout(BOUND, dialer.connect(&alice, "nobody"))
        .await
        .expect("bounded")
        .unwrap_err();
    match err {
        peerlink::signaling::DialError::Signaling(e) => assert_eq!(e.code(), "target_offline"),
        other => panic!("expected target_offline, got {other}"),
    }
}

/// Accepts every hybrid connection made to `node`; they arrive on the returned channel (a
/// dropped receiver drops them as they come).
fn accept_all(
    node: &Node,
    incoming: IncomingLinks,
) -> tokio::sync::mpsc::UnboundedReceiver<HybridConnection> {
    let mut acceptor = HybridAcceptor::new(node.clone(), incoming);
    let (accepted_tx, accepted_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        // Keeps accepting (and attaching) until the client closes.
        while let Some(h) = acceptor.accept().await {
            let _ = accepted_tx.send(h);
        }
    });
    accepted_rx
}

/// Dials "bob" as a hybrid connection: the relay at once, then up to `attempts` WebRTC tries.
async fn dial_bob(dialer: &WebRtcDialer, node: &Node, attempts: u32) -> HybridConnection {
    let config = HybridConfig {
        retry_delay: Duration::from_millis(200),
        max_webrtc_attempts: attempts,
    };
    tokio::time::timeout(BOUND, HybridConnection::dial(dialer, node, "bob", config))
        .await
        .expect("relay within bound")
        .unwrap()
}

fn hybrid_dialer_config(webrtc: WebRtcConfig) -> DialerConfig {
    let mut config = DialerConfig::new(webrtc);
    config.accept_relay = true;
    config.open_timeout = Duration::from_secs(10);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_without_a_direct_path_stays_on_the_relay_and_moves_8_mib() {
    let server = server().await;
    // Relay-only ICE with no TURN server: WebRTC cannot open.
    let webrtc = WebRtcConfig {
        ice_transport_policy: IceTransportPolicy::Relay,
        ..WebRtcConfig::loopback()
    };
    let config = hybrid_dialer_config(webrtc);
    let (alice, _, alice_dialer, _a_rest, _a_in) =
        peer(&server.ws_url(), "alice", config.clone()).await;
    let (bob, bob_id, _bob_dialer, _b_rest, bob_incoming) =
        peer(&server.ws_url(), "bob", config).await;
    bob.expose(
        "digest",
        handler_fn(|req| async move {
            Ok::<_, HandlerError>(Bytes::from(format!(
                "{}:{}",
                req.body.len(),
                digest(&req.body)
            )))
        }),
    );
    drop(accept_all(&bob, bob_incoming));
    let to_bob = dial_bob(&alice_dialer, &alice, 2).await;
    assert_eq!(to_bob.path(), TransportKind::Relay);
    assert_eq!(to_bob.remote().public_key, bob_id.public_key());

    let mut payload = vec![0u8; 8 << 20];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut payload);
    let expected = format!("{}:{}", payload.len(), digest(&payload));
    let reply = to_bob
        .current()
        .call_raw(
            "digest",
            Bytes::from(payload),
            CallOptions {
                timeout: Some(BOUND),
            },
        )
        .await
        .unwrap();
    assert_eq!(reply, Bytes::from(expected));
    assert!(server.metrics().relay_bytes() >= 8 << 20);
    // WebRTC had its attempts; it never became the path.
    assert!(
        !to_bob
            .wait_for_path(TransportKind::WebRtc, Duration::from_secs(3))
            .await
    );
    assert!(to_bob.webrtc().is_none());
    assert_eq!(to_bob.path(), TransportKind::Relay);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_moves_to_webrtc_in_flight_calls_complete_once_and_falls_back() {
    let server = server().await;
    let config = hybrid_dialer_config(WebRtcConfig::loopback());
    let (alice, _, alice_dialer, _a_rest, _a_in) =
        peer(&server.ws_url(), "alice", config.clone()).await;
    let (bob, _, _bob_dialer, _b_rest, bob_incoming) = peer(&server.ws_url(), "bob", config).await;

    // `slow` runs once per call and waits for the gate; counts tell how often it ran.
    let gate = Arc::new(Semaphore::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    {
        let (gate, started) = (Arc::clone(&gate), Arc::clone(&started));
        bob.expose(
            "slow",
            typed_handler(move |n: u32| {
                let (gate, started) = (Arc::clone(&gate), Arc::clone(&started));
                async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    let _permit = gate.acquire().await;
                    Ok::<_, HandlerError>(n * 10)
                }
            }),
        );
    }
    let mut accepted_rx = accept_all(&bob, bob_incoming);

    // Gate closed before dialling, so calls made now are in flight when the path changes.
    let to_bob = dial_bob(&alice_dialer, &alice, 5).await;
    let first_path = to_bob.path();
    let relay_calls: Vec<_> = (0..5u32)
        .map(|n| {
            let conn = to_bob.relay().unwrap();
            tokio::spawn(async move { conn.call::<_, u32>("slow", &n).await })
        })
        .collect();
    tokio::time::timeout(BOUND, async {
        while started.load(Ordering::SeqCst) < 5 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("relay calls running");
    assert_eq!(first_path, TransportKind::Relay);

    assert!(
        to_bob.wait_for_path(TransportKind::WebRtc, BOUND).await,
        "moves to WebRTC"
    );
    let from_bob = tokio::time::timeout(BOUND, accepted_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        from_bob.wait_for_path(TransportKind::WebRtc, BOUND).await,
        "the accepting side moves too"
    );
    let webrtc_calls: Vec<_> = (5..10u32)
        .map(|n| {
            let hybrid = to_bob.clone();
            tokio::spawn(async move { hybrid.call::<_, u32>("slow", &n).await })
        })
        .collect();
    tokio::time::timeout(BOUND, async {
        while started.load(Ordering::SeqCst) < 10 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("WebRTC calls running");
    gate.add_permits(100);
    for (n, call) in (0..10u32).zip(relay_calls.into_iter().chain(webrtc_calls)) {
        let reply = tokio::time::timeout(BOUND, call)
            .await
            .expect("call completes")
            .unwrap()
            .unwrap();
        assert_eq!(reply, n * 10);
    }
    assert_eq!(
        started.load(Ordering::SeqCst),
        10,
        "each call ran exactly once"
    );

    // WebRTC dies: new calls go back to the relay.
    let webrtc = to_bob.webrtc().expect("WebRTC up");
    assert_eq!(webrtc.transport_kind(), TransportKind::WebRtc);
    webrtc.close("test: direct path lost").await;
    assert!(to_bob.wait_for_path(TransportKind::Relay, BOUND).await);
    let reply: u32 = tokio::time::timeout(BOUND, to_bob.call("slow", &7u32))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply, 70);
    assert_eq!(started.load(Ordering::SeqCst), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_on_webrtc_keeps_working_when_the_server_and_its_relay_go() {
    let server = server().await;
    let config = hybrid_dialer_config(WebRtcConfig::loopback());
    let (alice, _, alice_dialer, _a_rest, _a_in) =
        peer(&server.ws_url(), "alice", config.clone()).await;
    let (bob, _, _bob_dialer, _b_rest, bob_incoming) = peer(&server.ws_url(), "bob", config).await;
    let runs = Arc::new(AtomicUsize::new(0));
    {
        let runs = Arc::clone(&runs);
        bob.expose(
            "inc",
            typed_handler(move |n: u64| {
                let runs = Arc::clone(&runs);
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, HandlerError>(n + 1)
                }
            }),
        );
    }
    let mut accepted_rx = accept_all(&bob, bob_incoming);
    let to_bob = dial_bob(&alice_dialer, &alice, 3).await;
    assert!(to_bob.wait_for_path(TransportKind::WebRtc, BOUND).await);
    let from_bob = tokio::time::timeout(BOUND, accepted_rx.recv())
        .await
        .unwrap()
        .unwrap();
    let relay = to_bob.relay().expect("a relay connection");

    // The server crashes: every relay link ends with the signaling connections.
    server.abort();
    tokio::time::timeout(BOUND, relay.closed())
        .await
        .expect("the relay connection ends with the server");
    // Give the hybrid's background task time to react to the lost relay.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(to_bob.path(), TransportKind::WebRtc, "still on WebRTC");
    assert!(to_bob.is_open() && from_bob.is_open());
    for n in 0..20u64 {
        let got: u64 = tokio::time::timeout(BOUND, to_bob.call("inc", &n))
            .await
            .expect("call within bound")
            .unwrap();
        assert_eq!(got, n + 1);
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        20,
        "each call ran exactly once"
    );
    assert_eq!(to_bob.path(), TransportKind::WebRtc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_uses_the_relay_while_webrtc_is_down_and_each_call_runs_once() {
    let server = server().await;
    // Alice's link loses its path on demand; short ICE timers so the outage shows at once.
    let cut = PathCut::new();
    let config = |cut: Option<PathCut>| {
        hybrid_dialer_config(WebRtcConfig {
            path_cut: cut,
            ice_timeouts: IceTimeouts {
                disconnected: Some(Duration::from_secs(1)),
                failed: Some(Duration::from_secs(20)),
                keepalive: Some(Duration::from_millis(250)),
            },
            ..WebRtcConfig::loopback()
        })
    };
    let (alice, _, alice_dialer, _a_rest, _a_in) =
        peer(&server.ws_url(), "alice", config(Some(cut.clone()))).await;
    let (bob, _, _bob_dialer, _b_rest, bob_incoming) =
        peer(&server.ws_url(), "bob", config(None)).await;

    // `run` counts how often each call number ran; numbers >= 100 wait for the gate first.
    let runs = Arc::new(std::sync::Mutex::new(
        std::collections::HashMap::<u32, usize>::new(),
    ));
    let gate = Arc::new(Semaphore::new(0));
    {
        let (runs, gate) = (Arc::clone(&runs), Arc::clone(&gate));
        bob.expose(
            "run",
            typed_handler(move |n: u32| {
                let (runs, gate) = (Arc::clone(&runs), Arc::clone(&gate));
                async move {
                    *runs.lock().unwrap().entry(n).or_default() += 1;
                    if n >= 100 {
                        let _permit = gate.acquire().await;
                    }
                    Ok::<_, HandlerError>(n + 1000)
                }
            }),
        );
    }
    let _accepted = accept_all(&bob, bob_incoming);
    let to_bob = dial_bob(&alice_dialer, &alice, 3).await;
    let mut events = to_bob.events();
    assert!(to_bob.wait_for_path(TransportKind::WebRtc, BOUND).await);
    for n in 0..5u32 {
        let got: u32 = tokio::time::timeout(BOUND, to_bob.call("run", &n))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, n + 1000);
    }

    // A call in flight on WebRTC when the path goes: it has reached bob and waits there.
    let webrtc = to_bob.current();
    assert_eq!(webrtc.transport_kind(), TransportKind::WebRtc);
    let in_flight = tokio::spawn(async move { webrtc.call::<_, u32>("run", &100u32).await });
    tokio::time::timeout(BOUND, async {
        while !runs.lock().unwrap().contains_key(&100) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the in-flight call reached bob");

    cut.cut();
    let before = wait_for_event(&mut events, HybridEvent::WebRtcDisconnected).await;
    assert!(
        before
            .iter()
            .all(|e| *e == HybridEvent::Path(TransportKind::WebRtc)),
        "nothing but the move to WebRTC before the outage: {before:?}"
    );
    wait_for_event(&mut events, HybridEvent::Path(TransportKind::Relay)).await;
    assert_eq!(to_bob.path(), TransportKind::Relay);
    gate.add_permits(100);
    let relayed_before = server.metrics().relay_bytes();
    for n in 5..10u32 {
        let got: u32 = tokio::time::timeout(BOUND, to_bob.call("run", &n))
            .await
            .expect("a call during the outage completes (over the relay)")
            .unwrap();
        assert_eq!(got, n + 1000);
    }
    // Every datagram of alice's link is still dropped: these calls went over the relay.
    assert!(cut.is_cut());
    assert!(server.metrics().relay_bytes() > relayed_before);
    assert!(
        !in_flight.is_finished(),
        "the call in flight on WebRTC waits for its link (bob's reply cannot reach alice)"
    );

    cut.restore();
    wait_for_event(&mut events, HybridEvent::WebRtcBack).await;
    wait_for_event(&mut events, HybridEvent::Path(TransportKind::WebRtc)).await;
    let got = tokio::time::timeout(BOUND, in_flight)
        .await
        .expect("the in-flight call completes once the link is back")
        .unwrap()
        .unwrap();
    assert_eq!(got, 1100);
    for n in 10..15u32 {
        assert_eq!(to_bob.path(), TransportKind::WebRtc);
        let got: u32 = tokio::time::timeout(BOUND, to_bob.call("run", &n))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, n + 1000);
    }
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 16, "calls 0-14 and 100 ran: {runs:?}");
    assert!(
        runs.values().all(|&count| count == 1),
        "each call ran exactly once: {runs:?}"
    );
}
