//! `peerlink serve`: the signaling and relay server (the same server as the
//! `peerlink-signal-server` binary).

pub(crate) use peerlink_signal_server::cli::ServeArgs;

pub(crate) fn run(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime
        .block_on(peerlink_signal_server::cli::run(&args))
        .map_err(|e| -> Box<dyn std::error::Error> { e.to_string().into() })
}
