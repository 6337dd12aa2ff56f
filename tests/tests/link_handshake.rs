//! Handshake over real loopback links: verified identities both ways, trust decisions,
//! rejection seen by both sides, and a relay in the middle detected by the link binding.

mod common;

use std::time::Duration;

use common::{BOUND, node, node_with_trust, ws_pair_of};
use peerlink::core::handshake::RejectReason;
use peerlink::transport::memory;
use peerlink::{Error, HandshakeError, LinkBinding, Role, TransportKind, TrustLevel, trust_fn};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_roles_see_the_verified_identity_and_their_own_trust_level() {
    let server = node_with_trust(
        "alice",
        "alice-laptop",
        trust_fn(|info| async move {
            if info.user_id == "bob" {
                TrustLevel::KNOWN
            } else {
                TrustLevel::UNKNOWN
            }
        }),
    );
    let client = node_with_trust(
        "bob",
        "bob-phone",
        trust_fn(|info| async move {
            if info.device_id == "alice-laptop" {
                TrustLevel::TRUSTED
            } else {
                TrustLevel::UNKNOWN
            }
        }),
    );
    let server_key = server.public_key();
    let client_key = client.public_key();
    let pair = ws_pair_of(server, client).await;

    assert_eq!(pair.client_conn.role(), Role::Initiator);
    assert_eq!(pair.server_conn.role(), Role::Responder);
    assert_eq!(pair.client_conn.remote().public_key, server_key);
    assert_eq!(pair.client_conn.remote().device_id, "alice-laptop");
    assert_eq!(pair.server_conn.remote().public_key, client_key);
    assert_eq!(pair.server_conn.remote().user_id, "bob");
    assert_eq!(pair.client_conn.trust_level(), TrustLevel::TRUSTED);
    assert_eq!(pair.server_conn.trust_level(), TrustLevel::KNOWN);
    assert_eq!(pair.client_conn.transport_kind(), TransportKind::WebSocket);
    assert_eq!(pair.client_conn.transport_kind().as_str(), "websocket");
    assert_eq!(
        pair.client_conn.handshake_hash(),
        pair.server_conn.handshake_hash()
    );
    // The server advertises its listener URL in its signed device info.
    assert!(
        pair.client_conn
            .remote()
            .addresses
            .iter()
            .any(|a| a.starts_with("ws://127.0.0.1:")),
        "addresses: {:?}",
        pair.client_conn.remote().addresses
    );
    assert!(pair.client_conn.timings().handshake > Duration::ZERO);
    pair.client.close().await;
    pair.server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_policy_rejecting_gives_both_sides_a_typed_error() {
    let server = node_with_trust(
        "alice",
        "laptop",
        trust_fn(|_| async move { TrustLevel::UNTRUSTED }),
    );
    let client = node("mallory", "box");
    let listener = server.listen("127.0.0.1:0").await.unwrap();
    let mut events = server.events();

    let err = tokio::time::timeout(BOUND, client.dial(&listener.url()))
        .await
        .unwrap()
        .unwrap_err();
    match &err {
        Error::Handshake(HandshakeError::RejectedByPeer { reason, .. }) => {
            assert_eq!(*reason, RejectReason::Untrusted);
        }
        other => panic!("client expected RejectedByPeer, got {other:?}"),
    }
    assert_eq!(err.code(), "rejected_by_peer");
    assert!(server.connections().is_empty());
    assert!(client.connections().is_empty());
    // No Connected event on the rejecting side.
    assert!(events.try_recv().is_err());
    server.close().await;
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_policy_rejecting_gives_both_sides_a_typed_error() {
    // Over an in-memory link so the responder's own error is observable directly.
    let server = node("alice", "laptop");
    let client = node_with_trust(
        "bob",
        "phone",
        trust_fn(|_| async move { TrustLevel::MALICIOUS }),
    );
    let (a, b) = memory::pair(1 << 20, 64);
    let binding = LinkBinding::Memory("test-link".into());
    let (client_result, server_result) = tokio::join!(
        client.connect(Box::new(a), Role::Initiator, binding.clone()),
        server.connect(Box::new(b), Role::Responder, binding),
    );
    let client_err = client_result.unwrap_err();
    assert!(
        matches!(client_err, Error::Handshake(HandshakeError::Untrusted { level }) if level == TrustLevel::MALICIOUS),
        "{client_err:?}"
    );
    assert_eq!(client_err.code(), "untrusted");
    let server_err = server_result.unwrap_err();
    assert!(
        matches!(
            server_err,
            Error::Handshake(HandshakeError::RejectedByPeer {
                reason: RejectReason::Untrusted,
                ..
            })
        ),
        "{server_err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_link_connects_and_calls() {
    let server = node("alice", "laptop");
    let client = node("bob", "phone");
    server.expose(
        "echo",
        peerlink::handler_fn(|req| async move { Ok(req.body) }),
    );
    let (a, b) = memory::pair(64 << 10, 64);
    let binding = LinkBinding::Memory("bench".into());
    let (c, s) = tokio::join!(
        client.connect(Box::new(a), Role::Initiator, binding.clone()),
        server.connect(Box::new(b), Role::Responder, binding),
    );
    let (c, s) = (c.unwrap(), s.unwrap());
    assert_eq!(c.transport_kind(), TransportKind::Memory);
    assert_eq!(s.remote().public_key, client.public_key());
    // Larger than one 64 KiB record: chunked by the wire layer.
    let payload = bytes::Bytes::from(vec![9u8; 300_000]);
    let reply = c
        .call_raw("echo", payload.clone(), Default::default())
        .await
        .unwrap();
    assert_eq!(reply, payload);
    client.close().await;
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatched_memory_bindings_fail_the_handshake() {
    let server = node("alice", "laptop");
    let client = node("bob", "phone");
    let (a, b) = memory::pair(1 << 20, 64);
    let (c, s) = tokio::join!(
        client.connect(
            Box::new(a),
            Role::Initiator,
            LinkBinding::Memory("one".into())
        ),
        server.connect(
            Box::new(b),
            Role::Responder,
            LinkBinding::Memory("two".into())
        ),
    );
    assert!(c.is_err() && s.is_err(), "client {c:?} server {s:?}");
}

/// Forwards bytes between an accepted socket and `target`, like a relay in the middle.
async fn tcp_proxy(listener: TcpListener, target: std::net::SocketAddr) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        tokio::spawn(async move {
            let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            let _ = inbound.shutdown().await;
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_in_the_middle_fails_with_a_binding_error() {
    let server = node("alice", "laptop");
    let client = node("bob", "phone");
    let listener = server.listen("127.0.0.1:0").await.unwrap();
    let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_port = proxy.local_addr().unwrap().port();
    let relay = tokio::spawn(tcp_proxy(proxy, listener.local_addr()));

    let err = tokio::time::timeout(BOUND, client.dial(&format!("ws://127.0.0.1:{proxy_port}")))
        .await
        .expect("bounded")
        .unwrap_err();
    match &err {
        Error::Handshake(HandshakeError::RejectedByPeer {
            reason: RejectReason::Binding,
            ..
        })
        | Error::Handshake(HandshakeError::BindingNotAccepted(_)) => {}
        other => panic!("expected a binding error, got {other:?}"),
    }
    assert!(server.connections().is_empty());
    // The direct URL still works.
    let direct = client.dial(&listener.url()).await.unwrap();
    assert!(direct.is_open());
    relay.abort();
    client.close().await;
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialling_nonsense_is_a_typed_error() {
    let client = node("bob", "phone");
    let err = client.dial("http://127.0.0.1:1").await.unwrap_err();
    assert_eq!(err.code(), "invalid_url");
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let err = client
        .dial(&format!("ws://127.0.0.1:{port}"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "connect_failed");
}
