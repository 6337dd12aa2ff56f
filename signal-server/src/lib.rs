//! The peerlink signaling and relay server.
//!
//! Clients connect over WebSocket to `/ws`, prove their Ed25519 identity by signing a fresh
//! challenge, join rooms and see who else is there, send signals (WebRTC offers, answers,
//! candidates — any JSON) to a device id with `from` stamped by the server, fetch TURN
//! credentials, and, when no direct path exists, relay opaque binary frames through the
//! server. `/healthz` answers `ok`, `/metrics` serves Prometheus text, `/` serves the browser
//! lobby. With a Redis URL several instances share presence and routing.
//!
//! The protocol is specified in `docs/protocol/signaling.md`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), peerlink_signal_server::ServerError> {
//! use peerlink_signal_server::{Server, ServerConfig};
//! let server = Server::bind("127.0.0.1:0", ServerConfig::default()).await?;
//! println!("clients connect to {}", server.ws_url());
//! server.shutdown().await;
//! # Ok(()) }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod auth;
pub mod cli;
mod config;
#[doc(hidden)]
pub mod fuzzing;
mod hub;
mod lobby;
mod metrics;
pub mod protocol;
mod queue;
mod rate;
mod redis_backplane;
mod session;
mod turn;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;

pub use auth::mint_token;
pub use config::{Admission, Rate, ServerConfig, TurnConfig};
pub use metrics::Metrics;
pub use protocol::{ErrorCode, Member};
pub use redis_backplane::BackplaneError;
pub use session::{CLOSE_PROTOCOL_ERROR, CLOSE_SERVICE_RESTART};
pub use turn::{TurnCredentials, turn_credentials};

/// Header room added to the WebSocket message limit above the relay payload limit, so a
/// full-size payload with its device-id header fits.
const FRAME_HEADROOM: usize = 3 + protocol::MAX_ID_BYTES;
/// WebSocket read buffer per connection. It is allocated up front and kept for the
/// connection's life, so it dominates an idle client's memory: 1 KiB holds several signals
/// per read, and larger messages grow the buffer only while they are read.
const READ_BUFFER: usize = 1024;
/// Outgoing frames are collected up to this many bytes before a write; a session flushes
/// after each batch of queued messages, so a batch costs one system call, not one per message.
const WRITE_BUFFER: usize = 16 << 10;
/// How long [`Server::shutdown`] waits for clients to take their `reconnect` message.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Errors starting a server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Binding the listening socket failed.
    #[error("cannot listen: {0}")]
    Bind(#[from] std::io::Error),
    /// The Redis backplane could not be set up.
    #[error(transparent)]
    Backplane(#[from] BackplaneError),
}

/// A running server. Dropping it without [`Server::shutdown`] stops accepting but leaves
/// sessions to end on their own.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    hub: Arc<hub::Hub>,
    shutdown_tx: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Binds `addr` and starts serving.
    pub async fn bind(addr: &str, config: ServerConfig) -> Result<Server, ServerError> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Self::serve(listener, config).await
    }

    /// Serves on an already bound listener.
    pub async fn serve(
        listener: tokio::net::TcpListener,
        config: ServerConfig,
    ) -> Result<Server, ServerError> {
        let addr = listener.local_addr()?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let backplane = match &config.redis_url {
            Some(url) => Some(redis_backplane::Backplane::connect(url).await?),
            None => None,
        };
        let redis_url = config.redis_url.clone();
        let hub = Arc::new(hub::Hub::new(
            config,
            Arc::new(Metrics::default()),
            shutdown_rx.clone(),
            backplane.clone(),
        ));
        if let (Some(bp), Some(url)) = (&backplane, &redis_url) {
            bp.start(url, Arc::downgrade(&hub)).await?;
        }
        let app = router(Arc::clone(&hub));
        let mut stop = shutdown_rx;
        let task = tokio::spawn(async move {
            let serve = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "server stopped");
            }
        });
        tracing::info!(%addr, redis = redis_url.is_some(), "signaling server listening");
        Ok(Server {
            addr,
            hub,
            shutdown_tx,
            task,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The WebSocket URL clients connect to, for example `ws://127.0.0.1:PORT/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// The HTTP base URL, for example `http://127.0.0.1:PORT`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server's counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.hub.metrics)
    }

    /// Tells every client to reconnect (a `reconnect` message, then close code 1012), waits
    /// up to 5 s for the sessions to end, and stops accepting.
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        // Bounded by the deadline; polls the session gauge.
        while self.hub.metrics.connections_open() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(bp) = &self.hub.backplane {
            bp.stop().await;
        }
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.task).await;
        tracing::info!(addr = %self.addr, "signaling server stopped");
    }

    /// Stops at once without telling clients (simulates a crash in tests): the listener and
    /// every session are dropped.
    pub fn abort(self) {
        self.task.abort();
        let _ = self.shutdown_tx.send(true);
        if let Some(bp) = &self.hub.backplane {
            bp.abort();
        }
    }
}

fn router(hub: Arc<hub::Hub>) -> Router {
    let mut app = Router::new()
        .route("/ws", get(ws_handler))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_handler));
    if hub.config.lobby {
        app = app.route("/", get(lobby::page));
    }
    app.with_state(hub)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics_handler(State(hub): State<Arc<hub::Hub>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        hub.metrics.render(),
    )
        .into_response()
}

async fn ws_handler(
    State(hub): State<Arc<hub::Hub>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if *hub.shutdown.borrow() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    let limit = hub
        .config
        .max_text_bytes
        .max(hub.config.max_relay_payload + FRAME_HEADROOM);
    // Messages between the protocol limit and twice it get a `too_large` reply; beyond that
    // the WebSocket layer refuses them and closes with 1009.
    ws.max_message_size(limit.saturating_mul(2))
        .max_frame_size(limit.saturating_mul(2))
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .on_upgrade(move |socket| session::run_session(hub, socket, peer.ip(), host))
}
