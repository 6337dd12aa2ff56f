//! Foreign traits: Swift and Kotlin objects that Rust calls back.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use peerlink::{HandlerError, Request, TrustLevel};

use crate::connection::{CloseInfo, Connection};
use crate::error::PeerlinkError;
use crate::identity::DeviceInfo;

/// Rates a verified peer during the handshake.
#[uniffi::export(with_foreign)]
#[async_trait::async_trait]
pub trait TrustPolicy: Send + Sync {
    /// The trust level for `device`, whose signature and keys are already verified (see
    /// `trustLevels()`). Below 0 refuses the link; so does throwing.
    async fn trust_level(&self, device: DeviceInfo) -> Result<i32, PeerlinkError>;
}

/// Answers RPC calls and notifications registered with `expose`.
#[uniffi::export(with_foreign)]
#[async_trait::async_trait]
pub trait RpcHandler: Send + Sync {
    /// Handles a call of `name` with the caller's bytes and returns the reply bytes (ignored
    /// for a notification). Throw `PeerlinkError.Handler(code, detail)` to fail the call with
    /// an application code; the caller gets `Remote` with that `remoteCode`.
    async fn handle(&self, name: String, args: Vec<u8>) -> Result<Vec<u8>, PeerlinkError>;
}

/// Receives a node's connection events. Called on a runtime thread: return quickly.
#[uniffi::export(with_foreign)]
pub trait NodeListener: Send + Sync {
    /// A connection finished its handshake (dialled or accepted).
    fn on_connection(&self, connection: Arc<Connection>);
    /// A connection closed.
    fn on_connection_closed(&self, connection_id: u64, reason: CloseInfo);
}

/// The node's trust policy: the foreign one until the node shuts down, then nobody.
///
/// Dropping the foreign object at shutdown breaks the cycle a policy that refers to its own
/// node would otherwise form (the node would never be freed).
pub(crate) struct ForeignTrust {
    policy: Mutex<Option<Arc<dyn TrustPolicy>>>,
}

impl ForeignTrust {
    pub(crate) fn new(policy: Arc<dyn TrustPolicy>) -> Self {
        Self {
            policy: Mutex::new(Some(policy)),
        }
    }

    pub(crate) fn release(&self) {
        self.policy.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

#[async_trait::async_trait]
impl peerlink::TrustPolicy for ForeignTrust {
    async fn trust_level(&self, remote: &peerlink::DeviceInfo) -> TrustLevel {
        let policy = self
            .policy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(policy) = policy else {
            return TrustLevel::UNTRUSTED;
        };
        match policy.trust_level(DeviceInfo::from(remote)).await {
            Ok(level) => TrustLevel(level),
            Err(e) => {
                tracing::debug!(code = e.code(), "trust policy failed; refusing the peer");
                TrustLevel::UNTRUSTED
            }
        }
    }
}

/// Adapts a foreign handler to a runtime handler.
pub(crate) fn handler(foreign: Arc<dyn RpcHandler>) -> peerlink::Handler {
    peerlink::handler_fn(move |req: Request| {
        let foreign = Arc::clone(&foreign);
        async move {
            match foreign.handle(req.name, req.body.to_vec()).await {
                Ok(reply) => Ok(Bytes::from(reply)),
                Err(PeerlinkError::Handler { code, detail }) => {
                    Err(HandlerError::new(code, detail))
                }
                Err(other) => Err(HandlerError::new(other.code(), other.detail())),
            }
        }
    })
}
