//! Reconnect of a WebRTC link by the manager: ICE restart first. Two managed nodes share a
//! WebRTC link whose only path runs through a UDP relay on loopback standing in for a NAT.
//! The relay stops (the path dies) and a new one opens on other ports, which only an ICE
//! restart can find. The links' own automatic restart is off, so the restart that brings the
//! path back is the manager's; the connection is the same before and after, and calls made
//! before, during and after the outage each complete exactly once. Then the path dies for
//! good: the restarts find nothing, the connection closes, and the device is dialled again.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::BOUND;
use common::manager::managed;
use peerlink::core::manager::{ManagerConfig, PathKind};
use peerlink::manager::{Candidate, ConnectionManager, ManagerError, ManagerEvent, UpgradeConfig};
use peerlink::webrtc::{
    ChannelOptions, IceRestartPolicy, IceTimeouts, Signal, WebRtcChannel, WebRtcConfig,
    WebRtcEvent, WebRtcEvents, WebRtcLink, WebRtcRole, WebRtcTransport,
};
use peerlink::{Connection, HandlerError, TransportKind, typed_handler};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// A UDP relay between the two links: side 0 (offerer) is reached at `port(0)`, side 1
/// (answerer) at `port(1)`; what arrives for one side leaves from the other side's socket to
/// the real address learnt from that side's traffic.
struct UdpNat {
    ports: [u16; 2],
    open: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl UdpNat {
    async fn new() -> Arc<Self> {
        let sockets = [
            Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind")),
            Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind")),
        ];
        let real: Arc<Mutex<[Option<SocketAddr>; 2]>> = Arc::default();
        let open = Arc::new(AtomicBool::new(true));
        let ports = sockets
            .clone()
            .map(|s| s.local_addr().expect("addr").port());
        let tasks = (0..2)
            .map(|to| {
                let (inbound, outbound) = (Arc::clone(&sockets[to]), Arc::clone(&sockets[1 - to]));
                let (real, open) = (Arc::clone(&real), Arc::clone(&open));
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok((n, src)) = inbound.recv_from(&mut buf).await {
                        let dest = {
                            let mut real = real.lock().expect("lock");
                            real[1 - to] = Some(src);
                            real[to]
                        };
                        if let (true, Some(dest), Some(data)) =
                            (open.load(Ordering::Acquire), dest, buf.get(..n))
                        {
                            let _ = outbound.send_to(data, dest).await;
                        }
                    }
                })
            })
            .collect();
        Arc::new(Self { ports, open, tasks })
    }

    /// Rewrites a candidate line of `side` to this relay, remembering nothing: the real
    /// address is learnt from traffic.
    fn rewrite(&self, side: usize, line: &str) -> String {
        let mut fields: Vec<String> = line.split(' ').map(str::to_owned).collect();
        if fields.len() >= 8 {
            fields[4] = "127.0.0.1".to_owned();
            fields[5] = self.ports[side].to_string();
        }
        fields.join(" ")
    }

    fn stop(&self) {
        self.open.store(false, Ordering::Release);
    }
}

impl Drop for UdpNat {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Delivers `events` of `side`'s link to `to`, candidates rewritten through the current
/// relay and none left in the descriptions; hands remote channels to `channels`.
fn signal_path(
    mut events: WebRtcEvents,
    side: usize,
    to: &WebRtcLink,
    nat: Arc<Mutex<Arc<UdpNat>>>,
    channels: mpsc::UnboundedSender<WebRtcChannel>,
) {
    let to = to.downgrade();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            match event {
                WebRtcEvent::Signal(mut signal) => {
                    match &mut signal {
                        Signal::Candidate { candidate, .. } if !candidate.candidate.is_empty() => {
                            let current = Arc::clone(&nat.lock().expect("lock"));
                            candidate.candidate = current.rewrite(side, &candidate.candidate);
                        }
                        Signal::Offer { sdp, .. } | Signal::Answer { sdp, .. } => {
                            *sdp = sdp
                                .split("\r\n")
                                .filter(|l| !l.starts_with("a=candidate:"))
                                .collect::<Vec<_>>()
                                .join("\r\n");
                        }
                        _ => {}
                    }
                    let Some(to) = to.upgrade() else { return };
                    let _ = to.handle_signal(signal).await;
                }
                WebRtcEvent::Channel(ch) => {
                    let _ = channels.send(ch);
                }
                _ => {}
            }
        }
    });
}

fn webrtc_config() -> WebRtcConfig {
    WebRtcConfig {
        ice_timeouts: IceTimeouts {
            disconnected: Some(Duration::from_millis(1000)),
            failed: Some(Duration::from_secs(6)),
            keepalive: Some(Duration::from_millis(200)),
        },
        // The links never restart by themselves: only the manager does.
        ice_restart: IceRestartPolicy {
            after_disconnected: None,
            attempt_timeout: Duration::from_secs(5),
            max_attempts: 3,
        },
        ..WebRtcConfig::loopback()
    }
}

/// A verified connection between `a` and `b` over a WebRTC link through `nat`, handed to
/// both managers to watch. Returns A's connection and both links.
async fn webrtc_link(
    a: &ConnectionManager,
    b: &ConnectionManager,
    nat: &Arc<Mutex<Arc<UdpNat>>>,
) -> (Connection, WebRtcLink, WebRtcLink) {
    let (offerer, offerer_events) = WebRtcLink::new(webrtc_config(), WebRtcRole::Offerer)
        .await
        .expect("offerer");
    let (answerer, answerer_events) = WebRtcLink::new(webrtc_config(), WebRtcRole::Answerer)
        .await
        .expect("answerer");
    let channel = offerer
        .create_channel("peerlink", ChannelOptions::default())
        .await
        .expect("channel");
    let (unused, _unused_rx) = mpsc::unbounded_channel();
    let (remote_tx, mut remote_rx) = mpsc::unbounded_channel();
    signal_path(offerer_events, 0, &answerer, Arc::clone(nat), unused);
    signal_path(answerer_events, 1, &offerer, Arc::clone(nat), remote_tx);
    offerer.start().await.expect("start");
    timeout(BOUND, channel.opened())
        .await
        .expect("open in bound")
        .expect("open");
    let remote = timeout(BOUND, remote_rx.recv())
        .await
        .expect("remote in bound")
        .expect("remote channel");
    let (x, y) = (
        WebRtcTransport::new(offerer.clone(), channel),
        WebRtcTransport::new(answerer.clone(), remote),
    );
    let (xb, yb) = (
        x.binding().await.expect("binding"),
        y.binding().await.expect("binding"),
    );
    let (xr, yr) = (x.handshake_role(), y.handshake_role());
    let (to_b, to_a) = tokio::join!(
        timeout(BOUND, a.node().connect(Box::new(x), xr, xb)),
        timeout(BOUND, b.node().connect(Box::new(y), yr, yb)),
    );
    let to_b = to_b.expect("bound").expect("handshake");
    let to_a = to_a.expect("bound").expect("handshake");
    a.watch_webrtc_link(&to_b, &offerer);
    b.watch_webrtc_link(&to_a, &answerer);
    (to_b, offerer, answerer)
}

async fn calls(m: &ConnectionManager, to: &str, ids: std::ops::Range<u32>) -> Vec<u32> {
    let futures = ids.map(|id| {
        let (m, to) = (m.clone(), to.to_owned());
        async move {
            timeout(BOUND, m.call::<_, u32>(&to, "tick", &id))
                .await
                .expect("call in bound")
                .expect("call")
        }
    });
    futures_util::future::join_all(futures).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_webrtc_path_comes_back_by_an_ice_restart_on_the_same_connection() {
    let a = managed("ua", "a", ManagerConfig::default());
    let b = managed("ub", "b", ManagerConfig::default());
    // Upgrades stay manual; the ICE restart timeout is short so the dead-path case ends soon.
    for m in [&a, &b] {
        let mut upgrade = UpgradeConfig::new(WebRtcConfig::loopback());
        upgrade.automatic = false;
        upgrade.ice_restart_timeout = Duration::from_secs(3);
        m.enable_webrtc_upgrade(upgrade);
    }
    let handled: Arc<Mutex<HashMap<u32, u32>>> = Arc::default();
    b.node().expose("tick", {
        let handled = Arc::clone(&handled);
        typed_handler(move |id: u32| {
            let handled = Arc::clone(&handled);
            async move {
                *handled.lock().expect("lock").entry(id).or_default() += 1;
                Ok::<_, HandlerError>(id)
            }
        })
    });
    let nat = Arc::new(Mutex::new(UdpNat::new().await));
    let mut events = a.events();
    let (conn, offerer, answerer) = webrtc_link(&a, &b, &nat).await;
    let a2 = a.clone();
    common::manager::wait_for("A manages the WebRTC link", move || {
        a2.connection("b").is_some()
    })
    .await;
    assert_eq!(a.connection("b").as_ref(), Some(&conn));
    assert_eq!(conn.transport_kind(), TransportKind::WebRtc);
    assert_eq!(calls(&a, "b", 0..20).await, (0..20).collect::<Vec<_>>());

    // The path dies; a relay on new ports appears, which only an ICE restart finds.
    let first = Arc::clone(&nat.lock().expect("lock"));
    *nat.lock().expect("lock") = UdpNat::new().await;
    first.stop();
    let during = tokio::spawn({
        let a = a.clone();
        async move { calls(&a, "b", 20..40).await }
    });
    // Either side may see the outage first; its manager restarts ICE (the answerer's asks
    // the offerer). Both report on the connection they keep.
    let b_conn = b.connection("a").expect("B's link to A");
    let mut b_events = b.events();
    let mut seen: Vec<ManagerEvent> = Vec::new();
    let done = |seen: &[ManagerEvent]| {
        seen.iter()
            .any(|e| matches!(e, ManagerEvent::IceRestarted { .. }))
    };
    for _ in 0..600 {
        while let Ok(e) = events.try_recv() {
            seen.push(e);
        }
        while let Ok(e) = b_events.try_recv() {
            seen.push(e);
        }
        if done(&seen) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        done(&seen),
        "no ICE restart reconnected within the bound: {seen:?}, states {:?}/{:?}",
        offerer.state(),
        answerer.state()
    );
    for e in &seen {
        match e {
            ManagerEvent::IceRestarting {
                device_id,
                connection_id,
            }
            | ManagerEvent::IceRestarted {
                device_id,
                connection_id,
            } => {
                let kept = if device_id == "b" {
                    conn.id()
                } else {
                    b_conn.id()
                };
                assert_eq!(*connection_id, kept, "{e:?}");
            }
            ManagerEvent::Removed { .. } => panic!("a connection was removed: {seen:?}"),
            _ => {}
        }
    }
    let first_restarting = seen
        .iter()
        .position(|e| matches!(e, ManagerEvent::IceRestarting { .. }));
    let first_restarted = seen
        .iter()
        .position(|e| matches!(e, ManagerEvent::IceRestarted { .. }));
    assert!(
        first_restarting < first_restarted,
        "restarting comes first: {seen:?}"
    );
    assert!(first_restarting.is_some());
    assert!(
        offerer.ice_restarts() + answerer.ice_restarts() >= 1,
        "an ICE restart ran (the links' own policy is off)"
    );

    // Same connection; calls before, during and after each ran exactly once.
    let during = timeout(BOUND, during).await.expect("bound").expect("task");
    assert_eq!(during, (20..40).collect::<Vec<_>>());
    assert_eq!(calls(&a, "b", 40..60).await, (40..60).collect::<Vec<_>>());
    assert_eq!(
        a.connection("b").as_ref(),
        Some(&conn),
        "the connection was kept"
    );
    assert!(conn.is_open());
    {
        let handled = handled.lock().expect("lock");
        assert_eq!(handled.len(), 60);
        assert!(handled.values().all(|n| *n == 1), "each call ran once");
    }

    // Now the path dies for good. B is one of A's dial candidates (the host's dialler
    // cannot reach it): the restarts find nothing within the timeout, the connection goes,
    // and A dials B again.
    let redials = Arc::new(AtomicU32::new(0));
    a.set_dialer(Arc::new({
        let redials = Arc::clone(&redials);
        move |c: Candidate, _, _| {
            redials.fetch_add(1, Ordering::AcqRel);
            Box::pin(async move {
                Err(ManagerError::NotConnected {
                    device_id: c.device_id,
                })
            })
        }
    }));
    a.set_candidates([Candidate::new(
        "b",
        "ub",
        ["g".to_owned()],
        [(PathKind::WebRtc, String::new())],
    )]);
    assert_eq!(redials.load(Ordering::Acquire), 0, "linked: not dialled");
    let mut events = a.events();
    nat.lock().expect("lock").stop();
    let mut order = Vec::new();
    timeout(BOUND, async {
        loop {
            match events.recv().await {
                Ok(ManagerEvent::IceRestarting { .. }) => order.push("restarting"),
                Ok(ManagerEvent::Removed { device_id, .. }) if device_id == "b" => {
                    order.push("removed");
                    return;
                }
                Ok(ManagerEvent::IceRestarted { .. }) => panic!("no path should be found"),
                Ok(_) => {}
                Err(e) => panic!("events ended: {e}"),
            }
        }
    })
    .await
    .expect("the connection closes after the ICE restart timeout");
    assert_eq!(
        order,
        ["restarting", "removed"],
        "ICE restart first, then removal"
    );
    assert!(!conn.is_open());
    let r = Arc::clone(&redials);
    common::manager::wait_for("A dials B again", move || r.load(Ordering::Acquire) >= 1).await;
    a.node().close().await;
    b.node().close().await;
}
