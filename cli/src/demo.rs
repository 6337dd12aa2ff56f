//! `peerlink demo`: two peers in one process, connected and verified, an RPC and a bulk transfer.

use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use peerlink::webrtc::{
    ChannelOptions, WebRtcChannel, WebRtcConfig, WebRtcEvent, WebRtcEvents, WebRtcLink, WebRtcRole,
    WebRtcTransport,
};
use peerlink::{
    Connection, DeviceInfo, HandlerError, Identity, LinkBinding, Node, NodeConfig, Role,
    TrustLevel, transport::memory, trust_fn, typed_handler,
};
use rand::RngCore as _;
use serde_json::json;
use sha2::Digest as _;
use tokio::sync::mpsc;

/// How the two demo peers are linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DemoTransport {
    /// Encrypted WebSocket on 127.0.0.1.
    Websocket,
    /// In-process channel (no sockets): shows the cost of the protocol alone.
    Memory,
    /// WebRTC data channel on 127.0.0.1, signals passed in process.
    Webrtc,
    /// WebRTC found by device id through a signaling server (`peerlink serve`) on 127.0.0.1.
    Signaled,
}

impl DemoTransport {
    fn name(self) -> &'static str {
        match self {
            Self::Websocket => "websocket",
            Self::Memory => "memory",
            Self::Webrtc => "webrtc",
            Self::Signaled => "signaled",
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Link to use.
    #[arg(long, value_enum, default_value = "websocket")]
    transport: DemoTransport,
    /// Bytes to transfer (default 64 MiB).
    #[arg(long, default_value_t = 64 << 20)]
    bytes: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Two nodes that know only a server URL and each other's device id: both authenticate to
/// the server, alice dials bob by device id, the WebRTC signals go through the server.
async fn signaled_pair(
    url: &str,
    alice: (&Node, Identity),
    bob: (&Node, Identity),
) -> Result<(Connection, Connection), Box<dyn std::error::Error>> {
    use peerlink::signaling::{DialerConfig, SignalingClient, SignalingConfig, WebRtcDialer};
    let config = DialerConfig::new(WebRtcConfig::loopback());
    let (a_client, a_events) =
        SignalingClient::connect(SignalingConfig::new(url, alice.1, "alice", "laptop")).await?;
    let (b_client, b_events) =
        SignalingClient::connect(SignalingConfig::new(url, bob.1, "bob", "phone")).await?;
    let (a_dialer, _a_rest, _a_incoming) = WebRtcDialer::new(a_client, a_events, config.clone());
    let (_b_dialer, _b_rest, mut b_incoming) = WebRtcDialer::new(b_client, b_events, config);
    let accept = async {
        let incoming = b_incoming
            .next()
            .await
            .ok_or("bob's signaling client closed")?;
        Ok::<_, Box<dyn std::error::Error>>(incoming.accept(bob.0).await?)
    };
    let (to_bob, to_alice) = tokio::join!(a_dialer.connect(alice.0, "phone"), accept);
    Ok((to_bob?, to_alice?))
}

/// Size of each piece written to the byte stream.
const PIECE: usize = 1 << 20;

pub(crate) fn run(args: DemoArgs) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(demo(args))
}

fn node(
    identity: &Identity,
    user: &str,
    device: &str,
    name: &str,
) -> Result<Node, peerlink::Error> {
    let mut config = NodeConfig::new(identity.clone(), user, device);
    config.device_name = Some(name.to_owned());
    // A demo policy: everyone it meets is a new user; a real app looks the device up.
    config.trust = trust_fn(|_remote: DeviceInfo| async move { TrustLevel::NEW_USER });
    Node::new(config)
}

fn describe(info: &DeviceInfo) -> String {
    format!(
        "{} / {} ({})  publicKey {}",
        info.user_id,
        info.device_id,
        info.device_name.as_deref().unwrap_or("-"),
        info.public_key
    )
}

fn level(level: TrustLevel) -> String {
    match level.name() {
        Some(name) => format!("{name} ({})", level.0),
        None => level.0.to_string(),
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

async fn demo(args: DemoArgs) -> Result<(), Box<dyn std::error::Error>> {
    let text = !args.json;
    let alice_identity = Identity::generate(&mut rand::rngs::OsRng);
    let bob_identity = Identity::generate(&mut rand::rngs::OsRng);
    let alice = node(&alice_identity, "alice", "laptop", "Alice's laptop")?;
    let bob = node(&bob_identity, "bob", "phone", "Bob's phone")?;
    // Kept until the end so the signaled demo's server outlives the transfer.
    let mut _server = None;
    bob.expose(
        "greet",
        typed_handler(|name: String| async move {
            Ok::<_, HandlerError>(format!("hello {name}, this is bob"))
        }),
    );
    if text {
        println!(
            "peerlink demo: two peers with fresh identities over {}\n",
            args.transport.name()
        );
    }

    let started = Instant::now();
    let mut link = None;
    let mut link_time = None;
    let (to_bob, to_alice) = match args.transport {
        DemoTransport::Websocket => {
            let listener = bob.listen("127.0.0.1:0").await?;
            if text {
                println!("  bob listens     {}", listener.url());
            }
            let accept = tokio::spawn({
                let bob = bob.clone();
                async move { bob.accept().await }
            });
            let to_bob = alice.dial(&listener.url()).await?;
            let to_alice = accept.await?.ok_or("bob's node closed before accepting")?;
            (to_bob, to_alice)
        }
        DemoTransport::Memory => {
            let (a, b) = memory::pair(1 << 20, 64);
            let binding = LinkBinding::Memory("demo".into());
            let (to_bob, to_alice) = tokio::try_join!(
                alice.connect(Box::new(a), Role::Initiator, binding.clone()),
                bob.connect(Box::new(b), Role::Responder, binding),
            )?;
            (to_bob, to_alice)
        }
        DemoTransport::Webrtc => {
            let pair = webrtc_pair(&alice, &bob).await?;
            link = Some(pair.link);
            link_time = Some(pair.link_time);
            (pair.to_bob, pair.to_alice)
        }
        DemoTransport::Signaled => {
            let server = peerlink_signal_server::Server::bind(
                "127.0.0.1:0",
                peerlink_signal_server::ServerConfig::default(),
            )
            .await?;
            if text {
                println!("  server          {}", server.ws_url());
            }
            let dial_started = Instant::now();
            let pair = signaled_pair(
                &server.ws_url(),
                (&alice, alice_identity),
                (&bob, bob_identity),
            )
            .await?;
            _server = Some(server);
            // Signaling, ICE, DTLS and SCTP: everything before the handshake.
            link_time = Some(
                dial_started
                    .elapsed()
                    .saturating_sub(pair.0.timings().handshake),
            );
            pair
        }
    };
    let connect_total = started.elapsed();
    let timings = to_bob.timings();
    let link_ms = ms(link_time.unwrap_or(timings.connect));

    // Verified: each side holds the other's device info, checked against the key the other
    // node really owns.
    let verified = to_bob.remote().public_key == bob.public_key()
        && to_alice.remote().public_key == alice.public_key();
    if text {
        println!(
            "  connected       in {:.2} ms (link {:.2} ms, handshake {:.2} ms)\n",
            ms(connect_total),
            link_ms,
            ms(timings.handshake)
        );
        println!("  alice verified  {}", describe(to_bob.remote()));
        println!("                  trust {}", level(to_bob.trust_level()));
        println!("  bob verified    {}", describe(to_alice.remote()));
        println!(
            "                  trust {}\n",
            level(to_alice.trust_level())
        );
    }

    let rpc_started = Instant::now();
    let greeting: String = to_bob.call("greet", &"alice").await?;
    let rpc_time = rpc_started.elapsed();
    if text {
        println!(
            "  rpc             greet(\"alice\") -> {greeting:?} in {:.3} ms\n",
            ms(rpc_time)
        );
    }

    let (sent_hash, received, received_hash, transfer_time) =
        transfer(&to_bob, &to_alice, args.bytes, text).await?;
    let hashes_match = sent_hash == received_hash && received == args.bytes;
    let throughput = args.bytes as f64 / transfer_time.as_secs_f64() / 1e6;
    let path = to_bob.path().await;

    if text {
        println!(
            "  transfer        {:.1} MiB in {:.3} s = {:.1} MB/s, sha-256 {}",
            args.bytes as f64 / (1 << 20) as f64,
            transfer_time.as_secs_f64(),
            throughput,
            if hashes_match { "matches" } else { "DIFFERS" }
        );
        match (&path.local, &path.remote) {
            (Some(local), Some(remote)) => println!(
                "  path            {} {local} <-> {remote}, rtt {}, sent {} B, received {} B",
                path.kind,
                path.rtt_ms
                    .map_or_else(|| "-".to_owned(), |rtt| format!("{rtt:.3} ms")),
                path.bytes_sent,
                path.bytes_received
            ),
            _ => println!("  path            {}", path.kind),
        }
        println!(
            "\n  verified identities: {}, data intact: {}",
            if verified { "yes" } else { "NO" },
            if hashes_match { "yes" } else { "NO" }
        );
    } else {
        let mut out = json!({
            "transport": args.transport.name(),
            "connect_ms": ms(connect_total),
            "link_ms": link_ms,
            "handshake_ms": ms(timings.handshake),
            "verified": verified,
            "alice": { "publicKey": alice.public_key().to_base64(), "sees": to_bob.remote().device_id, "trustLevel": to_bob.trust_level().0 },
            "bob": { "publicKey": bob.public_key().to_base64(), "sees": to_alice.remote().device_id, "trustLevel": to_alice.trust_level().0 },
            "rpc_ms": ms(rpc_time),
            "rpc_result": greeting,
            "bytes": received,
            "intact": hashes_match,
            "transfer_ms": ms(transfer_time),
            "throughput_mb_s": (throughput * 10.0).round() / 10.0,
        });
        if let Some(map) = out.as_object_mut() {
            map.insert("path".to_owned(), serde_json::to_value(path)?);
        }
        println!("{out}");
    }

    to_bob.close("demo finished").await;
    alice.close().await;
    bob.close().await;
    if let Some(link) = link {
        link.close().await;
    }
    if !(verified && hashes_match) {
        return Err("the demo did not verify both identities and the data".into());
    }
    Ok(())
}

/// Sends `total` random bytes from `from` to `to` over a byte stream; returns the SHA-256 of
/// what was sent, the byte count and SHA-256 of what arrived, and the time it took.
async fn transfer(
    from: &Connection,
    to: &Connection,
    total: usize,
    progress: bool,
) -> Result<([u8; 32], usize, [u8; 32], Duration), Box<dyn std::error::Error>> {
    let mut data = vec![0u8; total];
    rand::thread_rng().fill_bytes(&mut data);
    let data = Bytes::from(data);
    let sent_hash: [u8; 32] = sha2::Sha256::digest(&data).into();

    let bar = if progress {
        let bar = ProgressBar::new(total as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "  transfer        [{bar:32}] {bytes}/{total_bytes} {binary_bytes_per_sec}",
            )?
            .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };

    let receiver = {
        let to = to.clone();
        let bar = bar.clone();
        tokio::spawn(async move {
            let mut stream = to.accept_stream().await.ok_or("connection closed")?;
            let mut hasher = sha2::Sha256::new();
            let mut received = 0usize;
            while let Some(piece) = stream.recv().await {
                let piece = piece.map_err(|e| e.to_string())?;
                received += piece.len();
                bar.inc(piece.len() as u64);
                hasher.update(&piece);
            }
            Ok::<_, String>((received, <[u8; 32]>::from(hasher.finalize())))
        })
    };

    let started = Instant::now();
    let mut stream = from.open_stream("demo-bulk").await?;
    let mut offset = 0;
    while offset < data.len() {
        let end = (offset + PIECE).min(data.len());
        stream.send(data.slice(offset..end)).await?;
        offset = end;
    }
    stream.finish().await?;
    let (received, received_hash) = receiver.await??;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    Ok((sent_hash, received, received_hash, elapsed))
}

/// Two verified connections over one WebRTC link, and the link to close at the end.
struct WebRtcPair {
    to_bob: Connection,
    to_alice: Connection,
    link: WebRtcLink,
    /// Offer created → channel open on both sides.
    link_time: Duration,
}

/// Longest wait for the link to open (loopback needs ~10 ms).
const WEBRTC_OPEN: Duration = Duration::from_secs(15);

/// Delivers one link's signals, as JSON over an in-process channel, to the other link — the
/// part a signaling server plays between two devices.
fn signal_path(
    mut events: WebRtcEvents,
    to: &WebRtcLink,
    channels: Option<mpsc::Sender<WebRtcChannel>>,
) {
    let (json_tx, mut json_rx) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            match event {
                WebRtcEvent::Signal(signal) => {
                    let Ok(()) = json_tx.send(signal.to_json()) else {
                        return;
                    };
                }
                WebRtcEvent::Channel(channel) => {
                    if let Some(channels) = &channels {
                        let _ = channels.send(channel).await;
                    }
                }
                _ => {}
            }
        }
    });
    // Weak: the signal path must not keep a closed link alive.
    let to = to.downgrade();
    tokio::spawn(async move {
        while let Some(json) = json_rx.recv().await {
            let Some(to) = to.upgrade() else { return };
            if let Err(err) = to.handle_signal_json(&json).await {
                tracing::debug!(%err, "signal refused");
            }
        }
    });
}

async fn webrtc_pair(alice: &Node, bob: &Node) -> Result<WebRtcPair, Box<dyn std::error::Error>> {
    let config = WebRtcConfig::loopback();
    let (offerer, offerer_events) = WebRtcLink::new(config.clone(), WebRtcRole::Offerer).await?;
    let (answerer, answerer_events) = WebRtcLink::new(config, WebRtcRole::Answerer).await?;
    let channel = offerer
        .create_channel("peerlink", ChannelOptions::default())
        .await?;
    let (remote_tx, mut remote_rx) = mpsc::channel(1);
    signal_path(offerer_events, &answerer, None);
    signal_path(answerer_events, &offerer, Some(remote_tx));
    let started = Instant::now();
    offerer.start().await?;
    tokio::time::timeout(WEBRTC_OPEN, channel.opened())
        .await
        .map_err(|_| "the WebRTC channel did not open in time")??;
    let remote = tokio::time::timeout(WEBRTC_OPEN, remote_rx.recv())
        .await
        .map_err(|_| "the answerer saw no channel in time")?
        .ok_or("the answerer closed")?;
    let link_time = started.elapsed();
    let a = WebRtcTransport::new(offerer.clone(), channel);
    let b = WebRtcTransport::new(answerer, remote);
    let (a_binding, b_binding) = (a.binding().await?, b.binding().await?);
    let (a_role, b_role) = (a.handshake_role(), b.handshake_role());
    let (to_bob, to_alice) = tokio::try_join!(
        alice.connect(Box::new(a), a_role, a_binding),
        bob.connect(Box::new(b), b_role, b_binding),
    )?;
    Ok(WebRtcPair {
        to_bob,
        to_alice,
        link: offerer,
        link_time,
    })
}
