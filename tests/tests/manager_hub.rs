//! Hub failover on loopback: 10 peers of one group, each linked by WebSocket to the elected
//! hub and the standby. Broadcasts go through the hub; when the hub dies, the standby takes
//! over, broadcasts resume and reach every remaining peer, and every peer links to the new
//! standby (a WebRTC link signalled through the new hub).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::manager::wait_for;
use common::{BOUND, identity};
use peerlink::core::manager::{HubRole, ManagerConfig};
use peerlink::manager::{ConnectionManager, ManagerEvent, UpgradeConfig};
use peerlink::webrtc::WebRtcConfig;
use peerlink::{HandlerError, ListenOptions, Node, NodeConfig, Request, handler_fn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

const GROUP: &str = "g";

type Inbox = Arc<Mutex<BTreeMap<String, Vec<u32>>>>;

fn peer(device: &str, inbox: &Inbox) -> ConnectionManager {
    let mut config = ManagerConfig::default();
    config.hub_threshold = 4;
    let m = peer_with(device, inbox, config);
    m.enable_webrtc_upgrade(UpgradeConfig::new(WebRtcConfig::loopback()));
    m
}

fn peer_with(device: &str, inbox: &Inbox, config: ManagerConfig) -> ConnectionManager {
    let id = identity();
    let user = format!("user-{device}");
    let node = Node::new(NodeConfig::new(id.clone(), &user, device)).expect("node");
    let m = ConnectionManager::new(node, id, user, device, config).expect("manager");
    m.add_group(GROUP);
    let (inbox, me) = (Arc::clone(inbox), device.to_owned());
    m.expose_group(
        GROUP,
        "news",
        handler_fn(move |req: Request| {
            let (inbox, me) = (Arc::clone(&inbox), me.clone());
            async move {
                let n: u32 = req.args()?;
                inbox
                    .lock()
                    .map_err(|_| HandlerError::new("lock", "poisoned"))?
                    .entry(me)
                    .or_default()
                    .push(n);
                Ok(bytes::Bytes::from_static(&[0xc0]))
            }
        }),
    );
    m
}

async fn ws_link(a: &ConnectionManager, b: &ConnectionManager) {
    let listener = b.node().listen("127.0.0.1:0").await.expect("listen");
    tokio::time::timeout(BOUND, a.dial(&listener.url()))
        .await
        .expect("dial in bound")
        .expect("dial");
}

/// Links every member to `hub` and `standby` by WebSocket (`via`: one member dials the hub at
/// another URL) and waits until both sides of every link are up.
async fn star(
    peers: &BTreeMap<String, ConnectionManager>,
    hub: &str,
    standby: &str,
    via: Option<(&str, &str)>,
) {
    for (d, m) in peers {
        match via {
            Some((member, url)) if member == d => {
                tokio::time::timeout(BOUND, m.dial(url))
                    .await
                    .expect("dial in bound")
                    .expect("dial through the proxy");
            }
            _ if d != hub => ws_link(m, &peers[hub]).await,
            _ => {}
        }
        if d != hub && d != standby {
            ws_link(m, &peers[standby]).await;
        }
    }
    let (all, h, s) = (peers.clone(), hub.to_owned(), standby.to_owned());
    wait_for("every link up on both sides", move || {
        all.iter().all(|(d, m)| {
            let want = if *d == h || *d == s { 9 } else { 2 };
            m.connected_devices().len() == want
        })
    })
    .await;
}

/// A TCP proxy on loopback that can freeze: once frozen it forwards nothing and closes
/// nothing, so the far side's close never reaches the near side (a half-open link, as when a
/// device vanishes without a goodbye).
struct FreezingProxy {
    url: String,
    frozen: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl FreezingProxy {
    /// A proxy at `listener` (bound first, so the target can advertise its URL) to `target`.
    fn start(listener: TcpListener, target: std::net::SocketAddr) -> Self {
        let url = format!("ws://{}", listener.local_addr().expect("addr"));
        let frozen = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let frozen = Arc::clone(&frozen);
            async move {
                let Ok((near, _)) = listener.accept().await else {
                    return;
                };
                let Ok(far) = TcpStream::connect(target).await else {
                    return;
                };
                let (near_r, near_w) = near.into_split();
                let (far_r, far_w) = far.into_split();
                tokio::join!(
                    pump(near_r, far_w, Arc::clone(&frozen)),
                    pump(far_r, near_w, frozen),
                );
            }
        });
        Self { url, frozen, task }
    }

    fn freeze(&self) {
        self.frozen.store(true, Ordering::Release);
    }
}

impl Drop for FreezingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies until the end; when frozen it drops what it reads and, at the end, keeps the
/// write half open until the proxy is dropped.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, frozen: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await.unwrap_or(0);
        if frozen.load(Ordering::Acquire) {
            if n == 0 {
                // Hold `to` open (the proxy task is aborted at the end of the test).
                std::future::pending::<()>().await;
            }
            continue;
        }
        let Some(data) = buf.get(..n).filter(|d| !d.is_empty()) else {
            return;
        };
        if to.write_all(data).await.is_err() {
            return;
        }
    }
}

/// Who received broadcast `n`, and how many times each.
fn receivers(inbox: &Inbox, n: u32) -> BTreeMap<String, usize> {
    inbox
        .lock()
        .expect("lock")
        .iter()
        .map(|(d, got)| (d.clone(), got.iter().filter(|x| **x == n).count()))
        .filter(|(_, count)| *count > 0)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_resume_through_a_new_hub_after_the_hub_dies() {
    let inbox: Inbox = Arc::default();
    let ids: Vec<String> = (0..10).map(|i| format!("p{i}")).collect();
    let peers: BTreeMap<String, ConnectionManager> =
        ids.iter().map(|d| (d.clone(), peer(d, &inbox))).collect();
    for m in peers.values() {
        m.set_group_members(GROUP, ids.iter().cloned());
    }
    let first = peers.values().next().expect("peers");
    let (Some(hub), Some(standby)) = first.hubs(GROUP) else {
        panic!("a 10-member group above the threshold elects a hub and a standby");
    };
    for m in peers.values() {
        assert_eq!(m.hubs(GROUP), (Some(hub.clone()), Some(standby.clone())));
    }
    // Star around the hub and the standby, as each member keeps links to both.
    star(&peers, &hub, &standby, None).await;
    let spoke = ids
        .iter()
        .find(|d| **d != hub && **d != standby)
        .expect("a spoke")
        .clone();
    assert_eq!(
        peers[&spoke].hub_role(GROUP),
        HubRole::Spoke { hub: hub.clone() }
    );

    // One broadcast through the hub reaches everyone else.
    let reached = tokio::time::timeout(BOUND, peers[&spoke].broadcast_group(GROUP, "news", &1u32))
        .await
        .expect("in bound")
        .expect("broadcast through the hub");
    let others: Vec<String> = ids.iter().filter(|d| **d != spoke).cloned().collect();
    assert_eq!(reached, others);
    let got = receivers(&inbox, 1);
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), others);
    assert!(got.values().all(|c| *c == 1), "each peer ran it once");

    // The hub dies.
    let mut events: BTreeMap<String, _> = peers
        .iter()
        .filter(|(d, _)| **d != hub)
        .map(|(d, m)| (d.clone(), m.events()))
        .collect();
    let dead = peers[&hub].clone();
    dead.shutdown();
    tokio::time::timeout(BOUND, dead.node().close())
        .await
        .expect("the hub closes in bound");
    let remaining: BTreeMap<String, ConnectionManager> =
        peers.into_iter().filter(|(d, _)| *d != hub).collect();
    // Every remaining peer elects the standby and says so.
    for (d, rx) in &mut events {
        let new_hub = tokio::time::timeout(BOUND, async {
            loop {
                match rx.recv().await {
                    Ok(ManagerEvent::HubChanged { group_id, hub }) if group_id == GROUP => {
                        break hub;
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => panic!("{d}: events ended: {e}"),
                }
            }
        })
        .await
        .expect("a new hub within the bound");
        assert_eq!(new_hub.as_deref(), Some(standby.as_str()), "{d}");
    }
    for m in remaining.values() {
        assert_eq!(m.hubs(GROUP).0.as_deref(), Some(standby.as_str()));
    }

    // Broadcasts resume through the new hub and reach every remaining peer exactly once.
    let reached = tokio::time::timeout(
        BOUND,
        remaining[&spoke].broadcast_group(GROUP, "news", &2u32),
    )
    .await
    .expect("in bound")
    .expect("broadcast through the new hub");
    let others: Vec<String> = remaining.keys().filter(|d| **d != spoke).cloned().collect();
    assert_eq!(reached, others);
    let got = receivers(&inbox, 2);
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), others);
    assert!(got.values().all(|c| *c == 1));
    // The new hub broadcasts directly.
    let reached = tokio::time::timeout(
        BOUND,
        remaining[&standby].broadcast_group(GROUP, "news", &3u32),
    )
    .await
    .expect("in bound")
    .expect("broadcast from the hub");
    let others: Vec<String> = remaining
        .keys()
        .filter(|d| **d != standby)
        .cloned()
        .collect();
    assert_eq!(reached, others);

    // Nobody stays isolated: every peer links to the new standby as well (WebRTC, signalled
    // over device messages through the new hub).
    let (_, new_standby) = remaining[&spoke].hubs(GROUP);
    let new_standby = new_standby.expect("a new standby");
    assert_ne!(new_standby, standby);
    let all = remaining.clone();
    let ns = new_standby.clone();
    wait_for("every peer linked to the new standby", move || {
        all.iter()
            .filter(|(d, _)| **d != ns)
            .all(|(_, m)| m.connection(&ns).is_some())
    })
    .await;
    // The new hub was linked to everyone by WebSocket already; the others got new links.
    for (d, m) in &remaining {
        if *d != new_standby && *d != standby {
            assert_eq!(
                m.connection(&new_standby).map(|c| c.transport_kind()),
                Some(peerlink::TransportKind::WebRtc),
                "{d}"
            );
        }
    }
}

/// The hub dies while one member's own link to it stays half-open (nothing tells that member
/// the link is gone, and its pings would take three intervals to drop it). That member learns
/// of the death through the group: the others report it, it checks with one ping, drops the
/// dead link, elects the same new hub as everyone else, and its broadcasts reach every
/// remaining peer through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_link_to_the_hub_stays_open_learns_of_its_death_from_the_group() {
    let inbox: Inbox = Arc::default();
    let mut config = ManagerConfig::default();
    config.hub_threshold = 4;
    // Pings alone would notice only after a long while; the report does it.
    config.ping_interval = Duration::from_secs(600);
    config.ping_timeout = Duration::from_secs(1);
    let ids: Vec<String> = (0..10).map(|i| format!("p{i}")).collect();
    let peers: BTreeMap<String, ConnectionManager> = ids
        .iter()
        .map(|d| (d.clone(), peer_with(d, &inbox, config.clone())))
        .collect();
    for m in peers.values() {
        m.set_group_members(GROUP, ids.iter().cloned());
    }
    let (Some(hub), Some(standby)) = peers[&ids[0]].hubs(GROUP) else {
        panic!("a hub and a standby");
    };
    let late = ids
        .iter()
        .find(|d| **d != hub && **d != standby)
        .expect("a spoke")
        .clone();
    // Star around the hub and the standby; `late` reaches the hub through the proxy.
    let front = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let options = ListenOptions {
        advertised: vec![format!("ws://{}", front.local_addr().expect("addr"))],
    };
    let listener = peers[&hub]
        .node()
        .listen_with("127.0.0.1:0", options)
        .await
        .expect("listen");
    let proxy = FreezingProxy::start(front, listener.local_addr());
    star(&peers, &hub, &standby, Some((&late, &proxy.url))).await;
    let reached = tokio::time::timeout(BOUND, peers[&late].broadcast_group(GROUP, "news", &1u32))
        .await
        .expect("in bound")
        .expect("broadcast through the hub");
    assert_eq!(reached.len(), 9);

    // The hub dies; `late`'s link to it stays open on its side.
    proxy.freeze();
    let dead = peers[&hub].clone();
    dead.shutdown();
    tokio::time::timeout(BOUND, dead.node().close())
        .await
        .expect("the hub closes in bound");
    let remaining: BTreeMap<String, ConnectionManager> =
        peers.into_iter().filter(|(d, _)| *d != hub).collect();
    let (m, s) = (remaining[&late].clone(), standby.clone());
    wait_for("the half-open member elects the new hub", move || {
        m.hubs(GROUP).0.as_deref() == Some(s.as_str())
    })
    .await;
    assert!(
        remaining[&late].connection(&hub).is_none(),
        "the dead hub's half-open link was dropped after the unanswered check"
    );
    for (d, m) in &remaining {
        assert_eq!(m.hubs(GROUP).0.as_deref(), Some(standby.as_str()), "{d}");
    }
    let reached = tokio::time::timeout(
        BOUND,
        remaining[&late].broadcast_group(GROUP, "news", &2u32),
    )
    .await
    .expect("in bound")
    .expect("broadcast through the new hub");
    let others: Vec<String> = remaining.keys().filter(|d| **d != late).cloned().collect();
    assert_eq!(reached, others);
    let got = receivers(&inbox, 2);
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), others);
    assert!(got.values().all(|c| *c == 1), "each peer ran it once");
    drop(proxy);
}
