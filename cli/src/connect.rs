//! `peerlink connect`: a native member of a signaling-server room. Shows presence, accepts and
//! makes verified peerlink connections over WebRTC by device id, and with `--chat` answers the
//! browser lobby's chat calls.
//!
//! Output is one line per event, in a fixed shape scripts can match:
//! `connected <url> as <device> key <public key>`, `authenticated <url>` (also after a
//! reconnect), `members <room>: <device>…`,
//! `joined <room>: <device>`, `left <room>: <device>`, `verified <device> key <key> over
//! <transport>`, `chat open <device>`, `chat <device>: <text>`, `reply <device>: <text>`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use peerlink::signaling::{
    DialerConfig, Member, SignalingClient, SignalingConfig, SignalingEvent, SignalingEvents,
    WebRtcDialer,
};
use peerlink::webrtc::{
    ChannelSender, LinkState, Signal, WebRtcConfig, WebRtcEvent, WebRtcLink, WebRtcRole,
};
use peerlink::{Connection, HandlerError, Identity, Node, NodeConfig, handler_fn};
use rand::RngCore as _;
use tokio::io::AsyncBufReadExt as _;
use tokio::sync::mpsc;

#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// Signaling server WebSocket URL, for example ws://127.0.0.1:8787/ws.
    #[arg(long)]
    server: String,
    /// Room to join.
    #[arg(long)]
    room: String,
    /// Answer chat calls from the browser lobby and print their messages; lines read from
    /// standard input go to every open chat.
    #[arg(long)]
    chat: bool,
    /// With --chat: answer every chat message with "echo: <message>".
    #[arg(long, requires = "chat")]
    echo: bool,
    /// Connect to this device over WebRTC and print the identity it proved.
    #[arg(long)]
    to: Option<String>,
    /// With --to: send this message as a `chat` call (repeatable), then exit.
    #[arg(long, requires = "to")]
    message: Vec<String>,
    /// This device's id (default: cli-<random>).
    #[arg(long)]
    device_id: Option<String>,
    /// The user id announced to the room.
    #[arg(long, default_value = "peerlink-cli")]
    user_id: String,
    /// File holding the secret key (base64, or the JSON of `peerlink identity new`);
    /// default: a fresh identity.
    #[arg(long)]
    identity_file: Option<std::path::PathBuf>,
    /// Bind WebRTC to 127.0.0.1 only (peers on this machine).
    #[arg(long)]
    loopback: bool,
    /// Exit after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    exit_after: Option<u64>,
}

type Chats = Arc<Mutex<HashMap<String, ChatPeer>>>;

/// A browser chat: where its signals go and, once open, its channel.
struct ChatPeer {
    signals: mpsc::UnboundedSender<Signal>,
    sender: Option<ChannelSender>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn load_identity(path: Option<&std::path::Path>) -> Result<Identity, Box<dyn std::error::Error>> {
    let Some(path) = path else {
        return Ok(Identity::generate(&mut rand::rngs::OsRng));
    };
    let text = std::fs::read_to_string(path)?;
    let text = text.trim();
    let key = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => v["secretKey"]
            .as_str()
            .ok_or("identity file: no secretKey field")?
            .to_owned(),
        Err(_) => text.to_owned(),
    };
    Ok(Identity::from_secret_key_base64(&key)?)
}

pub(crate) fn run(args: ConnectArgs) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match args.exit_after {
            Some(secs) => {
                match tokio::time::timeout(Duration::from_secs(secs), session(args)).await {
                    Ok(r) => r,
                    Err(_) => Ok(()),
                }
            }
            None => session(args).await,
        }
    })
}

async fn session(args: ConnectArgs) -> Result<(), Box<dyn std::error::Error>> {
    let identity = load_identity(args.identity_file.as_deref())?;
    let device_id = args.device_id.clone().unwrap_or_else(|| {
        let mut b = [0u8; 3];
        rand::rngs::OsRng.fill_bytes(&mut b);
        format!("cli-{:02x}{:02x}{:02x}", b[0], b[1], b[2])
    });
    let webrtc = if args.loopback {
        WebRtcConfig::loopback()
    } else {
        WebRtcConfig::default()
    };
    let config = SignalingConfig::new(
        args.server.clone(),
        identity.clone(),
        args.user_id.clone(),
        device_id.clone(),
    );
    let (client, events) = SignalingClient::connect(config).await?;
    println!(
        "connected {} as {device_id} key {}",
        args.server,
        identity.public_key().to_base64()
    );
    let node = Node::new(NodeConfig::new(identity, args.user_id.clone(), device_id))?;
    node.expose(
        "chat",
        handler_fn(|req| async move {
            let text: String = req.args()?;
            println!("chat {}: {text}", req.connection.remote().device_id);
            let reply = rmp_serde::to_vec(&format!("got: {text}"))
                .map_err(|e| HandlerError::new("encode", e.to_string()))?;
            Ok::<_, HandlerError>(Bytes::from(reply))
        }),
    );
    let (dialer, rest, mut incoming) =
        WebRtcDialer::new(client.clone(), events, DialerConfig::new(webrtc.clone()));
    {
        let node = node.clone();
        tokio::spawn(async move {
            // Ends when the signaling client closes.
            while let Some(link) = incoming.next().await {
                let node = node.clone();
                tokio::spawn(async move {
                    match link.accept(&node).await {
                        Ok(c) => print_verified(&c),
                        Err(e) => println!("refused: {e}"),
                    }
                });
            }
        });
    }
    // The members are printed from the `Members` event the join produces.
    client.join(&args.room).await?;

    let chats: Chats = Arc::new(Mutex::new(HashMap::new()));
    let echo = args.echo;
    let events_task = tokio::spawn(handle_events(
        rest,
        client.clone(),
        args.chat.then(|| Arc::clone(&chats)),
        webrtc,
        echo,
    ));

    let mut peer = None;
    if let Some(to) = &args.to {
        let connection = dialer.connect(&node, to).await?;
        print_verified(&connection);
        for text in &args.message {
            let reply: String = connection.call("chat", text).await?;
            println!("reply {to}: {reply}");
        }
        if !args.message.is_empty() {
            connection.close("done").await;
            client.close().await;
            return Ok(());
        }
        peer = Some(connection);
    }

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    // Ends on Ctrl-C (or --exit-after around the session); stdin EOF only stops reading.
    loop {
        tokio::select! {
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(text)) if !text.is_empty() => {
                    send_chat(&chats, &text).await;
                    if let Some(c) = &peer {
                        match c.call::<_, String>("chat", &text).await {
                            Ok(reply) => println!("reply {}: {reply}", c.remote().device_id),
                            Err(e) => println!("call failed: {e}"),
                        }
                    }
                }
                Ok(Some(_)) => {}
                _ => stdin_open = false,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    events_task.abort();
    client.close().await;
    node.close().await;
    Ok(())
}

fn print_members(room: &str, members: &[Member]) {
    let names: Vec<&str> = members.iter().map(|m| m.device_id.as_str()).collect();
    println!("members {room}: {}", names.join(" "));
}

fn print_verified(c: &Connection) {
    let remote = c.remote();
    println!(
        "verified {} key {} over {}",
        remote.device_id,
        remote.public_key.to_base64(),
        c.transport_kind()
    );
}

async fn send_chat(chats: &Chats, text: &str) {
    let senders: Vec<(String, ChannelSender)> = lock(chats)
        .iter()
        .filter_map(|(d, p)| p.sender.clone().map(|s| (d.clone(), s)))
        .collect();
    for (device, sender) in senders {
        if sender.send(Bytes::from(text.to_owned())).await.is_err() {
            println!("chat closed {device}");
        }
    }
}

async fn handle_events(
    mut events: SignalingEvents,
    client: SignalingClient,
    chats: Option<Chats>,
    webrtc: WebRtcConfig,
    echo: bool,
) {
    // Ends when the client closes.
    while let Some(event) = events.next().await {
        match event {
            SignalingEvent::Members { room, members } => print_members(&room, &members),
            SignalingEvent::Joined { room, member } => {
                println!("joined {room}: {}", member.device_id);
            }
            SignalingEvent::Left { room, device_id } => println!("left {room}: {device_id}"),
            SignalingEvent::Disconnected { reason } => println!("disconnected: {reason}"),
            SignalingEvent::Connected { url } => println!("authenticated {url}"),
            SignalingEvent::Signal { from, data } => {
                let Some(chats) = &chats else { continue };
                let Ok(signal) = serde_json::from_value::<Signal>(data) else {
                    continue;
                };
                if let Signal::Offer { .. } = signal {
                    answer_chat(
                        client.clone(),
                        Arc::clone(chats),
                        from.device_id,
                        signal,
                        webrtc.clone(),
                        echo,
                    )
                    .await;
                } else if let Some(peer) = lock(chats).get(&from.device_id) {
                    let _ = peer.signals.send(signal);
                }
            }
            _ => {}
        }
    }
}

/// Answers a browser's chat offer: a plain WebRTC link whose "chat" channel carries text.
async fn answer_chat(
    client: SignalingClient,
    chats: Chats,
    from: String,
    offer: Signal,
    webrtc: WebRtcConfig,
    echo: bool,
) {
    let (link, mut events) = match WebRtcLink::new(webrtc, WebRtcRole::Answerer).await {
        Ok(l) => l,
        Err(e) => {
            println!("chat failed {from}: {e}");
            return;
        }
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<Signal>();
    let _ = tx.send(offer);
    // A new offer from the same device replaces its old chat (the page reconnected).
    let old = lock(&chats).insert(
        from.clone(),
        ChatPeer {
            signals: tx,
            sender: None,
        },
    );
    drop(old);
    let weak = link.downgrade();
    tokio::spawn(async move {
        // Ends when the chat entry (and so the sender) is replaced or the link is gone.
        while let Some(signal) = rx.recv().await {
            let Some(link) = weak.upgrade() else { return };
            let _ = link.handle_signal(signal).await;
        }
    });
    tokio::spawn(async move {
        // The link lives in this task; the loop ends when the link's events end.
        let link = link;
        while let Some(event) = events.next().await {
            match event {
                WebRtcEvent::Signal(signal) => {
                    let data = serde_json::to_value(&signal).unwrap_or_default();
                    let _ = client.signal(&from, data).await;
                }
                WebRtcEvent::Channel(channel) => {
                    if channel.opened().await.is_err() {
                        continue;
                    }
                    println!("chat open {from}");
                    let (sender, mut receiver) = channel.split();
                    if let Some(peer) = lock(&chats).get_mut(&from) {
                        peer.sender = Some(sender.clone());
                    }
                    let from = from.clone();
                    tokio::spawn(async move {
                        // Ends when the channel closes.
                        while let Some(message) = receiver.recv().await {
                            let text = String::from_utf8_lossy(&message).into_owned();
                            println!("chat {from}: {text}");
                            if echo {
                                let _ = sender.send(Bytes::from(format!("echo: {text}"))).await;
                            }
                        }
                        println!("chat closed {from}");
                    });
                }
                WebRtcEvent::State(LinkState::Failed | LinkState::Closed) => break,
                _ => {}
            }
        }
        link.close().await;
    });
}
