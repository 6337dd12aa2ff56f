#![no_main]
//! libFuzzer entry for `peerlink_fuzz::device_message`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerlink_fuzz::device_message(data));
