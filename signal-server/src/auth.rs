//! Challenge/response authentication and admission control.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use peerlink_core::identity::{PublicKey, Signature};

use crate::config::Admission;
use crate::protocol::{ErrorCode, MAX_HOST_BYTES, auth_message, valid_id};

/// What an `auth` message claims, already pulled out of the JSON.
#[derive(Debug)]
pub(crate) struct AuthClaim<'a> {
    pub(crate) version: u32,
    pub(crate) public_key: &'a str,
    pub(crate) device_id: &'a str,
    pub(crate) user_id: &'a str,
    pub(crate) signature: &'a str,
    pub(crate) host: &'a str,
    pub(crate) token: Option<&'a str>,
}

/// A verified session identity.
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    pub(crate) public_key: PublicKey,
}

/// Checks an `auth` claim against this connection's challenge and the admission rules.
///
/// `request_host` is the `Host` header of the WebSocket upgrade; `allowed_hosts` overrides it
/// when non-empty. `now_unix_secs` checks token expiry.
pub(crate) fn verify(
    claim: &AuthClaim<'_>,
    challenge: &[u8],
    request_host: Option<&str>,
    allowed_hosts: &[String],
    admission: &Admission,
    now_unix_secs: u64,
) -> Result<Verified, ErrorCode> {
    if claim.version != crate::protocol::PROTOCOL_VERSION {
        return Err(ErrorCode::UnsupportedVersion);
    }
    if !valid_id(claim.device_id)
        || !valid_id(claim.user_id)
        || claim.host.is_empty()
        || claim.host.len() > MAX_HOST_BYTES
    {
        return Err(ErrorCode::InvalidMessage);
    }
    let public_key =
        PublicKey::from_base64(claim.public_key).map_err(|_| ErrorCode::InvalidMessage)?;
    let signature =
        Signature::from_base64(claim.signature).map_err(|_| ErrorCode::InvalidMessage)?;
    let message = auth_message(challenge, claim.host, claim.device_id, claim.user_id);
    public_key
        .verify(&message, &signature)
        .map_err(|_| ErrorCode::BadSignature)?;
    let host_ok = if allowed_hosts.is_empty() {
        request_host.is_some_and(|h| h.eq_ignore_ascii_case(claim.host))
    } else {
        allowed_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(claim.host))
    };
    if !host_ok {
        return Err(ErrorCode::HostMismatch);
    }
    match admission {
        Admission::Open => {}
        Admission::AllowList(keys) => {
            if !keys.contains(&public_key) {
                return Err(ErrorCode::NotAdmitted);
            }
        }
        Admission::Token { secret } => {
            let token = claim.token.ok_or(ErrorCode::NotAdmitted)?;
            if !check_token(secret, token, &public_key, now_unix_secs) {
                return Err(ErrorCode::NotAdmitted);
            }
        }
    }
    Ok(Verified { public_key })
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn token_mac(secret: &[u8], body: &str) -> Option<Hmac<sha2::Sha256>> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).ok()?;
    mac.update(body.as_bytes());
    Some(mac)
}

/// Mints an admission token for `public_key`, valid until `expiry_unix_secs`:
/// `v1.<expiry>.<base64url(publicKey)>.<base64url(HMAC-SHA256(secret, "v1.<expiry>.<base64url(publicKey)>"))>`
/// (base64url without padding).
pub fn mint_token(secret: &[u8], public_key: &PublicKey, expiry_unix_secs: u64) -> String {
    let body = format!("v1.{expiry_unix_secs}.{}", b64url(public_key.as_bytes()));
    match token_mac(secret, &body) {
        Some(mac) => format!("{body}.{}", b64url(&mac.finalize().into_bytes())),
        None => body,
    }
}

/// Whether `token` admits `public_key` at `now_unix_secs`.
pub(crate) fn check_token(
    secret: &[u8],
    token: &str,
    public_key: &PublicKey,
    now_unix_secs: u64,
) -> bool {
    let Some((body, mac_text)) = token.rsplit_once('.') else {
        return false;
    };
    let mut parts = body.split('.');
    let (Some("v1"), Some(expiry), Some(key), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Ok(expiry) = expiry.parse::<u64>() else {
        return false;
    };
    if expiry < now_unix_secs || key != b64url(public_key.as_bytes()) {
        return false;
    }
    let Ok(tag) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(mac_text) else {
        return false;
    };
    // `verify_slice` compares in constant time.
    token_mac(secret, body).is_some_and(|mac| mac.verify_slice(&tag).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use peerlink_core::identity::Identity;

    #[test]
    fn token_round_trips_and_binds_key_and_expiry() {
        let a = Identity::from_seed(&[1; 32]).public_key();
        let b = Identity::from_seed(&[2; 32]).public_key();
        let token = mint_token(b"gate", &a, 1_000);
        assert!(check_token(b"gate", &token, &a, 999));
        assert!(check_token(b"gate", &token, &a, 1_000));
        assert!(!check_token(b"gate", &token, &a, 1_001), "expired");
        assert!(!check_token(b"gate", &token, &b, 999), "other key");
        assert!(!check_token(b"other", &token, &a, 999), "other secret");
        let forged = token.replace("v1.1000.", "v1.9000.");
        assert!(!check_token(b"gate", &forged, &a, 999), "edited expiry");
        assert!(!check_token(b"gate", "garbage", &a, 0));
        assert!(!check_token(b"gate", "v1.1.2.3.4", &a, 0));
    }
}
