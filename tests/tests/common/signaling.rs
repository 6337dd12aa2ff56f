//! Shared helpers for the tests that go through the signaling server.

use peerlink::signaling::{HybridEvent, HybridEvents};
use peerlink_signal_server::{Rate, Server, ServerConfig};

use super::BOUND;

/// A signaling server on loopback with no relay byte-rate limit.
pub async fn server() -> Server {
    let config = ServerConfig {
        relay_byte_rate: Rate::unlimited(),
        ..ServerConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    Server::serve(listener, config).await.expect("serve")
}

/// Waits (bounded) for `wanted` on `events`; returns the events seen before it.
pub async fn wait_for_event(events: &mut HybridEvents, wanted: HybridEvent) -> Vec<HybridEvent> {
    let mut seen = Vec::new();
    tokio::time::timeout(BOUND, async {
        // Bounded by the timeout around it; each turn takes one event.
        while let Some(event) = events.next().await {
            if event == wanted {
                return;
            }
            seen.push(event);
        }
        panic!("events ended before {wanted:?}; saw {seen:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("no {wanted:?} within bound; saw {seen:?}"));
    seen
}
