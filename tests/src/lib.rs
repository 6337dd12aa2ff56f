//! End-to-end tests live in `tests/tests/`; the soak run (library and `soak` binary) lives here.

pub mod soak;
