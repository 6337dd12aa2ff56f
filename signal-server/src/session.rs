//! One client connection: challenge, authentication, then requests, signals and relay frames,
//! heartbeats and shutdown. Generic over any `Sink`/`Stream` of WebSocket messages, so tests
//! drive it through channels and the server through axum.
//!
//! Everything for one client runs in this one task: reading, writing queued messages, timers.
//! Nothing else is spawned per client, which keeps an idle client to a task, a socket, a
//! queue and a few small structures.

use std::collections::VecDeque;
use std::future::Future as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use base64::Engine as _;
use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use rand::RngCore as _;

use crate::auth::{AuthClaim, verify};
use crate::hub::{Client, Hub, Out, Route};
use crate::metrics::Metrics;
use crate::protocol::{
    CHALLENGE_LEN, ErrorCode, Incoming, Limits, Member, Outgoing, PROTOCOL_VERSION, error_text,
    parse_relay_frame, relay_frame, signal_text, valid_id, valid_room,
};
use crate::queue::TrySend;
use crate::rate::Bucket;

/// WebSocket close code sent with fatal protocol errors (the reason is the error code).
pub const CLOSE_PROTOCOL_ERROR: u16 = 4000;
/// WebSocket close code of a graceful shutdown (1012, "service restart"): reconnect.
pub const CLOSE_SERVICE_RESTART: u16 = 1012;

/// How long a closing session keeps reading for the client's close reply.
const CLOSE_DRAIN: Duration = Duration::from_secs(2);

/// A relay frame waiting for room in its target's queue.
struct PendingForward {
    dest: Arc<Client>,
    frame: Out,
    target: String,
    deadline: tokio::time::Instant,
}

enum Flow {
    Continue,
    Close(ErrorCode),
}

/// Why [`Session::queue_local`] did not queue a message.
enum LocalSend {
    /// The device has no connection on this instance (the message is handed back).
    NotLocal(Out),
    /// The target's queue is full (the message and the target are handed back).
    Full(Out, Arc<Client>),
    /// The target's connection has just ended.
    Closed,
    /// Routing elsewhere failed with this error.
    Failed(ErrorCode),
}

struct Session<S> {
    hub: Arc<Hub>,
    socket: S,
    ip: IpAddr,
    host: Option<String>,
    challenge: [u8; CHALLENGE_LEN],
    client: Option<Arc<Client>>,
    /// The local client this session last sent to: a client signals one peer many times in a
    /// row (offer, answer, candidates), and reusing the handle skips the device map.
    target: Option<Arc<Client>>,
    rooms: Vec<String>,
    bucket: Bucket,
    relay_bucket: Bucket,
    strikes: u32,
    last_heard: tokio::time::Instant,
    read_paused_until: Option<tokio::time::Instant>,
}

/// Runs one client connection to its end.
pub(crate) async fn run_session<S, E>(hub: Arc<Hub>, socket: S, ip: IpAddr, host: Option<String>)
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin + Send,
    E: std::fmt::Display,
{
    let now = Instant::now();
    Metrics::inc(&hub.metrics.connections_total);
    Metrics::gauge(&hub.metrics.connections_open, 1);
    let _open = OpenGuard(Arc::clone(&hub));
    let mut socket = socket;
    let Some(_slot) = hub.ip_connect(ip, now) else {
        hub.metrics.reject(ErrorCode::TooManyConnections);
        let _ = close_with(&mut socket, ErrorCode::TooManyConnections, None).await;
        return;
    };
    let mut challenge = [0u8; CHALLENGE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut challenge);
    let mut session = Session {
        bucket: Bucket::new(hub.config.message_rate, now),
        relay_bucket: Bucket::new(hub.config.relay_byte_rate, now),
        hub,
        socket,
        ip,
        host,
        challenge,
        client: None,
        target: None,
        rooms: Vec::new(),
        strikes: 0,
        last_heard: tokio::time::Instant::now(),
        read_paused_until: None,
    };
    session.run().await;
    if let Some(client) = &session.client {
        // From here on, messages for this client fail with `target_offline`.
        client.queue.close();
    }
    Box::pin(session.cleanup()).await;
}

struct OpenGuard(Arc<Hub>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        Metrics::gauge(&self.0.metrics.connections_open, -1);
    }
}

async fn close_with<S>(socket: &mut S, code: ErrorCode, re: Option<u64>) -> Result<(), S::Error>
where
    S: Sink<Message> + Unpin,
{
    socket
        .feed(Message::Text(error_text(code, re, None).into()))
        .await?;
    socket
        .send(Message::Close(Some(CloseFrame {
            code: CLOSE_PROTOCOL_ERROR,
            reason: Utf8Bytes::from_static(code.as_str()),
        })))
        .await
}

impl<S, E> Session<S>
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin + Send,
    E: std::fmt::Display,
{
    async fn write(&mut self, message: Message) -> bool {
        let timeout = self.hub.config.write_timeout;
        // Boxed, like every rarely taken path below: a session's future is as large as its
        // largest state, and every connection keeps one for its whole life.
        let send = Box::pin(tokio::time::timeout(timeout, self.socket.send(message)));
        matches!(send.await, Ok(Ok(())))
    }

    async fn write_text(&mut self, text: String) -> bool {
        self.write(Message::Text(text.into())).await
    }

    async fn reject(&mut self, code: ErrorCode, re: Option<u64>, to: Option<&str>) -> Flow {
        self.hub.metrics.reject(code);
        if code.is_fatal() {
            return Flow::Close(code);
        }
        self.strikes += 1;
        if self.strikes > self.hub.config.max_strikes {
            self.hub.metrics.reject(ErrorCode::Abuse);
            return Flow::Close(ErrorCode::Abuse);
        }
        if self.write_text(error_text(code, re, to)).await {
            Flow::Continue
        } else {
            Flow::Close(ErrorCode::SlowConsumer)
        }
    }

    async fn run(&mut self) {
        let hub = Arc::clone(&self.hub);
        let config = &hub.config;
        let challenge_b64 = base64::engine::general_purpose::STANDARD.encode(self.challenge);
        let hello = Outgoing::Challenge {
            v: PROTOCOL_VERSION,
            versions: &[PROTOCOL_VERSION],
            challenge: &challenge_b64,
            heartbeat_ms: duration_ms(config.heartbeat_interval),
            timeout_ms: duration_ms(config.heartbeat_timeout),
            limits: Limits {
                max_text_bytes: config.max_text_bytes,
                max_relay_payload: config.max_relay_payload,
                max_rooms: config.max_rooms_per_client,
            },
        }
        .to_text();
        if !self.write_text(hello).await {
            return;
        }
        let auth_deadline = tokio::time::Instant::now() + config.auth_timeout;
        let heartbeat = config.heartbeat_interval;
        let mut next_tick = tokio::time::Instant::now() + heartbeat;
        let mut batch: VecDeque<Out> = VecDeque::new();
        let mut pending: Option<PendingForward> = None;
        let mut shutdown = self.hub.shutdown.clone();
        if *shutdown.borrow() {
            Box::pin(self.shutdown()).await;
            return;
        }
        let shutdown_seen = shutdown.clone();
        // Polled once to register this task with the shutdown signal; after that a version
        // check (an atomic load) tells whether it fired, so the loop takes no shared lock.
        let shutdown_changed = shutdown.changed();
        tokio::pin!(shutdown_changed);
        let mut shutdown_registered = false;
        // One timer for the whole connection, moved only when its deadline changes.
        let timer = tokio::time::sleep_until(next_tick.min(auth_deadline));
        tokio::pin!(timer);
        let mut client: Option<Arc<Client>> = None;

        // Ends when the client leaves, breaks a rule, stalls, or the server shuts down; every
        // branch either makes progress or ends the loop.
        loop {
            let deadline = if self.client.is_none() {
                next_tick.min(auth_deadline)
            } else {
                next_tick
            };
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            if client.is_none() {
                client.clone_from(&self.client);
            }
            let read_allowed = pending.is_none() && self.read_paused_until.is_none();
            let paused = self.read_paused_until;
            let flow = tokio::select! {
                biased;
                () = std::future::poll_fn(|cx| {
                    if !shutdown_registered {
                        shutdown_registered = true;
                        if shutdown_changed.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(());
                        }
                    }
                    match shutdown_seen.has_changed() {
                        Ok(false) => Poll::Pending,
                        _ => Poll::Ready(()),
                    }
                }) => {
                    Box::pin(self.shutdown()).await;
                    return;
                }
                next = std::future::poll_fn(|cx| match &client {
                    Some(c) => c.poll_next(cx, &mut batch),
                    None => Poll::Pending,
                }) => match next {
                    Ok(true) => self.write_batch(&mut batch).await,
                    Ok(false) => Flow::Close(ErrorCode::Internal),
                    Err(code) => Flow::Close(code),
                },
                room = async {
                    match pending.as_ref() {
                        Some(p) => {
                            Box::pin(tokio::time::timeout_at(p.deadline, p.dest.queue.wait_space()))
                                .await
                        }
                        None => std::future::pending().await,
                    }
                } => match pending.take() {
                    Some(forward) => Box::pin(self.retry_forward(room.is_ok(), forward, &mut pending)).await,
                    None => Flow::Continue,
                },
                _ = async {
                    match paused {
                        Some(t) => Box::pin(tokio::time::sleep_until(t)).await,
                        None => std::future::pending().await,
                    }
                } => {
                    self.read_paused_until = None;
                    Flow::Continue
                }
                incoming = self.socket.next(), if read_allowed => match incoming {
                    Some(Ok(message)) => {
                        self.last_heard = tokio::time::Instant::now();
                        self.on_message(message, &mut pending).await
                    }
                    Some(Err(e)) => {
                        tracing::debug!(ip = %self.ip, error = %e, "websocket read failed");
                        return;
                    }
                    None => return,
                },
                () = &mut timer => {
                    let now = tokio::time::Instant::now();
                    if self.client.is_none() && now >= auth_deadline {
                        self.hub.metrics.reject(ErrorCode::AuthTimeout);
                        Flow::Close(ErrorCode::AuthTimeout)
                    } else if self.last_heard.elapsed() >= self.hub.config.heartbeat_timeout {
                        self.hub.metrics.reject(ErrorCode::HeartbeatTimeout);
                        Flow::Close(ErrorCode::HeartbeatTimeout)
                    } else {
                        next_tick = now + heartbeat;
                        self.strikes = 0;
                        if Box::pin(self.write(Message::Ping(Bytes::new()))).await {
                            Flow::Continue
                        } else {
                            Flow::Close(ErrorCode::SlowConsumer)
                        }
                    }
                }
            };
            if let Flow::Close(code) = flow {
                Box::pin(self.close(code)).await;
                return;
            }
        }
    }

    async fn close(&mut self, code: ErrorCode) {
        tracing::debug!(ip = %self.ip, code = code.as_str(), "closing connection");
        let _ = tokio::time::timeout(
            self.hub.config.write_timeout,
            close_with(&mut self.socket, code, None),
        )
        .await;
        self.drain_until_closed().await;
    }

    /// Reads and discards until the client answers the close (or a short bound passes), so
    /// that unread data does not turn the close into a connection reset that loses the
    /// close frame and the error before it.
    async fn drain_until_closed(&mut self) {
        let _ = tokio::time::timeout(CLOSE_DRAIN, async {
            // Bounded by CLOSE_DRAIN.
            while let Some(Ok(message)) = self.socket.next().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }

    async fn shutdown(&mut self) {
        let text = Outgoing::Reconnect {
            reason: "shutdown",
            retry_ms: duration_ms(self.hub.config.reconnect_hint),
        }
        .to_text();
        let timeout = self.hub.config.write_timeout;
        let _ = tokio::time::timeout(timeout, async {
            self.socket.feed(Message::Text(text.into())).await?;
            self.socket
                .send(Message::Close(Some(CloseFrame {
                    code: CLOSE_SERVICE_RESTART,
                    reason: Utf8Bytes::from_static("shutdown"),
                })))
                .await
        })
        .await;
        self.drain_until_closed().await;
    }

    /// Writes every queued message and flushes once: one system call for the whole batch
    /// (the socket collects frames up to its write buffer size).
    async fn write_batch(&mut self, batch: &mut VecDeque<Out>) -> Flow {
        let timeout = self.hub.config.write_timeout;
        let socket = &mut self.socket;
        let result = tokio::time::timeout(timeout, async {
            // Bounded by the queue's capacity.
            while let Some(out) = batch.pop_front() {
                socket.feed(out_message(out)).await?;
            }
            socket.flush().await
        })
        .await;
        batch.clear();
        match result {
            Ok(Ok(())) => Flow::Continue,
            _ => Flow::Close(ErrorCode::SlowConsumer),
        }
    }

    /// Tries again to queue a relay frame that met a full queue, once its target had room
    /// (`room`) or its deadline passed.
    async fn retry_forward(
        &mut self,
        room: bool,
        forward: PendingForward,
        pending: &mut Option<PendingForward>,
    ) -> Flow {
        if !room {
            return self
                .reject(ErrorCode::TargetBusy, None, Some(&forward.target))
                .await;
        }
        match forward.dest.queue.try_send(forward.frame) {
            Ok(()) => Flow::Continue,
            Err(TrySend::Full(frame)) => {
                *pending = Some(PendingForward { frame, ..forward });
                Flow::Continue
            }
            Err(TrySend::Closed(_)) => {
                self.reject(ErrorCode::TargetOffline, None, Some(&forward.target))
                    .await
            }
        }
    }

    async fn on_message(&mut self, message: Message, pending: &mut Option<PendingForward>) -> Flow {
        match message {
            Message::Text(text) => {
                if text.len() > self.hub.config.max_text_bytes {
                    return self.reject(ErrorCode::TooLarge, None, None).await;
                }
                let now = Instant::now();
                let rate = self.hub.config.message_rate;
                if !self.bucket.try_take(rate, 1.0, now) || !self.hub.ip_allows(self.ip, now) {
                    return self.reject(ErrorCode::RateLimited, None, None).await;
                }
                Metrics::inc(&self.hub.metrics.messages_in);
                let incoming: Incoming<'_> = match serde_json::from_str(text.as_str()) {
                    Ok(m) => m,
                    Err(_) => return self.reject(ErrorCode::InvalidJson, None, None).await,
                };
                if self.client.is_none() {
                    Box::pin(self.on_unauthenticated(incoming)).await
                } else {
                    self.on_request(incoming).await
                }
            }
            Message::Binary(frame) => {
                if self.client.is_none() {
                    return self.reject(ErrorCode::NotAuthenticated, None, None).await;
                }
                self.on_relay_frame(frame, pending).await
            }
            Message::Close(_) => Flow::Close(ErrorCode::Internal),
            // Pongs only refresh `last_heard`; pings are answered by the WebSocket layer.
            Message::Ping(_) | Message::Pong(_) => Flow::Continue,
        }
    }

    async fn on_unauthenticated(&mut self, m: Incoming<'_>) -> Flow {
        if m.kind != "auth" {
            return self.reject(ErrorCode::NotAuthenticated, m.id, None).await;
        }
        let (Some(public_key), Some(device_id), Some(user_id), Some(signature), Some(host)) = (
            m.public_key.as_deref(),
            m.device_id.as_deref(),
            m.user_id.as_deref(),
            m.signature.as_deref(),
            m.host.as_deref(),
        ) else {
            return self.reject(ErrorCode::InvalidMessage, m.id, None).await;
        };
        let claim = AuthClaim {
            version: m.v.unwrap_or(0),
            public_key,
            device_id,
            user_id,
            signature,
            host,
            token: m.token.as_deref(),
        };
        let verified = verify(
            &claim,
            &self.challenge,
            self.host.as_deref(),
            &self.hub.config.allowed_hosts,
            &self.hub.config.admission,
            unix_secs(),
        );
        let verified = match verified {
            Ok(v) => v,
            Err(code) => {
                tracing::info!(ip = %self.ip, code = code.as_str(), "authentication refused");
                return self.reject(code, m.id, None).await;
            }
        };
        let member = Member {
            device_id: device_id.to_owned(),
            user_id: user_id.to_owned(),
            public_key: verified.public_key.to_base64(),
        };
        let client = Arc::new(Client::new(
            self.hub.next_conn_id(),
            member,
            self.hub.config.client_queue,
        ));
        if let Err(code) = self.hub.register(&client).await {
            return self.reject(code, m.id, None).await;
        }
        // Fresh bytes so the old challenge can never verify again on this connection.
        rand::rngs::OsRng.fill_bytes(&mut self.challenge);
        Metrics::gauge(&self.hub.metrics.authenticated_open, 1);
        tracing::info!(ip = %self.ip, device = %client.member.device_id, "authenticated");
        let welcome = Outgoing::Welcome {
            re: m.id,
            device_id: &client.member.device_id,
            user_id: &client.member.user_id,
            public_key: &client.member.public_key,
        }
        .to_text();
        self.client = Some(client);
        if self.write_text(welcome).await {
            Flow::Continue
        } else {
            Flow::Close(ErrorCode::SlowConsumer)
        }
    }

    async fn on_request(&mut self, m: Incoming<'_>) -> Flow {
        let Some(client) = self.client.clone() else {
            return Flow::Close(ErrorCode::Internal);
        };
        match m.kind.as_ref() {
            "auth" => {
                self.reject(ErrorCode::AlreadyAuthenticated, m.id, None)
                    .await
            }
            "ping" => {
                let text = Outgoing::Pong { re: m.id }.to_text();
                self.reply(text).await
            }
            "join" => {
                let Some(room) = m.room.as_deref().filter(|r| valid_room(r)) else {
                    return self.reject(ErrorCode::InvalidMessage, m.id, None).await;
                };
                let is_member = self.rooms.iter().any(|r| r == room);
                if !is_member && self.rooms.len() >= self.hub.config.max_rooms_per_client {
                    return self.reject(ErrorCode::RoomLimit, m.id, None).await;
                }
                match Box::pin(self.hub.join(&client, room)).await {
                    Ok((members, _already)) => {
                        if !is_member {
                            self.rooms.push(room.to_owned());
                        }
                        let text = Outgoing::Members {
                            re: m.id,
                            room,
                            self_id: &client.member.device_id,
                            members: &members,
                        }
                        .to_text();
                        self.reply(text).await
                    }
                    Err(code) => self.reject(code, m.id, None).await,
                }
            }
            "leave" => {
                let Some(room) = m.room.as_deref().filter(|r| valid_room(r)) else {
                    return self.reject(ErrorCode::InvalidMessage, m.id, None).await;
                };
                let Some(pos) = self.rooms.iter().position(|r| r == room) else {
                    return self.reject(ErrorCode::NotInRoom, m.id, None).await;
                };
                self.rooms.swap_remove(pos);
                Box::pin(self.hub.leave(&client, room)).await;
                let text = Outgoing::Left {
                    re: m.id,
                    room,
                    device_id: &client.member.device_id,
                }
                .to_text();
                self.reply(text).await
            }
            "signal" => {
                let (Some(to), Some(data)) = (m.to.as_deref(), m.data) else {
                    return self.reject(ErrorCode::InvalidMessage, m.id, None).await;
                };
                if !valid_id(to) {
                    return self.reject(ErrorCode::InvalidMessage, m.id, None).await;
                }
                let out = Out::Text(Utf8Bytes::from(signal_text(&client.signal_head, data)));
                let delivered = match self.queue_local(to, out) {
                    Ok(()) => Ok(()),
                    Err(LocalSend::Full(..)) => Err(ErrorCode::TargetBusy),
                    Err(LocalSend::Closed) => Err(ErrorCode::TargetOffline),
                    Err(LocalSend::Failed(code)) => Err(code),
                    Err(LocalSend::NotLocal(out)) => Box::pin(self.route_signal(to, out)).await,
                };
                match delivered {
                    Ok(()) => {
                        Metrics::inc(&self.hub.metrics.signals_relayed);
                        match m.id {
                            Some(re) => self.reply(Outgoing::Ok { re }.to_text()).await,
                            None => Flow::Continue,
                        }
                    }
                    Err(code) => self.reject(code, m.id, Some(to)).await,
                }
            }
            "turn" => {
                let Some(turn) = self.hub.config.turn.clone() else {
                    return self.reject(ErrorCode::TurnUnavailable, m.id, None).await;
                };
                let creds = crate::turn::turn_credentials(
                    &turn.secret,
                    &client.member.device_id,
                    unix_secs(),
                    turn.ttl.as_secs(),
                );
                let text = Outgoing::Turn {
                    re: m.id,
                    username: &creds.username,
                    credential: &creds.credential,
                    ttl: creds.ttl,
                    urls: &turn.urls,
                }
                .to_text();
                self.reply(text).await
            }
            _ => self.reject(ErrorCode::UnknownType, m.id, None).await,
        }
    }

    /// Queues `out` for `device`'s connection on this instance. The session's last target is
    /// reused while it is still a live connection of that device (not kicked, queue open);
    /// otherwise the device map is asked, and the answer kept for the next message.
    fn queue_local(&mut self, device: &str, out: Out) -> Result<(), LocalSend> {
        let mut out = out;
        if let Some(target) = self
            .target
            .as_ref()
            .filter(|t| t.member.device_id == device && !t.is_kicked())
        {
            match target.queue.try_send(out) {
                Ok(()) => return Ok(()),
                Err(TrySend::Full(o)) => return Err(LocalSend::Full(o, Arc::clone(target))),
                // That connection ended; the device may have a newer one.
                Err(TrySend::Closed(o)) => out = o,
            }
        }
        self.target = None;
        let Some(target) = self.hub.local(device) else {
            return Err(LocalSend::NotLocal(out));
        };
        match target.queue.try_send(out) {
            Ok(()) => {
                self.target = Some(target);
                Ok(())
            }
            Err(TrySend::Full(o)) => {
                self.target = Some(Arc::clone(&target));
                Err(LocalSend::Full(o, target))
            }
            Err(TrySend::Closed(_)) => Err(LocalSend::Closed),
        }
    }

    /// Delivers a signal for a device not connected here: through Redis to its instance, or
    /// locally should it have connected meanwhile.
    async fn route_signal(&mut self, to: &str, out: Out) -> Result<(), ErrorCode> {
        match self.hub.route(to).await? {
            Route::Local(target) => match target.queue.try_send(out) {
                Ok(()) => Ok(()),
                Err(TrySend::Full(_)) => Err(ErrorCode::TargetBusy),
                Err(TrySend::Closed(_)) => Err(ErrorCode::TargetOffline),
            },
            Route::Remote(instance) => match (&self.hub.backplane, &out) {
                (Some(bp), Out::Text(text)) => bp.forward_text(&instance, to, text.as_str()).await,
                _ => Err(ErrorCode::TargetOffline),
            },
        }
    }

    /// Delivers a relay frame for a device not connected here, as [`Session::route_signal`].
    async fn route_frame(&mut self, to: &str, out: Out) -> Result<(), LocalSend> {
        let code = match self.hub.route(to).await {
            Ok(Route::Local(dest)) => {
                return match dest.queue.try_send(out) {
                    Ok(()) => Ok(()),
                    Err(TrySend::Full(o)) => Err(LocalSend::Full(o, dest)),
                    Err(TrySend::Closed(_)) => Err(LocalSend::Closed),
                };
            }
            Ok(Route::Remote(instance)) => {
                let (Some(bp), Some(client), Out::Binary(frame)) =
                    (&self.hub.backplane, &self.client, &out)
                else {
                    return Err(LocalSend::Failed(ErrorCode::TargetOffline));
                };
                match bp
                    .forward_binary(&instance, to, &client.member.device_id, frame)
                    .await
                {
                    Ok(()) => return Ok(()),
                    Err(code) => code,
                }
            }
            Err(code) => code,
        };
        Err(LocalSend::Failed(code))
    }

    async fn reply(&mut self, text: String) -> Flow {
        if self.write_text(text).await {
            Flow::Continue
        } else {
            Flow::Close(ErrorCode::SlowConsumer)
        }
    }

    async fn on_relay_frame(&mut self, frame: Bytes, pending: &mut Option<PendingForward>) -> Flow {
        let Some(client) = self.client.clone() else {
            return Flow::Close(ErrorCode::Internal);
        };
        let Some(header) = parse_relay_frame(&frame) else {
            return self.reject(ErrorCode::InvalidFrame, None, None).await;
        };
        let payload = frame.slice(header.payload_offset..);
        if payload.len() > self.hub.config.max_relay_payload {
            return self.reject(ErrorCode::TooLarge, None, None).await;
        }
        let target = header.device_id.to_owned();
        let wait = self.relay_bucket.take_with_debt(
            self.hub.config.relay_byte_rate,
            payload.len() as f64,
            Instant::now(),
        );
        if !wait.is_zero() {
            self.read_paused_until = Some(tokio::time::Instant::now() + wait);
        }
        let out_frame = relay_frame(&client.member.device_id, &payload);
        let payload_len = payload.len() as u64;
        let queued = match self.queue_local(&target, Out::Binary(out_frame)) {
            Err(LocalSend::NotLocal(out)) => Box::pin(self.route_frame(&target, out)).await,
            other => other,
        };
        match queued {
            Ok(()) => {}
            Err(LocalSend::Full(frame, dest)) => {
                *pending = Some(PendingForward {
                    dest,
                    frame,
                    target,
                    deadline: tokio::time::Instant::now() + self.hub.config.write_timeout,
                });
            }
            Err(LocalSend::Closed | LocalSend::NotLocal(_)) => {
                return self
                    .reject(ErrorCode::TargetOffline, None, Some(&target))
                    .await;
            }
            Err(LocalSend::Failed(code)) => return self.reject(code, None, Some(&target)).await,
        }
        Metrics::inc(&self.hub.metrics.relay_frames);
        Metrics::add(&self.hub.metrics.relay_bytes, payload_len);
        Flow::Continue
    }

    async fn cleanup(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        for room in std::mem::take(&mut self.rooms) {
            self.hub.leave(&client, &room).await;
        }
        self.hub.unregister(&client).await;
        Metrics::gauge(&self.hub.metrics.authenticated_open, -1);
        tracing::info!(ip = %self.ip, device = %client.member.device_id, "disconnected");
    }
}

fn out_message(out: Out) -> Message {
    match out {
        Out::Text(t) => Message::Text(t),
        Out::Binary(b) => Message::Binary(b),
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
