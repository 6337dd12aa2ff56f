//! In-process transport pairs over bounded channels, for tests and benchmarks.
//!
//! The channel capacity (in messages) gives back-pressure just like a socket buffer: a sender
//! waits while the peer's queue is full.

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Transport, TransportKind, TransportReceiver, TransportSender};
use crate::error::TransportError;

/// One end of an in-memory link made by [`pair`].
#[derive(Debug)]
pub struct MemoryTransport {
    max_message_size: usize,
    tx: mpsc::Sender<Bytes>,
    rx: mpsc::Receiver<Bytes>,
}

/// Two connected ends. Each direction holds at most `capacity` messages of at most
/// `max_message_size` bytes.
pub fn pair(max_message_size: usize, capacity: usize) -> (MemoryTransport, MemoryTransport) {
    let capacity = capacity.max(1);
    let (a_tx, b_rx) = mpsc::channel(capacity);
    let (b_tx, a_rx) = mpsc::channel(capacity);
    (
        MemoryTransport {
            max_message_size,
            tx: a_tx,
            rx: a_rx,
        },
        MemoryTransport {
            max_message_size,
            tx: b_tx,
            rx: b_rx,
        },
    )
}

impl Transport for MemoryTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Memory
    }

    fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    fn split(self: Box<Self>) -> (Box<dyn TransportSender>, Box<dyn TransportReceiver>) {
        let this = *self;
        (
            Box::new(MemorySender {
                max_message_size: this.max_message_size,
                tx: Some(this.tx),
            }),
            Box::new(MemoryReceiver { rx: this.rx }),
        )
    }
}

#[derive(Debug)]
struct MemorySender {
    max_message_size: usize,
    tx: Option<mpsc::Sender<Bytes>>,
}

#[async_trait]
impl TransportSender for MemorySender {
    async fn send(&mut self, message: Bytes) -> Result<(), TransportError> {
        if message.len() > self.max_message_size {
            return Err(TransportError::TooLarge {
                size: message.len(),
                limit: self.max_message_size,
            });
        }
        let tx = self.tx.as_ref().ok_or(TransportError::Closed)?;
        tx.send(message).await.map_err(|_| TransportError::Closed)
    }

    async fn close(&mut self) {
        self.tx = None;
    }
}

#[derive(Debug)]
struct MemoryReceiver {
    rx: mpsc::Receiver<Bytes>,
}

#[async_trait]
impl TransportReceiver for MemoryReceiver {
    async fn recv(&mut self) -> Result<Option<Bytes>, TransportError> {
        Ok(self.rx.recv().await)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn messages_cross_in_order_both_ways() {
        let (a, b) = pair(1024, 4);
        let (mut a_tx, mut a_rx) = Box::new(a).split();
        let (mut b_tx, mut b_rx) = Box::new(b).split();
        for i in 0..3u8 {
            a_tx.send(Bytes::from(vec![i; 10])).await.unwrap();
        }
        for i in 0..3u8 {
            assert_eq!(
                b_rx.recv().await.unwrap().unwrap(),
                Bytes::from(vec![i; 10])
            );
        }
        b_tx.send(Bytes::from_static(b"back")).await.unwrap();
        assert_eq!(
            a_rx.recv().await.unwrap().unwrap(),
            Bytes::from_static(b"back")
        );
    }

    #[tokio::test]
    async fn oversized_message_is_a_typed_error() {
        let (a, _b) = pair(8, 4);
        let (mut tx, _rx) = Box::new(a).split();
        let err = tx.send(Bytes::from(vec![0; 9])).await.unwrap_err();
        assert_eq!(err, TransportError::TooLarge { size: 9, limit: 8 });
        assert_eq!(err.code(), "too_large");
    }

    #[tokio::test]
    async fn full_queue_applies_back_pressure() {
        let (a, b) = pair(16, 2);
        let (mut tx, _rx) = Box::new(a).split();
        let (_b_tx, mut b_rx) = Box::new(b).split();
        tx.send(Bytes::from_static(b"1")).await.unwrap();
        tx.send(Bytes::from_static(b"2")).await.unwrap();
        // The third send must wait until the peer reads.
        let blocked =
            tokio::time::timeout(Duration::from_millis(50), tx.send(Bytes::from_static(b"3")));
        assert!(
            blocked.await.is_err(),
            "send should wait while the queue is full"
        );
        assert_eq!(
            b_rx.recv().await.unwrap().unwrap(),
            Bytes::from_static(b"1")
        );
        tokio::time::timeout(Duration::from_secs(5), tx.send(Bytes::from_static(b"3")))
            .await
            .expect("send proceeds once there is room")
            .unwrap();
    }

    #[tokio::test]
    async fn close_ends_the_peer_receiver_and_later_sends_fail() {
        let (a, b) = pair(16, 2);
        let (mut tx, _rx) = Box::new(a).split();
        let (_b_tx, mut b_rx) = Box::new(b).split();
        tx.send(Bytes::from_static(b"last")).await.unwrap();
        tx.close().await;
        assert_eq!(
            b_rx.recv().await.unwrap().unwrap(),
            Bytes::from_static(b"last")
        );
        assert_eq!(b_rx.recv().await.unwrap(), None);
        assert_eq!(
            tx.send(Bytes::from_static(b"x")).await,
            Err(TransportError::Closed)
        );
    }

    #[tokio::test]
    async fn dropping_the_peer_fails_sends() {
        let (a, b) = pair(16, 2);
        let (mut tx, _rx) = Box::new(a).split();
        drop(b);
        assert_eq!(
            tx.send(Bytes::from_static(b"x")).await,
            Err(TransportError::Closed)
        );
    }
}
