//! A verified connection: RPC, notifications, byte streams and pings over one link.
//!
//! A [`Connection`] is a cheap handle (an `Arc` inside). Three tasks drive it, all owned by the
//! runtime and all ended by a close: a reader (transport → wire → dispatch), a writer (wire
//! queue → transport, with back-pressure) and a timer (call deadlines from the core
//! [`Correlator`]). Messages are encoded in the caller's task; the writer only seals and sends.

mod driver;
mod stream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use peerlink_core::handshake::Role;
use peerlink_core::rpc::Correlator;
use peerlink_core::wire::{
    self, CompressionConfig, EncodedMessage, Envelope, Priority, WireSender,
};
use peerlink_core::{DeviceInfo, TrustLevel};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::AbortHandle;

pub(crate) use driver::{EstablishParams, establish, unix_ms};
pub use stream::{INITIAL_WINDOW as INITIAL_STREAM_WINDOW, RecvStream, SendStream};

use crate::error::{CloseReason, Error, RpcError};
use crate::handler::Handler;
use crate::transport::{PathProbe, PathReport, TransportKind};

/// Messages at least this large wait while the send queue holds [`BULK_QUEUE_LIMIT`] bytes.
const BULK_MESSAGE: usize = 64 << 10;
/// Queue level above which bulk messages wait (bounds memory held by fast producers).
const BULK_QUEUE_LIMIT: usize = 8 << 20;
/// How long a closing connection keeps sending what is queued (its Close notice first).
const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// How long a graceful close waits for the answers of calls already being handled to go out
/// before its Close notice (handlers still running then are aborted).
pub(crate) const CLOSE_DRAIN: Duration = Duration::from_secs(1);
/// How often a draining close looks at the send queue (handlers finishing wake it at once).
const DRAIN_POLL: Duration = Duration::from_millis(5);
/// Streams the peer may open before the application accepts them; more are refused.
const ACCEPT_BACKLOG: usize = 64;

/// How long each phase of setting up the connection took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timings {
    /// Establishing the link (TCP connect and WebSocket upgrade; zero for in-memory links).
    pub connect: Duration,
    /// The identity handshake (Noise XX, signatures, trust decision).
    pub handshake: Duration,
}

/// Per-call options for [`Connection::call_raw`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// Overrides the node's `call_timeout` for this call.
    pub timeout: Option<Duration>,
}

type CallWaiter = oneshot::Sender<Result<Bytes, RpcError>>;

pub(crate) struct State {
    pub(crate) wire: WireSender,
    pub(crate) calls: Correlator<CallWaiter>,
    pub(crate) inbound: HashMap<u64, AbortHandle>,
    pub(crate) notify_tasks: HashMap<u64, AbortHandle>,
    pub(crate) next_notify: u64,
    pub(crate) pings: HashMap<u64, oneshot::Sender<()>>,
    pub(crate) next_ping: u64,
    pub(crate) next_stream: u64,
    pub(crate) send_streams: HashMap<u64, Arc<stream::SendCredit>>,
    pub(crate) recv_streams: HashMap<u64, stream::RecvEntry>,
    pub(crate) incoming_streams: Option<mpsc::Sender<RecvStream>>,
    pub(crate) space_waiters: usize,
    pub(crate) closed: Option<CloseReason>,
    /// Whether the writer should still send what is queued after the close.
    pub(crate) linger: bool,
    /// A graceful close is under way: calls arriving now are not handled.
    pub(crate) draining: bool,
}

type OnClose = Box<dyn FnOnce(u64, CloseReason) + Send>;

pub(crate) struct Shared {
    pub(crate) id: u64,
    pub(crate) remote: DeviceInfo,
    pub(crate) trust_level: TrustLevel,
    pub(crate) kind: TransportKind,
    pub(crate) path_probe: Option<Arc<dyn PathProbe>>,
    pub(crate) role: Role,
    pub(crate) timings: Timings,
    pub(crate) handshake_hash: [u8; 32],
    pub(crate) compression: CompressionConfig,
    pub(crate) max_message_size: usize,
    pub(crate) stream_chunk: usize,
    pub(crate) call_timeout: Duration,
    pub(crate) state: Mutex<State>,
    pub(crate) writer_wake: Notify,
    pub(crate) space: Notify,
    pub(crate) timer_wake: Notify,
    /// Woken when an inbound call finishes (its answer queued, or dropped).
    pub(crate) answered: Notify,
    pub(crate) close_tx: watch::Sender<Option<CloseReason>>,
    pub(crate) writer_done: watch::Sender<bool>,
    pub(crate) handlers: RwLock<HashMap<String, Handler>>,
    pub(crate) node_handlers: Arc<RwLock<HashMap<String, Handler>>>,
    pub(crate) incoming_rx: tokio::sync::Mutex<mpsc::Receiver<RecvStream>>,
    pub(crate) tasks: Mutex<Vec<AbortHandle>>,
    pub(crate) on_close: Mutex<Option<OnClose>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("remote_device", &self.remote.device_id)
            .field("kind", &self.kind)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn closed_reason(&self) -> Option<CloseReason> {
        self.state().closed.clone()
    }

    pub(crate) fn encode(
        &self,
        envelope: &Envelope,
        body: &[u8],
    ) -> Result<EncodedMessage, RpcError> {
        let encoded =
            wire::encode_message_within(envelope, body, &self.compression, self.max_message_size)
                .map_err(|e| match e {
                peerlink_core::WireError::TooLarge { .. } => RpcError::TooLarge,
                other => RpcError::Encode(other.to_string()),
            })?;
        if encoded.bytes.len() > self.max_message_size {
            return Err(RpcError::TooLarge);
        }
        Ok(encoded)
    }

    /// Queues a small control message without waiting for queue space (callers are the
    /// reader and drop guards, which must not block). Dropped silently once closed.
    pub(crate) fn push_now(&self, envelope: &Envelope, body: &[u8], priority: Priority) {
        let Ok(encoded) = self.encode(envelope, body) else {
            return;
        };
        {
            let mut st = self.state();
            if st.closed.is_some() {
                return;
            }
            if st.wire.push_with_priority(encoded, priority).is_err() {
                return;
            }
        }
        self.writer_wake.notify_one();
    }

    /// Queues a message, waiting while the queue is over its limit (back-pressure).
    pub(crate) async fn push(
        &self,
        encoded: EncodedMessage,
        priority: Priority,
        still_wanted: impl Fn(&State) -> bool,
    ) -> Result<(), RpcError> {
        let len = encoded.bytes.len();
        // Small messages (RPC calls, replies) are never held behind bulk data: they are
        // bounded by the number of callers awaiting them, while bulk producers are not.
        let limit = if len >= BULK_MESSAGE {
            BULK_QUEUE_LIMIT
        } else {
            usize::MAX
        };
        let mut encoded = Some(encoded);
        // Each round either queues the message or waits for the writer to drain.
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.state();
                if let Some(reason) = &st.closed {
                    return Err(RpcError::Closed {
                        reason: reason.clone(),
                    });
                }
                if !still_wanted(&st) {
                    return Ok(());
                }
                if st.wire.queued_bytes() == 0 || st.wire.queued_bytes() + len <= limit {
                    let Some(message) = encoded.take() else {
                        return Ok(());
                    };
                    st.wire
                        .push_with_priority(message, priority)
                        .map_err(|_| RpcError::TooLarge)?;
                    break;
                }
                st.space_waiters += 1;
            }
            // Decrements the waiter count even if this future is dropped while waiting.
            struct Waiting<'a>(&'a Shared);
            impl Drop for Waiting<'_> {
                fn drop(&mut self) {
                    self.0.state().space_waiters -= 1;
                }
            }
            let _waiting = Waiting(self);
            notified.await;
        }
        self.writer_wake.notify_one();
        Ok(())
    }

    /// Closes the connection once: fails pending calls, aborts handlers and tasks, notifies
    /// waiters. `notice` is sent to the peer first (best effort, within [`CLOSE_LINGER`]).
    pub(crate) fn close_with(&self, reason: CloseReason, notice: Option<Envelope>) {
        let notice = notice.and_then(|n| self.encode(&n, &[]).ok());
        let (calls, pings, inbound, sends, recvs, incoming) = {
            let mut st = self.state();
            if st.closed.is_some() {
                return;
            }
            st.closed = Some(reason.clone());
            st.linger = notice.is_some();
            if let Some(notice) = notice {
                let _ = st.wire.push_with_priority(notice, Priority::High);
            }
            (
                st.calls.drain(),
                std::mem::take(&mut st.pings),
                std::mem::take(&mut st.inbound)
                    .into_values()
                    .chain(std::mem::take(&mut st.notify_tasks).into_values())
                    .collect::<Vec<_>>(),
                std::mem::take(&mut st.send_streams),
                std::mem::take(&mut st.recv_streams),
                st.incoming_streams.take(),
            )
        };
        tracing::debug!(connection = self.id, %reason, "connection closed");
        for (_, waiter) in calls {
            let _ = waiter.send(Err(RpcError::Closed {
                reason: reason.clone(),
            }));
        }
        drop(pings);
        for task in inbound {
            task.abort();
        }
        for (_, credit) in sends {
            credit.close(reason.clone());
        }
        for (_, entry) in recvs {
            let _ = entry.tx.send(Err(Error::Closed(reason.clone())));
        }
        drop(incoming);
        // Handlers may capture connection handles; dropping them breaks such cycles.
        lock_write(&self.handlers).clear();
        self.close_tx.send_replace(Some(reason.clone()));
        self.space.notify_waiters();
        self.writer_wake.notify_one();
        self.timer_wake.notify_one();
        let linger = self.state().linger;
        for (i, task) in lock(&self.tasks).iter().enumerate() {
            // Task 0 is the writer: it stays to send the close notice when lingering.
            if i > 0 || !linger {
                task.abort();
            }
        }
        if let Some(callback) = lock(&self.on_close).take() {
            callback(self.id, reason);
        }
    }

    /// The first half of a graceful close: stops handling new calls, then waits (at most
    /// [`CLOSE_DRAIN`]) until the calls already being handled have queued their answers and
    /// the writer has handed every queued call, answer and control message to the transport,
    /// so that the Close notice queued next cannot overtake them. A handler closing its own
    /// connection is not waited for (it would wait for itself).
    async fn drain(&self) {
        let own_call = CURRENT_CALL
            .try_with(|&(connection, call)| (connection == self.id).then_some(call))
            .ok()
            .flatten();
        {
            let mut st = self.state();
            if st.closed.is_some() {
                return;
            }
            st.draining = true;
        }
        let deadline = tokio::time::Instant::now() + CLOSE_DRAIN;
        // Each round re-checks; bounded by the deadline.
        loop {
            let answered = self.answered.notified();
            tokio::pin!(answered);
            answered.as_mut().enable();
            {
                let st = self.state();
                if st.closed.is_some() {
                    return;
                }
                let own = own_call.is_some_and(|id| st.inbound.contains_key(&id));
                let handling = st.inbound.len() - usize::from(own);
                if handling == 0 && st.wire.queued_messages_at_least(Priority::Normal) == 0 {
                    return;
                }
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                tracing::debug!(
                    connection = self.id,
                    "close: answers still pending after the drain"
                );
                return;
            }
            let _ = tokio::time::timeout_at(deadline.min(now + DRAIN_POLL), answered).await;
        }
    }

    pub(crate) fn handler(&self, name: &str) -> Option<Handler> {
        if let Some(h) = read(&self.handlers).get(name) {
            return Some(Arc::clone(h));
        }
        read(&self.node_handlers).get(name).map(Arc::clone)
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn lock_write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

tokio::task_local! {
    /// The inbound call a handler task is answering: (connection id, call id).
    pub(crate) static CURRENT_CALL: (u64, u64);
}

/// A verified connection to a remote device. Cheap to clone; all clones share the link.
#[derive(Debug, Clone)]
pub struct Connection {
    pub(crate) shared: Arc<Shared>,
}

/// Removes a pending call when its future is dropped, telling the peer to stop if the call
/// had been sent.
struct CallGuard<'a> {
    shared: &'a Shared,
    id: u64,
    sent: bool,
    done: bool,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let was_pending = self.shared.state().calls.cancel(self.id).is_some();
        if was_pending && self.sent {
            self.shared
                .push_now(&Envelope::Cancel { id: self.id }, &[], Priority::High);
        }
    }
}

impl Connection {
    /// Process-unique id of this connection.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The peer's verified device info.
    pub fn remote(&self) -> &DeviceInfo {
        &self.shared.remote
    }

    /// The level our trust policy gave the peer.
    pub fn trust_level(&self) -> TrustLevel {
        self.shared.trust_level
    }

    /// The link kind.
    pub fn transport_kind(&self) -> TransportKind {
        self.shared.kind
    }

    /// Which path carries the connection: its kind always; for WebRTC also the selected
    /// candidate pair (host/srflx/prflx/relay, udp/tcp), the round-trip time and byte counters
    /// once ICE selected a pair. After a close, or before a pair is selected, only the kind.
    pub async fn path(&self) -> PathReport {
        let probed = match &self.shared.path_probe {
            Some(probe) if self.is_open() => probe.path().await,
            _ => None,
        };
        probed.unwrap_or_else(|| PathReport::kind_only(self.shared.kind))
    }

    /// Whether this side dialled (initiator) or accepted (responder).
    pub fn role(&self) -> Role {
        self.shared.role
    }

    /// How long connecting and the handshake took.
    pub fn timings(&self) -> Timings {
        self.shared.timings
    }

    /// The Noise handshake hash: identical on both sides, unique per connection (channel
    /// binding for application protocols).
    pub fn handshake_hash(&self) -> [u8; 32] {
        self.shared.handshake_hash
    }

    /// Registers `handler` for `name` on this connection (it takes precedence over a node-wide
    /// handler of the same name).
    pub fn expose(&self, name: impl Into<String>, handler: Handler) {
        lock_write(&self.shared.handlers).insert(name.into(), handler);
    }

    /// Removes this connection's handler for `name`.
    pub fn unexpose(&self, name: &str) {
        lock_write(&self.shared.handlers).remove(name);
    }

    /// Calls `name` with MessagePack-encoded `args` and decodes the result.
    pub async fn call<A, R>(&self, name: &str, args: &A) -> Result<R, RpcError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let body = rmp_serde::to_vec_named(args).map_err(|e| RpcError::Encode(e.to_string()))?;
        let reply = self
            .call_raw(name, Bytes::from(body), CallOptions::default())
            .await?;
        rmp_serde::from_slice(&reply).map_err(|e| RpcError::Decode(e.to_string()))
    }

    /// Calls `name` with raw bytes. Dropping the future cancels the call: the peer is told
    /// and aborts its handler.
    pub async fn call_raw(
        &self,
        name: &str,
        body: Bytes,
        options: CallOptions,
    ) -> Result<Bytes, RpcError> {
        let shared = &*self.shared;
        let timeout = options.timeout.unwrap_or(shared.call_timeout);
        let (tx, rx) = oneshot::channel();
        let started = {
            let mut st = shared.state();
            if let Some(reason) = &st.closed {
                return Err(RpcError::Closed {
                    reason: reason.clone(),
                });
            }
            st.calls.start(tx, Instant::now().checked_add(timeout))
        };
        if started.rearm {
            shared.timer_wake.notify_one();
        }
        let id = started.id;
        let mut guard = CallGuard {
            shared,
            id,
            sent: false,
            done: false,
        };
        let encoded = shared.encode(
            &Envelope::Call {
                id,
                name: name.to_owned(),
            },
            &body,
        )?;
        drop(body);
        shared
            .push(encoded, Priority::Normal, |st| st.calls.contains(id))
            .await?;
        guard.sent = true;
        let result = rx.await;
        guard.done = true;
        match result {
            Ok(result) => result,
            // The waiter left without an answer: only a close does that.
            Err(_) => Err(RpcError::Closed {
                reason: shared
                    .closed_reason()
                    .unwrap_or(CloseReason::TransportClosed),
            }),
        }
    }

    /// Sends a one-way message; the peer's handler result is discarded.
    pub async fn notify<A: Serialize + ?Sized>(
        &self,
        name: &str,
        args: &A,
    ) -> Result<(), RpcError> {
        let body = rmp_serde::to_vec_named(args).map_err(|e| RpcError::Encode(e.to_string()))?;
        self.notify_raw(name, Bytes::from(body)).await
    }

    /// Sends a one-way message with raw bytes.
    pub async fn notify_raw(&self, name: &str, body: Bytes) -> Result<(), RpcError> {
        let encoded = self.shared.encode(
            &Envelope::Notify {
                name: name.to_owned(),
            },
            &body,
        )?;
        self.shared.push(encoded, Priority::Normal, |_| true).await
    }

    /// Measures the round-trip time with a ping.
    pub async fn ping(&self) -> Result<Duration, RpcError> {
        let shared = &*self.shared;
        let (tx, rx) = oneshot::channel();
        let nonce = {
            let mut st = shared.state();
            if let Some(reason) = &st.closed {
                return Err(RpcError::Closed {
                    reason: reason.clone(),
                });
            }
            st.next_ping += 1;
            let nonce = st.next_ping;
            st.pings.insert(nonce, tx);
            nonce
        };
        let start = Instant::now();
        shared.push_now(&Envelope::Ping { nonce }, &[], Priority::High);
        let outcome = tokio::time::timeout(shared.call_timeout, rx).await;
        match outcome {
            Ok(Ok(())) => Ok(start.elapsed()),
            Ok(Err(_)) => Err(RpcError::Closed {
                reason: shared
                    .closed_reason()
                    .unwrap_or(CloseReason::TransportClosed),
            }),
            Err(_) => {
                shared.state().pings.remove(&nonce);
                Err(RpcError::Timeout)
            }
        }
    }

    /// Opens a byte stream named `name` towards the peer, who receives it from
    /// [`Connection::accept_stream`].
    pub async fn open_stream(&self, name: &str) -> Result<SendStream, Error> {
        stream::open(&self.shared, name).await
    }

    /// The next byte stream the peer opened, or `None` once the connection closed.
    pub async fn accept_stream(&self) -> Option<RecvStream> {
        self.shared.incoming_rx.lock().await.recv().await
    }

    /// Bytes queued for sending and not yet handed to the transport.
    pub fn queued_bytes(&self) -> usize {
        self.shared.state().wire.queued_bytes()
    }

    /// Whether the connection is still open.
    pub fn is_open(&self) -> bool {
        self.shared.state().closed.is_none()
    }

    /// Closes the connection, telling the peer `reason`. Answers to calls the peer made that
    /// are already being handled go out first (handlers get up to one second to finish; calls
    /// arriving meanwhile are not handled). Then pending calls fail with [`RpcError::Closed`].
    /// Returns once the link is shut (bounded by a short linger).
    pub async fn close(&self, reason: &str) {
        self.close_with_reason(
            CloseReason::Local {
                message: reason.to_owned(),
            },
            Envelope::Close {
                code: "normal".into(),
                message: reason.to_owned(),
            },
        )
        .await;
    }

    pub(crate) async fn close_with_reason(&self, reason: CloseReason, notice: Envelope) {
        self.shared.drain().await;
        self.shared.close_with(reason, Some(notice));
        let mut done = self.shared.writer_done.subscribe();
        let _ = tokio::time::timeout(CLOSE_LINGER * 2, done.wait_for(|d| *d)).await;
    }

    /// Waits until the connection closes and tells why.
    pub async fn closed(&self) -> CloseReason {
        let mut rx = self.shared.close_tx.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or(CloseReason::TransportClosed),
            Err(_) => CloseReason::TransportClosed,
        }
    }

    /// Why the connection closed, if it did.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.shared.closed_reason()
    }
}

impl PartialEq for Connection {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Eq for Connection {}
