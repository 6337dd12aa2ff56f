//! Compact codes for a link: connect two devices with one short code each way and no server.
//!
//! Both links run without trickle ([`WebRtcConfig::trickle`](super::WebRtcConfig) `false`), so
//! each description carries all its candidates and one code each way is the whole exchange:
//!
//! ```text
//! offerer: code = link.offer_code(&mut events)          → show as link / QR / sound
//! answerer: code = link.answer_code(&mut events, &offer) → send back
//! offerer: link.accept_answer_code(&answer)
//! ```
//!
//! A code is expanded into a description before the link applies it, so the fingerprints
//! the handshake binds ([`WebRtcLink::fingerprints`]) are the ones in the codes. The format is
//! in `docs/protocol/compact-signal.md`.
//!
//! [`CodeOffer`] and [`CodeAnswer`] run the whole flow up to a verified [`Connection`]:
//!
//! ```text
//! offerer: offer = CodeOffer::create(config)         → show offer.code()
//! answerer: answer = CodeAnswer::create(config, &code) → send back answer.code()
//!           answer.connect(&node, timeout)            → Connection
//! offerer: offer.connect(&node, &answer_code, timeout) → Connection
//! ```

use std::time::Duration;

use tokio::time::timeout;

use super::channel::WebRtcChannel;
use super::config::{ChannelOptions, WebRtcConfig};
use super::error::WebRtcError;
use super::link::{WebRtcEvent, WebRtcEvents, WebRtcLink, WebRtcRole};
use super::signal::Signal;
use super::transport::WebRtcTransport;
use crate::{Connection, Node};

pub use peerlink_core::compact::{CodeKind, CompactError, CompactSignal};

/// Why a code exchange failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodeError {
    /// The code or the description behind it cannot be used.
    #[error(transparent)]
    Code(#[from] CompactError),
    /// The link refused the expanded description or failed.
    #[error(transparent)]
    Link(#[from] WebRtcError),
    /// The link did not produce its description (closed, or called on the wrong role).
    #[error("the link produced no {0} description")]
    NoDescription(&'static str),
    /// A code of the wrong kind: an answer where an offer is expected or the reverse.
    #[error("expected an {expected} code")]
    WrongKind {
        /// What was expected.
        expected: &'static str,
    },
    /// The peerlink handshake over the opened channel failed.
    #[error(transparent)]
    Connect(#[from] crate::Error),
    /// A step did not finish in time.
    #[error("timed out {0}")]
    Timeout(&'static str),
}

impl CodeError {
    /// Stable snake_case code, as the bindings surface it.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Code(_) => "bad_code",
            Self::Link(_) => "webrtc",
            Self::NoDescription(_) => "no_description",
            Self::WrongKind { .. } => "wrong_code_kind",
            Self::Connect(err) => err.code(),
            Self::Timeout(_) => "timeout",
        }
    }
}

/// The name of the data channel a code exchange opens.
pub const CODE_CHANNEL_LABEL: &str = "peerlink";

/// Offerer side of a code exchange: holds the offer code until the answer code arrives.
#[derive(Debug)]
pub struct CodeOffer {
    link: WebRtcLink,
    events: WebRtcEvents,
    channel: WebRtcChannel,
    code: CompactSignal,
}

impl CodeOffer {
    /// Gathers candidates and makes the offer code. `config` is turned into a code
    /// configuration ([`WebRtcConfig::for_codes`]: non-trickle, short ICE credentials) unless
    /// it already carries credentials.
    pub async fn create(config: WebRtcConfig) -> Result<Self, CodeError> {
        let (link, mut events) = WebRtcLink::new(code_config(config), WebRtcRole::Offerer).await?;
        let channel = link
            .create_channel(CODE_CHANNEL_LABEL, ChannelOptions::default())
            .await?;
        let code = match link.offer_code(&mut events).await {
            Ok(code) => code,
            Err(err) => {
                link.close().await;
                return Err(err);
            }
        };
        Ok(Self {
            link,
            events,
            channel,
            code,
        })
    }

    /// The offer code to show (text, link, QR code or sound).
    pub fn code(&self) -> &CompactSignal {
        &self.code
    }

    /// Applies the answer code, waits for the channel and runs the handshake on `node` as
    /// initiator, bound to the fingerprints the two codes carried. Each of the two waits
    /// (channel, handshake) is bounded by `within`. On failure the link is closed.
    pub async fn connect(
        self,
        node: &Node,
        answer: &CompactSignal,
        within: Duration,
    ) -> Result<Connection, CodeError> {
        let Self {
            link,
            events,
            channel,
            ..
        } = self;
        let result = async {
            link.accept_answer_code(answer).await?;
            timeout(within, channel.opened())
                .await
                .map_err(|_| CodeError::Timeout("waiting for the channel to open"))??;
            Ok(())
        }
        .await;
        if let Err(err) = result {
            link.close().await;
            return Err(err);
        }
        handshake(node, link, channel, events, within).await
    }

    /// Gives up: closes the link.
    pub async fn close(self) {
        self.link.close().await;
    }
}

/// Answerer side of a code exchange: holds the answer code while the offerer connects.
#[derive(Debug)]
pub struct CodeAnswer {
    link: WebRtcLink,
    events: WebRtcEvents,
    code: CompactSignal,
}

impl CodeAnswer {
    /// Applies the offer code and makes the answer code (`config` as for
    /// [`CodeOffer::create`]).
    pub async fn create(config: WebRtcConfig, offer: &CompactSignal) -> Result<Self, CodeError> {
        if offer.kind != CodeKind::Offer {
            return Err(CodeError::WrongKind { expected: "offer" });
        }
        let (link, mut events) = WebRtcLink::new(code_config(config), WebRtcRole::Answerer).await?;
        let code = match link.answer_code(&mut events, offer).await {
            Ok(code) => code,
            Err(err) => {
                link.close().await;
                return Err(err);
            }
        };
        Ok(Self { link, events, code })
    }

    /// The answer code to give back to the offerer.
    pub fn code(&self) -> &CompactSignal {
        &self.code
    }

    /// Waits for the offerer's channel and runs the handshake on `node` as responder. Each of
    /// the two waits is bounded by `within`. On failure the link is closed.
    pub async fn connect(self, node: &Node, within: Duration) -> Result<Connection, CodeError> {
        let Self {
            link, mut events, ..
        } = self;
        let channel = timeout(within, async {
            while let Some(event) = events.next().await {
                if let WebRtcEvent::Channel(channel) = event {
                    return Some(channel);
                }
            }
            None
        })
        .await;
        let channel = match channel {
            Ok(Some(channel)) => channel,
            Ok(None) => {
                link.close().await;
                return Err(CodeError::Link(WebRtcError::ConnectionLost(
                    "closed before a channel opened",
                )));
            }
            Err(_) => {
                link.close().await;
                return Err(CodeError::Timeout("waiting for the offerer's channel"));
            }
        };
        handshake(node, link, channel, events, within).await
    }

    /// Gives up: closes the link.
    pub async fn close(self) {
        self.link.close().await;
    }
}

fn code_config(config: WebRtcConfig) -> WebRtcConfig {
    if config.ice_credentials.is_some() {
        WebRtcConfig {
            trickle: false,
            ..config
        }
    } else {
        config.for_codes()
    }
}

async fn handshake(
    node: &Node,
    link: WebRtcLink,
    channel: WebRtcChannel,
    events: WebRtcEvents,
    within: Duration,
) -> Result<Connection, CodeError> {
    // The connection reads nothing else from the link's events; keep draining them so the
    // link never waits on a full queue. The task ends when the link closes.
    tokio::spawn(async move {
        let mut events = events;
        while events.next().await.is_some() {}
    });
    let transport = WebRtcTransport::new(link.clone(), channel);
    let binding = match transport.binding().await {
        Ok(binding) => binding,
        Err(err) => {
            link.close().await;
            return Err(err.into());
        }
    };
    let role = transport.handshake_role();
    match timeout(within, node.connect(Box::new(transport), role, binding)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(err)) => {
            link.close().await;
            Err(err.into())
        }
        Err(_) => {
            link.close().await;
            Err(CodeError::Timeout("in the handshake"))
        }
    }
}

/// The code for an offer or answer signal, trimmed to what the peer needs
/// ([`CompactSignal::minimize`]). Other signals have no code.
pub fn code_from_signal(signal: &Signal) -> Result<CompactSignal, CodeError> {
    let (sdp, kind) = match signal {
        Signal::Offer { sdp, .. } => (sdp, CodeKind::Offer),
        Signal::Answer { sdp, .. } => (sdp, CodeKind::Answer),
        _ => return Err(CodeError::NoDescription("offer or answer")),
    };
    let mut code = CompactSignal::from_sdp(sdp, kind)?;
    code.minimize();
    Ok(code)
}

/// The signal a code stands for: its expanded description.
pub fn signal_from_code(code: &CompactSignal) -> Signal {
    let sdp = code.to_sdp();
    match code.kind {
        CodeKind::Offer => Signal::Offer {
            sdp,
            connection_id: None,
            ice_restart: false,
        },
        CodeKind::Answer => Signal::Answer {
            sdp,
            connection_id: None,
        },
    }
}

/// Takes the description the link just emitted. Without trickle the link emits it once
/// gathering is done, before `start`/`handle_signal` returns; the only events that can
/// precede it are gathering and state reports (no channel opens before both descriptions
/// are applied), which are dropped here.
fn take_description(events: &mut WebRtcEvents, what: &'static str) -> Result<Signal, CodeError> {
    while let Some(event) = events.try_next() {
        if let WebRtcEvent::Signal(signal @ (Signal::Offer { .. } | Signal::Answer { .. })) = event
        {
            return Ok(signal);
        }
    }
    Err(CodeError::NoDescription(what))
}

impl WebRtcLink {
    /// Offerer: creates the offer and returns its code. The link must be configured without
    /// trickle, and its channels created first (as for [`WebRtcLink::start`]).
    pub async fn offer_code(&self, events: &mut WebRtcEvents) -> Result<CompactSignal, CodeError> {
        if self.role() != WebRtcRole::Offerer {
            return Err(CodeError::NoDescription("offer"));
        }
        self.start().await?;
        code_from_signal(&take_description(events, "offer")?)
    }

    /// Answerer: applies the offer code and returns the answer code.
    pub async fn answer_code(
        &self,
        events: &mut WebRtcEvents,
        offer: &CompactSignal,
    ) -> Result<CompactSignal, CodeError> {
        if offer.kind != CodeKind::Offer {
            return Err(CodeError::WrongKind { expected: "offer" });
        }
        self.handle_signal(signal_from_code(offer)).await?;
        code_from_signal(&take_description(events, "answer")?)
    }

    /// Offerer: applies the answer code; the link then connects.
    pub async fn accept_answer_code(&self, answer: &CompactSignal) -> Result<(), CodeError> {
        if answer.kind != CodeKind::Answer {
            return Err(CodeError::WrongKind { expected: "answer" });
        }
        self.handle_signal(signal_from_code(answer)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::timeout;

    use super::*;
    use crate::webrtc::{ChannelOptions, WebRtcConfig, WebRtcTransport};
    use crate::{HandlerError, Identity, Node, NodeConfig, typed_handler};

    const BOUND: Duration = Duration::from_secs(30);

    fn config() -> WebRtcConfig {
        WebRtcConfig {
            trickle: false,
            ..WebRtcConfig::loopback()
        }
    }

    /// Two nodes connect with nothing between them but two text codes, then handshake bound
    /// to the fingerprints in the codes and call each other.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_connect_with_text_codes_only() {
        let (offerer, mut o_events) = WebRtcLink::new(config(), WebRtcRole::Offerer)
            .await
            .expect("offerer");
        let (answerer, mut a_events) = WebRtcLink::new(config(), WebRtcRole::Answerer)
            .await
            .expect("answerer");
        let channel = offerer
            .create_channel("peerlink", ChannelOptions::default())
            .await
            .expect("channel");

        let offer_text = timeout(BOUND, offerer.offer_code(&mut o_events))
            .await
            .expect("offer timeout")
            .expect("offer code")
            .to_text()
            .expect("offer text");
        let offer = CompactSignal::from_text(&format!("http://127.0.0.1/#{offer_text}"))
            .expect("offer link parses");
        let answer_text = timeout(BOUND, answerer.answer_code(&mut a_events, &offer))
            .await
            .expect("answer timeout")
            .expect("answer code")
            .to_text()
            .expect("answer text");
        let answer = CompactSignal::from_text(&answer_text).expect("answer parses");
        assert_eq!(answer.kind, CodeKind::Answer);
        offerer
            .accept_answer_code(&answer)
            .await
            .expect("answer accepted");

        timeout(BOUND, channel.opened())
            .await
            .expect("open timeout")
            .expect("open");
        let remote = timeout(BOUND, async {
            loop {
                match a_events.next().await {
                    Some(WebRtcEvent::Channel(ch)) => return Some(ch),
                    Some(_) => continue,
                    None => return None,
                }
            }
        })
        .await
        .expect("remote channel timeout")
        .expect("remote channel");

        let alice = Node::new(NodeConfig::new(
            Identity::generate(&mut rand::rngs::OsRng),
            "alice",
            "dev",
        ))
        .expect("alice");
        let bob_identity = Identity::generate(&mut rand::rngs::OsRng);
        let bob_key = bob_identity.public_key();
        let bob = Node::new(NodeConfig::new(bob_identity, "bob", "dev")).expect("bob");
        bob.expose(
            "add",
            typed_handler(|(a, b): (i64, i64)| async move { Ok::<_, HandlerError>(a + b) }),
        );
        let a = WebRtcTransport::new(offerer, channel);
        let b = WebRtcTransport::new(answerer, remote);
        let a_binding = a.binding().await.expect("binding a");
        let b_binding = b.binding().await.expect("binding b");
        assert_eq!(
            a_binding, b_binding,
            "both read the fingerprints the codes carried"
        );
        let (a_role, b_role) = (a.handshake_role(), b.handshake_role());
        let (a_conn, b_conn) = tokio::join!(
            timeout(BOUND, alice.connect(Box::new(a), a_role, a_binding)),
            timeout(BOUND, bob.connect(Box::new(b), b_role, b_binding)),
        );
        let a_conn = a_conn.expect("handshake timeout").expect("alice handshake");
        let _b_conn = b_conn.expect("handshake timeout").expect("bob handshake");
        assert_eq!(a_conn.remote().public_key, bob_key);
        assert_eq!(a_conn.remote().user_id, "bob");
        let sum: i64 = timeout(BOUND, a_conn.call("add", &(20, 22)))
            .await
            .expect("call timeout")
            .expect("call");
        assert_eq!(sum, 42);
        alice.close().await;
        bob.close().await;
    }

    /// The public flow: offer code, answer code, a verified connection on each side; the
    /// codes carry the short credentials and fit the size target.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn code_offer_and_code_answer_give_verified_connections() {
        let offer = CodeOffer::create(WebRtcConfig::loopback())
            .await
            .expect("offer");
        let offer_code = offer.code().clone();
        assert_eq!(offer_code.ice_ufrag.len(), 4);
        assert_eq!(offer_code.ice_pwd.len(), 22);
        let bytes = offer_code.to_bytes().expect("bytes");
        // One host candidate: 1 header + 1 lengths + 32 fingerprint + 21 credentials + 7.
        assert_eq!(offer_code.candidates.len(), 1);
        assert_eq!(
            bytes.len(),
            62 + offer_code.max_message_size.map_or(0, |_| 5),
            "{offer_code:?}"
        );
        let received =
            CompactSignal::from_text(&offer_code.to_text().expect("text")).expect("parse");
        let answer = CodeAnswer::create(WebRtcConfig::loopback(), &received)
            .await
            .expect("answer");
        let answer_code =
            CompactSignal::from_text(&answer.code().to_text().expect("text")).expect("parse");
        assert_eq!(answer_code.kind, CodeKind::Answer);
        assert_eq!(answer_code.ice_ufrag.len(), 4);

        let alice_identity = Identity::generate(&mut rand::rngs::OsRng);
        let alice_key = alice_identity.public_key();
        let alice = Node::new(NodeConfig::new(alice_identity, "alice", "dev")).expect("alice");
        let bob_identity = Identity::generate(&mut rand::rngs::OsRng);
        let bob_key = bob_identity.public_key();
        let bob = Node::new(NodeConfig::new(bob_identity, "bob", "dev")).expect("bob");
        bob.expose(
            "add",
            typed_handler(|(a, b): (i64, i64)| async move { Ok::<_, HandlerError>(a + b) }),
        );
        let (a_conn, b_conn) = tokio::join!(
            offer.connect(&alice, &answer_code, BOUND),
            answer.connect(&bob, BOUND),
        );
        let a_conn = a_conn.expect("offerer connects");
        let b_conn = b_conn.expect("answerer connects");
        assert_eq!(a_conn.remote().public_key, bob_key);
        assert_eq!(b_conn.remote().public_key, alice_key);
        let sum: i64 = timeout(BOUND, a_conn.call("add", &(20, 22)))
            .await
            .expect("call timeout")
            .expect("call");
        assert_eq!(sum, 42);
        alice.close().await;
        bob.close().await;
    }

    #[tokio::test]
    async fn an_answer_code_that_never_comes_back_times_out_the_offerer() {
        let offer = CodeOffer::create(WebRtcConfig::loopback())
            .await
            .expect("offer");
        // An answer to some other offer: valid, but nobody is behind it.
        let other = CodeOffer::create(WebRtcConfig::loopback())
            .await
            .expect("other offer");
        let stranger = CodeAnswer::create(WebRtcConfig::loopback(), other.code())
            .await
            .expect("stranger");
        let node = Node::new(NodeConfig::new(
            Identity::generate(&mut rand::rngs::OsRng),
            "alice",
            "dev",
        ))
        .expect("node");
        let wrong = offer.connect(&node, stranger.code(), Duration::from_secs(2));
        let err = timeout(BOUND, wrong)
            .await
            .expect("bounded")
            .expect_err("no peer");
        assert!(matches!(err, CodeError::Timeout(_)), "{err}");
        assert_eq!(err.code(), "timeout");
        stranger.close().await;
        other.close().await;
        node.close().await;
    }

    #[tokio::test]
    async fn codes_of_the_wrong_kind_are_refused() {
        let (offerer, mut events) = WebRtcLink::new(config(), WebRtcRole::Offerer)
            .await
            .expect("offerer");
        offerer
            .create_channel("peerlink", ChannelOptions::default())
            .await
            .expect("channel");
        let offer = offerer.offer_code(&mut events).await.expect("offer");
        assert!(matches!(
            offerer.accept_answer_code(&offer).await,
            Err(CodeError::WrongKind { expected: "answer" })
        ));
        let (answerer, mut a_events) = WebRtcLink::new(config(), WebRtcRole::Answerer)
            .await
            .expect("answerer");
        let answer = answerer
            .answer_code(&mut a_events, &offer)
            .await
            .expect("answer");
        assert!(matches!(
            answerer.answer_code(&mut a_events, &answer).await,
            Err(CodeError::WrongKind { expected: "offer" })
        ));
        offerer.close().await;
        answerer.close().await;
    }
}
