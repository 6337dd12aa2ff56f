//! WebRTC links on loopback: negotiation (trickle and not), message sizes, bulk, partial
//! reliability, fingerprints, bad input and cleanup.

use std::time::Duration;

use peerlink::webrtc::{
    ChannelOptions, IceCandidate, IceServer, IceTransportPolicy, LinkState, Signal, WebRtcConfig,
    WebRtcError, WebRtcEvent, WebRtcEvents, WebRtcLink, WebRtcRole,
};
use tokio::time::timeout;

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickle_link_carries_every_message_size_both_ways() {
    let mut pair = connect(WebRtcConfig::loopback(), reliable()).await;
    assert_eq!(pair.offerer.remote_max_message_size(), 256 * 1024);
    let mut a = pair.local.remove(0);
    let mut b = pair.remote.remove(0);
    exchange(&mut a, &mut b, &[0, 1, 16 * 1024, 64 * 1024, 256 * 1024]).await;
    let too_big = pattern(256 * 1024 + 1, 0);
    assert!(matches!(
        a.sender.send(too_big).await,
        Err(WebRtcError::MessageTooLarge { .. })
    ));
    pair.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fingerprints_agree_on_both_sides_and_bind_the_handshake() {
    let pair = connect(WebRtcConfig::loopback(), reliable()).await;
    let on_offerer = pair
        .offerer
        .fingerprints()
        .await
        .expect("offerer fingerprints");
    let on_answerer = pair
        .answerer
        .fingerprints()
        .await
        .expect("answerer fingerprints");
    assert_eq!(on_offerer, on_answerer);
    assert_ne!(
        on_offerer.offerer, on_offerer.answerer,
        "each side has its own certificate"
    );
    assert!(on_offerer.offerer.starts_with("sha-256 "));
    let binding: peerlink_core::handshake::LinkBinding = on_offerer.clone().into();
    assert_eq!(
        binding,
        peerlink_core::handshake::LinkBinding::WebRtcFingerprints {
            offerer: on_offerer.offerer,
            answerer: on_offerer.answerer
        }
    );
    pair.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_trickle_link_sends_candidates_inside_the_descriptions() {
    let config = WebRtcConfig {
        trickle: false,
        gather_timeout: Duration::from_secs(5),
        ..WebRtcConfig::loopback()
    };
    let (offerer, mut offerer_events) = WebRtcLink::new(config.clone(), WebRtcRole::Offerer)
        .await
        .expect("offerer");
    let (answerer, mut answerer_events) = WebRtcLink::new(config, WebRtcRole::Answerer)
        .await
        .expect("answerer");
    let mut a = offerer
        .create_channel("main", ChannelOptions::default())
        .await
        .expect("channel");
    offerer.start().await.expect("start");

    // Exactly one signal each way, each carrying its candidates: a one-shot exchange.
    let offer = next_signal(&mut offerer_events).await;
    let Signal::Offer { sdp, .. } = &offer else {
        panic!("expected an offer, got {offer:?}")
    };
    assert!(sdp.contains("a=candidate:"), "offer carries candidates");
    answerer.handle_signal(offer).await.expect("offer");
    let answer = next_signal(&mut answerer_events).await;
    let Signal::Answer { sdp, .. } = &answer else {
        panic!("expected an answer, got {answer:?}")
    };
    assert!(sdp.contains("a=candidate:"), "answer carries candidates");
    offerer.handle_signal(answer).await.expect("answer");

    timeout(WAIT, offerer.connected())
        .await
        .expect("timeout")
        .expect("connected");
    let mut b = loop {
        match timeout(WAIT, answerer_events.next())
            .await
            .expect("timeout")
            .expect("event")
        {
            WebRtcEvent::Channel(ch) => break ch,
            WebRtcEvent::Signal(s) => panic!("non-trickle link sent a second signal: {s:?}"),
            _ => {}
        }
    };
    timeout(WAIT, a.opened())
        .await
        .expect("timeout")
        .expect("open");
    exchange(&mut a, &mut b, &[1, 1000]).await;
    while let Some(event) = offerer_events.try_next() {
        assert!(
            !matches!(event, WebRtcEvent::Signal(_)),
            "no trickled candidates"
        );
    }
    offerer.close().await;
    answerer.close().await;
}

async fn next_signal(events: &mut WebRtcEvents) -> Signal {
    loop {
        match timeout(WAIT, events.next())
            .await
            .expect("signal timeout")
            .expect("events")
        {
            WebRtcEvent::Signal(s) => return s,
            _ => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_that_arrive_before_the_offer_are_kept() {
    let config = WebRtcConfig::loopback();
    let (offerer, mut offerer_events) = WebRtcLink::new(config.clone(), WebRtcRole::Offerer)
        .await
        .expect("offerer");
    let (answerer, mut answerer_events) = WebRtcLink::new(config, WebRtcRole::Answerer)
        .await
        .expect("answerer");
    let _a = offerer
        .create_channel("main", ChannelOptions::default())
        .await
        .expect("channel");
    offerer.start().await.expect("start");
    let offer = next_signal(&mut offerer_events).await;
    let candidate = next_signal(&mut offerer_events).await;
    assert!(
        matches!(candidate, Signal::Candidate { .. }),
        "got {candidate:?}"
    );
    // Deliver in the wrong order: candidate first. The offer's SDP has no candidates, so the
    // link can only connect if the early candidate was kept and applied.
    let Signal::Offer { sdp, .. } = &offer else {
        panic!("expected offer")
    };
    assert!(!sdp.contains("a=candidate:"));
    answerer
        .handle_signal(candidate)
        .await
        .expect("early candidate buffered");
    answerer.handle_signal(offer).await.expect("offer");
    let answer = next_signal(&mut answerer_events).await;
    offerer.handle_signal(answer).await.expect("answer");
    // The offerer learns the answerer's address from its connectivity checks (prflx), so
    // answerer candidates are not needed here.
    timeout(WAIT, answerer.connected())
        .await
        .expect("timeout")
        .expect("connected");
    offerer.close().await;
    answerer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_of_16_mib_arrives_intact_both_ways() {
    let mut pair = connect(WebRtcConfig::loopback(), reliable()).await;
    let a = pair.local.remove(0);
    let b = pair.remote.remove(0);
    let total = 16 * 1024 * 1024;
    let chunk = 64 * 1024;
    let (a_tx, mut a_rx) = a.split();
    let (b_tx, mut b_rx) = b.split();
    let send = |tx: peerlink::webrtc::ChannelSender, seed: u8| {
        tokio::spawn(async move {
            for i in 0..total / chunk {
                tx.send(pattern(chunk, seed.wrapping_add(i as u8)))
                    .await
                    .expect("bulk send");
            }
        })
    };
    let s1 = send(a_tx, 1);
    let s2 = send(b_tx, 2);
    for (rx, seed) in [(&mut b_rx, 1u8), (&mut a_rx, 2u8)] {
        for i in 0..total / chunk {
            let got = timeout(WAIT, rx.recv())
                .await
                .expect("bulk timeout")
                .expect("bulk recv");
            assert_eq!(
                got,
                pattern(chunk, seed.wrapping_add(i as u8)),
                "message {i}"
            );
        }
    }
    s1.await.expect("sender 1");
    s2.await.expect("sender 2");
    pair.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unordered_and_unreliable_channels_deliver() {
    let unordered = ChannelOptions {
        ordered: false,
        ..ChannelOptions::default()
    };
    let no_retransmit = ChannelOptions {
        ordered: false,
        max_retransmits: Some(0),
        ..ChannelOptions::default()
    };
    let lifetime = ChannelOptions {
        max_packet_life_time: Some(500),
        ..ChannelOptions::default()
    };
    let mut pair = connect(
        WebRtcConfig::loopback(),
        vec![
            ("unordered", unordered),
            ("rtx0", no_retransmit),
            ("lifetime", lifetime),
        ],
    )
    .await;
    for (a, b) in pair.local.iter_mut().zip(pair.remote.iter_mut()) {
        assert_eq!(a.label(), b.label());
        let mut sent = std::collections::HashSet::new();
        for i in 0..32u8 {
            let msg = pattern(1000, i);
            sent.insert(msg.clone());
            a.sender.send(msg).await.expect("send");
        }
        // Loopback loses nothing at this rate, so every message arrives; order is not
        // asserted on unordered channels.
        for _ in 0..32 {
            let got = timeout(WAIT, b.receiver.recv())
                .await
                .expect("timeout")
                .expect("recv");
            assert!(
                sent.remove(&got),
                "{}: unexpected or duplicate message",
                a.label()
            );
        }
    }
    pair.close().await;
}

const FAKE_SDP_NO_APP: &str =
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_signals_give_typed_errors() {
    let (answerer, _events) = WebRtcLink::new(WebRtcConfig::loopback(), WebRtcRole::Answerer)
        .await
        .expect("answerer");
    let offer = |sdp: &str| Signal::Offer {
        sdp: sdp.to_owned(),
        connection_id: None,
        ice_restart: false,
    };

    assert!(matches!(
        answerer.handle_signal_json("{\"type\":\"offer\"}").await,
        Err(WebRtcError::MalformedSignal(_))
    ));
    assert!(matches!(
        answerer.handle_signal_json("not json").await,
        Err(WebRtcError::MalformedSignal(_))
    ));
    assert!(matches!(
        answerer.handle_signal(offer("hello")).await,
        Err(WebRtcError::MalformedSdp(_))
    ));
    assert!(matches!(
        answerer.handle_signal(offer(FAKE_SDP_NO_APP)).await,
        Err(WebRtcError::MalformedSdp(_))
    ));
    let no_fingerprint = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";
    assert!(matches!(
        answerer.handle_signal(offer(no_fingerprint)).await,
        Err(WebRtcError::MissingFingerprint("remote"))
    ));
    let huge = format!("v=0\r\nm=application 9 x\r\n{}", "a=x\r\n".repeat(20_000));
    assert!(matches!(
        answerer.handle_signal(offer(&huge)).await,
        Err(WebRtcError::TooLarge { what: "SDP", .. })
    ));
    assert!(matches!(
        answerer.handle_signal_json(&"x".repeat(100_000)).await,
        Err(WebRtcError::TooLarge { what: "signal", .. })
    ));
    // A well-formed description with a garbage line the engine's parser refuses.
    let real = {
        let (offerer, mut ev) = WebRtcLink::new(WebRtcConfig::loopback(), WebRtcRole::Offerer)
            .await
            .expect("offerer");
        let _ch = offerer
            .create_channel("x", ChannelOptions::default())
            .await
            .expect("channel");
        offerer.start().await.expect("start");
        let Signal::Offer { sdp, .. } = next_signal(&mut ev).await else {
            panic!("offer")
        };
        offerer.close().await;
        sdp
    };
    let broken = real.replacen("m=application", "m=application-broken garbage", 1);
    assert!(
        answerer.handle_signal(offer(&broken)).await.is_err(),
        "broken m-line refused"
    );

    let candidate = |c: &str| Signal::Candidate {
        candidate: IceCandidate {
            candidate: c.to_owned(),
            sdp_m_line_index: Some(0),
            sdp_mid: Some("0".into()),
            username_fragment: None,
        },
        connection_id: None,
    };
    for bad in [
        "candidate:",
        "candidate:1 1 udp",
        "candidate:1 x udp 2130706431 127.0.0.1 5000 typ host",
        "candidate:1 1 sctp 2130706431 127.0.0.1 5000 typ host",
        "candidate:1 1 udp 99999999999 127.0.0.1 5000 typ host",
        "candidate:1 1 udp 2130706431 127.0.0.1 70000 typ host",
        "candidate:1 1 udp 2130706431 127.0.0.1 5000 type host",
        "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ alien",
    ] {
        assert!(
            matches!(
                answerer.handle_signal(candidate(bad)).await,
                Err(WebRtcError::MalformedCandidate(_))
            ),
            "{bad:?} must be refused"
        );
    }
    assert!(matches!(
        answerer.handle_signal(candidate(&"a".repeat(5000))).await,
        Err(WebRtcError::TooLarge {
            what: "candidate",
            ..
        })
    ));
    // End-of-candidates is accepted.
    answerer
        .handle_signal(candidate(""))
        .await
        .expect("end of candidates");

    // An answer to the answerer, and the engine refusing an unparseable address once the
    // remote description is known.
    assert!(matches!(
        answerer
            .handle_signal(Signal::Answer {
                sdp: real.clone(),
                connection_id: None
            })
            .await,
        Err(WebRtcError::UnexpectedSignal {
            signal: "answer",
            ..
        })
    ));
    answerer
        .handle_signal(offer(&real))
        .await
        .expect("real offer");
    assert!(matches!(
        answerer
            .handle_signal(candidate(
                "candidate:1 1 udp 2130706431 not..an..ip 5000 typ host"
            ))
            .await,
        Err(WebRtcError::MalformedCandidate(_))
    ));
    assert!(matches!(
        answerer.handle_signal(offer(&real)).await,
        Err(WebRtcError::UnexpectedSignal {
            signal: "offer",
            ..
        })
    ));
    answerer.close().await;
    assert!(matches!(
        answerer.handle_signal(candidate("")).await,
        Err(WebRtcError::UnexpectedSignal { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glare_wrong_connection_and_too_many_early_candidates_are_refused() {
    let config = WebRtcConfig {
        connection_id: Some("c1".into()),
        max_early_candidates: 2,
        ..WebRtcConfig::loopback()
    };
    let (offerer, mut events) = WebRtcLink::new(config.clone(), WebRtcRole::Offerer)
        .await
        .expect("offerer");
    let _ch = offerer
        .create_channel("x", ChannelOptions::default())
        .await
        .expect("channel");
    offerer.start().await.expect("start");
    let offer = next_signal(&mut events).await;
    assert_eq!(offer.connection_id(), Some("c1"));
    // Glare: the offerer refuses an offer.
    assert!(matches!(
        offerer.handle_signal(offer.clone()).await,
        Err(WebRtcError::UnexpectedSignal {
            signal: "offer",
            ..
        })
    ));
    let (answerer, _ev) = WebRtcLink::new(config, WebRtcRole::Answerer)
        .await
        .expect("answerer");
    let Signal::Offer { sdp, .. } = offer else {
        panic!()
    };
    assert!(matches!(
        answerer
            .handle_signal(Signal::Offer {
                sdp,
                connection_id: Some("c2".into()),
                ice_restart: false
            })
            .await,
        Err(WebRtcError::WrongConnection { .. })
    ));
    let c = || Signal::Candidate {
        candidate: IceCandidate {
            candidate: "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host".into(),
            sdp_m_line_index: Some(0),
            sdp_mid: Some("0".into()),
            username_fragment: None,
        },
        connection_id: None,
    };
    answerer.handle_signal(c()).await.expect("early 1");
    answerer.handle_signal(c()).await.expect("early 2");
    assert!(matches!(
        answerer.handle_signal(c()).await,
        Err(WebRtcError::TooManyEarlyCandidates(2))
    ));
    offerer.close().await;
    answerer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_server_configuration_is_checked() {
    let turn = |urls: &[&str], user: &str| IceServer {
        urls: urls.iter().map(|s| s.to_string()).collect(),
        username: user.into(),
        credential: if user.is_empty() {
            String::new()
        } else {
            "pw".into()
        },
    };
    // Unsupported transports are skipped and reported, the rest is used (nothing is sent
    // before `start`, so these addresses are never contacted).
    let config = WebRtcConfig {
        ice_servers: vec![turn(
            &[
                "stuns:127.0.0.1:5349",
                "turns:127.0.0.1:5349?transport=udp",
                "turns:127.0.0.1:5349",
                "turn:127.0.0.1:3478?transport=tcp",
                "turn:127.0.0.1:3478?transport=udp",
            ],
            "u",
        )],
        ..WebRtcConfig::loopback()
    };
    let (link, _ev) = WebRtcLink::new(config, WebRtcRole::Offerer)
        .await
        .expect("link");
    let skipped: Vec<&str> = link
        .skipped_ice_urls()
        .iter()
        .map(|(u, _)| u.as_str())
        .collect();
    assert_eq!(
        skipped,
        ["stuns:127.0.0.1:5349", "turns:127.0.0.1:5349?transport=udp"]
    );
    link.close().await;

    let relay_without_turn = WebRtcConfig {
        ice_servers: vec![turn(
            &["stun:127.0.0.1:3478", "turns:127.0.0.1:5349?transport=udp"],
            "u",
        )],
        ice_transport_policy: IceTransportPolicy::Relay,
        ..WebRtcConfig::loopback()
    };
    assert!(matches!(
        WebRtcLink::new(relay_without_turn, WebRtcRole::Offerer).await,
        Err(WebRtcError::NoUsableRelay)
    ));
    let no_credentials = WebRtcConfig {
        ice_servers: vec![turn(&["turn:127.0.0.1"], "")],
        ..WebRtcConfig::loopback()
    };
    assert!(matches!(
        WebRtcLink::new(no_credentials, WebRtcRole::Offerer).await,
        Err(WebRtcError::BadIceServer { .. })
    ));
    let bad_root = WebRtcConfig {
        ice_servers: vec![turn(&["turns:127.0.0.1"], "u")],
        turn_tls_roots: vec![b"not a certificate".to_vec()],
        ..WebRtcConfig::loopback()
    };
    assert!(matches!(
        WebRtcLink::new(bad_root, WebRtcRole::Offerer).await,
        Err(WebRtcError::BadTurnTlsRoot { index: 0, .. })
    ));
    let bad_scheme = WebRtcConfig {
        ice_servers: vec![turn(&["http://x"], "")],
        ..WebRtcConfig::loopback()
    };
    assert!(matches!(
        WebRtcLink::new(bad_scheme, WebRtcRole::Offerer).await,
        Err(WebRtcError::BadIceServer { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_reports_closed_and_ends_the_channels() {
    let mut pair = connect(WebRtcConfig::loopback(), reliable()).await;
    let mut b = pair.remote.remove(0);
    pair.offerer.close().await;
    assert_eq!(pair.offerer.state(), LinkState::Closed);
    // The peer notices: its channel ends (SCTP abort or ICE consent expiry), bounded wait.
    let ended = timeout(Duration::from_secs(40), async {
        while b.receiver.recv().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "remote channel did not end");
    pair.answerer.close().await;
}
