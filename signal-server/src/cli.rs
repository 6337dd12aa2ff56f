//! Command-line settings shared by the `peerlink-signal-server` binary and `peerlink serve`.

use std::collections::HashSet;
use std::time::Duration;

use peerlink_core::identity::PublicKey;

use crate::config::{Admission, ServerConfig, TurnConfig};

/// Options of the signaling server command.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub listen: String,
    /// Redis URL for scale-out (for example redis://127.0.0.1:6379/).
    #[arg(long)]
    pub redis: Option<String>,
    /// coturn static-auth-secret; enables TURN credentials.
    #[arg(long, env = "PEERLINK_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,
    /// STUN/TURN URL handed out with credentials (repeatable).
    #[arg(long = "turn-url")]
    pub turn_urls: Vec<String>,
    /// Lifetime of TURN credentials, in seconds.
    #[arg(long, default_value_t = 86_400)]
    pub turn_ttl: u64,
    /// Admit only this public key (base64; repeatable).
    #[arg(long = "allow-key")]
    pub allow_keys: Vec<String>,
    /// Admit only clients with a token minted with this secret.
    #[arg(
        long,
        env = "PEERLINK_TOKEN_SECRET",
        hide_env_values = true,
        conflicts_with = "allow_keys"
    )]
    pub token_secret: Option<String>,
    /// Host a client may sign (repeatable; default: the request's Host header).
    #[arg(long = "allowed-host")]
    pub allowed_hosts: Vec<String>,
    /// Most concurrent connections per IP address.
    #[arg(long, default_value_t = 256)]
    pub max_connections_per_ip: usize,
    /// Do not serve the browser lobby at `/`.
    #[arg(long)]
    pub no_lobby: bool,
}

/// A bad command-line value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ArgsError(String);

impl ServeArgs {
    /// The server configuration these options describe.
    pub fn to_config(&self) -> Result<ServerConfig, ArgsError> {
        let mut config = ServerConfig {
            redis_url: self.redis.clone(),
            allowed_hosts: self.allowed_hosts.clone(),
            max_connections_per_ip: self.max_connections_per_ip,
            lobby: !self.no_lobby,
            ..ServerConfig::default()
        };
        if let Some(secret) = &self.turn_secret {
            config.turn = Some(TurnConfig {
                secret: secret.as_bytes().to_vec(),
                urls: self.turn_urls.clone(),
                ttl: Duration::from_secs(self.turn_ttl),
            });
        }
        if !self.allow_keys.is_empty() {
            let mut keys = HashSet::new();
            for k in &self.allow_keys {
                keys.insert(
                    PublicKey::from_base64(k)
                        .map_err(|e| ArgsError(format!("--allow-key {k}: {e}")))?,
                );
            }
            config.admission = Admission::AllowList(keys);
        } else if let Some(secret) = &self.token_secret {
            config.admission = Admission::Token {
                secret: secret.as_bytes().to_vec(),
            };
        }
        Ok(config)
    }
}

/// Runs a server until Ctrl-C or SIGTERM, then shuts it down gracefully.
pub async fn run(args: &ServeArgs) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let config = args.to_config()?;
    let server = crate::Server::bind(&args.listen, config).await?;
    println!(
        "signaling server on {} (lobby at {}/)",
        server.ws_url(),
        server.http_url()
    );
    wait_for_stop_signal().await;
    server.shutdown().await;
    Ok(())
}

async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
