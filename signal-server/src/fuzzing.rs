//! Entry points for the fuzz targets in `fuzz/`: the server's decoders, private to this crate,
//! passed through unchanged so the targets run exactly the code the server runs. Not a stable
//! API.

use crate::auth::{AuthClaim, check_token, verify};
use crate::config::Admission;
use crate::protocol::{
    ErrorCode, Incoming, Member, parse_relay_frame, relay_frame, valid_id, valid_room,
};
use peerlink_core::identity::PublicKey;

/// The challenge [`client_text`] verifies `auth` messages against.
pub const CHALLENGE: [u8; 32] = [0x42; 32];
/// The only host [`client_text`] admits.
pub const HOST: &str = "signal.example.test";
/// The admission-token secret [`client_text`] checks tokens with.
pub const TOKEN_SECRET: &[u8] = b"fuzz-token-secret";
/// The clock [`client_text`] checks token expiry against.
pub const NOW_UNIX_SECS: u64 = 1_700_000_000;

/// What the server reads out of one client text message.
#[derive(Debug)]
pub struct ClientText {
    /// The `type` field.
    pub kind: String,
    /// The request id.
    pub id: Option<u64>,
    /// For `auth` messages with every field present: the verified key, or the refusal.
    pub auth: Option<Result<PublicKey, ErrorCode>>,
    /// The claimed device and user ids, when present.
    pub ids: (Option<String>, Option<String>),
    /// Whether `room` is present and valid.
    pub room_valid: bool,
    /// Whether `to` is present and valid.
    pub to_valid: bool,
    /// The raw `data` JSON, when present.
    pub data: Option<String>,
}

/// Decodes a client text message as the session does (`None` when it is not a valid message),
/// and verifies it when it is an `auth` message (token admission, [`HOST`], [`CHALLENGE`]).
pub fn client_text(text: &str) -> Option<ClientText> {
    let m: Incoming<'_> = serde_json::from_str(text).ok()?;
    let auth = match (
        m.public_key.as_deref(),
        m.device_id.as_deref(),
        m.user_id.as_deref(),
        m.signature.as_deref(),
        m.host.as_deref(),
    ) {
        (Some(public_key), Some(device_id), Some(user_id), Some(signature), Some(host))
            if m.kind == "auth" =>
        {
            let claim = AuthClaim {
                version: m.v.unwrap_or(0),
                public_key,
                device_id,
                user_id,
                signature,
                host,
                token: m.token.as_deref(),
            };
            let admission = Admission::Token {
                secret: TOKEN_SECRET.to_vec(),
            };
            Some(
                verify(
                    &claim,
                    &CHALLENGE,
                    Some(HOST),
                    &[],
                    &admission,
                    NOW_UNIX_SECS,
                )
                .map(|v| v.public_key),
            )
        }
        _ => None,
    };
    Some(ClientText {
        kind: m.kind.to_string(),
        id: m.id,
        auth,
        ids: (
            m.device_id.as_deref().map(str::to_owned),
            m.user_id.as_deref().map(str::to_owned),
        ),
        room_valid: m.room.as_deref().is_some_and(valid_room),
        to_valid: m.to.as_deref().is_some_and(valid_id),
        data: m.data.map(|d| d.get().to_owned()),
    })
}

/// Whether an admission token admits `public_key` at [`NOW_UNIX_SECS`] under [`TOKEN_SECRET`].
pub fn token_admits(token: &str, public_key: &PublicKey) -> bool {
    check_token(TOKEN_SECRET, token, public_key, NOW_UNIX_SECS)
}

/// Parses a relay frame's header: `(target device id, payload)`.
pub fn parse_relay(frame: &[u8]) -> Option<(&str, &[u8])> {
    let header = parse_relay_frame(frame)?;
    Some((header.device_id, frame.get(header.payload_offset..)?))
}

/// Builds a relay frame (as the server forwards it, with the sender's id).
pub fn build_relay(device_id: &str, payload: &[u8]) -> Vec<u8> {
    relay_frame(device_id, payload).to_vec()
}

/// Whether the server accepts `id` as a device or user id.
pub fn is_valid_id(id: &str) -> bool {
    valid_id(id)
}

/// Parses a member record as the Redis backplane stores it.
pub fn backplane_member(json: &str) -> Option<Member> {
    serde_json::from_str(json).ok()
}
