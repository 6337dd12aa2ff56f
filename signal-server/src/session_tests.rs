//! Sessions driven through in-memory channels: no sockets, and a paused clock where timing
//! matters.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ws::Message;
use base64::Engine as _;
use futures_util::{Sink, Stream};
use peerlink_core::identity::Identity;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use super::*;
use crate::config::ServerConfig;
use crate::protocol::auth_message;

const HOST: &str = "signal.test:443";

struct ChannelSocket {
    rx: mpsc::UnboundedReceiver<Message>,
    tx: mpsc::UnboundedSender<Message>,
}

impl Stream for ChannelSocket {
    type Item = Result<Message, Infallible>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|m| m.map(Ok))
    }
}

impl Sink<Message> for ChannelSocket {
    type Error = &'static str;
    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        self.tx.send(item).map_err(|_| "closed")
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
}

struct TestClient {
    to_server: mpsc::UnboundedSender<Message>,
    from_server: mpsc::UnboundedReceiver<Message>,
    task: tokio::task::JoinHandle<()>,
}

impl TestClient {
    fn connect(hub: &Arc<Hub>) -> Self {
        let (to_server, rx) = mpsc::unbounded_channel();
        let (tx, from_server) = mpsc::unbounded_channel();
        let socket = ChannelSocket { rx, tx };
        let task = tokio::spawn(run_session(
            Arc::clone(hub),
            socket,
            "127.0.0.1".parse().unwrap(),
            Some(HOST.to_owned()),
        ));
        Self {
            to_server,
            from_server,
            task,
        }
    }

    async fn next(&mut self) -> Option<Message> {
        tokio::time::timeout(Duration::from_secs(60), self.from_server.recv())
            .await
            .expect("no message from the server within 60 s")
    }

    /// Next JSON message, skipping pings.
    async fn json(&mut self) -> Value {
        loop {
            match self.next().await {
                Some(Message::Text(t)) => return serde_json::from_str(t.as_str()).unwrap(),
                Some(Message::Ping(_)) => continue,
                other => panic!("expected text, got {other:?}"),
            }
        }
    }

    fn send(&self, v: Value) {
        self.to_server
            .send(Message::Text(v.to_string().into()))
            .unwrap();
    }

    async fn auth(&mut self, identity: &Identity, device: &str) -> Value {
        let challenge = self.json().await;
        assert_eq!(challenge["type"], "challenge");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(challenge["challenge"].as_str().unwrap())
            .unwrap();
        let sig = identity.sign(&auth_message(&bytes, HOST, device, "user"));
        self.send(json!({
            "type": "auth", "v": 1, "id": 1,
            "publicKey": identity.public_key().to_base64(),
            "deviceId": device, "userId": "user", "host": HOST,
            "signature": sig.to_base64(),
        }));
        self.json().await
    }
}

fn hub(config: ServerConfig) -> (Arc<Hub>, watch::Sender<bool>) {
    let (tx, rx) = watch::channel(false);
    (
        Arc::new(Hub::new(config, Arc::new(Metrics::default()), rx, None)),
        tx,
    )
}

fn identity(n: u8) -> Identity {
    Identity::from_seed(&[n; 32])
}

#[tokio::test]
async fn authenticated_clients_meet_in_a_room_and_exchange_signals() {
    let (hub, _stop) = hub(ServerConfig::default());
    let mut a = TestClient::connect(&hub);
    let mut b = TestClient::connect(&hub);
    let welcome = a.auth(&identity(1), "dev-a").await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["re"], 1);
    assert_eq!(welcome["publicKey"], identity(1).public_key().to_base64());
    assert_eq!(b.auth(&identity(2), "dev-b").await["type"], "welcome");

    a.send(json!({"type": "join", "room": "lobby", "id": 2}));
    let members = a.json().await;
    assert_eq!(members["type"], "members");
    assert_eq!(members["self"], "dev-a");
    assert_eq!(members["members"], json!([]));

    b.send(json!({"type": "join", "room": "lobby", "id": 2}));
    let members = b.json().await;
    assert_eq!(members["members"][0]["deviceId"], "dev-a");
    let joined = a.json().await;
    assert_eq!(joined["type"], "joined");
    assert_eq!(joined["member"]["deviceId"], "dev-b");

    // `from` comes from the session, whatever the sender writes.
    b.send(
        json!({"type": "signal", "to": "dev-a", "from": "dev-z", "id": 3,
                  "data": {"type": "offer", "sdp": "v=0"}}),
    );
    assert_eq!(b.json().await, json!({"type": "ok", "re": 3}));
    let signal = a.json().await;
    assert_eq!(signal["type"], "signal");
    assert_eq!(signal["from"], "dev-b");
    assert_eq!(
        signal["fromPublicKey"],
        identity(2).public_key().to_base64()
    );
    assert_eq!(signal["data"], json!({"type": "offer", "sdp": "v=0"}));

    drop(b);
    let left = a.json().await;
    assert_eq!(
        left,
        json!({"type": "left", "room": "lobby", "deviceId": "dev-b"})
    );
}

/// Next `signal`, skipping presence events and pings.
async fn next_signal(c: &mut TestClient) -> Value {
    loop {
        let m = c.json().await;
        if m["type"] == "signal" {
            return m;
        }
    }
}

#[tokio::test]
async fn signals_follow_a_device_to_its_newest_connection() {
    let (hub, _stop) = hub(ServerConfig::default());
    let mut a = TestClient::connect(&hub);
    let mut b = TestClient::connect(&hub);
    a.auth(&identity(1), "dev-a").await;
    b.auth(&identity(2), "dev-b").await;
    a.send(json!({"type": "signal", "to": "dev-b", "id": 3, "data": {"n": 1}}));
    assert_eq!(a.json().await, json!({"type": "ok", "re": 3}));
    assert_eq!(next_signal(&mut b).await["data"], json!({"n": 1}));

    // A newer connection of the same device replaces the one `a` last sent to.
    let mut b2 = TestClient::connect(&hub);
    assert_eq!(b2.auth(&identity(2), "dev-b").await["type"], "welcome");
    a.send(json!({"type": "signal", "to": "dev-b", "id": 4, "data": {"n": 2}}));
    assert_eq!(a.json().await, json!({"type": "ok", "re": 4}));
    assert_eq!(next_signal(&mut b2).await["data"], json!({"n": 2}));

    // That connection ends, and the device comes back on another one.
    drop(b2);
    for _ in 0..500 {
        if hub.local("dev-b").is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(hub.local("dev-b").is_none(), "dev-b still registered");
    a.send(json!({"type": "signal", "to": "dev-b", "id": 5, "data": {"n": 3}}));
    assert_eq!(a.json().await["code"], "target_offline");
    let mut b3 = TestClient::connect(&hub);
    assert_eq!(b3.auth(&identity(2), "dev-b").await["type"], "welcome");
    a.send(json!({"type": "signal", "to": "dev-b", "id": 6, "data": {"n": 4}}));
    assert_eq!(a.json().await, json!({"type": "ok", "re": 6}));
    assert_eq!(next_signal(&mut b3).await["data"], json!({"n": 4}));
}

#[tokio::test]
async fn relay_frames_carry_the_sender_id() {
    let (hub, _stop) = hub(ServerConfig::default());
    let mut a = TestClient::connect(&hub);
    let mut b = TestClient::connect(&hub);
    a.auth(&identity(1), "dev-a").await;
    b.auth(&identity(2), "dev-b").await;
    a.to_server
        .send(Message::Binary(relay_frame("dev-b", b"sealed")))
        .unwrap();
    let Some(Message::Binary(frame)) = b.next().await else {
        panic!("expected a binary frame");
    };
    assert_eq!(frame, relay_frame("dev-a", b"sealed"));
    assert_eq!(
        hub.metrics
            .relay_bytes
            .load(std::sync::atomic::Ordering::Relaxed),
        6
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_authenticates_is_closed_with_auth_timeout() {
    let (hub, _stop) = hub(ServerConfig::default());
    let mut a = TestClient::connect(&hub);
    assert_eq!(a.json().await["type"], "challenge");
    let err = a.json().await;
    assert_eq!(err["code"], "auth_timeout");
    let Some(Message::Close(Some(frame))) = a.next().await else {
        panic!("expected a close frame");
    };
    assert_eq!(frame.code, CLOSE_PROTOCOL_ERROR);
    assert_eq!(frame.reason.as_str(), "auth_timeout");
    a.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_dropped_after_the_heartbeat_timeout() {
    let (hub, _stop) = hub(ServerConfig::default());
    let mut a = TestClient::connect(&hub);
    let mut b = TestClient::connect(&hub);
    a.auth(&identity(1), "dev-a").await;
    b.auth(&identity(2), "dev-b").await;
    a.send(json!({"type": "join", "room": "r"}));
    a.json().await;
    b.send(json!({"type": "join", "room": "r"}));
    b.json().await;
    assert_eq!(a.json().await["type"], "joined");
    // `a` answers nothing; `b` keeps talking. Only `a` goes, and `b` learns it.
    let started = tokio::time::Instant::now();
    let left = loop {
        match b.next().await {
            Some(Message::Ping(_)) => {
                b.to_server.send(Message::Pong(Bytes::new())).unwrap();
            }
            Some(Message::Text(t)) => break serde_json::from_str::<Value>(t.as_str()).unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(left["type"], "left");
    assert_eq!(left["deviceId"], "dev-a");
    assert!(started.elapsed() >= hub.config.heartbeat_timeout);
    assert_eq!(hub.metrics.rejections(ErrorCode::HeartbeatTimeout), 1);
}

#[tokio::test]
async fn shutdown_tells_clients_to_reconnect() {
    let (hub, stop) = hub(ServerConfig::default());
    let mut a = TestClient::connect(&hub);
    a.auth(&identity(1), "dev-a").await;
    stop.send(true).unwrap();
    let msg = a.json().await;
    assert_eq!(msg["type"], "reconnect");
    assert_eq!(msg["reason"], "shutdown");
    let Some(Message::Close(Some(frame))) = a.next().await else {
        panic!("expected a close frame");
    };
    assert_eq!(frame.code, CLOSE_SERVICE_RESTART);
}

#[tokio::test]
async fn relay_byte_rate_pauses_reading_instead_of_dropping() {
    let config = ServerConfig {
        relay_byte_rate: crate::config::Rate::new(1_000_000.0, 1_000.0),
        ..ServerConfig::default()
    };
    let (hub, _stop) = hub(config);
    let mut a = TestClient::connect(&hub);
    let mut b = TestClient::connect(&hub);
    a.auth(&identity(1), "dev-a").await;
    b.auth(&identity(2), "dev-b").await;
    for i in 0..20u8 {
        a.to_server
            .send(Message::Binary(relay_frame("dev-b", &[i; 1000])))
            .unwrap();
    }
    for i in 0..20u8 {
        let Some(Message::Binary(frame)) = b.next().await else {
            panic!("expected frame {i}");
        };
        assert_eq!(frame, relay_frame("dev-a", &[i; 1000]));
    }
    assert_eq!(hub.metrics.rejections(ErrorCode::RateLimited), 0);
}
