//! JS functions as RPC handlers and trust policies.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use napi::bindgen_prelude::{FnArgs, Function, Unknown};
use napi::{JsValue, sys};
use peerlink::{HandlerError, Request, TrustLevel, TrustPolicy};

use crate::bridge::{JsCallback, Thrown, call_js, undefined};
use crate::connection::Connection;
use crate::identity::DeviceInfo;
use crate::value;

type Args = FnArgs<(sys::napi_value, sys::napi_value)>;

/// A JS handler `(args, ctx) => result | Promise<result>` held from Rust.
pub(crate) type HandlerFn = JsCallback<Request, Args>;

/// Wraps a JS function for `expose`.
/// A raw handler gets the body as a `Buffer` instead of a decoded value.
pub(crate) fn handler_callback(
    f: &Function<'_, Unknown<'static>, Unknown<'static>>,
    raw: bool,
) -> napi::Result<HandlerFn> {
    f.build_threadsafe_function::<Request>()
        .callee_handled::<false>()
        .weak::<true>()
        .build_callback(move |ctx| {
            let env = ctx.env.raw();
            let req = ctx.value;
            // The body was validated before the call, so building it cannot fail half-way.
            let args = if raw {
                value::buffer(env, &req.body)
            } else {
                value::to_js(env, &req.body)
            };
            let args = args.unwrap_or_else(|_| undefined(env));
            Ok(FnArgs::from((args, request_context(&ctx.env, req))))
        })
}

/// `{ name, isNotify, connection }`, the second argument of every handler.
fn request_context(env: &napi::Env, req: Request) -> sys::napi_value {
    let raw = env.raw();
    let Ok(object) = value::object(raw) else {
        return undefined(raw);
    };
    if let Ok(name) = value::string(raw, &req.name) {
        let _ = value::set_own(raw, object, "name", name);
    }
    if let Ok(flag) = value::boolean(raw, req.is_notify) {
        let _ = value::set_own(raw, object, "isNotify", flag);
    }
    if let Ok(connection) =
        napi::bindgen_prelude::ToNapiValue::into_unknown(Connection::from(req.connection), env)
    {
        let _ = value::set_own(raw, object, "connection", connection.raw());
    }
    object
}

fn encode_result(env: sys::napi_env, result: sys::napi_value) -> Result<Bytes, HandlerError> {
    value::encode(env, result).map(Bytes::from).map_err(|e| {
        HandlerError::new("encode", format!("cannot encode the handler's result: {e}"))
    })
}

fn raw_result(env: sys::napi_env, result: sys::napi_value) -> Result<Bytes, HandlerError> {
    match value::byte_view(env, result) {
        Ok(Some(bytes)) => Ok(Bytes::copy_from_slice(bytes)),
        _ if value::is_nullish(env, result) => Ok(Bytes::new()),
        _ => Err(HandlerError::new(
            "encode",
            "a raw handler must return a Buffer, Uint8Array or ArrayBuffer",
        )),
    }
}

fn handler_failure(thrown: Thrown) -> Result<Bytes, HandlerError> {
    Err(HandlerError::new(
        thrown.code.unwrap_or_else(|| "handler".into()),
        thrown.message,
    ))
}

/// A peerlink handler that calls `callback`. Arguments are validated before JS sees them; a
/// throw or rejection reaches the caller as `RpcError::Remote` with the error's string `code`
/// (or `"handler"`) and its message.
pub(crate) fn handler(callback: HandlerFn, raw: bool) -> peerlink::Handler {
    let callback = Arc::new(callback);
    let read = if raw { raw_result } else { encode_result };
    peerlink::handler_fn(move |req: Request| {
        let callback = Arc::clone(&callback);
        async move {
            if !raw {
                value::validate(&req.body).map_err(|e| {
                    HandlerError::new("bad_request", format!("cannot decode arguments: {e}"))
                })?;
            }
            call_js(&callback, req, read, handler_failure)
                .await
                .unwrap_or_else(|| Err(HandlerError::new("handler", "the handler was released")))
        }
    })
}

/// The node's trust policy when a `trust` callback is given. Released on `Node.close()`.
pub(crate) struct JsTrust {
    callback: Mutex<Option<Arc<crate::node::TrustFunction>>>,
}

impl JsTrust {
    pub(crate) fn new(callback: crate::node::TrustFunction) -> Self {
        Self {
            callback: Mutex::new(Some(Arc::new(callback))),
        }
    }

    /// Drops the JS callback; later handshakes are refused.
    pub(crate) fn release(&self) {
        self.callback
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }
}

fn read_level(env: sys::napi_env, result: sys::napi_value) -> Result<TrustLevel, String> {
    match value::get_number(env, result) {
        Some(v) if v.is_finite() && v.trunc() == v && v.abs() <= i32::MAX as f64 => {
            Ok(TrustLevel(v as i32))
        }
        _ => Err("the trust callback must return an integer trust level".into()),
    }
}

fn trust_failure(thrown: Thrown) -> Result<TrustLevel, String> {
    Err(format!("the trust callback failed: {}", thrown.message))
}

#[async_trait]
impl TrustPolicy for JsTrust {
    async fn trust_level(&self, remote: &peerlink::DeviceInfo) -> TrustLevel {
        let callback = self
            .callback
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(callback) = callback else {
            return TrustLevel::UNTRUSTED;
        };
        // A callback that fails cannot vouch for anyone: the handshake is refused (`untrusted`
        // here, `rejected_by_peer` at the other end).
        match call_js(
            &callback,
            DeviceInfo::from(remote),
            read_level,
            trust_failure,
        )
        .await
        {
            Some(Ok(level)) => level,
            Some(Err(reason)) => {
                tracing::warn!(%reason, device = %remote.device_id, "trust callback failed; refusing the peer");
                TrustLevel::UNTRUSTED
            }
            None => TrustLevel::UNTRUSTED,
        }
    }
}

impl std::fmt::Debug for JsTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JsTrust")
    }
}
