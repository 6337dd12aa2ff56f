//! Round trips through the whole wire path: encode, chunk, seal, open, reassemble, decode.

mod wire_common;

use peerlink_core::wire::{
    self, CompressionConfig, Envelope, Priority, RECORD_OVERHEAD, WireConfig, decode_message,
    encode_message,
};
use proptest::prelude::*;
use wire_common::{compressible_bytes, pair, pump, random_bytes};

#[derive(Debug, Clone)]
struct Spec {
    len: usize,
    compressible: bool,
    seed: u64,
}

/// Mostly small messages, some medium, a few large (up to 16 MiB).
fn spec() -> impl Strategy<Value = Spec> {
    let len = prop_oneof![
        60 => 0usize..=2048,
        30 => 2049usize..=256 * 1024,
        4 => 256usize * 1024..=2 * 1024 * 1024,
        1 => 2usize * 1024 * 1024..=16 * 1024 * 1024,
    ];
    (len, any::<bool>(), any::<u64>()).prop_map(|(len, compressible, seed)| Spec {
        len,
        compressible,
        seed,
    })
}

fn body_for(spec: &Spec) -> Vec<u8> {
    if spec.compressible {
        compressible_bytes(spec.len, spec.seed)
    } else {
        random_bytes(spec.len, spec.seed)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn interleaved_messages_round_trip(
        specs in prop::collection::vec(spec(), 1..6),
        max_record_size in 64usize..=1024 * 1024,
        level in 1u32..=6,
    ) {
        let config = WireConfig {
            max_record_size,
            compression: CompressionConfig { level, ..CompressionConfig::default() },
            ..WireConfig::default()
        };
        let (mut sender, mut receiver) = pair(config.clone());
        let mut expected = Vec::new();
        for (index, spec) in specs.iter().enumerate() {
            let body = body_for(spec);
            let envelope = Envelope::Call { id: index as u64, name: format!("call-{index}") };
            let encoded = encode_message(&envelope, &body, &config.compression).unwrap();
            let id = sender.push(encoded).unwrap();
            expected.push((id, envelope, body));
        }
        let mut records = 0usize;
        let mut received = Vec::new();
        while let Some(record) = sender.poll_transmit() {
            prop_assert!(record.len() <= max_record_size, "record of {} > {}", record.len(), max_record_size);
            prop_assert!(record.len() >= RECORD_OVERHEAD);
            records += 1;
            prop_assert!(records < 100_000_000);
            if let Some(message) = receiver.handle_record(&record).unwrap() {
                received.push(decode_message(message, config.max_message_size).unwrap());
            }
        }
        prop_assert_eq!(receiver.partial_count(), 0);
        prop_assert_eq!(receiver.partial_bytes(), 0);
        prop_assert_eq!(sender.queued_bytes(), 0);
        prop_assert_eq!(received.len(), expected.len());
        // Completion order differs from push order with interleaving; match by envelope.
        for (_, envelope, body) in &expected {
            let found = received.iter().find(|(e, _)| e == envelope);
            prop_assert!(found.is_some(), "missing {:?}", envelope);
            let (_, got) = found.unwrap();
            prop_assert!(got.as_ref() == body.as_slice(), "body of {:?} differs", envelope);
        }
    }
}

#[test]
fn empty_message_round_trips() {
    let config = WireConfig::default();
    let (mut sender, mut receiver) = pair(config.clone());
    let envelope = Envelope::StreamEnd { id: 7 };
    sender
        .push(encode_message(&envelope, &[], &config.compression).unwrap())
        .unwrap();
    let messages = pump(&mut sender, &mut receiver).unwrap();
    assert_eq!(messages.len(), 1);
    let (got, body) = decode_message(messages[0].clone(), config.max_message_size).unwrap();
    assert_eq!(got, envelope);
    assert!(body.is_empty());
}

#[test]
fn zero_length_encoded_message_round_trips() {
    // Not something encode_message produces, but the chunk layer must carry it.
    let config = WireConfig::default();
    let (mut sender, mut receiver) = pair(config);
    sender
        .push(wire::EncodedMessage {
            bytes: bytes::Bytes::new(),
            compressed: false,
        })
        .unwrap();
    let messages = pump(&mut sender, &mut receiver).unwrap();
    assert_eq!(messages.len(), 1);
    assert!(messages[0].bytes.is_empty());
}

#[test]
fn compressible_message_is_compressed_and_random_is_not() {
    let config = CompressionConfig::default();
    let envelope = Envelope::Notify { name: "n".into() };
    let text = compressible_bytes(200_000, 1);
    let encoded = encode_message(&envelope, &text, &config).unwrap();
    assert!(encoded.compressed);
    assert!(encoded.bytes.len() < text.len() / 2);
    let noise = random_bytes(200_000, 2);
    let encoded = encode_message(&envelope, &noise, &config).unwrap();
    assert!(!encoded.compressed);
    let small = compressible_bytes(500, 3);
    assert!(
        !encode_message(&envelope, &small, &config)
            .unwrap()
            .compressed,
        "below threshold"
    );
    let off = CompressionConfig {
        enabled: false,
        ..config
    };
    assert!(!encode_message(&envelope, &text, &off).unwrap().compressed);
}

#[test]
fn small_message_overtakes_a_64_mib_transfer() {
    let config = WireConfig {
        max_record_size: 64 * 1024,
        ..WireConfig::default()
    };
    let (mut sender, mut receiver) = pair(config.clone());
    let off = CompressionConfig {
        enabled: false,
        ..CompressionConfig::default()
    };
    // As large as the default limit allows once the envelope is added.
    let big = vec![0u8; (64 << 20) - 64];
    let big_message = encode_message(&Envelope::StreamData { id: 1 }, &big, &off).unwrap();
    let big_len = big_message.bytes.len();
    assert!(big_len > (64 << 20) - 64);
    sender.push(big_message).unwrap();
    sender
        .push(encode_message(&Envelope::Ping { nonce: 9 }, &[], &off).unwrap())
        .unwrap();
    let mut small_done_at = None;
    for index in 0..8 {
        let record = sender.poll_transmit().unwrap();
        if let Some(message) = receiver.handle_record(&record).unwrap() {
            let (envelope, _) = decode_message(message, config.max_message_size).unwrap();
            assert_eq!(envelope, Envelope::Ping { nonce: 9 });
            small_done_at = Some(index);
            break;
        }
    }
    assert!(
        matches!(small_done_at, Some(i) if i <= 2),
        "ping completed at {small_done_at:?}"
    );
    // The bulk message still arrives whole afterwards.
    let rest = pump(&mut sender, &mut receiver).unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].bytes.len(), big_len);
}

#[test]
fn higher_priority_goes_first() {
    let config = WireConfig {
        max_record_size: 1024,
        ..WireConfig::default()
    };
    let (mut sender, mut receiver) = pair(config.clone());
    let off = CompressionConfig {
        enabled: false,
        ..CompressionConfig::default()
    };
    sender
        .push_with_priority(
            encode_message(&Envelope::StreamData { id: 1 }, &[7u8; 100_000], &off).unwrap(),
            Priority::Low,
        )
        .unwrap();
    let first = sender.poll_transmit().unwrap();
    assert!(receiver.handle_record(&first).unwrap().is_none());
    sender
        .push_with_priority(
            encode_message(&Envelope::Cancel { id: 3 }, &[], &off).unwrap(),
            Priority::High,
        )
        .unwrap();
    let second = sender.poll_transmit().unwrap();
    let message = receiver
        .handle_record(&second)
        .unwrap()
        .expect("cancel completes at once");
    let (envelope, _) = decode_message(message, config.max_message_size).unwrap();
    assert_eq!(envelope, Envelope::Cancel { id: 3 });
}

#[test]
fn queued_messages_are_counted_per_priority_until_sent() {
    let (mut sender, _) = pair(WireConfig::default());
    let off = CompressionConfig {
        enabled: false,
        ..CompressionConfig::default()
    };
    let message = |envelope| encode_message(&envelope, &[1u8; 10], &off).unwrap();
    sender
        .push_with_priority(message(Envelope::StreamData { id: 1 }), Priority::Low)
        .unwrap();
    sender
        .push_with_priority(message(Envelope::Reply { id: 2 }), Priority::Normal)
        .unwrap();
    assert_eq!(sender.queued_messages_at_least(Priority::High), 0);
    assert_eq!(sender.queued_messages_at_least(Priority::Normal), 1);
    assert_eq!(sender.queued_messages_at_least(Priority::Low), 2);
    // The reply goes out first; the bulk message is the only one left.
    sender.poll_transmit().unwrap();
    assert_eq!(sender.queued_messages_at_least(Priority::Normal), 0);
    assert_eq!(sender.queued_messages_at_least(Priority::Low), 1);
}

#[test]
fn record_size_change_applies_to_next_record() {
    let config = WireConfig {
        max_record_size: 4096,
        ..WireConfig::default()
    };
    let (mut sender, mut receiver) = pair(config.clone());
    let off = CompressionConfig {
        enabled: false,
        ..CompressionConfig::default()
    };
    let body = random_bytes(50_000, 5);
    sender
        .push(encode_message(&Envelope::Reply { id: 1 }, &body, &off).unwrap())
        .unwrap();
    let first = sender.poll_transmit().unwrap();
    assert_eq!(first.len(), 4096);
    receiver.handle_record(&first).unwrap();
    sender.set_max_record_size(300);
    let second = sender.poll_transmit().unwrap();
    assert_eq!(second.len(), 300);
    receiver.handle_record(&second).unwrap();
    sender.set_max_record_size(10);
    assert_eq!(sender.max_record_size(), wire::MIN_RECORD_SIZE);
    let messages = pump(&mut sender, &mut receiver).unwrap();
    let (_, got) = decode_message(messages[0].clone(), config.max_message_size).unwrap();
    assert_eq!(got.as_ref(), body.as_slice());
}

#[test]
fn push_rejects_oversized_message() {
    let config = WireConfig {
        max_message_size: 1000,
        ..WireConfig::default()
    };
    let (mut sender, _) = pair(config);
    let err = sender
        .push(wire::EncodedMessage {
            bytes: vec![0u8; 1001].into(),
            compressed: false,
        })
        .unwrap_err();
    assert_eq!(
        err,
        wire::WireError::TooLarge {
            size: 1001,
            limit: 1000
        }
    );
    assert_eq!(sender.queued_bytes(), 0);
}

#[test]
fn sender_keeps_partials_within_receiver_limits() {
    // Many multi-record messages at once: the sender must never open more partial messages
    // (or bytes) than the receiver accepts, whatever the interleaving.
    let config = WireConfig {
        max_record_size: 256,
        max_partial_messages: 3,
        max_partial_bytes: 10_000,
        max_message_size: 8_000,
        ..WireConfig::default()
    };
    let (mut sender, mut receiver) = pair(config.clone());
    let off = CompressionConfig {
        enabled: false,
        ..CompressionConfig::default()
    };
    let sizes = [
        7_000usize, 3_000, 100, 2_500, 6_000, 50, 1_000, 1_000, 1_000,
    ];
    for (i, size) in sizes.iter().enumerate() {
        let body = random_bytes(*size, i as u64);
        sender
            .push(encode_message(&Envelope::Reply { id: i as u64 }, &body, &off).unwrap())
            .unwrap();
    }
    let mut done = 0;
    while let Some(record) = sender.poll_transmit() {
        if receiver.handle_record(&record).unwrap().is_some() {
            done += 1;
        }
        assert!(receiver.partial_count() <= 3);
        assert!(receiver.partial_bytes() <= 10_000);
    }
    assert_eq!(done, sizes.len());
}
