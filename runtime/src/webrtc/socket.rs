//! An engine runtime that sizes each UDP socket's kernel buffers before the engine uses it.
//!
//! The engine binds its own sockets, then hands each one to `Runtime::wrap_udp_socket`: that
//! is the one place an application can reach the socket, so this runtime is the Tokio one
//! with that method wrapped. Without a larger `SO_RCVBUF`, a burst of one SCTP window (up to
//! 1 MiB) overflows the 208 KiB Linux default and every lost datagram waits for a
//! retransmission timer.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use std::io::IoSliceMut;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use ::webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, RecvMeta, Runtime,
    TokioRuntime, Transmit,
};

/// A switch that cuts a link's network path: while it is cut, every UDP datagram the link
/// sends is dropped and every datagram it receives is discarded, on every socket the link
/// binds (including the fresh ones of an ICE restart). For tests and demonstrations of path
/// loss on one machine, where no router can be unplugged. Cheap to clone; clones share the
/// switch.
#[derive(Debug, Clone, Default)]
pub struct PathCut(Arc<AtomicBool>);

impl PathCut {
    /// A switch that lets traffic through.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cuts the path.
    pub fn cut(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Lets traffic through again.
    pub fn restore(&self) {
        self.0.store(false, Ordering::Release);
    }

    /// Whether the path is cut.
    pub fn is_cut(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A socket behind a [`PathCut`].
#[derive(Debug)]
struct CutSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    cut: PathCut,
}

impl AsyncUdpSocket for CutSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        if self.cut.is_cut() {
            return Poll::Ready(Ok(transmit.contents.len()));
        }
        self.inner.poll_send(cx, transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        // Each turn consumes what the socket has queued; ends when it has nothing (Pending,
        // which registered the waker) or the path is not cut.
        loop {
            match self.inner.poll_recv(cx, bufs, meta) {
                Poll::Ready(Ok(_)) if self.cut.is_cut() => continue,
                other => return other,
            }
        }
    }

    fn max_gso_segments(&self) -> usize {
        self.inner.max_gso_segments()
    }

    fn max_gro_segments(&self) -> usize {
        self.inner.max_gro_segments()
    }
}

/// Tokio runtime with socket buffer sizes applied to every UDP socket.
#[derive(Debug)]
pub(crate) struct TunedRuntime {
    inner: TokioRuntime,
    recv_buffer: Option<usize>,
    send_buffer: Option<usize>,
    cut: Option<PathCut>,
}

impl TunedRuntime {
    pub(crate) fn new(
        recv_buffer: Option<usize>,
        send_buffer: Option<usize>,
        cut: Option<PathCut>,
    ) -> Self {
        Self {
            inner: TokioRuntime,
            recv_buffer,
            send_buffer,
            cut,
        }
    }
}

/// Applies buffer sizes; a refusal is logged, not fatal (the socket still works, slower).
pub(crate) fn apply_buffer_sizes(
    socket: &std::net::UdpSocket,
    recv: Option<usize>,
    send: Option<usize>,
) {
    let sock = socket2::SockRef::from(socket);
    if let Some(n) = recv {
        if let Err(err) = sock.set_recv_buffer_size(n) {
            tracing::warn!(%err, requested = n, "SO_RCVBUF not applied");
        }
    }
    if let Some(n) = send {
        if let Err(err) = sock.set_send_buffer_size(n) {
            tracing::warn!(%err, requested = n, "SO_SNDBUF not applied");
        }
    }
    tracing::debug!(
        recv = sock.recv_buffer_size().ok(),
        send = sock.send_buffer_size().ok(),
        "UDP socket buffers"
    );
}

impl Runtime for TunedRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.inner.spawn(future)
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        self.inner.spawn_reactor(reactor_pool_size, future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        apply_buffer_sizes(&socket, self.recv_buffer, self.send_buffer);
        let socket = self.inner.wrap_udp_socket(socket)?;
        Ok(match &self.cut {
            Some(cut) => Arc::new(CutSocket {
                inner: socket,
                cut: cut.clone(),
            }),
            None => socket,
        })
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.inner.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        self.inner.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        self.inner.resolve_host(host)
    }

    fn now(&self) -> std::time::Instant {
        self.inner.now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.inner.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.inner.block_on(future)
    }

    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.yield_now()
    }

    fn name(&self) -> &'static str {
        "peerlink-tokio"
    }
}

/// The receive buffer the kernel actually grants for a request, measured on a throwaway
/// socket (Linux reports the doubled, overhead-inclusive size and caps the request at
/// `net.core.rmem_max`; an unprivileged application cannot raise that cap).
pub(crate) fn effective_recv_buffer(requested: Option<usize>) -> Option<usize> {
    let socket = std::net::UdpSocket::bind(("127.0.0.1", 0)).ok()?;
    let sock = socket2::SockRef::from(&socket);
    if let Some(n) = requested {
        sock.set_recv_buffer_size(n).ok()?;
    }
    sock.recv_buffer_size().ok()
}

/// The SCTP receive window a socket buffer can absorb in one burst. Each ~1.2 KB datagram
/// costs about twice its size in kernel accounting, so a window above ~5/8 of the reported
/// buffer overflows it when the peer sends a full window back to back (measured: 208 KiB
/// reported buffer holds a 128 KiB window and drops at 256 KiB; 416 KiB holds 256 KiB).
pub(crate) fn window_for_buffer(effective: usize) -> u32 {
    let window = effective.saturating_mul(5) / 8;
    u32::try_from(window.clamp(64 * 1024, 1024 * 1024)).unwrap_or(1024 * 1024)
}
