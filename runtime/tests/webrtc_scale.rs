//! 1,000 WebRTC link open/close cycles (ten at a time) leave descriptors, tasks and resident
//! memory flat. Its own test binary, so the process-wide counts are not disturbed by other
//! tests running in parallel.

use std::time::Duration;

use bytes::Bytes;
use peerlink::webrtc::{
    ChannelOptions, WebRtcChannel, WebRtcConfig, WebRtcEvent, WebRtcEvents, WebRtcLink, WebRtcRole,
};
use tokio::sync::mpsc;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(30);
const CYCLES: usize = 1000;
const CONCURRENT: usize = 10;
/// Cycles before the baseline is taken: allocator arenas, thread caches and lazily created
/// process-wide state grow to their working size first.
const WARM_UP: usize = 100;

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
                    // Signals in flight when a link closes are refused; fine here.
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

/// Opens a link, sends one message each way, closes it (or, every other cycle, drops it).
async fn cycle(i: usize) {
    let config = WebRtcConfig::loopback();
    let (offerer, oe) = WebRtcLink::new(config.clone(), WebRtcRole::Offerer)
        .await
        .expect("offerer");
    let (answerer, ae) = WebRtcLink::new(config, WebRtcRole::Answerer)
        .await
        .expect("answerer");
    let mut channel = offerer
        .create_channel("main", ChannelOptions::default())
        .await
        .expect("channel");
    let (tx, mut rx) = mpsc::unbounded_channel();
    forward(oe, &answerer, None);
    forward(ae, &offerer, Some(tx));
    offerer.start().await.expect("start");
    timeout(WAIT, channel.opened())
        .await
        .expect("open bounded")
        .expect("open");
    let mut remote = timeout(WAIT, rx.recv())
        .await
        .expect("remote bounded")
        .expect("remote channel");
    let msg = Bytes::from(vec![i as u8; 1000]);
    channel.sender.send(msg.clone()).await.expect("send");
    let got = timeout(WAIT, remote.receiver.recv())
        .await
        .expect("recv bounded")
        .expect("recv");
    assert_eq!(got, msg);
    remote.sender.send(msg.clone()).await.expect("send back");
    let got = timeout(WAIT, channel.receiver.recv())
        .await
        .expect("recv bounded")
        .expect("recv");
    assert_eq!(got, msg);
    if i % 2 == 0 {
        offerer.close().await;
        answerer.close().await;
    }
}

async fn run(range: std::ops::Range<usize>) {
    let mut next = range.start;
    while next < range.end {
        let n = CONCURRENT.min(range.end - next);
        futures_util::future::join_all((next..next + n).map(cycle)).await;
        next += n;
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Waits (bounded) for asynchronous closes of dropped links to finish.
async fn settle(fds: usize, tasks: usize) -> (usize, usize) {
    let metrics = tokio::runtime::Handle::current().metrics();
    for _ in 0..200 {
        if open_fds() <= fds && metrics.num_alive_tasks() <= tasks {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (open_fds(), metrics.num_alive_tasks())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_open_close_cycles_leave_fds_tasks_and_memory_flat() {
    let metrics = tokio::runtime::Handle::current().metrics();
    run(0..WARM_UP).await;
    // Baseline once the warm-up's dropped links are gone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fds_before = open_fds();
    let tasks_before = metrics.num_alive_tasks();
    let rss_before = rss_kib();

    run(WARM_UP..CYCLES).await;

    let (fds_after, tasks_after) = settle(fds_before + 4, tasks_before + 4).await;
    let rss_after = rss_kib();
    let cycles = (CYCLES - WARM_UP) as u64;
    eprintln!(
        "{cycles} cycles: fds {fds_before} -> {fds_after}, tasks {tasks_before} -> {tasks_after}, \
         RSS {rss_before} -> {rss_after} KiB"
    );
    assert!(
        fds_after <= fds_before + 4,
        "descriptors leak: {fds_before} -> {fds_after}"
    );
    assert!(
        tasks_after <= tasks_before + 4,
        "tasks leak: {tasks_before} -> {tasks_after}"
    );
    // A leaked link pair costs well over 100 KiB; 900 of them would be ~90 MiB. 16 MiB leaves
    // room for allocator fragmentation, not for a per-cycle leak above ~18 KiB.
    assert!(
        rss_after <= rss_before + 16 * 1024,
        "resident memory grows: {rss_before} -> {rss_after} KiB over {cycles} cycles"
    );
}
