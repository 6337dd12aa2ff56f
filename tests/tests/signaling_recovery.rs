//! Dialling and recovering through the signaling server: a relay dial to a device that is not
//! connected reports the server's `target_offline`; ICE restarts asked for while one is under
//! way are honoured; a hybrid connection whose signaling connection is replaced gets its
//! relay back over the new one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peerlink::signaling::{
    DialError, DialerConfig, HybridAcceptor, HybridConfig, HybridConnection, HybridEvent,
    IncomingLinks, SignalingClient, SignalingConfig, WebRtcDialer,
};
use peerlink::webrtc::{IceTimeouts, LinkState, PathCut, WebRtcConfig, WebRtcLink};
use peerlink::{
    Connection, HandlerError, Identity, Node, NodeConfig, TransportKind, typed_handler,
};
use tokio::net::{TcpListener, TcpStream};

use common::signaling::{server, wait_for_event};
use tokio::task::JoinHandle;

const BOUND: Duration = Duration::from_secs(30);

/// A node and a dialer on the same identity, signaling through `url`.
async fn peer(
    url: &str,
    device: &str,
    config: DialerConfig,
) -> (Node, WebRtcDialer, IncomingLinks) {
    let id = Identity::generate(&mut rand::rngs::OsRng);
    let node = Node::new(NodeConfig::new(
        id.clone(),
        format!("user-{device}"),
        device,
    ))
    .unwrap();
    let signaling = SignalingConfig::new(url, id, format!("user-{device}"), device);
    let (client, events) = tokio::time::timeout(BOUND, SignalingClient::connect(signaling))
        .await
        .expect("connect within bound")
        .expect("connect");
    let (dialer, rest, incoming) = WebRtcDialer::new(client, events, config);
    // The events the dialer hands on are not needed here; draining them keeps the client going.
    tokio::spawn(async move {
        let mut rest = rest;
        // Ends with the client.
        while rest.next().await.is_some() {}
    });
    (node, dialer, incoming)
}

fn dialer_config(webrtc: WebRtcConfig) -> DialerConfig {
    let mut config = DialerConfig::new(webrtc);
    config.accept_relay = true;
    config.open_timeout = Duration::from_secs(10);
    config
}

fn expect_target_offline(result: Result<impl std::fmt::Debug, DialError>) {
    match result {
        Err(DialError::Signaling(e)) => assert_eq!(e.code(), "target_offline", "{e}"),
        other => panic!("expected target_offline, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_dials_to_an_offline_device_fail_with_target_offline_like_webrtc_dials() {
    let server = server().await;
    let (alice, dialer, _incoming) = peer(
        &server.ws_url(),
        "alice",
        dialer_config(WebRtcConfig::loopback()),
    )
    .await;
    let webrtc = tokio::time::timeout(BOUND, dialer.connect(&alice, "nobody"))
        .await
        .expect("bounded");
    expect_target_offline(webrtc);
    let relay = tokio::time::timeout(BOUND, dialer.connect_relay(&alice, "nobody"))
        .await
        .expect("bounded");
    expect_target_offline(relay);
    let hybrid = tokio::time::timeout(
        BOUND,
        HybridConnection::dial(&dialer, &alice, "nobody", HybridConfig::default()),
    )
    .await
    .expect("bounded");
    expect_target_offline(hybrid);
    // The client is still usable: the failure was about the target only.
    assert!(dialer.client().is_connected());
}

/// Calls `tick` with each id and checks the answers.
async fn ticks(conn: &Connection, ids: std::ops::Range<u32>) {
    for id in ids {
        let got: u32 = tokio::time::timeout(BOUND, conn.call("tick", &id))
            .await
            .expect("call bounded")
            .expect("call");
        assert_eq!(got, id + 1000);
    }
}

/// Exposes `tick` (answers n + 1000) and counts how often each n ran.
fn expose_tick(node: &Node) -> Arc<Mutex<HashMap<u32, usize>>> {
    let runs = Arc::new(Mutex::new(HashMap::<u32, usize>::new()));
    let counted = Arc::clone(&runs);
    node.expose(
        "tick",
        typed_handler(move |n: u32| {
            let runs = Arc::clone(&counted);
            async move {
                *runs.lock().unwrap().entry(n).or_default() += 1;
                Ok::<_, HandlerError>(n + 1000)
            }
        }),
    );
    runs
}

fn assert_each_ran_once(runs: &Mutex<HashMap<u32, usize>>, n: u32) {
    let runs = runs.lock().unwrap();
    assert_eq!(runs.len(), n as usize, "calls 0..{n} ran: {runs:?}");
    assert!(
        (0..n).all(|id| runs.get(&id) == Some(&1)),
        "each call ran exactly once: {runs:?}"
    );
}

/// Waits (bounded) until the offerer `link` has run `count` restarts to their answers and is
/// connected.
async fn wait_restarted(link: &WebRtcLink, count: u32) {
    let mut state = link.state_changes();
    tokio::time::timeout(BOUND, async {
        // Bounded by the timeout around it; each turn waits for a state change or 50 ms.
        loop {
            if link.ice_restarts() >= count
                && !link.ice_restart_pending().await
                && *state.borrow_and_update() == LinkState::Connected
            {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), state.changed()).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{count} restarts within bound; saw {} in state {:?}",
            link.ice_restarts(),
            link.state()
        )
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_restarts_asked_for_during_a_restart_are_honoured_once() {
    let server = server().await;
    let config = dialer_config(WebRtcConfig::loopback());
    let (alice, alice_dialer, _a_in) = peer(&server.ws_url(), "alice", config.clone()).await;
    let (bob, _bob_dialer, mut bob_incoming) = peer(&server.ws_url(), "bob", config).await;
    let runs = expose_tick(&bob);

    let dial = async {
        let (key, transport) = alice_dialer.open("bob").await.expect("open");
        let link = transport.link().clone();
        let binding = transport.binding().await.expect("binding");
        let role = transport.handshake_role();
        let conn = alice
            .connect(Box::new(transport), role, binding)
            .await
            .expect("handshake");
        (key, link, conn)
    };
    let accept = async {
        let incoming = bob_incoming.next().await.expect("an incoming link");
        let link = match &incoming {
            peerlink::signaling::Incoming::WebRtc { transport, .. } => transport.link().clone(),
            other => panic!("expected a WebRTC link, got {other:?}"),
        };
        (link, incoming.accept(&bob).await.expect("accept"))
    };
    let ((key, offerer, to_bob), (answerer, _to_alice)) =
        tokio::time::timeout(BOUND, async { tokio::join!(dial, accept) })
            .await
            .expect("connected within bound");
    assert_eq!(to_bob.remote().public_key.to_base64(), key);
    ticks(&to_bob, 0..5).await;
    assert_eq!(offerer.ice_restarts(), 0);

    // Two requests in a row on the offerer: the second arrives while the first restart's
    // offer awaits its answer (the answer needs a round trip through the server).
    offerer.restart_ice().await.expect("first restart");
    offerer.restart_ice().await.expect("second restart");
    assert!(offerer.ice_restart_pending().await);
    wait_restarted(&offerer, 2).await;
    assert_eq!(offerer.ice_restarts(), 2);
    ticks(&to_bob, 5..10).await;

    // Three in a row make two restarts: the ones that came while the first was under way
    // are coalesced into one. Nothing is pending once both are answered, so no third follows.
    for _ in 0..3 {
        offerer.restart_ice().await.expect("restart");
    }
    wait_restarted(&offerer, 4).await;
    assert_eq!(
        offerer.ice_restarts(),
        4,
        "requests coalesced into one restart"
    );
    ticks(&to_bob, 10..15).await;

    // Two requests in a row from the answerer: the offerer runs both.
    answerer.restart_ice().await.expect("first request");
    answerer.restart_ice().await.expect("second request");
    wait_restarted(&offerer, 6).await;
    assert_eq!(answerer.ice_restarts(), 2);
    ticks(&to_bob, 15..20).await;

    // Still the same verified connection.
    assert!(to_bob.is_open());
    assert_eq!(to_bob.remote().device_id, "bob");
    assert_eq!(to_bob.remote().public_key.to_base64(), key);
    let path = offerer.path().await.expect("a path");
    assert_eq!(path.ice_restarts, 6);
    assert_each_ran_once(&runs, 20);
}

/// A TCP forwarder in front of the signaling server whose connections can be cut, as a
/// network change cuts a device's connection to the server.
struct CutProxy {
    port: u16,
    pipes: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl CutProxy {
    async fn new(upstream: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let pipes = Arc::new(Mutex::new(Vec::new()));
        let registered = Arc::clone(&pipes);
        let accept = tokio::spawn(async move {
            // Bounded in count; aborted when the proxy is dropped.
            for _ in 0..64 {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let pipe = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                registered.lock().unwrap().push(pipe);
            }
        });
        Self {
            port,
            pipes,
            accept,
        }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    /// Drops every connection through the proxy; new ones go through.
    fn cut(&self) {
        for pipe in self.pipes.lock().unwrap().drain(..) {
            pipe.abort();
        }
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_relay_is_re_established_over_a_new_signaling_connection() {
    let server = server().await;
    let proxy = CutProxy::new(server.local_addr()).await;
    // Alice's WebRTC link loses its path on demand; short ICE timers so the outage shows at
    // once.
    let cut = PathCut::new();
    let config = |cut: Option<PathCut>| {
        dialer_config(WebRtcConfig {
            path_cut: cut,
            ice_timeouts: IceTimeouts {
                disconnected: Some(Duration::from_secs(1)),
                failed: Some(Duration::from_secs(20)),
                keepalive: Some(Duration::from_millis(250)),
            },
            ..WebRtcConfig::loopback()
        })
    };
    let (alice, alice_dialer, _a_in) = peer(&proxy.url(), "alice", config(Some(cut.clone()))).await;
    let (bob, _bob_dialer, bob_incoming) = peer(&server.ws_url(), "bob", config(None)).await;
    let runs = expose_tick(&bob);

    let mut acceptor = HybridAcceptor::new(bob.clone(), bob_incoming);
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        // Keeps accepting (and attaching) until the client closes.
        while let Some(h) = acceptor.accept().await {
            let _ = accepted_tx.send(h);
        }
    });
    let hybrid_config = HybridConfig {
        retry_delay: Duration::from_millis(200),
        max_webrtc_attempts: 3,
    };
    let to_bob = tokio::time::timeout(
        BOUND,
        HybridConnection::dial(&alice_dialer, &alice, "bob", hybrid_config),
    )
    .await
    .expect("relay within bound")
    .expect("dial");
    let mut events = to_bob.events();
    let to_alice = tokio::time::timeout(BOUND, accepted.recv())
        .await
        .expect("accepted within bound")
        .expect("a hybrid connection");
    let mut bob_events = to_alice.events();
    let bob_first_relay = to_alice.relay().expect("bob's relay");
    assert!(to_bob.wait_for_path(TransportKind::WebRtc, BOUND).await);
    ticks(&to_bob.current(), 0..5).await;

    // WebRTC down: new calls take the relay.
    cut.cut();
    wait_for_event(&mut events, HybridEvent::Path(TransportKind::Relay)).await;
    ticks(&to_bob.current(), 5..10).await;
    let first_relay = to_bob.relay().expect("a relay");
    assert_eq!(first_relay.transport_kind(), TransportKind::Relay);

    // The signaling connection goes too (a network change): the relay dies with it, and comes
    // back over the client's new connection.
    proxy.cut();
    wait_for_event(&mut events, HybridEvent::RelayClosed).await;
    assert!(!first_relay.is_open());
    wait_for_event(&mut events, HybridEvent::RelayBack).await;
    wait_for_event(&mut bob_events, HybridEvent::RelayBack).await;
    assert!(cut.is_cut(), "WebRTC is still down");
    let relay = to_bob.relay().expect("a relay");
    assert_ne!(relay.id(), first_relay.id(), "a new relay connection");
    assert!(relay.is_open());
    assert_eq!(to_bob.path(), TransportKind::Relay);
    assert_eq!(relay.remote().device_id, "bob");
    assert_eq!(relay.remote().public_key, first_relay.remote().public_key);

    let relayed_before = server.metrics().relay_bytes();
    for n in 10..15u32 {
        let current = to_bob.current();
        assert_eq!(current.id(), relay.id(), "calls take the new relay");
        let got: u32 = tokio::time::timeout(BOUND, to_bob.call("tick", &n))
            .await
            .expect("a call over the new relay completes")
            .unwrap();
        assert_eq!(got, n + 1000);
    }
    assert!(server.metrics().relay_bytes() > relayed_before);
    // Bob attached the new relay to the hybrid connection he had: no second one.
    assert!(
        accepted.try_recv().is_err(),
        "no new hybrid connection on bob's side"
    );
    let bob_relay = to_alice.relay().expect("bob's relay");
    assert_ne!(bob_relay.id(), bob_first_relay.id());
    assert!(bob_relay.is_open());
    assert_eq!(bob_relay.remote().device_id, "alice");
    assert_eq!(
        bob_relay.remote().public_key,
        bob_first_relay.remote().public_key
    );
    assert_each_ran_once(&runs, 15);
}
