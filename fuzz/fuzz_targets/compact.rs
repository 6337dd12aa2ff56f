#![no_main]
//! libFuzzer entry for `peerlink_fuzz::compact`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerlink_fuzz::compact(data));
