//! Signaling server load benchmark.
//!
//! `signal-bench server` runs the peerlink signaling server with the limits a load test needs
//! off (message rates, connections per IP, room size), in its own process.
//! `signal-bench load` is the load generator: it holds N authenticated clients, spread over
//! several 127.x.y.z source addresses, against either that server or peerjs-server, and
//! prints one JSON line per measurement:
//!
//! - `idle`: the most idle authenticated clients held, and server RSS growth per client;
//! - `saturate`: signals relayed per second with every client in a closed ping-pong loop
//!   with its partner (a fixed number of signals in flight per pair); a client answers every
//!   signal already received before it flushes, so the generator is not one system call per
//!   signal;
//! - `rate`: p50/p99/max latency from send to receipt at a fixed total signal rate.
//!
//! Everything stays on loopback. `bench/signaling/run.sh` runs both servers side by side.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use clap::{Parser, Subcommand, ValueEnum};
use futures_util::{FutureExt as _, SinkExt, StreamExt};
use peerlink_core::identity::Identity;
use peerlink_signal_server::protocol::auth_message;
use peerlink_signal_server::{Rate, Server, ServerConfig};
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

type Ws = WebSocketStream<TcpStream>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Time allowed for one client's connect and login.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Logins in progress at once.
const LOGIN_CONCURRENCY: usize = 256;
/// Source addresses the clients are spread over (127.1.0.1 ..).
const SOURCES: u8 = 16;
/// Padding that gives signals the size of a typical ICE candidate message.
const PAD: &str = "candidate:842163049 1 udp 1677729535 192.0.2.10 61234 typ srflx raddr 0.0.0.0 rport 0 generation 0 ufrag abcd";

#[derive(Parser, Debug)]
#[command(about = "Signaling server load benchmark")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the peerlink signaling server with load-test limits until killed.
    Server {
        /// Address to listen on (loopback).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// Run the load generator against a server.
    Load(LoadArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    Peerlink,
    Peerjs,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Peerlink => "peerlink",
            Kind::Peerjs => "peerjs",
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
struct LoadArgs {
    /// Which protocol the server speaks.
    #[arg(long, value_enum)]
    kind: Kind,
    /// Server address (loopback).
    #[arg(long)]
    addr: SocketAddr,
    /// Server process id, for its RSS.
    #[arg(long)]
    server_pid: u32,
    /// Idle clients to try to hold (0 skips the idle test).
    #[arg(long, default_value_t = 19_900)]
    idle: usize,
    /// How long the idle clients are held before counting survivors.
    #[arg(long, default_value_t = 10)]
    idle_hold_secs: u64,
    /// Client counts for the saturation and fixed-rate tests.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    sizes: Vec<usize>,
    /// Members per room (peerlink; peerjs has no rooms).
    #[arg(long, default_value_t = 10)]
    room_size: usize,
    /// Signals in flight over all clients in the saturation test.
    #[arg(long, default_value_t = 8_000)]
    in_flight: usize,
    /// Total signals per second of the fixed-rate test (0 skips it).
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Measurement windows per test (medians are reported by run.sh).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Length of one measurement window.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.cmd {
        Cmd::Server { listen } => rt.block_on(serve(&listen)),
        Cmd::Load(load) => rt.block_on(run_load(load)),
    }
}

/// The server with every limit a load test would trip off; everything else as deployed.
fn bench_config() -> ServerConfig {
    ServerConfig {
        message_rate: Rate::unlimited(),
        ip_message_rate: Rate::unlimited(),
        relay_byte_rate: Rate::unlimited(),
        max_connections_per_ip: usize::MAX,
        max_room_members: usize::MAX,
        lobby: false,
        ..ServerConfig::default()
    }
}

async fn serve(listen: &str) -> Result<(), BoxError> {
    let server = Server::bind(listen, bench_config()).await?;
    println!("listening {}", server.local_addr());
    tokio::signal::ctrl_c().await?;
    server.shutdown().await;
    Ok(())
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn micros_now() -> u64 {
    u64::try_from(epoch().elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn source(i: usize) -> IpAddr {
    // SOURCES is small; the cast cannot truncate.
    let host = (i % usize::from(SOURCES)) as u8 + 1;
    IpAddr::V4(Ipv4Addr::new(127, 1, 0, host))
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(16 << 10)
}

/// Opens client `i`'s connection and logs in: peerlink authenticates and joins room
/// `r<i / room_size>`; peerjs registers id `d<i>`.
async fn login(kind: Kind, addr: SocketAddr, i: usize, room_size: usize) -> Result<Ws, BoxError> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source(i), 0))?;
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let host = addr.to_string();
    let url = match kind {
        Kind::Peerlink => format!("ws://{host}/ws"),
        Kind::Peerjs => format!("ws://{host}/peerjs?key=peerjs&id=d{i}&token=t{i}"),
    };
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config())).await?;
    match kind {
        Kind::Peerjs => {
            let open = next_json(&mut ws).await?;
            if open["type"] != "OPEN" {
                return Err(format!("peerjs refused: {open}").into());
            }
        }
        Kind::Peerlink => {
            let challenge = next_json(&mut ws).await?;
            let challenge = base64::engine::general_purpose::STANDARD
                .decode(challenge["challenge"].as_str().ok_or("no challenge")?)?;
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let id = Identity::from_seed(&seed);
            let device = format!("d{i}");
            let sig = id.sign(&auth_message(&challenge, &host, &device, "bench"));
            let auth = serde_json::json!({
                "type": "auth", "v": 1, "id": 1,
                "publicKey": id.public_key().to_base64(),
                "deviceId": device, "userId": "bench", "host": host,
                "signature": sig.to_base64(),
            });
            ws.send(Message::Text(auth.to_string().into())).await?;
            let welcome = next_json(&mut ws).await?;
            if welcome["type"] != "welcome" {
                return Err(format!("auth refused: {welcome}").into());
            }
            let join = format!(r#"{{"type":"join","room":"r{}","id":2}}"#, i / room_size);
            ws.send(Message::Text(join.into())).await?;
            // Presence events of earlier members may come first; bounded by the login timeout.
            loop {
                let m = next_json(&mut ws).await?;
                if m["type"] == "members" {
                    break;
                }
                if m["type"] == "error" {
                    return Err(format!("join refused: {m}").into());
                }
            }
        }
    }
    Ok(ws)
}

async fn next_json(ws: &mut Ws) -> Result<Value, BoxError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(t.as_str())?),
            Some(Ok(Message::Close(f))) => return Err(format!("closed: {f:?}").into()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => return Err("connection ended".into()),
        }
    }
}

/// Logs in clients `0..n`; returns the connections that made it (index, socket).
async fn login_all(kind: Kind, addr: SocketAddr, n: usize, room_size: usize) -> Vec<(usize, Ws)> {
    let results: Vec<(usize, Result<Ws, BoxError>)> = futures_util::stream::iter(0..n)
        .map(|i| async move {
            let r = tokio::time::timeout(LOGIN_TIMEOUT, login(kind, addr, i, room_size)).await;
            (i, r.unwrap_or_else(|_| Err("login timed out".into())))
        })
        .buffer_unordered(LOGIN_CONCURRENCY)
        .collect()
        .await;
    let mut ok = Vec::with_capacity(n);
    let mut first_error = None;
    for (i, r) in results {
        match r {
            Ok(ws) => ok.push((i, ws)),
            Err(e) => {
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    if let Some(e) = first_error {
        eprintln!(
            "{}: {} of {n} logins failed, first: {e}",
            kind.name(),
            n - ok.len()
        );
    }
    ok.sort_by_key(|(i, _)| *i);
    ok
}

fn signal_text(kind: Kind, to: usize, t: u64) -> String {
    match kind {
        Kind::Peerlink => {
            format!(r#"{{"type":"signal","to":"d{to}","data":{{"t":{t},"candidate":"{PAD}"}}}}"#)
        }
        Kind::Peerjs => format!(
            r#"{{"type":"CANDIDATE","dst":"d{to}","payload":{{"t":{t},"candidate":"{PAD}"}}}}"#
        ),
    }
}

/// The send timestamp of a relayed signal, if `text` is one.
fn stamp(text: &str) -> Option<u64> {
    let at = text.find(r#""t":"#)? + 4;
    let digits = text[at..].split(|c: char| !c.is_ascii_digit()).next()?;
    digits.parse().ok()
}

/// What one client does during a phase.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Read (answering pings) until `until`; peerjs clients send its HEARTBEAT.
    Idle { until: Instant },
    /// Send `window` signals to the partner, then one back for each received.
    Saturate {
        window: usize,
        from: Instant,
        to: Instant,
    },
    /// Send one signal to the partner every `period`, starting after `offset`.
    Rate {
        period: Duration,
        offset: Duration,
        from: Instant,
        to: Instant,
    },
}

#[derive(Debug, Default)]
struct Stats {
    received: u64,
    latencies_us: Vec<u32>,
    errors: u64,
    closed: bool,
}

/// How long a phase keeps reading after it stops sending, so nothing is left in flight.
const DRAIN: Duration = Duration::from_secs(3);
/// Most signals a saturating client answers before it flushes its socket.
const BATCH: usize = 64;
/// Quiet time after which the drain ends early.
const QUIET: Duration = Duration::from_millis(300);

async fn drive(kind: Kind, ws: &mut Ws, me: usize, mode: Mode) -> Stats {
    let partner = me ^ 1;
    let mut stats = Stats::default();
    let start = Instant::now();
    let (stop, measure) = match mode {
        Mode::Idle { until } => (until, None),
        Mode::Saturate { from, to, .. } | Mode::Rate { from, to, .. } => (to, Some((from, to))),
    };
    // peerjs-server drops a client 60 s after its last HEARTBEAT (other messages do not
    // count), and a phase is shorter than the 20 s heartbeat period: every phase starts with
    // one, so its clients live through all the phases of a run.
    if kind == Kind::Peerjs
        && ws
            .send(Message::Text(r#"{"type":"HEARTBEAT"}"#.into()))
            .await
            .is_err()
    {
        stats.closed = true;
        return stats;
    }
    if let Mode::Saturate { window, .. } = mode {
        for _ in 0..window {
            if ws
                .feed(Message::Text(
                    signal_text(kind, partner, micros_now()).into(),
                ))
                .await
                .is_err()
            {
                stats.closed = true;
                return stats;
            }
        }
        if ws.flush().await.is_err() {
            stats.closed = true;
            return stats;
        }
    }
    let mut next_send = match mode {
        Mode::Rate { offset, .. } => Some(tokio::time::Instant::from_std(start + offset)),
        _ => None,
    };
    let mut heartbeat = tokio::time::Instant::from_std(start + Duration::from_secs(20));
    let hard_stop = tokio::time::Instant::from_std(stop + DRAIN);
    let mut last_rx = Instant::now();
    // Bounded by `hard_stop`.
    loop {
        let now = Instant::now();
        let now_t = tokio::time::Instant::from_std(now);
        if now_t >= hard_stop {
            break;
        }
        if now >= stop
            && (matches!(mode, Mode::Idle { .. }) || now.duration_since(last_rx) >= QUIET)
        {
            break;
        }
        let phase_edge = if now < stop { stop } else { last_rx + QUIET };
        let mut wake = heartbeat
            .min(tokio::time::Instant::from_std(phase_edge))
            .min(hard_stop);
        if let Some(t) = next_send
            && now < stop
        {
            wake = wake.min(t);
        }
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    last_rx = Instant::now();
                    match stamp(t.as_str()) {
                        Some(sent) => {
                            let at = Instant::now();
                            if let Some((from, to)) = measure && at >= from && at < to {
                                stats.received += 1;
                                if matches!(mode, Mode::Rate { .. }) {
                                    let lat = micros_now().saturating_sub(sent);
                                    stats.latencies_us.push(u32::try_from(lat).unwrap_or(u32::MAX));
                                }
                            }
                            if matches!(mode, Mode::Saturate { .. }) && at < stop {
                                // Answers this signal and every one already buffered, then
                                // writes them all at once (one flush per batch, not per signal).
                                let mut answers = 1;
                                let text = signal_text(kind, partner, micros_now());
                                let mut ok = ws.feed(Message::Text(text.into())).await.is_ok();
                                while ok && answers < BATCH {
                                    let Some(Some(Ok(Message::Text(t)))) = ws.next().now_or_never()
                                    else {
                                        break;
                                    };
                                    let t = t.as_str();
                                    if stamp(t).is_none() {
                                        if t.contains("\"error\"") || t.contains("ERROR") {
                                            stats.errors += 1;
                                        }
                                        continue;
                                    }
                                    let at = Instant::now();
                                    last_rx = at;
                                    if let Some((from, to)) = measure && at >= from && at < to {
                                        stats.received += 1;
                                    }
                                    if at < stop {
                                        answers += 1;
                                        let text = signal_text(kind, partner, micros_now());
                                        ok = ws.feed(Message::Text(text.into())).await.is_ok();
                                    }
                                }
                                if !ok || ws.flush().await.is_err() {
                                    stats.closed = true;
                                    break;
                                }
                            }
                        }
                        None => {
                            if t.as_str().contains("\"error\"") || t.as_str().contains("ERROR") {
                                stats.errors += 1;
                            }
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    stats.closed = true;
                    break;
                }
                Some(Ok(_)) => {}
            },
            _ = tokio::time::sleep_until(wake) => {
                let now = tokio::time::Instant::now();
                if now >= hard_stop {
                    break;
                }
                if let (Some(t), Mode::Rate { period, .. }) = (next_send, mode)
                    && now >= t && now.into_std() < stop
                {
                    next_send = Some(t + period);
                    let text = signal_text(kind, partner, micros_now());
                    if ws.send(Message::Text(text.into())).await.is_err() {
                        stats.closed = true;
                        break;
                    }
                }
                if now >= heartbeat {
                    heartbeat = now + Duration::from_secs(20);
                    if kind == Kind::Peerjs
                        && ws.send(Message::Text(r#"{"type":"HEARTBEAT"}"#.into())).await.is_err()
                    {
                        stats.closed = true;
                        break;
                    }
                }
            }
        }
    }
    stats
}

/// Runs one phase on every connection; returns the survivors and the merged stats.
async fn phase(kind: Kind, conns: Vec<(usize, Ws)>, mode: Mode) -> (Vec<(usize, Ws)>, Stats) {
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|(i, mut ws)| {
            let mode = match mode {
                Mode::Rate {
                    period, from, to, ..
                } => Mode::Rate {
                    period,
                    // Spread the sends of all clients evenly over one period.
                    offset: period.mul_f64((i as f64 * 0.618_033_988_75).fract()),
                    from,
                    to,
                },
                m => m,
            };
            tokio::spawn(async move {
                let stats = drive(kind, &mut ws, i, mode).await;
                (i, ws, stats)
            })
        })
        .collect();
    let mut alive = Vec::with_capacity(tasks.len());
    let mut total = Stats::default();
    for task in tasks {
        let Ok((i, ws, stats)) = task.await else {
            continue;
        };
        total.received += stats.received;
        total.errors += stats.errors;
        total.latencies_us.extend(stats.latencies_us);
        if stats.closed {
            total.closed = true;
        } else {
            alive.push((i, ws));
        }
    }
    (alive, total)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[idx.min(sorted.len() - 1)]) / 1000.0
}

async fn settle(pid: u32) -> u64 {
    tokio::time::sleep(Duration::from_secs(3)).await;
    rss_kib(pid).unwrap_or(0)
}

async fn close_all(conns: Vec<(usize, Ws)>) {
    futures_util::stream::iter(conns)
        .for_each_concurrent(LOGIN_CONCURRENCY, |(_, mut ws)| async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
        })
        .await;
    // Lets the server finish its cleanups before the next measurement.
    tokio::time::sleep(Duration::from_secs(2)).await;
}

async fn run_load(a: LoadArgs) -> Result<(), BoxError> {
    let _ = epoch();
    let name = a.kind.name();
    if a.idle > 0 {
        let before = settle(a.server_pid).await;
        let t0 = Instant::now();
        let conns = login_all(a.kind, a.addr, a.idle, a.room_size).await;
        let login_s = t0.elapsed().as_secs_f64();
        let until = Instant::now() + Duration::from_secs(a.idle_hold_secs);
        let (conns, _) = phase(a.kind, conns, Mode::Idle { until }).await;
        let after = rss_kib(a.server_pid).unwrap_or(0);
        let held = conns.len();
        let per_client = (after.saturating_sub(before) * 1024) as f64 / held.max(1) as f64;
        println!(
            "{}",
            serde_json::json!({
                "server": name, "test": "idle", "tried": a.idle, "held": held,
                "rss_before_kib": before, "rss_after_kib": after,
                "bytes_per_client": per_client.round(), "login_seconds": login_s,
            })
        );
        close_all(conns).await;
    }
    for &n in &a.sizes {
        let mut conns = login_all(a.kind, a.addr, n, a.room_size).await;
        if conns.len() < n {
            return Err(format!("{name}: only {} of {n} clients logged in", conns.len()).into());
        }
        let window = (a.in_flight / n).max(1);
        for round in 0..a.repeat {
            let from = Instant::now() + Duration::from_secs(1);
            let to = from + Duration::from_secs(a.seconds);
            let (alive, stats) = phase(a.kind, conns, Mode::Saturate { window, from, to }).await;
            conns = alive;
            println!(
                "{}",
                serde_json::json!({
                    "server": name, "test": "saturate", "clients": n, "round": round,
                    "in_flight": window * n,
                    "per_second": stats.received as f64 / a.seconds as f64,
                    "errors": stats.errors, "lost_clients": n - conns.len(),
                })
            );
        }
        if a.rate > 0 {
            let period = Duration::from_secs_f64(n as f64 / a.rate as f64);
            for round in 0..a.repeat {
                let from = Instant::now() + Duration::from_secs(2);
                let to = from + Duration::from_secs(a.seconds);
                let offset = Duration::ZERO;
                let (alive, mut stats) = phase(
                    a.kind,
                    conns,
                    Mode::Rate {
                        period,
                        offset,
                        from,
                        to,
                    },
                )
                .await;
                conns = alive;
                stats.latencies_us.sort_unstable();
                println!(
                    "{}",
                    serde_json::json!({
                        "server": name, "test": "rate", "clients": n, "round": round,
                        "target_per_second": a.rate,
                        "per_second": stats.received as f64 / a.seconds as f64,
                        "p50_ms": percentile(&stats.latencies_us, 0.50),
                        "p99_ms": percentile(&stats.latencies_us, 0.99),
                        "max_ms": percentile(&stats.latencies_us, 1.0),
                        "errors": stats.errors, "lost_clients": n - conns.len(),
                    })
                );
            }
        }
        close_all(conns).await;
    }
    Ok(())
}
