#![no_main]
//! libFuzzer entry for `peerlink_fuzz::modem`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerlink_fuzz::modem(data));
