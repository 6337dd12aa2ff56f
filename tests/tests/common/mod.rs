//! Shared helpers for the end-to-end link tests: nodes with fresh identities on loopback.
#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod manager;
pub mod signaling;

use std::sync::Arc;
use std::time::Duration;

use peerlink::{Connection, Identity, Node, NodeConfig, TrustPolicy};

/// Upper bound for any single wait in these tests (never a timing assertion).
pub const BOUND: Duration = Duration::from_secs(30);

pub fn identity() -> Identity {
    Identity::generate(&mut rand::rngs::OsRng)
}

pub fn config(user: &str, device: &str) -> NodeConfig {
    NodeConfig::new(identity(), user, device)
}

pub fn node(user: &str, device: &str) -> Node {
    Node::new(config(user, device)).expect("valid node config")
}

pub fn node_with_trust(user: &str, device: &str, trust: Arc<dyn TrustPolicy>) -> Node {
    let mut config = config(user, device);
    config.trust = trust;
    Node::new(config).expect("valid node config")
}

/// A connected pair over a real loopback WebSocket: (server node, client node, the client's
/// connection, the server's connection).
pub struct Pair {
    pub server: Node,
    pub client: Node,
    pub client_conn: Connection,
    pub server_conn: Connection,
}

pub async fn ws_pair_of(server: Node, client: Node) -> Pair {
    let listener = server.listen("127.0.0.1:0").await.expect("listen");
    let client_conn = tokio::time::timeout(BOUND, client.dial(&listener.url()))
        .await
        .expect("dial within bound")
        .expect("dial succeeds");
    let server_conn = tokio::time::timeout(BOUND, server.accept())
        .await
        .expect("accept within bound")
        .expect("server accepted a connection");
    Pair {
        server,
        client,
        client_conn,
        server_conn,
    }
}

pub async fn ws_pair() -> Pair {
    ws_pair_of(
        node("server-user", "server-device"),
        node("client-user", "client-device"),
    )
    .await
}

pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}
