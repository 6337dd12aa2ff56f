//! ICE restart under a verified connection: two nodes whose WebRTC link runs through a
//! NAT-like UDP forwarder on loopback. The forwarder stops forwarding (the path dies), the link
//! notices, restarts ICE by itself and finds the forwarder's new ports; RPC calls made before,
//! during and after the outage each complete exactly once on the same `Connection`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peerlink::webrtc::{
    ChannelOptions, IceRestartPolicy, IceTimeouts, LinkState, Signal, WebRtcConfig, WebRtcEvent,
    WebRtcEvents, WebRtcLink, WebRtcRole, WebRtcTransport,
};
use peerlink::{Connection, HandlerError, Identity, Node, NodeConfig, typed_handler};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::timeout;

const BOUND: Duration = Duration::from_secs(40);

/// One generation of the forwarder: two sockets standing for the two peers. The offerer's
/// candidates are rewritten to `for_offerer` (the answerer sends there) and the answerer's to
/// `for_answerer`; a datagram arriving on one socket leaves from the other, so each peer sees
/// exactly the address it was given for the other, like a port-restricted NAT on both sides.
struct Forwarder {
    for_offerer: Arc<UdpSocket>,
    for_answerer: Arc<UdpSocket>,
    offerer_real: Arc<Mutex<Option<SocketAddr>>>,
    answerer_real: Arc<Mutex<Option<SocketAddr>>>,
    open: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Forwarder {
    async fn new() -> Arc<Self> {
        let for_offerer = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
        let for_answerer = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
        let offerer_real = Arc::new(Mutex::new(None));
        let answerer_real = Arc::new(Mutex::new(None));
        let open = Arc::new(AtomicBool::new(true));
        let tasks = vec![
            // Answerer → offerer: arrives on `for_offerer`, leaves from `for_answerer`.
            tokio::spawn(forward(
                Arc::clone(&for_offerer),
                Arc::clone(&for_answerer),
                Arc::clone(&answerer_real),
                Arc::clone(&offerer_real),
                Arc::clone(&open),
            )),
            tokio::spawn(forward(
                Arc::clone(&for_answerer),
                Arc::clone(&for_offerer),
                Arc::clone(&offerer_real),
                Arc::clone(&answerer_real),
                Arc::clone(&open),
            )),
        ];
        Arc::new(Self {
            for_offerer,
            for_answerer,
            offerer_real,
            answerer_real,
            open,
            tasks,
        })
    }

    fn port_for(&self, role: WebRtcRole) -> u16 {
        let socket = match role {
            WebRtcRole::Offerer => &self.for_offerer,
            WebRtcRole::Answerer => &self.for_answerer,
        };
        socket.local_addr().expect("addr").port()
    }

    /// Rewrites a candidate of `from` so the other side reaches it through this forwarder.
    fn rewrite(&self, from: WebRtcRole, line: &str) -> String {
        let mut fields: Vec<String> = line.split(' ').map(str::to_owned).collect();
        assert!(fields.len() >= 8, "candidate {line}");
        let real: SocketAddr = format!("{}:{}", fields[4], fields[5])
            .parse()
            .expect("candidate address");
        let slot = match from {
            WebRtcRole::Offerer => &self.offerer_real,
            WebRtcRole::Answerer => &self.answerer_real,
        };
        *slot.lock().expect("lock") = Some(real);
        fields[4] = "127.0.0.1".to_owned();
        fields[5] = self.port_for(from).to_string();
        fields.join(" ")
    }

    fn stop(&self) {
        self.open.store(false, Ordering::Release);
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn forward(
    from: Arc<UdpSocket>,
    to: Arc<UdpSocket>,
    sender_real: Arc<Mutex<Option<SocketAddr>>>,
    dest_real: Arc<Mutex<Option<SocketAddr>>>,
    open: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, src)) = from.recv_from(&mut buf).await else {
            return;
        };
        // Learn the sender's real address from its traffic, as a NAT does.
        *sender_real.lock().expect("lock") = Some(src);
        if !open.load(Ordering::Acquire) {
            continue;
        }
        let dest = *dest_real.lock().expect("lock");
        if let (Some(dest), Some(data)) = (dest, buf.get(..n)) {
            let _ = to.send_to(data, dest).await;
        }
    }
}

/// The signaling path: delivers `events` of the link playing `role` to `to`, with every
/// candidate rewritten through the current forwarder and SDP-embedded candidates removed, so
/// the only paths the peers know go through a forwarder. Records the link's states.
fn signal_path(
    mut events: WebRtcEvents,
    role: WebRtcRole,
    to: &WebRtcLink,
    current: Arc<Mutex<Arc<Forwarder>>>,
    channels: mpsc::UnboundedSender<peerlink::webrtc::WebRtcChannel>,
    states: mpsc::UnboundedSender<LinkState>,
) {
    let to = to.downgrade();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            match event {
                WebRtcEvent::Signal(mut signal) => {
                    match &mut signal {
                        Signal::Candidate { candidate, .. } if !candidate.candidate.is_empty() => {
                            let fwd = Arc::clone(&current.lock().expect("lock"));
                            candidate.candidate = fwd.rewrite(role, &candidate.candidate);
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
                    if let Err(err) = to.handle_signal_json(&signal.to_json()).await {
                        assert_eq!(to.state(), LinkState::Closed, "signal refused: {err}");
                        return;
                    }
                }
                WebRtcEvent::Channel(ch) => {
                    let _ = channels.send(ch);
                }
                WebRtcEvent::State(state) => {
                    let _ = states.send(state);
                }
                _ => {}
            }
        }
    });
}

fn config(auto_restart: bool) -> WebRtcConfig {
    WebRtcConfig {
        ice_timeouts: IceTimeouts {
            disconnected: Some(Duration::from_millis(1000)),
            failed: Some(Duration::from_secs(6)),
            keepalive: Some(Duration::from_millis(200)),
        },
        ice_restart: IceRestartPolicy {
            after_disconnected: auto_restart.then_some(Duration::from_millis(300)),
            attempt_timeout: Duration::from_secs(5),
            max_attempts: 3,
        },
        ..WebRtcConfig::loopback()
    }
}

struct Setup {
    alice: Node,
    bob: Node,
    to_bob: Connection,
    offerer: WebRtcLink,
    answerer: WebRtcLink,
    current: Arc<Mutex<Arc<Forwarder>>>,
    offerer_states: mpsc::UnboundedReceiver<LinkState>,
    /// How often Bob's handler ran for each call id.
    handled: Arc<Mutex<HashMap<u32, u32>>>,
}

fn node(user: &str) -> Node {
    Node::new(NodeConfig::new(
        Identity::generate(&mut rand::rngs::OsRng),
        user,
        "dev",
    ))
    .expect("node")
}

async fn setup(auto_restart: bool) -> Setup {
    let alice = node("alice");
    let bob = node("bob");
    let handled: Arc<Mutex<HashMap<u32, u32>>> = Arc::default();
    bob.expose("tick", {
        let handled = Arc::clone(&handled);
        typed_handler(move |id: u32| {
            let handled = Arc::clone(&handled);
            async move {
                *handled.lock().expect("lock").entry(id).or_default() += 1;
                Ok::<_, HandlerError>(id)
            }
        })
    });
    let current = Arc::new(Mutex::new(Forwarder::new().await));
    let (offerer, offerer_events) = WebRtcLink::new(config(auto_restart), WebRtcRole::Offerer)
        .await
        .expect("offerer");
    let (answerer, answerer_events) = WebRtcLink::new(config(auto_restart), WebRtcRole::Answerer)
        .await
        .expect("answerer");
    let channel = offerer
        .create_channel("peerlink", ChannelOptions::default())
        .await
        .expect("channel");
    let (unused_tx, _unused_rx) = mpsc::unbounded_channel();
    let (remote_tx, mut remote_rx) = mpsc::unbounded_channel();
    let (offerer_states_tx, offerer_states) = mpsc::unbounded_channel();
    let (answerer_states_tx, _answerer_states) = mpsc::unbounded_channel();
    signal_path(
        offerer_events,
        WebRtcRole::Offerer,
        &answerer,
        Arc::clone(&current),
        unused_tx,
        offerer_states_tx,
    );
    signal_path(
        answerer_events,
        WebRtcRole::Answerer,
        &offerer,
        Arc::clone(&current),
        remote_tx,
        answerer_states_tx,
    );
    offerer.start().await.expect("start");
    timeout(BOUND, channel.opened())
        .await
        .expect("open bounded")
        .expect("open");
    let remote = timeout(BOUND, remote_rx.recv())
        .await
        .expect("remote bounded")
        .expect("remote channel");
    let a = WebRtcTransport::new(offerer.clone(), channel);
    let b = WebRtcTransport::new(answerer.clone(), remote);
    let (a_binding, b_binding) = (
        a.binding().await.expect("binding"),
        b.binding().await.expect("binding"),
    );
    let (a_role, b_role) = (a.handshake_role(), b.handshake_role());
    let (to_bob, to_alice) = tokio::join!(
        timeout(BOUND, alice.connect(Box::new(a), a_role, a_binding)),
        timeout(BOUND, bob.connect(Box::new(b), b_role, b_binding)),
    );
    let to_bob = to_bob.expect("handshake bounded").expect("handshake");
    to_alice.expect("handshake bounded").expect("handshake");
    Setup {
        alice,
        bob,
        to_bob,
        offerer,
        answerer,
        current,
        offerer_states,
        handled,
    }
}

async fn calls(conn: &Connection, ids: std::ops::Range<u32>) -> Vec<u32> {
    let futures = ids.map(|id| {
        let conn = conn.clone();
        async move {
            timeout(BOUND, conn.call::<_, u32>("tick", &id))
                .await
                .expect("call bounded")
                .expect("call")
        }
    });
    futures_util::future::join_all(futures).await
}

/// Waits (bounded) until the offerer's path runs through the forwarder port `port`.
async fn wait_for_path_port(link: &WebRtcLink, port: u16) -> peerlink::webrtc::PathReport {
    for _ in 0..400 {
        if let Some(path) = link.path().await {
            if path.remote.as_ref().map(|r| r.port) == Some(port) {
                return path;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "path never moved to port {port}: {:?}",
        link.path().await.map(|p| p.remote)
    );
}

fn assert_each_once(handled: &Mutex<HashMap<u32, u32>>, n: u32) {
    let handled = handled.lock().expect("lock");
    for id in 0..n {
        assert_eq!(handled.get(&id), Some(&1), "call {id} handled once");
    }
    assert_eq!(handled.len(), n as usize, "no other calls were handled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_ice_restart_after_the_path_dies_keeps_the_connection_and_its_calls() {
    let mut s = setup(true).await;
    let first = Arc::clone(&s.current.lock().expect("lock"));
    let path = wait_for_path_port(&s.offerer, first.port_for(WebRtcRole::Answerer)).await;
    let (local, remote) = (
        path.local.expect("local candidate"),
        path.remote.expect("remote candidate"),
    );
    assert_eq!(
        (local.protocol.as_str(), remote.protocol.as_str()),
        ("udp", "udp")
    );
    assert_eq!(local.candidate_type, "host");

    let before = calls(&s.to_bob, 0..20).await;
    assert_eq!(before, (0..20).collect::<Vec<_>>());

    // The path dies; the forwarder comes back on new ports, which only a restart can find.
    let second = Forwarder::new().await;
    *s.current.lock().expect("lock") = Arc::clone(&second);
    first.stop();
    let during = tokio::spawn({
        let conn = s.to_bob.clone();
        async move { calls(&conn, 20..40).await }
    });

    let mut seen = Vec::new();
    let reconnected = timeout(BOUND, async {
        while let Some(state) = s.offerer_states.recv().await {
            seen.push(state);
            if state == LinkState::Connected && seen.contains(&LinkState::Disconnected) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(reconnected, "states seen: {seen:?}");
    assert!(s.offerer.ice_restarts() >= 1, "the offerer restarted ICE");
    let path = wait_for_path_port(&s.offerer, second.port_for(WebRtcRole::Answerer)).await;
    assert!(path.ice_restarts >= 1);

    let during = timeout(BOUND, during)
        .await
        .expect("calls during the outage bounded")
        .expect("task");
    assert_eq!(during, (20..40).collect::<Vec<_>>());
    let after = calls(&s.to_bob, 40..60).await;
    assert_eq!(after, (40..60).collect::<Vec<_>>());
    assert_each_once(&s.handled, 60);

    s.to_bob.close("done").await;
    s.alice.close().await;
    s.bob.close().await;
    s.offerer.close().await;
    s.answerer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_restart_on_request_from_either_side_moves_the_path() {
    let s = setup(false).await;
    let first = Arc::clone(&s.current.lock().expect("lock"));
    wait_for_path_port(&s.offerer, first.port_for(WebRtcRole::Answerer)).await;
    assert_eq!(calls(&s.to_bob, 0..10).await, (0..10).collect::<Vec<_>>());

    // Offerer restarts while calls are in flight; the old path still works, yet the new
    // candidates are the only ones the restarted ICE session knows.
    let second = Forwarder::new().await;
    *s.current.lock().expect("lock") = Arc::clone(&second);
    let during = tokio::spawn({
        let conn = s.to_bob.clone();
        async move { calls(&conn, 10..30).await }
    });
    s.offerer.restart_ice().await.expect("restart");
    wait_for_path_port(&s.offerer, second.port_for(WebRtcRole::Answerer)).await;
    first.stop();

    // The answerer asks; the offerer restarts.
    let third = Forwarder::new().await;
    *s.current.lock().expect("lock") = Arc::clone(&third);
    s.answerer.restart_ice().await.expect("restart request");
    let path = wait_for_path_port(&s.offerer, third.port_for(WebRtcRole::Answerer)).await;
    second.stop();
    assert_eq!(s.answerer.ice_restarts(), 1);
    assert_eq!(s.offerer.ice_restarts(), 2);
    assert_eq!(path.ice_restarts, 2);

    let during = timeout(BOUND, during)
        .await
        .expect("bounded")
        .expect("task");
    assert_eq!(during, (10..30).collect::<Vec<_>>());
    assert_eq!(calls(&s.to_bob, 30..40).await, (30..40).collect::<Vec<_>>());
    assert_each_once(&s.handled, 40);

    s.alice.close().await;
    s.bob.close().await;
    s.offerer.close().await;
    s.answerer.close().await;
}
