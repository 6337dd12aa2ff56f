//! `Connection` and its byte streams.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use peerlink::{CallOptions, CloseReason, Role};

use crate::callbacks::{self, RpcHandler};
use crate::error::PeerlinkError;
use crate::identity::DeviceInfo;
use crate::task;

/// Why a connection closed.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CloseInfo {
    /// Stable code (`closed_locally`, `closed_by_peer`, `transport_closed`, `node_closed`…).
    pub code: String,
    /// Human-readable text.
    pub message: String,
}

impl From<&CloseReason> for CloseInfo {
    fn from(reason: &CloseReason) -> Self {
        Self {
            code: reason.code().to_owned(),
            message: reason.to_string(),
        }
    }
}

/// One end of a WebRTC link's selected candidate pair.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PathCandidate {
    /// `host`, `srflx`, `prflx` or `relay`.
    pub candidate_type: String,
    /// `udp` or `tcp`.
    pub protocol: String,
    /// The candidate's IP address (or mDNS name).
    pub address: String,
    /// The candidate's port.
    pub port: u16,
    /// For this side's relay candidate: how this device reaches the TURN server (`udp`,
    /// `tcp` or `tls`); the relayed side is UDP either way. Null for other candidates (host,
    /// srflx, prflx, the peer's) and when the engine does not say.
    pub relay_protocol: Option<String>,
}

/// Which path carries a connection: its kind always; for WebRTC also the selected candidate
/// pair, the round-trip time and counters.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct PathReport {
    /// The link kind (`websocket`, `webrtc`, `memory`, `relay`).
    pub kind: String,
    /// This side's candidate of the selected pair (WebRTC only).
    pub local: Option<PathCandidate>,
    /// The peer's candidate of the selected pair (WebRTC only).
    pub remote: Option<PathCandidate>,
    /// Latest round-trip time of the pair's ICE checks, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Bytes sent over the selected pair (0 where the transport does not count).
    pub bytes_sent: u64,
    /// Bytes received over the selected pair.
    pub bytes_received: u64,
    /// Datagrams sent over the selected pair.
    pub packets_sent: u64,
    /// Datagrams received over the selected pair.
    pub packets_received: u64,
    /// How often the selected pair changed (ICE restarts and re-nominations).
    pub selected_pair_changes: u32,
    /// ICE restarts this side started or asked for.
    pub ice_restarts: u32,
}

impl From<peerlink::PathCandidate> for PathCandidate {
    fn from(c: peerlink::PathCandidate) -> Self {
        Self {
            candidate_type: c.candidate_type,
            protocol: c.protocol,
            address: c.address,
            port: c.port,
            relay_protocol: c.relay_protocol,
        }
    }
}

impl From<peerlink::PathReport> for PathReport {
    fn from(r: peerlink::PathReport) -> Self {
        Self {
            kind: r.kind.as_str().to_owned(),
            local: r.local.map(PathCandidate::from),
            remote: r.remote.map(PathCandidate::from),
            rtt_ms: r.rtt_ms,
            bytes_sent: r.bytes_sent,
            bytes_received: r.bytes_received,
            packets_sent: r.packets_sent,
            packets_received: r.packets_received,
            selected_pair_changes: r.selected_pair_changes,
            ice_restarts: r.ice_restarts,
        }
    }
}

/// A verified connection to a remote device. Freeing the handle does not close the link (the
/// node keeps it); `close` does.
#[derive(Debug, uniffi::Object)]
pub struct Connection {
    inner: peerlink::Connection,
}

impl From<peerlink::Connection> for Connection {
    fn from(inner: peerlink::Connection) -> Self {
        Self { inner }
    }
}

#[uniffi::export]
impl Connection {
    /// Process-unique id of this connection.
    pub fn id(&self) -> u64 {
        self.inner.id()
    }

    /// The peer's verified device info.
    pub fn remote(&self) -> DeviceInfo {
        DeviceInfo::from(self.inner.remote())
    }

    /// The level the trust policy gave the peer.
    pub fn trust_level(&self) -> i32 {
        self.inner.trust_level().0
    }

    /// The link kind (`websocket`, `webrtc`, `memory`, `relay`).
    pub fn transport_kind(&self) -> String {
        self.inner.transport_kind().as_str().to_owned()
    }

    /// The path in use: the kind always; for WebRTC the selected candidate pair
    /// (host/srflx/prflx/relay, udp/tcp), its round-trip time and counters once ICE selected
    /// one. After a close, only the kind.
    pub async fn path(&self) -> PathReport {
        let connection = self.inner.clone();
        let kind = connection.transport_kind();
        task::run_infallible(
            async move { PathReport::from(connection.path().await) },
            PathReport::from(peerlink::PathReport::kind_only(kind)),
        )
        .await
    }

    /// `initiator` when this side dialled, `responder` when it accepted.
    pub fn role(&self) -> String {
        match self.inner.role() {
            Role::Initiator => "initiator".into(),
            Role::Responder => "responder".into(),
        }
    }

    /// Whether the connection is still open.
    pub fn is_open(&self) -> bool {
        self.inner.is_open()
    }

    /// Why the connection closed, or nothing while open.
    pub fn close_reason(&self) -> Option<CloseInfo> {
        self.inner.close_reason().as_ref().map(CloseInfo::from)
    }

    /// The Noise handshake hash: equal on both sides, unique per connection.
    pub fn handshake_hash(&self) -> Vec<u8> {
        self.inner.handshake_hash().to_vec()
    }

    /// Bytes queued for sending.
    pub fn queued_bytes(&self) -> u64 {
        self.inner.queued_bytes() as u64
    }

    /// Registers `handler` for `name` on this connection only (it wins over a node-wide
    /// handler of the same name). Released when the connection closes.
    pub fn expose(&self, name: String, handler: Arc<dyn RpcHandler>) {
        self.inner.expose(name, callbacks::handler(handler));
    }

    /// Removes this connection's handler for `name`.
    pub fn unexpose(&self, name: String) {
        self.inner.unexpose(&name);
    }

    /// Calls `name` on the peer with `args` and returns the handler's reply bytes.
    /// `timeout_ms` overrides the node's call timeout. Cancelling the caller cancels the call
    /// on both sides.
    #[uniffi::method(default(timeout_ms = None))]
    pub async fn call(
        &self,
        name: String,
        args: Vec<u8>,
        timeout_ms: Option<u64>,
    ) -> Result<Vec<u8>, PeerlinkError> {
        let connection = self.inner.clone();
        task::run(async move {
            let options = CallOptions {
                timeout: timeout_ms.map(Duration::from_millis),
            };
            let reply = connection
                .call_raw(&name, Bytes::from(args), options)
                .await?;
            Ok(reply.to_vec())
        })
        .await
    }

    /// Sends a one-way message; returns once it is queued.
    pub async fn notify(&self, name: String, args: Vec<u8>) -> Result<(), PeerlinkError> {
        let connection = self.inner.clone();
        task::run(async move { Ok(connection.notify_raw(&name, Bytes::from(args)).await?) }).await
    }

    /// Measures the round-trip time, in milliseconds.
    pub async fn ping(&self) -> Result<f64, PeerlinkError> {
        let connection = self.inner.clone();
        task::run(async move { Ok(connection.ping().await?.as_secs_f64() * 1000.0) }).await
    }

    /// Opens a byte stream named `name`; the peer receives it from `acceptStream`.
    pub async fn open_stream(&self, name: String) -> Result<Arc<SendStream>, PeerlinkError> {
        let connection = self.inner.clone();
        task::run(async move {
            let stream = connection.open_stream(&name).await?;
            Ok(Arc::new(SendStream::new(stream)))
        })
        .await
    }

    /// The next byte stream the peer opened, or nothing once the connection closed.
    pub async fn accept_stream(&self) -> Option<Arc<RecvStream>> {
        let connection = self.inner.clone();
        task::run_infallible(
            async move {
                connection
                    .accept_stream()
                    .await
                    .map(|s| Arc::new(RecvStream::new(s)))
            },
            None,
        )
        .await
    }

    /// Closes the connection, telling the peer `reason`. Pending calls fail with `Closed`.
    /// (Kotlin: `closeConnection`, since `close` belongs to `AutoCloseable`.)
    #[uniffi::method(default(reason = None))]
    pub async fn close(&self, reason: Option<String>) {
        let connection = self.inner.clone();
        let reason = reason.unwrap_or_else(|| "closed".into());
        task::run_infallible(async move { connection.close(&reason).await }, ()).await;
    }

    /// Waits until the connection closes and tells why.
    pub async fn closed(&self) -> CloseInfo {
        let connection = self.inner.clone();
        task::run_infallible(
            async move { CloseInfo::from(&connection.closed().await) },
            CloseInfo::from(&CloseReason::TransportClosed),
        )
        .await
    }
}

/// The writing half of a byte stream. `send` returns once the peer granted credit for the
/// bytes and they are queued: awaiting each send is the back-pressure. Freeing it before
/// `finish` resets the stream.
#[derive(Debug, uniffi::Object)]
pub struct SendStream {
    name: String,
    id: u64,
    inner: Arc<tokio::sync::Mutex<Option<peerlink::SendStream>>>,
}

impl SendStream {
    fn new(stream: peerlink::SendStream) -> Self {
        Self {
            name: stream.name().to_owned(),
            id: stream.id(),
            inner: Arc::new(tokio::sync::Mutex::new(Some(stream))),
        }
    }
}

fn stream_done() -> PeerlinkError {
    PeerlinkError::StreamReset {
        code: "stream_reset".into(),
        detail: "finished".into(),
    }
}

#[uniffi::export]
impl SendStream {
    /// The stream's name.
    pub fn name(&self) -> String {
        self.name.clone()
    }

    /// The stream id on its connection.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Sends `data`, waiting for the peer's credit as needed.
    pub async fn send(&self, data: Vec<u8>) -> Result<(), PeerlinkError> {
        let inner = Arc::clone(&self.inner);
        task::run(async move {
            let mut guard = inner.lock().await;
            let stream = guard.as_mut().ok_or_else(stream_done)?;
            Ok(stream.send(Bytes::from(data)).await?)
        })
        .await
    }

    /// Ends the stream; the reader sees the end after the last byte.
    pub async fn finish(&self) -> Result<(), PeerlinkError> {
        let inner = Arc::clone(&self.inner);
        task::run(async move {
            let stream = inner.lock().await.take().ok_or_else(stream_done)?;
            Ok(stream.finish().await?)
        })
        .await
    }

    /// Aborts the stream with `code`; the reader gets `StreamReset`.
    pub async fn reset(&self, code: String) {
        let inner = Arc::clone(&self.inner);
        task::run_infallible(
            async move {
                if let Some(stream) = inner.lock().await.take() {
                    stream.reset(&code);
                }
            },
            (),
        )
        .await;
    }
}

/// The reading half of a byte stream opened by the peer. Freeing it before the end resets
/// the stream.
#[derive(Debug, uniffi::Object)]
pub struct RecvStream {
    name: String,
    id: u64,
    inner: Arc<tokio::sync::Mutex<peerlink::RecvStream>>,
}

impl RecvStream {
    fn new(stream: peerlink::RecvStream) -> Self {
        Self {
            name: stream.name().to_owned(),
            id: stream.id(),
            inner: Arc::new(tokio::sync::Mutex::new(stream)),
        }
    }
}

#[uniffi::export]
impl RecvStream {
    /// The name the opener gave the stream.
    pub fn name(&self) -> String {
        self.name.clone()
    }

    /// The stream id on its connection.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The next chunk, or nothing at the end of the stream. Reading grants the sender more
    /// credit.
    pub async fn recv(&self) -> Result<Option<Vec<u8>>, PeerlinkError> {
        let inner = Arc::clone(&self.inner);
        task::run(async move {
            match inner.lock().await.recv().await {
                Some(Ok(chunk)) => Ok(Some(chunk.to_vec())),
                Some(Err(e)) => Err(e.into()),
                None => Ok(None),
            }
        })
        .await
    }

    /// Reads the rest of the stream into one buffer, failing past `limit` bytes.
    pub async fn read_to_end(&self, limit: u64) -> Result<Vec<u8>, PeerlinkError> {
        let inner = Arc::clone(&self.inner);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        task::run(async move { Ok(inner.lock().await.read_to_end(limit).await?) }).await
    }
}
