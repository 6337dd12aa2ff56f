//! The signal format: JSON compatible with simple-peer's `signal` data, plus optional fields.
//!
//! ```json
//! {"type":"offer","sdp":"v=0…","connectionId":"c1","iceRestart":false}
//! {"type":"answer","sdp":"v=0…","connectionId":"c1"}
//! {"type":"candidate","candidate":{"candidate":"candidate:1 1 udp …","sdpMLineIndex":0,"sdpMid":"0"},"connectionId":"c1"}
//! {"type":"renegotiate","renegotiate":true,"iceRestart":true,"connectionId":"c1"}
//! ```
//!
//! `connectionId` and `iceRestart` are ours and optional; simple-peer ignores them and we
//! accept signals without them. See `docs/protocol/webrtc.md`.

use serde::{Deserialize, Serialize};

use super::error::WebRtcError;

/// Largest signal accepted by [`Signal::from_json`] (an SDP with every candidate inlined stays
/// far below this; anything larger is a broken or hostile peer).
pub const MAX_SIGNAL_LEN: usize = 64 * 1024;
/// Largest candidate line accepted (real ones are under 300 bytes).
pub const MAX_CANDIDATE_LEN: usize = 1024;

/// One signaling message between the two ends of a WebRTC link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
#[non_exhaustive]
pub enum Signal {
    /// The offerer's session description.
    Offer {
        /// The SDP text.
        sdp: String,
        /// Which link this belongs to, when one signaling path carries several.
        #[serde(
            rename = "connectionId",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        connection_id: Option<String>,
        /// Set on an offer that restarts ICE on an established link.
        #[serde(rename = "iceRestart", default, skip_serializing_if = "is_false")]
        ice_restart: bool,
    },
    /// The answerer's session description.
    Answer {
        /// The SDP text.
        sdp: String,
        /// Which link this belongs to.
        #[serde(
            rename = "connectionId",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        connection_id: Option<String>,
    },
    /// The answerer asks the offerer to negotiate again (simple-peer's
    /// `{type:'renegotiate', renegotiate:true}`); with `iceRestart`, the offerer answers with
    /// an ICE-restart offer. Roles stay fixed, so only the offerer ever offers.
    Renegotiate {
        /// Always true (simple-peer's field).
        #[serde(default)]
        renegotiate: bool,
        /// Ask for an ICE restart.
        #[serde(rename = "iceRestart", default, skip_serializing_if = "is_false")]
        ice_restart: bool,
        /// Which link this belongs to.
        #[serde(
            rename = "connectionId",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        connection_id: Option<String>,
    },
    /// One trickled ICE candidate.
    Candidate {
        /// The candidate, in the browser's `RTCIceCandidateInit` shape.
        candidate: IceCandidate,
        /// Which link this belongs to.
        #[serde(
            rename = "connectionId",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        connection_id: Option<String>,
    },
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// An ICE candidate as browsers serialise `RTCIceCandidate.toJSON()`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceCandidate {
    /// The `candidate:` attribute line; empty means end of candidates.
    pub candidate: String,
    /// The m-line index the candidate belongs to.
    #[serde(rename = "sdpMLineIndex", default)]
    pub sdp_m_line_index: Option<u16>,
    /// The media id the candidate belongs to.
    #[serde(rename = "sdpMid", default)]
    pub sdp_mid: Option<String>,
    /// The ICE username fragment, when the sender includes it.
    #[serde(
        rename = "usernameFragment",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub username_fragment: Option<String>,
}

impl Signal {
    /// Parses a signal, enforcing [`MAX_SIGNAL_LEN`].
    pub fn from_json(json: &str) -> Result<Self, WebRtcError> {
        if json.len() > MAX_SIGNAL_LEN {
            return Err(WebRtcError::TooLarge {
                what: "signal",
                size: json.len(),
                limit: MAX_SIGNAL_LEN,
            });
        }
        serde_json::from_str(json).map_err(|e| WebRtcError::MalformedSignal(e.to_string()))
    }

    /// Serialises the signal as JSON.
    pub fn to_json(&self) -> String {
        // A derived Serialize over strings, bools and integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The `type` field: `"offer"`, `"answer"`, `"renegotiate"` or `"candidate"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Offer { .. } => "offer",
            Self::Answer { .. } => "answer",
            Self::Renegotiate { .. } => "renegotiate",
            Self::Candidate { .. } => "candidate",
        }
    }

    /// The connection id, if the signal carries one.
    pub fn connection_id(&self) -> Option<&str> {
        match self {
            Self::Offer { connection_id, .. }
            | Self::Answer { connection_id, .. }
            | Self::Renegotiate { connection_id, .. }
            | Self::Candidate { connection_id, .. } => connection_id.as_deref(),
        }
    }
}
