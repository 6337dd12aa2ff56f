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
