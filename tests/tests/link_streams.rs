//! Byte streams over a real loopback WebSocket: empty and 16 MiB streams, bounded buffering
//! on both sides under a slow reader, resets and closes.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{BOUND, ws_pair};
use peerlink::{Error, INITIAL_STREAM_WINDOW};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_byte_stream_opens_and_ends() {
    let pair = ws_pair().await;
    let sender = pair.client_conn.open_stream("empty").await.unwrap();
    sender.finish().await.unwrap();
    let mut receiver = tokio::time::timeout(BOUND, pair.server_conn.accept_stream())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(receiver.name(), "empty");
    assert!(
        tokio::time::timeout(BOUND, receiver.recv())
            .await
            .unwrap()
            .is_none()
    );
    pair.client.close().await;
    pair.server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_mib_with_a_slow_reader_stays_within_the_window() {
    let pair = ws_pair().await;
    let mut data = vec![0u8; 16 << 20];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut data);
    let data = Bytes::from(data);

    let server_conn = pair.server_conn.clone();
    let reader = tokio::spawn(async move {
        let mut stream = server_conn.accept_stream().await.expect("stream arrives");
        let mut received = Vec::with_capacity(16 << 20);
        let mut max_buffered = 0usize;
        // Bounded by the data: each round reads one chunk; ends at the stream's end.
        while let Some(chunk) = stream.recv().await {
            let chunk = chunk.expect("no error mid-stream");
            max_buffered = max_buffered.max(stream.buffered_bytes() + chunk.len());
            received.extend_from_slice(&chunk);
            // A slow consumer.
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        (received, max_buffered)
    });

    let mut sender = pair.client_conn.open_stream("file").await.unwrap();
    let mut max_queued = 0usize;
    let mut offset = 0;
    while offset < data.len() {
        let end = (offset + (256 << 10)).min(data.len());
        tokio::time::timeout(BOUND, sender.send(data.slice(offset..end)))
            .await
            .unwrap()
            .unwrap();
        max_queued = max_queued.max(pair.client_conn.queued_bytes());
        assert!(sender.credit() <= INITIAL_STREAM_WINDOW);
        offset = end;
    }
    sender.finish().await.unwrap();
    let (received, max_buffered) = tokio::time::timeout(BOUND * 2, reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(received.len(), data.len());
    assert!(
        received == data.as_ref(),
        "stream bytes arrive intact and in order"
    );
    let window = INITIAL_STREAM_WINDOW as usize;
    assert!(
        max_buffered <= window,
        "receiver buffered {max_buffered} > window {window}"
    );
    // Sender side: never more than a window (plus one chunk being framed) waiting to go out.
    assert!(
        max_queued <= window + (1 << 20),
        "sender queued {max_queued}"
    );
    pair.client.close().await;
    pair.server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_dropping_the_stream_resets_the_sender() {
    let pair = ws_pair().await;
    let mut sender = pair.client_conn.open_stream("doomed").await.unwrap();
    let receiver = tokio::time::timeout(BOUND, pair.server_conn.accept_stream())
        .await
        .unwrap()
        .unwrap();
    drop(receiver);
    let chunk = Bytes::from(vec![1u8; 256 << 10]);
    // Bounded: the window is 4 MiB, so at most 16 sends succeed before the reset shows.
    let mut error = None;
    for _ in 0..64 {
        match tokio::time::timeout(BOUND, sender.send(chunk.clone()))
            .await
            .unwrap()
        {
            Ok(()) => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    match error {
        Some(Error::StreamReset { code }) => assert_eq!(code, "cancelled"),
        other => panic!("expected a reset, got {other:?}"),
    }
    pair.client.close().await;
    pair.server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_connection_fails_open_streams() {
    let pair = ws_pair().await;
    let mut sender = pair.client_conn.open_stream("cut").await.unwrap();
    sender.send(Bytes::from_static(b"partial")).await.unwrap();
    let mut receiver = tokio::time::timeout(BOUND, pair.server_conn.accept_stream())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        receiver.recv().await.unwrap().unwrap(),
        Bytes::from_static(b"partial")
    );
    pair.client_conn.close("bye").await;
    let next = tokio::time::timeout(BOUND, receiver.recv()).await.unwrap();
    assert!(matches!(next, Some(Err(Error::Closed(_)))), "{next:?}");
    let err = sender.send(Bytes::from_static(b"more")).await.unwrap_err();
    assert_eq!(err.code(), "closed");
    assert!(pair.server_conn.accept_stream().await.is_none());
    pair.client.close().await;
    pair.server.close().await;
}
