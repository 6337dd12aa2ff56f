//! Closing frees everything: after 1,000 connect/call/close cycles the number of live tokio
//! tasks and open file descriptors returns to where it started and resident memory stays flat.
//! Alone in its own test binary so no other test's sockets or tasks disturb the counts.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{BOUND, node, open_fds};
use peerlink::{CallOptions, handler_fn};
use peerlink_tests::soak::rss_kib;

const CYCLES: u32 = 1000;

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Waits (bounded) until `probe` is at most `limit`, returning the last value seen.
async fn settle(limit: usize, probe: impl Fn() -> usize) -> usize {
    let mut value = probe();
    for _ in 0..200 {
        if value <= limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        value = probe();
    }
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connect_close_cycles_leak_no_tasks_fds_or_memory() {
    let tasks_before_nodes = alive_tasks();
    let server = node("alice", "laptop");
    let client = node("bob", "phone");
    server.expose("echo", handler_fn(|req| async move { Ok(req.body) }));
    let listener = server.listen("127.0.0.1:0").await.unwrap();
    let url = listener.url();

    let cycle = |i: u32| {
        let client = client.clone();
        let server = server.clone();
        let url = url.clone();
        async move {
            let conn = tokio::time::timeout(BOUND, client.dial(&url))
                .await
                .unwrap()
                .unwrap();
            let body = Bytes::from(i.to_le_bytes().to_vec());
            let reply = conn
                .call_raw("echo", body.clone(), CallOptions::default())
                .await
                .unwrap();
            assert_eq!(reply, body);
            // Every cycle takes its own server side, so `accept` never hands out an earlier
            // cycle's connection whose close the server has not processed yet.
            let server_side = tokio::time::timeout(BOUND, server.accept())
                .await
                .unwrap()
                .unwrap();
            // Alternate which side closes; the other one must see it.
            let (closing, other) = if i % 2 == 0 {
                (&conn, &server_side)
            } else {
                (&server_side, &conn)
            };
            closing.close("cycle done").await;
            tokio::time::timeout(BOUND, other.closed()).await.unwrap();
        }
    };

    // Warm-up: lets the runtime, resolver and allocator reach their steady state.
    for i in 0..50 {
        cycle(i).await;
    }
    while tokio::time::timeout(Duration::from_millis(50), server.accept())
        .await
        .is_ok_and(|c| c.is_some())
    {}
    let base_tasks = settle(0, alive_tasks).await;
    let base_fds = open_fds();
    let base_rss = rss_kib();

    for i in 0..CYCLES {
        cycle(i).await;
    }
    // Drain accepted connections queued for `accept` (already closed by the client).
    while tokio::time::timeout(Duration::from_millis(50), server.accept())
        .await
        .is_ok_and(|c| c.is_some())
    {}

    // The probes can see a live connection: each side runs reader, writer and timer tasks.
    let probe = client.dial(&url).await.unwrap();
    assert!(
        alive_tasks() >= base_tasks + 3,
        "an open connection must show up in the task count"
    );
    assert!(
        open_fds() > base_fds,
        "an open connection must show up in the fd count"
    );
    probe.close("probe done").await;
    while tokio::time::timeout(Duration::from_millis(50), server.accept())
        .await
        .is_ok_and(|c| c.is_some())
    {}

    let tasks = settle(base_tasks + 2, alive_tasks).await;
    let fds = settle(base_fds + 4, open_fds).await;
    assert!(
        tasks <= base_tasks + 2,
        "live tasks grew from {base_tasks} to {tasks}"
    );
    assert!(
        fds <= base_fds + 4,
        "open fds grew from {base_fds} to {fds}"
    );
    // A leaked connection pair costs well over 50 KiB; 1,000 of them would be ~50 MiB. 16 MiB
    // leaves room for allocator fragmentation, not for a per-cycle leak above ~16 KiB.
    let rss = rss_kib();
    eprintln!(
        "{CYCLES} cycles: tasks {base_tasks} -> {tasks}, fds {base_fds} -> {fds}, \
         RSS {base_rss} -> {rss} KiB"
    );
    assert!(
        rss <= base_rss + 16 * 1024,
        "resident memory grew from {base_rss} to {rss} KiB over {CYCLES} cycles"
    );
    let server_open = settle(0, || server.connections().len()).await;
    assert_eq!(server_open, 0);
    assert!(client.connections().is_empty());

    client.close().await;
    server.close().await;
    // The listener's accept loop is gone too.
    let tasks = settle(tasks_before_nodes, alive_tasks).await;
    assert!(
        tasks <= tasks_before_nodes,
        "tasks after node close: {tasks} > {tasks_before_nodes}"
    );
}
