//! The `peerlink` command.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod demo;
mod identity_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// peerlink: device-to-device connections with verified identities.
#[derive(Debug, Parser)]
#[command(name = "peerlink", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Connect two fresh peers on loopback and show what happened.
    Demo(demo::DemoArgs),
    /// Create or inspect identities.
    #[command(subcommand)]
    Identity(identity_cmd::IdentityCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Identity(cmd) => identity_cmd::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
