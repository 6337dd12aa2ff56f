//! Two signaling instances on one real `redis-server` (Debian package `redis-server`): a
//! client whose instance stops reconnects to the other by itself, re-joins its room, and is
//! seen again by a client of the other instance. Skipped loudly when `redis-server` is absent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use peerlink::Identity;
use peerlink::signaling::{SignalingClient, SignalingConfig, SignalingEvent, SignalingEvents};
use peerlink_signal_server::{Server, ServerConfig};
use serde_json::json;

const BOUND: Duration = Duration::from_secs(30);

struct Redis(std::process::Child, String);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_redis() -> Option<Redis> {
    let ok = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("\n*** SKIPPED: redis-server not found (Debian package `redis-server`) ***\n");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let redis = Redis(child, format!("redis://127.0.0.1:{port}/"));
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Some(redis);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("redis-server did not start");
}

async fn wait_for<T>(
    events: &mut SignalingEvents,
    mut pick: impl FnMut(SignalingEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(BOUND, async {
        // Bounded by the timeout around it.
        loop {
            if let Some(t) = pick(events.next().await.expect("client running")) {
                return t;
            }
        }
    })
    .await
    .expect("event within bound")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_fails_over_to_another_instance_and_rejoins() {
    let Some(redis) = start_redis().await else {
        return;
    };
    let config = ServerConfig {
        redis_url: Some(redis.1.clone()),
        ..ServerConfig::default()
    };
    let one = Server::bind("127.0.0.1:0", config.clone()).await.unwrap();
    let two = Server::bind("127.0.0.1:0", config).await.unwrap();

    let mut a_config = SignalingConfig::new(
        one.ws_url(),
        Identity::generate(&mut rand::rngs::OsRng),
        "ua",
        "dev-a",
    );
    a_config.urls.push(two.ws_url());
    a_config.backoff_initial = Duration::from_millis(50);
    let (a, mut a_events) = SignalingClient::connect(a_config).await.unwrap();
    let b_config = SignalingConfig::new(
        two.ws_url(),
        Identity::generate(&mut rand::rngs::OsRng),
        "ub",
        "dev-b",
    );
    let (b, mut b_events) = SignalingClient::connect(b_config).await.unwrap();
    a.join("room").await.unwrap();
    b.join("room").await.unwrap();
    wait_for(&mut a_events, |e| {
        matches!(e, SignalingEvent::Joined { .. }).then_some(())
    })
    .await;

    one.shutdown().await;
    // b sees a leave with its instance, then come back through instance two.
    wait_for(&mut b_events, |e| match e {
        SignalingEvent::Left { device_id, .. } if device_id == "dev-a" => Some(()),
        _ => None,
    })
    .await;
    let url = wait_for(&mut a_events, |e| match e {
        SignalingEvent::Connected { url } => Some(url),
        _ => None,
    })
    .await;
    assert_eq!(url, two.ws_url());
    wait_for(&mut b_events, |e| match e {
        SignalingEvent::Joined { member, .. } if member.device_id == "dev-a" => Some(()),
        _ => None,
    })
    .await;
    b.signal("dev-a", json!({"hello": "again"})).await.unwrap();
    let data = wait_for(&mut a_events, |e| match e {
        SignalingEvent::Signal { data, .. } => Some(data),
        _ => None,
    })
    .await;
    assert_eq!(data, json!({"hello": "again"}));
}
