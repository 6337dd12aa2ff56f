//! WebRTC settings in plain values, as the language bindings (Node, Kotlin, Swift) receive
//! them, and their one validation into a [`WebRtcConfig`].
//!
//! Every binding hands its `WebRtcOptions` to [`WebRtcOptions::into_config`] after adapting
//! its own types (optional strings, arrays, enums); the checks and the typed errors live
//! here, so a bad value fails the same way in every language.

use std::net::SocketAddr;

use base64::Engine as _;

use super::config::{IceServer, IceTransportPolicy, WebRtcConfig};
use super::error::WebRtcError;

/// WebRTC settings as plain values (strings, flags, bytes); the bindings' `WebRtcOptions`.
///
/// [`WebRtcOptions::into_config`] checks every value and builds a [`WebRtcConfig`]; what is
/// left unset keeps [`WebRtcConfig::default`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebRtcOptions {
    /// STUN/TURN servers. Every URL is checked with [`IceServer::classify`]: scheme `stun:`,
    /// `turn:` or `turns:`, a host, at most `?transport=udp|tcp`, and a username and a
    /// credential for TURN.
    pub ice_servers: Vec<IceServer>,
    /// Which candidates ICE may use (`None`: all).
    pub ice_transport_policy: Option<IceTransportPolicy>,
    /// Local UDP addresses to bind, as `ip:port` text (`127.0.0.1:0`, `[::1]:0`). Empty:
    /// `0.0.0.0:0`, one socket per non-loopback interface.
    pub bind_addrs: Vec<String>,
    /// Trickle ICE (`None`: true).
    pub trickle: Option<bool>,
    /// Extra trusted CA certificates for `turns:` servers, on top of the Mozilla roots. Each
    /// entry is either one DER certificate (it starts with the byte 0x30) or PEM text (UTF-8)
    /// holding one or more `CERTIFICATE` blocks; every certificate must parse as a trust
    /// anchor.
    pub turn_tls_roots: Vec<Vec<u8>>,
}

impl WebRtcOptions {
    /// Checks every value and builds the configuration.
    ///
    /// Errors: [`WebRtcError::BadIceServer`] for an unusable ICE URL or TURN without
    /// credentials, [`WebRtcError::InvalidOption`] for a bind address that does not parse,
    /// [`WebRtcError::BadTurnTlsRoot`] for a TLS root that is neither PEM nor DER, holds no
    /// certificate, or does not parse as a trust anchor. Each names the offending entry.
    pub fn into_config(self) -> Result<WebRtcConfig, WebRtcError> {
        let mut config = WebRtcConfig::default();
        for server in &self.ice_servers {
            for url in &server.urls {
                server.classify(url)?;
            }
        }
        config.ice_servers = self.ice_servers;
        if let Some(policy) = self.ice_transport_policy {
            config.ice_transport_policy = policy;
        }
        if !self.bind_addrs.is_empty() {
            config.bind_addrs = self
                .bind_addrs
                .iter()
                .enumerate()
                .map(|(index, addr)| {
                    addr.trim()
                        .parse::<SocketAddr>()
                        .map_err(|_| WebRtcError::InvalidOption {
                            field: format!("bindAddrs[{index}]"),
                            reason: format!("{addr:?} is not an IP address with a port"),
                        })
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(trickle) = self.trickle {
            config.trickle = trickle;
        }
        config.turn_tls_roots = turn_tls_roots(&self.turn_tls_roots)?;
        Ok(config)
    }
}

impl TryFrom<WebRtcOptions> for WebRtcConfig {
    type Error = WebRtcError;

    fn try_from(options: WebRtcOptions) -> Result<Self, WebRtcError> {
        options.into_config()
    }
}

impl IceTransportPolicy {
    /// `all` or `relay`, the browser's `iceTransportPolicy` values.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Relay => "relay",
        }
    }
}

impl std::str::FromStr for IceTransportPolicy {
    type Err = WebRtcError;

    /// `all` or `relay`; anything else is [`WebRtcError::InvalidOption`].
    fn from_str(s: &str) -> Result<Self, WebRtcError> {
        match s {
            "all" => Ok(Self::All),
            "relay" => Ok(Self::Relay),
            other => Err(WebRtcError::InvalidOption {
                field: "iceTransportPolicy".to_owned(),
                reason: format!("must be \"all\" or \"relay\", not {other:?}"),
            }),
        }
    }
}

/// Longest TLS root entry accepted (a PEM bundle of the whole Mozilla store is about 300 KB).
const MAX_TLS_ROOT_LEN: usize = 1024 * 1024;

/// The DER certificates of `entries` (each DER or PEM), each checked as a trust anchor.
fn turn_tls_roots(entries: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, WebRtcError> {
    let mut roots = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let bad = |reason: String| WebRtcError::BadTurnTlsRoot { index, reason };
        if entry.len() > MAX_TLS_ROOT_LEN {
            return Err(bad(format!(
                "{} bytes, more than {MAX_TLS_ROOT_LEN}",
                entry.len()
            )));
        }
        if entry.trim_ascii().is_empty() {
            return Err(bad("empty".to_owned()));
        }
        // DER is an ASN.1 SEQUENCE (0x30); anything else is read as PEM text, which may
        // start with explanatory lines.
        let ders = if entry.first() == Some(&0x30) {
            vec![entry.clone()]
        } else {
            pem_certificates(entry).map_err(bad)?
        };
        for der in ders {
            ::webrtc::peer_connection::PeerConnectionBuilder::<SocketAddr>::new()
                .with_turn_tls_extra_roots(std::slice::from_ref(&der))
                .map_err(|err| bad(format!("not a usable CA certificate ({err})")))?;
            roots.push(der);
        }
    }
    Ok(roots)
}

/// The `CERTIFICATE` blocks of PEM text (RFC 7468), decoded. Text between blocks is
/// ignored; any other block label (a private key pasted by mistake) is refused without
/// echoing its content.
fn pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "PEM text is not UTF-8".to_owned())?;
    let mut certificates = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + "-----BEGIN ".len()..];
        let (label, body) = after
            .split_once("-----")
            .ok_or_else(|| "PEM BEGIN line without its closing dashes".to_owned())?;
        if label != "CERTIFICATE" {
            return Err(format!(
                "PEM block {label:?} is not a CERTIFICATE (only CA certificates belong here)"
            ));
        }
        let end = format!("-----END {label}-----");
        let (encoded, after_end) = body
            .split_once(&end)
            .ok_or_else(|| format!("PEM block {label:?} has no END line"))?;
        let compact: String = encoded
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .map_err(|err| format!("PEM certificate {}: bad base64 ({err})", certificates.len()))?;
        certificates.push(der);
        rest = after_end;
    }
    if certificates.is_empty() {
        return Err("PEM text holds no CERTIFICATE block".to_owned());
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> rcgen::Certificate {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).expect("self-signed CA")
    }

    fn turn(urls: &[&str], username: &str, credential: &str) -> IceServer {
        IceServer {
            urls: urls.iter().map(|u| (*u).to_owned()).collect(),
            username: username.to_owned(),
            credential: credential.to_owned(),
        }
    }

    #[test]
    fn no_options_give_the_default_config() {
        let config = WebRtcOptions::default().into_config().expect("defaults");
        let default = WebRtcConfig::default();
        assert!(config.ice_servers.is_empty());
        assert_eq!(config.ice_transport_policy, IceTransportPolicy::All);
        assert_eq!(config.bind_addrs, default.bind_addrs);
        assert_eq!(config.trickle, default.trickle);
        assert!(config.turn_tls_roots.is_empty());
    }

    #[test]
    fn good_options_reach_the_config() {
        let a = ca();
        let b = ca();
        let bundle = format!("# two roots\n{}\n{}", a.pem(), b.pem());
        let servers = vec![
            turn(&["stun:stun.example.org:3478"], "", ""),
            turn(
                &[
                    "turn:turn.example.org?transport=tcp",
                    "turns:turn.example.org:5349",
                ],
                "user",
                "secret",
            ),
        ];
        let config = WebRtcOptions {
            ice_servers: servers.clone(),
            ice_transport_policy: Some(IceTransportPolicy::Relay),
            bind_addrs: vec!["127.0.0.1:0".into(), "[::1]:4000".into()],
            trickle: Some(false),
            turn_tls_roots: vec![a.der().to_vec(), bundle.into_bytes()],
        }
        .into_config()
        .expect("valid options");
        assert_eq!(config.ice_servers, servers);
        assert_eq!(config.ice_transport_policy, IceTransportPolicy::Relay);
        assert_eq!(
            config.bind_addrs,
            vec![
                SocketAddr::from(([127, 0, 0, 1], 0)),
                "[::1]:4000".parse().expect("v6"),
            ]
        );
        assert!(!config.trickle);
        assert_eq!(
            config.turn_tls_roots,
            vec![a.der().to_vec(), a.der().to_vec(), b.der().to_vec()],
            "DER kept, each PEM block decoded in order"
        );
    }

    #[test]
    fn each_bad_ice_url_is_a_bad_ice_server() {
        for (url, username, credential) in [
            ("http://stun.example.org", "", ""),
            ("stun:", "", ""),
            ("stun:host?transport=sctp", "", ""),
            ("turn:turn.example.org", "", ""),
            ("turns:turn.example.org", "user", ""),
            ("nourl", "", ""),
        ] {
            let options = WebRtcOptions {
                ice_servers: vec![turn(&["stun:ok.example.org", url], username, credential)],
                ..WebRtcOptions::default()
            };
            match options.into_config() {
                Err(WebRtcError::BadIceServer { url: bad, .. }) => assert_eq!(bad, url),
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_bad_bind_address_names_its_entry() {
        let options = WebRtcOptions {
            bind_addrs: vec!["127.0.0.1:0".into(), "localhost:0".into()],
            ..WebRtcOptions::default()
        };
        match options.into_config() {
            Err(WebRtcError::InvalidOption { field, reason }) => {
                assert_eq!(field, "bindAddrs[1]");
                assert!(reason.contains("localhost:0"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ice_transport_policy_parses_its_two_names_only() {
        for policy in [IceTransportPolicy::All, IceTransportPolicy::Relay] {
            assert_eq!(
                policy.as_str().parse::<IceTransportPolicy>().ok(),
                Some(policy)
            );
        }
        match "Relay".parse::<IceTransportPolicy>() {
            Err(WebRtcError::InvalidOption { field, .. }) => {
                assert_eq!(field, "iceTransportPolicy");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_bad_tls_root_is_refused_with_its_index() {
        let good = ca().pem().into_bytes();
        let key_pem = b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n".to_vec();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", Vec::new()),
            ("garbage DER", b"not a certificate".to_vec()),
            (
                "bad base64",
                b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n".to_vec(),
            ),
            (
                "valid base64, not a certificate",
                b"-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n".to_vec(),
            ),
            (
                "no END line",
                b"-----BEGIN CERTIFICATE-----\naGVsbG8=\n".to_vec(),
            ),
            ("private key", key_pem),
            ("too large", vec![b'a'; MAX_TLS_ROOT_LEN + 1]),
        ];
        for (what, bad) in cases {
            let options = WebRtcOptions {
                turn_tls_roots: vec![good.clone(), bad],
                ..WebRtcOptions::default()
            };
            match options.into_config() {
                Err(err @ WebRtcError::BadTurnTlsRoot { index: 1, .. }) => {
                    let text = err.to_string();
                    assert!(text.contains("turnTlsRoots[1]"), "{what}: {text}");
                    assert!(!text.contains("c2VjcmV0"), "{what}: key material echoed");
                }
                other => panic!("{what}: {other:?}"),
            }
        }
    }
}
