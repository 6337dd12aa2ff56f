//! Encrypted WebSocket link on loopback: 1 KiB RPC round trip and bulk throughput.
//!
//! `cargo bench -p peerlink --bench link` (add `-- --quick` for a short run). Both peers live
//! in this process on a 2-worker tokio runtime; every byte crosses a real TCP socket, the
//! WebSocket framing and the Noise-keyed record encryption.

use std::time::{Duration, Instant};

use bytes::Bytes;
use peerlink::core::Identity;
use peerlink::{CallOptions, Connection, Node, NodeConfig, handler_fn};

fn random(len: usize) -> Bytes {
    let mut data = vec![0u8; len];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut data);
    Bytes::from(data)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

async fn setup() -> (Node, Node, Connection) {
    let server = Node::new(NodeConfig::new(
        Identity::generate(&mut rand::rngs::OsRng),
        "bench",
        "server",
    ))
    .expect("server node");
    let client = Node::new(NodeConfig::new(
        Identity::generate(&mut rand::rngs::OsRng),
        "bench",
        "client",
    ))
    .expect("client node");
    server.expose("echo", handler_fn(|req| async move { Ok(req.body) }));
    server.expose(
        "sink",
        handler_fn(
            |req| async move { Ok(Bytes::from((req.body.len() as u64).to_le_bytes().to_vec())) },
        ),
    );
    let listener = server.listen("127.0.0.1:0").await.expect("listen");
    let conn = client.dial(&listener.url()).await.expect("dial");
    (server, client, conn)
}

async fn rtt(conn: &Connection, runs: usize, calls: usize) -> (Vec<f64>, f64) {
    let payload = random(1024);
    for _ in 0..200 {
        conn.call_raw("echo", payload.clone(), CallOptions::default())
            .await
            .expect("warm-up");
    }
    let mut medians = Vec::new();
    let mut all = Vec::new();
    for _ in 0..runs {
        let mut samples = Vec::with_capacity(calls);
        for _ in 0..calls {
            let start = Instant::now();
            let reply = conn
                .call_raw("echo", payload.clone(), CallOptions::default())
                .await
                .expect("call");
            samples.push(start.elapsed().as_secs_f64() * 1e6);
            assert_eq!(reply.len(), payload.len());
        }
        all.extend_from_slice(&samples);
        medians.push(median(&mut samples));
    }
    all.sort_by(f64::total_cmp);
    let p99 = all.get(all.len() * 99 / 100).copied().unwrap_or(f64::NAN);
    (medians, p99)
}

async fn bulk_calls(conn: &Connection, total: usize, chunk: usize, in_flight: usize) -> f64 {
    let payload = random(chunk);
    let start = Instant::now();
    let mut pending = futures_util::stream::FuturesUnordered::new();
    let mut sent = 0;
    let mut done = 0;
    use futures_util::StreamExt;
    while done < total {
        while sent < total && pending.len() < in_flight {
            let conn = conn.clone();
            let body = payload.clone();
            pending.push(async move { conn.call_raw("sink", body, CallOptions::default()).await });
            sent += chunk;
        }
        if let Some(result) = pending.next().await {
            result.expect("bulk call");
            done += chunk;
        }
    }
    total as f64 / start.elapsed().as_secs_f64() / 1e6
}

async fn bulk_stream(server: &Node, conn: &Connection, total: usize, chunk: usize) -> f64 {
    let payload = random(chunk);
    let accept = {
        let server = server.clone();
        tokio::spawn(async move {
            let remote = server
                .connections()
                .into_iter()
                .next()
                .expect("server side");
            let mut stream = remote.accept_stream().await.expect("stream");
            let mut n = 0usize;
            while let Some(data) = stream.recv().await {
                n += data.expect("data").len();
            }
            n
        })
    };
    let start = Instant::now();
    let mut stream = conn.open_stream("bulk").await.expect("open");
    let mut sent = 0;
    while sent < total {
        stream.send(payload.clone()).await.expect("send");
        sent += chunk;
    }
    stream.finish().await.expect("finish");
    let received = accept.await.expect("reader");
    assert_eq!(received, total);
    total as f64 / start.elapsed().as_secs_f64() / 1e6
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (server, client, conn) = setup().await;
        println!(
            "connect {:?}, handshake {:?}",
            conn.timings().connect,
            conn.timings().handshake
        );
        let (runs, calls) = if quick { (5, 1_000) } else { (7, 5_000) };
        let (mut medians, p99) = rtt(&conn, runs, calls).await;
        let overall = median(&mut medians.clone());
        println!(
            "rpc 1 KiB round trip: median {overall:.1} µs (per-run medians {:?} µs, p99 {p99:.1} µs, {runs} runs x {calls} calls)",
            medians.iter_mut().map(|m| (*m * 10.0).round() / 10.0).collect::<Vec<_>>()
        );
        let total = if quick { 64 << 20 } else { 256 << 20 };
        let mut call_rates = Vec::new();
        let mut stream_rates = Vec::new();
        for _ in 0..if quick { 2 } else { 5 } {
            call_rates.push(bulk_calls(&conn, total, 1 << 20, 8).await);
            stream_rates.push(bulk_stream(&server, &conn, total, 1 << 20).await);
        }
        println!(
            "bulk {} MiB in 1 MiB calls (8 in flight): median {:.0} MB/s (runs {:?})",
            total >> 20,
            median(&mut call_rates.clone()),
            call_rates.iter().map(|r| r.round()).collect::<Vec<_>>()
        );
        println!(
            "bulk {} MiB over one stream: median {:.0} MB/s (runs {:?})",
            total >> 20,
            median(&mut stream_rates.clone()),
            stream_rates.iter().map(|r| r.round()).collect::<Vec<_>>()
        );
        client.close().await;
        server.close().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    });
}
