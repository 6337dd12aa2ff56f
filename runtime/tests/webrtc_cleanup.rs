//! Closing WebRTC links frees their sockets and tasks. Its own test binary, so the process-wide
//! descriptor count is not disturbed by other tests running in parallel.

use std::time::Duration;

use peerlink::webrtc::WebRtcConfig;

mod common;
use common::*;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_links_frees_sockets_and_tasks() {
    let metrics = tokio::runtime::Handle::current().metrics();
    // One warm-up cycle so lazily created process-wide resources are not counted as leaks.
    connect(WebRtcConfig::loopback(), reliable())
        .await
        .close()
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fds_before = open_fds();
    let tasks_before = metrics.num_alive_tasks();
    for i in 0..100 {
        let mut pair = connect(WebRtcConfig::loopback(), reliable()).await;
        let mut a = pair.local.remove(0);
        let mut b = pair.remote.remove(0);
        exchange(&mut a, &mut b, &[100]).await;
        if i % 2 == 0 {
            pair.close().await;
        } else {
            // Dropping without close must free everything too.
            drop(pair);
        }
    }
    // Closing is asynchronous for dropped links: wait (bounded) for the counts to settle.
    let mut settled = false;
    for _ in 0..100 {
        if open_fds() <= fds_before + 4 && metrics.num_alive_tasks() <= tasks_before + 4 {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        settled,
        "fds {} -> {}, tasks {} -> {}",
        fds_before,
        open_fds(),
        tasks_before,
        metrics.num_alive_tasks()
    );
}
