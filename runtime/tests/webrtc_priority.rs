//! Data channel priority: carried to the peer in the channel-open message, and a
//! higher-priority channel's messages overtake a lower-priority bulk transfer on the same link.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use peerlink::webrtc::{ChannelOptions, ChannelPriority, WebRtcConfig};
use tokio::time::timeout;

mod common;
use common::*;

const ALL: [ChannelPriority; 4] = [
    ChannelPriority::VeryLow,
    ChannelPriority::Low,
    ChannelPriority::Medium,
    ChannelPriority::High,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_sees_each_channels_priority() {
    let labels = ["very-low", "low", "medium", "high", "default"];
    let mut channels: Vec<(&str, ChannelOptions)> = ALL
        .iter()
        .zip(labels)
        .map(|(&priority, label)| {
            (
                label,
                ChannelOptions {
                    priority,
                    ..ChannelOptions::default()
                },
            )
        })
        .collect();
    channels.push(("default", ChannelOptions::default()));
    let pair = connect(WebRtcConfig::loopback(), channels).await;
    for (local, remote) in pair.local.iter().zip(&pair.remote) {
        assert_eq!(local.label(), remote.label());
        assert_eq!(
            remote.priority(),
            local.priority(),
            "channel {}: the answerer reads the priority the offerer set",
            local.label()
        );
        assert_eq!(remote.sender.priority(), remote.priority());
    }
    let priorities: Vec<_> = pair.remote.iter().map(|c| c.priority()).collect();
    assert_eq!(
        priorities,
        [
            ChannelPriority::VeryLow,
            ChannelPriority::Low,
            ChannelPriority::Medium,
            ChannelPriority::High,
            ChannelPriority::Low,
        ]
    );
    pair.close().await;
}

/// Rounds of the urgent ping-pong; the first few find the bulk's queue already full.
const ROUNDS: usize = 24;
const WARM_UP: usize = 4;
const BULK_MESSAGE: usize = 64 * 1024;
/// Bulk messages sent at most (256 MiB): the bulk runs until the rounds are done.
const BULK_MAX: usize = 4096;

/// For each ping after the warm-up: the bulk's unacknowledged bytes when the ping was sent,
/// and how many bulk messages the receiver got while the ping was on its way.
struct Rounds {
    outstanding: Vec<usize>,
    ahead: Vec<usize>,
}

/// Runs a bulk transfer on one channel and a ping-pong of small messages on another. The
/// engine sends one queue first in, first out, so the bulk messages that arrive while a ping
/// is on its way are the bulk it had to wait behind.
async fn bulk_and_pings(bulk: ChannelPriority, urgent: ChannelPriority) -> Rounds {
    let pair = connect(
        WebRtcConfig::loopback(),
        vec![
            (
                "bulk",
                ChannelOptions {
                    priority: bulk,
                    ..ChannelOptions::default()
                },
            ),
            (
                "urgent",
                ChannelOptions {
                    priority: urgent,
                    ..ChannelOptions::default()
                },
            ),
        ],
    )
    .await;
    let mut local = pair.local.into_iter();
    let mut remote = pair.remote.into_iter();
    let (bulk_tx, _) = local.next().expect("bulk").split();
    let bulk_probe = bulk_tx.clone();
    let (urgent_tx, mut echo_rx) = local.next().expect("urgent").split();
    let (_, mut bulk_rx) = remote.next().expect("bulk").split();
    let (echo_tx, mut urgent_rx) = remote.next().expect("urgent").split();

    let received = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::clone(&received);
    let reader = tokio::spawn(async move {
        while let Some(m) = bulk_rx.recv().await {
            assert_eq!(m.len(), BULK_MESSAGE);
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let stop_bulk = Arc::clone(&stop);
    let writer = tokio::spawn(async move {
        let message = Bytes::from(vec![7u8; BULK_MESSAGE]);
        for _ in 0..BULK_MAX {
            if stop_bulk.load(Ordering::SeqCst) {
                break;
            }
            bulk_tx.send(message.clone()).await.expect("bulk send");
        }
    });
    let echo = tokio::spawn(async move {
        while let Some(m) = urgent_rx.recv().await {
            if echo_tx.send(m).await.is_err() {
                break;
            }
        }
    });

    // Let the bulk fill its window before the first ping (bounded wait).
    for _ in 0..2_000 {
        if received.load(Ordering::SeqCst) >= 32 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(received.load(Ordering::SeqCst) >= 32, "bulk is flowing");

    let mut ahead = Vec::new();
    let mut outstanding = Vec::new();
    let start_count = received.load(Ordering::SeqCst);
    let started = std::time::Instant::now();
    for round in 0..ROUNDS {
        // Each ping goes while the bulk is moving: one more bulk message arrived since the
        // last ping came back (bounded wait; a busy machine can pause the writer for a few ms).
        let mark = received.load(Ordering::SeqCst);
        for _ in 0..400 {
            if received.load(Ordering::SeqCst) > mark {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_micros(500)).await;
        }
        let queued = bulk_probe.outstanding_bytes().await;
        let before = received.load(Ordering::SeqCst);
        urgent_tx
            .send(Bytes::from(vec![round as u8; 16]))
            .await
            .expect("ping");
        // The echo comes back on a direction that carries nothing else.
        let back = timeout(WAIT, echo_rx.recv())
            .await
            .expect("echo timeout")
            .expect("echo");
        assert_eq!(back[0], round as u8);
        let after = received.load(Ordering::SeqCst);
        if round >= WARM_UP {
            ahead.push(after - before);
            outstanding.push(queued);
        }
    }
    eprintln!(
        "{bulk} bulk, {urgent} pings: {} bulk messages during {ROUNDS} rounds ({:?})",
        received.load(Ordering::SeqCst) - start_count,
        started.elapsed()
    );
    stop.store(true, Ordering::SeqCst);
    assert!(!writer.is_finished(), "the bulk lasted through every round");
    let _ = timeout(WAIT, writer).await;
    pair.offerer.close().await;
    pair.answerer.close().await;
    let _ = timeout(WAIT, reader).await;
    let _ = timeout(WAIT, echo).await;
    Rounds { outstanding, ahead }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_priority_messages_overtake_a_low_priority_bulk() {
    let prioritised = bulk_and_pings(ChannelPriority::VeryLow, ChannelPriority::High).await;
    let equal = bulk_and_pings(ChannelPriority::Low, ChannelPriority::Low).await;
    eprintln!(
        "bulk messages ahead of each ping: prioritised {:?}, equal {:?}",
        prioritised.ahead, equal.ahead
    );
    eprintln!(
        "bulk KiB unacknowledged at each ping: prioritised {:?}, equal {:?}",
        prioritised
            .outstanding
            .iter()
            .map(|b| b / 1024)
            .collect::<Vec<_>>(),
        equal
            .outstanding
            .iter()
            .map(|b| b / 1024)
            .collect::<Vec<_>>()
    );
    // While high is active, very-low admits a message only below an eighth of its window
    // (1 MiB: 128 KiB), so it never has more than that plus one message queued.
    let cap = 128 * 1024 + BULK_MESSAGE;
    let max = |v: &[usize]| v.iter().copied().max().unwrap_or(0);
    assert!(
        max(&prioritised.outstanding) <= cap,
        "very-low bulk held at its share while high is active: {:?}",
        prioritised.outstanding
    );
    // So a ping waits behind about three bulk messages at most; the bound leaves room for
    // the receiving task's lag in counting.
    let ahead: usize = prioritised.ahead.iter().sum();
    assert!(
        ahead <= 5 * prioritised.ahead.len(),
        "with priorities a ping waits behind few bulk messages: {:?}",
        prioritised.ahead
    );
    // At equal priority nothing holds the bulk back: its window (up to 1 MiB) sits in the
    // queue ahead of the pings, so the bound above is not met by accident.
    assert!(
        max(&equal.outstanding) > cap,
        "at equal priority the bulk keeps more queued: {:?}",
        equal.outstanding
    );
}
