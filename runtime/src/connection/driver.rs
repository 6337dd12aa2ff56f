//! Drives a link from handshake to close: the handshake loop, then the reader, writer and
//! timer tasks of an established connection. All protocol decisions are in `peerlink-core`;
//! this file only moves bytes, time and trust answers between it and the transport.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::FutureExt;
use peerlink_core::handshake::{Established, Handshake, HandshakeError, HandshakeOutput};
use peerlink_core::rpc::Correlator;
use peerlink_core::wire::{
    self, EncodedMessage, Envelope, Priority, RECORD_OVERHEAD, WireConfig, WireReceiver,
};
use tokio::sync::{Notify, mpsc, watch};

use super::{
    ACCEPT_BACKLOG, CLOSE_LINGER, CURRENT_CALL, Connection, OnClose, Shared, State, Timings, lock,
};
use crate::error::{CloseReason, Error, RpcError, TransportError, wire_code};
use crate::handler::{Handler, HandlerError, Request};
use crate::transport::{Transport, TransportReceiver, TransportSender};
use crate::trust::TrustPolicy;

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// Room left in a record for the frame and envelope headers of a stream chunk.
const STREAM_CHUNK_HEADROOM: usize = 128;

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Everything needed to run a link once its transport exists.
pub(crate) struct EstablishParams {
    pub(crate) handshake: Handshake,
    pub(crate) trust: Arc<dyn TrustPolicy>,
    pub(crate) wire: WireConfig,
    pub(crate) call_timeout: Duration,
    pub(crate) connect_time: Duration,
    pub(crate) node_handlers: Arc<RwLock<HashMap<String, Handler>>>,
    pub(crate) on_close: OnClose,
}

/// Runs the handshake over `transport` and, on success, starts the connection's tasks.
pub(crate) async fn establish(
    transport: Box<dyn Transport>,
    params: EstablishParams,
) -> Result<Connection, Error> {
    let kind = transport.kind();
    let path_probe = transport.path_probe();
    let link_max = transport.max_message_size();
    let (mut tx, mut rx) = transport.split();
    let started = Instant::now();
    let mut handshake = params.handshake;
    let role = handshake.role();
    let established = match run_handshake(&mut handshake, &*params.trust, &mut *tx, &mut *rx).await
    {
        Ok(established) => established,
        Err(e) => {
            let _ = tokio::time::timeout(CLOSE_LINGER, tx.close()).await;
            return Err(Error::Handshake(e));
        }
    };
    let handshake_time = started.elapsed();
    let Established {
        remote,
        trust_level,
        keys,
        handshake_hash,
        ..
    } = *established;

    let mut wire_config = params.wire;
    wire_config.max_record_size = wire_config.max_record_size.min(link_max);
    let max_message_size = wire_config.max_message_size;
    let stream_chunk = wire_config
        .max_record_size
        .saturating_sub(RECORD_OVERHEAD + STREAM_CHUNK_HEADROOM)
        .max(1);
    let compression = wire_config.compression.clone();
    let (wire_tx, wire_rx) = wire::session(&keys, wire_config);
    drop(keys);

    let (incoming_tx, incoming_rx) = mpsc::channel(ACCEPT_BACKLOG);
    let shared = Arc::new(Shared {
        id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
        remote: remote.info,
        trust_level,
        kind,
        path_probe,
        role,
        timings: Timings {
            connect: params.connect_time,
            handshake: handshake_time,
        },
        handshake_hash,
        compression,
        max_message_size,
        stream_chunk,
        call_timeout: params.call_timeout,
        state: Mutex::new(State {
            wire: wire_tx,
            calls: Correlator::new(),
            inbound: HashMap::new(),
            notify_tasks: HashMap::new(),
            next_notify: 0,
            pings: HashMap::new(),
            next_ping: 0,
            next_stream: 0,
            send_streams: HashMap::new(),
            recv_streams: HashMap::new(),
            incoming_streams: Some(incoming_tx),
            space_waiters: 0,
            closed: None,
            linger: false,
            draining: false,
        }),
        writer_wake: Notify::new(),
        space: Notify::new(),
        timer_wake: Notify::new(),
        answered: Notify::new(),
        close_tx: watch::channel(None).0,
        writer_done: watch::channel(false).0,
        handlers: RwLock::new(HashMap::new()),
        node_handlers: params.node_handlers,
        incoming_rx: tokio::sync::Mutex::new(incoming_rx),
        tasks: Mutex::new(Vec::new()),
        on_close: Mutex::new(Some(params.on_close)),
    });

    // The writer is task 0 (see `Shared::close_with`).
    let writer = tokio::spawn(writer_task(Arc::clone(&shared), tx));
    let reader = tokio::spawn(reader_task(Arc::clone(&shared), rx, wire_rx));
    let timer = tokio::spawn(timer_task(Arc::clone(&shared)));
    {
        let mut tasks = lock(&shared.tasks);
        tasks.push(writer.abort_handle());
        tasks.push(reader.abort_handle());
        tasks.push(timer.abort_handle());
    }
    if shared.state().closed.is_some() {
        // Closed before the handles were stored: stop the tasks now.
        for task in lock(&shared.tasks).iter().skip(1) {
            task.abort();
        }
    }
    Ok(Connection { shared })
}

async fn run_handshake(
    hs: &mut Handshake,
    trust: &dyn TrustPolicy,
    tx: &mut dyn TransportSender,
    rx: &mut dyn TransportReceiver,
) -> Result<Box<Established>, HandshakeError> {
    // Each round either handles outputs or feeds one input/timeout; the handshake deadline
    // (enforced by the state machine) bounds the number of rounds.
    loop {
        let mut done = None;
        while let Some(output) = hs.poll_output() {
            match output {
                HandshakeOutput::Transmit(bytes) => {
                    let deadline = hs.poll_timeout().map(tokio::time::Instant::from_std);
                    let send = tx.send(Bytes::from(bytes));
                    let sent = match deadline {
                        Some(at) => tokio::time::timeout_at(at, send).await.ok(),
                        None => Some(send.await),
                    };
                    match sent {
                        Some(Ok(())) => {}
                        // Already failed: the peer may be gone; the error is what matters.
                        Some(Err(_)) if done.is_some() => {}
                        Some(Err(_)) => hs.handle_transport_closed(),
                        None => hs.handle_timeout(Instant::now()),
                    }
                }
                HandshakeOutput::TrustRequired(info) => {
                    let decision = trust.trust_level(&info);
                    let level = match hs.poll_timeout() {
                        Some(at) => {
                            tokio::time::timeout_at(tokio::time::Instant::from_std(at), decision)
                                .await
                                .ok()
                        }
                        None => Some(decision.await),
                    };
                    match level {
                        Some(level) => hs.set_trust_level(level, Instant::now()),
                        None => hs.handle_timeout(Instant::now()),
                    }
                }
                HandshakeOutput::Complete(established) => done = Some(Ok(established)),
                HandshakeOutput::Failed(error) => done = Some(Err(error)),
                _ => {}
            }
        }
        if let Some(result) = done {
            return result;
        }
        let deadline = hs.poll_timeout().map(tokio::time::Instant::from_std);
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            message = rx.recv() => match message {
                Ok(Some(bytes)) => {
                    // Failures also come out of `poll_output` as `Failed`.
                    let _ = hs.handle_input(&bytes, Instant::now(), unix_ms());
                }
                Ok(None) | Err(_) => hs.handle_transport_closed(),
            },
            () = sleep => hs.handle_timeout(Instant::now()),
        }
    }
}

/// Marks the writer finished however it ends (returned or aborted), so `close` never waits
/// for a writer that is gone.
struct WriterDone(Arc<Shared>);

impl Drop for WriterDone {
    fn drop(&mut self) {
        self.0.writer_done.send_replace(true);
    }
}

async fn writer_task(shared: Arc<Shared>, mut tx: Box<dyn TransportSender>) {
    let done = WriterDone(Arc::clone(&shared));
    let mut unflushed = false;
    let mut linger_until: Option<tokio::time::Instant> = None;
    // Runs until the connection closes; each round sends one record or waits for work.
    let result: Result<(), TransportError> = async {
        loop {
            let (record, closing) = {
                let mut st = shared.state();
                if st.closed.is_some() && !st.linger {
                    return Ok(());
                }
                let record = st.wire.poll_transmit();
                if st.space_waiters > 0 && st.wire.queued_bytes() < super::BULK_QUEUE_LIMIT {
                    shared.space.notify_waiters();
                }
                (record, st.closed.is_some())
            };
            if closing && linger_until.is_none() {
                linger_until = Some(tokio::time::Instant::now() + CLOSE_LINGER);
            }
            match record {
                Some(record) => {
                    let feed = tx.feed(Bytes::from(record));
                    match linger_until {
                        Some(at) => tokio::time::timeout_at(at, feed)
                            .await
                            .map_err(|_| TransportError::Timeout)??,
                        None => feed.await?,
                    }
                    unflushed = true;
                }
                None if unflushed => {
                    unflushed = false;
                    match linger_until {
                        Some(at) => tokio::time::timeout_at(at, tx.flush())
                            .await
                            .map_err(|_| TransportError::Timeout)??,
                        None => tx.flush().await?,
                    }
                }
                None if closing => return Ok(()),
                None => shared.writer_wake.notified().await,
            }
        }
    }
    .await;
    if let Err(e) = result {
        shared.close_with(CloseReason::Transport(e), None);
    }
    let _ = tokio::time::timeout(CLOSE_LINGER, tx.close()).await;
    drop(tx);
    drop(done);
}

async fn reader_task(
    shared: Arc<Shared>,
    mut rx: Box<dyn TransportReceiver>,
    mut wire_rx: WireReceiver,
) {
    // Runs until the link ends or breaks the protocol; each round handles one record.
    loop {
        let record = match rx.recv().await {
            Ok(Some(record)) => record,
            Ok(None) => return shared.close_with(CloseReason::TransportClosed, None),
            Err(e) => return shared.close_with(CloseReason::Transport(e), None),
        };
        let message = match wire_rx.handle_record(&record) {
            Ok(Some(message)) => message,
            Ok(None) => continue,
            Err(e) => return violation(&shared, CloseReason::Wire(e)),
        };
        drop(record);
        if let Err(reason) = dispatch(&shared, message) {
            return violation(&shared, reason);
        }
    }
}

fn violation(shared: &Shared, reason: CloseReason) {
    let code = match &reason {
        CloseReason::Wire(e) => wire_code(e).to_owned(),
        other => other.code().to_owned(),
    };
    let notice = Envelope::Close {
        code,
        message: reason.to_string(),
    };
    shared.close_with(reason, Some(notice));
}

fn dispatch(shared: &Arc<Shared>, message: EncodedMessage) -> Result<(), CloseReason> {
    let (envelope, body) =
        wire::decode_message(message, shared.max_message_size).map_err(CloseReason::Wire)?;
    match envelope {
        Envelope::Call { id, name } => on_call(shared, Some(id), name, body),
        Envelope::Notify { name } => on_call(shared, None, name, body),
        Envelope::Reply { id } => {
            let waiter = shared.state().calls.complete(id);
            if let Some(waiter) = waiter {
                let _ = waiter.send(Ok(body));
            }
        }
        Envelope::Error { id, code, message } => {
            let waiter = shared.state().calls.complete(id);
            if let Some(waiter) = waiter {
                let _ = waiter.send(Err(remote_error(code, message)));
            }
        }
        Envelope::Cancel { id } => {
            let task = shared.state().inbound.remove(&id);
            if let Some(task) = task {
                task.abort();
                shared.answered.notify_waiters();
            }
        }
        Envelope::StreamOpen { id, name } => {
            shared
                .on_stream_open(id, name)
                .map_err(CloseReason::Protocol)?;
        }
        Envelope::StreamData { id } => {
            shared
                .on_stream_data(id, body)
                .map_err(CloseReason::Protocol)?;
        }
        Envelope::StreamCredit { id, bytes } => shared.on_stream_credit(id, bytes),
        Envelope::StreamEnd { id } => shared.on_stream_end(id),
        Envelope::StreamReset { id, code } => shared.on_stream_reset(id, code),
        Envelope::Ping { nonce } => shared.push_now(&Envelope::Pong { nonce }, &[], Priority::High),
        Envelope::Pong { nonce } => {
            let waiter = shared.state().pings.remove(&nonce);
            if let Some(waiter) = waiter {
                let _ = waiter.send(());
            }
        }
        Envelope::Close { code, message } => {
            shared.close_with(CloseReason::Remote { code, message }, None);
        }
        // Envelopes from a newer peer that this version does not know are skipped.
        _ => {}
    }
    Ok(())
}

/// Maps a wire `Error` envelope to the caller's error. Codes the runtime itself emits are
/// reserved; any other code is the handler's own.
fn remote_error(code: String, message: String) -> RpcError {
    match code.as_str() {
        "no_handler" => RpcError::NoHandler { name: message },
        "cancelled" => RpcError::Cancelled,
        "too_large" => RpcError::TooLarge,
        _ => RpcError::Remote { code, message },
    }
}

fn on_call(shared: &Arc<Shared>, id: Option<u64>, name: String, body: Bytes) {
    if shared.state().draining {
        // Closing: the Close notice that follows fails the peer's call.
        return;
    }
    let Some(handler) = shared.handler(&name) else {
        if let Some(id) = id {
            let envelope = Envelope::Error {
                id,
                code: "no_handler".into(),
                message: name,
            };
            shared.push_now(&envelope, &[], Priority::Normal);
        } else {
            tracing::debug!(
                connection = shared.id,
                name,
                "notification without handler dropped"
            );
        }
        return;
    };
    let request = Request {
        name,
        body,
        connection: Connection {
            shared: Arc::clone(shared),
        },
        is_notify: id.is_none(),
    };
    let future = AssertUnwindSafe(handler(request)).catch_unwind();
    let Some(id) = id else {
        let task_shared = Arc::clone(shared);
        let mut st = shared.state();
        if st.closed.is_some() {
            return;
        }
        st.next_notify += 1;
        let key = st.next_notify;
        let task = tokio::spawn(async move {
            if let Ok(Err(e)) = future.await {
                tracing::debug!(%e, "notification handler failed");
            }
            task_shared.state().notify_tasks.remove(&key);
        });
        st.notify_tasks.insert(key, task.abort_handle());
        return;
    };
    let task_shared = Arc::clone(shared);
    let mut st = shared.state();
    if st.closed.is_some() || st.draining {
        return;
    }
    let current = (shared.id, id);
    // Spawned under the lock so the task cannot finish (and remove its entry) before the
    // entry exists.
    let task = tokio::spawn(CURRENT_CALL.scope(current, async move {
        let answering = Answering {
            shared: &task_shared,
            id,
        };
        let outcome = future.await;
        finish_call(&task_shared, id, outcome).await;
        drop(answering);
    }));
    st.inbound.insert(id, task.abort_handle());
}

/// Removes an inbound call's entry once its answer is queued (or the task ends any other
/// way), and wakes a draining close.
struct Answering<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        self.shared.state().inbound.remove(&self.id);
        self.shared.answered.notify_waiters();
    }
}

/// Queues the answer of inbound call `id`. Its `inbound` entry stays until the answer is
/// queued, so a draining close waits for it.
async fn finish_call(
    shared: &Shared,
    id: u64,
    outcome: std::thread::Result<Result<Bytes, HandlerError>>,
) {
    if !shared.state().inbound.contains_key(&id) {
        // Cancelled or closed meanwhile: nobody waits for the answer.
        return;
    }
    let encoded = match outcome {
        Ok(Ok(result)) => match shared.encode(&Envelope::Reply { id }, &result) {
            Ok(encoded) => Ok(encoded),
            Err(RpcError::TooLarge) => Err(("too_large".to_owned(), "result too large".to_owned())),
            Err(e) => Err(("encode".to_owned(), e.to_string())),
        },
        Ok(Err(e)) => Err((e.code, e.message)),
        Err(_) => Err((
            "handler_panicked".to_owned(),
            "the handler panicked".to_owned(),
        )),
    };
    let encoded = match encoded {
        Ok(encoded) => encoded,
        Err((code, message)) => match shared.encode(&Envelope::Error { id, code, message }, &[]) {
            Ok(encoded) => encoded,
            Err(_) => return,
        },
    };
    // Skipped if cancelled while waiting for queue space.
    let _ = shared
        .push(encoded, Priority::Normal, |st| st.inbound.contains_key(&id))
        .await;
}

async fn timer_task(shared: Arc<Shared>) {
    // Runs until the connection closes; each round expires due calls or waits for a re-arm.
    loop {
        let next = {
            let mut st = shared.state();
            if st.closed.is_some() {
                return;
            }
            st.calls.poll_timeout()
        };
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
                    () = shared.timer_wake.notified() => continue,
                }
            }
            None => {
                shared.timer_wake.notified().await;
                continue;
            }
        }
        let expired = shared.state().calls.expire(Instant::now());
        for (id, waiter) in expired {
            let _ = waiter.send(Err(RpcError::Timeout));
            // The callee may still be working on it: tell it to stop.
            shared.push_now(&Envelope::Cancel { id }, &[], Priority::High);
        }
    }
}
