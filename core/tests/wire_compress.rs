//! Compression: fflate interoperability, bounded inflation (deflate bombs), bad streams.

mod wire_common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use peerlink_core::wire::testing::{deflate, inflate};
use peerlink_core::wire::{
    CompressionConfig, EncodedMessage, Envelope, WireError, decode_message, encode_message,
};

/// Tracks live and peak heap bytes so the bomb test can check what decoding really held.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
        PEAK.fetch_max(now, Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The allocation counters are process-wide: tests in this file run one at a time so the bomb
/// test measures only its own allocations.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/wire_fixtures")
}

fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

#[test]
fn inflates_what_fflate_deflated() {
    let _serial = serial();
    let input = read_fixture("input.bin");
    for level in [1, 6, 9] {
        let deflated = read_fixture(&format!("fflate-l{level}.deflate"));
        let back = inflate(&deflated, input.len()).unwrap();
        assert!(
            back == input,
            "fflate level {level} fixture inflates to input.bin"
        );
    }
}

/// `rust-l*.deflate` were written by this crate and checked with `fflate.inflateSync` by
/// `bench/codec-node/make-fixtures.mjs --check`. Set `WIRE_BLESS=1` to rewrite them.
#[test]
fn rust_deflate_fixtures_round_trip() {
    let _serial = serial();
    let input = read_fixture("input.bin");
    for level in [1, 6, 9] {
        let name = format!("rust-l{level}.deflate");
        if std::env::var_os("WIRE_BLESS").is_some() {
            std::fs::write(fixtures().join(&name), deflate(&input, level)).unwrap();
        }
        let committed = read_fixture(&name);
        assert_eq!(inflate(&committed, input.len()).unwrap(), input, "{name}");
        // Whatever the backend produces today must also be plain raw deflate of the input.
        let fresh = deflate(&input, level);
        assert!(
            fresh.len() < input.len() / 2,
            "level {level} compresses the fixture"
        );
        assert_eq!(inflate(&fresh, input.len()).unwrap(), input);
    }
}

#[test]
fn deflate_bomb_is_cut_at_the_limit() {
    let _serial = serial();
    // 256 MiB of zeros deflate to about 256 KiB.
    let bomb = deflate(&vec![0u8; 256 << 20], 9);
    assert!(bomb.len() < 1 << 20);
    let limit = 8 << 20;
    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let err = decode_message(
        EncodedMessage {
            bytes: bomb.into(),
            compressed: true,
        },
        limit,
    )
    .unwrap_err();
    assert!(
        matches!(err, WireError::TooLarge { limit: l, .. } if l == limit as u64),
        "{err:?}"
    );
    let held = PEAK.load(Ordering::SeqCst) - before;
    // Output buffer at most limit + 1, transiently plus the half-size buffer it grew from,
    // plus the decompressor's own state (tens of KiB).
    assert!(
        held < limit + limit / 2 + (1 << 20),
        "decoding a bomb held {held} bytes"
    );
}

#[test]
fn inflate_limit_is_exact() {
    let _serial = serial();
    let data = wire_common::compressible_bytes(100_000, 4);
    let deflated = deflate(&data, 6);
    assert_eq!(inflate(&deflated, 100_000).unwrap(), data);
    assert!(matches!(
        inflate(&deflated, 99_999),
        Err(WireError::TooLarge { .. })
    ));
}

#[test]
fn truncated_and_trailing_streams_fail() {
    let _serial = serial();
    let data = wire_common::compressible_bytes(50_000, 5);
    let deflated = deflate(&data, 6);
    for cut in [0, 1, deflated.len() / 2, deflated.len() - 1] {
        let err = inflate(&deflated[..cut], 1 << 20).unwrap_err();
        assert!(
            matches!(err, WireError::Decompress(_)),
            "cut at {cut}: {err:?}"
        );
    }
    let mut trailing = deflated.clone();
    trailing.extend_from_slice(b"junk");
    assert!(matches!(
        inflate(&trailing, 1 << 20),
        Err(WireError::Decompress(_))
    ));
    let garbage = wire_common::random_bytes(1000, 6);
    assert!(inflate(&garbage, 1 << 20).is_err());
}

#[test]
fn compressed_message_over_limit_is_too_large() {
    let _serial = serial();
    let config = CompressionConfig::default();
    let body = wire_common::compressible_bytes(1 << 20, 7);
    let encoded = encode_message(&Envelope::Notify { name: "x".into() }, &body, &config).unwrap();
    assert!(encoded.compressed);
    assert!(encoded.bytes.len() < 200_000);
    let err = decode_message(encoded.clone(), 500_000).unwrap_err();
    assert!(matches!(err, WireError::TooLarge { .. }), "{err:?}");
    let (_, back) = decode_message(encoded, 2 << 20).unwrap();
    assert_eq!(back.as_ref(), body.as_slice());
}

#[test]
fn incompressible_body_behind_compressible_probe_stays_plain_when_not_smaller() {
    let _serial = serial();
    // A body whose middle compresses but whose whole does not shrink overall is still correct:
    // whatever the decision, the message decodes to the same body.
    let mut body = wire_common::random_bytes(300_000, 8);
    let middle = body.len() / 2 - 2048;
    body[middle..middle + 4096].fill(b'a');
    let encoded = encode_message(
        &Envelope::Reply { id: 1 },
        &body,
        &CompressionConfig::default(),
    )
    .unwrap();
    assert!(encoded.bytes.len() <= body.len() + 32);
    let (_, back) = decode_message(encoded, 1 << 20).unwrap();
    assert_eq!(back.as_ref(), body.as_slice());
}
