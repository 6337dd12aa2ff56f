//! The NAT lab's peer: one device in a private network of `tests/natlab/lab.sh`. It connects to
//! the signaling server, fetches TURN credentials, and either waits for the other device
//! (acceptor) or dials it by device id (dialer) with a hybrid connection: the server relay at
//! once, WebRTC with the TURN server configured when ICE finds a path. The dialer then sends a
//! payload of seeded random bytes, the acceptor answers with its SHA-256, and the dialer prints
//! one JSON line: whether the digest matched and the path that carried the transfer, as both
//! ends saw it.
//!
//! ```text
//! natlab_peer --server URL --device ID --room ROOM [--to DEVICE] [--bytes N]
//!             [--turn rest|none|lt:URL:USER:PASS] [--webrtc-wait S] [--seconds S] [--seed N]
//!             [--ice-check-ms MS]
//! ```
//!
//! The peer uses peerlink's default tuning, so the lab tests what a user gets.
//! `--ice-check-ms MS` overrides the pace of ICE connectivity checks (0: the engine's fixed
//! 200 ms with its 7 checks per candidate pair).
//!
//! `--turn rest` (default) uses the server's TURN credentials (`use-auth-secret`); `lt:…` a
//! TURN server with a long-term user; `none` no STUN or TURN at all. `--webrtc-wait` is how
//! long the dialer waits for WebRTC before transferring over whatever path it has.
//! Exits 0 when the transfer verified, 1 otherwise; the acceptor exits after the dialer says
//! `done`, or after `--seconds`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use peerlink::signaling::{
    DialerConfig, HybridAcceptor, HybridConfig, HybridConnection, SignalingClient, SignalingConfig,
    SignalingEvent, WebRtcDialer,
};
use peerlink::webrtc::{IceServer, WebRtcConfig};
use peerlink::{CallOptions, HandlerError, Identity, Node, NodeConfig, TransportKind, handler_fn};
use rand::{RngCore as _, SeedableRng as _};
use sha2::{Digest as _, Sha256};

#[derive(Debug)]
struct Args {
    server: String,
    device: String,
    room: String,
    to: Option<String>,
    bytes: usize,
    turn: String,
    webrtc_wait: u64,
    seconds: u64,
    seed: u64,
    ice_check_ms: Option<u64>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        server: String::new(),
        device: String::new(),
        room: "natlab".into(),
        to: None,
        bytes: 8 << 20,
        turn: "rest".into(),
        webrtc_wait: 20,
        seconds: 90,
        seed: 1,
        ice_check_ms: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--server" => a.server = v,
            "--device" => a.device = v,
            "--room" => a.room = v,
            "--to" => a.to = Some(v),
            "--bytes" => a.bytes = usize::try_from(num(&v)?).map_err(|e| e.to_string())?,
            "--turn" => a.turn = v,
            "--webrtc-wait" => a.webrtc_wait = num(&v)?,
            "--seconds" => a.seconds = num(&v)?,
            "--seed" => a.seed = num(&v)?,
            "--ice-check-ms" => a.ice_check_ms = Some(num(&v)?),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if a.server.is_empty() || a.device.is_empty() {
        return Err("--server and --device are required".into());
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("natlab_peer: {e}");
            std::process::exit(2);
        }
    };
    // Logs (to stderr) only when RUST_LOG asks for them; stdout holds the JSON line.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let limit = Duration::from_secs(args.seconds);
    let result = runtime.block_on(async { tokio::time::timeout(limit, run(&args)).await });
    let code = match result {
        Ok(Ok(ok)) => i32::from(!ok),
        Ok(Err(e)) => {
            println!(
                "{}",
                serde_json::json!({"device": args.device, "ok": false, "error": e.to_string()})
            );
            1
        }
        Err(_) => {
            println!(
                "{}",
                serde_json::json!({"device": args.device, "ok": false, "error": "timed out"})
            );
            1
        }
    };
    runtime.shutdown_timeout(Duration::from_secs(2));
    std::process::exit(code);
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn ice_servers(client: &SignalingClient, turn: &str) -> Result<Vec<IceServer>, BoxError> {
    if turn == "none" {
        return Ok(Vec::new());
    }
    if let Some(rest) = turn.strip_prefix("lt:") {
        // lt:turn:HOST:PORT:USER:PASS — the URL holds colons, so split from the right.
        let mut parts = rest.rsplitn(3, ':');
        let pass = parts.next().ok_or("lt: password missing")?;
        let user = parts.next().ok_or("lt: user missing")?;
        let url = parts.next().ok_or("lt: url missing")?;
        let host = url.trim_start_matches("turn:");
        return Ok(vec![IceServer {
            urls: vec![format!("stun:{host}"), format!("turn:{host}?transport=udp")],
            username: user.into(),
            credential: pass.into(),
        }]);
    }
    let creds = client.turn_credentials().await?;
    Ok(vec![IceServer {
        urls: creds.urls,
        username: creds.username,
        credential: creds.credential,
    }])
}

async fn run(args: &Args) -> Result<bool, BoxError> {
    let identity = Identity::generate(&mut rand::rngs::OsRng);
    let node = Node::new(NodeConfig::new(
        identity.clone(),
        "natlab",
        args.device.clone(),
    ))?;
    let config = SignalingConfig::new(args.server.clone(), identity, "natlab", args.device.clone());
    let (client, events) = SignalingClient::connect(config).await?;
    let mut webrtc = WebRtcConfig {
        ice_servers: ice_servers(&client, &args.turn).await?,
        ..WebRtcConfig::default()
    };
    match args.ice_check_ms {
        None => {}
        Some(0) => {
            webrtc.tuning.ice_check_interval = None;
            webrtc.tuning.ice_max_checks = None;
        }
        Some(ms) => webrtc.tuning.ice_check_interval = Some(Duration::from_millis(ms)),
    }
    let mut dialer_config = DialerConfig::new(webrtc);
    dialer_config.accept_relay = true;
    // A first attempt through TURN sometimes fails in the engine while a second one opens in
    // about 3 s (docs/testing.md): three 10 s attempts fit the matrix's 35 s wait.
    dialer_config.open_timeout = Duration::from_secs(10);
    let (dialer, mut rest, incoming) = WebRtcDialer::new(client.clone(), events, dialer_config);
    let members = client.join(&args.room).await?;

    let Some(to) = &args.to else {
        return accept(&node, incoming).await;
    };
    // Wait (bounded by the caller's limit) until the other device is in the room.
    if !members.iter().any(|m| &m.device_id == to) {
        loop {
            match rest.next().await {
                Some(SignalingEvent::Joined { member, .. }) if &member.device_id == to => break,
                Some(_) => {}
                None => return Err("signaling closed before the peer joined".into()),
            }
        }
    }
    let started = Instant::now();
    let hybrid = HybridConnection::dial(
        &dialer,
        &node,
        to,
        HybridConfig {
            retry_delay: Duration::from_secs(1),
            max_webrtc_attempts: 3,
        },
    )
    .await?;
    let relay_ms = started.elapsed().as_secs_f64() * 1e3;
    let on_webrtc = hybrid
        .wait_for_path(TransportKind::WebRtc, Duration::from_secs(args.webrtc_wait))
        .await;
    let webrtc_ms = on_webrtc.then(|| started.elapsed().as_secs_f64() * 1e3);

    let mut payload = vec![0u8; args.bytes];
    rand::rngs::StdRng::seed_from_u64(args.seed).fill_bytes(&mut payload);
    let expected = hex(&Sha256::digest(&payload));
    let connection = hybrid.current();
    let sent = Instant::now();
    let reply = connection
        .call_raw(
            "digest",
            Bytes::from(payload),
            CallOptions {
                timeout: Some(Duration::from_secs(args.seconds)),
            },
        )
        .await?;
    let transfer_s = sent.elapsed().as_secs_f64();
    let reply: serde_json::Value = serde_json::from_slice(&reply)?;
    let ok = reply["sha256"] == expected.as_str() && reply["len"] == args.bytes;
    let path = connection.path().await;
    let relayed_by_turn = path
        .local
        .as_ref()
        .is_some_and(|c| c.candidate_type == "relay")
        || path
            .remote
            .as_ref()
            .is_some_and(|c| c.candidate_type == "relay");
    println!(
        "{}",
        serde_json::json!({
            "device": args.device,
            "to": to,
            "ok": ok,
            "bytes": args.bytes,
            "kind": path.kind.as_str(),
            "serverRelay": path.kind == TransportKind::Relay,
            "turnRelay": relayed_by_turn,
            "local": path.local,
            "remote": path.remote,
            "rttMs": path.rtt_ms,
            "peerPath": reply["path"],
            "relayMs": relay_ms,
            "webrtcMs": webrtc_ms,
            "transferSeconds": transfer_s,
            "mbytesPerSecond": args.bytes as f64 / 1e6 / transfer_s.max(1e-9),
        })
    );
    let _ = hybrid.current().notify("done", &()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    hybrid.close("done").await;
    client.close().await;
    Ok(ok)
}

async fn accept(
    node: &Node,
    incoming: peerlink::signaling::IncomingLinks,
) -> Result<bool, BoxError> {
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    node.expose(
        "digest",
        handler_fn(|req| async move {
            let path = req.connection.path().await;
            let reply = serde_json::json!({
                "sha256": hex(&Sha256::digest(&req.body)),
                "len": req.body.len(),
                "path": path,
            });
            Ok::<_, HandlerError>(Bytes::from(reply.to_string()))
        }),
    );
    node.expose(
        "done",
        handler_fn(move |_req| {
            let done_tx = done_tx.clone();
            async move {
                let _ = done_tx.send(());
                Ok::<_, HandlerError>(Bytes::new())
            }
        }),
    );
    let mut acceptor = HybridAcceptor::new(node.clone(), incoming);
    let mut held = Vec::new();
    // Bounded by the caller's limit; ends when the dialer says done.
    loop {
        tokio::select! {
            h = acceptor.accept() => match h {
                Some(h) => held.push(h),
                None => return Err("signaling closed".into()),
            },
            _ = done_rx.recv() => break,
        }
    }
    println!(
        "{}",
        serde_json::json!({"ok": true, "accepted": held.len()})
    );
    Ok(true)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
