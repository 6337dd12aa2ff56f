//! `peerlink-signal-server`: the signaling server as its own binary.

use clap::Parser;

/// The peerlink signaling and relay server.
#[derive(Debug, Parser)]
#[command(name = "peerlink-signal-server", version, about)]
struct Cli {
    #[command(flatten)]
    serve: peerlink_signal_server::cli::ServeArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match peerlink_signal_server::cli::run(&cli.serve).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
