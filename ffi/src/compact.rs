//! Connecting with compact codes and no server: `createCodeOffer` → `CodeOffer.code` → (peer)
//! → `CodeOffer.connect(node, answerCode)`, and `createCodeAnswer(offerCode)` →
//! `CodeAnswer.code` → (back to the offerer) → `CodeAnswer.connect(node)`. Adapters over
//! `peerlink::webrtc::compact::{CodeOffer, CodeAnswer}`; the format is in
//! `docs/protocol/compact-signal.md`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peerlink::webrtc::compact::{self, CodeError, CompactSignal};
use peerlink::webrtc::{IceServer, WebRtcConfig};

use crate::connection::Connection;
use crate::error::PeerlinkError;
use crate::node::Node;
use crate::task;

/// Default bound on each wait of `connect` (the channel, then the handshake).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings of a code exchange.
#[derive(Debug, Clone, Default, uniffi::Record)]
pub struct CodeOptions {
    /// Local UDP addresses to bind, e.g. `["127.0.0.1:0"]`. Empty: `0.0.0.0:0`, one socket per
    /// non-loopback interface.
    #[uniffi(default = [])]
    pub bind_addrs: Vec<String>,
    /// STUN URLs for a server-reflexive candidate, e.g. `stun:stun.example.org:3478`.
    #[uniffi(default = [])]
    pub stun_urls: Vec<String>,
    /// Bound on each wait of `connect` in milliseconds (default 60 000).
    #[uniffi(default = None)]
    pub timeout_ms: Option<u64>,
}

fn config(options: &CodeOptions) -> Result<(WebRtcConfig, Duration), PeerlinkError> {
    let mut config = WebRtcConfig::default();
    if !options.bind_addrs.is_empty() {
        config.bind_addrs = options
            .bind_addrs
            .iter()
            .map(|a| {
                a.parse::<SocketAddr>()
                    .map_err(|e| PeerlinkError::InvalidArgument {
                        code: "invalid_config".into(),
                        detail: format!("bind address {a:?}: {e}"),
                    })
            })
            .collect::<Result<_, _>>()?;
    }
    if !options.stun_urls.is_empty() {
        config.ice_servers = vec![IceServer {
            urls: options.stun_urls.clone(),
            ..IceServer::default()
        }];
    }
    let within = options
        .timeout_ms
        .map_or(DEFAULT_TIMEOUT, Duration::from_millis);
    Ok((config, within))
}

fn code_error(err: CodeError) -> PeerlinkError {
    let detail = err.to_string();
    match err {
        CodeError::Connect(err) => err.into(),
        CodeError::Code(_) | CodeError::WrongKind { .. } => PeerlinkError::InvalidArgument {
            code: err.code().into(),
            detail,
        },
        CodeError::Timeout(_) => PeerlinkError::Timeout {
            code: "timeout".into(),
            detail,
        },
        other => PeerlinkError::Transport {
            code: other.code().into(),
            detail,
        },
    }
}

fn used() -> PeerlinkError {
    PeerlinkError::InvalidArgument {
        code: "invalid_state".into(),
        detail: "connect was already called on this code exchange".into(),
    }
}

fn text(code: &CompactSignal) -> Result<String, PeerlinkError> {
    code.to_text().map_err(|e| code_error(CodeError::Code(e)))
}

/// The offering side: shows `code`, then connects with the answer code.
#[derive(Debug, uniffi::Object)]
pub struct CodeOffer {
    inner: Mutex<Option<compact::CodeOffer>>,
    code: String,
    within: Duration,
}

/// Gathers candidates and makes an offer code (base64url; a link `https://host/#CODE` holds
/// the same text after `#`).
#[uniffi::export]
pub async fn create_code_offer(options: CodeOptions) -> Result<Arc<CodeOffer>, PeerlinkError> {
    let (config, within) = config(&options)?;
    task::run(async move {
        let offer = compact::CodeOffer::create(config)
            .await
            .map_err(code_error)?;
        let code = text(offer.code())?;
        Ok(Arc::new(CodeOffer {
            inner: Mutex::new(Some(offer)),
            code,
            within,
        }))
    })
    .await
}

#[uniffi::export]
impl CodeOffer {
    /// The offer code to show (text, link, QR code or sound).
    pub fn code(&self) -> String {
        self.code.clone()
    }

    /// Applies the answer code (text or link) and runs the verified handshake on `node`.
    /// Fails with `InvalidArgument` (`bad_code`, `wrong_code_kind`) for a bad code, `Timeout`
    /// if the peer does not come, or the handshake's own error. Callable once.
    pub async fn connect(
        &self,
        node: Arc<Node>,
        answer: String,
    ) -> Result<Arc<Connection>, PeerlinkError> {
        let answer = CompactSignal::from_text(&answer).map_err(|e| code_error(e.into()))?;
        let offer = self
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(used)?;
        let within = self.within;
        let node = node.inner.clone();
        task::run(async move {
            let conn = offer
                .connect(&node, &answer, within)
                .await
                .map_err(code_error)?;
            Ok(Arc::new(Connection::from(conn)))
        })
        .await
    }

    /// Gives up: closes the link and frees its sockets (a no-op after `connect` or a second
    /// `close`). Named `closeOffer` in Kotlin, where `close()` frees the handle.
    pub async fn close(&self) {
        let offer = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(offer) = offer {
            task::run_infallible(async move { offer.close().await }, ()).await;
        }
    }
}

/// The answering side: gives `code` back to the offerer, then connects.
#[derive(Debug, uniffi::Object)]
pub struct CodeAnswer {
    inner: Mutex<Option<compact::CodeAnswer>>,
    code: String,
    within: Duration,
}

/// Applies an offer code (text or link) and makes the answer code.
#[uniffi::export]
pub async fn create_code_answer(
    offer: String,
    options: CodeOptions,
) -> Result<Arc<CodeAnswer>, PeerlinkError> {
    let (config, within) = config(&options)?;
    let offer = CompactSignal::from_text(&offer).map_err(|e| code_error(e.into()))?;
    task::run(async move {
        let answer = compact::CodeAnswer::create(config, &offer)
            .await
            .map_err(code_error)?;
        let code = text(answer.code())?;
        Ok(Arc::new(CodeAnswer {
            inner: Mutex::new(Some(answer)),
            code,
            within,
        }))
    })
    .await
}

#[uniffi::export]
impl CodeAnswer {
    /// The answer code to give back to the offerer.
    pub fn code(&self) -> String {
        self.code.clone()
    }

    /// Waits for the offerer and runs the verified handshake on `node`. Callable once.
    pub async fn connect(&self, node: Arc<Node>) -> Result<Arc<Connection>, PeerlinkError> {
        let answer = self
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(used)?;
        let within = self.within;
        let node = node.inner.clone();
        task::run(async move {
            let conn = answer.connect(&node, within).await.map_err(code_error)?;
            Ok(Arc::new(Connection::from(conn)))
        })
        .await
    }

    /// Gives up: closes the link and frees its sockets (a no-op after `connect` or a second
    /// `close`). Named `closeAnswer` in Kotlin, where `close()` frees the handle.
    pub async fn close(&self) {
        let answer = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(answer) = answer {
            task::run_infallible(async move { answer.close().await }, ()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> CodeOptions {
        CodeOptions {
            bind_addrs: vec!["127.0.0.1:0".into()],
            stun_urls: Vec::new(),
            timeout_ms: Some(20_000),
        }
    }

    #[test]
    fn bad_codes_and_options_are_invalid_arguments() {
        let rt = peerlink::runtime::handle();
        let err = rt
            .block_on(create_code_answer("not a code!".into(), loopback()))
            .expect_err("bad code");
        assert!(
            matches!(err, PeerlinkError::InvalidArgument { ref code, .. } if code == "bad_code"),
            "{err:?}"
        );
        let bad_bind = CodeOptions {
            bind_addrs: vec!["nowhere".into()],
            ..loopback()
        };
        let err = rt
            .block_on(create_code_offer(bad_bind))
            .expect_err("bad address");
        assert!(
            matches!(err, PeerlinkError::InvalidArgument { .. }),
            "{err:?}"
        );
        // An offer code where an answer is expected.
        let offer = rt.block_on(create_code_offer(loopback())).expect("offer");
        let answer_code = rt
            .block_on(create_code_answer(offer.code(), loopback()))
            .map(|answer| answer.code())
            .expect("answer");
        let err = rt
            .block_on(create_code_answer(answer_code, loopback()))
            .expect_err("an answer is not an offer");
        assert!(
            matches!(err, PeerlinkError::InvalidArgument { ref code, .. } if code == "wrong_code_kind"),
            "{err:?}"
        );
    }
}
