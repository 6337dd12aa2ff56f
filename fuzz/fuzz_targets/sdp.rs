#![no_main]
//! libFuzzer entry for `peerlink_fuzz::sdp`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerlink_fuzz::sdp(data));
