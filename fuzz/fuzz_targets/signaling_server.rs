#![no_main]
//! libFuzzer entry for `peerlink_fuzz::signaling_server`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerlink_fuzz::signaling_server(data));
