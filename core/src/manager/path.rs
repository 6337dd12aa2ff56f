//! Kinds of path a connection can take.

use serde::{Deserialize, Serialize};

/// How a connection reaches the remote device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PathKind {
    /// WebSocket over TLS.
    Wss,
    /// Plain WebSocket (LAN).
    Ws,
    /// WebRTC data channel (direct or through TURN).
    WebRtc,
    /// Frames relayed by a signaling server.
    Relay,
    /// In-process link (tests).
    Memory,
}

impl PathKind {
    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wss => "wss",
            Self::Ws => "ws",
            Self::WebRtc => "webrtc",
            Self::Relay => "relay",
            Self::Memory => "memory",
        }
    }
}

impl std::fmt::Display for PathKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
