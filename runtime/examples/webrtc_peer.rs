//! A peerlink WebRTC peer that other stacks can drive: signals as JSON lines on stdin/stdout.
//!
//! ```text
//! webrtc_peer --role offerer|answerer [--bind 10.99.0.2] [--mode interop|bench|chat|priority]
//!             [--bulk-mib 16] [--msg 65536] [--rtt 200] [--pair]
//!             [--no-pacing] [--pacing-initial BYTES] [--pacing-min BYTES] [--send-limit BYTES]
//!             [--codes] [--sctp-cc standard|rate] [--app-thread]
//! ```
//!
//! Standard output carries one JSON object per line: `{"signal": <simple-peer signal>}` for the
//! peer, then `{"report": {...}}` once this side's checks or measurements are done. Standard
//! input takes `{"signal": ...}` lines from the peer; end of input closes the link and exits.
//! `--pair` runs an offerer and an answerer inside this process instead (the Rust ↔ Rust
//! benchmark) and prints both reports. With `--codes` the offer and answer travel as compact
//! codes instead (`{"code": "<base64url>", "bytes": n}` out and `{"code": ...}` in; no
//! candidate signals): the link runs without trickle and with short ICE credentials, and only
//! what the code carries reaches the peer (docs/protocol/compact-signal.md).
//! `--pacing-initial`/`--pacing-min` turn on the per-channel adaptive window
//! (`Tuning::send_pacing`, off by default) with those sizes; `--no-pacing` keeps it off.
//!
//! The script runs as a task on the runtime's workers, the way an async application awaits its
//! links. `--app-thread` runs it on the main thread instead (inside `block_on`), like an
//! application that awaits from a thread of its own or a binding's caller thread: each message
//! received then crosses from a worker to that thread, which adds thread wake-ups to every
//! round trip (docs/decisions/webrtc-performance.md, "Round trip of a small message").
//!
//! The interop script is the one `tests/interop/peer-logic.js` and `tests/interop/aiortc_peer.py`
//! run, so any two of them can be paired: the offerer opens `reliable` (ordered),
//! `unordered` (unordered, reliable) and `lossy` (unordered, maxRetransmits 0); each side then
//! sends a JSON header, messages of 0 B, 1 B, 16 KiB, 64 KiB and 256 KiB (those the peer's
//! `max-message-size` allows) and a bulk stream on `reliable`, and 100 indexed 1 KiB messages
//! on each of the other two. Reports carry lengths and CRC-32s of what was sent and received,
//! which the driver compares.
//!
//! `--mode priority` (the same script as in `peer-logic.js`): the offerer opens five channels,
//! `very-low`, `low`, `medium` and `high` with that priority and `default` without one; each
//! side sends the label once on every channel and reports, per label, the channel's priority
//! (for the answerer, the one the peer's channel-open message carried) and what it received.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use peerlink::webrtc::compact::{CompactSignal, code_from_signal, signal_from_code};
use peerlink::webrtc::{
    ChannelOptions, ChannelPriority, ChannelReceiver, ChannelSender, SctpCongestionControl, Signal,
    WebRtcChannel, WebRtcConfig, WebRtcEvent, WebRtcLink, WebRtcRole,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const SIZES: [usize; 5] = [0, 1, 16 * 1024, 64 * 1024, 256 * 1024];
const INDEXED: u32 = 100;
const STEP_LIMIT: Duration = Duration::from_secs(120);

#[derive(Clone, Debug)]
struct Opts {
    role: WebRtcRole,
    bind: IpAddr,
    bench: bool,
    bulk: usize,
    msg: usize,
    rtt: usize,
    pair: bool,
    pacing: bool,
    pacing_initial: Option<usize>,
    pacing_min: Option<usize>,
    send_limit: Option<usize>,
    codes: bool,
    /// SCTP congestion controller (`None`: the runtime's default).
    sctp_cc: Option<SctpCongestionControl>,
    chat: bool,
    priority: bool,
    /// Run the script on the main thread instead of as a runtime task.
    app_thread: bool,
}

fn parse_args() -> Result<Opts, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = Opts {
        role: WebRtcRole::Offerer,
        bind: IpAddr::from([127, 0, 0, 1]),
        bench: false,
        bulk: 16 << 20,
        msg: 64 * 1024,
        rtt: 200,
        pair: false,
        pacing: true,
        pacing_initial: None,
        pacing_min: None,
        send_limit: None,
        codes: false,
        sctp_cc: None,
        chat: false,
        priority: false,
        app_thread: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--role" => {
                opts.role = match value()?.as_str() {
                    "offerer" => WebRtcRole::Offerer,
                    "answerer" => WebRtcRole::Answerer,
                    other => return Err(format!("unknown role {other}")),
                }
            }
            "--bind" => opts.bind = value()?.parse().map_err(|e| format!("--bind: {e}"))?,
            "--mode" => match value()?.as_str() {
                "bench" => opts.bench = true,
                "chat" => opts.chat = true,
                "priority" => opts.priority = true,
                "interop" => {}
                other => return Err(format!("unknown mode {other}")),
            },
            "--bulk-mib" => {
                let mib: f64 = value()?.parse().map_err(|e| format!("--bulk-mib: {e}"))?;
                opts.bulk = (mib * 1048576.0) as usize;
            }
            "--msg" => opts.msg = value()?.parse().map_err(|e| format!("--msg: {e}"))?,
            "--rtt" => opts.rtt = value()?.parse().map_err(|e| format!("--rtt: {e}"))?,
            "--pair" => opts.pair = true,
            "--app-thread" => opts.app_thread = true,
            "--codes" => opts.codes = true,
            "--no-pacing" => opts.pacing = false,
            "--sctp-cc" => {
                opts.sctp_cc = Some(match value()?.as_str() {
                    "standard" => SctpCongestionControl::Standard,
                    "rate" => SctpCongestionControl::RateBased,
                    other => return Err(format!("--sctp-cc: standard or rate, not {other}")),
                })
            }
            "--pacing-initial" => {
                opts.pacing_initial = Some(
                    value()?
                        .parse()
                        .map_err(|e| format!("--pacing-initial: {e}"))?,
                )
            }
            "--pacing-min" => {
                opts.pacing_min = Some(value()?.parse().map_err(|e| format!("--pacing-min: {e}"))?)
            }
            "--send-limit" => {
                opts.send_limit = Some(value()?.parse().map_err(|e| format!("--send-limit: {e}"))?)
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(opts)
}

fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    for (n, slot) in table.iter_mut().enumerate() {
        let mut c = n as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *slot = c;
    }
    table
}

/// Incremental CRC-32 (IEEE), the same as zlib's `crc32` and the JavaScript peers'.
struct Crc {
    table: [u32; 256],
    value: u32,
}

impl Crc {
    fn new() -> Self {
        Self {
            table: crc_table(),
            value: 0xFFFF_FFFF,
        }
    }
    fn update(&mut self, data: &[u8]) {
        let mut c = self.value;
        for &b in data {
            c = self.table[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
        }
        self.value = c;
    }
    fn finish(&self) -> u32 {
        self.value ^ 0xFFFF_FFFF
    }
}

fn crc_of(data: &[u8]) -> u32 {
    let mut crc = Crc::new();
    crc.update(data);
    crc.finish()
}

/// Deterministic test bytes, identical in every peer implementation.
fn pattern(n: usize, seed: usize) -> Vec<u8> {
    (0..n)
        .map(|j| ((j * 131 + seed * 7 + (j >> 8)) & 0xFF) as u8)
        .collect()
}

fn indexed(k: u32) -> Bytes {
    let mut m = k.to_be_bytes().to_vec();
    m.extend(pattern(1020, k as usize));
    Bytes::from(m)
}

fn bulk_chunk(base: &[u8], k: usize) -> Bytes {
    let mut chunk = base.to_vec();
    if chunk.len() >= 4 {
        chunk[..4].copy_from_slice(&(k as u32).to_be_bytes());
    }
    Bytes::from(chunk)
}

fn cpu_seconds() -> f64 {
    // utime and stime, fields 14 and 15 of /proc/self/stat, in clock ticks (100 per second).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn recv(rx: &mut ChannelReceiver, what: &str) -> Result<Bytes, String> {
    tokio::time::timeout(STEP_LIMIT, rx.recv())
        .await
        .map_err(|_| format!("timed out waiting for {what}"))?
        .ok_or_else(|| format!("channel closed while waiting for {what}"))
}

async fn send(tx: &ChannelSender, data: Bytes) -> Result<(), String> {
    tokio::time::timeout(STEP_LIMIT, tx.send(data))
        .await
        .map_err(|_| "send timed out".to_owned())?
        .map_err(|e| format!("send: {e}"))
}

/// Brings a link up to its open channels: the offerer creates them and starts, the answerer
/// waits for the peer's. Returns the channels by label and the offer → open time.
async fn open_channels(
    link: &WebRtcLink,
    channels_in: &mut mpsc::UnboundedReceiver<WebRtcChannel>,
    role: WebRtcRole,
    specs: &[(&str, ChannelOptions)],
) -> Result<(HashMap<String, WebRtcChannel>, Duration), String> {
    let t0 = Instant::now();
    let mut out = HashMap::new();
    if role == WebRtcRole::Offerer {
        for (label, options) in specs {
            let ch = link
                .create_channel(label, options.clone())
                .await
                .map_err(|e| e.to_string())?;
            out.insert((*label).to_owned(), ch);
        }
        link.start().await.map_err(|e| e.to_string())?;
        for ch in out.values() {
            tokio::time::timeout(Duration::from_secs(30), ch.opened())
                .await
                .map_err(|_| "channel open timed out".to_owned())?
                .map_err(|e| e.to_string())?;
        }
    } else {
        while out.len() < specs.len() {
            let ch = tokio::time::timeout(Duration::from_secs(30), channels_in.recv())
                .await
                .map_err(|_| "no channel from the peer".to_owned())?
                .ok_or("link ended")?;
            out.insert(ch.label().to_owned(), ch);
        }
    }
    Ok((out, t0.elapsed()))
}

fn take(map: &mut HashMap<String, WebRtcChannel>, label: &str) -> Result<WebRtcChannel, String> {
    map.remove(label)
        .ok_or_else(|| format!("no channel labelled {label}"))
}

async fn interop(
    link: WebRtcLink,
    mut channels_in: mpsc::UnboundedReceiver<WebRtcChannel>,
    opts: Opts,
) -> Result<Value, String> {
    let unordered = ChannelOptions {
        ordered: false,
        ..ChannelOptions::default()
    };
    let lossy = ChannelOptions {
        ordered: false,
        max_retransmits: Some(0),
        ..ChannelOptions::default()
    };
    let specs = [
        ("reliable", ChannelOptions::default()),
        ("unordered", unordered),
        ("lossy", lossy),
    ];
    let (mut chans, connect) = open_channels(&link, &mut channels_in, opts.role, &specs).await?;
    let (rel_tx, mut rel_rx) = take(&mut chans, "reliable")?.split();
    let (uno_tx, mut uno_rx) = take(&mut chans, "unordered")?.split();
    let (lossy_tx, mut lossy_rx) = take(&mut chans, "lossy")?.split();
    let max = rel_tx.max_message_size();
    let sizes: Vec<usize> = SIZES.iter().copied().filter(|s| *s <= max).collect();
    let chunk = opts.msg.min(max);
    let bulk = opts.bulk;

    // What this side sends, described up front so the driver can compare.
    let crcs: Vec<u32> = sizes
        .iter()
        .enumerate()
        .map(|(i, s)| crc_of(&pattern(*s, i)))
        .collect();
    let base = pattern(chunk, 0);
    let mut bulk_crc = Crc::new();
    let mut k = 0;
    let mut left = bulk;
    while left > 0 {
        let c = bulk_chunk(&base, k);
        let n = left.min(c.len());
        bulk_crc.update(&c[..n]);
        left -= n;
        k += 1;
    }
    let sent = json!({
        "sizes": sizes, "crcs": crcs, "bulkBytes": bulk, "bulkCrc": bulk_crc.finish(),
        "unordered": INDEXED, "lossy": INDEXED,
    });

    let sender = {
        let sizes = sizes.clone();
        tokio::spawn(async move {
            let header = json!({"sizes": sizes, "bulk": bulk, "chunk": chunk}).to_string();
            send(&rel_tx, Bytes::from(header)).await?;
            for (i, s) in sizes.iter().enumerate() {
                send(&rel_tx, Bytes::from(pattern(*s, i))).await?;
            }
            for k in 0..INDEXED {
                send(&uno_tx, indexed(k)).await?;
                send(&lossy_tx, indexed(k)).await?;
            }
            let mut left = bulk;
            let mut k = 0;
            while left > 0 {
                let mut c = bulk_chunk(&base, k);
                let n = left.min(c.len());
                c.truncate(n);
                send(&rel_tx, c).await?;
                left -= n;
                k += 1;
            }
            Ok::<_, String>((rel_tx, uno_tx, lossy_tx))
        })
    };

    let lossy_count = Arc::new(AtomicUsize::new(0));
    let lossy_intact = Arc::new(AtomicBool::new(true));
    let lossy_task = {
        let (count, intact) = (Arc::clone(&lossy_count), Arc::clone(&lossy_intact));
        tokio::spawn(async move {
            let mut seen = BTreeSet::new();
            while let Some(m) = lossy_rx.recv().await {
                let ok = m.len() == 1024
                    && m.get(..4)
                        .and_then(|b| <[u8; 4]>::try_from(b).ok())
                        .map(|b| m == indexed(u32::from_be_bytes(b)))
                        .unwrap_or(false);
                if !ok {
                    intact.store(false, Ordering::Relaxed);
                }
                if let Some(b) = m.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()) {
                    seen.insert(u32::from_be_bytes(b));
                }
                count.store(seen.len(), Ordering::Relaxed);
                if seen.len() as u32 >= INDEXED {
                    break;
                }
            }
        })
    };

    let unordered_task = tokio::spawn(async move {
        let mut seen = BTreeSet::new();
        let mut intact = true;
        let mut out_of_order = false;
        let mut last = None;
        while (seen.len() as u32) < INDEXED {
            let m = recv(&mut uno_rx, "unordered messages").await?;
            let k = m
                .get(..4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes);
            match k {
                Some(k) if m == indexed(k) => {
                    if last.is_some_and(|l| k < l) {
                        out_of_order = true;
                    }
                    last = Some(k);
                    seen.insert(k);
                }
                _ => intact = false,
            }
            if !intact {
                break;
            }
        }
        Ok::<_, String>((seen.len(), intact, out_of_order))
    });

    // Reliable: header, the sized messages, then the bulk stream.
    let header = recv(&mut rel_rx, "header").await?;
    let header: Value =
        serde_json::from_slice(&header).map_err(|e| format!("bad header from peer: {e}"))?;
    let their_sizes: Vec<usize> = header["sizes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_u64())
                .map(|v| v as usize)
                .collect()
        })
        .unwrap_or_default();
    let their_bulk = header["bulk"].as_u64().unwrap_or(0) as usize;
    let mut got_sizes = Vec::new();
    let mut got_crcs = Vec::new();
    for _ in &their_sizes {
        let m = recv(&mut rel_rx, "a sized message").await?;
        got_sizes.push(m.len());
        got_crcs.push(crc_of(&m));
    }
    let mut got_bulk = 0usize;
    let mut crc = Crc::new();
    while got_bulk < their_bulk {
        let m = recv(&mut rel_rx, "bulk").await?;
        got_bulk += m.len();
        crc.update(&m);
    }
    let (uno_count, uno_intact, uno_out_of_order) =
        unordered_task.await.map_err(|e| e.to_string())??;
    let senders = sender.await.map_err(|e| e.to_string())??;
    let _ = tokio::time::timeout(Duration::from_secs(3), lossy_task).await;
    // Stay until the peer acknowledged everything we sent, so our report means "delivered".
    let deadline = Instant::now() + STEP_LIMIT;
    while senders.0.outstanding_bytes().await > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(json!({
        "stack": "peerlink",
        "connectMs": connect.as_secs_f64() * 1e3,
        "remoteMaxMessageSize": max,
        "sent": sent,
        "received": {
            "sizes": got_sizes, "crcs": got_crcs, "bulkBytes": got_bulk, "bulkCrc": crc.finish(),
            "unordered": uno_count, "unorderedIntact": uno_intact,
            "unorderedOutOfOrder": uno_out_of_order,
            "lossy": lossy_count.load(Ordering::Relaxed),
            "lossyIntact": lossy_intact.load(Ordering::Relaxed),
        },
    }))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Benchmark script: the offerer sends the bulk stream and then times 1 KiB round trips; the
/// answerer counts, confirms with one byte, then echoes.
async fn bench(
    link: WebRtcLink,
    mut channels_in: mpsc::UnboundedReceiver<WebRtcChannel>,
    opts: Opts,
) -> Result<Value, String> {
    let specs = [("bench", ChannelOptions::default())];
    let (mut chans, connect) = open_channels(&link, &mut channels_in, opts.role, &specs).await?;
    let (tx, mut rx) = take(&mut chans, "bench")?.split();
    if opts.role == WebRtcRole::Offerer {
        let msg = opts.msg.min(tx.max_message_size());
        let header = json!({"bulk": opts.bulk, "msg": msg, "rtt": opts.rtt}).to_string();
        send(&tx, Bytes::from(header)).await?;
        let payload = Bytes::from(pattern(msg, 0));
        let t1 = Instant::now();
        let mut left = opts.bulk;
        while left > 0 {
            let n = left.min(msg);
            send(&tx, payload.slice(..n)).await?;
            left -= n;
        }
        let done = recv(&mut rx, "bulk confirmation").await?;
        let elapsed = t1.elapsed();
        if done.len() != 1 {
            return Err("unexpected confirmation".to_owned());
        }
        let ping = Bytes::from(pattern(1024, 1));
        let mut rtts = Vec::new();
        for _ in 0..opts.rtt {
            let t = Instant::now();
            send(&tx, ping.clone()).await?;
            let echo = recv(&mut rx, "echo").await?;
            rtts.push(t.elapsed().as_secs_f64() * 1e6);
            if echo != ping {
                return Err("echo differs".to_owned());
            }
        }
        Ok(json!({
            "connectMs": connect.as_secs_f64() * 1e3,
            "bulkMBps": opts.bulk as f64 / elapsed.as_secs_f64() / 1e6,
            "msg": msg,
            "rttUs": median(rtts),
            "pacingWindow": tx.pacing_window(),
        }))
    } else {
        let header = recv(&mut rx, "header").await?;
        let header: Value = serde_json::from_slice(&header).map_err(|e| e.to_string())?;
        let bulk = header["bulk"].as_u64().unwrap_or(0) as usize;
        let rtt = header["rtt"].as_u64().unwrap_or(0);
        let mut got = 0;
        while got < bulk {
            got += recv(&mut rx, "bulk").await?.len();
        }
        send(&tx, Bytes::from_static(b"!")).await?;
        for _ in 0..rtt {
            let m = recv(&mut rx, "ping").await?;
            send(&tx, m).await?;
        }
        Ok(json!({"received": got}))
    }
}

/// Priority script: five channels, one message each way on each; the report gives, per label,
/// the channel's priority and the message received on it.
async fn priorities(
    link: WebRtcLink,
    mut channels_in: mpsc::UnboundedReceiver<WebRtcChannel>,
    opts: Opts,
) -> Result<Value, String> {
    let with = |priority| ChannelOptions {
        priority,
        ..ChannelOptions::default()
    };
    let specs = [
        ("very-low", with(ChannelPriority::VeryLow)),
        ("low", with(ChannelPriority::Low)),
        ("medium", with(ChannelPriority::Medium)),
        ("high", with(ChannelPriority::High)),
        ("default", ChannelOptions::default()),
    ];
    let (chans, connect) = open_channels(&link, &mut channels_in, opts.role, &specs).await?;
    let mut split = Vec::new();
    for (label, ch) in chans {
        let priority = ch.priority();
        let (tx, rx) = ch.split();
        send(&tx, Bytes::from(label.clone())).await?;
        split.push((label, priority, tx, rx));
    }
    let mut channels = serde_json::Map::new();
    for (label, priority, _, rx) in &mut split {
        let got = recv(rx, "a message on a priority channel").await?;
        channels.insert(
            label.clone(),
            json!({
                "priority": priority.as_str(),
                "received": String::from_utf8_lossy(&got),
            }),
        );
    }
    let deadline = Instant::now() + STEP_LIMIT;
    for (_, _, tx, _) in &split {
        while tx.outstanding_bytes().await > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    Ok(json!({
        "stack": "peerlink",
        "connectMs": connect.as_secs_f64() * 1e3,
        "channels": channels,
    }))
}

/// Chat script, for pages that only chat (the lobby): one channel `chat` (the offerer opens
/// it), this side sends `hello-code` and reports the first message it gets back.
async fn chat(
    link: WebRtcLink,
    mut channels_in: mpsc::UnboundedReceiver<WebRtcChannel>,
    opts: Opts,
) -> Result<Value, String> {
    let bound = Duration::from_secs(60);
    let channel = if opts.role == WebRtcRole::Offerer {
        let ch = link
            .create_channel("chat", ChannelOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        link.start().await.map_err(|e| e.to_string())?;
        ch
    } else {
        tokio::time::timeout(bound, channels_in.recv())
            .await
            .map_err(|_| "no channel from the peer".to_owned())?
            .ok_or("link ended")?
    };
    tokio::time::timeout(bound, channel.opened())
        .await
        .map_err(|_| "channel open timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let (tx, mut rx) = channel.split();
    send(&tx, Bytes::from_static(b"hello-code")).await?;
    let reply = recv(&mut rx, "chat reply").await?;
    Ok(json!({ "chat": String::from_utf8_lossy(&reply) }))
}

/// Creates a link and a task that turns its events into outgoing signals and channels.
async fn make_link(
    opts: &Opts,
    role: WebRtcRole,
    signals_out: mpsc::UnboundedSender<Signal>,
) -> Result<(WebRtcLink, mpsc::UnboundedReceiver<WebRtcChannel>), String> {
    let mut config = WebRtcConfig {
        bind_addrs: vec![SocketAddr::new(opts.bind, 0)],
        ..WebRtcConfig::default()
    };
    config.tuning.max_message_size = config.tuning.max_message_size.max(opts.msg as u32);
    if let Some(cc) = opts.sctp_cc {
        config.tuning.sctp_congestion_control = cc;
    }
    // The per-channel adaptive window is off by default; either of its flags turns it on.
    if opts.pacing_initial.is_some() || opts.pacing_min.is_some() {
        let mut pacing = config.tuning.send_pacing.unwrap_or_default();
        pacing.initial = opts.pacing_initial.unwrap_or(pacing.initial);
        pacing.min = opts.pacing_min.unwrap_or(pacing.min);
        config.tuning.send_pacing = Some(pacing);
    }
    if !opts.pacing {
        config.tuning.send_pacing = None;
    }
    if let Some(limit) = opts.send_limit {
        config.tuning.send_buffer_limit = Some(limit);
    }
    if opts.codes {
        config = config.for_codes();
    }
    let (link, mut events) = WebRtcLink::new(config, role)
        .await
        .map_err(|e| e.to_string())?;
    let (ch_tx, ch_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            match event {
                WebRtcEvent::Signal(s) => {
                    let _ = signals_out.send(s);
                }
                WebRtcEvent::Channel(ch) => {
                    let _ = ch_tx.send(ch);
                }
                other => eprintln!("[{role:?}] {other:?}"),
            }
        }
    });
    Ok((link, ch_rx))
}

async fn run_script(
    link: WebRtcLink,
    channels: mpsc::UnboundedReceiver<WebRtcChannel>,
    opts: Opts,
) -> Value {
    let cpu0 = cpu_seconds();
    let result = if opts.chat {
        chat(link, channels, opts).await
    } else if opts.priority {
        priorities(link, channels, opts).await
    } else if opts.bench {
        bench(link, channels, opts).await
    } else {
        interop(link, channels, opts).await
    };
    match result {
        Ok(mut report) => {
            report["cpuS"] = json!(cpu_seconds() - cpu0);
            report["peakRssKiB"] = json!(peak_rss_kib());
            report
        }
        Err(err) => json!({"error": err}),
    }
}

/// Runs the script where `--app-thread` says: as a runtime task (default) or on this thread.
async fn script(
    link: WebRtcLink,
    channels: mpsc::UnboundedReceiver<WebRtcChannel>,
    opts: Opts,
) -> Value {
    if opts.app_thread {
        return run_script(link, channels, opts).await;
    }
    match tokio::spawn(run_script(link, channels, opts)).await {
        Ok(report) => report,
        Err(err) => json!({"error": format!("script task failed: {err}")}),
    }
}

fn print_line(value: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

async fn stdio_peer(opts: Opts) -> Result<(), String> {
    let (sig_tx, mut sig_rx) = mpsc::unbounded_channel();
    let (link, channels) = make_link(&opts, opts.role, sig_tx).await?;
    let codes = opts.codes;
    tokio::spawn(async move {
        while let Some(signal) = sig_rx.recv().await {
            if !codes {
                print_line(&json!({ "signal": signal }));
                continue;
            }
            // Only the description goes out, as a code; without trickle there are no
            // candidate signals.
            let code = code_from_signal(&signal)
                .map_err(|e| e.to_string())
                .and_then(|c| {
                    Ok((
                        c.to_text().map_err(|e| e.to_string())?,
                        c.to_bytes().map_err(|e| e.to_string())?.len(),
                    ))
                });
            match code {
                Ok((text, bytes)) => print_line(&json!({ "code": text, "bytes": bytes })),
                Err(err) => eprintln!("no code for {signal:?}: {err}"),
            }
        }
    });
    let input = {
        let link = link.downgrade();
        tokio::spawn(async move {
            // Standard input is read on a thread: the runtime is built without tokio's stdio.
            let (line_tx, mut lines) = mpsc::unbounded_channel::<String>();
            std::thread::spawn(move || {
                for line in std::io::stdin().lines() {
                    let Ok(line) = line else { break };
                    if line_tx.send(line).is_err() {
                        break;
                    }
                }
            });
            while let Some(line) = lines.recv().await {
                let Ok(value) = serde_json::from_str::<Value>(&line) else {
                    eprintln!("ignored input line: {line}");
                    continue;
                };
                let signal = if let Some(code) = value.get("code").and_then(Value::as_str) {
                    CompactSignal::from_text(code)
                        .map(|code| signal_from_code(&code))
                        .map_err(|e| e.to_string())
                } else if let Some(signal) = value.get("signal") {
                    serde_json::from_value::<Signal>(signal.clone()).map_err(|e| e.to_string())
                } else {
                    continue;
                };
                let Some(link) = link.upgrade() else { return };
                let result = match signal {
                    Ok(signal) => link.handle_signal(signal).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e),
                };
                if let Err(err) = result {
                    eprintln!("signal refused: {err}");
                }
            }
        })
    };
    let report = script(link.clone(), channels, opts).await;
    print_line(&json!({ "report": report }));
    // Keep the link up until the driver ends our input: the peer may still be receiving.
    let _ = input.await;
    link.close().await;
    Ok(())
}

async fn pair(opts: Opts) -> Result<(), String> {
    let (a_tx, mut a_rx) = mpsc::unbounded_channel();
    let (b_tx, mut b_rx) = mpsc::unbounded_channel();
    let (a, a_ch) = make_link(&opts, WebRtcRole::Offerer, a_tx).await?;
    let (b, b_ch) = make_link(&opts, WebRtcRole::Answerer, b_tx).await?;
    for (rx, to) in [(&mut a_rx, b.downgrade()), (&mut b_rx, a.downgrade())] {
        let mut rx = std::mem::replace(rx, mpsc::unbounded_channel().1);
        tokio::spawn(async move {
            while let Some(s) = rx.recv().await {
                let Some(to) = to.upgrade() else { return };
                if let Err(err) = to.handle_signal(s).await {
                    eprintln!("signal refused: {err}");
                }
            }
        });
    }
    let b_opts = Opts {
        role: WebRtcRole::Answerer,
        ..opts.clone()
    };
    let a_opts = Opts {
        role: WebRtcRole::Offerer,
        ..opts
    };
    let (ra, rb) = tokio::join!(
        script(a.clone(), a_ch, a_opts),
        script(b.clone(), b_ch, b_opts)
    );
    print_line(&json!({"report": ra, "answerer": rb}));
    a.close().await;
    b.close().await;
    Ok(())
}

#[tokio::main]
async fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let result = match parse_args() {
        Ok(opts) if opts.pair => pair(opts).await,
        Ok(opts) => stdio_peer(opts).await,
        Err(err) => Err(err),
    };
    if let Err(err) = result {
        eprintln!("webrtc_peer: {err}");
        std::process::exit(1);
    }
}
