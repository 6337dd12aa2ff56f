//! [`WebRtcTransport`]: the [`Transport`] trait over a link's reliable ordered channel.
//!
//! The transport owns its link: closing the sending half, or dropping both halves, closes the
//! peer connection. By convention the offerer runs the handshake as initiator and the answerer
//! as responder, both bound to [`WebRtcTransport::binding`].

use async_trait::async_trait;
use bytes::Bytes;
use peerlink_core::handshake::{LinkBinding, Role};

use super::channel::{ChannelReceiver, ChannelSender, WebRtcChannel};
use super::error::WebRtcError;
use super::link::WeakWebRtcLink;
use super::link::{WebRtcLink, WebRtcRole};
use crate::error::TransportError;
use crate::transport::{
    PathProbe, PathReport, Transport, TransportKind, TransportReceiver, TransportSender,
};

impl From<WebRtcError> for TransportError {
    fn from(err: WebRtcError) -> Self {
        match err {
            WebRtcError::MessageTooLarge { size, limit } => Self::TooLarge { size, limit },
            WebRtcError::ChannelClosed | WebRtcError::ConnectionLost(_) => Self::Closed,
            WebRtcError::GatheringTimeout(_) => Self::Timeout,
            other => Self::Io(other.to_string()),
        }
    }
}

/// A WebRTC data channel as a peerlink transport.
#[derive(Debug)]
pub struct WebRtcTransport {
    link: WebRtcLink,
    channel: WebRtcChannel,
}

impl WebRtcTransport {
    /// Wraps an open, reliable and ordered channel of `link`.
    pub fn new(link: WebRtcLink, channel: WebRtcChannel) -> Self {
        Self { link, channel }
    }

    /// The link under the transport.
    pub fn link(&self) -> &WebRtcLink {
        &self.link
    }

    /// The handshake role that goes with this link's WebRTC role.
    pub fn handshake_role(&self) -> Role {
        match self.link.role() {
            WebRtcRole::Offerer => Role::Initiator,
            WebRtcRole::Answerer => Role::Responder,
        }
    }

    /// The link binding for the handshake: both DTLS fingerprints as this side saw them in
    /// the exchanged descriptions.
    pub async fn binding(&self) -> Result<LinkBinding, WebRtcError> {
        Ok(self.link.fingerprints().await?.into())
    }
}

impl Transport for WebRtcTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::WebRtc
    }

    fn max_message_size(&self) -> usize {
        self.channel.sender.max_message_size()
    }

    fn path_probe(&self) -> Option<std::sync::Arc<dyn PathProbe>> {
        Some(std::sync::Arc::new(self.link.downgrade()))
    }

    fn split(self: Box<Self>) -> (Box<dyn TransportSender>, Box<dyn TransportReceiver>) {
        let this = *self;
        let (sender, receiver) = this.channel.split();
        (
            Box::new(WebRtcSender {
                sender,
                link: this.link.clone(),
            }),
            Box::new(WebRtcReceiver {
                receiver,
                _link: this.link,
            }),
        )
    }
}

/// Sending half of a [`WebRtcTransport`]; keeps the link alive.
#[derive(Debug)]
struct WebRtcSender {
    sender: ChannelSender,
    link: WebRtcLink,
}

#[async_trait]
impl TransportSender for WebRtcSender {
    async fn send(&mut self, message: Bytes) -> Result<(), TransportError> {
        Ok(self.sender.send(message).await?)
    }

    async fn close(&mut self) {
        let _ = self.sender.close().await;
        self.link.close().await;
    }
}

/// Receiving half of a [`WebRtcTransport`]; keeps the link alive.
#[derive(Debug)]
struct WebRtcReceiver {
    receiver: ChannelReceiver,
    _link: WebRtcLink,
}

#[async_trait]
impl TransportReceiver for WebRtcReceiver {
    async fn recv(&mut self) -> Result<Option<Bytes>, TransportError> {
        // `mpsc::Receiver::recv` is cancel-safe, as the trait requires.
        Ok(self.receiver.recv().await)
    }
}

/// The connection reads the path through a weak handle, so a [`crate::Connection`] kept after
/// its close does not keep the peer connection alive.
#[async_trait]
impl PathProbe for WeakWebRtcLink {
    async fn path(&self) -> Option<PathReport> {
        self.upgrade()?.path().await
    }
}
