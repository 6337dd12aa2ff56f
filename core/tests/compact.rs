//! Compact offer/answer codes: round trips, sizes, SDP expansion and malformed input.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use peerlink_core::compact::{
    CandidateAddress, CandidateTransport, CandidateType, CodeKind, CompactCandidate, CompactError,
    CompactSignal, DtlsSetup, MAX_CANDIDATES,
};
use proptest::prelude::*;

/// A data-channel offer as Chromium writes it (non-trickle: candidates inside).
const CHROMIUM_OFFER: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0\r\n\
a=extmap-allow-mixed\r\n\
a=msid-semantic: WMS\r\n\
m=application 50123 UDP/DTLS/SCTP webrtc-datachannel\r\n\
c=IN IP4 203.0.113.7\r\n\
a=candidate:3130161718 1 udp 2122260223 192.168.1.23 50123 typ host generation 0 network-id 1 network-cost 10\r\n\
a=candidate:842163049 1 udp 1686052607 203.0.113.7 61001 typ srflx raddr 192.168.1.23 rport 50123 generation 0 network-id 1 network-cost 10\r\n\
a=candidate:4233069003 1 tcp 1518280447 192.168.1.23 9 typ host tcptype active generation 0 network-id 1 network-cost 10\r\n\
a=ice-ufrag:Zq3x\r\n\
a=ice-pwd:hV5o9jP2fRk3N1mQ8sT0wYbC\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 6B:8B:5D:EA:59:04:20:23:29:C8:87:1C:CC:87:32:BE:DD:8C:66:A5:8E:50:55:EA:8C:D3:B6:5C:09:5E:A6:85\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=sctp-port:5000\r\n\
a=max-message-size:262144\r\n";

fn chromium_offer() -> CompactSignal {
    CompactSignal::from_sdp(CHROMIUM_OFFER, CodeKind::Offer).expect("the sample offer reads")
}

/// The offer the issue sizes: one host and one server-reflexive IPv4 candidate.
fn host_srflx(ufrag: &str, pwd: &str) -> CompactSignal {
    CompactSignal {
        kind: CodeKind::Offer,
        setup: DtlsSetup::ActPass,
        fingerprint: [0xA7; 32],
        ice_ufrag: ufrag.into(),
        ice_pwd: pwd.into(),
        candidates: vec![
            CompactCandidate {
                kind: CandidateType::Host,
                transport: CandidateTransport::Udp,
                address: CandidateAddress::Ip(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 23))),
                port: 50123,
                related: None,
            },
            CompactCandidate {
                kind: CandidateType::ServerReflexive,
                transport: CandidateTransport::Udp,
                address: CandidateAddress::Ip(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))),
                port: 61001,
                related: None,
            },
        ],
        session_id: None,
        max_message_size: None,
    }
}

#[test]
fn chromium_offer_is_read() {
    let code = chromium_offer();
    assert_eq!(code.kind, CodeKind::Offer);
    assert_eq!(code.setup, DtlsSetup::ActPass);
    assert_eq!(code.ice_ufrag, "Zq3x");
    assert_eq!(code.ice_pwd, "hV5o9jP2fRk3N1mQ8sT0wYbC");
    assert_eq!(code.fingerprint[0], 0x6B);
    assert_eq!(code.fingerprint[31], 0x85);
    assert_eq!(code.candidates.len(), 3);
    assert_eq!(
        code.candidates[1].related,
        Some(SocketAddr::from(([192, 168, 1, 23], 50123)))
    );
    assert_eq!(code.candidates[2].transport, CandidateTransport::TcpActive);
    assert_eq!(code.max_message_size, None);
}

#[test]
fn size_targets_for_one_host_and_one_srflx_candidate() {
    // Browser-sized credentials (Chromium: 4 + 24 characters).
    let browser = host_srflx("Zq3x", "hV5o9jP2fRk3N1mQ8sT0wYbC");
    let bytes = browser.to_bytes().unwrap();
    let text = browser.to_text().unwrap();
    println!(
        "browser credentials: {} bytes, {} base64url characters",
        bytes.len(),
        text.len()
    );
    assert!(bytes.len() <= 80, "{} bytes", bytes.len());
    assert!(text.len() <= 110, "{} characters", text.len());
    let qr = qrcode::QrCode::with_error_correction_level(&bytes, qrcode::EcLevel::M).unwrap();
    println!("QR version {:?} at level M", qr.version());
    assert!(matches!(qr.version(), qrcode::Version::Normal(v) if v <= 5));

    // The engine's own credentials (16 + 32 characters) still fit QR version 5 at level M.
    let engine = host_srflx(&"u".repeat(16), &"p".repeat(32));
    let bytes = engine.to_bytes().unwrap();
    println!("engine credentials: {} bytes", bytes.len());
    let qr = qrcode::QrCode::with_error_correction_level(&bytes, qrcode::EcLevel::M).unwrap();
    assert!(matches!(qr.version(), qrcode::Version::Normal(v) if v <= 5));
}

#[test]
fn expanded_sdp_reads_back_to_the_same_code() {
    let mut code = chromium_offer();
    code.minimize();
    assert_eq!(code.candidates.len(), 2, "TCP candidate dropped");
    assert!(code.candidates.iter().all(|c| c.related.is_none()));
    let sdp = code.to_sdp();
    for needle in [
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n",
        "a=setup:actpass\r\n",
        "a=mid:0\r\n",
        "a=sctp-port:5000\r\n",
        "a=max-message-size:262144\r\n",
        "a=ice-ufrag:Zq3x\r\n",
        "a=fingerprint:sha-256 6B:8B:5D:EA:59:04:20:23:29:C8:87:1C:CC:87:32:BE:DD:8C:66:A5:8E:50:55:EA:8C:D3:B6:5C:09:5E:A6:85\r\n",
        " 203.0.113.7 61001 typ srflx raddr 0.0.0.0 rport 0",
        "a=end-of-candidates\r\n",
    ] {
        assert!(sdp.contains(needle), "missing {needle:?} in\n{sdp}");
    }
    assert_eq!(
        CompactSignal::from_sdp(&sdp, CodeKind::Offer).unwrap(),
        code
    );
}

#[test]
fn answer_setup_and_message_size_survive() {
    let mut code = host_srflx("abcd", "ABCDEFGHIJKLMNOPQRSTUV");
    code.kind = CodeKind::Answer;
    code.setup = DtlsSetup::Active;
    code.max_message_size = Some(65_536);
    code.session_id = Some(b"room-7".to_vec());
    let back = CompactSignal::from_text(&code.to_text().unwrap()).unwrap();
    assert_eq!(back, code);
    let sdp = code.to_sdp();
    assert!(sdp.contains("a=setup:active\r\n"));
    assert!(sdp.contains("a=max-message-size:65536\r\n"));
}

#[test]
fn links_carry_the_code_in_the_fragment() {
    let code = chromium_offer();
    let link = code.to_link("https://lobby.example/join").unwrap();
    assert!(link.starts_with("https://lobby.example/join#"));
    assert_eq!(CompactSignal::from_text(&link).unwrap(), code);
    let http = format!("http://10.0.0.1:8080/#{}", code.to_text().unwrap());
    assert_eq!(CompactSignal::from_text(&http).unwrap(), code);
}

#[test]
fn debug_hides_the_ice_password() {
    let code = chromium_offer();
    let debug = format!("{code:?}");
    assert!(!debug.contains("hV5o9jP2fRk3N1mQ8sT0wYbC"));
    assert!(debug.contains("<redacted>"));
}

#[test]
fn malformed_codes_are_typed_errors() {
    let good = host_srflx("Zq3x", "hV5o9jP2fRk3N1mQ8sT0wYbC")
        .to_bytes()
        .unwrap();
    assert_eq!(CompactSignal::from_bytes(&[]), Err(CompactError::Empty));
    let mut v2 = good.clone();
    v2[0] = (v2[0] & 0x1f) | 0x40;
    assert_eq!(
        CompactSignal::from_bytes(&v2),
        Err(CompactError::UnsupportedVersion(2))
    );
    let mut setup = good.clone();
    setup[0] |= 0b110;
    assert_eq!(
        CompactSignal::from_bytes(&setup),
        Err(CompactError::Reserved("setup"))
    );
    // Header, short credential lengths, fingerprint, 28 credential characters in 21 bytes.
    let first_candidate = 1 + 1 + 32 + 21;
    for cut in 1..good.len() {
        match CompactSignal::from_bytes(&good[..cut]) {
            // Cutting exactly between candidates leaves a valid code with fewer of them.
            Ok(code) => {
                assert!(
                    cut == first_candidate || cut == first_candidate + 7,
                    "cut at {cut}"
                );
                assert_eq!(code.candidates.len(), (cut - first_candidate) / 7);
            }
            Err(err) => assert!(
                matches!(err, CompactError::Truncated(_)),
                "cut at {cut}: {err:?}"
            ),
        }
    }
    let long_form = |ufrag: u8, pwd: u8| {
        let mut v = vec![good[0] & !0x10, ufrag, pwd];
        v.extend_from_slice(&good[2..]);
        v
    };
    assert!(matches!(
        CompactSignal::from_bytes(&long_form(3, 25)),
        Err(CompactError::Invalid { .. })
    ));
    assert!(matches!(
        CompactSignal::from_bytes(&long_form(4, 24)),
        Err(CompactError::Invalid {
            what: "credential lengths",
            ..
        })
    ));
    assert!(matches!(
        CompactSignal::from_bytes(&vec![0x10; 2000]),
        Err(CompactError::TooLong { .. })
    ));
    assert!(matches!(
        CompactSignal::from_text("not base64!"),
        Err(CompactError::BadText(_))
    ));
    assert_eq!(
        CompactSignal::from_text("https://host/#"),
        Err(CompactError::Empty)
    );
}

#[test]
fn descriptions_a_code_cannot_carry_are_refused() {
    let no_fp = CHROMIUM_OFFER.replace("a=fingerprint:sha-256", "a=fingerprint:sha-1");
    assert_eq!(
        CompactSignal::from_sdp(&no_fp, CodeKind::Offer),
        Err(CompactError::MissingSdpField("sha-256 fingerprint"))
    );
    let audio = CHROMIUM_OFFER.replace(
        "m=application 50123",
        "m=audio 9 RTP/AVP 0\r\nm=application 50123",
    );
    assert!(matches!(
        CompactSignal::from_sdp(&audio, CodeKind::Offer),
        Err(CompactError::UnsupportedSdp(_))
    ));
    let mid = CHROMIUM_OFFER.replace("a=mid:0", "a=mid:data");
    assert!(matches!(
        CompactSignal::from_sdp(&mid, CodeKind::Offer),
        Err(CompactError::UnsupportedSdp(_))
    ));
    let bad_candidate = CHROMIUM_OFFER.replace("typ host generation", "typ moon generation");
    assert!(matches!(
        CompactSignal::from_sdp(&bad_candidate, CodeKind::Offer),
        Err(CompactError::MalformedSdp(_))
    ));
    assert!(matches!(
        CompactSignal::from_sdp("hello", CodeKind::Offer),
        Err(CompactError::MalformedSdp(_))
    ));
}

fn ice_string(min: usize, max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[A-Za-z0-9+/]{{{min},{max}}}")).expect("valid regex")
}

fn candidate() -> impl Strategy<Value = CompactCandidate> {
    let kind = prop_oneof![
        Just(CandidateType::Host),
        Just(CandidateType::ServerReflexive),
        Just(CandidateType::PeerReflexive),
        Just(CandidateType::Relay),
    ];
    let transport = prop_oneof![
        Just(CandidateTransport::Udp),
        Just(CandidateTransport::TcpActive),
        Just(CandidateTransport::TcpPassive),
        Just(CandidateTransport::TcpSimultaneousOpen),
    ];
    let address = prop_oneof![
        any::<IpAddr>().prop_map(CandidateAddress::Ip),
        any::<[u8; 16]>().prop_map(CandidateAddress::Mdns),
        "h[a-z0-9.-]{0,40}".prop_map(CandidateAddress::Hostname),
    ];
    (
        kind,
        transport,
        address,
        any::<u16>(),
        proptest::option::of(any::<SocketAddr>()),
    )
        .prop_map(
            |(kind, transport, address, port, related)| CompactCandidate {
                kind,
                transport,
                address,
                port,
                related: related.map(|r| SocketAddr::new(r.ip(), r.port())),
            },
        )
}

fn signal() -> impl Strategy<Value = CompactSignal> {
    (
        prop_oneof![Just(CodeKind::Offer), Just(CodeKind::Answer)],
        prop_oneof![
            Just(DtlsSetup::ActPass),
            Just(DtlsSetup::Active),
            Just(DtlsSetup::Passive)
        ],
        any::<[u8; 32]>(),
        ice_string(4, 255),
        ice_string(22, 255),
        proptest::collection::vec(candidate(), 0..8),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 1..=64)),
        proptest::option::of(any::<u32>().prop_filter("not the default", |&m| m != 262_144)),
    )
        .prop_map(
            |(kind, setup, fingerprint, ice_ufrag, ice_pwd, candidates, session_id, max)| {
                CompactSignal {
                    kind,
                    setup,
                    fingerprint,
                    ice_ufrag,
                    ice_pwd,
                    candidates,
                    session_id,
                    max_message_size: max,
                }
            },
        )
}

proptest! {
    #[test]
    fn bytes_and_text_round_trip(code in signal()) {
        let bytes = code.to_bytes().unwrap();
        prop_assert_eq!(CompactSignal::from_bytes(&bytes).unwrap(), code.clone());
        let text = code.to_text().unwrap();
        prop_assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        prop_assert_eq!(CompactSignal::from_text(&text).unwrap(), code);
    }

    #[test]
    fn sdp_round_trip_without_session_id(mut code in signal()) {
        // A session id travels in the code only, not in the description.
        code.session_id = None;
        // An unspecified related address with port 0 is the browsers' placeholder for none.
        for c in &mut code.candidates {
            if c.related.is_some_and(|r| r.ip().is_unspecified() && r.port() == 0) {
                c.related = None;
            }
        }
        let sdp = code.to_sdp();
        prop_assert_eq!(CompactSignal::from_sdp(&sdp, code.kind).unwrap(), code);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_reencode_stably(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(code) = CompactSignal::from_bytes(&bytes) {
            let again = code.to_bytes().unwrap();
            prop_assert_eq!(again, bytes);
        }
    }
}

#[test]
fn candidate_limit_is_enforced() {
    let mut code = host_srflx("Zq3x", "hV5o9jP2fRk3N1mQ8sT0wYbC");
    let one = code.candidates[0].clone();
    code.candidates = vec![one; MAX_CANDIDATES + 1];
    assert_eq!(
        code.to_bytes(),
        Err(CompactError::TooManyCandidates(MAX_CANDIDATES))
    );
}

/// Vectors for the browser codec (`signal-server/static/compact-code.js`): generated signals
/// with their code, the SDP `to_sdp` writes, and the code of that SDP read back and minimized
/// (what a browser's `encode` must produce). The committed file must equal what this code
/// generates; `PEERLINK_WRITE_VECTORS=1` rewrites it. The JavaScript side is checked by
/// `signal-server/tests/compact-code.test.mjs` (suite `vectors`).
#[test]
fn browser_codec_vectors_are_current() {
    use base64::Engine as _;
    use proptest::strategy::ValueTree as _;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/compact-codes.json"
    );
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = signal();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut vectors = Vec::new();
    for _ in 0..64 {
        let code = strategy.new_tree(&mut runner).expect("value").current();
        let sdp = code.to_sdp();
        let mut read = CompactSignal::from_sdp(&sdp, code.kind).expect("expanded SDP reads");
        read.minimize();
        read.session_id = code.session_id.clone();
        vectors.push(serde_json::json!({
            "code": code.to_text().expect("text"),
            "kind": match code.kind { CodeKind::Offer => "offer", CodeKind::Answer => "answer" },
            "sdp": sdp,
            "sessionId": code.session_id.as_ref().map(|id| b64.encode(id)),
            "encoded": read.to_text().expect("text"),
        }));
    }
    let text = serde_json::to_string_pretty(&vectors).expect("json") + "\n";
    if std::env::var_os("PEERLINK_WRITE_VECTORS").is_some() {
        std::fs::write(path, &text).expect("write vectors");
    }
    let committed = std::fs::read_to_string(path).expect("committed vectors");
    assert!(
        committed == text,
        "{path} is stale: run with PEERLINK_WRITE_VECTORS=1"
    );
}
