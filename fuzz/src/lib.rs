//! Fuzz target bodies, one function per decoder. Each takes arbitrary bytes and must never
//! panic, hang or allocate without bound; each also checks invariants the decoder promises.
//! `fuzz_targets/*.rs` hand them to libFuzzer; `src/bin/smoke.rs` runs them on stable.

use std::time::{Duration, Instant};

use peerlink_core::handshake::{
    Handshake, HandshakeConfig, HandshakeOutput, SessionKeys, TrustLevel,
};
use peerlink_core::identity::{DeviceInfo, Identity, SignedDeviceInfo};
use peerlink_core::wire::testing::FrameSealer;
use peerlink_core::wire::{
    self, CompressionConfig, EncodedMessage, WireConfig, WireReceiver, decode_message,
    encode_message,
};

/// The key records are sealed with in the frame target (the receiver's receive key).
pub const FRAME_KEY: [u8; 32] = [0x5a; 32];

/// Small limits so the fuzzer reaches them quickly.
pub fn small_config() -> WireConfig {
    WireConfig {
        max_message_size: 64 * 1024,
        max_record_size: 4096,
        max_partial_messages: 4,
        max_partial_bytes: 96 * 1024,
        compression: CompressionConfig::default(),
    }
}

fn receiver() -> WireReceiver {
    let keys = SessionKeys {
        send: [0; 32],
        recv: FRAME_KEY,
    };
    wire::session(&keys, small_config()).1
}

/// Splits input into length-prefixed pieces: `[u16 LE length][bytes]...`; the last piece takes
/// whatever is left.
pub fn pieces(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 2 && out.len() < 4096 {
        let len = usize::from(u16::from_le_bytes([data[0], data[1]]));
        let rest = &data[2..];
        let take = len.min(rest.len());
        out.push(&rest[..take]);
        data = &rest[take..];
    }
    if !data.is_empty() {
        out.push(data);
    }
    out
}

/// Joins pieces into the format [`pieces`] reads.
pub fn join(pieces: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in pieces {
        let len = piece.len().min(usize::from(u16::MAX));
        out.extend_from_slice(&(len as u16).to_le_bytes());
        out.extend_from_slice(&piece[..len]);
    }
    out
}

fn check_message(message: EncodedMessage) {
    let config = small_config();
    assert!(message.bytes.len() <= config.max_message_size);
    let _ = decode_message(message, config.max_message_size);
}

/// Arbitrary records straight into a receiver (mostly exercises the record checks).
pub fn wire_record(data: &[u8]) {
    let mut receiver = receiver();
    for record in pieces(data) {
        if let Ok(Some(message)) = receiver.handle_record(record) {
            check_message(message);
        }
    }
}

/// Arbitrary frames, sealed with the right key, into a receiver: fuzzes the frame parser and
/// reassembly, and checks the memory bounds hold after every record.
pub fn wire_frames(data: &[u8]) {
    let config = small_config();
    let mut sealer = FrameSealer::new(&FRAME_KEY);
    let mut receiver = receiver();
    for frame in pieces(data) {
        let Some(record) = sealer.seal(frame) else {
            return;
        };
        if let Ok(Some(message)) = receiver.handle_record(&record) {
            check_message(message);
        }
        assert!(receiver.partial_count() <= config.max_partial_messages);
        assert!(receiver.partial_bytes() <= config.max_partial_bytes);
    }
}

/// Arbitrary encoded messages: first byte says whether compressed. A message that decodes
/// must encode back to something that decodes to the same envelope and body.
pub fn envelope(data: &[u8]) {
    let Some((&flag, rest)) = data.split_first() else {
        return;
    };
    let message = EncodedMessage {
        bytes: rest.to_vec().into(),
        compressed: flag & 1 == 1,
    };
    let max = 1 << 20;
    if let Ok((envelope, body)) = decode_message(message, max) {
        let again = encode_message(&envelope, &body, &CompressionConfig::default())
            .expect("a decoded envelope encodes");
        let (envelope2, body2) = decode_message(again, max + 64).expect("re-encoded decodes");
        assert_eq!(envelope, envelope2);
        assert_eq!(body, body2);
    }
}

/// Arbitrary signed device info: parse, then verify.
pub fn device_info(data: &[u8]) {
    if let Ok(info) = SignedDeviceInfo::from_bytes(data) {
        let _ = info.verify();
        let _ = info.to_bytes();
    }
}

fn responder_identity() -> (Identity, SignedDeviceInfo) {
    let identity = Identity::from_seed(&[7; 32]);
    let info = DeviceInfo::new(&identity, "fuzz-user", "fuzz-device", FUZZ_UNIX_MS)
        .sign(&identity)
        .expect("valid device info");
    (identity, info)
}

/// Fixed wall clock for the handshake target.
pub const FUZZ_UNIX_MS: u64 = 1_700_000_000_000;

/// Arbitrary handshake messages into a responder; outputs are drained after every input and
/// any trust question is answered, so every state is reachable.
pub fn handshake(data: &[u8]) {
    let (identity, info) = responder_identity();
    let now = Instant::now();
    let Ok(mut responder) = Handshake::responder(
        &identity,
        info,
        HandshakeConfig::default(),
        now,
        FUZZ_UNIX_MS,
    ) else {
        return;
    };
    for (step, message) in pieces(data).into_iter().enumerate() {
        let at = now + Duration::from_millis(step as u64);
        let _ = responder.handle_input(message, at, FUZZ_UNIX_MS);
        // Every output is finite: bounded drain.
        for _ in 0..64 {
            match responder.poll_output() {
                None => break,
                Some(HandshakeOutput::TrustRequired(_)) => {
                    responder.set_trust_level(TrustLevel::KNOWN, at);
                }
                Some(HandshakeOutput::Failed(_)) => return,
                Some(_) => {}
            }
        }
    }
    responder.handle_timeout(now + Duration::from_secs(60));
    for _ in 0..64 {
        if responder.poll_output().is_none() {
            break;
        }
    }
}

/// Arbitrary compact offer/answer codes: a code that decodes re-encodes to the same bytes, its
/// text form decodes to the same code, and its expanded description reads back as the code
/// (less the session id, which travels in the code only).
pub fn compact(data: &[u8]) {
    use peerlink_core::compact::CompactSignal;
    let _ = CompactSignal::from_text(&String::from_utf8_lossy(data));
    let Ok(code) = CompactSignal::from_bytes(data) else {
        return;
    };
    assert_eq!(code.to_bytes().expect("a decoded code encodes"), data);
    let text = code.to_text().expect("a decoded code has a text form");
    assert_eq!(CompactSignal::from_text(&text).expect("text decodes"), code);
    let sdp = code.to_sdp();
    let back = CompactSignal::from_sdp(&sdp, code.kind).expect("an expanded code reads back");
    assert_eq!(back.fingerprint, code.fingerprint);
    assert_eq!(back.ice_pwd, code.ice_pwd);
    assert_eq!(back.candidates.len(), code.candidates.len());
}

/// Arbitrary device messages (MessagePack): a message that decodes re-encodes to bytes that
/// decode to the same message, verifying it never panics, and a forwarded copy keeps the hop
/// budget; delivery results round-trip the same way.
pub fn device_message(data: &[u8]) {
    use peerlink_core::device_message::{DeviceMessage, DeviceMessageResult};
    if let Ok(message) = DeviceMessage::from_bytes(data) {
        let again = DeviceMessage::from_bytes(&message.to_bytes()).expect("re-encoded decodes");
        assert!(again == message, "device message round trip changed it");
        let _ = message.verify(None);
        let _ = message.verify(Some(&message.from_public_key));
        let _ = message.signing_bytes();
        let next = message.forwarded_by("relay");
        assert_eq!(next.hops.len(), message.hops.len() + 1);
        assert!(next.ttl <= message.ttl);
    }
    if let Ok(result) = rmp_serde::from_slice::<DeviceMessageResult>(data) {
        let bytes = rmp_serde::to_vec_named(&result).expect("a result encodes");
        let again: DeviceMessageResult = rmp_serde::from_slice(&bytes).expect("re-encoded decodes");
        assert_eq!(again, result);
    }
}

/// Largest recording the modem target decodes (the product limit is ten minutes of audio,
/// which a tiny WAV header with a low sample rate can claim; the decoder is the same).
pub const MODEM_MAX_SAMPLES: usize = 48_000;

/// Arbitrary WAV files and raw sample streams into the modem decoder: the sample reader keeps
/// to its limit and samples stay in full scale; a decoded frame's payload fits in what was
/// received.
pub fn modem(data: &[u8]) {
    use peerlink_core::modem::{demodulate, samples_from_wav};
    if let Ok(samples) = samples_from_wav(data, MODEM_MAX_SAMPLES) {
        assert!(samples.len() <= MODEM_MAX_SAMPLES);
        assert!(
            samples
                .iter()
                .all(|s| s.is_finite() && s.abs() <= 1.0 + 1e-3)
        );
        check_decoded(demodulate(&samples));
    }
    // The same bytes as raw 16-bit little-endian PCM.
    let samples: Vec<f32> = data
        .chunks_exact(2)
        .take(MODEM_MAX_SAMPLES)
        .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])) / 32768.0)
        .collect();
    check_decoded(demodulate(&samples));
}

fn check_decoded(result: Result<peerlink_core::modem::Decoded, peerlink_core::modem::ModemError>) {
    if let Ok(decoded) = result {
        assert!(decoded.payload.len() <= decoded.received.len());
        assert!(decoded.corrected_bytes <= decoded.received.len());
        assert!(decoded.raw_bit_errors <= decoded.received.len() * 8);
    }
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// Arbitrary WebRTC signals (JSON): a signal that parses serialises to JSON that parses to the
/// same signal; an offer or answer that has a compact code expands to a signal whose code is
/// the same.
pub fn webrtc_signal(data: &[u8]) {
    use peerlink::webrtc::Signal;
    use peerlink::webrtc::compact::{code_from_signal, signal_from_code};
    let Some(json) = text(data) else {
        return;
    };
    let Ok(signal) = Signal::from_json(json) else {
        return;
    };
    let again = Signal::from_json(&signal.to_json()).expect("serialised signal parses");
    assert_eq!(again, signal);
    assert_eq!(again.kind(), signal.kind());
    if let Ok(code) = code_from_signal(&signal) {
        let expanded = signal_from_code(&code);
        assert_eq!(expanded.kind(), signal.kind());
        let code2 = code_from_signal(&expanded).expect("an expanded code reads back");
        assert_eq!(code2, code);
    }
}

/// Arbitrary session descriptions through what the link reads from them: the fingerprint is
/// normalised, the engine's copy announces no message limit in its application section and
/// keeps the fingerprint and candidates, and the offer rewrite is idempotent.
pub fn sdp(data: &[u8]) {
    use peerlink::fuzzing::{check_sdp, has_candidates, offer_as_active, sdp_for_engine};
    use peerlink::webrtc::{max_message_size, sha256_fingerprint};
    let Some(sdp) = text(data) else {
        return;
    };
    let checked = check_sdp(sdp);
    let fingerprint = sha256_fingerprint(sdp, "remote");
    if let Ok(fp) = &fingerprint {
        let hex = fp.strip_prefix("sha-256 ").expect("normalised algorithm");
        assert_eq!(hex.len(), 32 * 3 - 1);
        assert!(!hex.bytes().any(|b| b.is_ascii_lowercase()));
    }
    let _ = max_message_size(sdp);
    let engine = sdp_for_engine(sdp);
    if sdp
        .lines()
        .any(|l| l.trim_end().starts_with("m=application"))
    {
        assert_eq!(max_message_size(&engine).ok(), Some(usize::MAX));
    }
    assert_eq!(
        sha256_fingerprint(&engine, "remote").ok(),
        fingerprint.as_ref().ok().cloned()
    );
    assert_eq!(has_candidates(&engine), has_candidates(sdp));
    if checked.is_ok() {
        assert!(check_sdp(&engine).is_ok() || engine.len() > sdp.len());
    }
    let active = offer_as_active(sdp);
    assert_eq!(offer_as_active(&active), active);
}

/// Arbitrary input to the signaling server's decoders: client text messages (with `auth`
/// verification: a message that verifies has valid ids) and relay frames (a frame that parses
/// rebuilds to the same bytes).
pub fn signaling_server(data: &[u8]) {
    use peerlink_signal_server::fuzzing::{
        backplane_member, build_relay, client_text, is_valid_id, parse_relay, token_admits,
    };
    if let Some((device_id, payload)) = parse_relay(data) {
        assert!(is_valid_id(device_id) || device_id.chars().any(char::is_control));
        assert_eq!(build_relay(device_id, payload), data);
    }
    let Some(json) = text(data) else {
        return;
    };
    if let Some(message) = client_text(json) {
        if let Some(Ok(key)) = &message.auth {
            let (device, user) = &message.ids;
            assert!(device.as_deref().is_some_and(is_valid_id));
            assert!(user.as_deref().is_some_and(is_valid_id));
            let _ = key.to_base64();
        }
        if let Some(data) = &message.data {
            serde_json::from_str::<serde_json::Value>(data).expect("raw data is JSON");
        }
    }
    let key = Identity::from_seed(&[1; 32]).public_key();
    let _ = token_admits(json, &key);
    if let Some(member) = backplane_member(json) {
        let again = backplane_member(&serde_json::to_string(&member).expect("encodes"));
        assert_eq!(again, Some(member));
    }
}

/// Arbitrary input to the signaling client's decoders: server text messages (members, errors,
/// TURN credentials), relay-link frames (a frame that parses rebuilds to the same bytes),
/// signaling URLs (normalising is idempotent; the signed host has no path or credentials) and
/// group-broadcast relay requests (decode, encode, decode is stable).
pub fn signaling_client(data: &[u8]) {
    use peerlink::fuzzing::{
        decode_hub_relay, encode_hub_relay, host_of, link_frame, parse_link_frame,
        signaling_server_text,
    };
    if let Some(m) = parse_link_frame(data) {
        assert_eq!(link_frame(&m.from, m.kind, m.link_id, &m.body), data);
    }
    if let Some((group, name, args)) = decode_hub_relay(data) {
        let body = encode_hub_relay(&group, &name, &args).expect("a decoded relay encodes");
        assert_eq!(decode_hub_relay(&body), Some((group, name, args)));
    }
    let Some(text) = text(data) else {
        return;
    };
    if let Some(message) = signaling_server_text(text) {
        if let Ok(members) = &message.members {
            let json = serde_json::json!({ "members": members }).to_string();
            let again = signaling_server_text(&json).expect("members JSON parses");
            assert_eq!(again.members.ok().as_ref(), Some(members));
        }
        let _ = message.error.to_string();
        if let Some(turn) = &message.turn {
            let _ = format!("{turn:?}");
        }
    }
    if let Some(host) = host_of(text) {
        assert!(!host.is_empty());
        assert!(!host.contains(['/', '?', '#', '@']));
    }
    if let Ok(url) = peerlink::normalise_ws_url(text) {
        assert_eq!(
            peerlink::normalise_ws_url(&url).ok().as_deref(),
            Some(url.as_str()),
            "normalising is idempotent"
        );
    }
}
