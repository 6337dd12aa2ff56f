//! Relay links: a [`Transport`] whose messages travel as binary relay frames through a
//! signaling server, for when two devices have no direct path.
//!
//! The server only forwards frames between authenticated devices; the peerlink handshake runs
//! over the link end to end, so everything after it is encrypted and the server sees
//! ciphertext. Each payload starts with a kind byte (open, data, close) and a link id, so one
//! signaling connection carries any number of links to any number of peers
//! (`docs/protocol/signaling.md`, section 8). Open one with
//! [`crate::signaling::SignalingClient::open_relay`]; incoming ones arrive as
//! [`crate::signaling::SignalingEvent::IncomingRelay`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use peerlink_core::handshake::LinkBinding;
use tokio::sync::mpsc;

use super::{Transport, TransportKind, TransportReceiver, TransportSender};
use crate::error::TransportError;
use crate::signaling::client::Outbound;
use crate::signaling::wire::{LINK_CLOSE, LINK_DATA, LINK_HEADER, LINK_OPEN, link_frame};

/// Frames buffered per link before the link is dropped as overrun. The connection layer
/// reads its transport continuously, so this only fills when an application stops reading.
const LINK_QUEUE: usize = 1024;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The relay links of one signaling client.
#[derive(Debug)]
pub(crate) struct RelayLinks {
    local_device: String,
    out: mpsc::Sender<Outbound>,
    links: Mutex<HashMap<(String, u32), mpsc::Sender<Bytes>>>,
    max_payload: AtomicUsize,
}

impl RelayLinks {
    pub(crate) fn new(local_device: String, out: mpsc::Sender<Outbound>) -> Arc<Self> {
        Arc::new(Self {
            local_device,
            out,
            links: Mutex::new(HashMap::new()),
            max_payload: AtomicUsize::new(64 << 10),
        })
    }

    /// Records the server's relay payload limit (from its challenge).
    pub(crate) fn set_max_payload(&self, max: usize) {
        self.max_payload.store(max, Ordering::Relaxed);
    }

    fn register(self: &Arc<Self>, peer: &str, link_id: u32, opener: bool) -> RelayTransport {
        let (tx, rx) = mpsc::channel(LINK_QUEUE);
        lock(&self.links).insert((peer.to_owned(), link_id), tx);
        RelayTransport {
            links: Arc::clone(self),
            peer: peer.to_owned(),
            link_id,
            opener,
            rx,
        }
    }

    /// Opens a link to `peer`: registers it and queues the `open` message.
    pub(crate) async fn open(
        self: &Arc<Self>,
        peer: &str,
    ) -> Result<RelayTransport, TransportError> {
        // Link ids only need to be unique per peer pair; collisions are retried.
        let link_id = loop {
            let id = rand::random::<u32>();
            if !lock(&self.links).contains_key(&(peer.to_owned(), id)) {
                break id;
            }
        };
        let transport = self.register(peer, link_id, true);
        self.out
            .send(Outbound::Binary(link_frame(peer, LINK_OPEN, link_id, &[])))
            .await
            .map_err(|_| TransportError::Closed)?;
        Ok(transport)
    }

    /// Handles a relay-link message from the server. Returns a new incoming link for `open`.
    pub(crate) fn on_message(
        self: &Arc<Self>,
        from: &str,
        kind: u8,
        link_id: u32,
        body: Bytes,
    ) -> Option<RelayTransport> {
        let key = (from.to_owned(), link_id);
        match kind {
            LINK_OPEN => {
                if lock(&self.links).contains_key(&key) {
                    return None;
                }
                Some(self.register(from, link_id, false))
            }
            LINK_DATA => {
                let tx = lock(&self.links).get(&key).cloned();
                match tx {
                    Some(tx) => {
                        if tx.try_send(body).is_err() {
                            // Overrun or the reader went away: the link cannot stay reliable.
                            lock(&self.links).remove(&key);
                            self.send_close(from, link_id);
                        }
                    }
                    None => self.send_close(from, link_id),
                }
                None
            }
            LINK_CLOSE => {
                lock(&self.links).remove(&key);
                None
            }
            _ => None,
        }
    }

    fn send_close(&self, peer: &str, link_id: u32) {
        let _ = self
            .out
            .try_send(Outbound::Binary(link_frame(peer, LINK_CLOSE, link_id, &[])));
    }

    /// Ends every link to `peer` (it went offline).
    pub(crate) fn drop_peer(&self, peer: &str) {
        lock(&self.links).retain(|(p, _), _| p != peer);
    }

    /// Ends every link (the signaling connection dropped; frames in flight are lost).
    pub(crate) fn drop_all(&self) {
        lock(&self.links).clear();
    }

    fn is_open(&self, peer: &str, link_id: u32) -> bool {
        lock(&self.links).contains_key(&(peer.to_owned(), link_id))
    }
}

/// A link to one peer through the signaling server.
#[derive(Debug)]
pub struct RelayTransport {
    links: Arc<RelayLinks>,
    peer: String,
    link_id: u32,
    opener: bool,
    rx: mpsc::Receiver<Bytes>,
}

impl RelayTransport {
    /// The peer's device id (as authenticated by the server).
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The link id (chosen by the opener).
    pub fn link_id(&self) -> u32 {
        self.link_id
    }

    /// Whether this side opened the link (and so runs the handshake as initiator).
    pub fn is_opener(&self) -> bool {
        self.opener
    }

    /// The handshake binding both sides compute alike:
    /// `peerlink-relay/v1 <opener deviceId> <acceptor deviceId> <link id>`.
    pub fn binding(&self) -> LinkBinding {
        let (opener, acceptor) = if self.opener {
            (self.links.local_device.as_str(), self.peer.as_str())
        } else {
            (self.peer.as_str(), self.links.local_device.as_str())
        };
        LinkBinding::Memory(format!(
            "peerlink-relay/v1 {opener} {acceptor} {}",
            self.link_id
        ))
    }
}

impl Transport for RelayTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Relay
    }

    fn max_message_size(&self) -> usize {
        self.links
            .max_payload
            .load(Ordering::Relaxed)
            .saturating_sub(LINK_HEADER)
    }

    fn split(self: Box<Self>) -> (Box<dyn TransportSender>, Box<dyn TransportReceiver>) {
        let this = *self;
        let max = this.max_message_size();
        (
            Box::new(RelaySender {
                links: this.links,
                peer: this.peer,
                link_id: this.link_id,
                max,
                closed: false,
            }),
            Box::new(RelayReceiver { rx: this.rx }),
        )
    }
}

#[derive(Debug)]
struct RelaySender {
    links: Arc<RelayLinks>,
    peer: String,
    link_id: u32,
    max: usize,
    closed: bool,
}

#[async_trait]
impl TransportSender for RelaySender {
    async fn send(&mut self, message: Bytes) -> Result<(), TransportError> {
        if message.len() > self.max {
            return Err(TransportError::TooLarge {
                size: message.len(),
                limit: self.max,
            });
        }
        if self.closed || !self.links.is_open(&self.peer, self.link_id) {
            return Err(TransportError::Closed);
        }
        let frame = link_frame(&self.peer, LINK_DATA, self.link_id, &message);
        self.links
            .out
            .send(Outbound::Binary(frame))
            .await
            .map_err(|_| TransportError::Closed)
    }

    async fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        lock(&self.links.links).remove(&(self.peer.clone(), self.link_id));
        let frame = link_frame(&self.peer, LINK_CLOSE, self.link_id, &[]);
        let _ = self.links.out.send(Outbound::Binary(frame)).await;
    }
}

impl Drop for RelaySender {
    fn drop(&mut self) {
        if !self.closed {
            lock(&self.links.links).remove(&(self.peer.clone(), self.link_id));
            self.links.send_close(&self.peer, self.link_id);
        }
    }
}

#[derive(Debug)]
struct RelayReceiver {
    rx: mpsc::Receiver<Bytes>,
}

#[async_trait]
impl TransportReceiver for RelayReceiver {
    async fn recv(&mut self) -> Result<Option<Bytes>, TransportError> {
        Ok(self.rx.recv().await)
    }
}
