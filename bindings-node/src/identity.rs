//! `Identity` and `DeviceInfo` for JavaScript.

use napi::bindgen_prelude::Buffer;
use napi_derive::napi;

use crate::error::sync_error;

/// An Ed25519 identity key pair, compatible with TweetNaCl (`nacl.sign.keyPair`): the secret key
/// is the 64-byte seed‖public key, keys travel as base64.
#[napi]
pub struct Identity {
    pub(crate) inner: peerlink::Identity,
}

#[napi]
impl Identity {
    /// A fresh random identity.
    #[napi(factory)]
    pub fn generate() -> Self {
        Self {
            inner: peerlink::Identity::generate(&mut rand::rngs::OsRng),
        }
    }

    /// The identity of a TweetNaCl secret key (64 bytes, base64).
    #[napi(factory)]
    pub fn from_secret_key(secret_key: String) -> Result<Self, napi::Error<String>> {
        peerlink::Identity::from_secret_key_base64(&secret_key)
            .map(|inner| Self { inner })
            .map_err(|e| sync_error("invalid_identity", e))
    }

    /// The identity of a 32-byte seed (`nacl.sign.keyPair.fromSeed`).
    #[napi(factory)]
    pub fn from_seed(seed: Buffer) -> Result<Self, napi::Error<String>> {
        let seed: [u8; 32] = seed
            .as_ref()
            .try_into()
            .map_err(|_| sync_error("invalid_identity", "a seed is 32 bytes"))?;
        Ok(Self {
            inner: peerlink::Identity::from_seed(&seed),
        })
    }

    /// The Ed25519 public key, base64.
    #[napi(getter)]
    pub fn public_key(&self) -> String {
        self.inner.public_key().to_base64()
    }

    /// The X25519 box key derived from the identity (ed2curve), base64.
    #[napi(getter)]
    pub fn public_box_key(&self) -> String {
        self.inner.public_box_key().to_base64()
    }

    /// The 64-byte secret key, base64. Read it only to store it: it is the identity.
    #[napi(getter)]
    pub fn secret_key(&self) -> String {
        self.inner.secret_key_base64().to_string()
    }

    /// Signs `message` (detached Ed25519 signature, 64 bytes).
    #[napi]
    pub fn sign(&self, message: Buffer) -> Buffer {
        self.inner.sign(message.as_ref()).as_bytes().to_vec().into()
    }

    /// The public key only, so that logging an identity never prints the secret.
    #[napi(js_name = "toString")]
    pub fn to_js_string(&self) -> String {
        format!("Identity({})", self.public_key())
    }
}

/// A peer's verified device info.
#[napi(object)]
#[derive(Debug, Clone)]
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
    pub timestamp: f64,
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
            timestamp: d.timestamp as f64,
        }
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("public_key", &self.inner.public_key())
            .finish_non_exhaustive()
    }
}
