//! Loopback WebRTC benchmark: connect time (offer created → channel open) and bulk throughput.
//!
//! ```text
//! cargo run --release -p peerlink --example webrtc_bench -- [--engine-defaults] [--no-pacing]
//!     [--rcvbuf BYTES|none] [--sndbuf BYTES|none] [--limit BYTES|none] [--window BYTES]
//!     [--ice-interval-ms MS] [--max-message BYTES] [--msg BYTES] [--mib MIB] [--runs N]
//!     [--turn URL --turn-user USER --turn-pass PASS] [--tcp [--tcp-cc NAME]]
//!     [--sctp-cc standard|rate]
//! ```
//!
//! Each run builds two links bound to 127.0.0.1, connects them, sends `--mib` MiB in `--msg`
//! byte messages one way and reports the medians. `--turn` makes both links relay-only through
//! that TURN server. `--tcp` instead moves the same bytes over one TCP connection on loopback
//! (the reference for `bench/webrtc/loss.sh`, which impairs both the same way); `--tcp-cc`
//! picks the sender's congestion control (`cubic`, `reno`, `bbr`; default: the system's). `RcvbufErrors` is the kernel's count of UDP
//! datagrams dropped because a socket's receive buffer was full during the run. `--sctp-cc`
//! picks the SCTP congestion controller (`standard`: RFC 4960; `rate`: the default, rate-based).

use std::time::{Duration, Instant};

use bytes::Bytes;
use peerlink::webrtc::{
    ChannelOptions, IceServer, IceTransportPolicy, SctpCongestionControl, Tuning, WebRtcConfig,
    WebRtcEvent, WebRtcEvents, WebRtcLink, WebRtcRole,
};
use tokio::sync::mpsc;

fn forward(
    mut events: WebRtcEvents,
    to: &WebRtcLink,
    channels: Option<mpsc::UnboundedSender<peerlink::webrtc::WebRtcChannel>>,
) {
    let to = to.downgrade();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            match event {
                WebRtcEvent::Signal(signal) => {
                    let Some(to) = to.upgrade() else { return };
                    if let Err(err) = to.handle_signal(signal).await {
                        eprintln!("signal refused: {err}");
                    }
                }
                WebRtcEvent::Channel(ch) => {
                    if std::env::var_os("BENCH_TRACE").is_some() {
                        eprintln!("{:?} remote channel", std::time::SystemTime::now());
                    }
                    if let Some(tx) = &channels {
                        let _ = tx.send(ch);
                    }
                }
                other => {
                    if std::env::var_os("BENCH_TRACE").is_some() {
                        eprintln!("{:?} {other:?}", std::time::SystemTime::now());
                    }
                }
            }
        }
    });
}

fn rcvbuf_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(header), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    header
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(h, _)| *h == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

struct RunResult {
    connect: Duration,
    throughput_mb_s: f64,
    rcvbuf_errors: u64,
}

async fn run(config: &WebRtcConfig, msg: usize, total: usize) -> Result<RunResult, String> {
    let (offerer, offerer_events) = WebRtcLink::new(config.clone(), WebRtcRole::Offerer)
        .await
        .map_err(|e| e.to_string())?;
    let (answerer, answerer_events) = WebRtcLink::new(config.clone(), WebRtcRole::Answerer)
        .await
        .map_err(|e| e.to_string())?;
    let (ch_tx, mut ch_rx) = mpsc::unbounded_channel();
    forward(offerer_events, &answerer, None);
    forward(answerer_events, &offerer, Some(ch_tx));
    let channel = offerer
        .create_channel("bulk", ChannelOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    if std::env::var_os("BENCH_TRACE").is_some() {
        eprintln!("{:?} start", std::time::SystemTime::now());
    }
    offerer.start().await.map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(10), channel.opened())
        .await
        .map_err(|_| {
            // Where the setup stopped: ICE and DTLS (the link states) or the channel.
            format!(
                "open timeout (offerer {:?}, answerer {:?}, answerer's channel {})",
                offerer.state(),
                answerer.state(),
                if ch_rx.is_empty() {
                    "not announced"
                } else {
                    "announced"
                }
            )
        })?
        .map_err(|e| e.to_string())?;
    let connect = t0.elapsed();
    trace("opened");
    let mut remote = tokio::time::timeout(Duration::from_secs(10), ch_rx.recv())
        .await
        .map_err(|_| "remote channel timeout".to_string())?
        .ok_or("no remote channel")?;

    let errors_before = rcvbuf_errors();
    let payload = Bytes::from(vec![0xA5u8; msg]);
    let count = total / msg;
    let (tx, _rx) = channel.split();
    let t1 = Instant::now();
    trace("bulk start");
    let sender = tokio::spawn(async move {
        for _ in 0..count {
            if let Err(e) = tx.send(payload.clone()).await {
                return Err(e.to_string());
            }
        }
        Ok(())
    });
    let mut received = 0usize;
    while received < count * msg {
        let got = tokio::time::timeout(Duration::from_secs(60), remote.receiver.recv())
            .await
            .map_err(|_| format!("bulk stalled at {received} bytes"))?
            .ok_or("channel closed")?;
        received += got.len();
    }
    let elapsed = t1.elapsed();
    trace("received");
    sender.await.map_err(|e| e.to_string())??;
    trace("sender done");
    let rcvbuf = rcvbuf_errors().saturating_sub(errors_before);
    offerer.close().await;
    trace("offerer closed");
    answerer.close().await;
    trace("answerer closed");
    Ok(RunResult {
        connect,
        throughput_mb_s: received as f64 / elapsed.as_secs_f64() / 1e6,
        rcvbuf_errors: rcvbuf,
    })
}

/// With `BENCH_TRACE` set, prints `what` with the wall-clock time to stderr.
fn trace(what: &str) {
    if std::env::var_os("BENCH_TRACE").is_some() {
        eprintln!("{:?} {what}", std::time::SystemTime::now());
    }
}

/// The same transfer over one TCP connection on 127.0.0.1 (connect time: the TCP handshake),
/// with the sender's congestion control set to `cc` if given (Linux `TCP_CONGESTION`).
async fn run_tcp(msg: usize, total: usize, cc: Option<&str>) -> Result<RunResult, String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let (client, accepted) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
    let mut client = client.map_err(|e| e.to_string())?;
    let (mut server, _) = accepted.map_err(|e| e.to_string())?;
    let connect = t0.elapsed();
    if let Some(cc) = cc {
        socket2::SockRef::from(&client)
            .set_tcp_congestion(cc.as_bytes())
            .map_err(|e| format!("TCP_CONGESTION {cc}: {e}"))?;
    }
    let payload = vec![0xA5u8; msg];
    let count = total / msg;
    let t1 = Instant::now();
    let sender = tokio::spawn(async move {
        for _ in 0..count {
            client.write_all(&payload).await?;
        }
        client.shutdown().await
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut received = 0usize;
    while received < count * msg {
        let n = tokio::time::timeout(Duration::from_secs(60), server.read(&mut buf))
            .await
            .map_err(|_| format!("bulk stalled at {received} bytes"))?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        received += n;
    }
    let elapsed = t1.elapsed();
    sender
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(RunResult {
        connect,
        throughput_mb_s: received as f64 / elapsed.as_secs_f64() / 1e6,
        rcvbuf_errors: 0,
    })
}

/// `value` as a number for `flag`, or exit with a message: a mistyped figure must not quietly
/// run the default.
fn num<T: std::str::FromStr>(flag: &str, value: &str) -> T {
    value.parse().unwrap_or_else(|_| {
        eprintln!("{flag}: not a number: {value:?}");
        std::process::exit(2);
    })
}

/// Like [`num`], with `none` for "not set".
fn parse_opt(flag: &str, value: &str) -> Option<usize> {
    if value == "none" {
        None
    } else {
        Some(num(flag, value))
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        // To stderr: stdout carries the results, which scripts filter.
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut tuning = Tuning::default();
    let mut msg = 64 * 1024;
    let mut mib: f64 = 200.0;
    let mut runs = 5;
    let mut tcp = false;
    let mut tcp_cc: Option<String> = None;
    let mut turn = IceServer::default();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--engine-defaults" => {
                tuning = Tuning::engine_defaults();
                i += 1;
                continue;
            }
            "--tcp" => {
                tcp = true;
                i += 1;
                continue;
            }
            "--tcp-cc" => tcp_cc = Some(value),
            "--sctp-cc" => {
                tuning.sctp_congestion_control = match value.as_str() {
                    "standard" => SctpCongestionControl::Standard,
                    "rate" => SctpCongestionControl::RateBased,
                    other => {
                        eprintln!("--sctp-cc: standard or rate, not {other}");
                        std::process::exit(2);
                    }
                }
            }
            "--turn" => turn.urls = vec![value],
            "--turn-user" => turn.username = value,
            "--turn-pass" => turn.credential = value,
            "--no-pacing" => {
                tuning.send_pacing = None;
                i += 1;
                continue;
            }
            "--rcvbuf" => tuning.socket_recv_buffer = parse_opt(&args[i], &value),
            "--sndbuf" => tuning.socket_send_buffer = parse_opt(&args[i], &value),
            "--limit" => tuning.send_buffer_limit = parse_opt(&args[i], &value),
            "--window" => {
                tuning.sctp_receive_window = parse_opt(&args[i], &value).map(|v| v as u32)
            }
            "--ice-interval-ms" => {
                tuning.ice_check_interval =
                    parse_opt(&args[i], &value).map(|ms| Duration::from_millis(ms as u64))
            }
            "--kick-us" => {
                tuning.setup_kick_interval =
                    parse_opt(&args[i], &value).map(|us| Duration::from_micros(us as u64))
            }
            "--max-message" => tuning.max_message_size = num(&args[i], &value),
            "--msg" => msg = num(&args[i], &value),
            "--mib" => mib = num(&args[i], &value),
            "--runs" => runs = num(&args[i], &value),
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    if msg > tuning.max_message_size as usize {
        tuning.max_message_size = msg as u32;
    }
    let mut config = WebRtcConfig {
        tuning: tuning.clone(),
        ..WebRtcConfig::loopback()
    };
    if !turn.urls.is_empty() {
        config.ice_servers = vec![turn];
        config.ice_transport_policy = IceTransportPolicy::Relay;
    }
    if msg == 0 || mib.is_nan() || mib <= 0.0 {
        eprintln!("--msg and --mib must be positive");
        std::process::exit(2);
    }
    // Whole messages: at least one.
    let total = ((mib * 1024.0 * 1024.0) as usize).max(msg);
    println!("tuning: {tuning:?}, message {msg} B, {mib} MiB, {runs} runs");
    let mut connects = Vec::new();
    let mut rates = Vec::new();
    for r in 0..runs {
        let result = if tcp {
            run_tcp(msg, total, tcp_cc.as_deref()).await
        } else {
            run(&config, msg, total).await
        };
        match result {
            Ok(res) => {
                println!(
                    "run {r}: connect {:.1} ms, bulk {:.2} MB/s, RcvbufErrors +{}",
                    res.connect.as_secs_f64() * 1e3,
                    res.throughput_mb_s,
                    res.rcvbuf_errors
                );
                connects.push(res.connect.as_secs_f64() * 1e3);
                rates.push(res.throughput_mb_s);
            }
            Err(err) => println!("run {r}: failed: {err}"),
        }
    }
    println!(
        "median: connect {:.1} ms, bulk {:.2} MB/s",
        median(connects),
        median(rates)
    );
}
