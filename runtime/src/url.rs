//! Parsing and normalising `ws://` / `wss://` URLs.
//!
//! The normalised form is what the handshake binds to, so both sides must compute it the same
//! way: lower-case scheme and host, explicit port, path kept as given (query included), fragment
//! dropped, and no `/` for an empty path (`ws://Host` → `ws://host:80`).

use crate::error::Error;

/// A parsed WebSocket URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// `true` for `wss://`.
    pub tls: bool,
    /// Lower-case host; IPv6 addresses keep their brackets.
    pub host: String,
    /// Explicit or default port.
    pub port: u16,
    /// Path and query, `""` or starting with `/`.
    pub path: String,
}

impl WsUrl {
    /// Parses and normalises `url`.
    pub fn parse(url: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = url.trim();
        let (scheme, rest) = trimmed
            .split_once("://")
            .ok_or_else(|| bad("missing scheme"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "ws" => false,
            "wss" => true,
            _ => return Err(bad("scheme must be ws or wss")),
        };
        // Whitespace before a fragment is trailing whitespace too: trimmed, so the normalised
        // form normalises to itself.
        let rest = rest.split('#').next().unwrap_or_default().trim_end();
        let split_at = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split_at);
        if authority.contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        let (host, port) = if let Some(after) = authority.strip_prefix('[') {
            let (v6, tail) = after
                .split_once(']')
                .ok_or_else(|| bad("unclosed IPv6 bracket"))?;
            if v6.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("invalid IPv6 address"));
            }
            let port = match tail {
                "" => None,
                t => Some(
                    t.strip_prefix(':')
                        .ok_or_else(|| bad("junk after IPv6 address"))?,
                ),
            };
            (format!("[{}]", v6.to_ascii_lowercase()), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_ascii_lowercase(), Some(p)),
                None => (authority.to_ascii_lowercase(), None),
            }
        };
        if host.is_empty() || host == "[]" {
            return Err(bad("missing host"));
        }
        if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("invalid character in host"));
        }
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| bad("invalid port"))?,
            None if tls => 443,
            None => 80,
        };
        if port == 0 {
            return Err(bad("port 0 cannot be dialled"));
        }
        let path = if path == "/" {
            String::new()
        } else {
            path.to_owned()
        };
        Ok(Self {
            tls,
            host,
            port,
            path,
        })
    }

    /// The normalised URL string.
    pub fn normalised(&self) -> String {
        format!(
            "{}://{}:{}{}",
            if self.tls { "wss" } else { "ws" },
            self.host,
            self.port,
            self.path
        )
    }

    /// `host:port` for a TCP connect (IPv6 hosts keep their brackets).
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Normalises a WebSocket URL (see the module docs).
pub fn normalise_ws_url(url: &str) -> Result<String, Error> {
    WsUrl::parse(url).map(|u| u.normalised())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_port_and_trailing_slash() {
        assert_eq!(
            normalise_ws_url("WS://LocalHost").unwrap(),
            "ws://localhost:80"
        );
        assert_eq!(
            normalise_ws_url("wss://Example.org/").unwrap(),
            "wss://example.org:443"
        );
        assert_eq!(
            normalise_ws_url("ws://127.0.0.1:9000/peer?x=1#frag").unwrap(),
            "ws://127.0.0.1:9000/peer?x=1"
        );
        assert_eq!(normalise_ws_url("ws://[::1]:7/").unwrap(), "ws://[::1]:7");
        assert_eq!(normalise_ws_url("ws://[::1]").unwrap(), "ws://[::1]:80");
    }

    #[test]
    fn normalising_is_idempotent_with_whitespace_before_a_fragment() {
        for url in [
            "wss://h.example:443/ws?x=\t#frag",
            "ws://h/ #x",
            "ws://h/a \t",
        ] {
            let once = normalise_ws_url(url).unwrap();
            assert_eq!(normalise_ws_url(&once).unwrap(), once, "{url:?}");
        }
        assert_eq!(
            normalise_ws_url("wss://h.example/ws?x=\t#frag").unwrap(),
            "wss://h.example:443/ws?x="
        );
        assert_eq!(normalise_ws_url("ws://h/ #x").unwrap(), "ws://h:80");
    }

    #[test]
    fn rejects_what_cannot_be_dialled() {
        for url in [
            "http://x",
            "x:80",
            "ws://",
            "ws://:80",
            "ws://h:99999",
            "ws://h:0",
            "ws://u@h",
            "ws://[zz]:1",
        ] {
            let err = WsUrl::parse(url).unwrap_err();
            assert_eq!(err.code(), "invalid_url", "{url}");
        }
    }
}
