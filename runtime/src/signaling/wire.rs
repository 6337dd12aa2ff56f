//! Byte layouts of the signaling protocol the client needs: the signed authentication message,
//! relay frames and the relay-link header inside their payloads.

use bytes::{BufMut, Bytes, BytesMut};

/// Domain-separation label of the authentication signature.
pub(crate) const AUTH_LABEL: &[u8] = b"peerlink/signal-auth/v1\0";
/// First byte of a relay frame.
pub(crate) const RELAY_FRAME_VERSION: u8 = 1;
/// Relay-link payload kinds.
pub(crate) const LINK_OPEN: u8 = 0;
pub(crate) const LINK_DATA: u8 = 1;
pub(crate) const LINK_CLOSE: u8 = 2;
/// Kind byte plus link id.
pub(crate) const LINK_HEADER: usize = 5;

/// `label || challenge || u16be len || host || u16be len || deviceId || u16be len || userId`.
pub(crate) fn auth_message(
    challenge: &[u8],
    host: &str,
    device_id: &str,
    user_id: &str,
) -> Vec<u8> {
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

/// The `Host` header value a WebSocket client sends for `url`: the URL's authority without
/// credentials, exactly as written (so a default port stays implicit).
pub(crate) fn host_of(url: &str) -> Option<&str> {
    let (_, rest) = url.trim().split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..end)?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    (!host.is_empty()).then_some(host)
}

/// A relay frame to `device_id` carrying a relay-link message.
pub(crate) fn link_frame(device_id: &str, kind: u8, link_id: u32, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(3 + device_id.len() + LINK_HEADER + body.len());
    out.put_u8(RELAY_FRAME_VERSION);
    out.put_u16(u16::try_from(device_id.len()).unwrap_or(u16::MAX));
    out.put_slice(device_id.as_bytes());
    out.put_u8(kind);
    out.put_u32(link_id);
    out.put_slice(body);
    out.freeze()
}

/// A relay-link message received from `from`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LinkMessage {
    pub(crate) from: String,
    pub(crate) kind: u8,
    pub(crate) link_id: u32,
    pub(crate) body: Bytes,
}

/// Parses a relay frame from the server; `None` for anything malformed.
pub(crate) fn parse_link_frame(frame: &Bytes) -> Option<LinkMessage> {
    let (&version, rest) = frame.split_first()?;
    if version != RELAY_FRAME_VERSION {
        return None;
    }
    let len = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
    let from = std::str::from_utf8(rest.get(2..2 + len)?).ok()?.to_owned();
    let payload_at = 3 + len;
    let kind = *frame.get(payload_at)?;
    let link_id = u32::from_be_bytes(
        frame
            .get(payload_at + 1..payload_at + LINK_HEADER)?
            .try_into()
            .ok()?,
    );
    let body = frame.slice(payload_at + LINK_HEADER..);
    Some(LinkMessage {
        from,
        kind,
        link_id,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_is_the_authority_as_written() {
        assert_eq!(host_of("ws://127.0.0.1:8787/ws"), Some("127.0.0.1:8787"));
        assert_eq!(
            host_of("wss://Signal.Example.org/ws?x=1"),
            Some("Signal.Example.org")
        );
        assert_eq!(host_of("ws://u:p@[::1]:9/"), Some("[::1]:9"));
        assert_eq!(host_of("ws:///ws"), None);
        assert_eq!(host_of("nonsense"), None);
    }

    #[test]
    fn link_frames_round_trip_as_the_server_rewrites_them() {
        // The server swaps the target id for the sender id and keeps the payload.
        let sent = link_frame("bob", LINK_DATA, 7, b"ciphertext");
        let payload = sent.slice(3 + 3..);
        let mut received = BytesMut::new();
        received.put_u8(1);
        received.put_u16(5);
        received.put_slice(b"alice");
        received.put_slice(&payload);
        let m = parse_link_frame(&received.freeze()).unwrap();
        assert_eq!(
            m,
            LinkMessage {
                from: "alice".into(),
                kind: LINK_DATA,
                link_id: 7,
                body: Bytes::from_static(b"ciphertext")
            }
        );
    }

    #[test]
    fn malformed_frames_are_rejected() {
        for bad in [
            &[][..],
            &[2, 0, 1, b'a', 1, 0, 0, 0, 1],
            &[1, 0, 1, b'a', 1, 0, 0],
            &[1, 0, 9, b'a'],
        ] {
            assert!(
                parse_link_frame(&Bytes::copy_from_slice(bad)).is_none(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn auth_message_matches_the_documented_layout() {
        let m = auth_message(&[1; 32], "h", "dd", "u");
        assert_eq!(&m[..24], b"peerlink/signal-auth/v1\0");
        assert_eq!(&m[24..56], &[1; 32]);
        assert_eq!(&m[56..], &[0, 1, b'h', 0, 2, b'd', b'd', 0, 1, b'u']);
    }
}
