//! Two server instances sharing one real `redis-server` (Debian package `redis-server`),
//! started here on a free loopback port: presence, signals and relay frames cross instances,
//! and a stopped instance's members leave the shared room.
//!
//! Skipped, loudly, only when the `redis-server` binary is absent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Client, identity};
use futures_util::StreamExt;
use peerlink_signal_server::protocol::relay_frame;
use peerlink_signal_server::{Server, ServerConfig};
use serde_json::json;

struct Redis {
    child: Child,
    url: String,
    _dir: TempDir,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn redis_binary() -> Option<String> {
    let path = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned());
    Command::new(&path)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()
        .filter(|s| s.success())
        .map(|_| path)
}

async fn start_redis() -> Option<Redis> {
    let Some(binary) = redis_binary() else {
        eprintln!(
            "\n*** SKIPPED: redis-server not found (install the Debian package `redis-server`) ***\n"
        );
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("peerlink-redis-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let child = Command::new(binary)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
        ])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    let redis = Redis {
        child,
        url: format!("redis://127.0.0.1:{port}/"),
        _dir: TempDir(dir),
    };
    // Wait until it accepts connections (bounded).
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Some(redis);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("redis-server did not start listening");
}

async fn instance(redis: &Redis) -> Server {
    Server::bind(
        "127.0.0.1:0",
        ServerConfig {
            redis_url: Some(redis.url.clone()),
            ..ServerConfig::default()
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_two_instances_share_rooms_signals_and_relay() {
    let Some(redis) = start_redis().await else {
        return;
    };
    let one = instance(&redis).await;
    let two = instance(&redis).await;
    let mut a = Client::authed(&one.ws_url(), &identity(1), "dev-a").await;
    let mut b = Client::authed(&two.ws_url(), &identity(2), "dev-b").await;

    assert_eq!(a.join("shared").await["members"], json!([]));
    let members = b.join("shared").await;
    assert_eq!(members["members"][0]["deviceId"], "dev-a");
    let joined = a.json().await;
    assert_eq!(joined["type"], "joined");
    assert_eq!(joined["member"]["deviceId"], "dev-b");

    // Signal from instance two to a client of instance one, with the stamped sender.
    b.send(json!({"type": "signal", "to": "dev-a", "id": 5, "data": {"sdp": "x"}}))
        .await;
    assert_eq!(b.json().await, json!({"type": "ok", "re": 5}));
    let got = a.json().await;
    assert_eq!(got["from"], "dev-b");
    assert_eq!(got["fromPublicKey"], identity(2).public_key().to_base64());

    // Relay frames both ways across instances.
    a.send_binary(relay_frame("dev-b", b"ciphertext-1").to_vec())
        .await;
    assert_eq!(
        b.binary().await,
        relay_frame("dev-a", b"ciphertext-1").to_vec()
    );
    b.send_binary(relay_frame("dev-a", b"ciphertext-2").to_vec())
        .await;
    assert_eq!(
        a.binary().await,
        relay_frame("dev-b", b"ciphertext-2").to_vec()
    );

    // A device id held on one instance cannot be taken with another key on the other.
    let mut thief = Client::connect(&two.ws_url()).await;
    assert_eq!(
        thief.auth(&identity(3), "dev-a", None).await["code"],
        "device_id_taken"
    );

    // The same key connecting to the other instance replaces the old connection there.
    let mut a2 = Client::authed(&two.ws_url(), &identity(1), "dev-a").await;
    a.expect_error("replaced").await;
    // b sees dev-a leave (the old connection) — then the new one can re-join.
    let left = b.json().await;
    assert_eq!(
        left,
        json!({"type": "left", "room": "shared", "deviceId": "dev-a"})
    );
    a2.join("shared").await;
    assert_eq!(b.json().await["type"], "joined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_an_instance_removes_its_members_from_shared_rooms() {
    let Some(redis) = start_redis().await else {
        return;
    };
    let one = instance(&redis).await;
    let two = instance(&redis).await;
    let mut a = Client::authed(&one.ws_url(), &identity(4), "dev-c").await;
    let mut b = Client::authed(&two.ws_url(), &identity(5), "dev-d").await;
    a.join("r").await;
    b.join("r").await;
    assert_eq!(a.json().await["type"], "joined");

    two.shutdown().await;
    // a's own join reaches instance two through Redis and may arrive after b joined there:
    // b then hears of a as a `joined` event before the shutdown notice.
    let mut msg = b.json().await;
    if msg["type"] == "joined" {
        assert_eq!(msg["member"]["deviceId"], "dev-c", "{msg}");
        msg = b.json().await;
    }
    assert_eq!(msg["type"], "reconnect", "{msg}");
    let left = a.json().await;
    assert_eq!(
        left,
        json!({"type": "left", "room": "r", "deviceId": "dev-d"})
    );

    // b comes back through instance one and is listed again.
    let mut b2 = Client::authed(&one.ws_url(), &identity(5), "dev-d").await;
    let members = b2.join("r").await;
    assert_eq!(members["members"][0]["deviceId"], "dev-c");
    assert_eq!(a.json().await["member"]["deviceId"], "dev-d");

    // An instance that dies without cleaning up: its device stays in Redis, but nothing is
    // routed to it any more.
    let three = instance(&redis).await;
    let _e = Client::authed(&three.ws_url(), &identity(6), "dev-e").await;
    three.abort();
    let mut offline = None;
    // Bounded: the dead instance stops receiving at once (its subscription is gone) and is
    // forgotten entirely once its liveness key expires.
    for i in 0..200u64 {
        a.send(json!({"type": "signal", "to": "dev-e", "id": i, "data": 1}))
            .await;
        let v = a.json().await;
        if v["code"] == "target_offline" {
            offline = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        offline.is_some(),
        "signals to a dead instance's device fail cleanly"
    );
}

/// An instance process killed with SIGKILL (no shutdown, no cleanup): the other instance
/// notices its liveness key expire and tells the room its members left, within the
/// documented bound (instance TTL 10 s + refresh 3 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_of_a_killed_instance_are_announced_as_left() {
    let Some(redis) = start_redis().await else {
        return;
    };
    let one = instance(&redis).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_peerlink-signal-server"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--no-lobby"])
        .args(["--redis", &redis.url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("server binary starts");
    let mut up = false;
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(up, "the second instance listens");
    let mut a = Client::authed(&one.ws_url(), &identity(7), "dev-f").await;
    let mut b = Client::authed(&format!("ws://127.0.0.1:{port}/ws"), &identity(8), "dev-g").await;
    a.join("crash").await;
    let members = b.join("crash").await;
    assert_eq!(members["members"][0]["deviceId"], "dev-f");
    assert_eq!(a.json().await["member"]["deviceId"], "dev-g");

    child.kill().expect("SIGKILL the second instance");
    let _ = child.wait();
    let started = std::time::Instant::now();
    // Bounded: 13 s is the documented bound; allow slack for a loaded machine.
    let left = tokio::time::timeout(Duration::from_secs(25), a.ws.next())
        .await
        .expect("a `left` within the crash-detection bound");
    let left = match left {
        Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
            serde_json::from_str::<serde_json::Value>(t.as_str()).unwrap()
        }
        other => panic!("expected a left event, got {other:?}"),
    };
    assert_eq!(
        left,
        json!({"type": "left", "room": "crash", "deviceId": "dev-g"})
    );
    eprintln!("left announced {:?} after the kill", started.elapsed());
    // The room no longer lists the dead instance's member.
    let mut c = Client::authed(&one.ws_url(), &identity(9), "dev-h").await;
    let members = c.join("crash").await;
    assert_eq!(
        members["members"],
        json!([{"deviceId": "dev-f", "userId": "user", "publicKey": identity(7).public_key().to_base64()}])
    );
}

/// Relay frames crossing instances meet a bounded queue at the receiving instance: a target
/// that does not read gets nothing buffered beyond its queue; further frames are dropped there
/// (counted) and the sender is told `target_busy`, as on a single instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_instance_relay_to_a_slow_reader_is_bounded_and_reported_busy() {
    let Some(redis) = start_redis().await else {
        return;
    };
    let one = instance(&redis).await;
    let two = Server::bind(
        "127.0.0.1:0",
        ServerConfig {
            redis_url: Some(redis.url.clone()),
            client_queue: 4,
            ..ServerConfig::default()
        },
    )
    .await
    .unwrap();
    let mut a = Client::authed(&one.ws_url(), &identity(10), "dev-i").await;
    // b never reads after logging in.
    let _b = Client::authed(&two.ws_url(), &identity(11), "dev-j").await;
    let payload = vec![7u8; 32 << 10];
    let mut busy = None;
    // Bounded: 2,000 frames of 32 KiB (64 MiB) is far beyond what the kernel buffers and a
    // 4-frame queue hold.
    for _ in 0..2_000 {
        a.send_binary(relay_frame("dev-j", &payload).to_vec()).await;
        if let Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t)))) =
            tokio::time::timeout(Duration::from_millis(1), a.ws.next()).await
        {
            busy = Some(serde_json::from_str::<serde_json::Value>(t.as_str()).unwrap());
            break;
        }
    }
    let busy = busy.expect("the sender hears that the target is busy");
    assert_eq!(busy["type"], "error", "{busy}");
    assert_eq!(busy["code"], "target_busy", "{busy}");
    assert_eq!(busy["to"], "dev-j", "{busy}");
    assert!(two.metrics().relay_dropped() >= 1);
}
