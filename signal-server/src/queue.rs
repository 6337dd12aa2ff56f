//! The bounded queue of one client's outgoing messages.
//!
//! Other sessions (and the Redis backplane) push; the client's own session takes everything
//! queued at once and writes it in one batch. A mutex around a `VecDeque` with two wake-ups is
//! all it needs: an idle queue owns no buffer (a tokio channel keeps a block of 32 slots per
//! client, about 1.3 KiB), and the consumer pays one lock per batch, not one per message;
//! waiting costs it an atomic waker registration, no lock.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use tokio::sync::Notify;

use crate::hub::Out;

/// Why [`OutQueue::try_send`] refused a message.
#[derive(Debug)]
pub(crate) enum TrySend {
    /// The queue holds its capacity (the message is handed back).
    Full(Out),
    /// The receiving session has ended (the message is handed back).
    Closed(Out),
}

#[derive(Debug, Default)]
struct Inner {
    items: VecDeque<Out>,
    closed: bool,
}

/// Spare capacity a drained batch buffer may keep; larger ones are given back.
const KEEP_CAPACITY: usize = 16;

/// A bounded multi-producer, single-consumer queue of [`Out`].
#[derive(Debug)]
pub(crate) struct OutQueue {
    inner: Mutex<Inner>,
    capacity: usize,
    /// Wakes the consumer when something was queued.
    ready: AtomicWaker,
    /// Wakes producers waiting for room.
    space: Notify,
}

impl OutQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
            ready: AtomicWaker::new(),
            space: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `out` unless the queue is full or closed.
    pub(crate) fn try_send(&self, out: Out) -> Result<(), TrySend> {
        {
            let mut inner = self.lock();
            if inner.closed {
                return Err(TrySend::Closed(out));
            }
            if inner.items.len() >= self.capacity {
                return Err(TrySend::Full(out));
            }
            inner.items.push_back(out);
        }
        self.ready.wake();
        Ok(())
    }

    /// Wakes the consumer without queueing anything (it then looks at what else changed).
    pub(crate) fn wake(&self) {
        self.ready.wake();
    }

    /// Moves everything queued into `batch` (which must be empty): ready with true when
    /// something was moved, with false (nothing moved) once the queue is closed, pending
    /// (and registered for a wake-up) while it is open and empty.
    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>, batch: &mut VecDeque<Out>) -> Poll<bool> {
        // Registering before looking means a push in between still wakes this task.
        self.ready.register(cx.waker());
        match self.take_all(batch) {
            Some(open) => Poll::Ready(open),
            None => Poll::Pending,
        }
    }

    /// Waits as [`OutQueue::poll_recv`].
    #[cfg(test)]
    pub(crate) async fn recv_all(&self, batch: &mut VecDeque<Out>) -> bool {
        std::future::poll_fn(|cx| self.poll_recv(cx, batch)).await
    }

    /// Moves everything queued into `batch` without waiting: `Some(true)` when something
    /// was moved, `Some(false)` when closed, `None` when open and empty.
    fn take_all(&self, batch: &mut VecDeque<Out>) -> Option<bool> {
        debug_assert!(batch.is_empty());
        let was_full = {
            let mut inner = self.lock();
            if inner.closed {
                return Some(false);
            }
            if inner.items.is_empty() {
                return None;
            }
            let was_full = inner.items.len() >= self.capacity;
            if batch.capacity() > KEEP_CAPACITY {
                *batch = VecDeque::new();
            }
            // The consumer's emptied buffer goes back into the queue, so neither side
            // allocates while traffic is steady.
            std::mem::swap(&mut inner.items, batch);
            was_full
        };
        if was_full {
            self.space.notify_waiters();
        }
        Some(true)
    }

    /// Waits until the queue has room or is closed.
    pub(crate) async fn wait_space(&self) {
        // Each pass registers for a wake-up before checking, so a drain in between is seen.
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let inner = self.lock();
                if inner.closed || inner.items.len() < self.capacity {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Closes the queue: later pushes fail with [`TrySend::Closed`], queued messages are
    /// dropped, and waiting producers wake up.
    pub(crate) fn close(&self) {
        let items = {
            let mut inner = self.lock();
            inner.closed = true;
            std::mem::take(&mut inner.items)
        };
        drop(items);
        self.space.notify_waiters();
        self.ready.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn text(s: &'static str) -> Out {
        Out::Text(s.into())
    }

    fn texts(batch: &VecDeque<Out>) -> Vec<String> {
        batch
            .iter()
            .map(|o| match o {
                Out::Text(t) => t.as_str().to_owned(),
                Out::Binary(b) => format!("{b:?}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn batches_in_order_and_refuses_beyond_capacity() {
        let q = OutQueue::new(2);
        q.try_send(text("a")).unwrap();
        q.try_send(text("b")).unwrap();
        assert!(matches!(q.try_send(text("c")), Err(TrySend::Full(_))));
        let mut batch = VecDeque::new();
        assert!(q.recv_all(&mut batch).await);
        assert_eq!(texts(&batch), ["a", "b"]);
        batch.clear();
        q.try_send(text("c")).unwrap();
        assert!(q.recv_all(&mut batch).await);
        assert_eq!(texts(&batch), ["c"]);
    }

    #[tokio::test]
    async fn receiver_wakes_on_push_and_on_close() {
        let q = Arc::new(OutQueue::new(4));
        let q2 = Arc::clone(&q);
        let rx = tokio::spawn(async move {
            let mut batch = VecDeque::new();
            let first = q2.recv_all(&mut batch).await;
            let got = texts(&batch);
            batch.clear();
            let second = q2.recv_all(&mut batch).await;
            (first, got, second)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        q.try_send(text("x")).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        q.close();
        let (first, got, second) = tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .unwrap()
            .unwrap();
        assert!(first);
        assert_eq!(got, ["x"]);
        assert!(!second);
        assert!(matches!(q.try_send(text("y")), Err(TrySend::Closed(_))));
    }

    #[tokio::test]
    async fn producer_waiting_for_space_wakes_when_drained() {
        let q = Arc::new(OutQueue::new(1));
        q.try_send(text("a")).unwrap();
        let q2 = Arc::clone(&q);
        let waiter = tokio::spawn(async move {
            q2.wait_space().await;
            q2.try_send(text("b")).is_ok()
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        let mut batch = VecDeque::new();
        assert!(q.recv_all(&mut batch).await);
        let sent = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(sent);
    }
}
