//! Sans-I/O protocol logic for peerlink.
//!
//! Nothing here performs I/O, spawns tasks or reads a clock: time is passed in, bytes come in
//! and go out as values. The async engine in the `peerlink` crate drives these state machines.
//!
//! - [`identity`]: TweetNaCl-compatible identities and signed device info.
//! - [`handshake`]: Noise XX link handshake with signed device info and link binding.
//! - [`wire`]: encrypted records, chunking and interleaving, envelopes, compression.
//! - [`rpc`]: request-id correlation with deadlines.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod compact;
pub mod device_message;
pub mod handshake;
pub mod identity;
pub mod manager;
pub mod modem;
pub mod rpc;
pub mod wire;

pub use handshake::{
    Established, Handshake, HandshakeConfig, HandshakeError, HandshakeOutput, LinkBinding, Role,
    TrustLevel,
};
pub use identity::{
    DeviceInfo, Identity, IdentityError, PublicBoxKey, PublicKey, SignedDeviceInfo,
};
pub use wire::{Envelope, WireConfig, WireError};
