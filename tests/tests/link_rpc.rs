//! RPC over a real loopback WebSocket: concurrency, interleaving of bulk and small calls,
//! timeouts, remote errors, missing handlers, cancellation and peers that vanish mid-call.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{BOUND, node, ws_pair, ws_pair_of};
use peerlink::{
    CallOptions, CloseReason, HandlerError, ListenOptions, RpcError, group_rpc_name, handler_fn,
    typed_handler,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Job {
    n: u64,
    label: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Done {
    doubled: u64,
    label: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_calls_each_get_their_own_answer() {
    let pair = ws_pair().await;
    pair.server.expose(
        "double",
        typed_handler(|job: Job| async move {
            Ok::<_, HandlerError>(Done {
                doubled: job.n * 2,
                label: job.label,
            })
        }),
    );
    let mut tasks = Vec::with_capacity(10_000);
    for n in 0..10_000u64 {
        let conn = pair.client_conn.clone();
        tasks.push(tokio::spawn(async move {
            let done: Done = conn
                .call(
                    "double",
                    &Job {
                        n,
                        label: format!("job-{n}"),
                    },
                )
                .await?;
            Ok::<_, RpcError>((n, done))
        }));
    }
    let results = tokio::time::timeout(BOUND * 2, futures_util::future::join_all(tasks))
        .await
        .expect("all calls answered within the bound");
    assert_eq!(results.len(), 10_000);
    for result in results {
        let (n, done) = result.expect("task").expect("call");
        assert_eq!(
            done,
            Done {
                doubled: n * 2,
                label: format!("job-{n}")
            }
        );
    }
    pair.client.close().await;
    pair.server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_calls_overtake_a_64_mib_call_in_flight() {
    let pair = ws_pair().await;
    pair.server.expose(
        "size",
        handler_fn(
            |req| async move { Ok(Bytes::from((req.body.len() as u64).to_le_bytes().to_vec())) },
        ),
    );
    pair.server
        .expose("echo", handler_fn(|req| async move { Ok(req.body) }));

    let order = Arc::new(AtomicUsize::new(0));
    // Random bytes: incompressible, so the whole 64 MiB crosses the link.
    let mut big = vec![0u8; 64 << 20];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut big);
    let big = Bytes::from(big);
    let big_len = big.len() as u64;
    let conn = pair.client_conn.clone();
    let big_order = Arc::clone(&order);
    let big_call = tokio::spawn(async move {
        let reply = conn.call_raw("size", big, CallOptions::default()).await;
        (big_order.fetch_add(1, Ordering::SeqCst), reply)
    });
    // Start the small calls while most of the big message is still queued.
    for _ in 0..30_000 {
        if pair.client_conn.queued_bytes() >= 32 << 20 || big_call.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(
        pair.client_conn.queued_bytes() > 0,
        "the big call should still be sending"
    );
    let mut small = Vec::new();
    for i in 0..100u32 {
        let conn = pair.client_conn.clone();
        let order = Arc::clone(&order);
        small.push(tokio::spawn(async move {
            let body = Bytes::from(i.to_le_bytes().to_vec());
            let reply = conn
                .call_raw("echo", body.clone(), CallOptions::default())
                .await;
            (
                order.fetch_add(1, Ordering::SeqCst),
                reply.map(|r| r == body),
            )
        }));
    }
    let small = tokio::time::timeout(BOUND, futures_util::future::join_all(small))
        .await
        .unwrap();
    let (big_rank, big_reply) = tokio::time::timeout(BOUND, big_call)
        .await
        .unwrap()
        .unwrap();
    let big_reply = big_reply.expect("big call succeeds");
    assert_eq!(big_reply.as_ref(), big_len.to_le_bytes());
    for result in small {
        let (rank, matched) = result.unwrap();
        assert_eq!(
            matched,
            Ok(true),
            "small call answered with its own argument"
        );
        assert!(
            rank < big_rank,
            "small call finished at {rank}, after the big one at {big_rank}"
        );
    }
    pair.client.close().await;
    pair.server.close().await;
}

/// A handler that never answers and reports when it is dropped (aborted).
fn hanging(started: Arc<Notify>, dropped: mpsc::UnboundedSender<()>) -> peerlink::Handler {
    struct OnDrop(mpsc::UnboundedSender<()>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
    handler_fn(move |_req| {
        let started = Arc::clone(&started);
        let guard = OnDrop(dropped.clone());
        async move {
            let _guard = guard;
            started.notify_one();
            std::future::pending::<()>().await;
            Ok(Bytes::new())
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_call_timeout_fails_the_call_and_stops_the_handler() {
    let pair = ws_pair().await;
    let started = Arc::new(Notify::new());
    let (dropped_tx, mut dropped_rx) = mpsc::unbounded_channel();
    pair.server
        .expose("hang", hanging(Arc::clone(&started), dropped_tx));
    let options = CallOptions {
        timeout: Some(Duration::from_millis(200)),
    };
    let result = tokio::time::timeout(
        BOUND,
        pair.client_conn
            .call_raw("hang", Bytes::from_static(b"x"), options),
    )
    .await
    .expect("the call ends within the bound");
    assert_eq!(result, Err(RpcError::Timeout));
    assert_eq!(RpcError::Timeout.code(), "timeout");
    // The timeout cancels the remote handler too.
    tokio::time::timeout(BOUND, dropped_rx.recv())
        .await
        .expect("handler aborted")
        .unwrap();
    assert!(pair.client_conn.is_open());
    pair.client.close().await;
    pair.server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_error_arrives_as_remote_with_code_and_message() {
    let pair = ws_pair().await;
    pair.server.expose(
        "deny",
        typed_handler(|who: String| async move {
            Err::<(), _>(HandlerError::new("forbidden", format!("{who} may not")))
        }),
    );
    let err = pair
        .client_conn
        .call::<_, ()>("deny", "bob")
        .await
        .unwrap_err();
    assert_eq!(
        err,
        RpcError::Remote {
            code: "forbidden".into(),
            message: "bob may not".into()
        }
    );
    assert_eq!(err.code(), "remote");
    pair.client.close().await;
    pair.server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_method_is_no_handler_with_its_name() {
    let pair = ws_pair().await;
    let err = pair
        .client_conn
        .call::<_, ()>("nope", &1)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        RpcError::NoHandler {
            name: "nope".into()
        }
    );
    assert_eq!(err.code(), "no_handler");
    // Group-scoped names are plain strings.
    let name = group_rpc_name("listChanges", "g42");
    pair.server_conn.expose(
        &name,
        typed_handler(|x: u32| async move { Ok::<_, HandlerError>(x + 1) }),
    );
    assert_eq!(pair.client_conn.call::<_, u32>(&name, &41).await, Ok(42));
    let other = group_rpc_name("listChanges", "g43");
    assert_eq!(
        pair.client_conn.call::<_, u32>(&other, &1).await,
        Err(RpcError::NoHandler {
            name: other.clone()
        })
    );
    pair.client.close().await;
    pair.server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_call_future_aborts_the_remote_handler() {
    let pair = ws_pair().await;
    let started = Arc::new(Notify::new());
    let (dropped_tx, mut dropped_rx) = mpsc::unbounded_channel();
    pair.server
        .expose("hang", hanging(Arc::clone(&started), dropped_tx));
    let conn = pair.client_conn.clone();
    let call = tokio::spawn(async move {
        conn.call_raw(
            "hang",
            Bytes::new(),
            CallOptions {
                timeout: Some(BOUND * 4),
            },
        )
        .await
    });
    tokio::time::timeout(BOUND, started.notified())
        .await
        .expect("handler started");
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    tokio::time::timeout(BOUND, dropped_rx.recv())
        .await
        .expect("callee observed the cancellation")
        .unwrap();
    // The connection is still usable.
    pair.server
        .expose("echo", handler_fn(|req| async move { Ok(req.body) }));
    let reply = pair
        .client_conn
        .call_raw("echo", Bytes::from_static(b"hi"), CallOptions::default())
        .await;
    assert_eq!(reply.unwrap(), Bytes::from_static(b"hi"));
    pair.client.close().await;
    pair.server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_node_closing_fails_the_pending_call_promptly() {
    let pair = ws_pair().await;
    let started = Arc::new(Notify::new());
    let (dropped_tx, _dropped_rx) = mpsc::unbounded_channel();
    pair.server
        .expose("hang", hanging(Arc::clone(&started), dropped_tx));
    let conn = pair.client_conn.clone();
    let call = tokio::spawn(async move {
        conn.call_raw(
            "hang",
            Bytes::new(),
            CallOptions {
                timeout: Some(BOUND * 4),
            },
        )
        .await
    });
    tokio::time::timeout(BOUND, started.notified())
        .await
        .expect("handler started");
    pair.server.close().await;
    let result = tokio::time::timeout(BOUND, call)
        .await
        .expect("no hang")
        .unwrap();
    match result {
        Err(RpcError::Closed {
            reason: CloseReason::Remote { code, .. },
        }) => {
            assert_eq!(code, "node_closed");
        }
        other => panic!("expected Closed by the peer, got {other:?}"),
    }
    let reason = tokio::time::timeout(BOUND, pair.client_conn.closed())
        .await
        .unwrap();
    assert_eq!(reason.code(), "closed_by_peer");
    assert!(!pair.client_conn.is_open());
    assert!(pair.client.connections().is_empty());
    // Calls on a closed connection fail at once.
    let late = pair
        .client_conn
        .call_raw("hang", Bytes::new(), CallOptions::default())
        .await;
    assert!(matches!(late, Err(RpcError::Closed { .. })), "{late:?}");
    pair.client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_vanishing_without_a_goodbye_fails_the_pending_call() {
    // The client reaches the server through a TCP forwarder (advertised, so the binding is
    // accepted); killing the forwarder cuts the link with no close message at all.
    let server = node("alice", "laptop");
    let client = node("bob", "phone");
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("ws://127.0.0.1:{}", proxy.local_addr().unwrap().port());
    let listener = server
        .listen_with(
            "127.0.0.1:0",
            ListenOptions {
                advertised: vec![proxy_url.clone()],
            },
        )
        .await
        .unwrap();
    let target = listener.local_addr();
    let (kill_tx, kill_rx) = oneshot::channel::<()>();
    let forwarder = tokio::spawn(async move {
        let (mut inbound, _) = proxy.accept().await.unwrap();
        let mut outbound = tokio::net::TcpStream::connect(target).await.unwrap();
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
            _ = kill_rx => {}
        }
        // Dropping both sockets here is the crash.
    });
    let started = Arc::new(Notify::new());
    let (dropped_tx, _dropped_rx) = mpsc::unbounded_channel();
    server.expose("hang", hanging(Arc::clone(&started), dropped_tx));
    let conn = tokio::time::timeout(BOUND, client.dial(&proxy_url))
        .await
        .unwrap()
        .unwrap();
    let server_conn = tokio::time::timeout(BOUND, server.accept())
        .await
        .unwrap()
        .unwrap();
    let call_conn = conn.clone();
    let call = tokio::spawn(async move {
        call_conn
            .call_raw(
                "hang",
                Bytes::new(),
                CallOptions {
                    timeout: Some(BOUND * 4),
                },
            )
            .await
    });
    tokio::time::timeout(BOUND, started.notified())
        .await
        .expect("handler started");
    kill_tx.send(()).unwrap();
    tokio::time::timeout(BOUND, forwarder)
        .await
        .unwrap()
        .unwrap();
    let result = tokio::time::timeout(BOUND, call)
        .await
        .expect("no hang")
        .unwrap();
    match result {
        Err(RpcError::Closed { reason }) => {
            assert!(
                matches!(
                    reason,
                    CloseReason::TransportClosed | CloseReason::Transport(_)
                ),
                "{reason:?}"
            );
        }
        other => panic!("expected Closed, got {other:?}"),
    }
    // The server side notices too, and its handler is aborted.
    tokio::time::timeout(BOUND, server_conn.closed())
        .await
        .expect("server notices");
    client.close().await;
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_pings_and_callbacks_work_both_ways() {
    let server = node("alice", "laptop");
    let client = node("bob", "phone");
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<String>();
    server.expose(
        "log",
        handler_fn(move |req| {
            let seen = seen_tx.clone();
            async move {
                let line: String = req.args()?;
                let _ = seen.send(line);
                Ok(Bytes::new())
            }
        }),
    );
    // The server calls back into the client on the same connection.
    server.expose(
        "ask_back",
        handler_fn(|req| async move {
            let answer: String = req
                .connection
                .call("whoami", &())
                .await
                .map_err(|e| HandlerError::new("callback", e.to_string()))?;
            Ok(Bytes::from(answer.into_bytes()))
        }),
    );
    client.expose(
        "whoami",
        typed_handler(|(): ()| async move { Ok::<_, HandlerError>("bob".to_string()) }),
    );
    let pair = ws_pair_of(server, client).await;
    pair.client_conn.notify("log", "hello").await.unwrap();
    assert_eq!(
        tokio::time::timeout(BOUND, seen_rx.recv())
            .await
            .unwrap()
            .unwrap(),
        "hello"
    );
    let rtt = pair.client_conn.ping().await.unwrap();
    assert!(rtt < BOUND);
    let answer = pair
        .client_conn
        .call_raw("ask_back", Bytes::new(), CallOptions::default())
        .await
        .unwrap();
    assert_eq!(answer.as_ref(), b"bob");
    pair.client.close().await;
    pair.server.close().await;
}

/// A handler that answers and closes its own node at once (a `shutdown` call): the answer
/// already produced must reach the caller before the close notice. Half of the rounds let the
/// close run while the answer is still on its way to the connection (the handler yields after
/// starting the close), the other half close while the answer waits in the send queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_produced_as_the_node_closes_still_reaches_the_caller() {
    const ROUNDS: usize = 40;
    for round in 0..ROUNDS {
        let pair = ws_pair().await;
        let server = pair.server.clone();
        pair.server.expose(
            "shutdown",
            handler_fn(move |_req| {
                let server = server.clone();
                async move {
                    tokio::spawn(async move { server.close().await });
                    if round % 2 == 0 {
                        tokio::task::yield_now().await;
                    }
                    Ok(Bytes::from_static(b"bye"))
                }
            }),
        );
        let result = tokio::time::timeout(
            BOUND,
            pair.client_conn
                .call_raw("shutdown", Bytes::new(), CallOptions::default()),
        )
        .await
        .expect("the call settles within the bound");
        assert_eq!(
            result.as_deref().ok(),
            Some(&b"bye"[..]),
            "round {round}: {result:?}"
        );
        // The close notice follows the reply.
        let reason = tokio::time::timeout(BOUND, pair.client_conn.closed())
            .await
            .expect("the client sees the close");
        assert_eq!(reason.code(), "closed_by_peer", "round {round}");
        pair.client.close().await;
    }
}
