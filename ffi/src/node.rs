//! `Node`, its configuration and its listeners.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::task::AbortHandle;

use crate::callbacks::{self, ForeignTrust, NodeListener, RpcHandler, TrustPolicy};
use crate::connection::{CloseInfo, Connection};
use crate::error::PeerlinkError;
use crate::identity::{DeviceInfo, Identity};
use crate::task;

/// Settings of a [`Node`].
#[derive(uniffi::Record)]
pub struct NodeConfig {
    /// The device's identity.
    pub identity: Arc<Identity>,
    /// The user (account) id.
    pub user_id: String,
    /// This device's id.
    pub device_id: String,
    /// Optional user display name (at most 128 characters).
    #[uniffi(default = None)]
    pub user_name: Option<String>,
    /// Optional device display name (at most 128 characters).
    #[uniffi(default = None)]
    pub device_name: Option<String>,
    /// Rates each verified peer during the handshake. Default: everyone at level 0.
    #[uniffi(default = None)]
    pub trust: Option<Arc<dyn TrustPolicy>>,
    /// Default per-call timeout in milliseconds (default 30 000).
    #[uniffi(default = None)]
    pub call_timeout_ms: Option<u64>,
    /// Handshake deadline in milliseconds, trust decision included (default 10 000).
    #[uniffi(default = None)]
    pub handshake_timeout_ms: Option<u64>,
    /// Deadline for establishing a link in milliseconds (default 10 000).
    #[uniffi(default = None)]
    pub connect_timeout_ms: Option<u64>,
}

impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeConfig")
            .field("identity", &self.identity)
            .field("user_id", &self.user_id)
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

/// What a node holds of the foreign side, released at shutdown so that foreign objects which
/// refer back to the node do not keep it alive.
#[derive(Default)]
struct Foreign {
    exposed: HashSet<String>,
    events: Option<AbortHandle>,
}

/// A peerlink node: one identity, its listeners and its connections. `close` (Kotlin:
/// `shutdown`) ends everything; freeing the last handle does the same in the background.
#[derive(uniffi::Object)]
pub struct Node {
    pub(crate) inner: peerlink::Node,
    trust: Option<Arc<ForeignTrust>>,
    foreign: Mutex<Foreign>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl Node {
    fn foreign(&self) -> MutexGuard<'_, Foreign> {
        self.foreign.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn release_foreign(&self) {
        let foreign = std::mem::take(&mut *self.foreign());
        if let Some(task) = foreign.events {
            task.abort();
        }
        for name in foreign.exposed {
            self.inner.unexpose(&name);
        }
        if let Some(trust) = &self.trust {
            trust.release();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.release_foreign();
        if !self.inner.is_closed() {
            let node = self.inner.clone();
            peerlink::runtime::handle().spawn(async move { node.close().await });
        }
    }
}

#[uniffi::export]
impl Node {
    /// Creates a node. Fails with `InvalidArgument` if its device info would be invalid.
    #[uniffi::constructor]
    pub fn new(config: NodeConfig) -> Result<Arc<Self>, PeerlinkError> {
        let mut rust = peerlink::NodeConfig::new(
            config.identity.inner.clone(),
            config.user_id,
            config.device_id,
        );
        rust.user_name = config.user_name;
        rust.device_name = config.device_name;
        if let Some(ms) = config.call_timeout_ms {
            rust.call_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = config.handshake_timeout_ms {
            rust.handshake_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = config.connect_timeout_ms {
            rust.connect_timeout = Duration::from_millis(ms);
        }
        let trust = config.trust.map(|t| Arc::new(ForeignTrust::new(t)));
        if let Some(trust) = &trust {
            rust.trust = Arc::clone(trust) as Arc<dyn peerlink::TrustPolicy>;
        }
        let inner = peerlink::Node::new(rust)?;
        Ok(Arc::new(Self {
            inner,
            trust,
            foreign: Mutex::new(Foreign::default()),
        }))
    }

    /// The device info this node presents (addresses = its listeners' URLs).
    pub fn device_info(&self) -> DeviceInfo {
        DeviceInfo::from(&self.inner.device_info())
    }

    /// The node's public key, base64.
    pub fn public_key(&self) -> String {
        self.inner.public_key().to_base64()
    }

    /// Whether the node was shut down.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Open connections.
    pub fn connections(&self) -> Vec<Arc<Connection>> {
        self.inner
            .connections()
            .into_iter()
            .map(|c| Arc::new(Connection::from(c)))
            .collect()
    }

    /// Starts a WebSocket listener on `addr` (for example `"127.0.0.1:0"`). `advertised`
    /// lists extra URLs it is reachable at (advertised and accepted as dialled address).
    #[uniffi::method(default(advertised = []))]
    pub async fn listen(
        &self,
        addr: String,
        advertised: Vec<String>,
    ) -> Result<Arc<Listener>, PeerlinkError> {
        let node = self.inner.clone();
        task::run(async move {
            let options = peerlink::ListenOptions { advertised };
            let listener = node.listen_with(&addr, options).await?;
            Ok(Arc::new(Listener { inner: listener }))
        })
        .await
    }

    /// Dials a `ws://` or `wss://` URL and runs the handshake.
    pub async fn dial(&self, url: String) -> Result<Arc<Connection>, PeerlinkError> {
        let node = self.inner.clone();
        task::run(async move { Ok(Arc::new(Connection::from(node.dial(&url).await?))) }).await
    }

    /// The next connection accepted by a listener, or nothing once the node shut down.
    pub async fn accept(&self) -> Option<Arc<Connection>> {
        let node = self.inner.clone();
        task::run_infallible(
            async move { node.accept().await.map(|c| Arc::new(Connection::from(c))) },
            None,
        )
        .await
    }

    /// Registers `handler` for `name` on every current and future connection.
    pub fn expose(&self, name: String, handler: Arc<dyn RpcHandler>) {
        if self.inner.is_closed() {
            return;
        }
        self.foreign().exposed.insert(name.clone());
        self.inner.expose(name, callbacks::handler(handler));
    }

    /// Removes the node-wide handler for `name`.
    pub fn unexpose(&self, name: String) {
        self.foreign().exposed.remove(&name);
        self.inner.unexpose(&name);
    }

    /// Delivers connection events to `listener` (replacing any previous one) until shutdown.
    pub fn set_listener(&self, listener: Arc<dyn NodeListener>) {
        if self.inner.is_closed() {
            return;
        }
        let mut events = self.inner.events();
        let task = peerlink::runtime::handle().spawn(async move {
            // Ends when the node is dropped (the sender goes) or the task is aborted.
            loop {
                match events.recv().await {
                    Ok(peerlink::NodeEvent::Connected { connection }) => {
                        listener.on_connection(Arc::new(Connection::from(connection)));
                    }
                    Ok(peerlink::NodeEvent::Closed {
                        connection_id,
                        reason,
                    }) => listener.on_connection_closed(connection_id, CloseInfo::from(&reason)),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "node listener fell behind");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        if let Some(old) = self.foreign().events.replace(task.abort_handle()) {
            old.abort();
        }
    }

    /// Closes every listener and connection (telling peers) and releases every foreign
    /// object the node holds (handlers, listener, trust policy). Kotlin: `shutdown`.
    pub async fn close(&self) {
        let node = self.inner.clone();
        task::run_infallible(async move { node.close().await }, ()).await;
        self.release_foreign();
    }
}

/// A WebSocket listener. Accepted connections arrive through `Node.accept` and the node's
/// listener.
#[derive(Debug, uniffi::Object)]
pub struct Listener {
    inner: peerlink::Listener,
}

#[uniffi::export]
impl Listener {
    /// The URL to dial, for example `ws://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.inner.url()
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.inner.local_addr().port()
    }

    /// Every URL the handshake accepts as dialled address for this listener.
    pub fn urls(&self) -> Vec<String> {
        self.inner.accepted_urls()
    }

    /// Stops accepting (established connections stay open). Kotlin: `closeListener`.
    pub fn close(&self) {
        self.inner.close();
    }
}
