//! peerlink: device-to-device connections with verified identities, RPC and bulk data.
//!
//! ```no_run
//! # async fn demo() -> Result<(), peerlink::Error> {
//! use peerlink::{Node, NodeConfig, typed_handler, HandlerError};
//! use peerlink::core::Identity;
//!
//! let server = Node::new(NodeConfig::new(Identity::generate(&mut rand::rngs::OsRng), "alice", "laptop"))?;
//! server.expose("add", typed_handler(|(a, b): (i64, i64)| async move { Ok::<_, HandlerError>(a + b) }));
//! let listener = server.listen("127.0.0.1:0").await?;
//!
//! let client = Node::new(NodeConfig::new(Identity::generate(&mut rand::rngs::OsRng), "bob", "phone"))?;
//! let connection = client.dial(&listener.url()).await?;
//! let sum: i64 = connection.call("add", &(2, 3)).await?;
//! assert_eq!(sum, 5);
//! # Ok(()) }
//! ```
//!
//! Layers: a [`Transport`] carries records; the wire layer (in `peerlink-core`) seals, chunks
//! and interleaves messages; a [`Connection`] runs the handshake, then RPC, notifications,
//! byte streams and pings; a [`Node`] owns the identity, listeners and connections.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod connection;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod handler;
pub mod manager;
mod node;
pub mod runtime;
pub mod signaling;
pub mod transport;
mod trust;
mod url;
pub mod webrtc;

pub use peerlink_core as core;
pub use peerlink_core::handshake::{HandshakeError, LinkBinding, Role, TrustLevel};
pub use peerlink_core::identity::{DeviceInfo, Identity, PublicKey};
pub use peerlink_core::wire::{CompressionConfig, WireConfig, WireError};

pub use connection::{CallOptions, Connection, RecvStream, SendStream, Timings};
pub use error::{CloseReason, Error, RpcError, TransportError};
pub use handler::{Handler, HandlerError, Request, group_rpc_name, handler_fn, typed_handler};
pub use node::{ListenOptions, Listener, Node, NodeConfig, NodeEvent};
pub use transport::{
    PathCandidate, PathProbe, PathReport, Transport, TransportKind, TransportReceiver,
    TransportSender,
};
pub use trust::{TrustAll, TrustFn, TrustPolicy, trust_fn};
pub use url::normalise_ws_url;

/// Initial credit of a byte stream, in bytes.
pub use connection::INITIAL_STREAM_WINDOW;
