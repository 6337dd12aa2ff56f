//! Node.js and Electron addon for peerlink.
//!
//! Thin adapters over the `peerlink` crate: classes wrap its handles, JS values cross as
//! MessagePack, errors become `Error`s with a stable `code`, and every async operation runs on
//! the process-wide peerlink runtime. See `docs/bindings/node.md`.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
// The generated glue of `#[napi]` items is unsafe FFI by nature.
#![allow(unsafe_code)]

mod bridge;
mod codec;
mod compact;
mod connection;
mod error;
mod handler;
mod identity;
mod manager;
mod node;
mod signaling;
mod value;
mod webrtc;

use napi_derive::napi;

pub use codec::{decode_message_bytes, encode_message_bytes};
pub use compact::{CodeAnswer, CodeOffer, CodeOptions, create_code_answer, create_code_offer};
pub use connection::{CallOptions, CloseInfo, Connection, RecvStream, SendStream};
pub use identity::{DeviceInfo, Identity};
pub use node::{ListenOptions, Listener, Node, NodeOptions};
pub use signaling::HybridEventInfo;

/// The second argument of every handler.
#[napi(object, object_from_js = false)]
#[derive(Debug)]
pub struct RequestContext {
    /// The name that was called.
    pub name: String,
    /// `true` for a notification (the result is discarded).
    pub is_notify: bool,
    /// The connection the request came on.
    #[napi(ts_type = "Connection")]
    pub connection: (),
}

/// The peerlink version of this addon.
#[napi]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}
