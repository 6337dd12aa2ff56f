//! Helpers shared by the WebRTC link test binaries: two links on loopback wired to each other
//! through an in-process signal channel, and message exchange checks.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use bytes::Bytes;
use peerlink::webrtc::{
    ChannelOptions, LinkState, WebRtcChannel, WebRtcConfig, WebRtcEvent, WebRtcEvents, WebRtcLink,
    WebRtcRole,
};
use tokio::sync::mpsc;
use tokio::time::timeout;

pub const WAIT: Duration = Duration::from_secs(20);

/// Forwards one link's signals to the other link and its remote channels to `channels`.
pub fn forward(
    mut events: WebRtcEvents,
    to: &WebRtcLink,
    channels: mpsc::UnboundedSender<WebRtcChannel>,
) -> tokio::task::JoinHandle<()> {
    // Weak: a forwarder holding the peer strongly would keep both links alive forever.
    let to = to.downgrade();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            match event {
                WebRtcEvent::Signal(signal) => {
                    let Some(to) = to.upgrade() else { return };
                    // Round-trip through JSON so the wire format is what is tested.
                    let json = signal.to_json();
                    if let Err(err) = to.handle_signal_json(&json).await {
                        // Signals still in flight when a link closes are refused; fine.
                        assert_eq!(
                            to.state(),
                            LinkState::Closed,
                            "signal {json} refused: {err}"
                        );
                        return;
                    }
                }
                WebRtcEvent::Channel(channel) => {
                    let _ = channels.send(channel);
                }
                _ => {}
            }
        }
    })
}

pub struct Pair {
    pub offerer: WebRtcLink,
    pub answerer: WebRtcLink,
    /// Channels the offerer created, in creation order.
    pub local: Vec<WebRtcChannel>,
    /// The same channels as the answerer sees them, in the same order.
    pub remote: Vec<WebRtcChannel>,
}

impl Pair {
    pub async fn close(self) {
        self.offerer.close().await;
        self.answerer.close().await;
    }
}

pub async fn connect(config: WebRtcConfig, channels: Vec<(&str, ChannelOptions)>) -> Pair {
    let (offerer, offerer_events) = WebRtcLink::new(config.clone(), WebRtcRole::Offerer)
        .await
        .expect("offerer");
    let (answerer, answerer_events) = WebRtcLink::new(config, WebRtcRole::Answerer)
        .await
        .expect("answerer");
    let mut local = Vec::new();
    for (label, options) in &channels {
        local.push(
            offerer
                .create_channel(label, options.clone())
                .await
                .expect("channel"),
        );
    }
    let (ch_tx, mut ch_rx) = mpsc::unbounded_channel();
    let (unused_tx, _unused_rx) = mpsc::unbounded_channel();
    forward(offerer_events, &answerer, unused_tx);
    forward(answerer_events, &offerer, ch_tx);
    offerer.start().await.expect("start");
    timeout(WAIT, offerer.connected())
        .await
        .expect("connect timeout")
        .expect("connected");
    timeout(WAIT, answerer.connected())
        .await
        .expect("connect timeout")
        .expect("connected");
    let mut remote = Vec::new();
    for _ in &channels {
        let ch = timeout(WAIT, ch_rx.recv())
            .await
            .expect("remote channel timeout")
            .expect("remote channel");
        remote.push(ch);
    }
    for ch in &local {
        timeout(WAIT, ch.opened())
            .await
            .expect("open timeout")
            .expect("open");
    }
    // Remote channels are announced in open order, which is creation order on one association.
    remote.sort_by_key(|c| channels.iter().position(|(l, _)| *l == c.label()));
    Pair {
        offerer,
        answerer,
        local,
        remote,
    }
}

pub fn reliable() -> Vec<(&'static str, ChannelOptions)> {
    vec![("main", ChannelOptions::default())]
}

pub fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

pub async fn exchange(a: &mut WebRtcChannel, b: &mut WebRtcChannel, sizes: &[usize]) {
    for (i, &size) in sizes.iter().enumerate() {
        let msg = pattern(size, i as u8);
        a.sender.send(msg.clone()).await.expect("send a->b");
        let got = timeout(WAIT, b.receiver.recv())
            .await
            .expect("recv timeout")
            .expect("recv");
        assert_eq!(got.len(), size, "size {size} a->b");
        assert_eq!(got, msg, "content of {size} a->b");
        let back = pattern(size, i as u8 ^ 0x55);
        b.sender.send(back.clone()).await.expect("send b->a");
        let got = timeout(WAIT, a.receiver.recv())
            .await
            .expect("recv timeout")
            .expect("recv");
        assert_eq!(got, back, "content of {size} b->a");
    }
}
