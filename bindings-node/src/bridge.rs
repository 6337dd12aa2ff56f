//! The two directions across the thread boundary.
//!
//! JS → Rust: [`promise`] runs a future on the process-wide peerlink runtime and settles a JS
//! promise with its result. A pending promise keeps the Node event loop alive, as a pending
//! socket operation does.
//!
//! Rust → JS: [`call_js`] calls a JS callback through a *weak* threadsafe function (registered
//! callbacks never keep the process alive) and reads what it returned: a plain value, a
//! promise (awaited), a throw or a rejection. A throw or rejection becomes a Rust value through
//! `fail`; nothing a callback does can crash the process.
#![allow(unsafe_code)] // Node-API values are raw pointers; each use stays on the JS thread.

use std::cell::Cell;
use std::future::Future;
use std::ptr;
use std::rc::Rc;

use napi::bindgen_prelude::{FromNapiValue, PromiseRaw, ToNapiValue, Unknown};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, JsValue, Status, sys};
use tokio::sync::oneshot;

use crate::error::Failure;
use crate::value;

/// A JS callback held from Rust: weak (does not keep the process alive), errors never passed
/// as a first argument, arguments built by a closure on the JS thread.
pub(crate) type JsCallback<T, A> = ThreadsafeFunction<T, Unknown<'static>, A, Status, false, true>;

/// Something a promise resolves with, converted on the JS thread.
pub(crate) trait ToJs: Send + 'static {
    /// The JS value.
    fn to_js(self, env: &Env) -> Result<sys::napi_value, Failure>;
}

impl ToJs for () {
    fn to_js(self, env: &Env) -> Result<sys::napi_value, Failure> {
        let mut v = ptr::null_mut();
        unsafe { sys::napi_get_undefined(env.raw(), &mut v) };
        Ok(v)
    }
}

impl ToJs for f64 {
    fn to_js(self, env: &Env) -> Result<sys::napi_value, Failure> {
        native(self, env)
    }
}

impl ToJs for bool {
    fn to_js(self, env: &Env) -> Result<sys::napi_value, Failure> {
        native(self, env)
    }
}

/// Bytes that become a `Buffer`.
pub(crate) struct JsBuffer(pub(crate) bytes::Bytes);

impl ToJs for JsBuffer {
    fn to_js(self, env: &Env) -> Result<sys::napi_value, Failure> {
        value::buffer(env.raw(), &self.0).map_err(|e| Failure::new("internal", e.0))
    }
}

/// MessagePack bytes from the network that become a JS value.
pub(crate) struct JsMsgpack(pub(crate) bytes::Bytes);

impl ToJs for JsMsgpack {
    fn to_js(self, env: &Env) -> Result<sys::napi_value, Failure> {
        value::validate(&self.0)
            .map_err(|e| Failure::new("decode", format!("cannot decode result: {e}")))?;
        value::to_js(env.raw(), &self.0).map_err(|e| Failure::new("decode", e.0))
    }
}

/// A `#[napi]` class instance or object.
pub(crate) struct Native<T>(pub(crate) T);

impl<T: ToNapiValue + Send + 'static> ToJs for Native<T> {
    fn to_js(self, env: &Env) -> Result<sys::napi_value, Failure> {
        native(self.0, env)
    }
}

impl<T: ToJs> ToJs for Option<T> {
    fn to_js(self, env: &Env) -> Result<sys::napi_value, Failure> {
        match self {
            Some(v) => v.to_js(env),
            None => {
                let mut v = ptr::null_mut();
                unsafe { sys::napi_get_null(env.raw(), &mut v) };
                Ok(v)
            }
        }
    }
}

fn native<T: ToNapiValue>(v: T, env: &Env) -> Result<sys::napi_value, Failure> {
    v.into_unknown(env)
        .map(|u| u.raw())
        .map_err(|e| Failure::new("internal", e.reason.clone()))
}

type Resolver = Box<dyn FnOnce(Env) -> napi::Result<sys::napi_value> + Send>;

/// Runs `fut` on the peerlink runtime and returns a JS promise of its result.
pub(crate) fn promise<T, F>(env: &Env, fut: F) -> napi::Result<sys::napi_value>
where
    T: ToJs,
    F: Future<Output = Result<T, Failure>> + Send + 'static,
{
    let (deferred, promise) = env.create_deferred::<sys::napi_value, Resolver>()?;
    peerlink::runtime::handle().spawn(async move {
        let result = fut.await;
        deferred.resolve(Box::new(move |env: Env| {
            match result.and_then(|v| v.to_js(&env)) {
                Ok(v) => Ok(v),
                Err(failure) => Err(failure.into_napi(&env)),
            }
        }));
    });
    Ok(promise.raw())
}

/// What a JS callback threw or rejected with.
#[derive(Debug, Clone)]
pub(crate) struct Thrown {
    /// Its `code` property, when a string.
    pub(crate) code: Option<String>,
    /// Its `message` property, or its string form.
    pub(crate) message: String,
}

fn thrown(env: sys::napi_env, value: sys::napi_value) -> Thrown {
    if value::is_object(env, value) {
        return Thrown {
            code: value::get_string_property(env, value, "code"),
            message: value::get_string_property(env, value, "message")
                .unwrap_or_else(|| "callback failed".into()),
        };
    }
    let mut s = ptr::null_mut();
    let message =
        if unsafe { sys::napi_coerce_to_string(env, value, &mut s) } == sys::Status::napi_ok {
            value::get_string(env, s).unwrap_or_default()
        } else {
            // Coercion threw (a symbol, a hostile toString): leave the exception behind us.
            let mut ignored = ptr::null_mut();
            unsafe { sys::napi_get_and_clear_last_exception(env, &mut ignored) };
            String::new()
        };
    Thrown {
        code: None,
        message,
    }
}

/// Calls `callback` with `data` and delivers what it returned, awaited if it is a promise.
/// `read` turns the returned JS value into `R`, `fail` turns a throw or rejection into `R`.
/// Resolves to `None` when the callback was released (its owner closed).
pub(crate) async fn call_js<T, A, R>(
    callback: &JsCallback<T, A>,
    data: T,
    read: fn(sys::napi_env, sys::napi_value) -> R,
    fail: fn(Thrown) -> R,
) -> Option<R>
where
    T: 'static,
    A: 'static + napi::bindgen_prelude::JsValuesTupleIntoVec,
    R: Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let status = callback.call_with_return_value(
        data,
        ThreadsafeFunctionCallMode::NonBlocking,
        move |ret, env| {
            settle(env, ret, read, fail, tx);
            Ok(())
        },
    );
    if status != Status::Ok {
        return None;
    }
    rx.await.ok()
}

fn settle<R: 'static>(
    env: Env,
    ret: napi::Result<Unknown<'static>>,
    read: fn(sys::napi_env, sys::napi_value) -> R,
    fail: fn(Thrown) -> R,
    tx: oneshot::Sender<R>,
) {
    let raw_env = env.raw();
    let value = match ret {
        Ok(value) => value.raw(),
        Err(error) => {
            let exception = napi::JsError::from(error).into_unknown(env);
            let _ = tx.send(fail(thrown(raw_env, exception.raw())));
            return;
        }
    };
    if !value::is_promise(raw_env, value) {
        let _ = tx.send(read(raw_env, value));
        return;
    }
    let slot = Rc::new(Cell::new(Some(tx)));
    let on_reject = Rc::clone(&slot);
    let attached = unsafe { PromiseRaw::<Unknown<'static>>::from_napi_value(raw_env, value) }
        .and_then(|p| {
            p.then(move |ctx| {
                if let Some(tx) = slot.take() {
                    let _ = tx.send(read(ctx.env.raw(), ctx.value.raw()));
                }
                Ok(())
            })?
            .catch(
                move |ctx: napi::bindgen_prelude::CallbackContext<Unknown<'static>>| {
                    if let Some(tx) = on_reject.take() {
                        let _ = tx.send(fail(thrown(ctx.env.raw(), ctx.value.raw())));
                    }
                    Ok(())
                },
            )
            .map(|_| ())
        });
    if let Err(e) = attached {
        tracing::warn!(reason = %e.reason, "cannot await a callback's promise");
    }
}

/// An `undefined` to pass when building arguments failed (so the call itself cannot fail).
pub(crate) fn undefined(env: sys::napi_env) -> sys::napi_value {
    let mut v = ptr::null_mut();
    unsafe { sys::napi_get_undefined(env, &mut v) };
    v
}
