//! Memory per idle WebRTC link: opens N connected links (2N peer connections, both ends in
//! this process), lets them idle, and reports the process's resident memory growth per peer
//! connection, plus descriptors and tasks.
//!
//! ```text
//! cargo run --release -p peerlink --example webrtc_idle -- [--links N] [--batch N]
//!     [--idle-s S] [--rcvbuf BYTES|none] [--sndbuf BYTES|none] [--max-message BYTES]
//! ```
//!
//! Resident memory is `VmRSS` from `/proc/self/status`: what the allocator holds for the links
//! (engine state, SCTP and DTLS buffers, tasks). Kernel socket buffers are not in it; they are
//! only charged while datagrams are queued, so idle links cost nothing there.

use std::time::{Duration, Instant};

use bytes::Bytes;
use peerlink::webrtc::{
    ChannelOptions, WebRtcChannel, WebRtcConfig, WebRtcEvent, WebRtcEvents, WebRtcLink, WebRtcRole,
};
use tokio::sync::mpsc;

fn forward(
    mut events: WebRtcEvents,
    to: &WebRtcLink,
    channels: Option<mpsc::UnboundedSender<WebRtcChannel>>,
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
                    if let Some(tx) = &channels {
                        let _ = tx.send(ch);
                    }
                }
                _ => {}
            }
        }
    });
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

struct Linked {
    offerer: WebRtcLink,
    answerer: WebRtcLink,
    _channels: (WebRtcChannel, WebRtcChannel),
}

async fn link(config: WebRtcConfig) -> Result<Linked, Box<dyn std::error::Error>> {
    let (offerer, oe) = WebRtcLink::new(config.clone(), WebRtcRole::Offerer).await?;
    let (answerer, ae) = WebRtcLink::new(config, WebRtcRole::Answerer).await?;
    let mut channel = offerer
        .create_channel("peerlink", ChannelOptions::default())
        .await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    forward(oe, &answerer, None);
    forward(ae, &offerer, Some(tx));
    offerer.start().await?;
    tokio::time::timeout(Duration::from_secs(30), channel.opened()).await??;
    let mut remote = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await?
        .ok_or("no remote channel")?;
    // One message each way, as a link that did its handshake would have.
    channel.sender.send(Bytes::from_static(b"ping")).await?;
    remote.receiver.recv().await.ok_or("closed")?;
    remote.sender.send(Bytes::from_static(b"pong")).await?;
    channel.receiver.recv().await.ok_or("closed")?;
    Ok(Linked {
        offerer,
        answerer,
        _channels: (channel, remote),
    })
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1)?.parse().ok()
}

fn size_arg(args: &[String], name: &str) -> Option<Option<usize>> {
    let i = args.iter().position(|a| a == name)?;
    let v = args.get(i + 1)?;
    if v == "none" {
        Some(None)
    } else {
        v.parse().ok().map(Some)
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let links: usize = arg(&args, "--links").unwrap_or(500);
    let batch: usize = arg(&args, "--batch").unwrap_or(10).max(1);
    let idle = Duration::from_secs(arg(&args, "--idle-s").unwrap_or(5));
    let mut config = WebRtcConfig::loopback();
    if let Some(v) = size_arg(&args, "--rcvbuf") {
        config.tuning.socket_recv_buffer = v;
    }
    if let Some(Some(v)) = size_arg(&args, "--max-message") {
        config.tuning.max_message_size = u32::try_from(v).unwrap_or(u32::MAX);
    }
    if let Some(v) = size_arg(&args, "--sndbuf") {
        config.tuning.socket_send_buffer = v;
    }
    let metrics = tokio::runtime::Handle::current().metrics();

    // Warm up process-wide state (allocator arenas, lazy statics) outside the measurement.
    {
        let warm = link(config.clone()).await?;
        warm.offerer.close().await;
        warm.answerer.close().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss0 = status_kib("VmRSS:");
    let fds0 = fds();
    let tasks0 = metrics.num_alive_tasks();

    let started = Instant::now();
    let mut all = Vec::with_capacity(links);
    while all.len() < links {
        let n = batch.min(links - all.len());
        let set = futures_util::future::join_all((0..n).map(|_| link(config.clone()))).await;
        for l in set {
            all.push(l?);
        }
    }
    let open_time = started.elapsed();
    tokio::time::sleep(idle).await;
    let rss1 = status_kib("VmRSS:");
    let fds1 = fds();
    let tasks1 = metrics.num_alive_tasks();
    let ends = 2 * links as u64;
    let per_end = rss1.saturating_sub(rss0) as f64 / ends as f64;
    println!(
        "{links} links ({ends} peer connections) opened in {:.1} s, idle {} s",
        open_time.as_secs_f64(),
        idle.as_secs()
    );
    println!(
        "RSS {rss0} KiB -> {rss1} KiB (peak {} KiB): {per_end:.1} KiB per peer connection, {:.1} KiB per link (both ends)",
        status_kib("VmHWM:"),
        per_end * 2.0
    );
    println!(
        "fds {fds0} -> {fds1} ({:.2} per peer connection), tokio tasks {tasks0} -> {tasks1} ({:.2} per peer connection)",
        (fds1.saturating_sub(fds0)) as f64 / ends as f64,
        (tasks1.saturating_sub(tasks0)) as f64 / ends as f64
    );
    let closing = Instant::now();
    for l in &all {
        l.offerer.close().await;
        l.answerer.close().await;
    }
    drop(all);
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "closed in {:.1} s: RSS {} KiB, fds {}, tasks {}",
        closing.elapsed().as_secs_f64(),
        status_kib("VmRSS:"),
        fds(),
        metrics.num_alive_tasks()
    );
    Ok(())
}
