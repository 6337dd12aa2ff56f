#![no_main]
//! libFuzzer entry for `peerlink_fuzz::webrtc_signal`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerlink_fuzz::webrtc_signal(data));
