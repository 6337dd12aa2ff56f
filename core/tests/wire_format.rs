//! The wire format frozen byte for byte: a change to any layout shows up as a snapshot diff.
//! Review with `cargo insta review` or rerun with `INSTA_UPDATE=always` to accept on purpose.

mod wire_common;

use std::fmt::Write as _;

use peerlink_core::wire::testing::{FLAG_FIRST, FLAG_LAST, FrameSealer, chunk_frame};
use peerlink_core::wire::{CompressionConfig, Envelope, WireConfig, encode_message};
use wire_common::{KEY_A, pair};

fn plain() -> CompressionConfig {
    CompressionConfig {
        enabled: false,
        ..CompressionConfig::default()
    }
}

fn every_envelope() -> Vec<Envelope> {
    vec![
        Envelope::Call {
            id: 1,
            name: "listChanges_g1".into(),
        },
        Envelope::Reply { id: 1 },
        Envelope::Error {
            id: 2,
            code: "no_handler".into(),
            message: "no handler for x".into(),
        },
        Envelope::Notify {
            name: "presence".into(),
        },
        Envelope::Cancel { id: 3 },
        Envelope::StreamOpen {
            id: 4,
            name: "file".into(),
        },
        Envelope::StreamData { id: 4 },
        Envelope::StreamCredit {
            id: 4,
            bytes: 1 << 20,
        },
        Envelope::StreamEnd { id: 4 },
        Envelope::StreamReset {
            id: 4,
            code: "cancelled".into(),
        },
        Envelope::Ping {
            nonce: 0x0102_0304_0506_0708,
        },
        Envelope::Pong { nonce: u64::MAX },
        Envelope::Close {
            code: "closed".into(),
            message: "bye".into(),
        },
    ]
}

#[test]
fn envelope_encodings() {
    let mut out = String::new();
    for envelope in every_envelope() {
        let encoded = encode_message(&envelope, b"body", &plain()).unwrap();
        assert!(!encoded.compressed);
        writeln!(out, "{envelope:?}\n  {}", hex::encode(&encoded.bytes)).unwrap();
    }
    insta::assert_snapshot!("envelope_encodings", out);
}

#[test]
fn compressed_message_encoding() {
    // The deflate stream itself may differ between backends; only the flag, the round trip and
    // the encoded prefix matter, so the snapshot records the decompressed bytes.
    let body = "{\"k\":\"v\"},".repeat(200);
    let config = CompressionConfig::default();
    let encoded = encode_message(
        &Envelope::Notify { name: "n".into() },
        body.as_bytes(),
        &config,
    )
    .unwrap();
    assert!(encoded.compressed);
    let inflated = peerlink_core::wire::testing::inflate(&encoded.bytes, 1 << 20).unwrap();
    insta::assert_snapshot!("compressed_message_prefix", hex::encode(&inflated[..16]));
}

#[test]
fn record_layout() {
    // Fixed key, counter 0 and 1: version, BE counter, ciphertext, tag.
    let mut sealer = FrameSealer::new(&KEY_A);
    let first = sealer
        .seal(&chunk_frame(FLAG_FIRST | FLAG_LAST, 0, Some(3), b"abc"))
        .unwrap();
    let second = sealer
        .seal(&chunk_frame(FLAG_FIRST | FLAG_LAST, 300, Some(0), b""))
        .unwrap();
    insta::assert_snapshot!(
        "record_layout",
        format!("{}\n{}", hex::encode(first), hex::encode(second))
    );
}

#[test]
fn chunked_message_frames() {
    // What the sender emits for a 100-byte message at the smallest record size: decrypt each
    // record with the raw receiver side and show the plaintext frames.
    let config = WireConfig {
        max_record_size: 64,
        ..WireConfig::default()
    };
    let (mut sender, _) = pair(config);
    let body: Vec<u8> = (0..100u8).collect();
    let mut message = encode_message(&Envelope::StreamData { id: 9 }, &body, &plain()).unwrap();
    message.compressed = true; // exercise the COMPRESSED flag's position on FIRST only
    sender.push(message).unwrap();
    let mut out = String::new();
    let mut opener = peerlink_core::wire::testing::FrameOpener::new(&KEY_A);
    while let Some(record) = sender.poll_transmit() {
        assert!(record.len() <= 64);
        let frame = opener.open(&record).unwrap();
        writeln!(out, "{} {}", record.len(), hex::encode(frame)).unwrap();
    }
    insta::assert_snapshot!("chunked_message_frames", out);
}
