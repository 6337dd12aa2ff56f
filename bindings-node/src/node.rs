//! `Node` and `Listener` for JavaScript.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use napi::bindgen_prelude::{Function, Reference, Unknown};
use napi::threadsafe_function::ThreadsafeFunction;
use napi::{Env, Status, sys};
use napi_derive::napi;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::AbortHandle;

use crate::bridge::{JsCallback, Native, call_js, promise};
use crate::connection::{CloseInfo, Connection};
use crate::error::{Failure, sync_error};
use crate::handler::{JsTrust, handler, handler_callback};
use crate::identity::{DeviceInfo, Identity};

/// The trust callback as JS passes it.
pub(crate) type TrustFunction =
    ThreadsafeFunction<DeviceInfo, Unknown<'static>, DeviceInfo, Status, false, true>;

/// Options of `new Node(options)`.
#[napi(object, object_to_js = false)]
pub struct NodeOptions {
    /// The device's identity.
    pub identity: Reference<Identity>,
    /// The user (account) id.
    pub user_id: String,
    /// This device's id.
    pub device_id: String,
    /// Optional user display name (at most 128 characters).
    pub user_name: Option<String>,
    /// Optional device display name (at most 128 characters).
    pub device_name: Option<String>,
    /// Rates each verified peer during the handshake: return (or resolve to) a trust level;
    /// below 0 refuses the link. A throw or rejection refuses it too. Default: everyone at 0.
    #[napi(ts_type = "(device: DeviceInfo) => number | Promise<number>")]
    pub trust: Option<TrustFunction>,
    /// Default per-call timeout in milliseconds (default 30 000).
    pub call_timeout_ms: Option<f64>,
    /// Handshake deadline in milliseconds, trust decision included (default 10 000).
    pub handshake_timeout_ms: Option<f64>,
    /// Deadline for establishing a link in milliseconds (default 10 000).
    pub connect_timeout_ms: Option<f64>,
}

/// Options of `node.listen(addr, options)`.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct ListenOptions {
    /// Extra URLs this listener is reachable at (advertised and accepted as dialled address).
    pub advertised: Option<Vec<String>>,
}

fn millis(ms: Option<f64>, name: &str) -> Result<Option<Duration>, napi::Error<String>> {
    match ms {
        None => Ok(None),
        Some(ms) if ms.is_finite() && ms > 0.0 => Ok(Some(Duration::from_secs_f64(ms / 1000.0))),
        Some(_) => Err(sync_error(
            "invalid_argument",
            format!("{name} must be a positive number of milliseconds"),
        )),
    }
}

/// An event callback: `(connection) => void`, weak, its throws logged.
type ConnectionCallback = JsCallback<peerlink::Connection, Connection>;
type ClosedCallback = JsCallback<(f64, CloseInfo), napi::bindgen_prelude::FnArgs<(f64, CloseInfo)>>;

/// A peerlink node: one identity, its listeners and its connections.
#[napi]
pub struct Node {
    pub(crate) inner: peerlink::Node,
    trust: Option<Arc<JsTrust>>,
    exposed: Mutex<Vec<String>>,
    subscriptions: Mutex<Vec<AbortHandle>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn ignore_result(_: sys::napi_env, _: sys::napi_value) {}

fn log_failure(thrown: crate::bridge::Thrown) {
    tracing::warn!(message = %thrown.message, "an event callback failed");
}

#[napi]
impl Node {
    /// Creates a node.
    #[napi(constructor)]
    pub fn new(options: NodeOptions) -> Result<Self, napi::Error<String>> {
        let mut config = peerlink::NodeConfig::new(
            options.identity.inner.clone(),
            options.user_id,
            options.device_id,
        );
        config.user_name = options.user_name;
        config.device_name = options.device_name;
        if let Some(d) = millis(options.call_timeout_ms, "callTimeoutMs")? {
            config.call_timeout = d;
        }
        if let Some(d) = millis(options.handshake_timeout_ms, "handshakeTimeoutMs")? {
            config.handshake_timeout = d;
        }
        if let Some(d) = millis(options.connect_timeout_ms, "connectTimeoutMs")? {
            config.connect_timeout = d;
        }
        let trust = options.trust.map(|f| Arc::new(JsTrust::new(f)));
        if let Some(trust) = &trust {
            config.trust = Arc::clone(trust) as Arc<dyn peerlink::TrustPolicy>;
        }
        let inner = peerlink::Node::new(config).map_err(|e| sync_error(e.code(), e))?;
        Ok(Self {
            inner,
            trust,
            exposed: Mutex::new(Vec::new()),
            subscriptions: Mutex::new(Vec::new()),
        })
    }

    /// Same as `new Node(options)`.
    #[napi(factory)]
    pub fn create(options: NodeOptions) -> Result<Self, napi::Error<String>> {
        Self::new(options)
    }

    /// The device info this node presents (addresses = its listeners' URLs).
    #[napi(getter)]
    pub fn device_info(&self) -> DeviceInfo {
        DeviceInfo::from(&self.inner.device_info())
    }

    /// The node's public key, base64.
    #[napi(getter)]
    pub fn public_key(&self) -> String {
        self.inner.public_key().to_base64()
    }

    /// Whether `close()` was called.
    #[napi(getter)]
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Open connections.
    #[napi]
    pub fn connections(&self) -> Vec<Connection> {
        self.inner
            .connections()
            .into_iter()
            .map(Connection::from)
            .collect()
    }

    /// Starts a WebSocket listener on `addr` (for example `"127.0.0.1:0"`).
    #[napi(ts_return_type = "Promise<Listener>")]
    pub fn listen(
        &self,
        env: Env,
        addr: String,
        options: Option<ListenOptions>,
    ) -> napi::Result<sys::napi_value> {
        let node = self.inner.clone();
        let options = peerlink::ListenOptions {
            advertised: options.and_then(|o| o.advertised).unwrap_or_default(),
        };
        promise(&env, async move {
            let listener = node.listen_with(&addr, options).await?;
            Ok(Native(Listener { inner: listener }))
        })
    }

    /// Dials a `ws://` or `wss://` URL and runs the handshake.
    #[napi(ts_return_type = "Promise<Connection>")]
    pub fn dial(&self, env: Env, url: String) -> napi::Result<sys::napi_value> {
        let node = self.inner.clone();
        promise(&env, async move {
            let connection = node.dial(&url).await?;
            Ok(Native(Connection::from(connection)))
        })
    }

    /// The next connection accepted by a listener, or `null` once the node closed.
    #[napi(ts_return_type = "Promise<Connection | null>")]
    pub fn accept(&self, env: Env) -> napi::Result<sys::napi_value> {
        let node = self.inner.clone();
        promise(&env, async move {
            Ok::<_, Failure>(node.accept().await.map(|c| Native(Connection::from(c))))
        })
    }

    /// Registers `handler(args, ctx)` for `name` on every current and future connection.
    #[napi(ts_args_type = "name: string, handler: (args: any, ctx: RequestContext) => unknown")]
    pub fn expose(
        &self,
        name: String,
        handler_fn: Function<'_, Unknown<'static>, Unknown<'static>>,
    ) -> napi::Result<()> {
        self.inner.expose(
            name.clone(),
            handler(handler_callback(&handler_fn, false)?, false),
        );
        lock(&self.exposed).push(name);
        Ok(())
    }

    /// Registers a raw handler: it receives a `Buffer` and returns bytes (`callRaw`).
    #[napi(
        ts_args_type = "name: string, handler: (data: Buffer, ctx: RequestContext) => Uint8Array | Promise<Uint8Array>"
    )]
    pub fn expose_raw(
        &self,
        name: String,
        handler_fn: Function<'_, Unknown<'static>, Unknown<'static>>,
    ) -> napi::Result<()> {
        self.inner.expose(
            name.clone(),
            handler(handler_callback(&handler_fn, true)?, true),
        );
        lock(&self.exposed).push(name);
        Ok(())
    }

    /// Removes the node-wide handler for `name`.
    #[napi]
    pub fn unexpose(&self, name: String) {
        self.inner.unexpose(&name);
        lock(&self.exposed).retain(|n| *n != name);
    }

    /// Calls `callback(connection)` for every connection that finishes its handshake (dialled
    /// or accepted). Does not keep the process alive; released by `close()`.
    #[napi(ts_args_type = "callback: (connection: Connection) => void")]
    pub fn on_connection(
        &self,
        callback: Function<'_, Unknown<'static>, Unknown<'static>>,
    ) -> napi::Result<()> {
        let callback: ConnectionCallback = callback
            .build_threadsafe_function::<peerlink::Connection>()
            .callee_handled::<false>()
            .weak::<true>()
            .build_callback(|ctx| Ok(Connection::from(ctx.value)))?;
        let mut events = self.inner.events();
        let task = peerlink::runtime::handle().spawn(async move {
            loop {
                match events.recv().await {
                    Ok(peerlink::NodeEvent::Connected { connection }) => {
                        call_js(&callback, connection, ignore_result, log_failure).await;
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break,
                }
            }
        });
        lock(&self.subscriptions).push(task.abort_handle());
        Ok(())
    }

    /// Calls `callback(connectionId, reason)` whenever a connection closes.
    #[napi(ts_args_type = "callback: (connectionId: number, reason: CloseInfo) => void")]
    pub fn on_connection_closed(
        &self,
        callback: Function<'_, Unknown<'static>, Unknown<'static>>,
    ) -> napi::Result<()> {
        let callback: ClosedCallback = callback
            .build_threadsafe_function::<(f64, CloseInfo)>()
            .callee_handled::<false>()
            .weak::<true>()
            .build_callback(|ctx| Ok(napi::bindgen_prelude::FnArgs::from(ctx.value)))?;
        let mut events = self.inner.events();
        let task = peerlink::runtime::handle().spawn(async move {
            loop {
                match events.recv().await {
                    Ok(peerlink::NodeEvent::Closed {
                        connection_id,
                        reason,
                    }) => {
                        let data = (connection_id as f64, CloseInfo::from(&reason));
                        call_js(&callback, data, ignore_result, log_failure).await;
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break,
                }
            }
        });
        lock(&self.subscriptions).push(task.abort_handle());
        Ok(())
    }

    /// Closes every listener and connection (telling peers) and releases every JS callback
    /// (handlers, event callbacks, the trust callback).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self, env: Env) -> napi::Result<sys::napi_value> {
        for task in std::mem::take(&mut *lock(&self.subscriptions)) {
            task.abort();
        }
        for name in std::mem::take(&mut *lock(&self.exposed)) {
            self.inner.unexpose(&name);
        }
        if let Some(trust) = &self.trust {
            trust.release();
        }
        let node = self.inner.clone();
        promise(&env, async move {
            node.close().await;
            Ok(())
        })
    }

    /// `await using node = …` closes it.
    #[napi(well_known_symbol = "asyncDispose", ts_return_type = "Promise<void>")]
    pub fn async_dispose(&self, env: Env) -> napi::Result<sys::napi_value> {
        self.close(env)
    }
}

/// A WebSocket listener. Accepted connections arrive through `node.accept()` and
/// `node.onConnection`.
#[napi]
pub struct Listener {
    inner: peerlink::Listener,
}

#[napi]
impl Listener {
    /// The URL to dial, for example `ws://127.0.0.1:PORT`.
    #[napi(getter)]
    pub fn url(&self) -> String {
        self.inner.url()
    }

    /// The bound port.
    #[napi(getter)]
    pub fn port(&self) -> u32 {
        self.inner.local_addr().port() as u32
    }

    /// Every URL the handshake accepts as dialled address for this listener.
    #[napi(getter)]
    pub fn urls(&self) -> Vec<String> {
        self.inner.accepted_urls()
    }

    /// Stops accepting (established connections stay open).
    #[napi]
    pub fn close(&self) {
        self.inner.close();
    }

    /// `await using listener = …` closes it.
    #[napi(well_known_symbol = "asyncDispose", ts_return_type = "Promise<void>")]
    pub fn async_dispose(&self, env: Env) -> napi::Result<sys::napi_value> {
        self.inner.close();
        promise(&env, async { Ok(()) })
    }
}

impl std::fmt::Debug for NodeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeOptions")
            .field("user_id", &self.user_id)
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}
