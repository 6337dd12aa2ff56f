//! Entry points for the fuzz targets in `fuzz/`: decoders private to this crate, passed through
//! unchanged so the targets run exactly the code the runtime runs. Not a stable API.

use bytes::Bytes;
use serde_json::Value;

use crate::signaling::{Member, SignalingError, TurnCredentials};

/// A relay-link message as the signaling client parses it from a server frame.
#[derive(Debug, PartialEq, Eq)]
pub struct LinkFrame {
    /// Sender device id.
    pub from: String,
    /// Payload kind byte.
    pub kind: u8,
    /// Link id.
    pub link_id: u32,
    /// Payload after the link header.
    pub body: Vec<u8>,
}

/// Parses a binary relay frame from the signaling server (`None` when malformed).
pub fn parse_link_frame(frame: &[u8]) -> Option<LinkFrame> {
    crate::signaling::wire::parse_link_frame(&Bytes::copy_from_slice(frame)).map(|m| LinkFrame {
        from: m.from,
        kind: m.kind,
        link_id: m.link_id,
        body: m.body.to_vec(),
    })
}

/// Builds a relay frame to `device_id` (the client's encoder; the server swaps in the sender).
pub fn link_frame(device_id: &str, kind: u8, link_id: u32, body: &[u8]) -> Vec<u8> {
    crate::signaling::wire::link_frame(device_id, kind, link_id, body).to_vec()
}

/// The `Host` value the client signs for a signaling URL.
pub fn host_of(url: &str) -> Option<&str> {
    crate::signaling::wire::host_of(url)
}

/// What the client reads out of one server JSON message.
#[derive(Debug)]
pub struct ServerText {
    /// The parsed value.
    pub value: Value,
    /// A `members` list, as for `members` replies.
    pub members: Result<Vec<Member>, SignalingError>,
    /// A `member`, as for `joined` events.
    pub member: Option<Member>,
    /// The error an `error` message maps to.
    pub error: SignalingError,
    /// TURN credentials, as for `turn` replies.
    pub turn: Option<TurnCredentials>,
}

/// Decodes a server text message the way the signaling client does (`None` when not JSON).
pub fn signaling_server_text(text: &str) -> Option<ServerText> {
    let value = serde_json::from_str::<Value>(text).ok()?;
    Some(ServerText {
        members: crate::signaling::client::members_of(&value),
        member: serde_json::from_value(value["member"].clone()).ok(),
        error: crate::signaling::client::server_error(&value),
        turn: serde_json::from_value(value.clone()).ok(),
        value,
    })
}

/// Checks size and shape of a remote SDP before the engine sees it.
pub fn check_sdp(sdp: &str) -> Result<(), crate::webrtc::WebRtcError> {
    crate::webrtc::sdp::check_sdp(sdp)
}

/// The remote description as handed to the engine (`max-message-size` rewritten to `0`).
pub fn sdp_for_engine(sdp: &str) -> String {
    crate::webrtc::sdp::for_engine(sdp)
}

/// An offer as sent (`a=setup:actpass` becomes `active`).
pub fn offer_as_active(sdp: &str) -> String {
    crate::webrtc::sdp::offer_as_active(sdp)
}

/// Whether a description carries candidates.
pub fn has_candidates(sdp: &str) -> bool {
    crate::webrtc::sdp::has_candidates(sdp)
}

/// Decodes a group-broadcast relay request: `(group, name, arguments)`.
pub fn decode_hub_relay(body: &[u8]) -> Option<(String, String, Vec<u8>)> {
    crate::manager::hub::decode_relay(&Bytes::copy_from_slice(body))
        .ok()
        .map(|(g, n, a)| (g, n, a.to_vec()))
}

/// Encodes a group-broadcast relay request.
pub fn encode_hub_relay(group: &str, name: &str, args: &[u8]) -> Option<Vec<u8>> {
    crate::manager::hub::encode_relay(group, name, args)
        .ok()
        .map(|b| b.to_vec())
}
