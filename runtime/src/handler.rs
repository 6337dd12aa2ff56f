//! RPC handlers: what `expose` registers.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::connection::Connection;

/// An RPC handler: takes a request, answers with the encoded result or an application error.
pub type Handler =
    Arc<dyn Fn(Request) -> BoxFuture<'static, Result<Bytes, HandlerError>> + Send + Sync>;

/// One incoming call or notification.
#[derive(Debug, Clone)]
pub struct Request {
    /// The name it was sent to.
    pub name: String,
    /// The encoded arguments (MessagePack for [`Connection::call`]).
    pub body: Bytes,
    /// The connection it came on (to call back).
    pub connection: Connection,
    /// `true` for a notification: the result is discarded.
    pub is_notify: bool,
}

impl Request {
    /// Decodes the MessagePack arguments.
    pub fn args<A: DeserializeOwned>(&self) -> Result<A, HandlerError> {
        rmp_serde::from_slice(&self.body)
            .map_err(|e| HandlerError::new("bad_request", format!("cannot decode arguments: {e}")))
    }
}

/// An application error returned by a handler; the caller gets
/// [`crate::RpcError::Remote`] with the same code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct HandlerError {
    /// Stable code chosen by the application.
    pub code: String,
    /// Human-readable text.
    pub message: String,
}

impl HandlerError {
    /// An error with `code` and `message`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// Wraps `|req: Request| async move { … }` into a [`Handler`].
pub fn handler_fn<F, Fut>(f: F) -> Handler
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, HandlerError>> + Send + 'static,
{
    Arc::new(move |req| Box::pin(f(req)))
}

/// Wraps a typed `|args: A| async move { Ok::<R, HandlerError>(…) }` into a [`Handler`]:
/// arguments are decoded from and results encoded to MessagePack (named fields).
pub fn typed_handler<A, R, F, Fut>(f: F) -> Handler
where
    A: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    F: Fn(A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
{
    let f = Arc::new(f);
    Arc::new(move |req: Request| {
        let f = Arc::clone(&f);
        Box::pin(async move {
            let args: A = req.args()?;
            let result = f(args).await?;
            rmp_serde::to_vec_named(&result)
                .map(Bytes::from)
                .map_err(|e| HandlerError::new("encode", format!("cannot encode result: {e}")))
        })
    })
}

/// The RPC name for `name` in group `group_id`: `"{name}_{group_id}"`, as Peers names
/// group-scoped handlers (`listChanges_<groupId>`).
pub fn group_rpc_name(name: &str, group_id: &str) -> String {
    format!("{name}_{group_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_follow_the_peers_convention() {
        assert_eq!(group_rpc_name("listChanges", "g123"), "listChanges_g123");
    }

    #[test]
    fn handler_error_displays_code_and_message() {
        assert_eq!(
            HandlerError::new("nope", "denied").to_string(),
            "nope: denied"
        );
    }
}
