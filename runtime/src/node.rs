//! The node: one identity, its listeners and its connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use peerlink_core::handshake::{Handshake, HandshakeConfig, LinkBinding, Role};
use peerlink_core::wire::WireConfig;
use peerlink_core::{DeviceInfo, Identity, SignedDeviceInfo};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio::task::{AbortHandle, JoinSet};

use crate::connection::{Connection, EstablishParams, establish};
use crate::error::{CloseReason, Error};
use crate::handler::Handler;
use crate::transport::Transport;
use crate::transport::websocket;
use crate::trust::{TrustAll, TrustPolicy};
use crate::url::WsUrl;

/// Envelope headroom added to the default message limit so that a 64 MiB payload fits.
const ENVELOPE_HEADROOM: usize = 64 << 10;
/// Accepted connections held for [`Node::accept`] before older ones are only reported as events.
const ACCEPT_QUEUE: usize = 64;
/// Buffered [`NodeEvent`]s per subscriber before a slow subscriber starts missing some.
const EVENT_QUEUE: usize = 256;

/// Settings of a [`Node`]. Build with [`NodeConfig::new`] and adjust fields.
#[derive(Clone)]
pub struct NodeConfig {
    /// The device's identity key pair.
    pub identity: Identity,
    /// The user (account) id.
    pub user_id: String,
    /// This device's id.
    pub device_id: String,
    /// Optional user display name (≤ 128 characters).
    pub user_name: Option<String>,
    /// Optional device display name (≤ 128 characters).
    pub device_name: Option<String>,
    /// Decides how far each verified peer is trusted. Default: [`TrustAll`].
    pub trust: Arc<dyn TrustPolicy>,
    /// Deadline for the whole handshake, trust decision included. Default 10 s.
    pub handshake_timeout: Duration,
    /// Deadline for establishing a link (TCP, TLS, WebSocket upgrade). Default 10 s.
    pub connect_timeout: Duration,
    /// Default per-call timeout. Default 30 s.
    pub call_timeout: Duration,
    /// Wire limits. Default: [`WireConfig::default`] with the message limit raised so that a
    /// 64 MiB payload plus its envelope fits.
    pub wire: WireConfig,
    /// Largest accepted difference between a peer's clock and ours. Default 5 min.
    pub max_clock_skew: Duration,
}

impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeConfig")
            .field("identity", &self.identity)
            .field("user_id", &self.user_id)
            .field("device_id", &self.device_id)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("call_timeout", &self.call_timeout)
            .field("wire", &self.wire)
            .finish_non_exhaustive()
    }
}

impl NodeConfig {
    /// Defaults for `identity`, trusting everyone at level Unknown.
    pub fn new(
        identity: Identity,
        user_id: impl Into<String>,
        device_id: impl Into<String>,
    ) -> Self {
        let mut wire = WireConfig::default();
        wire.max_message_size += ENVELOPE_HEADROOM;
        wire.max_partial_bytes = wire.max_partial_bytes.max(2 * wire.max_message_size);
        Self {
            identity,
            user_id: user_id.into(),
            device_id: device_id.into(),
            user_name: None,
            device_name: None,
            trust: Arc::new(TrustAll),
            handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(30),
            wire,
            max_clock_skew: Duration::from_secs(5 * 60),
        }
    }
}

/// Something that happened on a node.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum NodeEvent {
    /// A connection finished its handshake (dialled or accepted).
    Connected {
        /// The new connection.
        connection: Connection,
    },
    /// A connection closed.
    Closed {
        /// Its id.
        connection_id: u64,
        /// Why.
        reason: CloseReason,
    },
}

/// Options for [`Node::listen_with`].
#[derive(Debug, Clone, Default)]
pub struct ListenOptions {
    /// Extra URLs this listener is reachable at (for example `ws://192.168.1.20:PORT` or a
    /// public `wss://` name behind a proxy). They are advertised in the device info and
    /// accepted as handshake bindings.
    pub advertised: Vec<String>,
}

struct NodeInner {
    config: NodeConfig,
    handlers: Arc<RwLock<HashMap<String, Handler>>>,
    connections: Mutex<HashMap<u64, Connection>>,
    listeners: Mutex<Vec<Listener>>,
    accept_tx: Mutex<Option<mpsc::Sender<Connection>>>,
    accept_rx: tokio::sync::Mutex<mpsc::Receiver<Connection>>,
    events: broadcast::Sender<NodeEvent>,
    closed: AtomicBool,
}

/// A peerlink node. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("device_id", &self.inner.config.device_id)
            .field("public_key", &self.inner.config.identity.public_key())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Node {
    /// Creates a node. Fails if the device info it would present is invalid.
    pub fn new(config: NodeConfig) -> Result<Node, Error> {
        let (accept_tx, accept_rx) = mpsc::channel(ACCEPT_QUEUE);
        let inner = Arc::new(NodeInner {
            config,
            handlers: Arc::new(RwLock::new(HashMap::new())),
            connections: Mutex::new(HashMap::new()),
            listeners: Mutex::new(Vec::new()),
            accept_tx: Mutex::new(Some(accept_tx)),
            accept_rx: tokio::sync::Mutex::new(accept_rx),
            events: broadcast::channel(EVENT_QUEUE).0,
            closed: AtomicBool::new(false),
        });
        let node = Node { inner };
        node.signed_info()?;
        Ok(node)
    }

    /// The device info this node presents (addresses = its listeners' URLs). Each handshake
    /// signs a fresh copy with the current time.
    pub fn device_info(&self) -> DeviceInfo {
        let c = &self.inner.config;
        let mut info = DeviceInfo::new(
            &c.identity,
            &c.user_id,
            &c.device_id,
            crate::connection::unix_ms(),
        );
        info.user_name = c.user_name.clone();
        info.device_name = c.device_name.clone();
        let mut addresses = Vec::new();
        for listener in lock(&self.inner.listeners).iter() {
            for url in &listener.inner.advertised {
                if !addresses.contains(url)
                    && addresses.len() < peerlink_core::identity::MAX_ADDRESSES
                {
                    addresses.push(url.clone());
                }
            }
        }
        info.addresses = addresses;
        info
    }

    fn signed_info(&self) -> Result<SignedDeviceInfo, Error> {
        Ok(self.device_info().sign(&self.inner.config.identity)?)
    }

    fn check_open(&self) -> Result<(), Error> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(Error::NodeClosed)
        } else {
            Ok(())
        }
    }

    /// Registers `handler` for `name` on every current and future connection.
    pub fn expose(&self, name: impl Into<String>, handler: Handler) {
        self.inner
            .handlers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.into(), handler);
    }

    /// Removes the node-wide handler for `name`.
    pub fn unexpose(&self, name: &str) {
        self.inner
            .handlers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    /// Subscribes to connection events.
    pub fn events(&self) -> broadcast::Receiver<NodeEvent> {
        self.inner.events.subscribe()
    }

    /// Open connections.
    pub fn connections(&self) -> Vec<Connection> {
        lock(&self.inner.connections).values().cloned().collect()
    }

    /// The next verified connection accepted by a listener, or `None` once the node closed.
    /// Up to 64 wait here; beyond that they are only announced as [`NodeEvent::Connected`].
    pub async fn accept(&self) -> Option<Connection> {
        let mut rx = self.inner.accept_rx.lock().await;
        // Skips connections that closed while queued; bounded by the queue length.
        loop {
            let connection = rx.recv().await?;
            if connection.is_open() {
                return Some(connection);
            }
        }
    }

    /// Starts a WebSocket listener on `addr` (for example `"127.0.0.1:0"`).
    pub async fn listen(&self, addr: &str) -> Result<Listener, Error> {
        self.listen_with(addr, ListenOptions::default()).await
    }

    /// Starts a WebSocket listener with options.
    ///
    /// The handshake accepts only bindings (dialled URLs) this listener knows it serves:
    /// `ws://IP:PORT` for the bound IP, `ws://localhost:PORT` for a loopback bind, and the
    /// advertised URLs. A wildcard bind (`0.0.0.0` / `::`) cannot know which of the machine's
    /// addresses a client dialled, so it accepts the loopback URLs plus the advertised ones
    /// only: list the LAN URLs you want reachable in [`ListenOptions::advertised`]. Accepting
    /// any URL would let a relay in the middle go unnoticed.
    pub async fn listen_with(&self, addr: &str, options: ListenOptions) -> Result<Listener, Error> {
        self.check_open()?;
        let tcp = TcpListener::bind(addr).await?;
        let local_addr = tcp.local_addr()?;
        let port = local_addr.port();
        let ip = local_addr.ip();
        let mut urls = Vec::new();
        if ip.is_unspecified() {
            urls.push(format!("ws://127.0.0.1:{port}"));
            urls.push(format!("ws://localhost:{port}"));
            if ip.is_ipv6() {
                urls.push(format!("ws://[::1]:{port}"));
            }
        } else {
            let host = match ip {
                std::net::IpAddr::V4(v4) => v4.to_string(),
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            };
            urls.push(format!("ws://{host}:{port}"));
            if ip.is_loopback() {
                urls.push(format!("ws://localhost:{port}"));
            }
        }
        let mut advertised = Vec::new();
        for url in &options.advertised {
            advertised.push(WsUrl::parse(url)?.normalised());
        }
        // The primary URL first, then what the application advertises.
        let primary = urls.first().cloned().unwrap_or_default();
        let mut advertise = vec![primary.clone()];
        advertise.extend(advertised.iter().cloned());
        urls.extend(advertised);
        urls.dedup();
        let accepted: Vec<LinkBinding> = urls
            .iter()
            .map(|u| LinkBinding::WebSocketUrl(u.clone()))
            .collect();

        let inner = Arc::new(ListenerInner {
            local_addr,
            url: primary,
            urls,
            advertised: advertise,
            task: Mutex::new(None),
            node: Arc::downgrade(&self.inner),
        });
        let task = tokio::spawn(accept_loop(Arc::downgrade(&self.inner), tcp, accepted));
        *lock(&inner.task) = Some(task.abort_handle());
        let listener = Listener { inner };
        lock(&self.inner.listeners).push(listener.clone());
        if self.inner.closed.load(Ordering::Acquire) {
            listener.close();
            return Err(Error::NodeClosed);
        }
        Ok(listener)
    }

    /// Dials a `ws://` or `wss://` URL and runs the handshake as initiator.
    pub async fn dial(&self, url: &str) -> Result<Connection, Error> {
        self.check_open()?;
        let url = WsUrl::parse(url)?;
        let started = Instant::now();
        let transport = websocket::connect(&url, self.inner.config.connect_timeout).await?;
        let connect_time = started.elapsed();
        let binding = LinkBinding::WebSocketUrl(url.normalised());
        self.run(
            Box::new(transport),
            Role::Initiator,
            binding,
            Vec::new(),
            connect_time,
        )
        .await
    }

    /// Runs the handshake over any transport (in-memory, WebRTC…). The initiator binds the
    /// handshake to `binding`; the responder accepts exactly `binding` and feeds its own view
    /// of it into the transcript.
    pub async fn connect(
        &self,
        transport: Box<dyn Transport>,
        role: Role,
        binding: LinkBinding,
    ) -> Result<Connection, Error> {
        self.check_open()?;
        let accepted = match role {
            Role::Initiator => Vec::new(),
            Role::Responder => vec![binding.clone()],
        };
        self.run(transport, role, binding, accepted, Duration::ZERO)
            .await
    }

    async fn run(
        &self,
        transport: Box<dyn Transport>,
        role: Role,
        binding: LinkBinding,
        accepted: Vec<LinkBinding>,
        connect_time: Duration,
    ) -> Result<Connection, Error> {
        let params = self.params(role, binding, accepted, connect_time)?;
        let connection = establish(transport, params).await?;
        self.register(connection.clone(), role).await;
        Ok(connection)
    }

    fn params(
        &self,
        role: Role,
        binding: LinkBinding,
        accepted: Vec<LinkBinding>,
        connect_time: Duration,
    ) -> Result<EstablishParams, Error> {
        let c = &self.inner.config;
        let local = self.signed_info()?;
        let now = Instant::now();
        let unix_ms = crate::connection::unix_ms();
        let handshake = match role {
            Role::Initiator => {
                let config = HandshakeConfig {
                    timeout: c.handshake_timeout,
                    max_clock_skew: c.max_clock_skew,
                    ..HandshakeConfig::default()
                };
                Handshake::initiator(&c.identity, local, binding, config, now, unix_ms)?
            }
            Role::Responder => {
                // A WebSocket responder cannot see what the client dialled: it checks the
                // binding from the Hello against its own URLs. Other links see both ends.
                let local_binding = match &binding {
                    LinkBinding::WebSocketUrl(_) => None,
                    other => Some(other.clone()),
                };
                let config = HandshakeConfig {
                    timeout: c.handshake_timeout,
                    max_clock_skew: c.max_clock_skew,
                    accepted_bindings: accepted,
                    local_binding,
                    ..HandshakeConfig::default()
                };
                Handshake::responder(&c.identity, local, config, now, unix_ms)?
            }
        };
        let node = Arc::downgrade(&self.inner);
        Ok(EstablishParams {
            handshake,
            trust: Arc::clone(&c.trust),
            wire: c.wire.clone(),
            call_timeout: c.call_timeout,
            connect_time,
            node_handlers: Arc::clone(&self.inner.handlers),
            on_close: Box::new(move |id, reason| {
                if let Some(node) = node.upgrade() {
                    lock(&node.connections).remove(&id);
                    let _ = node.events.send(NodeEvent::Closed {
                        connection_id: id,
                        reason,
                    });
                }
            }),
        })
    }

    async fn register(&self, connection: Connection, role: Role) {
        if self.inner.closed.load(Ordering::Acquire) {
            connection
                .close_with_reason(CloseReason::NodeClosed, node_closed_notice())
                .await;
            return;
        }
        lock(&self.inner.connections).insert(connection.id(), connection.clone());
        if !connection.is_open() {
            // Closed before it was registered: its close callback already ran.
            lock(&self.inner.connections).remove(&connection.id());
            return;
        }
        let _ = self.inner.events.send(NodeEvent::Connected {
            connection: connection.clone(),
        });
        if role == Role::Responder {
            let tx = lock(&self.inner.accept_tx).clone();
            if let Some(tx) = tx {
                let _ = tx.try_send(connection);
            }
        }
    }

    /// Closes every listener and connection (telling peers), and frees their tasks.
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        let listeners = std::mem::take(&mut *lock(&self.inner.listeners));
        for listener in listeners {
            listener.close();
        }
        lock(&self.inner.accept_tx).take();
        let connections: Vec<Connection> = lock(&self.inner.connections)
            .drain()
            .map(|(_, c)| c)
            .collect();
        let closing = connections
            .iter()
            .map(|c| c.close_with_reason(CloseReason::NodeClosed, node_closed_notice()));
        futures_util::future::join_all(closing).await;
    }

    /// Whether [`Node::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// The node's public key.
    pub fn public_key(&self) -> peerlink_core::PublicKey {
        self.inner.config.identity.public_key()
    }
}

fn node_closed_notice() -> peerlink_core::Envelope {
    peerlink_core::Envelope::Close {
        code: "node_closed".into(),
        message: "node closed".into(),
    }
}

async fn accept_loop(node: Weak<NodeInner>, tcp: TcpListener, accepted: Vec<LinkBinding>) {
    let mut pending = JoinSet::new();
    // Runs until the listener is closed (the task is aborted, which drops pending handshakes).
    loop {
        tokio::select! {
            incoming = tcp.accept() => match incoming {
                Ok((socket, _peer)) => {
                    pending.spawn(handle_incoming(node.clone(), socket, accepted.clone()));
                }
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!(%e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = pending.join_next(), if !pending.is_empty() => {}
        }
    }
}

async fn handle_incoming(
    node: Weak<NodeInner>,
    socket: tokio::net::TcpStream,
    accepted: Vec<LinkBinding>,
) {
    let Some(inner) = node.upgrade() else {
        return;
    };
    let node = Node { inner };
    let timeout = node.inner.config.connect_timeout;
    let started = Instant::now();
    let transport = match websocket::accept(socket, timeout).await {
        Ok(t) => t,
        Err(e) => {
            tracing::debug!(%e, "websocket upgrade failed");
            return;
        }
    };
    let connect_time = started.elapsed();
    let binding = LinkBinding::WebSocketUrl(String::new());
    if let Err(e) = node
        .run(
            Box::new(transport),
            Role::Responder,
            binding,
            accepted,
            connect_time,
        )
        .await
    {
        tracing::debug!(code = e.code(), %e, "incoming handshake failed");
    }
}

struct ListenerInner {
    local_addr: SocketAddr,
    url: String,
    urls: Vec<String>,
    advertised: Vec<String>,
    task: Mutex<Option<AbortHandle>>,
    node: Weak<NodeInner>,
}

/// A WebSocket listener. Accepted connections arrive through [`Node::accept`] and
/// [`NodeEvent::Connected`]. It runs until [`Listener::close`] or [`Node::close`].
#[derive(Clone)]
pub struct Listener {
    inner: Arc<ListenerInner>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// The bound socket address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The URL to dial, for example `ws://127.0.0.1:PORT` (a wildcard bind reports the
    /// loopback URL).
    pub fn url(&self) -> String {
        self.inner.url.clone()
    }

    /// Every URL the handshake accepts as dialled address for this listener.
    pub fn accepted_urls(&self) -> Vec<String> {
        self.inner.urls.clone()
    }

    /// Stops accepting; handshakes in progress on this listener are dropped. Established
    /// connections stay open.
    pub fn close(&self) {
        if let Some(task) = lock(&self.inner.task).take() {
            task.abort();
        }
        if let Some(node) = self.inner.node.upgrade() {
            lock(&node.listeners).retain(|l| !Arc::ptr_eq(&l.inner, &self.inner));
        }
    }
}
