#![no_main]
//! libFuzzer entry for `peerlink_fuzz::handshake`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerlink_fuzz::handshake(data));
