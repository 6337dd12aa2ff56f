//! Two nodes connect with one compact code each way and no server: the codes travel as text
//! (what a link, a QR code or the sound modem carries), the handshake verifies both identities,
//! and RPC works both ways. Bad codes and a missing answer fail with typed errors.

use std::time::Duration;

use peerlink::webrtc::WebRtcConfig;
use peerlink::webrtc::compact::{CodeAnswer, CodeError, CodeKind, CodeOffer, CompactSignal};
use peerlink::{HandlerError, Identity, Node, NodeConfig, TransportKind, typed_handler};
use tokio::time::timeout;

const BOUND: Duration = Duration::from_secs(30);

fn node(user: &str, device: &str) -> Node {
    Node::new(NodeConfig::new(
        Identity::generate(&mut rand::rngs::OsRng),
        user,
        device,
    ))
    .expect("node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_connect_with_text_codes_only_and_call_both_ways() {
    let alice = node("alice", "alice-phone");
    let bob = node("bob", "bob-laptop");
    alice.expose(
        "who",
        typed_handler(|(): ()| async move { Ok::<_, HandlerError>("alice".to_owned()) }),
    );
    bob.expose(
        "add",
        typed_handler(|(a, b): (i64, i64)| async move { Ok::<_, HandlerError>(a + b) }),
    );

    let offer = timeout(BOUND, CodeOffer::create(WebRtcConfig::loopback()))
        .await
        .expect("offer timeout")
        .expect("offer");
    assert_eq!(offer.code().kind, CodeKind::Offer);
    // Only the text crosses to the other device.
    let offer_text = offer.code().to_text().expect("offer text");
    assert!(offer_text.len() <= 110, "{} characters", offer_text.len());
    let received_offer = CompactSignal::from_text(&offer_text).expect("parse offer");

    let answer = timeout(
        BOUND,
        CodeAnswer::create(WebRtcConfig::loopback(), &received_offer),
    )
    .await
    .expect("answer timeout")
    .expect("answer");
    assert_eq!(answer.code().kind, CodeKind::Answer);
    let answer_text = answer.code().to_text().expect("answer text");
    let received_answer = CompactSignal::from_text(&answer_text).expect("parse answer");

    let (a_conn, b_conn) = tokio::join!(
        offer.connect(&alice, &received_answer, BOUND),
        answer.connect(&bob, BOUND),
    );
    let a_conn = a_conn.expect("offerer connects");
    let b_conn = b_conn.expect("answerer connects");

    // Each side verified the other's identity key through the handshake.
    assert_eq!(a_conn.remote().public_key, bob.public_key());
    assert_eq!(a_conn.remote().device_id, "bob-laptop");
    assert_eq!(b_conn.remote().public_key, alice.public_key());
    assert_eq!(b_conn.remote().user_id, "alice");
    assert_eq!(a_conn.transport_kind(), TransportKind::WebRtc);

    let sum: i64 = timeout(BOUND, a_conn.call("add", &(40, 2)))
        .await
        .expect("call timeout")
        .expect("call");
    assert_eq!(sum, 42);
    let name: String = timeout(BOUND, b_conn.call("who", &()))
        .await
        .expect("call timeout")
        .expect("call back");
    assert_eq!(name, "alice");

    alice.close().await;
    bob.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_kinds_and_garbage_are_typed_errors() {
    let offer = CodeOffer::create(WebRtcConfig::loopback())
        .await
        .expect("offer");
    let answer = CodeAnswer::create(WebRtcConfig::loopback(), offer.code())
        .await
        .expect("answer");

    // An answer code given where an offer is expected.
    let err = CodeAnswer::create(WebRtcConfig::loopback(), answer.code())
        .await
        .expect_err("an answer is not an offer");
    assert!(matches!(err, CodeError::WrongKind { .. }), "{err:?}");
    assert_eq!(err.code(), "wrong_code_kind");

    // Text that is not a code at all, and a code cut short.
    let err = CompactSignal::from_text("not a code!").expect_err("garbage");
    assert_eq!(CodeError::from(err).code(), "bad_code");
    let text = offer.code().to_text().expect("text");
    assert!(CompactSignal::from_text(&text[..text.len() / 2]).is_err());

    offer.close().await;
    answer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answerer_whose_offerer_never_connects_times_out() {
    let bob = node("bob", "bob-laptop");
    let offer = CodeOffer::create(WebRtcConfig::loopback())
        .await
        .expect("offer");
    let answer = CodeAnswer::create(WebRtcConfig::loopback(), offer.code())
        .await
        .expect("answer");
    // The offerer gives up before applying the answer: no channel ever opens.
    offer.close().await;
    let err = timeout(BOUND, answer.connect(&bob, Duration::from_millis(500)))
        .await
        .expect("the connect wait is bounded")
        .expect_err("no offerer");
    assert!(
        matches!(err.code(), "timeout" | "webrtc"),
        "timeout or a lost link, got {err:?}"
    );
    bob.close().await;
}
