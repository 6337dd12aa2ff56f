//! A data channel of a link: a send half and a receive half fed by a pump task.
//!
//! The engine delivers a channel's events through one `poll()` stream, and a channel whose
//! stream is not drained makes the driver hold back every other channel's events too. So each
//! channel gets a pump task that drains it for the whole life of the channel — into a bounded
//! queue while someone reads, into the void once the reader is gone — which also turns a slow
//! reader into SCTP back-pressure instead of unbounded memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ::webrtc::data_channel::{DataChannel, DataChannelEvent};
use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, watch};

use super::error::WebRtcError;

/// Received messages buffered per channel before the pump stops draining the engine.
const RECV_QUEUE: usize = 64;

/// The state of one data channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelState {
    /// Created, not yet open.
    Connecting,
    /// Open for messages.
    Open,
    /// Closed (by either side, or with its link).
    Closed,
}

/// One data channel of a [`WebRtcLink`](super::WebRtcLink).
#[derive(Debug)]
pub struct WebRtcChannel {
    /// Sending half.
    pub sender: ChannelSender,
    /// Receiving half.
    pub receiver: ChannelReceiver,
}

/// The sending half of a [`WebRtcChannel`].
#[derive(Clone)]
pub struct ChannelSender {
    dc: Arc<dyn DataChannel>,
    label: Arc<str>,
    state: watch::Receiver<ChannelState>,
    remote_max_message_size: Arc<AtomicUsize>,
}

impl std::fmt::Debug for ChannelSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelSender")
            .field("label", &self.label)
            .field("state", &*self.state.borrow())
            .finish()
    }
}

/// The receiving half of a [`WebRtcChannel`].
#[derive(Debug)]
pub struct ChannelReceiver {
    rx: mpsc::Receiver<Bytes>,
    state: watch::Receiver<ChannelState>,
}

impl WebRtcChannel {
    /// Wraps an engine channel and starts its pump. Returns the pump's abort handle so the
    /// link can stop it on close.
    pub(crate) fn start(
        dc: Arc<dyn DataChannel>,
        label: String,
        already_open: bool,
        remote_max_message_size: Arc<AtomicUsize>,
        opened: Arc<watch::Sender<u64>>,
    ) -> (Self, tokio::task::AbortHandle) {
        let initial = if already_open {
            ChannelState::Open
        } else {
            ChannelState::Connecting
        };
        let (state_tx, state_rx) = watch::channel(initial);
        let (tx, rx) = mpsc::channel(RECV_QUEUE);
        let pump = tokio::spawn(pump(Arc::clone(&dc), tx, state_tx, opened));
        let channel = Self {
            sender: ChannelSender {
                dc,
                label: label.into(),
                state: state_rx.clone(),
                remote_max_message_size,
            },
            receiver: ChannelReceiver {
                rx,
                state: state_rx,
            },
        };
        (channel, pump.abort_handle())
    }

    /// The channel's label.
    pub fn label(&self) -> &str {
        &self.sender.label
    }

    /// Waits until the channel is open; fails if it closes first.
    pub async fn opened(&self) -> Result<(), WebRtcError> {
        self.sender.opened().await
    }

    /// Splits into the two halves.
    pub fn split(self) -> (ChannelSender, ChannelReceiver) {
        (self.sender, self.receiver)
    }
}

async fn pump(
    dc: Arc<dyn DataChannel>,
    tx: mpsc::Sender<Bytes>,
    state: watch::Sender<ChannelState>,
    opened: Arc<watch::Sender<u64>>,
) {
    let mut reader_gone = false;
    let mark_open = |state: &watch::Sender<ChannelState>| {
        let changed = state.send_if_modified(|s| {
            let changed = *s == ChannelState::Connecting;
            if changed {
                *s = ChannelState::Open;
            }
            changed
        });
        if changed {
            opened.send_modify(|n| *n += 1);
        }
    };
    while let Some(event) = dc.poll().await {
        match event {
            DataChannelEvent::OnOpen => mark_open(&state),
            DataChannelEvent::OnMessage(message) => {
                mark_open(&state);
                if !reader_gone && tx.send(message.data.freeze()).await.is_err() {
                    // Keep draining: an undrained channel stalls the whole association.
                    reader_gone = true;
                }
            }
            DataChannelEvent::OnClose => break,
            _ => {}
        }
    }
    state.send_replace(ChannelState::Closed);
}

impl ChannelSender {
    /// The channel's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The current state.
    pub fn state(&self) -> ChannelState {
        *self.state.borrow()
    }

    /// The largest message the peer accepts (its SDP `a=max-message-size`, clamped to what the
    /// engine can send).
    pub fn max_message_size(&self) -> usize {
        self.remote_max_message_size.load(Ordering::Relaxed)
    }

    /// Waits until the channel is open; fails if it closes first.
    pub async fn opened(&self) -> Result<(), WebRtcError> {
        let mut state = self.state.clone();
        let result = state
            .wait_for(|s| *s != ChannelState::Connecting)
            .await
            .map(|s| *s);
        match result {
            Ok(ChannelState::Open) => Ok(()),
            _ => Err(WebRtcError::ChannelClosed),
        }
    }

    /// Sends one message. Waits while the channel has more unacknowledged bytes than the
    /// configured send-buffer limit, which is what paces a bulk sender to the path.
    pub async fn send(&self, data: Bytes) -> Result<(), WebRtcError> {
        let limit = self.max_message_size();
        if data.len() > limit {
            return Err(WebRtcError::MessageTooLarge {
                size: data.len(),
                limit,
            });
        }
        if self.state() == ChannelState::Closed {
            return Err(WebRtcError::ChannelClosed);
        }
        self.dc
            .send(BytesMut::from(data))
            .await
            .map_err(|err| match err {
                ::webrtc::error::Error::ErrDataChannelClosed => WebRtcError::ChannelClosed,
                other => WebRtcError::engine(other),
            })
    }

    /// Bytes handed to `send` and not yet acknowledged by the peer.
    pub async fn outstanding_bytes(&self) -> usize {
        self.dc.outstanding_bytes().await.unwrap_or(0)
    }

    /// Closes the channel (the link stays up).
    pub async fn close(&self) -> Result<(), WebRtcError> {
        match self.dc.close().await {
            Ok(()) | Err(::webrtc::error::Error::ErrDataChannelClosed) => Ok(()),
            Err(err) => Err(WebRtcError::engine(err)),
        }
    }
}

impl ChannelReceiver {
    /// The next message, or `None` once the channel is closed and drained.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }

    /// The current state.
    pub fn state(&self) -> ChannelState {
        *self.state.borrow()
    }
}
