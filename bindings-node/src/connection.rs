//! `Connection`, its byte streams and its options for JavaScript.

use std::time::Duration;

use bytes::Bytes;
use napi::bindgen_prelude::{Buffer, Function, This, Unknown};
use napi::{Env, JsValue, sys};
use napi_derive::napi;
use tokio::sync::{mpsc, oneshot};

use crate::bridge::{JsBuffer, JsMsgpack, Native, ToJs, promise};
use crate::error::Failure;
use crate::handler::{handler, handler_callback};
use crate::identity::DeviceInfo;
use crate::value;

/// Per-call options.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// Overrides the node's `callTimeoutMs` for this call.
    pub timeout_ms: Option<f64>,
}

fn call_options(o: Option<CallOptions>) -> peerlink::CallOptions {
    {
        let mut options = peerlink::CallOptions::default();
        if let Some(ms) = o
            .and_then(|o| o.timeout_ms)
            .filter(|ms| ms.is_finite() && *ms >= 0.0)
        {
            options.timeout = Some(Duration::from_secs_f64(ms / 1000.0));
        }
        options
    }
}

/// Why a connection closed.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct CloseInfo {
    /// Stable code (`closed_locally`, `closed_by_peer`, `transport_closed`, `node_closed`…).
    pub code: String,
    /// Human-readable text.
    pub message: String,
}

impl From<&peerlink::CloseReason> for CloseInfo {
    fn from(r: &peerlink::CloseReason) -> Self {
        Self {
            code: r.code().to_owned(),
            message: r.to_string(),
        }
    }
}

/// One end of a WebRTC candidate pair.
#[napi(object)]
#[derive(Debug, Clone)]
#[allow(unreachable_pub)] // a JS type: only ever passed out
pub struct PathCandidate {
    /// `host`, `srflx`, `prflx` or `relay`.
    pub candidate_type: String,
    /// `udp` or `tcp`.
    pub protocol: String,
    /// The candidate's IP address (or mDNS name).
    pub address: String,
    /// The candidate's port.
    pub port: u32,
    /// For this side's relay candidate: how this device reaches the TURN server (`udp`,
    /// `tcp` or `tls`); the relayed side is UDP either way. Absent for other candidates
    /// (host, srflx, prflx, the peer's) and when the engine does not say.
    #[napi(ts_type = "'udp' | 'tcp' | 'tls'")]
    pub relay_protocol: Option<String>,
}

impl From<peerlink::PathCandidate> for PathCandidate {
    fn from(c: peerlink::PathCandidate) -> Self {
        Self {
            candidate_type: c.candidate_type,
            protocol: c.protocol,
            address: c.address,
            port: u32::from(c.port),
            relay_protocol: c.relay_protocol,
        }
    }
}

/// Which path a connection uses and what it carried (`connection.path()`).
#[napi(object)]
#[derive(Debug, Clone)]
#[allow(unreachable_pub)] // a JS type: only ever passed out
pub struct PathReport {
    /// The link kind (`websocket`, `webrtc`, `memory`, `relay`).
    pub kind: String,
    /// This side's candidate of the selected pair (WebRTC only).
    pub local: Option<PathCandidate>,
    /// The peer's candidate of the selected pair (WebRTC only).
    pub remote: Option<PathCandidate>,
    /// Latest round-trip time of the pair's ICE checks, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Bytes sent over the selected pair (0 where the transport does not count).
    pub bytes_sent: f64,
    /// Bytes received over the selected pair.
    pub bytes_received: f64,
    /// Datagrams sent over the selected pair.
    pub packets_sent: f64,
    /// Datagrams received over the selected pair.
    pub packets_received: f64,
    /// How often the selected pair changed (ICE restarts and re-nominations).
    pub selected_pair_changes: u32,
    /// ICE restarts this side started or asked for.
    pub ice_restarts: u32,
}

impl From<peerlink::PathReport> for PathReport {
    fn from(r: peerlink::PathReport) -> Self {
        Self {
            kind: r.kind.as_str().to_owned(),
            local: r.local.map(PathCandidate::from),
            remote: r.remote.map(PathCandidate::from),
            rtt_ms: r.rtt_ms,
            bytes_sent: r.bytes_sent as f64,
            bytes_received: r.bytes_received as f64,
            packets_sent: r.packets_sent as f64,
            packets_received: r.packets_received as f64,
            selected_pair_changes: r.selected_pair_changes,
            ice_restarts: r.ice_restarts,
        }
    }
}

/// Encodes an optional JS value as MessagePack on the JS thread (`undefined` → nil).
pub(crate) fn encode_args(env: &Env, args: Option<Unknown<'_>>) -> Result<Bytes, Failure> {
    match args {
        None => Ok(Bytes::from_static(&[0xc0])),
        Some(v) => value::encode(env.raw(), v.raw())
            .map(Bytes::from)
            .map_err(|e| Failure::new("encode", format!("cannot encode arguments: {e}"))),
    }
}

/// Copies the bytes of a `Buffer`/typed array/`ArrayBuffer` argument.
pub(crate) fn bytes_arg(env: &Env, data: &Unknown<'_>) -> Result<Bytes, Failure> {
    match value::byte_view(env.raw(), data.raw()) {
        Ok(Some(bytes)) => Ok(Bytes::copy_from_slice(bytes)),
        _ => Err(Failure::new(
            "invalid_argument",
            "expected a Buffer, Uint8Array or ArrayBuffer",
        )),
    }
}

fn rejected(env: &Env, failure: Failure) -> napi::Result<sys::napi_value> {
    promise::<(), _>(env, async move { Err(failure) })
}

/// A verified connection to a remote device.
#[napi]
pub struct Connection {
    pub(crate) inner: peerlink::Connection,
}

impl From<peerlink::Connection> for Connection {
    fn from(inner: peerlink::Connection) -> Self {
        Self { inner }
    }
}

#[napi]
impl Connection {
    /// Process-unique id of this connection.
    #[napi(getter)]
    pub fn id(&self) -> f64 {
        self.inner.id() as f64
    }

    /// The peer's verified device info.
    #[napi(getter)]
    pub fn remote(&self) -> DeviceInfo {
        DeviceInfo::from(self.inner.remote())
    }

    /// The level the trust policy gave the peer.
    #[napi(getter)]
    pub fn trust_level(&self) -> i32 {
        self.inner.trust_level().0
    }

    /// The link kind (`websocket`, `webrtc`, `memory`…).
    #[napi(getter)]
    pub fn transport_kind(&self) -> String {
        self.inner.transport_kind().as_str().to_owned()
    }

    /// `initiator` when this side dialled, `responder` when it accepted.
    #[napi(getter)]
    pub fn role(&self) -> String {
        match self.inner.role() {
            peerlink::Role::Initiator => "initiator".into(),
            _ => "responder".into(),
        }
    }

    /// Whether the connection is still open.
    #[napi(getter)]
    pub fn is_open(&self) -> bool {
        self.inner.is_open()
    }

    /// Why the connection closed, or `null` while open.
    #[napi(getter)]
    pub fn close_reason(&self) -> Option<CloseInfo> {
        self.inner.close_reason().as_ref().map(CloseInfo::from)
    }

    /// The Noise handshake hash: equal on both sides, unique per connection.
    #[napi(getter)]
    pub fn handshake_hash(&self) -> Buffer {
        self.inner.handshake_hash().to_vec().into()
    }

    /// Bytes queued for sending.
    #[napi(getter)]
    pub fn queued_bytes(&self) -> f64 {
        self.inner.queued_bytes() as f64
    }

    /// Calls `name` on the peer with `args` (any MessagePack-able value; Buffers travel as
    /// binary) and resolves with its result.
    #[napi(
        ts_args_type = "name: string, args?: unknown, options?: CallOptions",
        ts_return_type = "Promise<any>"
    )]
    pub fn call(
        &self,
        env: Env,
        name: String,
        args: Option<Unknown<'_>>,
        options: Option<CallOptions>,
    ) -> napi::Result<sys::napi_value> {
        let body = match encode_args(&env, args) {
            Ok(b) => b,
            Err(f) => return rejected(&env, f),
        };
        let connection = self.inner.clone();
        let options = call_options(options);
        promise(&env, async move {
            let reply = connection.call_raw(&name, body, options).await?;
            Ok(JsMsgpack(reply))
        })
    }

    /// Calls a raw handler (`exposeRaw`) with bytes and resolves with its bytes: no encoding.
    #[napi(
        ts_args_type = "name: string, data: Uint8Array | ArrayBuffer, options?: CallOptions",
        ts_return_type = "Promise<Buffer>"
    )]
    pub fn call_raw(
        &self,
        env: Env,
        name: String,
        data: Unknown<'_>,
        options: Option<CallOptions>,
    ) -> napi::Result<sys::napi_value> {
        let body = match bytes_arg(&env, &data) {
            Ok(b) => b,
            Err(f) => return rejected(&env, f),
        };
        let connection = self.inner.clone();
        let options = call_options(options);
        promise(&env, async move {
            let reply = connection.call_raw(&name, body, options).await?;
            Ok(JsBuffer(reply))
        })
    }

    /// Sends a one-way message; resolves once it is queued.
    #[napi(
        ts_args_type = "name: string, args?: unknown",
        ts_return_type = "Promise<void>"
    )]
    pub fn notify(
        &self,
        env: Env,
        name: String,
        args: Option<Unknown<'_>>,
    ) -> napi::Result<sys::napi_value> {
        let body = match encode_args(&env, args) {
            Ok(b) => b,
            Err(f) => return rejected(&env, f),
        };
        let connection = self.inner.clone();
        promise(&env, async move {
            connection.notify_raw(&name, body).await?;
            Ok(())
        })
    }

    /// Sends a one-way message of raw bytes to a raw handler.
    #[napi(
        ts_args_type = "name: string, data: Uint8Array | ArrayBuffer",
        ts_return_type = "Promise<void>"
    )]
    pub fn notify_raw(
        &self,
        env: Env,
        name: String,
        data: Unknown<'_>,
    ) -> napi::Result<sys::napi_value> {
        let body = match bytes_arg(&env, &data) {
            Ok(b) => b,
            Err(f) => return rejected(&env, f),
        };
        let connection = self.inner.clone();
        promise(&env, async move {
            connection.notify_raw(&name, body).await?;
            Ok(())
        })
    }

    /// Registers `handler(args, ctx)` for `name` on this connection only (it wins over a
    /// node-wide handler of the same name). Released when the connection closes.
    #[napi(ts_args_type = "name: string, handler: (args: any, ctx: RequestContext) => unknown")]
    pub fn expose(
        &self,
        name: String,
        handler_fn: Function<'_, Unknown<'static>, Unknown<'static>>,
    ) -> napi::Result<()> {
        self.inner
            .expose(name, handler(handler_callback(&handler_fn, false)?, false));
        Ok(())
    }

    /// Registers a raw handler: it receives a `Buffer` and returns bytes.
    #[napi(
        ts_args_type = "name: string, handler: (data: Buffer, ctx: RequestContext) => Uint8Array | Promise<Uint8Array>"
    )]
    pub fn expose_raw(
        &self,
        name: String,
        handler_fn: Function<'_, Unknown<'static>, Unknown<'static>>,
    ) -> napi::Result<()> {
        self.inner
            .expose(name, handler(handler_callback(&handler_fn, true)?, true));
        Ok(())
    }

    /// Removes this connection's handler for `name`.
    #[napi]
    pub fn unexpose(&self, name: String) {
        self.inner.unexpose(&name);
    }

    /// The path in use: the kind always; for WebRTC the selected candidate pair
    /// (host/srflx/prflx/relay, udp/tcp), its round-trip time and counters once ICE selected
    /// one. After a close, only the kind.
    #[napi(ts_return_type = "Promise<PathReport>")]
    pub fn path(&self, env: Env) -> napi::Result<sys::napi_value> {
        let connection = self.inner.clone();
        promise(&env, async move {
            Ok(Native(PathReport::from(connection.path().await)))
        })
    }

    /// Measures the round-trip time, in milliseconds.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn ping(&self, env: Env) -> napi::Result<sys::napi_value> {
        let connection = self.inner.clone();
        promise(&env, async move {
            let rtt = connection.ping().await?;
            Ok(rtt.as_secs_f64() * 1000.0)
        })
    }

    /// Opens a byte stream named `name`; the peer receives it from `acceptStream()`.
    #[napi(ts_return_type = "Promise<SendStream>")]
    pub fn open_stream(&self, env: Env, name: String) -> napi::Result<sys::napi_value> {
        let connection = self.inner.clone();
        promise(&env, async move {
            let stream = connection.open_stream(&name).await?;
            Ok(Native(SendStream::spawn(stream)))
        })
    }

    /// The next byte stream the peer opened, or `null` once the connection closed.
    #[napi(ts_return_type = "Promise<RecvStream | null>")]
    pub fn accept_stream(&self, env: Env) -> napi::Result<sys::napi_value> {
        let connection = self.inner.clone();
        promise(&env, async move {
            Ok(connection
                .accept_stream()
                .await
                .map(|s| Native(RecvStream::spawn(s))))
        })
    }

    /// Closes the connection, telling the peer `reason`. Pending calls fail with code `closed`.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self, env: Env, reason: Option<String>) -> napi::Result<sys::napi_value> {
        let connection = self.inner.clone();
        promise(&env, async move {
            connection
                .close(reason.as_deref().unwrap_or("closed"))
                .await;
            Ok(())
        })
    }

    /// `await using connection = …` closes it.
    #[napi(well_known_symbol = "asyncDispose", ts_return_type = "Promise<void>")]
    pub fn async_dispose(&self, env: Env) -> napi::Result<sys::napi_value> {
        self.close(env, None)
    }

    /// Resolves when the connection closes, with why. Keeps the process alive while pending.
    #[napi(getter, ts_return_type = "Promise<CloseInfo>")]
    pub fn closed(&self, env: Env) -> napi::Result<sys::napi_value> {
        let connection = self.inner.clone();
        promise(&env, async move {
            let reason = connection.closed().await;
            Ok(Native(CloseInfo::from(&reason)))
        })
    }
}

enum WriteCommand {
    Write(Bytes, oneshot::Sender<Result<(), Failure>>),
    End(oneshot::Sender<Result<(), Failure>>),
    Reset(String),
}

/// The writing half of a byte stream. `await write(buf)` resolves once the peer granted credit
/// for the bytes and they are queued: awaiting each write is the back-pressure.
#[napi]
pub struct SendStream {
    name: String,
    id: f64,
    commands: mpsc::UnboundedSender<WriteCommand>,
}

fn stream_gone() -> Failure {
    Failure::new("stream_reset", "the stream is finished or closed")
}

impl SendStream {
    fn spawn(stream: peerlink::SendStream) -> Self {
        let (commands, mut rx) = mpsc::unbounded_channel();
        let name = stream.name().to_owned();
        let id = stream.id() as f64;
        // One task owns the stream, so writes go out in the order JS made them. It ends when
        // the stream ends or the JS object is collected (dropping an unfinished stream resets it).
        peerlink::runtime::handle().spawn(async move {
            let mut stream = Some(stream);
            while let Some(command) = rx.recv().await {
                match command {
                    WriteCommand::Write(data, done) => {
                        let result = match stream.as_mut() {
                            Some(s) => s.send(data).await.map_err(Failure::from),
                            None => Err(stream_gone()),
                        };
                        if result.is_err() {
                            stream = None;
                        }
                        let _ = done.send(result);
                    }
                    WriteCommand::End(done) => {
                        let result = match stream.take() {
                            Some(s) => s.finish().await.map_err(Failure::from),
                            None => Err(stream_gone()),
                        };
                        let _ = done.send(result);
                    }
                    WriteCommand::Reset(code) => {
                        if let Some(s) = stream.take() {
                            s.reset(&code);
                        }
                    }
                }
            }
        });
        Self { name, id, commands }
    }

    fn send(
        &self,
        env: &Env,
        make: impl FnOnce(oneshot::Sender<Result<(), Failure>>) -> WriteCommand,
    ) -> napi::Result<sys::napi_value> {
        let (tx, rx) = oneshot::channel();
        let queued = self.commands.send(make(tx)).is_ok();
        promise(env, async move {
            if !queued {
                return Err(stream_gone());
            }
            rx.await.unwrap_or_else(|_| Err(stream_gone()))
        })
    }
}

#[napi]
impl SendStream {
    /// The stream's name.
    #[napi(getter)]
    pub fn name(&self) -> String {
        self.name.clone()
    }

    /// The stream id on its connection.
    #[napi(getter)]
    pub fn id(&self) -> f64 {
        self.id
    }

    /// Sends `data` (copied); resolves when it is queued within the peer's credit.
    #[napi(
        ts_args_type = "data: Uint8Array | ArrayBuffer",
        ts_return_type = "Promise<void>"
    )]
    pub fn write(&self, env: Env, data: Unknown<'_>) -> napi::Result<sys::napi_value> {
        match bytes_arg(&env, &data) {
            Ok(bytes) => self.send(&env, |tx| WriteCommand::Write(bytes, tx)),
            Err(f) => rejected(&env, f),
        }
    }

    /// Ends the stream after the bytes written so far; the reader sees the end.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn end(&self, env: Env) -> napi::Result<sys::napi_value> {
        self.send(&env, WriteCommand::End)
    }

    /// Aborts the stream; the reader fails with code `stream_reset`.
    #[napi]
    pub fn reset(&self, code: Option<String>) {
        let _ = self
            .commands
            .send(WriteCommand::Reset(code.unwrap_or_else(|| "reset".into())));
    }

    /// Ends the stream if it is still open (errors are ignored).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self, env: Env) -> napi::Result<sys::napi_value> {
        let (tx, rx) = oneshot::channel();
        let _ = self.commands.send(WriteCommand::End(tx));
        promise(&env, async move {
            let _ = rx.await;
            Ok(())
        })
    }

    /// `await using` ends the stream.
    #[napi(well_known_symbol = "asyncDispose", ts_return_type = "Promise<void>")]
    pub fn async_dispose(&self, env: Env) -> napi::Result<sys::napi_value> {
        self.close(env)
    }
}

/// One step of an async iterator.
struct IterStep(Option<Bytes>);

impl ToJs for IterStep {
    fn to_js(self, env: &Env) -> Result<sys::napi_value, Failure> {
        let raw = env.raw();
        let object = value::object(raw).map_err(|e| Failure::new("internal", e.0))?;
        let done =
            value::boolean(raw, self.0.is_none()).map_err(|e| Failure::new("internal", e.0))?;
        let _ = value::set_own(raw, object, "done", done);
        let item = match self.0 {
            Some(bytes) => value::buffer(raw, &bytes).map_err(|e| Failure::new("internal", e.0))?,
            None => crate::bridge::undefined(raw),
        };
        let _ = value::set_own(raw, object, "value", item);
        Ok(object)
    }
}

type ReadRequest = oneshot::Sender<Result<Option<Bytes>, Failure>>;

/// The reading half of a byte stream the peer opened: `for await (const chunk of stream)`
/// yields Buffers. Reading is what grants the sender more credit.
#[napi]
pub struct RecvStream {
    name: String,
    id: f64,
    requests: std::sync::Mutex<Option<mpsc::UnboundedSender<ReadRequest>>>,
}

impl RecvStream {
    fn spawn(mut stream: peerlink::RecvStream) -> Self {
        let (requests, mut rx) = mpsc::unbounded_channel::<ReadRequest>();
        let name = stream.name().to_owned();
        let id = stream.id() as f64;
        // Reads are served in the order JS asked; dropping the stream (close, or the JS object
        // collected) before its end tells the sender `cancelled`.
        peerlink::runtime::handle().spawn(async move {
            let mut ended = false;
            while let Some(request) = rx.recv().await {
                let result = if ended {
                    Ok(None)
                } else {
                    match stream.recv().await {
                        Some(Ok(data)) => Ok(Some(data)),
                        Some(Err(e)) => {
                            ended = true;
                            Err(Failure::from(e))
                        }
                        None => {
                            ended = true;
                            Ok(None)
                        }
                    }
                };
                let _ = request.send(result);
            }
        });
        Self {
            name,
            id,
            requests: std::sync::Mutex::new(Some(requests)),
        }
    }

    fn request(&self, env: &Env, step: bool) -> napi::Result<sys::napi_value> {
        let (tx, rx) = oneshot::channel();
        let queued = self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|r| r.send(tx).is_ok());
        if step {
            promise(env, async move {
                if !queued {
                    return Ok(IterStep(None));
                }
                Ok(IterStep(rx.await.unwrap_or(Ok(None))?))
            })
        } else {
            promise(env, async move {
                if !queued {
                    return Ok(None);
                }
                Ok(rx.await.unwrap_or(Ok(None))?.map(JsBuffer))
            })
        }
    }
}

#[napi]
impl RecvStream {
    /// The name the opener gave the stream.
    #[napi(getter)]
    pub fn name(&self) -> String {
        self.name.clone()
    }

    /// The stream id on its connection.
    #[napi(getter)]
    pub fn id(&self) -> f64 {
        self.id
    }

    /// The next chunk, or `null` at the end of the stream.
    #[napi(ts_return_type = "Promise<Buffer | null>")]
    pub fn read(&self, env: Env) -> napi::Result<sys::napi_value> {
        self.request(&env, false)
    }

    /// Async-iterator step.
    #[napi(ts_return_type = "Promise<IteratorResult<Buffer, undefined>>")]
    pub fn next(&self, env: Env) -> napi::Result<sys::napi_value> {
        self.request(&env, true)
    }

    /// Stops reading (a `break` out of `for await`): the sender sees `cancelled`.
    #[napi(
        js_name = "return",
        ts_return_type = "Promise<IteratorResult<Buffer, undefined>>"
    )]
    pub fn stop(&self, env: Env) -> napi::Result<sys::napi_value> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        promise(&env, async move { Ok(IterStep(None)) })
    }

    /// Stops reading; unread data is dropped and the sender sees `cancelled`.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self, env: Env) -> napi::Result<sys::napi_value> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        promise(&env, async move { Ok(()) })
    }

    /// `await using` stops reading.
    #[napi(well_known_symbol = "asyncDispose", ts_return_type = "Promise<void>")]
    pub fn async_dispose(&self, env: Env) -> napi::Result<sys::napi_value> {
        self.close(env)
    }

    /// `for await (const chunk of stream)`.
    #[napi(
        well_known_symbol = "asyncIterator",
        ts_return_type = "AsyncIterator<Buffer>"
    )]
    pub fn async_iterator<'a>(&self, this: This<'a>) -> This<'a> {
        this
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.inner.id())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SendStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendStream")
            .field("name", &self.name)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RecvStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvStream")
            .field("name", &self.name)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}
