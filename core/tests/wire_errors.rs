//! Hostile and broken input: every case is a typed error, never a panic, and memory stays
//! within the configured bounds.

mod wire_common;

use peerlink_core::wire::testing::{
    FLAG_COMPRESSED, FLAG_FIRST, FLAG_LAST, FrameSealer, chunk_frame,
};
use peerlink_core::wire::{
    CompressionConfig, EncodedMessage, Envelope, WireConfig, WireError, WireReceiver,
    decode_message, encode_message,
};
use wire_common::{KEY_A, pair, random_bytes};

fn receiver(config: WireConfig) -> WireReceiver {
    pair(config).1
}

/// A receiver plus a raw sealer with the right key: the peer can send any frame it likes.
fn adversary(config: WireConfig) -> (FrameSealer, WireReceiver) {
    (FrameSealer::new(&KEY_A), receiver(config))
}

fn feed(
    sealer: &mut FrameSealer,
    receiver: &mut WireReceiver,
    frame: &[u8],
) -> Result<Option<EncodedMessage>, WireError> {
    let record = sealer.seal(frame).expect("sealable");
    receiver.handle_record(&record)
}

fn is_malformed<T: std::fmt::Debug>(result: Result<T, WireError>) -> bool {
    matches!(result, Err(WireError::Malformed(_)))
}

fn one_record() -> Vec<u8> {
    let config = WireConfig::default();
    let (mut sender, _) = pair(config.clone());
    let message = encode_message(
        &Envelope::Call {
            id: 1,
            name: "echo".into(),
        },
        b"hello",
        &config.compression,
    )
    .expect("encode");
    sender.push(message).expect("push");
    sender.poll_transmit().expect("a record")
}

#[test]
fn every_single_bit_flip_is_rejected() {
    let record = one_record();
    for bit in 0..record.len() * 8 {
        let mut bad = record.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let result = receiver(WireConfig::default()).handle_record(&bad);
        let byte = bit / 8;
        match result {
            Err(WireError::Version(_)) => assert_eq!(byte, 0, "bit {bit}"),
            Err(WireError::Sequence { expected: 0, .. }) => {
                assert!((1..9).contains(&byte), "bit {bit}")
            }
            Err(WireError::Decrypt) => assert!(byte >= 9, "bit {bit}"),
            other => panic!("bit {bit}: {other:?}"),
        }
    }
}

#[test]
fn truncated_records_are_rejected() {
    let record = one_record();
    for len in 0..record.len() {
        let result = receiver(WireConfig::default()).handle_record(&record[..len]);
        assert!(
            matches!(result, Err(WireError::Malformed(_) | WireError::Decrypt)),
            "len {len}: {result:?}"
        );
    }
}

#[test]
fn wrong_key_is_decrypt_error() {
    let record = FrameSealer::new(&[0x33; 32])
        .seal(&chunk_frame(FLAG_FIRST | FLAG_LAST, 0, Some(1), b"x"))
        .unwrap();
    assert_eq!(
        receiver(WireConfig::default()).handle_record(&record),
        Err(WireError::Decrypt)
    );
}

#[test]
fn duplicated_and_reordered_records_are_sequence_errors() {
    let config = WireConfig {
        max_record_size: 128,
        ..WireConfig::default()
    };
    let (mut sender, mut receiver) = pair(config.clone());
    let off = CompressionConfig {
        enabled: false,
        ..CompressionConfig::default()
    };
    sender
        .push(encode_message(&Envelope::Reply { id: 1 }, &random_bytes(1000, 1), &off).unwrap())
        .unwrap();
    let records: Vec<_> = std::iter::from_fn(|| sender.poll_transmit()).collect();
    assert!(records.len() > 3);
    receiver.handle_record(&records[0]).unwrap();
    assert_eq!(
        receiver.handle_record(&records[0]),
        Err(WireError::Sequence {
            expected: 1,
            got: 0
        })
    );
    assert_eq!(
        receiver.handle_record(&records[2]),
        Err(WireError::Sequence {
            expected: 1,
            got: 2
        })
    );
    // Rejected records leave the receiver where it was: the right one is still accepted.
    assert_eq!(receiver.handle_record(&records[1]), Ok(None));
}

#[test]
fn declared_length_over_limit_is_too_large_before_allocating() {
    let config = WireConfig {
        max_message_size: 1 << 20,
        ..WireConfig::default()
    };
    let (mut sealer, mut receiver) = adversary(config);
    let result = feed(
        &mut sealer,
        &mut receiver,
        &chunk_frame(FLAG_FIRST, 0, Some((1 << 20) + 1), b"abc"),
    );
    assert_eq!(
        result,
        Err(WireError::TooLarge {
            size: (1 << 20) + 1,
            limit: 1 << 20
        })
    );
    let result = feed(
        &mut sealer,
        &mut receiver,
        &chunk_frame(FLAG_FIRST, 1, Some(u64::MAX), b"abc"),
    );
    assert!(matches!(result, Err(WireError::TooLarge { .. })));
    assert_eq!(receiver.partial_count(), 0);
    assert_eq!(receiver.partial_bytes(), 0);
}

#[test]
fn duplicated_first_is_malformed() {
    let (mut sealer, mut receiver) = adversary(WireConfig::default());
    assert_eq!(
        feed(
            &mut sealer,
            &mut receiver,
            &chunk_frame(FLAG_FIRST, 5, Some(10), b"abc")
        ),
        Ok(None)
    );
    assert!(is_malformed(feed(
        &mut sealer,
        &mut receiver,
        &chunk_frame(FLAG_FIRST, 5, Some(10), b"abc")
    )));
    assert!(is_malformed(feed(
        &mut sealer,
        &mut receiver,
        &chunk_frame(FLAG_FIRST | FLAG_LAST, 5, Some(3), b"abc")
    )));
}

#[test]
fn continuation_for_unknown_message_is_malformed() {
    let (mut sealer, mut receiver) = adversary(WireConfig::default());
    assert!(is_malformed(feed(
        &mut sealer,
        &mut receiver,
        &chunk_frame(0, 9, None, b"abc")
    )));
    assert!(is_malformed(feed(
        &mut sealer,
        &mut receiver,
        &chunk_frame(FLAG_LAST, 9, None, b"abc")
    )));
}

#[test]
fn overrun_and_early_or_missing_last_are_malformed() {
    let (mut sealer, mut receiver) = adversary(WireConfig::default());
    feed(
        &mut sealer,
        &mut receiver,
        &chunk_frame(FLAG_FIRST, 1, Some(6), b"abc"),
    )
    .unwrap();
    assert!(
        is_malformed(feed(
            &mut sealer,
            &mut receiver,
            &chunk_frame(FLAG_LAST, 1, None, b"defg")
        )),
        "overrun"
    );
    assert!(
        is_malformed(feed(
            &mut sealer,
            &mut receiver,
            &chunk_frame(FLAG_LAST, 1, None, b"de")
        )),
        "LAST early"
    );
    assert!(
        is_malformed(feed(
            &mut sealer,
            &mut receiver,
            &chunk_frame(0, 1, None, b"def")
        )),
        "full without LAST"
    );
    let done = feed(
        &mut sealer,
        &mut receiver,
        &chunk_frame(FLAG_LAST, 1, None, b"def"),
    )
    .unwrap()
    .unwrap();
    assert_eq!(done.bytes.as_ref(), b"abcdef");
    assert_eq!(receiver.partial_bytes(), 0);

    assert!(
        is_malformed(feed(
            &mut sealer,
            &mut receiver,
            &chunk_frame(FLAG_FIRST | FLAG_LAST, 2, Some(4), b"abc")
        )),
        "short single"
    );
    assert!(
        is_malformed(feed(
            &mut sealer,
            &mut receiver,
            &chunk_frame(FLAG_FIRST | FLAG_LAST, 2, Some(2), b"abc")
        )),
        "long single"
    );
    assert!(
        is_malformed(feed(
            &mut sealer,
            &mut receiver,
            &chunk_frame(FLAG_FIRST, 3, Some(3), b"abc")
        )),
        "FIRST fills without LAST"
    );
}

#[test]
fn bad_frame_headers_are_malformed() {
    let (mut sealer, mut receiver) = adversary(WireConfig::default());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty frame", vec![]),
        ("kind only", vec![0x01]),
        (
            "unknown kind",
            vec![0x02, FLAG_FIRST | FLAG_LAST, 0, 1, b'x'],
        ),
        (
            "unknown flag",
            vec![0x01, 0x08 | FLAG_FIRST | FLAG_LAST, 0, 1, b'x'],
        ),
        (
            "compressed continuation",
            chunk_frame(FLAG_COMPRESSED, 0, None, b"x"),
        ),
        ("truncated id", vec![0x01, FLAG_FIRST | FLAG_LAST, 0x80]),
        (
            "non-canonical id",
            vec![0x01, FLAG_FIRST | FLAG_LAST, 0x80, 0x00, 1, b'x'],
        ),
        ("missing total", vec![0x01, FLAG_FIRST | FLAG_LAST, 0]),
        ("empty chunk", chunk_frame(FLAG_FIRST, 0, Some(5), b"")),
    ];
    for (name, frame) in cases {
        assert!(
            is_malformed(feed(&mut sealer, &mut receiver, &frame)),
            "{name}"
        );
    }
    // A well-formed empty message is fine.
    let empty = feed(
        &mut sealer,
        &mut receiver,
        &chunk_frame(FLAG_FIRST | FLAG_LAST, 0, Some(0), b""),
    )
    .unwrap();
    assert!(empty.unwrap().bytes.is_empty());
}

#[test]
fn adversary_opening_thousands_of_partials_stays_bounded() {
    let config = WireConfig {
        max_message_size: 1 << 20,
        max_partial_messages: 16,
        max_partial_bytes: 64 * 1024,
        ..WireConfig::default()
    };
    let (mut sealer, mut receiver) = adversary(config);
    let chunk = vec![0xAB; 3000];
    let mut limit_errors = 0;
    for id in 0..5000u64 {
        // Each message declares 1 MiB (allowed) but sends only 3000 bytes.
        match feed(
            &mut sealer,
            &mut receiver,
            &chunk_frame(FLAG_FIRST, id, Some(1 << 20), &chunk),
        ) {
            Ok(None) => {}
            Err(WireError::ReassemblyLimit(_)) => limit_errors += 1,
            other => panic!("message {id}: {other:?}"),
        }
        // Also keep feeding the open ones to try to grow them.
        let open = id % 16;
        let _ = feed(
            &mut sealer,
            &mut receiver,
            &chunk_frame(0, open, None, &chunk),
        );
        assert!(receiver.partial_count() <= 16);
        assert!(receiver.partial_bytes() <= 64 * 1024);
    }
    assert!(limit_errors > 4900, "only {limit_errors} rejections");
}

#[test]
fn decode_rejects_broken_messages() {
    let max = 1 << 20;
    let message = |bytes: Vec<u8>| EncodedMessage {
        bytes: bytes.into(),
        compressed: false,
    };
    let good = encode_message(
        &Envelope::Ping { nonce: 1 },
        b"",
        &CompressionConfig::default(),
    )
    .unwrap();
    assert_eq!(
        decode_message(good.clone(), max).unwrap().0,
        Envelope::Ping { nonce: 1 }
    );

    assert!(is_malformed(decode_message(message(vec![]), max)), "empty");
    assert!(
        is_malformed(decode_message(message(vec![50, 1, 2]), max)),
        "header longer than message"
    );
    assert!(
        is_malformed(decode_message(message(vec![3, 0xc1, 0xc1, 0xc1]), max)),
        "not msgpack"
    );
    // A valid envelope followed by a stray byte inside the declared header length.
    let mut trailing = good.bytes.to_vec();
    trailing[0] += 1;
    trailing.push(0);
    assert!(
        is_malformed(decode_message(message(trailing), max)),
        "trailing header byte"
    );
    // Unknown variant.
    let unknown =
        rmp_serde::to_vec_named(&std::collections::BTreeMap::from([("Nope", 1)])).unwrap();
    let mut bytes = vec![unknown.len() as u8];
    bytes.extend_from_slice(&unknown);
    assert!(
        is_malformed(decode_message(message(bytes), max)),
        "unknown variant"
    );
    // A string declaring 4 GiB in a 6-byte header: must fail without trying to allocate it.
    let huge = vec![
        6, 0x81, 0xa4, b'C', b'a', b'l', b'l', 0xdb, 0xff, 0xff, 0xff, 0xff,
    ];
    assert!(decode_message(message(huge), max).is_err());
    assert_eq!(
        decode_message(message(vec![0; 11]), 10).unwrap_err(),
        WireError::TooLarge {
            size: 11,
            limit: 10
        }
    );
}

#[test]
fn random_records_never_panic() {
    let mut receiver = receiver(WireConfig::default());
    for seed in 0..2000u64 {
        let len = (seed as usize * 7) % 200;
        let mut record = random_bytes(len, seed + 1);
        if let Some(first) = record.first_mut() {
            *first = 1;
        }
        assert!(receiver.handle_record(&record).is_err());
    }
}
