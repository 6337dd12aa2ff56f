//! A minimal protocol client over a real loopback WebSocket, written from
//! `docs/protocol/signaling.md`, plus plain HTTP helpers.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use peerlink_core::identity::Identity;
use peerlink_signal_server::protocol::auth_message;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(10);

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub host: String,
    pub challenge: Vec<u8>,
}

pub fn identity(n: u8) -> Identity {
    Identity::from_seed(&[n; 32])
}

/// What the server sent next, or `None` once the connection ended.
#[derive(Debug)]
pub enum Event {
    Json(Value),
    Binary(Vec<u8>),
    Close(Option<(u16, String)>),
}

impl Client {
    /// Connects and reads the challenge.
    pub async fn connect(ws_url: &str) -> Client {
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(ws_url))
            .await
            .expect("connect timed out")
            .expect("connect failed");
        let host = ws_url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let mut client = Client {
            ws,
            host,
            challenge: Vec::new(),
        };
        let challenge = client.json().await;
        assert_eq!(challenge["type"], "challenge", "{challenge}");
        client.challenge = base64::engine::general_purpose::STANDARD
            .decode(challenge["challenge"].as_str().unwrap())
            .unwrap();
        client
    }

    /// Connects and authenticates; panics unless welcomed.
    pub async fn authed(ws_url: &str, id: &Identity, device: &str) -> Client {
        let mut c = Client::connect(ws_url).await;
        let reply = c.auth(id, device, None).await;
        assert_eq!(reply["type"], "welcome", "{reply}");
        c
    }

    pub fn auth_json(&self, id: &Identity, device: &str, token: Option<&str>) -> Value {
        let sig = id.sign(&auth_message(&self.challenge, &self.host, device, "user"));
        let mut v = json!({
            "type": "auth", "v": 1, "id": 1,
            "publicKey": id.public_key().to_base64(),
            "deviceId": device, "userId": "user", "host": self.host,
            "signature": sig.to_base64(),
        });
        if let Some(t) = token {
            v["token"] = json!(t);
        }
        v
    }

    pub async fn auth(&mut self, id: &Identity, device: &str, token: Option<&str>) -> Value {
        let v = self.auth_json(id, device, token);
        self.send(v).await;
        self.json().await
    }

    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    pub async fn send_text(&mut self, t: &str) {
        self.ws
            .send(Message::Text(t.to_owned().into()))
            .await
            .unwrap();
    }

    pub async fn send_binary(&mut self, b: Vec<u8>) {
        self.ws.send(Message::Binary(b.into())).await.unwrap();
    }

    pub async fn next_event(&mut self) -> Option<Event> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no message within the wait");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    return Some(Event::Json(serde_json::from_str(t.as_str()).unwrap()));
                }
                Some(Ok(Message::Binary(b))) => return Some(Event::Binary(b.to_vec())),
                Some(Ok(Message::Close(f))) => {
                    return Some(Event::Close(
                        f.map(|f| (u16::from(f.code), f.reason.as_str().to_owned())),
                    ));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    pub async fn json(&mut self) -> Value {
        match self.next_event().await {
            Some(Event::Json(v)) => v,
            other => panic!("expected JSON, got {other:?}"),
        }
    }

    pub async fn binary(&mut self) -> Vec<u8> {
        match self.next_event().await {
            Some(Event::Binary(b)) => b,
            other => panic!("expected binary, got {other:?}"),
        }
    }

    /// Expects an error with `code`, then (for fatal codes) a close 4000 with that reason.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let v = self.json().await;
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["code"], code, "{v}");
        v
    }

    pub async fn expect_close(&mut self, code: u16, reason: &str) {
        match self.next_event().await {
            Some(Event::Close(Some((c, r)))) => {
                assert_eq!(c, code);
                assert_eq!(r, reason);
            }
            other => panic!("expected close {code} {reason}, got {other:?}"),
        }
    }

    pub async fn join(&mut self, room: &str) -> Value {
        self.send(json!({"type": "join", "room": room, "id": 7}))
            .await;
        let v = self.json().await;
        assert_eq!(v["type"], "members", "{v}");
        v
    }
}

/// A plain HTTP GET; returns status and body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("http timed out")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Reads one counter from `/metrics`.
pub async fn metric(addr: std::net::SocketAddr, line_prefix: &str) -> u64 {
    let (_, body) = http_get(addr, "/metrics").await;
    body.lines()
        .find_map(|l| l.strip_prefix(line_prefix)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {line_prefix} missing"))
}
