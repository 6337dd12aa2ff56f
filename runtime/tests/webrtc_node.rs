//! Two nodes over a WebRTC link in one process: the handshake bound to both DTLS fingerprints,
//! then RPC; and a relay that terminates DTLS on both sides, which the binding must expose.

use std::time::Duration;

use bytes::Bytes;
use peerlink::webrtc::{
    ChannelOptions, WebRtcChannel, WebRtcConfig, WebRtcEvent, WebRtcEvents, WebRtcLink, WebRtcRole,
    WebRtcTransport,
};
use peerlink::{
    CallOptions, Error, HandlerError, HandshakeError, Identity, LinkBinding, Node, NodeConfig,
    PathReport, Role, TransportKind, handler_fn, typed_handler,
};
use tokio::sync::mpsc;
use tokio::time::timeout;

const BOUND: Duration = Duration::from_secs(30);

fn node(user: &str) -> Node {
    Node::new(NodeConfig::new(
        Identity::generate(&mut rand::rngs::OsRng),
        user,
        "dev",
    ))
    .expect("node")
}

/// Delivers one link's signals to another link (in-process signaling path) and its
/// remote channels to `channels`.
fn forward(
    mut events: WebRtcEvents,
    to: &WebRtcLink,
    channels: mpsc::UnboundedSender<WebRtcChannel>,
) {
    let to = to.downgrade();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            match event {
                WebRtcEvent::Signal(signal) => {
                    let Some(to) = to.upgrade() else { return };
                    let _ = to.handle_signal_json(&signal.to_json()).await;
                }
                WebRtcEvent::Channel(ch) => {
                    let _ = channels.send(ch);
                }
                _ => {}
            }
        }
    });
}

/// Connects an offerer and an answerer; returns (offerer link, its channel, answerer link,
/// the answerer's view of the channel).
async fn link_pair() -> (WebRtcLink, WebRtcChannel, WebRtcLink, WebRtcChannel) {
    let config = WebRtcConfig::loopback();
    let (offerer, offerer_events) = WebRtcLink::new(config.clone(), WebRtcRole::Offerer)
        .await
        .expect("offerer");
    let (answerer, answerer_events) = WebRtcLink::new(config, WebRtcRole::Answerer)
        .await
        .expect("answerer");
    let channel = offerer
        .create_channel("peerlink", ChannelOptions::default())
        .await
        .expect("channel");
    let (tx, _unused) = mpsc::unbounded_channel();
    let (remote_tx, mut remote_rx) = mpsc::unbounded_channel();
    forward(offerer_events, &answerer, tx);
    forward(answerer_events, &offerer, remote_tx);
    offerer.start().await.expect("start");
    timeout(BOUND, channel.opened())
        .await
        .expect("open timeout")
        .expect("open");
    let remote = timeout(BOUND, remote_rx.recv())
        .await
        .expect("timeout")
        .expect("remote channel");
    (offerer, channel, answerer, remote)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_handshake_over_webrtc_with_fingerprint_binding_and_call() {
    let alice = node("alice");
    let bob = node("bob");
    bob.expose(
        "add",
        typed_handler(|(a, b): (i64, i64)| async move { Ok::<_, HandlerError>(a + b) }),
    );
    let (a_link, a_channel, b_link, b_channel) = link_pair().await;
    let a = WebRtcTransport::new(a_link, a_channel);
    let b = WebRtcTransport::new(b_link, b_channel);
    let a_binding = a.binding().await.expect("binding a");
    let b_binding = b.binding().await.expect("binding b");
    assert_eq!(
        a_binding, b_binding,
        "both sides read the same fingerprints"
    );
    let (a_role, b_role) = (a.handshake_role(), b.handshake_role());

    let (a_conn, b_conn) = tokio::join!(
        timeout(BOUND, alice.connect(Box::new(a), a_role, a_binding)),
        timeout(BOUND, bob.connect(Box::new(b), b_role, b_binding)),
    );
    let a_conn = a_conn.expect("handshake timeout").expect("alice handshake");
    let _b_conn = b_conn.expect("handshake timeout").expect("bob handshake");
    let sum: i64 = timeout(BOUND, a_conn.call("add", &(2, 3)))
        .await
        .expect("call timeout")
        .expect("call");
    assert_eq!(sum, 5);
    // A large argument crosses several data-channel messages.
    let big = vec![7u8; 3 * 1024 * 1024];
    bob.expose(
        "len",
        typed_handler(|v: Vec<u8>| async move { Ok::<_, HandlerError>(v.len()) }),
    );
    let n: usize = timeout(BOUND, a_conn.call("len", &big))
        .await
        .expect("call timeout")
        .expect("call");
    assert_eq!(n, big.len());
    alice.close().await;
    bob.close().await;
}

/// The connection reports its WebRTC path: the selected host/udp pair on 127.0.0.1 with the
/// other side's port, byte counters that grew with the traffic, and only the kind after close.
/// A memory link reports its kind and no pair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_path_reports_the_selected_pair_and_the_kind() {
    let alice = node("alice");
    let bob = node("bob");
    bob.expose(
        "len",
        handler_fn(|req| async move { Ok(Bytes::from(req.body.len().to_string())) }),
    );
    let (a_link, a_channel, b_link, b_channel) = link_pair().await;
    let a = WebRtcTransport::new(a_link, a_channel);
    let b = WebRtcTransport::new(b_link, b_channel);
    let binding = a.binding().await.expect("binding");
    let (a_role, b_role) = (a.handshake_role(), b.handshake_role());
    let (a_conn, b_conn) = tokio::join!(
        timeout(BOUND, alice.connect(Box::new(a), a_role, binding.clone())),
        timeout(BOUND, bob.connect(Box::new(b), b_role, binding)),
    );
    let a_conn = a_conn.expect("handshake timeout").expect("alice handshake");
    let b_conn = b_conn.expect("handshake timeout").expect("bob handshake");

    let before = a_conn.path().await;
    // Random bytes: the wire layer would compress a repetitive payload to almost nothing.
    let payload: Vec<u8> = (0..1 << 20).map(|_| rand::random::<u8>()).collect();
    let n = timeout(
        BOUND,
        a_conn.call_raw("len", Bytes::from(payload.clone()), CallOptions::default()),
    )
    .await
    .expect("call timeout")
    .expect("call");
    assert_eq!(n, payload.len().to_string().as_bytes());
    let a_path = a_conn.path().await;
    let b_path = b_conn.path().await;
    assert_eq!(a_path.kind, TransportKind::WebRtc);
    let (a_local, a_remote) = (
        a_path.local.clone().expect("local candidate"),
        a_path.remote.clone().expect("remote candidate"),
    );
    let b_local = b_path.local.clone().expect("peer's local candidate");
    for c in [&a_local, &a_remote, &b_local] {
        assert_eq!(c.candidate_type, "host", "{c}");
        assert_eq!(c.protocol, "udp", "{c}");
        assert_eq!(c.address, "127.0.0.1", "{c}");
    }
    assert_eq!(a_remote.port, b_local.port, "both sides name the same pair");
    assert!(
        a_path.bytes_sent >= before.bytes_sent + payload.len() as u64,
        "sent counter grew by the payload: {before:?} -> {a_path:?}"
    );
    assert!(b_path.bytes_received >= payload.len() as u64, "{b_path:?}");
    assert!(a_path.packets_sent > 0 && a_path.packets_received > 0);
    let json = serde_json::to_value(&a_path).expect("json");
    assert_eq!(json["kind"], "webrtc");
    assert_eq!(json["local"]["candidateType"], "host");

    a_conn.close("done").await;
    let closed = a_conn.path().await;
    assert_eq!(closed, PathReport::kind_only(TransportKind::WebRtc));

    let (m1, m2) = peerlink::transport::memory::pair(64 << 10, 16);
    let binding = LinkBinding::Memory("path test".into());
    let (m_conn, _m_peer) = tokio::join!(
        timeout(
            BOUND,
            alice.connect(Box::new(m1), Role::Initiator, binding.clone())
        ),
        timeout(BOUND, bob.connect(Box::new(m2), Role::Responder, binding)),
    );
    let m_conn = m_conn
        .expect("handshake timeout")
        .expect("memory handshake");
    let m_path = m_conn.path().await;
    assert_eq!(m_path, PathReport::kind_only(TransportKind::Memory));
    alice.close().await;
    bob.close().await;
}

/// Copies messages from one channel to another until either ends.
fn pipe(mut from: peerlink::webrtc::ChannelReceiver, to: peerlink::webrtc::ChannelSender) {
    tokio::spawn(async move {
        while let Some(message) = from.recv().await {
            if to.send(Bytes::clone(&message)).await.is_err() {
                return;
            }
        }
    });
}

/// A relay that answers Alice and offers to Bob with its own certificates, so each DTLS
/// session ends at the relay, and pipes the channel contents between them. Every byte Alice
/// and Bob send arrives unaltered; only the fingerprints each side saw differ. The handshake
/// must refuse the link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_terminating_dtls_with_its_own_fingerprints_fails_the_handshake() {
    let alice = node("alice");
    let bob = node("bob");
    // Alice offers to the relay's answering side; the relay's offering side offers to Bob.
    let (a_link, a_channel, relay_a, relay_a_channel) = link_pair().await;
    let (relay_b, relay_b_channel, b_link, b_channel) = link_pair().await;
    let (ra_tx, ra_rx) = relay_a_channel.split();
    let (rb_tx, rb_rx) = relay_b_channel.split();
    pipe(ra_rx, rb_tx);
    pipe(rb_rx, ra_tx);

    let a = WebRtcTransport::new(a_link, a_channel);
    let b = WebRtcTransport::new(b_link, b_channel);
    let a_binding = a.binding().await.expect("binding a");
    let b_binding = b.binding().await.expect("binding b");
    assert_ne!(
        a_binding, b_binding,
        "the relay's certificates show in the fingerprints"
    );

    let (a_result, b_result) = tokio::join!(
        timeout(
            BOUND,
            alice.connect(Box::new(a), peerlink::Role::Initiator, a_binding)
        ),
        timeout(
            BOUND,
            bob.connect(Box::new(b), peerlink::Role::Responder, b_binding)
        ),
    );
    let a_result = a_result.expect("alice handshake bounded");
    let b_result = b_result.expect("bob handshake bounded");
    let detected = |r: &Result<peerlink::Connection, Error>| {
        matches!(
            r,
            Err(Error::Handshake(
                HandshakeError::BindingNotAccepted(_) | HandshakeError::TranscriptMismatch
            ))
        )
    };
    assert!(
        detected(&a_result) || detected(&b_result),
        "one side must detect the binding mismatch itself: alice {a_result:?}, bob {b_result:?}"
    );
    assert!(
        matches!(a_result, Err(Error::Handshake(_)))
            && matches!(b_result, Err(Error::Handshake(_))),
        "neither side may get a connection through the relay: alice {a_result:?}, bob {b_result:?}"
    );
    relay_a.close().await;
    relay_b.close().await;
    alice.close().await;
    bob.close().await;
}
