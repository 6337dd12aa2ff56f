//! Identities and signed device info, compatible with TweetNaCl and ed2curve.
//!
//! An identity is an Ed25519 key pair stored the way TweetNaCl stores it: a 64-byte secret key
//! that is the 32-byte seed followed by the 32-byte public key, usually base64-encoded. The box
//! key (X25519) is derived the standard way, as `ed2curve.convertSecretKey` and libsodium's
//! `crypto_sign_ed25519_sk_to_curve25519` do: SHA-512 of the seed, first 32 bytes, clamped.
//! Its public half equals the Montgomery form of the Ed25519 public key, which lets a verifier
//! check that a device's `publicBoxKey` belongs to its `publicKey` without any secret.
//!
//! Signatures over structured data always start with a versioned domain-separation label so a
//! signature made for one purpose can never be replayed as another.

use std::fmt;

use base64::Engine as _;
use ed25519_dalek::Signer as _;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use zeroize::{Zeroize, Zeroizing};

/// Label prepended to the MessagePack body of a device info before signing.
pub const DEVICE_INFO_LABEL: &[u8] = b"peerlink/device-info/v1\0";

/// Longest accepted display name (user or device), in characters.
pub const MAX_NAME_CHARS: usize = 128;
/// Longest accepted `userId` or `deviceId`, in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Most addresses a device info may list.
pub const MAX_ADDRESSES: usize = 32;
/// Longest accepted address, in bytes.
pub const MAX_ADDRESS_BYTES: usize = 512;

/// Errors from loading keys or checking signed device info.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The text is not valid base64 (standard or URL-safe alphabet).
    #[error("invalid base64 in {what}")]
    Base64 {
        /// Which value was being decoded.
        what: &'static str,
    },
    /// A key or signature has the wrong number of bytes.
    #[error("{what} must be {expected} bytes, got {actual}")]
    Length {
        /// Which value had the wrong length.
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Length found.
        actual: usize,
    },
    /// The last 32 bytes of a 64-byte secret key are not the public key of its seed.
    #[error("secret key is inconsistent: its public half does not match its seed")]
    InconsistentSecretKey,
    /// The bytes are not a valid Ed25519 public key (not a curve point).
    #[error("invalid Ed25519 public key")]
    InvalidPublicKey,
    /// A signature does not verify under the claimed public key.
    #[error("signature does not verify")]
    BadSignature,
    /// The `publicBoxKey` in a device info is not derived from its `publicKey`.
    #[error("publicBoxKey does not belong to publicKey")]
    BoxKeyMismatch,
    /// A device-info field breaks a documented limit.
    #[error("invalid device info field {field}: {reason}")]
    InvalidField {
        /// Field name as it appears on the wire (camelCase).
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The signed device info could not be decoded.
    #[error("malformed device info: {0}")]
    Malformed(String),
}

fn decode_b64(what: &'static str, text: &str) -> Result<Vec<u8>, IdentityError> {
    let text = text.trim();
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    for engine in engines {
        if let Ok(bytes) = engine.decode(text) {
            return Ok(bytes);
        }
    }
    Err(IdentityError::Base64 { what })
}

fn encode_b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn to_array<const N: usize>(what: &'static str, bytes: &[u8]) -> Result<[u8; N], IdentityError> {
    bytes.try_into().map_err(|_| IdentityError::Length {
        what,
        expected: N,
        actual: bytes.len(),
    })
}

/// An Ed25519 public key (`publicKey` in Peers), shown as standard base64.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PublicKey(#[serde(with = "serde_bytes")] [u8; 32]);

impl PublicKey {
    /// Wraps 32 raw bytes, checking that they are a valid Ed25519 point.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, IdentityError> {
        ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map_err(|_| IdentityError::InvalidPublicKey)?;
        Ok(Self(bytes))
    }

    /// Parses base64 (standard or URL-safe, padded or not).
    pub fn from_base64(text: &str) -> Result<Self, IdentityError> {
        let bytes = decode_b64("publicKey", text)?;
        Self::from_bytes(to_array("publicKey", &bytes)?)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Standard base64, as TweetNaCl's `encodeBase64` prints it.
    pub fn to_base64(&self) -> String {
        encode_b64(&self.0)
    }

    /// Verifies a detached signature over `message` (TweetNaCl `sign.detached.verify`).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), IdentityError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(&self.0)
            .map_err(|_| IdentityError::InvalidPublicKey)?;
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(message, &sig)
            .map_err(|_| IdentityError::BadSignature)
    }

    /// The X25519 box key that belongs to this signing key (`ed2curve.convertPublicKey`).
    pub fn to_box_key(&self) -> Result<PublicBoxKey, IdentityError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(&self.0)
            .map_err(|_| IdentityError::InvalidPublicKey)?;
        Ok(PublicBoxKey(key.to_montgomery().to_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

/// An X25519 public key (`publicBoxKey` in Peers), shown as standard base64.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PublicBoxKey(#[serde(with = "serde_bytes")] [u8; 32]);

impl PublicBoxKey {
    /// Wraps 32 raw bytes (every 32-byte string is an X25519 public key).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses base64 (standard or URL-safe, padded or not).
    pub fn from_base64(text: &str) -> Result<Self, IdentityError> {
        let bytes = decode_b64("publicBoxKey", text)?;
        Ok(Self(to_array("publicBoxKey", &bytes)?))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Standard base64.
    pub fn to_base64(&self) -> String {
        encode_b64(&self.0)
    }
}

impl fmt::Debug for PublicBoxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicBoxKey({})", self.to_base64())
    }
}

impl fmt::Display for PublicBoxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

/// A 64-byte Ed25519 detached signature.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature(#[serde(with = "serde_bytes")] [u8; 64]);

impl Signature {
    /// Wraps 64 raw bytes.
    pub fn from_bytes(bytes: [u8; 64]) -> Self {
        Self(bytes)
    }

    /// Parses base64.
    pub fn from_base64(text: &str) -> Result<Self, IdentityError> {
        let bytes = decode_b64("signature", text)?;
        Ok(Self(to_array("signature", &bytes)?))
    }

    /// The raw 64 bytes.
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }

    /// Standard base64.
    pub fn to_base64(&self) -> String {
        encode_b64(&self.0)
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_base64())
    }
}

/// An X25519 secret key derived from an identity. Zeroized on drop, redacted in `Debug`.
#[derive(Clone, Zeroize)]
#[zeroize(drop)]
pub struct BoxSecret([u8; 32]);

impl BoxSecret {
    /// The raw 32 secret bytes (clamped, as `ed2curve.convertSecretKey` returns them).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for BoxSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BoxSecret(<redacted>)")
    }
}

/// An Ed25519 identity. The secret is zeroized on drop and never printed.
#[derive(Clone)]
pub struct Identity {
    signing: ed25519_dalek::SigningKey,
}

impl Identity {
    /// Creates a fresh identity from a cryptographically secure RNG.
    pub fn generate<R: CryptoRng + RngCore>(rng: &mut R) -> Self {
        Self {
            signing: ed25519_dalek::SigningKey::generate(rng),
        }
    }

    /// Builds the identity of a 32-byte seed (`nacl.sign.keyPair.fromSeed`).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            signing: ed25519_dalek::SigningKey::from_bytes(seed),
        }
    }

    /// Loads a TweetNaCl 64-byte secret key (seed || public key), checking that both halves agree.
    pub fn from_secret_key(bytes: &[u8]) -> Result<Self, IdentityError> {
        let mut full: Zeroizing<[u8; 64]> = Zeroizing::new(to_array("secretKey", bytes)?);
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&full[..32]);
        let identity = Self::from_seed(&seed);
        let consistent = identity.public_key().as_bytes()[..] == full[32..];
        full.zeroize();
        if consistent {
            Ok(identity)
        } else {
            Err(IdentityError::InconsistentSecretKey)
        }
    }

    /// Loads a base64 secret key (standard or URL-safe, as Peers stores it).
    pub fn from_secret_key_base64(text: &str) -> Result<Self, IdentityError> {
        let bytes = Zeroizing::new(decode_b64("secretKey", text)?);
        Self::from_secret_key(&bytes)
    }

    /// The 64-byte TweetNaCl secret key (seed || public key).
    pub fn secret_key_bytes(&self) -> Zeroizing<[u8; 64]> {
        Zeroizing::new(self.signing.to_keypair_bytes())
    }

    /// The secret key as standard base64 — handle with care, it is the whole identity.
    pub fn secret_key_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(encode_b64(&self.secret_key_bytes()[..]))
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    /// The X25519 secret derived the standard way (SHA-512 of the seed, first half, clamped).
    pub fn box_secret(&self) -> BoxSecret {
        let digest = sha2::Sha512::digest(self.signing.as_bytes());
        let mut secret = [0u8; 32];
        secret.copy_from_slice(&digest[..32]);
        secret[0] &= 248;
        secret[31] &= 127;
        secret[31] |= 64;
        BoxSecret(secret)
    }

    /// The X25519 public key that TweetNaCl + ed2curve compute for this identity.
    pub fn public_box_key(&self) -> PublicBoxKey {
        let secret = x25519_dalek::StaticSecret::from(*self.box_secret().as_bytes());
        PublicBoxKey(x25519_dalek::PublicKey::from(&secret).to_bytes())
    }

    /// A detached Ed25519 signature over raw bytes (TweetNaCl `sign.detached`). Prefer
    /// [`Identity::sign_labeled`] for anything structured.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.signing.sign(message).to_bytes())
    }

    /// Signs `label || message`, the form every peerlink signature takes.
    pub fn sign_labeled(&self, label: &[u8], message: &[u8]) -> Signature {
        let mut buf = Vec::with_capacity(label.len() + message.len());
        buf.extend_from_slice(label);
        buf.extend_from_slice(message);
        self.sign(&buf)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("public_key", &self.public_key())
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

/// What a device says about itself. Signed by its identity before it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceInfo {
    /// The user (account) this device belongs to.
    pub user_id: String,
    /// This device's id, unique per user.
    pub device_id: String,
    /// The Ed25519 identity key.
    pub public_key: PublicKey,
    /// The X25519 key derived from the identity.
    pub public_box_key: PublicBoxKey,
    /// Addresses (URLs, IPs or host names) where the device can be reached.
    pub addresses: Vec<String>,
    /// Optional display name of the user, at most 128 characters.
    pub user_name: Option<String>,
    /// Optional display name of the device, at most 128 characters.
    pub device_name: Option<String>,
    /// When the info was made, in milliseconds since the Unix epoch.
    pub timestamp: u64,
}

/// The fixed field order used for signing (a MessagePack array, never a map).
#[derive(Serialize)]
struct SigningForm<'a>(
    u8,
    &'a str,
    &'a str,
    #[serde(with = "serde_bytes")] &'a [u8; 32],
    #[serde(with = "serde_bytes")] &'a [u8; 32],
    &'a [String],
    Option<&'a str>,
    Option<&'a str>,
    u64,
);

impl DeviceInfo {
    /// Device info for `identity` with the given ids, no addresses or names, stamped `timestamp`.
    pub fn new(identity: &Identity, user_id: &str, device_id: &str, timestamp: u64) -> Self {
        Self {
            user_id: user_id.to_owned(),
            device_id: device_id.to_owned(),
            public_key: identity.public_key(),
            public_box_key: identity.public_box_key(),
            addresses: Vec::new(),
            user_name: None,
            device_name: None,
            timestamp,
        }
    }

    /// Checks every documented limit.
    pub fn validate(&self) -> Result<(), IdentityError> {
        fn id(field: &'static str, value: &str) -> Result<(), IdentityError> {
            if value.is_empty() {
                return Err(IdentityError::InvalidField {
                    field,
                    reason: "must not be empty",
                });
            }
            if value.len() > MAX_ID_BYTES {
                return Err(IdentityError::InvalidField {
                    field,
                    reason: "longer than 256 bytes",
                });
            }
            Ok(())
        }
        fn name(field: &'static str, value: &Option<String>) -> Result<(), IdentityError> {
            match value {
                Some(v) if v.chars().count() > MAX_NAME_CHARS => Err(IdentityError::InvalidField {
                    field,
                    reason: "longer than 128 characters",
                }),
                _ => Ok(()),
            }
        }
        id("userId", &self.user_id)?;
        id("deviceId", &self.device_id)?;
        name("userName", &self.user_name)?;
        name("deviceName", &self.device_name)?;
        if self.addresses.len() > MAX_ADDRESSES {
            return Err(IdentityError::InvalidField {
                field: "addresses",
                reason: "more than 32 entries",
            });
        }
        if self.addresses.iter().any(|a| a.len() > MAX_ADDRESS_BYTES) {
            return Err(IdentityError::InvalidField {
                field: "addresses",
                reason: "an entry is longer than 512 bytes",
            });
        }
        Ok(())
    }

    /// The exact bytes that are signed: [`DEVICE_INFO_LABEL`] followed by a MessagePack array
    /// `[1, userId, deviceId, publicKey(bin 32), publicBoxKey(bin 32), [addresses…],
    /// userName|nil, deviceName|nil, timestamp]`.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let form = SigningForm(
            1,
            &self.user_id,
            &self.device_id,
            self.public_key.as_bytes(),
            self.public_box_key.as_bytes(),
            &self.addresses,
            self.user_name.as_deref(),
            self.device_name.as_deref(),
            self.timestamp,
        );
        let mut out = DEVICE_INFO_LABEL.to_vec();
        // Serialising plain strings, byte arrays and integers into a Vec cannot fail.
        let body = rmp_serde::to_vec(&form).unwrap_or_default();
        out.extend_from_slice(&body);
        out
    }

    /// Validates and signs this info with `identity`, which must own `publicKey`.
    pub fn sign(self, identity: &Identity) -> Result<SignedDeviceInfo, IdentityError> {
        self.validate()?;
        if self.public_key != identity.public_key() {
            return Err(IdentityError::InvalidField {
                field: "publicKey",
                reason: "is not the signing identity's key",
            });
        }
        if self.public_box_key != identity.public_box_key() {
            return Err(IdentityError::BoxKeyMismatch);
        }
        let signature = identity.sign(&self.signing_bytes());
        Ok(SignedDeviceInfo {
            info: self,
            signature,
        })
    }
}

/// A device info with its signature. Only [`SignedDeviceInfo::verify`] makes it trustworthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedDeviceInfo {
    /// The claimed info.
    pub info: DeviceInfo,
    /// Ed25519 signature by `info.publicKey` over [`DeviceInfo::signing_bytes`].
    pub signature: Signature,
}

impl SignedDeviceInfo {
    /// Checks limits, the signature, and that `publicBoxKey` derives from `publicKey`.
    pub fn verify(&self) -> Result<&DeviceInfo, IdentityError> {
        self.info.validate()?;
        self.info
            .public_key
            .verify(&self.info.signing_bytes(), &self.signature)?;
        if self.info.public_key.to_box_key()? != self.info.public_box_key {
            return Err(IdentityError::BoxKeyMismatch);
        }
        Ok(&self.info)
    }

    /// MessagePack encoding used inside handshake messages (a map with camelCase names).
    pub fn to_bytes(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).unwrap_or_default()
    }

    /// Decodes [`SignedDeviceInfo::to_bytes`] output. Does not verify.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        rmp_serde::from_slice(bytes).map_err(|e| IdentityError::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity::from_seed(&[7u8; 32])
    }

    #[test]
    fn secret_key_round_trips_and_checks_consistency() {
        let id = identity();
        let text = id.secret_key_base64();
        let back = Identity::from_secret_key_base64(&text).unwrap();
        assert_eq!(back.public_key(), id.public_key());

        let mut bytes = *id.secret_key_bytes();
        bytes[40] ^= 1;
        assert_eq!(
            Identity::from_secret_key(&bytes).unwrap_err(),
            IdentityError::InconsistentSecretKey
        );
        assert!(matches!(
            Identity::from_secret_key(&bytes[..10]).unwrap_err(),
            IdentityError::Length {
                expected: 64,
                actual: 10,
                ..
            }
        ));
        assert!(matches!(
            Identity::from_secret_key_base64("not base64!").unwrap_err(),
            IdentityError::Base64 { .. }
        ));
    }

    #[test]
    fn box_key_derivations_agree() {
        let id = identity();
        assert_eq!(id.public_key().to_box_key().unwrap(), id.public_box_key());
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let id = identity();
        let secret = id.secret_key_base64();
        let shown = format!("{id:?} {:?}", id.box_secret());
        assert!(!shown.contains(secret.as_str()));
        assert!(!shown.contains(&encode_b64(id.box_secret().as_bytes())));
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn signed_device_info_verifies_and_detects_tampering() {
        let id = identity();
        let mut info = DeviceInfo::new(&id, "user1", "device1", 1_700_000_000_000);
        info.addresses.push("ws://127.0.0.1:9000".into());
        info.device_name = Some("laptop".into());
        let signed = info.sign(&id).unwrap();
        signed.verify().unwrap();
        let back = SignedDeviceInfo::from_bytes(&signed.to_bytes()).unwrap();
        assert_eq!(back, signed);

        let mut tampered = signed.clone();
        tampered.info.device_id = "device2".into();
        assert_eq!(tampered.verify().unwrap_err(), IdentityError::BadSignature);

        let other = Identity::from_seed(&[9u8; 32]);
        let mut wrong_box = signed.clone();
        wrong_box.info.public_box_key = other.public_box_key();
        assert!(wrong_box.verify().is_err());
    }

    #[test]
    fn names_longer_than_128_chars_are_rejected() {
        let id = identity();
        let mut info = DeviceInfo::new(&id, "u", "d", 0);
        info.user_name = Some("é".repeat(128));
        info.clone().sign(&id).unwrap();
        info.user_name = Some("é".repeat(129));
        assert!(matches!(
            info.sign(&id).unwrap_err(),
            IdentityError::InvalidField {
                field: "userName",
                ..
            }
        ));
    }
}
