//! WebRTC data-channel links on the `webrtc` crate (0.21 line).
//!
//! A [`WebRtcLink`] owns one peer connection: it runs the offer/answer exchange through
//! [`Signal`]s (simple-peer compatible JSON), trickles or bundles ICE candidates, reports
//! [`LinkState`]s, opens [`WebRtcChannel`]s and reads both DTLS fingerprints from the
//! exchanged descriptions for the handshake's link binding. The signal format and the design
//! are in `docs/protocol/webrtc.md`; the tuning and its measurements in
//! `docs/decisions/webrtc-performance.md`.
//!
//! A link runs its tasks on the tokio runtime it was created in. For the shortest round trip,
//! await [`ChannelReceiver::recv`] from a task on that runtime (`tokio::spawn`) rather than from
//! a thread of your own or `block_on`: a message then reaches the task on the worker that read
//! its datagram, without waking another thread. On an idle two-core machine a 1 KiB echo takes
//! about 25 µs that way, and 30 or 120–180 µs from another thread, depending on which cores the
//! threads sleep on.

mod channel;
pub mod compact;
mod config;
mod error;
mod link;
mod options;
mod path;
mod priority;
pub(crate) mod sdp;
mod signal;
mod socket;
mod transport;

pub use crate::transport::{PathCandidate, PathReport};
pub use channel::{ChannelReceiver, ChannelSender, ChannelState, WebRtcChannel};
pub use config::{
    ChannelOptions, IceCredentials, IceRestartPolicy, IceServer, IceTimeouts, IceTransportPolicy,
    IceUrlKind, SctpCongestionControl, SendPacing, Tuning, WebRtcConfig,
};
pub use error::WebRtcError;
pub use link::{
    ENGINE_MAX_MESSAGE_SIZE, Fingerprints, LinkState, SkippedIceUrl, WeakWebRtcLink, WebRtcEvent,
    WebRtcEvents, WebRtcLink, WebRtcRole,
};
pub use options::WebRtcOptions;
pub use priority::ChannelPriority;
pub use sdp::{DEFAULT_MAX_MESSAGE_SIZE, MAX_SDP_LEN, max_message_size, sha256_fingerprint};
pub use signal::{IceCandidate, MAX_CANDIDATE_LEN, MAX_SIGNAL_LEN, Signal};
pub use socket::PathCut;
pub use transport::WebRtcTransport;
