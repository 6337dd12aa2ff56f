//! The wire protocol: JSON text messages, binary relay frames, error codes and the bytes a
//! client signs. `docs/protocol/signaling.md` is the normative description; this module is
//! the server's reading of it.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Protocol version spoken by this server.
pub const PROTOCOL_VERSION: u32 = 1;

/// Domain-separation label that starts the signed authentication message.
pub const AUTH_LABEL: &[u8] = b"peerlink/signal-auth/v1\0";

/// Length of a challenge, in bytes (sent base64-encoded).
pub const CHALLENGE_LEN: usize = 32;

/// First byte of a binary relay frame.
pub const RELAY_FRAME_VERSION: u8 = 1;

/// Longest accepted `deviceId` / `userId`, in bytes (as in the device info of the core).
pub const MAX_ID_BYTES: usize = peerlink_core::identity::MAX_ID_BYTES;

/// Longest accepted room name, in bytes.
pub const MAX_ROOM_BYTES: usize = 128;

/// Longest accepted `host` in an `auth` message, in bytes.
pub const MAX_HOST_BYTES: usize = 255;

/// The bytes a client signs to authenticate:
/// `AUTH_LABEL || challenge || u16be(len(host)) || host || u16be(len(deviceId)) || deviceId ||
/// u16be(len(userId)) || userId`, strings as UTF-8.
///
/// Callers bound each string by the protocol limits (≤ 255 bytes), so the lengths always fit.
pub fn auth_message(challenge: &[u8], host: &str, device_id: &str, user_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        AUTH_LABEL.len() + challenge.len() + 6 + host.len() + device_id.len() + user_id.len(),
    );
    out.extend_from_slice(AUTH_LABEL);
    out.extend_from_slice(challenge);
    for part in [host, device_id, user_id] {
        let len = u16::try_from(part.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// Every error the server reports, with its stable wire code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The text is not a JSON object with a string `type`.
    InvalidJson,
    /// A known message type with a missing or ill-typed field.
    InvalidMessage,
    /// A message type the server does not know.
    UnknownType,
    /// A message other than `auth` (or any binary frame) before authentication.
    NotAuthenticated,
    /// A second `auth` on an authenticated connection.
    AlreadyAuthenticated,
    /// The client's protocol version is not supported.
    UnsupportedVersion,
    /// The signature does not verify over this connection's challenge.
    BadSignature,
    /// The signed `host` is not the one this server is reached at.
    HostMismatch,
    /// Admission control refused the key (not on the allow-list, or no valid token).
    NotAdmitted,
    /// The `deviceId` is held by a connection with a different public key.
    DeviceIdTaken,
    /// No successful `auth` within the authentication timeout.
    AuthTimeout,
    /// A message or frame larger than the server accepts.
    TooLarge,
    /// The connection or its IP address exceeded a message rate.
    RateLimited,
    /// The target device is not connected.
    TargetOffline,
    /// The target device's queue is full; retry later.
    TargetBusy,
    /// The connection is already in the maximum number of rooms.
    RoomLimit,
    /// The room has the maximum number of members.
    RoomFull,
    /// `leave` for a room the connection is not in.
    NotInRoom,
    /// TURN credentials requested but the server has no TURN secret.
    TurnUnavailable,
    /// A binary frame that does not follow the relay frame layout.
    InvalidFrame,
    /// Too many connections from this IP address.
    TooManyConnections,
    /// Too many rejected messages in one heartbeat interval.
    Abuse,
    /// Nothing received within the heartbeat timeout.
    HeartbeatTimeout,
    /// A newer connection of the same device (same key) took over.
    Replaced,
    /// The connection could not keep up with what was sent to it.
    SlowConsumer,
    /// The server could not complete the request (for example the Redis backplane failed).
    Internal,
}

impl ErrorCode {
    /// Every code, in a fixed order (metrics index by it).
    pub const ALL: [ErrorCode; 26] = [
        Self::InvalidJson,
        Self::InvalidMessage,
        Self::UnknownType,
        Self::NotAuthenticated,
        Self::AlreadyAuthenticated,
        Self::UnsupportedVersion,
        Self::BadSignature,
        Self::HostMismatch,
        Self::NotAdmitted,
        Self::DeviceIdTaken,
        Self::AuthTimeout,
        Self::TooLarge,
        Self::RateLimited,
        Self::TargetOffline,
        Self::TargetBusy,
        Self::RoomLimit,
        Self::RoomFull,
        Self::NotInRoom,
        Self::TurnUnavailable,
        Self::InvalidFrame,
        Self::TooManyConnections,
        Self::Abuse,
        Self::HeartbeatTimeout,
        Self::Replaced,
        Self::SlowConsumer,
        Self::Internal,
    ];

    /// The stable snake_case code sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::InvalidMessage => "invalid_message",
            Self::UnknownType => "unknown_type",
            Self::NotAuthenticated => "not_authenticated",
            Self::AlreadyAuthenticated => "already_authenticated",
            Self::UnsupportedVersion => "unsupported_version",
            Self::BadSignature => "bad_signature",
            Self::HostMismatch => "host_mismatch",
            Self::NotAdmitted => "not_admitted",
            Self::DeviceIdTaken => "device_id_taken",
            Self::AuthTimeout => "auth_timeout",
            Self::TooLarge => "too_large",
            Self::RateLimited => "rate_limited",
            Self::TargetOffline => "target_offline",
            Self::TargetBusy => "target_busy",
            Self::RoomLimit => "room_limit",
            Self::RoomFull => "room_full",
            Self::NotInRoom => "not_in_room",
            Self::TurnUnavailable => "turn_unavailable",
            Self::InvalidFrame => "invalid_frame",
            Self::TooManyConnections => "too_many_connections",
            Self::Abuse => "abuse",
            Self::HeartbeatTimeout => "heartbeat_timeout",
            Self::Replaced => "replaced",
            Self::SlowConsumer => "slow_consumer",
            Self::Internal => "internal",
        }
    }

    /// Whether the server closes the connection after sending this error.
    pub fn is_fatal(self) -> bool {
        matches!(
            self,
            Self::UnsupportedVersion
                | Self::BadSignature
                | Self::HostMismatch
                | Self::NotAdmitted
                | Self::DeviceIdTaken
                | Self::AuthTimeout
                | Self::TooManyConnections
                | Self::Abuse
                | Self::HeartbeatTimeout
                | Self::Replaced
                | Self::SlowConsumer
        )
    }

    /// Position in [`ErrorCode::ALL`].
    pub fn index(self) -> usize {
        Self::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }

    /// A short human-readable description (also sent as `message`).
    pub fn describe(self) -> &'static str {
        match self {
            Self::InvalidJson => "message is not a JSON object with a string type",
            Self::InvalidMessage => "missing or invalid field",
            Self::UnknownType => "unknown message type",
            Self::NotAuthenticated => "authenticate first",
            Self::AlreadyAuthenticated => "already authenticated",
            Self::UnsupportedVersion => "unsupported protocol version",
            Self::BadSignature => "signature does not verify",
            Self::HostMismatch => "signed host does not match this server",
            Self::NotAdmitted => "not admitted",
            Self::DeviceIdTaken => "device id is in use by another key",
            Self::AuthTimeout => "authentication timed out",
            Self::TooLarge => "message too large",
            Self::RateLimited => "rate limit exceeded",
            Self::TargetOffline => "target device is not connected",
            Self::TargetBusy => "target device is busy",
            Self::RoomLimit => "too many rooms",
            Self::RoomFull => "room is full",
            Self::NotInRoom => "not in this room",
            Self::TurnUnavailable => "no TURN service configured",
            Self::InvalidFrame => "invalid relay frame",
            Self::TooManyConnections => "too many connections from this address",
            Self::Abuse => "too many rejected messages",
            Self::HeartbeatTimeout => "heartbeat timeout",
            Self::Replaced => "replaced by a newer connection of this device",
            Self::SlowConsumer => "connection too slow",
            Self::Internal => "internal server error",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One message from a client, borrowed from the received text. Unknown fields are ignored
/// so that newer clients can add optional fields.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    pub(crate) kind: Cow<'a, str>,
    #[serde(default)]
    pub(crate) id: Option<u64>,
    #[serde(default)]
    pub(crate) v: Option<u32>,
    #[serde(default, borrow)]
    pub(crate) public_key: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) device_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) user_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) signature: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) host: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) token: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) room: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) to: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) data: Option<&'a RawValue>,
}

/// A room member as listed to other members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// The member's device id.
    pub device_id: String,
    /// The member's user id.
    pub user_id: String,
    /// The member's Ed25519 public key, standard base64.
    pub public_key: String,
}

/// Messages the server sends (serialised with `type` as tag).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub(crate) enum Outgoing<'a> {
    Challenge {
        v: u32,
        versions: &'a [u32],
        challenge: &'a str,
        #[serde(rename = "heartbeatMs")]
        heartbeat_ms: u64,
        #[serde(rename = "timeoutMs")]
        timeout_ms: u64,
        limits: Limits,
    },
    Welcome {
        #[serde(skip_serializing_if = "Option::is_none")]
        re: Option<u64>,
        #[serde(rename = "deviceId")]
        device_id: &'a str,
        #[serde(rename = "userId")]
        user_id: &'a str,
        #[serde(rename = "publicKey")]
        public_key: &'a str,
    },
    Members {
        #[serde(skip_serializing_if = "Option::is_none")]
        re: Option<u64>,
        room: &'a str,
        #[serde(rename = "self")]
        self_id: &'a str,
        members: &'a [Member],
    },
    Joined {
        room: &'a str,
        member: &'a Member,
    },
    Left {
        #[serde(skip_serializing_if = "Option::is_none")]
        re: Option<u64>,
        room: &'a str,
        #[serde(rename = "deviceId")]
        device_id: &'a str,
    },
    /// Built by [`signal_text`] on the relay path; kept as the reference its tests compare to.
    #[cfg(test)]
    Signal {
        from: &'a str,
        #[serde(rename = "fromUserId")]
        from_user_id: &'a str,
        #[serde(rename = "fromPublicKey")]
        from_public_key: &'a str,
        data: &'a RawValue,
    },
    Turn {
        #[serde(skip_serializing_if = "Option::is_none")]
        re: Option<u64>,
        username: &'a str,
        credential: &'a str,
        ttl: u64,
        urls: &'a [String],
    },
    Ok {
        re: u64,
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        re: Option<u64>,
    },
    Error {
        code: &'a str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        re: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        to: Option<&'a str>,
    },
    Reconnect {
        reason: &'a str,
        #[serde(rename = "retryMs")]
        retry_ms: u64,
    },
}

impl Outgoing<'_> {
    /// Serialises to JSON text. Serialising these plain structures cannot fail; an empty
    /// object stands in should it ever do.
    pub(crate) fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// Everything of a relayed `signal` from `from` that comes before its `data`: the server's
/// stamp of the sender. Built once per authenticated connection, so relaying a signal copies
/// it and the client's `data` and serialises nothing.
pub(crate) fn signal_head(from: &Member) -> Box<str> {
    let mut out =
        Vec::with_capacity(64 + from.device_id.len() + from.user_id.len() + from.public_key.len());
    out.extend_from_slice(br#"{"type":"signal","from":"#);
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, &from.device_id);
    out.extend_from_slice(br#","fromUserId":"#);
    let _ = serde_json::to_writer(&mut out, &from.user_id);
    out.extend_from_slice(br#","fromPublicKey":"#);
    let _ = serde_json::to_writer(&mut out, &from.public_key);
    out.extend_from_slice(br#","data":"#);
    // Only UTF-8 went in: JSON-escaped strings.
    String::from_utf8(out)
        .unwrap_or_else(|_| r#"{"type":"signal","data":"#.to_owned())
        .into_boxed_str()
}

/// The relayed `signal` for `data` under `head` (from [`signal_head`]): the same text as
/// serialising [`Outgoing::Signal`], built into one allocation of the right size (this is the
/// hot path of the relay; `data` is copied as received, never re-serialised).
pub(crate) fn signal_text(head: &str, data: &RawValue) -> String {
    let data = data.get();
    let mut out = String::with_capacity(head.len() + data.len() + 1);
    out.push_str(head);
    out.push_str(data);
    out.push('}');
    out
}

/// Limits announced in the challenge so that clients can size what they send.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Limits {
    pub(crate) max_text_bytes: usize,
    pub(crate) max_relay_payload: usize,
    pub(crate) max_rooms: usize,
}

/// Error text for a code, with optional request id and target.
pub(crate) fn error_text(code: ErrorCode, re: Option<u64>, to: Option<&str>) -> String {
    Outgoing::Error {
        code: code.as_str(),
        message: code.describe(),
        re,
        to,
    }
    .to_text()
}

/// A parsed binary relay frame header: `version u8 | u16be len | deviceId | payload`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RelayHeader<'a> {
    pub(crate) device_id: &'a str,
    pub(crate) payload_offset: usize,
}

/// Parses the header of a relay frame.
pub(crate) fn parse_relay_frame(frame: &[u8]) -> Option<RelayHeader<'_>> {
    let (&version, rest) = frame.split_first()?;
    if version != RELAY_FRAME_VERSION {
        return None;
    }
    let len_bytes: [u8; 2] = rest.get(..2)?.try_into().ok()?;
    let len = usize::from(u16::from_be_bytes(len_bytes));
    if len == 0 || len > MAX_ID_BYTES {
        return None;
    }
    let id = rest.get(2..2 + len)?;
    let device_id = std::str::from_utf8(id).ok()?;
    Some(RelayHeader {
        device_id,
        payload_offset: 3 + len,
    })
}

/// Builds a relay frame for `device_id` around `payload`.
pub fn relay_frame(device_id: &str, payload: &[u8]) -> bytes::Bytes {
    let mut out = bytes::BytesMut::with_capacity(3 + device_id.len() + payload.len());
    out.extend_from_slice(&[RELAY_FRAME_VERSION]);
    let len = u16::try_from(device_id.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(device_id.as_bytes());
    out.extend_from_slice(payload);
    out.freeze()
}

/// Checks an id (`deviceId`, `userId`): 1..=256 bytes, no control characters.
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_BYTES && !id.chars().any(char::is_control)
}

/// Checks a room name: 1..=128 bytes, no control characters.
pub(crate) fn valid_room(room: &str) -> bool {
    !room.is_empty() && room.len() <= MAX_ROOM_BYTES && !room.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_text_is_the_serialised_signal() {
        let data: Box<RawValue> =
            serde_json::from_str(r#"{"sdp":"v=0\r\n","n":[1,2.5,null],"s":"\u00e9\"q"}"#).unwrap();
        for (device_id, user_id) in [("d1", "u1"), ("dev \"quoted\" \u{e9}", "user\\back")] {
            let from = Member {
                device_id: device_id.to_owned(),
                user_id: user_id.to_owned(),
                public_key: "AAAAC3NzaC1lZDI1NTE5AAAAIJ+/=".to_owned(),
            };
            let expected = Outgoing::Signal {
                from: &from.device_id,
                from_user_id: &from.user_id,
                from_public_key: &from.public_key,
                data: &data,
            }
            .to_text();
            let text = signal_text(&signal_head(&from), &data);
            assert_eq!(text, expected);
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["from"], device_id);
            assert_eq!(v["fromUserId"], user_id);
            assert_eq!(v["data"]["s"], "\u{e9}\"q");
        }
    }

    #[test]
    fn relay_frame_round_trips() {
        let frame = relay_frame("dev-b", b"payload");
        let header = parse_relay_frame(&frame).unwrap();
        assert_eq!(header.device_id, "dev-b");
        assert_eq!(&frame[header.payload_offset..], b"payload");
    }

    #[test]
    fn relay_frame_rejects_bad_headers() {
        assert!(parse_relay_frame(&[]).is_none());
        assert!(parse_relay_frame(&[2, 0, 1, b'a']).is_none());
        assert!(parse_relay_frame(&[1, 0, 0]).is_none());
        assert!(parse_relay_frame(&[1, 0, 5, b'a']).is_none());
        assert!(parse_relay_frame(&[1, 0, 1, 0xff]).is_none());
    }

    #[test]
    fn auth_message_layout_is_fixed() {
        let msg = auth_message(&[7u8; 32], "h:1", "d", "uu");
        let mut expected = AUTH_LABEL.to_vec();
        expected.extend_from_slice(&[7u8; 32]);
        expected.extend_from_slice(&[0, 3, b'h', b':', b'1', 0, 1, b'd', 0, 2, b'u', b'u']);
        assert_eq!(msg, expected);
    }

    #[test]
    fn every_code_is_listed_once_with_a_distinct_name() {
        let names: std::collections::HashSet<_> =
            ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(code.index(), i);
        }
    }
}
