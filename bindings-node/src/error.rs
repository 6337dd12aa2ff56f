//! Errors crossing into JavaScript: `Error`s with a stable `code` (the Rust `code()` strings).
//!
//! Remote handler failures also carry `remoteCode` (the handler's own code) and every error of
//! a closed connection carries `reason` (the close reason's code).
#![allow(unsafe_code)] // Building error objects needs Node-API calls; each status is checked.

use std::ptr;

use napi::sys;
use peerlink::{CloseReason, RpcError};

use crate::value;

/// An error on its way to JavaScript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// Stable snake_case code (`err.code`).
    pub(crate) code: String,
    /// Human-readable text (`err.message`).
    pub(crate) message: String,
    /// The remote handler's code for `code == "remote"` (`err.remoteCode`).
    pub(crate) remote_code: Option<String>,
    /// The close reason's code for errors of a closed connection (`err.reason`).
    pub(crate) reason: Option<String>,
}

impl Failure {
    /// A failure with `code` and `message`.
    pub(crate) fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            remote_code: None,
            reason: None,
        }
    }

    /// The JS `Error` object.
    pub(crate) fn to_js(&self, env: sys::napi_env) -> sys::napi_value {
        let mut error = ptr::null_mut();
        let (Ok(code), Ok(message)) = (
            value::string(env, &self.code),
            value::string(env, &self.message),
        ) else {
            return ptr::null_mut();
        };
        if unsafe { sys::napi_create_error(env, code, message, &mut error) } != sys::Status::napi_ok
        {
            return ptr::null_mut();
        }
        for (key, extra) in [("remoteCode", &self.remote_code), ("reason", &self.reason)] {
            if let Some(Ok(v)) = extra.as_ref().map(|extra| value::string(env, extra)) {
                let _ = value::set_own(env, error, key, v);
            }
        }
        error
    }

    /// As a napi error that rejects or throws with this failure's JS object.
    pub(crate) fn into_napi(self, env: &napi::Env) -> napi::Error {
        let raw = self.to_js(env.raw());
        if raw.is_null() {
            return napi::Error::new(napi::Status::GenericFailure, self.message);
        }
        // SAFETY: `raw` is a live value created just above on this thread.
        let unknown = unsafe { napi::bindgen_prelude::Unknown::from_raw_unchecked(env.raw(), raw) };
        napi::Error::from(unknown)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// A sync error for `#[napi]` functions: JS sees `err.code == code`.
pub(crate) fn sync_error(code: &str, message: impl std::fmt::Display) -> napi::Error<String> {
    napi::Error::new(code.to_owned(), message.to_string())
}

impl From<peerlink::Error> for Failure {
    fn from(e: peerlink::Error) -> Self {
        match e {
            peerlink::Error::Rpc(rpc) => rpc.into(),
            peerlink::Error::Closed(reason) => closed(reason),
            other => Failure::new(other.code(), other.to_string()),
        }
    }
}

impl From<RpcError> for Failure {
    fn from(e: RpcError) -> Self {
        let mut failure = Failure::new(e.code(), e.to_string());
        match e {
            RpcError::Remote { code, message } => {
                failure.message = message;
                failure.remote_code = Some(code);
            }
            RpcError::Closed { reason } => failure.reason = Some(reason.code().to_owned()),
            _ => {}
        }
        failure
    }
}

fn closed(reason: CloseReason) -> Failure {
    let mut failure = Failure::new("closed", format!("connection closed: {reason}"));
    failure.reason = Some(reason.code().to_owned());
    failure
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_errors_keep_their_codes() {
        let f: Failure = RpcError::NoHandler { name: "x".into() }.into();
        assert_eq!(f.code, "no_handler");
        let f: Failure = RpcError::Remote {
            code: "handler".into(),
            message: "boom".into(),
        }
        .into();
        assert_eq!(
            (
                f.code.as_str(),
                f.remote_code.as_deref(),
                f.message.as_str()
            ),
            ("remote", Some("handler"), "boom")
        );
        let f: Failure = peerlink::Error::Rpc(RpcError::Timeout).into();
        assert_eq!(f.code, "timeout");
        let f: Failure = peerlink::Error::Closed(CloseReason::NodeClosed).into();
        assert_eq!(
            (f.code.as_str(), f.reason.as_deref()),
            ("closed", Some("node_closed"))
        );
    }
}
