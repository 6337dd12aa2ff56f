//! peerlink: the client-to-server leg of TURN over TCP (`turn:…?transport=tcp`) and over TLS
//! (`turns:`), RFC 8656 §3.1 / RFC 5766 §2.1.
//!
//! The TURN client itself stays sans-I/O ([`rtc::turn::client::Client`] with
//! `TransportProtocol::TCP`); this module owns the stream it talks over. One task per server
//! connects (bounded by [`TURN_STREAM_CONNECT_TIMEOUT`]), runs the TLS handshake for `turns:`
//! (rustls, certificate verification always on), then splits into a reader and a writer:
//!
//! - the reader cuts the byte stream into STUN messages and ChannelData frames by their own
//!   length fields (ChannelData padded to four bytes, as streams require) and hands each one to
//!   the driver as a [`TurnStreamEvent::Data`] tagged with the stream's four-tuple, where the
//!   relayer claims it exactly like a datagram from a UDP server;
//! - the writer sends what the relayer queued for that four-tuple, in order.
//!
//! The relayed leg (TURN server to peer) stays UDP, so the relay candidate is a UDP candidate.
//! Dropping the [`TurnStreamHandle`] ends the writer once it has sent what is queued (the
//! allocation's release goes out first) and closes the connection.

use crate::peer_connection::driver::PeerConnectionDriverEvent;
use crate::runtime::{AsyncTcpStream, Runtime, Sender};
use bytes::BytesMut;
use log::{debug, warn};
use rtc::shared::{FourTuple, TaggedBytesMut, TransportContext, TransportProtocol};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Longest wait for the TCP connection and, for `turns:`, the TLS handshake.
pub(crate) const TURN_STREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Messages queued for one server before further ones are dropped (like a full UDP socket
/// buffer; ICE and SCTP retransmit).
const TURN_STREAM_WRITE_QUEUE: usize = 1024;

const STUN_HEADER_LEN: usize = 20;
const CHANNEL_DATA_HEADER_LEN: usize = 4;
const READ_BUF_LEN: usize = 16 * 1024;

/// A stream the relayer asked for: one TURN server reached over TCP or TLS.
#[derive(Debug, Clone)]
pub(crate) struct TurnStreamRequest {
    pub(crate) id: u64,
    pub(crate) server_addr: SocketAddr,
    /// `Some(server name)` for `turns:`: the name the certificate must be valid for (the URL's
    /// host, a DNS name or an IP address).
    pub(crate) tls_server_name: Option<String>,
}

/// What a stream task reports to the driver.
pub(crate) enum TurnStreamEvent {
    Connected { id: u64, four_tuple: FourTuple },
    Data(TaggedBytesMut),
    Closed { id: u64, reason: String },
}

impl std::fmt::Debug for TurnStreamEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connected { id, four_tuple } => f
                .debug_struct("Connected")
                .field("id", id)
                .field("four_tuple", four_tuple)
                .finish(),
            Self::Data(msg) => f
                .debug_struct("Data")
                .field("from", &msg.transport.peer_addr)
                .field("len", &msg.message.len())
                .finish(),
            Self::Closed { id, reason } => f
                .debug_struct("Closed")
                .field("id", id)
                .field("reason", reason)
                .finish(),
        }
    }
}

/// The driver's end of one stream: dropping it closes the stream once the queue is sent.
pub(crate) struct TurnStreamHandle {
    pub(crate) id: u64,
    writes: async_channel::Sender<BytesMut>,
}

impl TurnStreamHandle {
    /// Queues one framed TURN message (STUN, or padded ChannelData) for the server.
    pub(crate) fn send(&self, message: BytesMut) -> io::Result<usize> {
        let len = message.len();
        match self.writes.try_send(message) {
            Ok(()) => Ok(len),
            Err(async_channel::TrySendError::Full(_)) => {
                warn!("TURN stream {} write queue full, message dropped", self.id);
                Ok(0)
            }
            Err(async_channel::TrySendError::Closed(_)) => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "TURN stream closed",
            )),
        }
    }
}

/// The TLS client configuration used when the application set none: the Mozilla root
/// certificates (webpki-roots) and the ring provider.
pub(crate) fn default_tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            tls_config_with_roots(&[]).expect("ring supports the default protocol versions")
        })
        .clone()
}

/// A TLS client configuration trusting the Mozilla roots and `extra_roots` (DER certificates).
pub(crate) fn tls_config_with_roots(
    extra_roots: &[Vec<u8>],
) -> std::result::Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for der in extra_roots {
        roots.add(rustls::pki_types::CertificateDer::from(der.clone()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Starts the task for `request`; its events arrive on `events`.
pub(crate) fn spawn(
    request: TurnStreamRequest,
    tls_config: Option<Arc<rustls::ClientConfig>>,
    runtime: Arc<dyn Runtime>,
    events: Sender<PeerConnectionDriverEvent>,
) -> TurnStreamHandle {
    let (writes_tx, writes_rx) = async_channel::bounded(TURN_STREAM_WRITE_QUEUE);
    let id = request.id;
    let task_runtime = Arc::clone(&runtime);
    let handle = runtime.spawn(Box::pin(async move {
        let reason = match run(request, tls_config, task_runtime, writes_rx, &events).await {
            Ok(()) => "closed".to_owned(),
            Err(err) => err.to_string(),
        };
        debug!("TURN stream {} ended: {}", id, reason);
        let _ = events
            .send(PeerConnectionDriverEvent::TurnStream(Box::new(
                TurnStreamEvent::Closed { id, reason },
            )))
            .await;
    }));
    handle.detach();
    TurnStreamHandle {
        id,
        writes: writes_tx,
    }
}

async fn run(
    request: TurnStreamRequest,
    tls_config: Option<Arc<rustls::ClientConfig>>,
    runtime: Arc<dyn Runtime>,
    writes: async_channel::Receiver<BytesMut>,
    events: &Sender<PeerConnectionDriverEvent>,
) -> io::Result<()> {
    let server_addr = request.server_addr;
    let connect = async {
        let stream = runtime.connect_tcp(server_addr).await?;
        let tls = match &request.tls_server_name {
            Some(name) => {
                let config = tls_config.unwrap_or_else(default_tls_config);
                let server_name = rustls::pki_types::ServerName::try_from(name.clone())
                    .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
                let mut conn =
                    rustls::ClientConnection::new(config, server_name).map_err(io::Error::other)?;
                tls_handshake(stream.as_ref(), &mut conn).await?;
                Some(Mutex::new(conn))
            }
            None => None,
        };
        io::Result::Ok((stream, tls))
    };
    let (stream, tls) =
        match crate::runtime::timeout(runtime.as_ref(), TURN_STREAM_CONNECT_TIMEOUT, connect).await
        {
            Ok(result) => result?,
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no TURN connection to {server_addr} within {TURN_STREAM_CONNECT_TIMEOUT:?}"
                    ),
                ));
            }
        };
    let four_tuple = FourTuple {
        local_addr: stream.local_addr()?,
        peer_addr: stream.peer_addr().unwrap_or(server_addr),
    };
    debug!(
        "TURN stream {} to {} connected from {} ({})",
        request.id,
        server_addr,
        four_tuple.local_addr,
        if tls.is_some() { "tls" } else { "tcp" }
    );
    events
        .send(PeerConnectionDriverEvent::TurnStream(Box::new(
            TurnStreamEvent::Connected {
                id: request.id,
                four_tuple,
            },
        )))
        .await
        .map_err(|_| io::Error::other("peer connection gone"))?;

    let reader = read_loop(stream.as_ref(), tls.as_ref(), four_tuple, &runtime, events);
    let writer = write_loop(stream.as_ref(), tls.as_ref(), writes);
    futures::pin_mut!(reader, writer);
    match futures::future::select(reader, writer).await {
        futures::future::Either::Left((result, _)) => result,
        futures::future::Either::Right((result, _)) => result,
    }
}

/// Drives a rustls handshake over the stream; fails on any TLS error (an untrusted
/// certificate among them) after sending the alert.
async fn tls_handshake(
    stream: &dyn AsyncTcpStream,
    conn: &mut rustls::ClientConnection,
) -> io::Result<()> {
    let mut buf = vec![0u8; READ_BUF_LEN];
    loop {
        flush_tls(stream, conn).await?;
        if !conn.is_handshaking() {
            return Ok(());
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "TURN server closed the connection during the TLS handshake",
            ));
        }
        let mut rd = &buf[..n];
        while !rd.is_empty() {
            conn.read_tls(&mut rd)?;
            if let Err(err) = conn.process_new_packets() {
                // Tell the server why (the alert), then fail.
                let _ = flush_tls(stream, conn).await;
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("TLS handshake with the TURN server failed: {err}"),
                ));
            }
        }
    }
}

async fn flush_tls(
    stream: &dyn AsyncTcpStream,
    conn: &mut rustls::ClientConnection,
) -> io::Result<()> {
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out)?;
    }
    if !out.is_empty() {
        stream.write_all(&out).await?;
    }
    Ok(())
}

async fn read_loop(
    stream: &dyn AsyncTcpStream,
    tls: Option<&Mutex<rustls::ClientConnection>>,
    four_tuple: FourTuple,
    runtime: &Arc<dyn Runtime>,
    events: &Sender<PeerConnectionDriverEvent>,
) -> io::Result<()> {
    let mut buf = vec![0u8; READ_BUF_LEN];
    let mut decoder = TurnStreamDecoder::default();
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "TURN server closed the connection",
            ));
        }
        match tls {
            Some(conn) => {
                let mut conn = conn
                    .lock()
                    .map_err(|_| io::Error::other("TLS state poisoned"))?;
                let mut rd = &buf[..n];
                while !rd.is_empty() {
                    conn.read_tls(&mut rd)?;
                    conn.process_new_packets()
                        .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
                }
                let mut plain = [0u8; READ_BUF_LEN];
                loop {
                    match conn.reader().read(&mut plain) {
                        Ok(0) => {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "TURN server closed the TLS session",
                            ));
                        }
                        Ok(m) => decoder.push(&plain[..m]),
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                        Err(err) => return Err(err),
                    }
                }
            }
            None => decoder.push(&buf[..n]),
        }
        while let Some(message) = decoder.next_frame()? {
            let msg = TaggedBytesMut {
                now: runtime.now(),
                transport: TransportContext {
                    local_addr: four_tuple.local_addr,
                    peer_addr: four_tuple.peer_addr,
                    ecn: None,
                    transport_protocol: TransportProtocol::TCP,
                },
                message,
            };
            events
                .send(PeerConnectionDriverEvent::TurnStream(Box::new(
                    TurnStreamEvent::Data(msg),
                )))
                .await
                .map_err(|_| io::Error::other("peer connection gone"))?;
        }
    }
}

async fn write_loop(
    stream: &dyn AsyncTcpStream,
    tls: Option<&Mutex<rustls::ClientConnection>>,
    writes: async_channel::Receiver<BytesMut>,
) -> io::Result<()> {
    while let Ok(message) = writes.recv().await {
        match tls {
            Some(conn) => {
                let out = {
                    let mut conn = conn
                        .lock()
                        .map_err(|_| io::Error::other("TLS state poisoned"))?;
                    conn.writer().write_all(&message)?;
                    let mut out = Vec::with_capacity(message.len() + 64);
                    while conn.wants_write() {
                        conn.write_tls(&mut out)?;
                    }
                    out
                };
                stream.write_all(&out).await?;
            }
            None => stream.write_all(&message).await?,
        }
    }
    // The driver dropped its handle: everything queued (an allocation's release too) is sent.
    if let Some(conn) = tls {
        let out = {
            let mut conn = conn
                .lock()
                .map_err(|_| io::Error::other("TLS state poisoned"))?;
            conn.send_close_notify();
            let mut out = Vec::new();
            while conn.wants_write() {
                conn.write_tls(&mut out)?;
            }
            out
        };
        let _ = stream.write_all(&out).await;
    }
    Ok(())
}

/// Cuts a TURN byte stream into messages: STUN (20-byte header, length in bytes 2..4) and
/// ChannelData (4-byte header, length in bytes 2..4, padded to a multiple of four on streams).
#[derive(Default)]
pub(crate) struct TurnStreamDecoder {
    buf: BytesMut,
}

impl TurnStreamDecoder {
    pub(crate) fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole message, `None` if more bytes are needed, or an error for bytes that are
    /// neither STUN nor ChannelData (the stream cannot be resynchronised after that).
    pub(crate) fn next_frame(&mut self) -> io::Result<Option<BytesMut>> {
        if self.buf.len() < CHANNEL_DATA_HEADER_LEN {
            return Ok(None);
        }
        let length = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
        let frame_len = match self.buf[0] >> 6 {
            // STUN: the two most significant bits are zero; length excludes the header.
            0b00 => STUN_HEADER_LEN + length,
            // ChannelData: channel numbers 0x4000..=0x7FFF.
            0b01 => CHANNEL_DATA_HEADER_LEN + length.next_multiple_of(4),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "TURN server sent bytes that are neither STUN nor ChannelData",
                ));
            }
        };
        if self.buf.len() < frame_len {
            return Ok(None);
        }
        Ok(Some(self.buf.split_to(frame_len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun(len: u16, fill: u8) -> Vec<u8> {
        let mut m = vec![0x01, 0x01];
        m.extend_from_slice(&len.to_be_bytes());
        m.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        m.extend_from_slice(&[fill; 12]);
        m.extend(std::iter::repeat_n(fill, usize::from(len)));
        m
    }

    #[test]
    fn splits_stun_and_padded_channel_data_across_reads() {
        let a = stun(8, 1);
        // ChannelData on 0x4001 with 5 payload bytes, padded to 8.
        let c = vec![0x40, 0x01, 0x00, 0x05, 9, 9, 9, 9, 9, 0, 0, 0];
        let b = stun(0, 2);
        let mut all = a.clone();
        all.extend_from_slice(&c);
        all.extend_from_slice(&b);

        let mut decoder = TurnStreamDecoder::default();
        let mut frames = Vec::new();
        // One byte at a time: every split point.
        for byte in &all {
            decoder.push(std::slice::from_ref(byte));
            while let Some(frame) = decoder.next_frame().expect("valid stream") {
                frames.push(frame.to_vec());
            }
        }
        assert_eq!(frames, vec![a, c, b]);
    }

    #[test]
    fn rejects_bytes_that_are_neither_stun_nor_channel_data() {
        let mut decoder = TurnStreamDecoder::default();
        decoder.push(&[0x80, 0, 0, 4, 1, 2, 3, 4]);
        assert!(decoder.next_frame().is_err());
    }
}
