//! The `peerlink` command.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod codes;
mod connect;
mod demo;
mod identity_cmd;
mod serve;

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
    /// Print an offer code (and QR code), read the answer code, connect, verify the peer.
    Offer(codes::OfferArgs),
    /// Answer an offer code (or link): print the answer code, connect, verify the peer.
    Answer(codes::AnswerArgs),
    /// Send a code as sound (WAV) or read one from a recording.
    #[command(subcommand)]
    Modem(codes::ModemCommand),
    /// Run the signaling and relay server (rooms, signals, TURN credentials, browser lobby).
    Serve(serve::ServeArgs),
    /// Join a room on a signaling server; connect to devices by id over WebRTC.
    Connect(connect::ConnectArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Identity(cmd) => identity_cmd::run(cmd),
        Command::Serve(args) => serve::run(args),
        Command::Connect(args) => connect::run(args),
        Command::Offer(args) => codes::offer(args),
        Command::Answer(args) => codes::answer(args),
        Command::Modem(cmd) => codes::modem_cmd(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
