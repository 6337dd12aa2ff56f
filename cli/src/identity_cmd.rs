//! `peerlink identity new|show`.

use clap::Subcommand;
use peerlink_core::Identity;
use serde_json::json;

#[derive(Debug, Subcommand)]
pub(crate) enum IdentityCommand {
    /// Print a fresh identity as JSON `{secretKey, publicKey, publicBoxKey}`.
    New,
    /// Print `{publicKey, publicBoxKey}` of a base64 TweetNaCl secret key (64 bytes).
    Show {
        /// The secret key, base64 (standard or URL-safe).
        secret_key: String,
    },
}

pub(crate) fn run(cmd: IdentityCommand) -> Result<(), Box<dyn std::error::Error>> {
    match cmd {
        IdentityCommand::New => {
            let identity = Identity::generate(&mut rand::rngs::OsRng);
            let out = json!({
                "secretKey": identity.secret_key_base64().as_str(),
                "publicKey": identity.public_key().to_base64(),
                "publicBoxKey": identity.public_box_key().to_base64(),
            });
            println!("{out}");
        }
        IdentityCommand::Show { secret_key } => {
            let identity = Identity::from_secret_key_base64(&secret_key)?;
            let out = json!({
                "publicKey": identity.public_key().to_base64(),
                "publicBoxKey": identity.public_box_key().to_base64(),
            });
            println!("{out}");
        }
    }
    Ok(())
}
