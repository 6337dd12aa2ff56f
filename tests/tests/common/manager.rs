//! Helpers shared by the connection-manager tests: managed nodes and links between them.

use std::time::Duration;

use peerlink::core::manager::ManagerConfig;
use peerlink::manager::ConnectionManager;
use peerlink::transport::memory;
use peerlink::{LinkBinding, Node, NodeConfig, Role};

use super::{BOUND, identity};

/// A manager over a fresh node of `user`/`device`.
pub fn managed(user: &str, device: &str, config: ManagerConfig) -> ConnectionManager {
    let id = identity();
    let node = Node::new(NodeConfig::new(id.clone(), user, device)).expect("node");
    ConnectionManager::new(node, id, user, device, config).expect("manager")
}

/// Polls `f` until it holds; fails the test after [`BOUND`].
pub async fn wait_for<F: Fn() -> bool>(what: &str, f: F) {
    let deadline = tokio::time::Instant::now() + BOUND;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `a` dials a loopback WebSocket listener of `b`; returns once both managers hold the link.
pub async fn ws_link(a: &ConnectionManager, b: &ConnectionManager) {
    let listener = b.node().listen("127.0.0.1:0").await.expect("listen");
    tokio::time::timeout(BOUND, a.dial(&listener.url()))
        .await
        .expect("dial in bound")
        .expect("dial");
    let (a2, bid) = (a.clone(), b.device_id().to_owned());
    let (b2, aid) = (b.clone(), a.device_id().to_owned());
    wait_for("both sides linked", move || {
        a2.connection(&bid).is_some() && b2.connection(&aid).is_some()
    })
    .await;
}

/// Links `a` (initiator) and `b` over an in-memory transport.
pub async fn memory_link(a: &Node, b: &Node) -> peerlink::Connection {
    let (x, y) = memory::pair(1 << 20, 64);
    let binding = LinkBinding::Memory("manager-test".into());
    let (ra, rb) = tokio::join!(
        a.connect(Box::new(x), Role::Initiator, binding.clone()),
        b.connect(Box::new(y), Role::Responder, binding),
    );
    rb.expect("responder");
    ra.expect("initiator")
}
