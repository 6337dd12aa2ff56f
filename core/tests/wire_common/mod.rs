//! Helpers shared by the wire tests.
#![allow(dead_code, unreachable_pub, missing_docs)]

use peerlink_core::handshake::SessionKeys;
use peerlink_core::wire::{self, EncodedMessage, WireConfig, WireError, WireReceiver, WireSender};

pub const KEY_A: [u8; 32] = [0x11; 32];
pub const KEY_B: [u8; 32] = [0x22; 32];

/// A sender on one side and the matching receiver on the other.
pub fn pair(config: WireConfig) -> (WireSender, WireReceiver) {
    let a = SessionKeys {
        send: KEY_A,
        recv: KEY_B,
    };
    let b = SessionKeys {
        send: KEY_B,
        recv: KEY_A,
    };
    let (sender, _) = wire::session(&a, config.clone());
    let (_, receiver) = wire::session(&b, config);
    (sender, receiver)
}

/// Drains every record from `sender` into `receiver`, collecting completed messages.
pub fn pump(
    sender: &mut WireSender,
    receiver: &mut WireReceiver,
) -> Result<Vec<EncodedMessage>, WireError> {
    let mut done = Vec::new();
    // Bounded: every record carries at least one byte of some queued message (or an empty one).
    let bound = sender.queued_bytes() + sender.queued_messages() + 1;
    for _ in 0..bound {
        let Some(record) = sender.poll_transmit() else {
            break;
        };
        if let Some(message) = receiver.handle_record(&record)? {
            done.push(message);
        }
    }
    assert!(
        sender.poll_transmit().is_none(),
        "sender still had records after the bound"
    );
    Ok(done)
}

/// Deterministic pseudo-random bytes (xorshift), incompressible.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// JSON-like text that compresses well but not trivially.
pub fn compressible_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 128);
    let mut i = seed;
    while out.len() < len {
        out.extend_from_slice(
            format!(
                "{{\"id\":{i},\"name\":\"record-{}\",\"tags\":[\"alpha\",\"beta\"],\"ok\":true}},",
                i % 97
            )
            .as_bytes(),
        );
        i = i.wrapping_add(1);
    }
    out.truncate(len);
    out
}
