//! Soak run: steady RPC load and periodic bulk streams over a WebSocket link and a WebRTC link
//! between two nodes in this process, sampling resident memory, open descriptors and live
//! tokio tasks; after a warm-up, none may grow beyond fixed bounds over the baseline.
//!
//! `cargo run --release -p peerlink-tests --bin soak -- --minutes 10` runs it for real; the
//! `soak` test runs a short version.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use peerlink::webrtc::{
    ChannelOptions, WebRtcChannel, WebRtcConfig, WebRtcEvent, WebRtcEvents, WebRtcLink, WebRtcRole,
    WebRtcTransport,
};
use peerlink::{CallOptions, Connection, Identity, Node, NodeConfig, handler_fn};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Upper bound of any single wait.
const BOUND: Duration = Duration::from_secs(30);

/// What to run and the bounds to hold.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// Total duration, warm-up included.
    pub duration: Duration,
    /// Load before the baseline sample.
    pub warm_up: Duration,
    /// Time between samples.
    pub sample_every: Duration,
    /// Concurrent RPC callers per link.
    pub callers: usize,
    /// Pause between one caller's calls.
    pub call_pause: Duration,
    /// Time between bulk streams per link.
    pub bulk_every: Duration,
    /// Bytes per bulk stream.
    pub bulk_bytes: usize,
    /// Allowed resident-memory growth over the baseline, KiB.
    pub max_rss_growth_kib: u64,
    /// Allowed open-descriptor growth over the baseline.
    pub max_fd_growth: usize,
    /// Allowed live-task growth over the baseline.
    pub max_task_growth: usize,
}

impl SoakConfig {
    /// The defaults for a run of `duration`: warm-up a tenth of it (at least 5 s, at most
    /// 60 s), samples every 5 s (every 2 s for runs under a minute).
    pub fn for_duration(duration: Duration) -> Self {
        let short = duration < Duration::from_secs(60);
        Self {
            duration,
            warm_up: (duration / 10).clamp(Duration::from_secs(5), Duration::from_secs(60)),
            sample_every: Duration::from_secs(if short { 2 } else { 5 }),
            callers: 4,
            call_pause: Duration::from_millis(2),
            bulk_every: Duration::from_secs(2),
            bulk_bytes: 4 << 20,
            max_rss_growth_kib: 32 * 1024,
            max_fd_growth: 8,
            max_task_growth: 32,
        }
    }
}

/// One sample of the process.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Since the start.
    pub at: Duration,
    /// Resident memory, KiB.
    pub rss_kib: u64,
    /// Open file descriptors.
    pub fds: usize,
    /// Live tokio tasks.
    pub tasks: usize,
    /// RPCs completed so far.
    pub calls: u64,
    /// Bulk bytes delivered so far.
    pub bulk_bytes: u64,
}

/// The outcome of a soak run.
#[derive(Debug, Clone)]
pub struct SoakReport {
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// The first sample after warm-up.
    pub baseline: Sample,
    /// Largest values seen after warm-up: (RSS KiB, fds, tasks).
    pub peak: (u64, usize, usize),
    /// RPCs completed (every reply checked).
    pub calls: u64,
    /// Bulk bytes delivered (every stream's length and content checked).
    pub bulk_bytes: u64,
    /// Bound violations and failed operations; empty when the run passed.
    pub failures: Vec<String>,
}

impl SoakReport {
    /// Whether every bound held and every operation succeeded.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Resident memory of this process, KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn node(user: &str) -> Node {
    Node::new(NodeConfig::new(
        Identity::generate(&mut rand::rngs::OsRng),
        user,
        "soak",
    ))
    .expect("node config")
}

fn forward(
    mut events: WebRtcEvents,
    to: &WebRtcLink,
    channels: mpsc::UnboundedSender<WebRtcChannel>,
) {
    let to = to.downgrade();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            match event {
                WebRtcEvent::Signal(signal) => {
                    let Some(to) = to.upgrade() else { return };
                    let _ = to.handle_signal(signal).await;
                }
                WebRtcEvent::Channel(ch) => {
                    let _ = channels.send(ch);
                }
                _ => {}
            }
        }
    });
}

async fn webrtc_pair(server: &Node, client: &Node) -> Result<(Connection, Connection), String> {
    let config = WebRtcConfig::loopback();
    let (offerer, oe) = WebRtcLink::new(config.clone(), WebRtcRole::Offerer)
        .await
        .map_err(|e| e.to_string())?;
    let (answerer, ae) = WebRtcLink::new(config, WebRtcRole::Answerer)
        .await
        .map_err(|e| e.to_string())?;
    let channel = offerer
        .create_channel("peerlink", ChannelOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let (unused_tx, _unused_rx) = mpsc::unbounded_channel();
    let (tx, mut rx) = mpsc::unbounded_channel();
    forward(oe, &answerer, unused_tx);
    forward(ae, &offerer, tx);
    offerer.start().await.map_err(|e| e.to_string())?;
    timeout(BOUND, channel.opened())
        .await
        .map_err(|_| "channel open timed out")?
        .map_err(|e| e.to_string())?;
    let remote = timeout(BOUND, rx.recv())
        .await
        .map_err(|_| "remote channel timed out")?
        .ok_or("no remote channel")?;
    let a = WebRtcTransport::new(offerer, channel);
    let b = WebRtcTransport::new(answerer, remote);
    let a_binding = a.binding().await.map_err(|e| e.to_string())?;
    let b_binding = b.binding().await.map_err(|e| e.to_string())?;
    let (a_role, b_role) = (a.handshake_role(), b.handshake_role());
    let (c, s) = tokio::join!(
        timeout(BOUND, client.connect(Box::new(a), a_role, a_binding)),
        timeout(BOUND, server.connect(Box::new(b), b_role, b_binding)),
    );
    let c = c
        .map_err(|_| "handshake timed out")?
        .map_err(|e| e.to_string())?;
    let s = s
        .map_err(|_| "handshake timed out")?
        .map_err(|e| e.to_string())?;
    Ok((c, s))
}

/// The byte at `offset` of bulk stream `n`.
fn pattern(n: u64, offset: usize) -> u8 {
    (offset as u64).wrapping_mul(31).wrapping_add(n) as u8
}

struct Counters {
    calls: AtomicU64,
    bulk: AtomicU64,
    stop: AtomicBool,
    errors: std::sync::Mutex<Vec<String>>,
}

impl Counters {
    fn fail(&self, what: String) {
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if errors.len() < 20 {
            errors.push(what);
        }
    }
}

/// Accepts the bulk streams arriving on `conn` and checks each one's content.
fn receive_bulk(conn: Connection, counters: Arc<Counters>, expected: usize) {
    tokio::spawn(async move {
        while let Some(mut stream) = conn.accept_stream().await {
            let counters = counters.clone();
            tokio::spawn(async move {
                let n: u64 = stream.name().parse().unwrap_or(0);
                let mut offset = 0usize;
                let mut ok = true;
                while let Ok(Some(chunk)) = timeout(BOUND, stream.recv()).await {
                    let Ok(chunk) = chunk else {
                        ok = false;
                        break;
                    };
                    ok &= chunk
                        .iter()
                        .enumerate()
                        .all(|(i, b)| *b == pattern(n, offset + i));
                    offset += chunk.len();
                }
                if ok && offset == expected {
                    counters.bulk.fetch_add(offset as u64, Ordering::Relaxed);
                } else {
                    counters.fail(format!(
                        "bulk stream {n}: {offset} of {expected} bytes, content ok: {ok}"
                    ));
                }
            });
        }
    });
}

fn load(conn: Connection, config: &SoakConfig, counters: Arc<Counters>, link: &'static str) {
    for caller in 0..config.callers {
        let conn = conn.clone();
        let counters = counters.clone();
        let pause = config.call_pause;
        tokio::spawn(async move {
            let mut i = 0u64;
            while !counters.stop.load(Ordering::Relaxed) {
                i += 1;
                let len = 16 + (i as usize * 97 + caller * 13) % 4000;
                let body = Bytes::from(vec![(i as u8) ^ (caller as u8); len]);
                match timeout(
                    BOUND,
                    conn.call_raw("echo", body.clone(), CallOptions::default()),
                )
                .await
                {
                    Ok(Ok(reply)) if reply == body => {
                        counters.calls.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        counters.fail(format!("{link} call {i}: {other:?}"));
                        return;
                    }
                }
                tokio::time::sleep(pause).await;
            }
        });
    }
    let counters2 = counters.clone();
    let every = config.bulk_every;
    let size = config.bulk_bytes;
    tokio::spawn(async move {
        let counters = counters2;
        let mut n = 0u64;
        while !counters.stop.load(Ordering::Relaxed) {
            tokio::time::sleep(every).await;
            n += 1;
            let result = async {
                let mut stream = conn.open_stream(&n.to_string()).await?;
                let mut offset = 0;
                while offset < size {
                    let len = (64 << 10).min(size - offset);
                    let chunk: Vec<u8> = (offset..offset + len).map(|o| pattern(n, o)).collect();
                    stream.send(Bytes::from(chunk)).await?;
                    offset += len;
                }
                stream.finish().await
            };
            match timeout(BOUND, result).await {
                Ok(Ok(())) => {}
                other => {
                    counters.fail(format!("{link} bulk stream {n}: {other:?}"));
                    return;
                }
            }
        }
    });
}

/// Runs the soak and reports; `progress` sees every sample as it is taken.
pub async fn run(config: SoakConfig, mut progress: impl FnMut(&Sample)) -> SoakReport {
    let metrics = tokio::runtime::Handle::current().metrics();
    let start = Instant::now();
    let server = node("server");
    let client = node("client");
    server.expose("echo", handler_fn(|req| async move { Ok(req.body) }));
    let counters = Arc::new(Counters {
        calls: AtomicU64::new(0),
        bulk: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        errors: std::sync::Mutex::new(Vec::new()),
    });
    let mut failures = Vec::new();

    let listener = server
        .listen("127.0.0.1:0")
        .await
        .expect("listen on loopback");
    let ws = timeout(BOUND, client.dial(&listener.url())).await;
    let ws_server = timeout(BOUND, server.accept()).await;
    match (ws, ws_server) {
        (Ok(Ok(c)), Ok(Some(s))) => {
            receive_bulk(s, counters.clone(), config.bulk_bytes);
            load(c, &config, counters.clone(), "websocket");
        }
        other => failures.push(format!("websocket link: {:?}", other.0.map(|r| r.err()))),
    }
    match webrtc_pair(&server, &client).await {
        Ok((c, s)) => {
            receive_bulk(s, counters.clone(), config.bulk_bytes);
            load(c, &config, counters.clone(), "webrtc");
        }
        Err(e) => failures.push(format!("webrtc link: {e}")),
    }

    let sample = |at: Duration| Sample {
        at,
        rss_kib: rss_kib(),
        fds: open_fds(),
        tasks: metrics.num_alive_tasks(),
        calls: counters.calls.load(Ordering::Relaxed),
        bulk_bytes: counters.bulk.load(Ordering::Relaxed),
    };
    let mut samples = Vec::new();
    let mut baseline = None;
    let mut peak = (0, 0, 0);
    let max_samples =
        (config.duration.as_secs_f64() / config.sample_every.as_secs_f64()) as usize + 2;
    for _ in 0..max_samples {
        if start.elapsed() >= config.duration || !failures.is_empty() {
            break;
        }
        tokio::time::sleep(config.sample_every).await;
        let s = sample(start.elapsed());
        progress(&s);
        samples.push(s);
        if s.at < config.warm_up {
            continue;
        }
        let base = *baseline.get_or_insert(s);
        peak = (
            peak.0.max(s.rss_kib),
            peak.1.max(s.fds),
            peak.2.max(s.tasks),
        );
        if s.rss_kib > base.rss_kib + config.max_rss_growth_kib {
            failures.push(format!(
                "at {:.0} s resident memory {} KiB > baseline {} + {} KiB",
                s.at.as_secs_f64(),
                s.rss_kib,
                base.rss_kib,
                config.max_rss_growth_kib
            ));
        }
        if s.fds > base.fds + config.max_fd_growth {
            failures.push(format!(
                "at {:.0} s {} open fds > baseline {} + {}",
                s.at.as_secs_f64(),
                s.fds,
                base.fds,
                config.max_fd_growth
            ));
        }
        if s.tasks > base.tasks + config.max_task_growth {
            failures.push(format!(
                "at {:.0} s {} live tasks > baseline {} + {}",
                s.at.as_secs_f64(),
                s.tasks,
                base.tasks,
                config.max_task_growth
            ));
        }
        let errors = counters.errors.lock().unwrap_or_else(|e| e.into_inner());
        failures.extend(errors.iter().cloned());
    }
    counters.stop.store(true, Ordering::Relaxed);
    let baseline = match baseline {
        Some(b) => b,
        None => {
            failures.push("the run ended before the warm-up did".into());
            sample(start.elapsed())
        }
    };
    let last = samples.last().copied().unwrap_or(baseline);
    if last.calls <= baseline.calls {
        failures.push(format!(
            "no RPC completed after warm-up ({} in all)",
            last.calls
        ));
    }
    if last.bulk_bytes <= baseline.bulk_bytes {
        failures.push("no bulk stream completed after warm-up".into());
    }
    client.close().await;
    server.close().await;
    SoakReport {
        calls: counters.calls.load(Ordering::Relaxed),
        bulk_bytes: counters.bulk.load(Ordering::Relaxed),
        samples,
        baseline,
        peak,
        failures,
    }
}
