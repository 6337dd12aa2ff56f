#![no_main]
//! libFuzzer entry for `peerlink_fuzz::envelope`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerlink_fuzz::envelope(data));
