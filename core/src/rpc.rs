//! RPC request-id correlation with deadlines, on a caller-supplied clock.
//!
//! INTERFACE PINNED — implementation in progress.
