//! `Identity` and `DeviceInfo`.

use std::sync::Arc;

use crate::error::PeerlinkError;

/// An Ed25519 identity key pair, compatible with TweetNaCl (`nacl.sign.keyPair`): the secret
/// key is the 64-byte seed‖public key, keys travel as base64.
#[derive(uniffi::Object)]
#[uniffi::export(Display)]
pub struct Identity {
    pub(crate) inner: peerlink::Identity,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("public_key", &self.inner.public_key())
            .finish_non_exhaustive()
    }
}

/// Shows the public key only, so that printing an identity never prints the secret.
impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", self.inner.public_key().to_base64())
    }
}

#[uniffi::export]
impl Identity {
    /// A fresh random identity.
    #[uniffi::constructor]
    pub fn generate() -> Arc<Self> {
        Arc::new(Self {
            inner: peerlink::Identity::generate(&mut rand::rngs::OsRng),
        })
    }

    /// The identity of a TweetNaCl secret key (64 bytes, base64).
    #[uniffi::constructor]
    pub fn from_secret_key(secret_key: String) -> Result<Arc<Self>, PeerlinkError> {
        peerlink::Identity::from_secret_key_base64(&secret_key)
            .map(|inner| Arc::new(Self { inner }))
            .map_err(|e| PeerlinkError::from_code("invalid_identity", e.to_string()))
    }

    /// The identity of a 32-byte seed (`nacl.sign.keyPair.fromSeed`).
    #[uniffi::constructor]
    pub fn from_seed(seed: Vec<u8>) -> Result<Arc<Self>, PeerlinkError> {
        let seed: [u8; 32] = seed.as_slice().try_into().map_err(|_| {
            PeerlinkError::from_code("invalid_identity", "a seed is 32 bytes".into())
        })?;
        Ok(Arc::new(Self {
            inner: peerlink::Identity::from_seed(&seed),
        }))
    }

    /// The Ed25519 public key, base64.
    pub fn public_key(&self) -> String {
        self.inner.public_key().to_base64()
    }

    /// The X25519 box key derived from the identity (ed2curve), base64.
    pub fn public_box_key(&self) -> String {
        self.inner.public_box_key().to_base64()
    }

    /// The 64-byte secret key, base64. Read it only to store it: it is the identity.
    pub fn secret_key(&self) -> String {
        self.inner.secret_key_base64().to_string()
    }

    /// Signs `message` (detached Ed25519 signature, 64 bytes).
    pub fn sign(&self, message: Vec<u8>) -> Vec<u8> {
        self.inner.sign(&message).as_bytes().to_vec()
    }
}

/// A device's signed description, verified by the handshake.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DeviceInfo {
    /// The user (account) id.
    pub user_id: String,
    /// The device id.
    pub device_id: String,
    /// Ed25519 public key, base64.
    pub public_key: String,
    /// X25519 box key, base64.
    pub public_box_key: String,
    /// Addresses the device can be reached at.
    pub addresses: Vec<String>,
    /// Optional user display name.
    pub user_name: Option<String>,
    /// Optional device display name.
    pub device_name: Option<String>,
    /// When the info was signed, milliseconds since the Unix epoch.
    pub timestamp: u64,
}

impl From<&peerlink::DeviceInfo> for DeviceInfo {
    fn from(d: &peerlink::DeviceInfo) -> Self {
        Self {
            user_id: d.user_id.clone(),
            device_id: d.device_id.clone(),
            public_key: d.public_key.to_base64(),
            public_box_key: d.public_box_key.to_base64(),
            addresses: d.addresses.clone(),
            user_name: d.user_name.clone(),
            device_name: d.device_name.clone(),
            timestamp: d.timestamp,
        }
    }
}
