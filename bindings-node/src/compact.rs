//! Connecting with compact codes and no server, for JavaScript: `createCodeOffer(options)` →
//! `offer.code()` → (peer) → `offer.connect(node, answerCode)`, and
//! `createCodeAnswer(offerCode, options)` → `answer.code()` → (back to the offerer) →
//! `answer.connect(node)`. Adapters over `peerlink::webrtc::compact`; the same names as in
//! Kotlin and Swift. The format is in `docs/protocol/compact-signal.md`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use napi::bindgen_prelude::Reference;
use napi::{Env, sys};
use napi_derive::napi;
use peerlink::webrtc::compact::{self, CodeError, CompactSignal};
use peerlink::webrtc::{IceServer, WebRtcConfig};

use crate::bridge::{Native, promise};
use crate::connection::Connection;
use crate::error::Failure;
use crate::node::Node;

/// Default bound on each wait of `connect` (the channel, then the handshake).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings of a code exchange.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct CodeOptions {
    /// Local UDP addresses to bind, for example `["127.0.0.1:0"]`. Default `0.0.0.0:0`: one
    /// socket per non-loopback interface.
    pub bind_addrs: Option<Vec<String>>,
    /// STUN URLs for a server-reflexive candidate, e.g. `stun:stun.example.org:3478`.
    pub stun_urls: Option<Vec<String>>,
    /// Bound on each wait of `connect` in milliseconds (default 60 000).
    pub timeout_ms: Option<u32>,
}

fn config(options: Option<CodeOptions>) -> Result<(WebRtcConfig, Duration), Failure> {
    let options = options.unwrap_or_default();
    let mut config = WebRtcConfig::default();
    if let Some(addrs) = options.bind_addrs.filter(|a| !a.is_empty()) {
        config.bind_addrs = addrs
            .iter()
            .map(|a| {
                a.parse::<SocketAddr>()
                    .map_err(|e| Failure::new("invalid_config", format!("bind address {a:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(urls) = options.stun_urls.filter(|u| !u.is_empty()) {
        config.ice_servers = vec![IceServer {
            urls,
            ..IceServer::default()
        }];
    }
    let within = options
        .timeout_ms
        .map_or(DEFAULT_TIMEOUT, |ms| Duration::from_millis(u64::from(ms)));
    Ok((config, within))
}

fn failure(err: CodeError) -> Failure {
    match err {
        CodeError::Connect(err) => err.into(),
        other => Failure::new(other.code(), other.to_string()),
    }
}

fn parse(text: &str) -> Result<CompactSignal, Failure> {
    CompactSignal::from_text(text).map_err(|e| failure(e.into()))
}

fn text(code: &CompactSignal) -> Result<String, Failure> {
    code.to_text().map_err(|e| failure(e.into()))
}

fn used() -> Failure {
    Failure::new(
        "invalid_state",
        "connect was already called on this code exchange",
    )
}

/// The offering side: shows `code()`, then connects with the answer code.
#[napi]
#[derive(Debug)]
pub struct CodeOffer {
    inner: Arc<Mutex<Option<compact::CodeOffer>>>,
    code: String,
    within: Duration,
}

/// Gathers candidates and makes an offer code (base64url; a link `https://host/#CODE`
/// carries the same text after `#`).
#[napi(ts_return_type = "Promise<CodeOffer>")]
pub fn create_code_offer(env: Env, options: Option<CodeOptions>) -> napi::Result<sys::napi_value> {
    let parsed = config(options);
    promise(&env, async move {
        let (config, within) = parsed?;
        let offer = compact::CodeOffer::create(config).await.map_err(failure)?;
        let code = text(offer.code())?;
        Ok(Native(CodeOffer {
            inner: Arc::new(Mutex::new(Some(offer))),
            code,
            within,
        }))
    })
}

#[napi]
impl CodeOffer {
    /// The offer code to show (text, link, QR code or sound).
    #[napi]
    pub fn code(&self) -> String {
        self.code.clone()
    }

    /// Applies the answer code (text or link) and runs the verified handshake on `node`.
    /// Rejects with `bad_code` or `wrong_code_kind` for a bad code, `timeout` if the peer does
    /// not come, or the handshake's own code. Callable once (`invalid_state` after).
    #[napi(ts_return_type = "Promise<Connection>")]
    pub fn connect(
        &self,
        env: Env,
        node: Reference<Node>,
        answer: String,
    ) -> napi::Result<sys::napi_value> {
        let answer = parse(&answer);
        let offer = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        let node = node.inner.clone();
        let within = self.within;
        promise(&env, async move {
            let answer = answer?;
            let offer = offer.ok_or_else(used)?;
            let conn = offer
                .connect(&node, &answer, within)
                .await
                .map_err(failure)?;
            Ok(Native(Connection::from(conn)))
        })
    }

    /// Gives up: closes the link (a no-op after `connect`).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self, env: Env) -> napi::Result<sys::napi_value> {
        let offer = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        promise(&env, async move {
            if let Some(offer) = offer {
                offer.close().await;
            }
            Ok::<_, Failure>(())
        })
    }
}

/// The answering side: gives `code()` back to the offerer, then connects.
#[napi]
#[derive(Debug)]
pub struct CodeAnswer {
    inner: Arc<Mutex<Option<compact::CodeAnswer>>>,
    code: String,
    within: Duration,
}

/// Applies an offer code (text or link) and makes the answer code.
#[napi(ts_return_type = "Promise<CodeAnswer>")]
pub fn create_code_answer(
    env: Env,
    offer: String,
    options: Option<CodeOptions>,
) -> napi::Result<sys::napi_value> {
    let parsed = config(options);
    let offer = parse(&offer);
    promise(&env, async move {
        let (config, within) = parsed?;
        let offer = offer?;
        let answer = compact::CodeAnswer::create(config, &offer)
            .await
            .map_err(failure)?;
        let code = text(answer.code())?;
        Ok(Native(CodeAnswer {
            inner: Arc::new(Mutex::new(Some(answer))),
            code,
            within,
        }))
    })
}

#[napi]
impl CodeAnswer {
    /// The answer code to give back to the offerer.
    #[napi]
    pub fn code(&self) -> String {
        self.code.clone()
    }

    /// Waits for the offerer and runs the verified handshake on `node`. Callable once.
    #[napi(ts_return_type = "Promise<Connection>")]
    pub fn connect(&self, env: Env, node: Reference<Node>) -> napi::Result<sys::napi_value> {
        let answer = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        let node = node.inner.clone();
        let within = self.within;
        promise(&env, async move {
            let answer = answer.ok_or_else(used)?;
            let conn = answer.connect(&node, within).await.map_err(failure)?;
            Ok(Native(Connection::from(conn)))
        })
    }

    /// Gives up: closes the link (a no-op after `connect`).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self, env: Env) -> napi::Result<sys::napi_value> {
        let answer = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        promise(&env, async move {
            if let Some(answer) = answer {
                answer.close().await;
            }
            Ok::<_, Failure>(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_and_bad_codes_keep_their_code() {
        let err = config(Some(CodeOptions {
            bind_addrs: Some(vec!["nowhere".into()]),
            ..CodeOptions::default()
        }))
        .expect_err("bad address");
        assert_eq!(err.code, "invalid_config");
        let (_, within) = config(Some(CodeOptions {
            timeout_ms: Some(1500),
            ..CodeOptions::default()
        }))
        .expect("options");
        assert_eq!(within, Duration::from_millis(1500));
        assert_eq!(parse("%%%").expect_err("bad text").code, "bad_code");
    }
}
