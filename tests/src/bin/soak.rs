//! Soak run: steady RPC load and bulk streams over WebSocket and WebRTC links on loopback,
//! failing when resident memory, open descriptors or live tasks grow beyond their bounds
//! after the warm-up.
//!
//!   cargo run --release -p peerlink-tests --bin soak -- --minutes 10
//!
//! Options: `--minutes M` or `--seconds S` (default 10 minutes), `--max-rss-growth-mib N`,
//! `--max-fd-growth N`, `--max-task-growth N`. Exits 0 when every bound held.

use std::time::Duration;

use peerlink_tests::soak::{SoakConfig, run};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| -> Option<f64> {
        let i = args.iter().position(|a| a == name)?;
        args.get(i + 1)?.parse().ok()
    };
    let seconds = arg("--seconds")
        .or_else(|| arg("--minutes").map(|m| m * 60.0))
        .unwrap_or(600.0);
    if !(seconds.is_finite() && seconds > 0.0) {
        eprintln!("--minutes/--seconds must be positive");
        std::process::exit(2);
    }
    let mut config = SoakConfig::for_duration(Duration::from_secs_f64(seconds));
    if let Some(v) = arg("--max-rss-growth-mib") {
        config.max_rss_growth_kib = (v * 1024.0) as u64;
    }
    if let Some(v) = arg("--max-fd-growth") {
        config.max_fd_growth = v as usize;
    }
    if let Some(v) = arg("--max-task-growth") {
        config.max_task_growth = v as usize;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!("soak: {config:?}");
    let report = runtime.block_on(run(config, |s| {
        println!(
            "{:>6.0} s  rss {:>7} KiB  fds {:>4}  tasks {:>4}  calls {:>9}  bulk {:>6} MiB",
            s.at.as_secs_f64(),
            s.rss_kib,
            s.fds,
            s.tasks,
            s.calls,
            s.bulk_bytes >> 20
        );
    }));
    let b = report.baseline;
    println!(
        "baseline after warm-up: rss {} KiB, fds {}, tasks {}; peak after: rss {} KiB, fds {}, \
         tasks {}; {} calls, {} MiB bulk",
        b.rss_kib,
        b.fds,
        b.tasks,
        report.peak.0,
        report.peak.1,
        report.peak.2,
        report.calls,
        report.bulk_bytes >> 20
    );
    if report.passed() {
        println!("soak: passed");
    } else {
        for f in &report.failures {
            eprintln!("soak: {f}");
        }
        eprintln!("soak: FAILED");
        std::process::exit(1);
    }
}
