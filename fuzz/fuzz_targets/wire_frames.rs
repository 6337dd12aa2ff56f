#![no_main]
//! libFuzzer entry for `peerlink_fuzz::wire_frames`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerlink_fuzz::wire_frames(data));
