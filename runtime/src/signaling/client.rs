//! The signaling client: one driver task owns the WebSocket, reconnects with backoff, and
//! answers requests by id.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{Notify, broadcast, mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::wire::{auth_message, host_of, parse_link_frame};
use super::{Member, SignalingConfig, SignalingError, SignalingEvent, TurnCredentials};
use crate::transport::relay::{RelayLinks, RelayTransport};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Messages queued for the server.
#[derive(Debug)]
pub(crate) enum Outbound {
    Text(String),
    Binary(Bytes),
}

/// Outbound messages buffered while the socket is busy; senders wait beyond it.
const OUT_QUEUE: usize = 256;
/// Events buffered for the application; the driver waits beyond it.
const EVENT_QUEUE: usize = 1024;
/// Messages written per wake-up before flushing.
const WRITE_BATCH: usize = 64;

/// Error codes after which retrying with the same settings cannot succeed.
const FATAL_AUTH_CODES: [&str; 5] = [
    "bad_signature",
    "host_mismatch",
    "not_admitted",
    "device_id_taken",
    "unsupported_version",
];

type Pending = HashMap<u64, oneshot::Sender<Result<Value, SignalingError>>>;

struct Shared {
    config: SignalingConfig,
    out: mpsc::Sender<Outbound>,
    pending: Mutex<Pending>,
    rooms: Mutex<BTreeSet<String>>,
    next_id: AtomicU64,
    links: Arc<RelayLinks>,
    connected: AtomicBool,
    /// Follows `connected`, for waiting on a reconnect.
    online: watch::Sender<bool>,
    /// Device ids the server reported offline (`target_offline` outside any request, for a
    /// relay frame), for relay dials to report why their link closed.
    offline: broadcast::Sender<String>,
    closed: AtomicBool,
    close: Notify,
}

impl Shared {
    fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Release);
        self.online.send_replace(connected);
    }
}

/// Offline notices buffered per subscriber (a subscriber only needs the ones that arrive
/// during one relay handshake).
const OFFLINE_QUEUE: usize = 64;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A connection to a signaling server that survives reconnects. Cheap to clone.
#[derive(Clone)]
pub struct SignalingClient {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SignalingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalingClient")
            .field("device_id", &self.shared.config.device_id)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

/// The client's events. Drain them: the client waits when 1,024 are unread.
#[derive(Debug)]
pub struct SignalingEvents {
    rx: mpsc::Receiver<SignalingEvent>,
}

impl SignalingEvents {
    /// Events fed by another router (the WebRTC dialer hands on what it does not consume).
    pub(crate) fn from_receiver(rx: mpsc::Receiver<SignalingEvent>) -> Self {
        Self { rx }
    }

    /// The next event, or `None` once the client is closed.
    pub async fn next(&mut self) -> Option<SignalingEvent> {
        self.rx.recv().await
    }

    /// The next event if one is ready.
    pub fn try_next(&mut self) -> Option<SignalingEvent> {
        self.rx.try_recv().ok()
    }
}

struct Limits {
    max_relay_payload: usize,
    timeout: Duration,
}

enum SessionEnd {
    Lost(String),
    Reconnect(Duration),
    Closed,
}

impl SignalingClient {
    /// Connects and authenticates to the first reachable URL. Fails if none is reachable or
    /// the server refuses the identity; after that the client reconnects by itself.
    pub async fn connect(
        config: SignalingConfig,
    ) -> Result<(SignalingClient, SignalingEvents), SignalingError> {
        if config.urls.is_empty() {
            return Err(SignalingError::InvalidUrl(String::new()));
        }
        for url in &config.urls {
            if host_of(url).is_none() || !(url.starts_with("ws://") || url.starts_with("wss://")) {
                return Err(SignalingError::InvalidUrl(url.clone()));
            }
        }
        let (out, out_rx) = mpsc::channel(OUT_QUEUE);
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let links = RelayLinks::new(config.device_id.clone(), out.clone());
        let shared = Arc::new(Shared {
            config,
            out,
            pending: Mutex::new(HashMap::new()),
            rooms: Mutex::new(BTreeSet::new()),
            next_id: AtomicU64::new(1),
            links,
            connected: AtomicBool::new(false),
            online: watch::channel(false).0,
            offline: broadcast::channel(OFFLINE_QUEUE).0,
            closed: AtomicBool::new(false),
            close: Notify::new(),
        });
        // The first connection is made here so that a wrong key or URL fails the call.
        let mut last_error = SignalingError::Connect("no URL".into());
        let mut first = None;
        for (index, url) in shared.config.urls.iter().enumerate() {
            match authenticate(&shared.config, url).await {
                Ok(ok) => {
                    first = Some((index, ok));
                    break;
                }
                Err(e) => last_error = e,
            }
        }
        let Some((index, (ws, limits))) = first else {
            return Err(last_error);
        };
        shared.links.set_max_payload(limits.max_relay_payload);
        shared.set_connected(true);
        let driver = Driver {
            shared: Arc::clone(&shared),
            out_rx,
            events: events_tx,
        };
        tokio::spawn(driver.run(index, ws, limits));
        Ok((
            SignalingClient { shared },
            SignalingEvents { rx: events_rx },
        ))
    }

    /// This client's device id.
    pub fn device_id(&self) -> &str {
        &self.shared.config.device_id
    }

    /// Whether the client is authenticated to a server right now.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Acquire)
    }

    async fn request(&self, mut message: Value) -> Result<Value, SignalingError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(SignalingError::Closed);
        }
        if !self.is_connected() {
            return Err(SignalingError::Disconnected);
        }
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        message["id"] = json!(id);
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.pending).insert(id, tx);
        let sent = self
            .shared
            .out
            .send(Outbound::Text(message.to_string()))
            .await;
        if sent.is_err() {
            lock(&self.shared.pending).remove(&id);
            return Err(SignalingError::Closed);
        }
        match tokio::time::timeout(self.shared.config.request_timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(SignalingError::Disconnected),
            Err(_) => {
                lock(&self.shared.pending).remove(&id);
                Err(SignalingError::Timeout)
            }
        }
    }

    /// Joins `room` and returns the other members. The room is re-joined after every
    /// reconnect (each time a [`SignalingEvent::Members`] reports the members again).
    pub async fn join(&self, room: &str) -> Result<Vec<Member>, SignalingError> {
        lock(&self.shared.rooms).insert(room.to_owned());
        match self.request(json!({"type": "join", "room": room})).await {
            Ok(reply) => members_of(&reply),
            Err(e) => {
                if matches!(e, SignalingError::Server { .. }) {
                    lock(&self.shared.rooms).remove(room);
                }
                Err(e)
            }
        }
    }

    /// Leaves `room`.
    pub async fn leave(&self, room: &str) -> Result<(), SignalingError> {
        lock(&self.shared.rooms).remove(room);
        self.request(json!({"type": "leave", "room": room}))
            .await
            .map(|_| ())
    }

    /// Sends `data` to device `to`; the server stamps this client as sender. Fails with
    /// server code `target_offline` when `to` is not connected.
    pub async fn signal(&self, to: &str, data: Value) -> Result<(), SignalingError> {
        self.request(json!({"type": "signal", "to": to, "data": data}))
            .await
            .map(|_| ())
    }

    /// Fresh TURN credentials (server code `turn_unavailable` when it has none).
    pub async fn turn_credentials(&self) -> Result<TurnCredentials, SignalingError> {
        let reply = self.request(json!({"type": "turn"})).await?;
        serde_json::from_value(reply).map_err(|e| SignalingError::Protocol(e.to_string()))
    }

    /// Opens a relay link to device `to`. Run [`crate::Node::connect`] on it as initiator with
    /// [`RelayTransport::binding`].
    pub async fn open_relay(&self, to: &str) -> Result<RelayTransport, SignalingError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(SignalingError::Closed);
        }
        if !self.is_connected() {
            return Err(SignalingError::Disconnected);
        }
        self.shared
            .links
            .open(to)
            .await
            .map_err(|_| SignalingError::Closed)
    }

    /// Device ids the server reports offline from now on (for relay frames to them).
    pub(crate) fn offline_notices(&self) -> broadcast::Receiver<String> {
        self.shared.offline.subscribe()
    }

    /// Waits (at most `timeout`) until the client is authenticated to a server; returns
    /// whether it is. `false` at once once the client is closed.
    pub(crate) async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut online = self.shared.online.subscribe();
        let closed = &self.shared.closed;
        let wait = online.wait_for(|c| *c || closed.load(Ordering::Acquire));
        tokio::time::timeout(timeout, wait).await.is_ok() && !closed.load(Ordering::Acquire)
    }

    /// Disconnects for good. Relay links end; pending requests fail with `Closed`.
    pub async fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.close.notify_one();
        self.shared.online.send_modify(|_| {});
    }
}

pub(crate) fn members_of(reply: &Value) -> Result<Vec<Member>, SignalingError> {
    serde_json::from_value(reply["members"].clone())
        .map_err(|e| SignalingError::Protocol(format!("bad members list: {e}")))
}

pub(crate) fn server_error(v: &Value) -> SignalingError {
    SignalingError::Server {
        code: v["code"].as_str().unwrap_or("unknown").to_owned(),
        message: v["message"].as_str().unwrap_or_default().to_owned(),
    }
}

fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
        .read_buffer_size(64 << 10)
        .write_buffer_size(64 << 10)
}

async fn read_json(ws: &mut Ws) -> Result<Value, SignalingError> {
    // Skips pings and pongs; bounded by the caller's timeout.
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(t.as_str())
                    .map_err(|e| SignalingError::Protocol(format!("invalid JSON: {e}")));
            }
            Some(Ok(Message::Close(_))) | None => {
                return Err(SignalingError::Connect(
                    "server closed the connection".into(),
                ));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(SignalingError::Connect(e.to_string())),
        }
    }
}

async fn authenticate(config: &SignalingConfig, url: &str) -> Result<(Ws, Limits), SignalingError> {
    let host = host_of(url).ok_or_else(|| SignalingError::InvalidUrl(url.to_owned()))?;
    let attempt = async {
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(url, Some(client_config()), true)
                .await
                .map_err(|e| SignalingError::Connect(e.to_string()))?;
        let challenge = read_json(&mut ws).await?;
        if challenge["type"] != "challenge" {
            return Err(SignalingError::Server {
                code: challenge["code"].as_str().unwrap_or("protocol").to_owned(),
                message: challenge["message"].as_str().unwrap_or_default().to_owned(),
            });
        }
        let supported = challenge["versions"]
            .as_array()
            .is_some_and(|v| v.iter().any(|x| x == 1));
        if !supported {
            return Err(SignalingError::Protocol(
                "server does not speak version 1".into(),
            ));
        }
        let bytes = challenge["challenge"]
            .as_str()
            .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
            .ok_or_else(|| SignalingError::Protocol("bad challenge".into()))?;
        let signature = config.identity.sign(&auth_message(
            &bytes,
            host,
            &config.device_id,
            &config.user_id,
        ));
        let mut auth = json!({
            "type": "auth", "v": 1, "id": 0,
            "publicKey": config.identity.public_key().to_base64(),
            "deviceId": config.device_id, "userId": config.user_id,
            "host": host, "signature": signature.to_base64(),
        });
        if let Some(token) = &config.token {
            auth["token"] = json!(token);
        }
        ws.send(Message::Text(auth.to_string().into()))
            .await
            .map_err(|e| SignalingError::Connect(e.to_string()))?;
        let reply = read_json(&mut ws).await?;
        if reply["type"] != "welcome" {
            return Err(server_error(&reply));
        }
        let limits = Limits {
            max_relay_payload: challenge["limits"]["maxRelayPayload"]
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(64 << 10),
            timeout: Duration::from_millis(challenge["timeoutMs"].as_u64().unwrap_or(40_000)),
        };
        Ok((ws, limits))
    };
    tokio::time::timeout(config.connect_timeout, attempt)
        .await
        .map_err(|_| SignalingError::Timeout)?
}

struct Driver {
    shared: Arc<Shared>,
    out_rx: mpsc::Receiver<Outbound>,
    events: mpsc::Sender<SignalingEvent>,
}

impl Driver {
    async fn emit(&self, event: SignalingEvent) {
        let _ = self.events.send(event).await;
    }

    async fn run(mut self, mut index: usize, ws: Ws, limits: Limits) {
        let urls = self.shared.config.urls.clone();
        let mut session = Some((ws, limits));
        let mut failures: u32 = 0;
        // One iteration per connection attempt; ends when the client is closed.
        loop {
            if self.shared.closed.load(Ordering::Acquire) {
                break;
            }
            let url = urls.get(index % urls.len()).cloned().unwrap_or_default();
            let attempt = match session.take() {
                Some(s) => Ok(s),
                None => authenticate(&self.shared.config, &url).await,
            };
            let delay = match attempt {
                Ok((ws, limits)) => {
                    failures = 0;
                    let end = self.session(ws, limits, &url).await;
                    match end {
                        SessionEnd::Closed => break,
                        SessionEnd::Reconnect(hint) => {
                            index += 1;
                            hint
                        }
                        SessionEnd::Lost(_) => {
                            index += 1;
                            self.backoff(0)
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(url, error = %e, "signaling reconnect failed");
                    if let SignalingError::Server { code, .. } = &e
                        && FATAL_AUTH_CODES.contains(&code.as_str())
                    {
                        self.emit(SignalingEvent::Error {
                            code: code.clone(),
                            to: None,
                        })
                        .await;
                    }
                    failures = failures.saturating_add(1);
                    index += 1;
                    self.backoff(failures)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.shared.close.notified() => break,
            }
        }
        self.shared.set_connected(false);
        self.fail_pending(SignalingError::Closed);
        self.shared.links.drop_all();
    }

    /// Exponential backoff with jitter: a random delay in [d/2, d] with
    /// d = min(initial · 2^failures, max).
    fn backoff(&self, failures: u32) -> Duration {
        let c = &self.shared.config;
        let factor = 2u32.saturating_pow(failures.min(16));
        let d = c.backoff_initial.saturating_mul(factor).min(c.backoff_max);
        let half = d / 2;
        let jitter = rand::random::<f64>();
        half + half.mul_f64(jitter)
    }

    fn fail_pending(&self, error: SignalingError) {
        let pending: Vec<_> = lock(&self.shared.pending).drain().collect();
        for (_, tx) in pending {
            let _ = tx.send(Err(error.clone()));
        }
    }

    async fn session(&mut self, mut ws: Ws, limits: Limits, url: &str) -> SessionEnd {
        self.shared.links.set_max_payload(limits.max_relay_payload);
        self.shared.set_connected(true);
        tracing::debug!(url, "signaling connected");
        self.emit(SignalingEvent::Connected {
            url: url.to_owned(),
        })
        .await;
        let rooms: Vec<String> = lock(&self.shared.rooms).iter().cloned().collect();
        let mut end = None;
        for room in rooms {
            let join = json!({"type": "join", "room": room}).to_string();
            if ws.send(Message::Text(join.into())).await.is_err() {
                end = Some(SessionEnd::Lost("write failed".into()));
                break;
            }
        }
        let end = match end {
            Some(end) => end,
            None => self.drive(&mut ws, &limits).await,
        };
        self.shared.set_connected(false);
        self.fail_pending(SignalingError::Disconnected);
        self.shared.links.drop_all();
        // Whatever is still queued belonged to this connection and is stale now.
        while self.out_rx.try_recv().is_ok() {}
        let reason = match &end {
            SessionEnd::Lost(r) => r.clone(),
            SessionEnd::Reconnect(_) => "server asked to reconnect".into(),
            SessionEnd::Closed => "closed".into(),
        };
        if matches!(end, SessionEnd::Closed) {
            let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
        } else {
            self.emit(SignalingEvent::Disconnected { reason }).await;
        }
        end
    }

    async fn drive(&mut self, ws: &mut Ws, limits: &Limits) -> SessionEnd {
        let ping_every = self.shared.config.ping_interval;
        let silence_limit = limits.timeout.max(ping_every * 2);
        let mut ping = tokio::time::interval(ping_every);
        ping.tick().await;
        let mut last_heard = tokio::time::Instant::now();
        // When the client first wrote something the server answers (a request or a ping)
        // that is not followed by anything from the server yet.
        let mut unanswered: Option<tokio::time::Instant> = None;
        let answer_timeout = self.shared.config.answer_timeout;
        // Runs until the connection ends, the server asks to reconnect, or the client closes.
        loop {
            let answer_due = unanswered.map(|since| since + answer_timeout);
            tokio::select! {
                _ = self.shared.close.notified() => return SessionEnd::Closed,
                incoming = ws.next() => match incoming {
                    Some(Ok(message)) => {
                        last_heard = tokio::time::Instant::now();
                        unanswered = None;
                        if let Some(end) = self.on_message(message).await {
                            return end;
                        }
                    }
                    Some(Err(e)) => return SessionEnd::Lost(e.to_string()),
                    None => return SessionEnd::Lost("server closed the connection".into()),
                },
                out = self.out_rx.recv() => {
                    let Some(out) = out else { return SessionEnd::Closed };
                    match write_batch(ws, out, &mut self.out_rx).await {
                        Ok(true) => {
                            unanswered.get_or_insert_with(tokio::time::Instant::now);
                        }
                        Ok(false) => {}
                        Err(e) => return SessionEnd::Lost(e),
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > silence_limit {
                        return SessionEnd::Lost("server silent".into());
                    }
                    let text = json!({"type": "ping"}).to_string();
                    if ws.send(Message::Text(text.into())).await.is_err() {
                        return SessionEnd::Lost("write failed".into());
                    }
                    unanswered.get_or_insert_with(tokio::time::Instant::now);
                }
                () = sleep_until_some(answer_due) => {
                    tracing::debug!("signaling server did not answer; reconnecting");
                    return SessionEnd::Lost("server did not answer".into());
                }
            }
        }
    }

    async fn on_message(&mut self, message: Message) -> Option<SessionEnd> {
        match message {
            Message::Text(text) => {
                let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                    tracing::debug!("signaling server sent invalid JSON");
                    return None;
                };
                self.on_json(v).await
            }
            Message::Binary(frame) => {
                // A malformed frame from the server is ignored.
                let m = parse_link_frame(&frame)?;
                if let Some(transport) = self
                    .shared
                    .links
                    .on_message(&m.from, m.kind, m.link_id, m.body)
                {
                    self.emit(SignalingEvent::IncomingRelay {
                        from: m.from,
                        transport,
                    })
                    .await;
                }
                None
            }
            Message::Close(_) => Some(SessionEnd::Lost("server closed the connection".into())),
            _ => None,
        }
    }

    fn resolve(&self, v: &Value, result: Result<Value, SignalingError>) -> bool {
        let Some(re) = v["re"].as_u64() else {
            return false;
        };
        match lock(&self.shared.pending).remove(&re) {
            Some(tx) => {
                let _ = tx.send(result);
                true
            }
            None => false,
        }
    }

    async fn on_json(&mut self, v: Value) -> Option<SessionEnd> {
        let kind = v["type"].as_str().unwrap_or_default().to_owned();
        match kind.as_str() {
            "members" => {
                let room = v["room"].as_str().unwrap_or_default().to_owned();
                let members = members_of(&v).unwrap_or_default();
                self.resolve(&v, Ok(v.clone()));
                self.emit(SignalingEvent::Members { room, members }).await;
            }
            "joined" => {
                if let Ok(member) = serde_json::from_value::<Member>(v["member"].clone()) {
                    let room = v["room"].as_str().unwrap_or_default().to_owned();
                    self.emit(SignalingEvent::Joined { room, member }).await;
                }
            }
            "left" => {
                if !self.resolve(&v, Ok(v.clone())) {
                    let room = v["room"].as_str().unwrap_or_default().to_owned();
                    let device_id = v["deviceId"].as_str().unwrap_or_default().to_owned();
                    self.emit(SignalingEvent::Left { room, device_id }).await;
                }
            }
            "signal" => {
                let from = Member {
                    device_id: v["from"].as_str().unwrap_or_default().to_owned(),
                    user_id: v["fromUserId"].as_str().unwrap_or_default().to_owned(),
                    public_key: v["fromPublicKey"].as_str().unwrap_or_default().to_owned(),
                };
                let data = v.get("data").cloned().unwrap_or(Value::Null);
                self.emit(SignalingEvent::Signal { from, data }).await;
            }
            "error" => {
                let to = v["to"].as_str().map(str::to_owned);
                if let Some(peer) = &to
                    && v["code"] == "target_offline"
                {
                    // Announced before the links end, so a relay dial whose handshake fails
                    // because its link closed finds the reason already there.
                    let _ = self.shared.offline.send(peer.clone());
                    self.shared.links.drop_peer(peer);
                }
                if !self.resolve(&v, Err(server_error(&v))) {
                    let code = v["code"].as_str().unwrap_or("unknown").to_owned();
                    self.emit(SignalingEvent::Error { code, to }).await;
                }
            }
            "reconnect" => {
                let ms = v["retryMs"].as_u64().unwrap_or(500).min(60_000);
                let hint = Duration::from_millis(ms);
                return Some(SessionEnd::Reconnect(
                    hint + hint.mul_f64(rand::random::<f64>()),
                ));
            }
            _ => {
                self.resolve(&v, Ok(v.clone()));
            }
        }
        None
    }
}

/// Sleeps until `deadline`; forever without one.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Writes `first` and whatever else is queued (up to a batch); returns whether a request (a
/// text message, which the server answers) was among them.
async fn write_batch(
    ws: &mut Ws,
    first: Outbound,
    rx: &mut mpsc::Receiver<Outbound>,
) -> Result<bool, String> {
    let mut requests = false;
    let mut to_message = |o: Outbound| match o {
        Outbound::Text(t) => {
            requests = true;
            Message::Text(t.into())
        }
        Outbound::Binary(b) => Message::Binary(b),
    };
    ws.feed(to_message(first))
        .await
        .map_err(|e| e.to_string())?;
    for _ in 1..WRITE_BATCH {
        match rx.try_recv() {
            Ok(o) => ws.feed(to_message(o)).await.map_err(|e| e.to_string())?,
            Err(_) => break,
        }
    }
    ws.flush().await.map_err(|e| e.to_string())?;
    Ok(requests)
}
