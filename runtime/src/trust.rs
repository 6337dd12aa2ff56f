//! Trust policies: the application's answer to "how much do I trust this verified device?".

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use peerlink_core::{DeviceInfo, TrustLevel};

/// Rates a verified peer during the handshake. A level below 0 refuses the link; the peer is
/// told it was rejected.
#[async_trait]
pub trait TrustPolicy: Send + Sync + 'static {
    /// The level for `remote`, whose signature and keys are already verified.
    async fn trust_level(&self, remote: &DeviceInfo) -> TrustLevel;
}

/// Accepts everyone at [`TrustLevel::UNKNOWN`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TrustAll;

#[async_trait]
impl TrustPolicy for TrustAll {
    async fn trust_level(&self, _remote: &DeviceInfo) -> TrustLevel {
        TrustLevel::UNKNOWN
    }
}

/// A policy built from a closure; see [`trust_fn`].
pub struct TrustFn<F>(F);

impl<F> std::fmt::Debug for TrustFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TrustFn")
    }
}

#[async_trait]
impl<F, Fut> TrustPolicy for TrustFn<F>
where
    F: Fn(DeviceInfo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = TrustLevel> + Send + 'static,
{
    async fn trust_level(&self, remote: &DeviceInfo) -> TrustLevel {
        (self.0)(remote.clone()).await
    }
}

/// Adapts `|info| async move { level }` into a shareable [`TrustPolicy`].
pub fn trust_fn<F, Fut>(f: F) -> Arc<dyn TrustPolicy>
where
    F: Fn(DeviceInfo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = TrustLevel> + Send + 'static,
{
    Arc::new(TrustFn(f))
}
