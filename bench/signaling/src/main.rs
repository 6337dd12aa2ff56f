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
//! Saturation and rate lines also carry the CPU the server and the generator used over the
//! window (`server_cpu`, `load_cpu`, in cores). The generator is one thread with a minimal
//! WebSocket client of its own (see [`Conn`]), so that it costs less per signal than the
//! servers it measures and can drive them from one core.
//!
//! Everything stays on loopback. `bench/signaling/run.sh` runs both servers side by side.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use clap::{Parser, Subcommand, ValueEnum};
use futures_util::StreamExt;
use peerlink_core::identity::Identity;
use peerlink_signal_server::protocol::auth_message;
use peerlink_signal_server::{Rate, Server, ServerConfig};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

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
    match args.cmd {
        // One worker per CPU the process may run on (`taskset` limits it).
        Cmd::Server { listen } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(serve(&listen)),
        // The generator is one thread: no work stealing or cross-thread wake-ups, and its
        // CPU use is one number that tells whether it kept up.
        Cmd::Load(load) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(run_load(load)),
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

/// Read buffer of one client; grown only for a frame larger than it.
const READ_BUFFER: usize = 4096;

/// One client connection: a minimal WebSocket client over a plain TCP stream. Frames are
/// parsed in place from one read buffer, and everything a client sends in one turn is framed
/// into one write buffer and written with one system call, so the generator spends little
/// per signal next to the server it measures. Client frames carry the all-zero mask key
/// (RFC 6455 requires a mask; a zero key leaves the payload as is, so nothing is copied).
struct Conn {
    stream: TcpStream,
    rbuf: Vec<u8>,
    /// Unparsed bytes are `rbuf[rpos..rlen]`.
    rpos: usize,
    rlen: usize,
    wbuf: Vec<u8>,
}

/// WebSocket opcodes the generator handles.
const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Appends one masked (zero key), unfragmented client frame.
fn push_frame(w: &mut Vec<u8>, op: u8, payload: &[u8]) {
    w.push(0x80 | op);
    let n = payload.len();
    if n < 126 {
        // n < 126: fits the 7-bit length.
        w.push(0x80 | n as u8);
    } else if let Ok(n16) = u16::try_from(n) {
        w.push(0x80 | 126);
        w.extend_from_slice(&n16.to_be_bytes());
    } else {
        w.push(0x80 | 127);
        w.extend_from_slice(&(n as u64).to_be_bytes());
    }
    w.extend_from_slice(&[0, 0, 0, 0]);
    w.extend_from_slice(payload);
}

/// Header length and payload length of the first complete frame in `buf`, if there is one.
fn frame_at(buf: &[u8]) -> Option<(usize, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let masked = buf[1] & 0x80 != 0;
    let (len, mut head) = match buf[1] & 0x7f {
        126 => (
            usize::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?)),
            4,
        ),
        127 => (
            usize::try_from(u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?)).ok()?,
            10,
        ),
        n => (usize::from(n), 2),
    };
    if masked {
        head += 4;
    }
    (buf.len() >= head + len).then_some((head, len))
}

impl Conn {
    /// Connects from `source`, performs the WebSocket upgrade for `path` and returns the
    /// connection with anything the server sent after the upgrade already buffered.
    async fn open(source: IpAddr, addr: SocketAddr, path: &str) -> Result<Self, BoxError> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source, 0))?;
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            stream,
            rbuf: vec![0; READ_BUFFER],
            rpos: 0,
            rlen: 0,
            wbuf: Vec::with_capacity(256),
        };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        conn.stream.write_all(request.as_bytes()).await?;
        // Bounded by the buffer: a response head larger than it is an error.
        let end = loop {
            let head = &conn.rbuf[..conn.rlen];
            if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if conn.rlen == conn.rbuf.len() {
                return Err("upgrade response too large".into());
            }
            conn.read_more().await?;
        };
        if !conn.rbuf.starts_with(b"HTTP/1.1 101") {
            let head = String::from_utf8_lossy(&conn.rbuf[..end]).into_owned();
            return Err(format!("upgrade refused: {head}").into());
        }
        conn.rpos = end;
        Ok(conn)
    }

    /// Reads at least one more byte into the buffer (compacting it first).
    async fn read_more(&mut self) -> Result<(), BoxError> {
        if self.rpos > 0 {
            self.rbuf.copy_within(self.rpos..self.rlen, 0);
            self.rlen -= self.rpos;
            self.rpos = 0;
        }
        if self.rlen == self.rbuf.len() {
            let grown = self.rbuf.len() * 2;
            self.rbuf.resize(grown, 0);
        }
        let n = self.stream.read(&mut self.rbuf[self.rlen..]).await?;
        if n == 0 {
            return Err("connection ended".into());
        }
        self.rlen += n;
        Ok(())
    }

    /// The next complete frame: its opcode and where its payload is in `rbuf` (valid until
    /// the next read).
    fn next_frame(&mut self) -> Option<(u8, std::ops::Range<usize>)> {
        let (head, len) = frame_at(&self.rbuf[self.rpos..self.rlen])?;
        let op = self.rbuf[self.rpos] & 0x0f;
        let start = self.rpos + head;
        self.rpos = start + len;
        Some((op, start..start + len))
    }

    fn push_text(&mut self, text: &str) {
        push_frame(&mut self.wbuf, OP_TEXT, text.as_bytes());
    }

    /// Writes everything framed so far.
    async fn flush(&mut self) -> Result<(), BoxError> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// The next text message, parsed; answers pings on the way.
    async fn next_json(&mut self) -> Result<Value, BoxError> {
        // Bounded by the caller's timeout.
        loop {
            while let Some((op, range)) = self.next_frame() {
                match op {
                    OP_TEXT => return Ok(serde_json::from_slice(&self.rbuf[range])?),
                    OP_CLOSE => return Err("closed by the server".into()),
                    OP_PING => {
                        push_frame(&mut self.wbuf, OP_PONG, &self.rbuf[range]);
                        self.flush().await?;
                    }
                    _ => {}
                }
            }
            self.read_more().await?;
        }
    }

    /// Sends a close frame and waits (bounded) for the server to end the connection.
    async fn close(mut self) {
        push_frame(&mut self.wbuf, OP_CLOSE, &1000u16.to_be_bytes());
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            self.flush().await?;
            // Bounded by the timeout.
            loop {
                self.rpos = self.rlen;
                self.read_more().await?;
            }
            #[allow(unreachable_code)]
            Ok::<(), BoxError>(())
        })
        .await;
    }
}

/// Opens client `i`'s connection and logs in: peerlink authenticates and joins room
/// `r<i / room_size>`; peerjs registers id `d<i>`.
async fn login(kind: Kind, addr: SocketAddr, i: usize, room_size: usize) -> Result<Conn, BoxError> {
    let host = addr.to_string();
    let path = match kind {
        Kind::Peerlink => "/ws".to_owned(),
        Kind::Peerjs => format!("/peerjs?key=peerjs&id=d{i}&token=t{i}"),
    };
    let mut ws = Conn::open(source(i), addr, &path).await?;
    match kind {
        Kind::Peerjs => {
            let open = ws.next_json().await?;
            if open["type"] != "OPEN" {
                return Err(format!("peerjs refused: {open}").into());
            }
        }
        Kind::Peerlink => {
            let challenge = ws.next_json().await?;
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
            ws.push_text(&auth.to_string());
            ws.flush().await?;
            let welcome = ws.next_json().await?;
            if welcome["type"] != "welcome" {
                return Err(format!("auth refused: {welcome}").into());
            }
            let join = format!(r#"{{"type":"join","room":"r{}","id":2}}"#, i / room_size);
            ws.push_text(&join);
            ws.flush().await?;
            // Presence events of earlier members may come first; bounded by the login timeout.
            loop {
                let m = ws.next_json().await?;
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

/// Logs in clients `0..n`; returns the connections that made it (index, socket).
async fn login_all(kind: Kind, addr: SocketAddr, n: usize, room_size: usize) -> Vec<(usize, Conn)> {
    let results: Vec<(usize, Result<Conn, BoxError>)> = futures_util::stream::iter(0..n)
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

/// A client's signal to its partner, framed straight into the write buffer: the text around
/// the timestamp is built once per client.
struct SignalFrame {
    head: Vec<u8>,
    tail: Vec<u8>,
    scratch: Vec<u8>,
}

impl SignalFrame {
    fn new(kind: Kind, to: usize) -> Self {
        let head = match kind {
            Kind::Peerlink => format!(r#"{{"type":"signal","to":"d{to}","data":{{"t":"#),
            Kind::Peerjs => format!(r#"{{"type":"CANDIDATE","dst":"d{to}","payload":{{"t":"#),
        };
        let tail = format!(r#","candidate":"{PAD}"}}}}"#);
        Self {
            head: head.into_bytes(),
            tail: tail.into_bytes(),
            scratch: Vec::with_capacity(256),
        }
    }

    /// Frames the signal stamped `t` into `w`.
    fn push(&mut self, w: &mut Vec<u8>, t: u64) {
        use std::io::Write as _;
        self.scratch.clear();
        self.scratch.extend_from_slice(&self.head);
        // Writing into a Vec cannot fail.
        let _ = write!(self.scratch, "{t}");
        self.scratch.extend_from_slice(&self.tail);
        push_frame(w, OP_TEXT, &self.scratch);
    }
}

/// The send timestamp of a relayed signal, if `text` is one.
fn stamp(text: &[u8]) -> Option<u64> {
    let at = text.windows(4).position(|w| w == br#""t":"#)? + 4;
    let digits = text[at..].iter().take_while(|c| c.is_ascii_digit()).count();
    std::str::from_utf8(&text[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

fn is_error(text: &[u8]) -> bool {
    text.windows(7).any(|w| w == br#""error""#) || text.windows(5).any(|w| w == b"ERROR")
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
/// Quiet time after which the drain ends early.
const QUIET: Duration = Duration::from_millis(300);

/// Runs client `me` through one phase that began at `begin_us` (see [`micros_now`]).
async fn drive(kind: Kind, ws: &mut Conn, me: usize, mode: Mode, begin_us: u64) -> Stats {
    let mut stats = Stats::default();
    stats.closed = drive_inner(kind, ws, me, mode, begin_us, &mut stats)
        .await
        .is_err();
    stats
}

async fn drive_inner(
    kind: Kind,
    ws: &mut Conn,
    me: usize,
    mode: Mode,
    begin_us: u64,
    stats: &mut Stats,
) -> Result<(), BoxError> {
    let mut signal = SignalFrame::new(kind, me ^ 1);
    let start = Instant::now();
    let (stop, measure) = match mode {
        Mode::Idle { until } => (until, None),
        Mode::Saturate { from, to, .. } | Mode::Rate { from, to, .. } => (to, Some((from, to))),
    };
    let saturate = matches!(mode, Mode::Saturate { .. });
    let rate = matches!(mode, Mode::Rate { .. });
    // peerjs-server drops a client 60 s after its last HEARTBEAT (other messages do not
    // count), and a phase is shorter than the 20 s heartbeat period: every phase starts with
    // one, so its clients live through all the phases of a run.
    if kind == Kind::Peerjs {
        ws.push_text(r#"{"type":"HEARTBEAT"}"#);
    }
    if let Mode::Saturate { window, .. } = mode {
        for _ in 0..window {
            signal.push(&mut ws.wbuf, micros_now());
        }
    }
    let hard_stop = tokio::time::Instant::from_std(stop + DRAIN);
    tokio::time::timeout_at(hard_stop, ws.flush()).await??;
    let mut ticker = match mode {
        Mode::Rate { period, offset, .. } => Some(tokio::time::interval_at(
            tokio::time::Instant::from_std(start + offset),
            period,
        )),
        _ => None,
    };
    // One timer per client and phase: the end of the phase, then of the drain.
    let edge = tokio::time::sleep_until(tokio::time::Instant::from_std(stop).min(hard_stop));
    tokio::pin!(edge);
    let mut last_rx = Instant::now();
    // Bounded by `hard_stop`.
    loop {
        let now = Instant::now();
        if tokio::time::Instant::from_std(now) >= hard_stop {
            return Ok(());
        }
        if now >= stop {
            if !(saturate || rate) || now.duration_since(last_rx) >= QUIET {
                return Ok(());
            }
            let quiet_end = tokio::time::Instant::from_std(last_rx + QUIET).min(hard_stop);
            if edge.deadline() != quiet_end {
                edge.as_mut().reset(quiet_end);
            }
        }
        let sending = rate && now < stop;
        tokio::select! {
            biased;
            read = ws.read_more() => {
                read?;
                while let Some((op, range)) = ws.next_frame() {
                    match op {
                        OP_TEXT => {
                            let text = &ws.rbuf[range];
                            let Some(sent) = stamp(text) else {
                                if is_error(text) {
                                    stats.errors += 1;
                                }
                                continue;
                            };
                            // A signal of an earlier phase that arrived after that phase's
                            // drain is neither counted nor answered: answering it would
                            // add to this phase's signals in flight.
                            if sent < begin_us {
                                continue;
                            }
                            let at = Instant::now();
                            last_rx = at;
                            if let Some((from, to)) = measure && at >= from && at < to {
                                stats.received += 1;
                                if rate {
                                    let lat = micros_now().saturating_sub(sent);
                                    stats.latencies_us.push(u32::try_from(lat).unwrap_or(u32::MAX));
                                }
                            }
                            // Every signal received is answered; the answers to one read go
                            // out in one write.
                            if saturate && at < stop {
                                signal.push(&mut ws.wbuf, micros_now());
                            }
                        }
                        OP_PING => push_frame(&mut ws.wbuf, OP_PONG, &ws.rbuf[range]),
                        OP_CLOSE => return Err("closed by the server".into()),
                        _ => {}
                    }
                }
                tokio::time::timeout_at(hard_stop, ws.flush()).await??;
            }
            _ = async {
                match ticker.as_mut() {
                    Some(t) => { t.tick().await; }
                    None => std::future::pending().await,
                }
            }, if sending => {
                signal.push(&mut ws.wbuf, micros_now());
                tokio::time::timeout_at(hard_stop, ws.flush()).await??;
            }
            () = &mut edge => {}
        }
    }
}

/// Runs one phase on every connection; returns the survivors and the merged stats.
async fn phase(kind: Kind, conns: Vec<(usize, Conn)>, mode: Mode) -> (Vec<(usize, Conn)>, Stats) {
    let begin_us = micros_now();
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
                let stats = drive(kind, &mut ws, i, mode, begin_us).await;
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

/// CPU time a process has used (all threads), in clock ticks of 1/100 s.
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces); utime and stime are the
    // 14th and 15th fields of the line, the 12th and 13th after the name.
    let mut rest = stat.get(stat.rfind(')')? + 2..)?.split(' ');
    let utime: u64 = rest.nth(11)?.parse().ok()?;
    let stime: u64 = rest.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The CPU used by the server and by this generator from `from` to `to`, each in cores
/// (1.0 = one core busy all the time).
async fn cpu_over(server_pid: u32, from: Instant, to: Instant) -> (f64, f64) {
    let server = server_pid.to_string();
    tokio::time::sleep_until(tokio::time::Instant::from_std(from)).await;
    let t0 = Instant::now();
    let (s0, g0) = (cpu_ticks(&server), cpu_ticks("self"));
    tokio::time::sleep_until(tokio::time::Instant::from_std(to)).await;
    let secs = t0.elapsed().as_secs_f64();
    let (s1, g1) = (cpu_ticks(&server), cpu_ticks("self"));
    let cores = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => (b.saturating_sub(a) as f64 / 100.0 / secs * 100.0).round() / 100.0,
        _ => f64::NAN,
    };
    (cores(s0, s1), cores(g0, g1))
}

async fn settle(pid: u32) -> u64 {
    tokio::time::sleep(Duration::from_secs(3)).await;
    rss_kib(pid).unwrap_or(0)
}

async fn close_all(conns: Vec<(usize, Conn)>) {
    futures_util::stream::iter(conns)
        .for_each_concurrent(LOGIN_CONCURRENCY, |(_, ws)| ws.close())
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
            let cpu = tokio::spawn(cpu_over(a.server_pid, from, to));
            let (alive, stats) = phase(a.kind, conns, Mode::Saturate { window, from, to }).await;
            let (server_cpu, load_cpu) = cpu.await.unwrap_or((f64::NAN, f64::NAN));
            conns = alive;
            println!(
                "{}",
                serde_json::json!({
                    "server": name, "test": "saturate", "clients": n, "round": round,
                    "in_flight": window * n,
                    "per_second": stats.received as f64 / a.seconds as f64,
                    "errors": stats.errors, "lost_clients": n - conns.len(),
                    "server_cpu": server_cpu, "load_cpu": load_cpu,
                })
            );
        }
        if a.rate > 0 {
            let period = Duration::from_secs_f64(n as f64 / a.rate as f64);
            for round in 0..a.repeat {
                let from = Instant::now() + Duration::from_secs(2);
                let to = from + Duration::from_secs(a.seconds);
                let offset = Duration::ZERO;
                let cpu = tokio::spawn(cpu_over(a.server_pid, from, to));
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
                let (server_cpu, load_cpu) = cpu.await.unwrap_or((f64::NAN, f64::NAN));
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
                        "server_cpu": server_cpu, "load_cpu": load_cpu,
                    })
                );
            }
        }
        close_all(conns).await;
    }
    Ok(())
}
