//! One-way byte streams with credit-based flow control.
//!
//! The opener sends `StreamOpen`, then `StreamData` chunks, then `StreamEnd`; the receiver
//! grants credit with `StreamCredit` as the application consumes data. The sender starts with
//! [`INITIAL_WINDOW`] bytes of credit and never sends beyond what it was granted, so the
//! receiver buffers at most one window per stream and the sender's queue holds at most one
//! window too. Either side aborts with `StreamReset`.
//!
//! Ids: the initiator opens odd ids, the responder even ones, so an id names one stream on
//! the connection whichever side opened it. Open, data, end and sender resets travel at low
//! priority and fit one record each, so they arrive in order; credits and receiver resets
//! travel at high priority.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use peerlink_core::handshake::Role;
use peerlink_core::wire::{Envelope, Priority};
use tokio::sync::{Notify, mpsc};

use super::Shared;
use crate::error::{CloseReason, Error, RpcError};

/// Credit a new stream starts with, and the most a receiver buffers per stream.
pub const INITIAL_WINDOW: u64 = 4 << 20;

/// Consumed bytes that trigger a credit grant (batched to save messages).
const CREDIT_BATCH: u64 = INITIAL_WINDOW / 4;

#[derive(Debug, Default)]
struct CreditState {
    available: u64,
    reset: Option<String>,
    closed: Option<CloseReason>,
}

/// The sending side's view of a stream's credit.
#[derive(Debug, Default)]
pub(crate) struct SendCredit {
    state: Mutex<CreditState>,
    notify: Notify,
}

impl SendCredit {
    fn lock(&self) -> std::sync::MutexGuard<'_, CreditState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn grant(&self, bytes: u64) {
        let mut st = self.lock();
        st.available = st.available.saturating_add(bytes);
        drop(st);
        self.notify.notify_one();
    }

    pub(crate) fn reset(&self, code: String) {
        self.lock().reset.get_or_insert(code);
        self.notify.notify_one();
    }

    pub(crate) fn close(&self, reason: CloseReason) {
        self.lock().closed.get_or_insert(reason);
        self.notify.notify_one();
    }
}

/// The receiving side's bookkeeping for a stream the peer opened.
#[derive(Debug)]
pub(crate) struct RecvEntry {
    pub(crate) tx: mpsc::UnboundedSender<Result<Bytes, Error>>,
    /// Bytes received so far.
    received: u64,
    /// Total credit granted so far (initial window included).
    granted: u64,
    buffered: Arc<AtomicUsize>,
}

fn stream_reset(reason: &str) -> Envelope {
    Envelope::StreamReset {
        id: 0,
        code: reason.to_owned(),
    }
}

/// Writing half of a byte stream. Dropping it before [`SendStream::finish`] resets the stream.
#[derive(Debug)]
pub struct SendStream {
    shared: Weak<Shared>,
    id: u64,
    name: String,
    credit: Arc<SendCredit>,
    chunk: usize,
    finished: bool,
}

/// Reading half of a byte stream opened by the peer. Dropping it before the end resets the
/// stream (the sender sees [`Error::StreamReset`] with code `cancelled`).
#[derive(Debug)]
pub struct RecvStream {
    shared: Weak<Shared>,
    id: u64,
    name: String,
    rx: mpsc::UnboundedReceiver<Result<Bytes, Error>>,
    unacked: u64,
    buffered: Arc<AtomicUsize>,
    ended: bool,
}

fn closed_error(shared: &Shared) -> Error {
    Error::Closed(
        shared
            .closed_reason()
            .unwrap_or(CloseReason::TransportClosed),
    )
}

fn rpc_to_error(e: RpcError) -> Error {
    match e {
        RpcError::Closed { reason } => Error::Closed(reason),
        other => Error::Rpc(other),
    }
}

pub(super) async fn open(shared: &Arc<Shared>, name: &str) -> Result<SendStream, Error> {
    let credit = Arc::new(SendCredit::default());
    credit.grant(INITIAL_WINDOW);
    let id = {
        let mut st = shared.state();
        if st.closed.is_some() {
            return Err(closed_error(shared));
        }
        // Initiator: 1, 3, 5…; responder: 2, 4, 6….
        st.next_stream += 1;
        let id = match shared.role {
            Role::Initiator => st.next_stream * 2 - 1,
            Role::Responder => st.next_stream * 2,
        };
        st.send_streams.insert(id, Arc::clone(&credit));
        id
    };
    let encoded = shared
        .encode(
            &Envelope::StreamOpen {
                id,
                name: name.to_owned(),
            },
            &[],
        )
        .map_err(Error::Rpc)?;
    shared
        .push(encoded, Priority::Low, |_| true)
        .await
        .map_err(rpc_to_error)?;
    Ok(SendStream {
        shared: Arc::downgrade(shared),
        id,
        name: name.to_owned(),
        credit,
        chunk: shared.stream_chunk,
        finished: false,
    })
}

impl SendStream {
    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stream id on this connection.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Credit currently available (bytes that may be sent without waiting).
    pub fn credit(&self) -> u64 {
        self.credit.lock().available
    }

    /// Sends `data`, waiting for credit as needed. Returns once all of it is queued.
    pub async fn send(&mut self, mut data: Bytes) -> Result<(), Error> {
        if self.finished {
            return Err(Error::StreamReset {
                code: "finished".into(),
            });
        }
        // Each round sends one chunk of at most `chunk` bytes (or waits for credit).
        while !data.is_empty() {
            let notified = self.credit.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let n = {
                let mut st = self.credit.lock();
                if let Some(reason) = &st.closed {
                    return Err(Error::Closed(reason.clone()));
                }
                if let Some(code) = &st.reset {
                    return Err(Error::StreamReset { code: code.clone() });
                }
                let n = (st.available.min(self.chunk as u64) as usize).min(data.len());
                st.available -= n as u64;
                n
            };
            if n == 0 {
                notified.await;
                continue;
            }
            let chunk = data.split_to(n);
            let shared = self
                .shared
                .upgrade()
                .ok_or(Error::Closed(CloseReason::TransportClosed))?;
            let encoded = shared
                .encode(&Envelope::StreamData { id: self.id }, &chunk)
                .map_err(Error::Rpc)?;
            drop(chunk);
            shared
                .push(encoded, Priority::Low, |_| true)
                .await
                .map_err(rpc_to_error)?;
        }
        Ok(())
    }

    /// Ends the stream; the reader sees the end after the last byte.
    pub async fn finish(mut self) -> Result<(), Error> {
        self.finished = true;
        let shared = self
            .shared
            .upgrade()
            .ok_or(Error::Closed(CloseReason::TransportClosed))?;
        shared.state().send_streams.remove(&self.id);
        if let Some(code) = self.credit.lock().reset.clone() {
            return Err(Error::StreamReset { code });
        }
        let encoded = shared
            .encode(&Envelope::StreamEnd { id: self.id }, &[])
            .map_err(Error::Rpc)?;
        shared
            .push(encoded, Priority::Low, |_| true)
            .await
            .map_err(rpc_to_error)
    }

    /// Aborts the stream with `code`; the reader gets [`Error::StreamReset`].
    pub fn reset(mut self, code: &str) {
        self.send_reset(code);
    }

    fn send_reset(&mut self, code: &str) {
        self.finished = true;
        if let Some(shared) = self.shared.upgrade() {
            shared.state().send_streams.remove(&self.id);
            let mut envelope = stream_reset(code);
            if let Envelope::StreamReset { id, .. } = &mut envelope {
                *id = self.id;
            }
            shared.push_now(&envelope, &[], Priority::Low);
        }
    }
}

impl Drop for SendStream {
    fn drop(&mut self) {
        if !self.finished {
            self.send_reset("dropped");
        }
    }
}

impl RecvStream {
    /// The name the opener gave the stream.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stream id on this connection.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Bytes received and not yet read by the application (at most one window).
    pub fn buffered_bytes(&self) -> usize {
        self.buffered.load(Ordering::Relaxed)
    }

    /// The next chunk, `None` at the end of the stream. Grants the sender more credit as the
    /// application reads.
    pub async fn recv(&mut self) -> Option<Result<Bytes, Error>> {
        if self.ended {
            return None;
        }
        match self.rx.recv().await {
            Some(Ok(data)) => {
                self.buffered.fetch_sub(data.len(), Ordering::Relaxed);
                self.unacked += data.len() as u64;
                if self.unacked >= CREDIT_BATCH {
                    self.grant();
                }
                Some(Ok(data))
            }
            Some(Err(e)) => {
                self.ended = true;
                Some(Err(e))
            }
            None => {
                self.ended = true;
                None
            }
        }
    }

    /// Reads the whole stream into one buffer, failing past `limit` bytes.
    pub async fn read_to_end(&mut self, limit: usize) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        while let Some(chunk) = self.recv().await {
            let chunk = chunk?;
            if out.len() + chunk.len() > limit {
                return Err(Error::StreamReset {
                    code: "too_large".into(),
                });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    fn grant(&mut self) {
        let bytes = std::mem::take(&mut self.unacked);
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        {
            let mut st = shared.state();
            match st.recv_streams.get_mut(&self.id) {
                Some(entry) => entry.granted += bytes,
                // Already ended or reset: no more credit is useful.
                None => return,
            }
        }
        shared.push_now(
            &Envelope::StreamCredit { id: self.id, bytes },
            &[],
            Priority::High,
        );
    }
}

impl Drop for RecvStream {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        if let Some(shared) = self.shared.upgrade() {
            let existed = shared.state().recv_streams.remove(&self.id).is_some();
            if existed {
                shared.push_now(
                    &Envelope::StreamReset {
                        id: self.id,
                        code: "cancelled".into(),
                    },
                    &[],
                    Priority::High,
                );
            }
        }
    }
}

/// Reader-side handling of stream envelopes. Returns a protocol violation to close with.
impl Shared {
    pub(crate) fn on_stream_open(self: &Arc<Self>, id: u64, name: String) -> Result<(), String> {
        let peer_opens_odd = self.role == Role::Responder;
        if (id % 2 == 1) != peer_opens_odd || id == 0 {
            return Err(format!(
                "stream id {id} has the wrong parity for the opener"
            ));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let buffered = Arc::new(AtomicUsize::new(0));
        let stream = RecvStream {
            shared: Arc::downgrade(self),
            id,
            name,
            rx,
            unacked: 0,
            buffered: Arc::clone(&buffered),
            ended: false,
        };
        let refused = {
            let mut st = self.state();
            if st.recv_streams.contains_key(&id) {
                return Err(format!("stream id {id} opened twice"));
            }
            st.recv_streams.insert(
                id,
                RecvEntry {
                    tx,
                    received: 0,
                    granted: INITIAL_WINDOW,
                    buffered,
                },
            );
            match &st.incoming_streams {
                Some(incoming) => match incoming.try_send(stream) {
                    Ok(()) => false,
                    Err(rejected) => {
                        let mut stream = rejected.into_inner();
                        // Not handed out: its drop must not send a second reset.
                        stream.ended = true;
                        st.recv_streams.remove(&id);
                        true
                    }
                },
                None => true,
            }
        };
        if refused {
            self.push_now(
                &Envelope::StreamReset {
                    id,
                    code: "refused".into(),
                },
                &[],
                Priority::High,
            );
        }
        Ok(())
    }

    pub(crate) fn on_stream_data(&self, id: u64, data: Bytes) -> Result<(), String> {
        let mut st = self.state();
        // Data for a stream we already dropped or reset is in flight: ignore it.
        let Some(entry) = st.recv_streams.get_mut(&id) else {
            return Ok(());
        };
        entry.received += data.len() as u64;
        if entry.received > entry.granted {
            return Err(format!("stream {id} exceeded its credit"));
        }
        entry.buffered.fetch_add(data.len(), Ordering::Relaxed);
        if entry.tx.send(Ok(data)).is_err() {
            st.recv_streams.remove(&id);
        }
        Ok(())
    }

    pub(crate) fn on_stream_end(&self, id: u64) {
        // Dropping the sender ends the reader's channel after the buffered chunks.
        self.state().recv_streams.remove(&id);
    }

    pub(crate) fn on_stream_credit(&self, id: u64, bytes: u64) {
        let credit = self.state().send_streams.get(&id).cloned();
        if let Some(credit) = credit {
            credit.grant(bytes);
        }
    }

    pub(crate) fn on_stream_reset(&self, id: u64, code: String) {
        let ours = (id % 2 == 1) == (self.role == Role::Initiator);
        let mut st = self.state();
        if ours {
            if let Some(credit) = st.send_streams.remove(&id) {
                credit.reset(code);
            }
        } else if let Some(entry) = st.recv_streams.remove(&id) {
            let _ = entry.tx.send(Err(Error::StreamReset { code }));
        }
    }
}
