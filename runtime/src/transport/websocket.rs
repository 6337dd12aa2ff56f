//! WebSocket transport (client and server) over tokio-tungstenite, binary messages only.
//!
//! Each wire record travels as one binary WebSocket message of at most [`RECORD_SIZE`] bytes.
//! TCP_NODELAY is set on every socket: records are already batched by the driver (`feed` then
//! one `flush`), so Nagle's algorithm would only add latency to small RPCs.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::{Transport, TransportKind, TransportReceiver, TransportSender};
use crate::error::TransportError;
use crate::url::WsUrl;

/// Largest record carried in one WebSocket message.
pub const RECORD_SIZE: usize = 1 << 20;

/// Slack allowed above [`RECORD_SIZE`] on receive, so a peer with a slightly different record
/// framing is not cut off; the wire layer enforces the real limit.
const RECEIVE_SLACK: usize = 64 << 10;

/// The tungstenite settings used on both sides.
pub fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(RECORD_SIZE + RECEIVE_SLACK))
        .max_frame_size(Some(RECORD_SIZE + RECEIVE_SLACK))
        // Large buffers: fewer read/write system calls for bulk records, and small records fed
        // in a burst leave in one write.
        .read_buffer_size(256 << 10)
        .write_buffer_size(256 << 10)
        // Bounds the buffer if the socket stops taking data (start_send queues on WouldBlock).
        .max_write_buffer_size(4 * RECORD_SIZE + (256 << 10))
}

/// A WebSocket link over any byte stream (plain TCP or TLS).
#[derive(Debug)]
pub struct WebSocketTransport<S> {
    stream: WebSocketStream<S>,
}

impl<S> WebSocketTransport<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Wraps an upgraded WebSocket stream.
    pub fn new(stream: WebSocketStream<S>) -> Self {
        Self { stream }
    }
}

impl<S> Transport for WebSocketTransport<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn kind(&self) -> TransportKind {
        TransportKind::WebSocket
    }

    fn max_message_size(&self) -> usize {
        RECORD_SIZE
    }

    fn split(self: Box<Self>) -> (Box<dyn TransportSender>, Box<dyn TransportReceiver>) {
        let (sink, stream) = self.stream.split();
        (
            Box::new(WsSender {
                sink,
                closed: false,
            }),
            Box::new(WsReceiver { stream }),
        )
    }
}

struct WsSender<S> {
    sink: SplitSink<WebSocketStream<S>, Message>,
    closed: bool,
}

fn io_error(e: tokio_tungstenite::tungstenite::Error) -> TransportError {
    use tokio_tungstenite::tungstenite::Error as E;
    match e {
        E::ConnectionClosed | E::AlreadyClosed => TransportError::Closed,
        E::Io(io) => TransportError::Io(io.to_string()),
        E::Capacity(c) => TransportError::Protocol(c.to_string()),
        E::Protocol(p) => TransportError::Protocol(p.to_string()),
        other => TransportError::Io(other.to_string()),
    }
}

#[async_trait]
impl<S> TransportSender for WsSender<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn send(&mut self, message: Bytes) -> Result<(), TransportError> {
        self.feed(message).await?;
        self.flush().await
    }

    async fn feed(&mut self, message: Bytes) -> Result<(), TransportError> {
        if self.closed {
            return Err(TransportError::Closed);
        }
        if message.len() > RECORD_SIZE {
            return Err(TransportError::TooLarge {
                size: message.len(),
                limit: RECORD_SIZE,
            });
        }
        self.sink
            .feed(Message::Binary(message))
            .await
            .map_err(io_error)
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        self.sink.flush().await.map_err(io_error)
    }

    async fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            // The close handshake is best effort: the peer may already be gone.
            let _ = self.sink.close().await;
        }
    }
}

struct WsReceiver<S> {
    stream: SplitStream<WebSocketStream<S>>,
}

#[async_trait]
impl<S> TransportReceiver for WsReceiver<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn recv(&mut self) -> Result<Option<Bytes>, TransportError> {
        // Bounded by the peer: each round consumes one message from the socket.
        loop {
            match self.stream.next().await {
                None => return Ok(None),
                Some(Ok(Message::Binary(data))) => return Ok(Some(data)),
                Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Text(_))) => {
                    return Err(TransportError::Protocol(
                        "text message on a binary link".into(),
                    ));
                }
                Some(Err(e)) => {
                    return match io_error(e) {
                        TransportError::Closed => Ok(None),
                        other => Err(other),
                    };
                }
            }
        }
    }
}

/// A dialled WebSocket link (plain or TLS).
pub type ClientTransport = WebSocketTransport<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A WebSocket link accepted by a listener.
pub type ServerTransport = WebSocketTransport<TcpStream>;

/// Dials `url` (TCP, then TLS for `wss://`, then the WebSocket upgrade) within `timeout`.
pub async fn connect(url: &WsUrl, timeout: Duration) -> Result<ClientTransport, TransportError> {
    let fut = async {
        let tcp = TcpStream::connect(url.authority()).await.map_err(|e| {
            TransportError::Connect(format!("tcp connect to {}: {e}", url.authority()))
        })?;
        tcp.set_nodelay(true)
            .map_err(|e| TransportError::Connect(e.to_string()))?;
        let (stream, _response) = tokio_tungstenite::client_async_tls_with_config(
            url.normalised(),
            tcp,
            Some(websocket_config()),
            None,
        )
        .await
        .map_err(|e| TransportError::Connect(format!("websocket upgrade: {e}")))?;
        Ok(WebSocketTransport::new(stream))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| TransportError::Timeout)?
}

/// Upgrades an accepted TCP socket to a WebSocket within `timeout`.
pub async fn accept(tcp: TcpStream, timeout: Duration) -> Result<ServerTransport, TransportError> {
    tcp.set_nodelay(true)
        .map_err(|e| TransportError::Connect(e.to_string()))?;
    let upgrade = tokio_tungstenite::accept_async_with_config(tcp, Some(websocket_config()));
    let stream = tokio::time::timeout(timeout, upgrade)
        .await
        .map_err(|_| TransportError::Timeout)?
        .map_err(|e| TransportError::Connect(format!("websocket upgrade: {e}")))?;
    Ok(WebSocketTransport::new(stream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn loopback_pair() -> (Box<dyn Transport>, Box<dyn Transport>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            accept(tcp, Duration::from_secs(5)).await.unwrap()
        });
        let url = WsUrl::parse(&format!("ws://127.0.0.1:{port}")).unwrap();
        let client = connect(&url, Duration::from_secs(5)).await.unwrap();
        (Box::new(client), Box::new(server.await.unwrap()))
    }

    #[tokio::test]
    async fn binary_messages_cross_both_ways_up_to_the_record_size() {
        let (client, server) = loopback_pair().await;
        assert_eq!(client.kind(), TransportKind::WebSocket);
        let (mut c_tx, mut c_rx) = client.split();
        let (mut s_tx, mut s_rx) = server.split();
        let big = Bytes::from(vec![7u8; RECORD_SIZE]);
        c_tx.feed(Bytes::from_static(b"small")).await.unwrap();
        c_tx.feed(big.clone()).await.unwrap();
        c_tx.flush().await.unwrap();
        assert_eq!(
            s_rx.recv().await.unwrap().unwrap(),
            Bytes::from_static(b"small")
        );
        assert_eq!(s_rx.recv().await.unwrap().unwrap(), big);
        s_tx.send(Bytes::from_static(b"reply")).await.unwrap();
        assert_eq!(
            c_rx.recv().await.unwrap().unwrap(),
            Bytes::from_static(b"reply")
        );
        let err = c_tx
            .send(Bytes::from(vec![0; RECORD_SIZE + 1]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "too_large");
        c_tx.close().await;
        assert_eq!(s_rx.recv().await.unwrap(), None);
    }

    #[tokio::test]
    async fn connect_to_a_closed_port_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let url = WsUrl::parse(&format!("ws://127.0.0.1:{port}")).unwrap();
        let err = connect(&url, Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(err.code(), "connect_failed");
    }
}
