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
//!             [--ice-check-ms MS] [--policy all|relay] [--turn-ca FILE]
//!             [--steady S] [--chunk BYTES] [--call-timeout S] [--redials N]
//! ```
//!
//! The peer uses peerlink's default tuning, so the lab tests what a user gets.
//! `--ice-check-ms MS` overrides the pace of ICE connectivity checks (0: the engine's fixed
//! 200 ms with its 7 checks per candidate pair).
//!
//! `--turn rest` (default) uses the server's TURN credentials (`use-auth-secret`); `lt:…` a
//! TURN server with a long-term user; `none` no STUN or TURN at all. `--webrtc-wait` is how
//! long the dialer waits for WebRTC before transferring over whatever path it has.
//! `--policy relay` offers only TURN relay candidates (the path through coturn, forced).
//! `--turn-ca FILE` trusts the DER CA certificate in FILE for `turns:` servers (the lab's CA).
//!
//! `--steady S` (dialer) replaces the one large call with steady load for S seconds: calls
//! `seq` one after another, each numbered and carrying `--chunk` seeded bytes, on whatever
//! path the hybrid connection offers at that moment. The acceptor takes the numbers in order:
//! a number it has seen counts as a duplicate, a skipped one as a gap, and it hashes the
//! payloads it takes. A call that fails (its path died, or `--call-timeout` passed) is sent
//! again with the same number after 0.5 s, and when the hybrid connection has no open path
//! left the dialer dials a new one (at most `--redials` times). At the end the dialer asks
//! the acceptor for its tally and prints one JSON line: calls, failed calls, duplicates, gaps,
//! whether both digests match, the calls completed per second (`timeline`), the longest stall,
//! the path changes it saw (each with the time and the reason a closed connection gave) and
//! the WebRTC path report (ICE restarts, selected-pair changes). It writes `steady started on
//! PATH` to stderr when the load begins, so a script can time faults against it.
//!
//! Exits 0 when the transfer verified (steady: the acceptor took every number in order, no
//! gap, and its digest matches; duplicates are reported, the caller judges them), 1 otherwise; the acceptor exits after the dialer says `done`, or after
//! `--seconds`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use peerlink::signaling::{
    DialerConfig, HybridAcceptor, HybridConfig, HybridConnection, SignalingClient, SignalingConfig,
    SignalingEvent, WebRtcDialer,
};
use peerlink::webrtc::{IceServer, IceTransportPolicy, WebRtcConfig};
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
    relay_only: bool,
    turn_ca: Option<String>,
    steady: u64,
    chunk: usize,
    call_timeout: u64,
    redials: u32,
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
        relay_only: false,
        turn_ca: None,
        steady: 0,
        chunk: 16 << 10,
        call_timeout: 30,
        redials: 3,
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
            "--turn-ca" => a.turn_ca = Some(v),
            "--policy" => {
                a.relay_only = match v.as_str() {
                    "all" => false,
                    "relay" => true,
                    _ => return Err(format!("--policy {v}: all or relay")),
                }
            }
            "--steady" => a.steady = num(&v)?,
            "--chunk" => a.chunk = usize::try_from(num(&v)?).map_err(|e| e.to_string())?,
            "--call-timeout" => a.call_timeout = num(&v)?.max(1),
            "--redials" => a.redials = u32::try_from(num(&v)?).map_err(|e| e.to_string())?,
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
    if let Some(path) = &args.turn_ca {
        webrtc.turn_tls_roots = vec![std::fs::read(path).map_err(|e| format!("{path}: {e}"))?];
    }
    if args.relay_only {
        webrtc.ice_transport_policy = IceTransportPolicy::Relay;
    }
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
    let hybrid_config = HybridConfig {
        retry_delay: Duration::from_secs(1),
        max_webrtc_attempts: 3,
    };
    let hybrid = HybridConnection::dial(&dialer, &node, to, hybrid_config).await?;
    let relay_ms = started.elapsed().as_secs_f64() * 1e3;
    let on_webrtc = hybrid
        .wait_for_path(TransportKind::WebRtc, Duration::from_secs(args.webrtc_wait))
        .await;
    let webrtc_ms = on_webrtc.then(|| started.elapsed().as_secs_f64() * 1e3);
    if args.steady > 0 {
        let steady = Steady {
            args,
            dialer: &dialer,
            node: &node,
            to,
            config: hybrid_config,
        };
        let ok = steady.run(hybrid, webrtc_ms).await?;
        client.close().await;
        return Ok(ok);
    }

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
    let tally = Arc::new(Mutex::new(Tally::default()));
    let t = tally.clone();
    node.expose(
        "seq",
        handler_fn(move |req| {
            let t = t.clone();
            async move {
                let body = &req.body;
                let n = body
                    .get(..8)
                    .map(|b| u64::from_be_bytes(b.try_into().unwrap()))
                    .ok_or_else(|| HandlerError::new("bad_request", "no sequence number"))?;
                t.lock().unwrap().take(n, &body[8..]);
                Ok::<_, HandlerError>(Bytes::copy_from_slice(&n.to_be_bytes()))
            }
        }),
    );
    node.expose(
        "tally",
        handler_fn(move |_req| {
            let t = tally.clone();
            async move {
                let t = t.lock().unwrap();
                let reply = serde_json::json!({
                    "taken": t.taken,
                    "last": t.last,
                    "duplicates": t.duplicates,
                    "gaps": t.gaps,
                    "sha256": hex(&t.hash.clone().finalize()),
                });
                Ok::<_, HandlerError>(Bytes::from(reply.to_string()))
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

/// The acceptor's record of numbered calls: taken in order, duplicates and gaps counted.
#[derive(Default)]
struct Tally {
    taken: u64,
    last: u64,
    duplicates: u64,
    gaps: u64,
    hash: Sha256,
}

impl Tally {
    fn take(&mut self, n: u64, payload: &[u8]) {
        if n <= self.last {
            self.duplicates += 1;
            return;
        }
        if n != self.last + 1 {
            self.gaps += n - self.last - 1;
        }
        self.last = n;
        self.taken += 1;
        self.hash.update(payload);
    }
}

/// The payload of call `n`: `chunk` bytes seeded by the run's seed and `n`.
fn chunk_of(seed: u64, n: u64, chunk: usize) -> Vec<u8> {
    let mut payload = vec![0u8; chunk];
    rand::rngs::StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(n))
        .fill_bytes(&mut payload);
    payload
}

/// The dialer's steady load (see the module documentation).
struct Steady<'a> {
    args: &'a Args,
    dialer: &'a WebRtcDialer,
    node: &'a Node,
    to: &'a str,
    config: HybridConfig,
}

/// A change of the path new calls take, as the dialer saw it.
#[derive(serde::Serialize)]
struct Change {
    ms: u64,
    path: &'static str,
    /// Why the connection that carried calls until now closed, if it did.
    reason: Option<String>,
}

impl Steady<'_> {
    async fn run(
        &self,
        mut hybrid: HybridConnection,
        webrtc_ms: Option<f64>,
    ) -> Result<bool, BoxError> {
        let args = self.args;
        let start = Instant::now();
        let ms = |t: Instant| u64::try_from(t.duration_since(start).as_millis()).unwrap_or(0);
        let seconds = usize::try_from(args.steady).unwrap_or(usize::MAX);
        let mut timeline = vec![0u32; seconds + 1];
        let mut hash = Sha256::new();
        let mut changes: Vec<Change> = Vec::new();
        let mut errors: Vec<serde_json::Value> = Vec::new();
        let (mut failed, mut redials, mut max_stall) = (0u64, 0u32, Duration::ZERO);
        let mut last_ok = Instant::now();
        let mut n = 1u64;
        let mut carrier = hybrid.current();
        let mut last_webrtc = hybrid.webrtc();
        changes.push(Change {
            ms: 0,
            path: carrier.transport_kind().as_str(),
            reason: None,
        });
        let deadline = start + Duration::from_secs(args.steady);
        let options = CallOptions {
            timeout: Some(Duration::from_secs(args.call_timeout)),
        };
        eprintln!("steady started on {}", carrier.transport_kind().as_str());
        let mut next_progress = start;
        // Bounded by the deadline: every wait inside is bounded by the call timeout, 0.5 s or
        // a redial (itself bounded by the signaling client's timeouts and `--redials`).
        while Instant::now() < deadline {
            if !hybrid.is_open() {
                if redials >= args.redials {
                    errors.push(serde_json::json!({"ms": ms(Instant::now()), "error": "no path left, no redial left"}));
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                redials += 1;
                match HybridConnection::dial(self.dialer, self.node, self.to, self.config).await {
                    Ok(h) => hybrid = h,
                    Err(e) => {
                        errors.push(serde_json::json!({"ms": ms(Instant::now()), "error": format!("redial: {e}")}));
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                }
            }
            let connection = hybrid.current();
            if connection.id() != carrier.id() {
                let reason = carrier.close_reason().map(|r| r.to_string());
                carrier = connection.clone();
                changes.push(Change {
                    ms: ms(Instant::now()),
                    path: carrier.transport_kind().as_str(),
                    reason,
                });
            }
            if let Some(w) = hybrid.webrtc() {
                last_webrtc = Some(w);
            }
            let mut body = n.to_be_bytes().to_vec();
            let payload = chunk_of(args.seed, n, args.chunk);
            body.extend_from_slice(&payload);
            match connection.call_raw("seq", Bytes::from(body), options).await {
                Ok(reply) if reply.as_ref() == n.to_be_bytes() => {
                    let now = Instant::now();
                    max_stall = max_stall.max(now - last_ok);
                    last_ok = now;
                    hash.update(&payload);
                    let second = usize::try_from(now.duration_since(start).as_secs()).unwrap_or(0);
                    timeline[second.min(seconds)] += 1;
                    n += 1;
                }
                other => {
                    failed += 1;
                    let error = match other {
                        Ok(_) => "wrong sequence number in the reply".to_owned(),
                        Err(e) => e.to_string(),
                    };
                    if errors.len() < 20 {
                        errors.push(serde_json::json!({"ms": ms(Instant::now()), "n": n, "path": connection.transport_kind().as_str(), "error": error}));
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            if Instant::now() >= next_progress {
                eprintln!(
                    "steady t={:.1}s calls={} failed={failed} path={}",
                    start.elapsed().as_secs_f64(),
                    n - 1,
                    carrier.transport_kind().as_str()
                );
                next_progress += Duration::from_secs(1);
            }
        }
        let calls = n - 1;
        // The acceptor's tally, over whatever path is left (bounded retries).
        let mut tally = None;
        for _ in 0..6 {
            let reply = hybrid
                .current()
                .call_raw("tally", Bytes::new(), options)
                .await;
            if let Ok(reply) = reply {
                tally = serde_json::from_slice::<serde_json::Value>(&reply).ok();
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let tally = tally.unwrap_or(serde_json::Value::Null);
        let digest = hex(&hash.finalize());
        let ok = calls > 0
            && tally["taken"] == calls
            && tally["last"] == calls
            && tally["gaps"] == 0
            && tally["sha256"] == digest.as_str();
        let webrtc_path = match &last_webrtc {
            Some(w) => Some(w.path().await),
            None => None,
        };
        let end_path = hybrid.current().path().await;
        println!(
            "{}",
            serde_json::json!({
                "device": args.device,
                "to": self.to,
                "ok": ok,
                "steadySeconds": args.steady,
                "chunk": args.chunk,
                "calls": calls,
                "failedCalls": failed,
                "redials": redials,
                "tally": tally,
                "digestMatches": tally["sha256"] == digest.as_str(),
                "maxStallMs": max_stall.as_secs_f64() * 1e3,
                "lastCallAgoMs": last_ok.elapsed().as_secs_f64() * 1e3,
                "timeline": timeline,
                "changes": changes,
                "errors": errors,
                "kind": end_path.kind.as_str(),
                "endPath": end_path,
                "webrtcPath": webrtc_path,
                "webrtcMs": webrtc_ms,
            })
        );
        let _ = hybrid.current().notify("done", &()).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        hybrid.close("done").await;
        Ok(ok)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
