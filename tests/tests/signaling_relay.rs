//! Two native nodes that share nothing but a signaling server: presence and signals through
//! it, then a peerlink connection over relay frames only — identities verified end to end,
//! RPC, an 8 MiB transfer — and the clients reconnecting and re-joining after a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use peerlink::signaling::{SignalingClient, SignalingConfig, SignalingEvent, SignalingEvents};
use peerlink::{
    CallOptions, Connection, HandlerError, Identity, Node, NodeConfig, Role, TransportKind,
    handler_fn, typed_handler,
};
use peerlink_signal_server::{Rate, Server, ServerConfig};
use serde_json::json;

const BOUND: Duration = Duration::from_secs(30);

fn identity() -> Identity {
    Identity::generate(&mut rand::rngs::OsRng)
}

async fn server_on(listener: tokio::net::TcpListener) -> Server {
    let config = ServerConfig {
        // Relay as fast as loopback allows; the default byte rate is exercised elsewhere.
        relay_byte_rate: Rate::unlimited(),
        ..ServerConfig::default()
    };
    Server::serve(listener, config).await.unwrap()
}

async fn server() -> Server {
    server_on(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).await
}

async fn client(url: &str, identity: Identity, device: &str) -> (SignalingClient, SignalingEvents) {
    let mut config = SignalingConfig::new(url, identity, format!("user-{device}"), device);
    config.backoff_initial = Duration::from_millis(50);
    config.backoff_max = Duration::from_millis(500);
    tokio::time::timeout(BOUND, SignalingClient::connect(config))
        .await
        .expect("connect within bound")
        .expect("connect")
}

/// Waits for the first event `pick` accepts, skipping others.
async fn wait_for<T>(
    events: &mut SignalingEvents,
    mut pick: impl FnMut(SignalingEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(BOUND, async {
        // Bounded by the timeout around it.
        loop {
            let event = events.next().await.expect("client still running");
            if let Some(t) = pick(event) {
                return t;
            }
        }
    })
    .await
    .expect("event within bound")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_signals_flow_with_the_server_stamped_sender() {
    let server = server().await;
    let (alice_id, bob_id) = (identity(), identity());
    let bob_key = bob_id.public_key().to_base64();
    let (alice, mut alice_events) = client(&server.ws_url(), alice_id, "alice-laptop").await;
    let (bob, bob_events) = client(&server.ws_url(), bob_id, "bob-phone").await;

    assert!(alice.join("lobby").await.unwrap().is_empty());
    let members = bob.join("lobby").await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].device_id, "alice-laptop");
    let joined = wait_for(&mut alice_events, |e| match e {
        SignalingEvent::Joined { room, member } => Some((room, member)),
        _ => None,
    })
    .await;
    assert_eq!(joined.0, "lobby");
    assert_eq!(joined.1.device_id, "bob-phone");
    assert_eq!(joined.1.public_key, bob_key);

    bob.signal("alice-laptop", json!({"type": "offer", "sdp": "v=0"}))
        .await
        .unwrap();
    let (from, data) = wait_for(&mut alice_events, |e| match e {
        SignalingEvent::Signal { from, data } => Some((from, data)),
        _ => None,
    })
    .await;
    assert_eq!(from.device_id, "bob-phone");
    assert_eq!(from.public_key, bob_key);
    assert_eq!(data, json!({"type": "offer", "sdp": "v=0"}));

    let err = alice.signal("nobody", json!(1)).await.unwrap_err();
    assert_eq!(err.code(), "target_offline");

    bob.close().await;
    let left = wait_for(&mut alice_events, |e| match e {
        SignalingEvent::Left { device_id, .. } => Some(device_id),
        _ => None,
    })
    .await;
    assert_eq!(left, "bob-phone");
    drop(bob_events);
}

/// Opens a relay link from `a` to `b` and runs the peerlink handshake over it.
async fn relay_connect(
    node_a: &Node,
    a: &SignalingClient,
    node_b: &Node,
    b_events: &mut SignalingEvents,
    b_device: &str,
) -> (Connection, Connection) {
    let link = a.open_relay(b_device).await.unwrap();
    let binding = link.binding();
    let dial = node_a.connect(Box::new(link), Role::Initiator, binding);
    let accept = async {
        let incoming = wait_for(b_events, |e| match e {
            SignalingEvent::IncomingRelay { from, transport } => Some((from, transport)),
            _ => None,
        })
        .await;
        let binding = incoming.1.binding();
        node_b
            .connect(Box::new(incoming.1), Role::Responder, binding)
            .await
    };
    let (a_conn, b_conn) = tokio::time::timeout(BOUND, async { tokio::join!(dial, accept) })
        .await
        .expect("handshake over the relay within bound");
    (a_conn.unwrap(), b_conn.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_connect_through_the_relay_verify_identities_and_move_8_mib() {
    let server = server().await;
    let (alice_id, bob_id) = (identity(), identity());
    let alice_node = Node::new(NodeConfig::new(alice_id.clone(), "alice", "alice-laptop")).unwrap();
    let bob_node = Node::new(NodeConfig::new(bob_id.clone(), "bob", "bob-phone")).unwrap();
    bob_node.expose(
        "add",
        typed_handler(|(a, b): (i64, i64)| async move { Ok::<_, HandlerError>(a + b) }),
    );
    bob_node.expose(
        "digest",
        handler_fn(|req| async move {
            let body = req.body;
            let sum = body.iter().fold(0u64, |acc, b| {
                acc.wrapping_mul(31).wrapping_add(u64::from(*b))
            });
            Ok::<_, HandlerError>(Bytes::from(format!("{}:{sum}", body.len())))
        }),
    );
    let (alice, _alice_events) = client(&server.ws_url(), alice_id.clone(), "alice-laptop").await;
    let (_bob, mut bob_events) = client(&server.ws_url(), bob_id.clone(), "bob-phone").await;

    let (to_bob, to_alice) =
        relay_connect(&alice_node, &alice, &bob_node, &mut bob_events, "bob-phone").await;
    assert_eq!(to_bob.transport_kind(), TransportKind::Relay);
    assert_eq!(to_bob.remote().public_key, bob_id.public_key());
    assert_eq!(to_bob.remote().device_id, "bob-phone");
    assert_eq!(to_alice.remote().public_key, alice_id.public_key());
    assert_eq!(to_alice.handshake_hash(), to_bob.handshake_hash());

    let sum: i64 = to_bob.call("add", &(20, 22)).await.unwrap();
    assert_eq!(sum, 42);

    // Random bytes: incompressible, so all 8 MiB must cross the server.
    let mut payload = vec![0u8; 8 << 20];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut payload);
    let expected = payload.iter().fold(0u64, |acc, b| {
        acc.wrapping_mul(31).wrapping_add(u64::from(*b))
    });
    let options = CallOptions {
        timeout: Some(BOUND),
    };
    let reply = to_bob
        .call_raw("digest", Bytes::from(payload), options)
        .await
        .unwrap();
    assert_eq!(reply, Bytes::from(format!("{}:{expected}", 8u32 << 20)));

    let metrics = server.metrics();
    assert!(
        metrics.relay_bytes() >= 8 << 20,
        "the bytes went through the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_reconnect_and_rejoin_after_a_server_restart() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = server_on(listener).await;
    let (alice, mut alice_events) = client(&server.ws_url(), identity(), "alice-laptop").await;
    let (bob, mut bob_events) = client(&server.ws_url(), identity(), "bob-phone").await;
    alice.join("lobby").await.unwrap();
    bob.join("lobby").await.unwrap();

    server.shutdown().await;
    let reason = wait_for(&mut alice_events, |e| match e {
        SignalingEvent::Disconnected { reason } => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, "server asked to reconnect");

    // Same address again; both clients come back by themselves and re-join "lobby".
    let _server = server_on(tokio::net::TcpListener::bind(addr).await.unwrap()).await;
    wait_for(&mut alice_events, |e| match e {
        SignalingEvent::Connected { .. } => Some(()),
        _ => None,
    })
    .await;
    wait_for(&mut bob_events, |e| match e {
        SignalingEvent::Connected { .. } => Some(()),
        _ => None,
    })
    .await;
    // Whichever re-joined second sees the first as a member or as `joined`.
    let seen = tokio::time::timeout(BOUND, async {
        // Bounded by the timeout around it.
        loop {
            match alice_events.next().await.expect("running") {
                SignalingEvent::Members { room, members }
                    if room == "lobby" && members.iter().any(|m| m.device_id == "bob-phone") =>
                {
                    return true;
                }
                SignalingEvent::Joined { room, member }
                    if room == "lobby" && member.device_id == "bob-phone" =>
                {
                    return true;
                }
                _ => {}
            }
        }
    })
    .await
    .expect("alice sees bob again within bound");
    assert!(seen);
    bob.signal("alice-laptop", json!("back")).await.unwrap();
    let (_, data) = wait_for(&mut alice_events, |e| match e {
        SignalingEvent::Signal { from, data } => Some((from, data)),
        _ => None,
    })
    .await;
    assert_eq!(data, json!("back"));
}
