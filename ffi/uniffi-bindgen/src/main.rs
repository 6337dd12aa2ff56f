//! `uniffi-bindgen`, built from the same uniffi version as `peerlink-ffi` so the generated
//! Swift and Kotlin match the library's scaffolding (contract version and checksums).

fn main() {
    uniffi::uniffi_bindgen_main()
}
