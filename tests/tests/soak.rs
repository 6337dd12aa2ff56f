//! A short soak: 25 s of steady RPC load and bulk streams over a WebSocket and a WebRTC link;
//! after 8 s of warm-up, resident memory, descriptors and live tasks stay within their bounds.
//! Its own test binary so other tests do not disturb the process-wide counts. The long run is
//! the `soak` binary (`docs/testing.md`).

use std::time::Duration;

use peerlink_tests::soak::{SoakConfig, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_soak_keeps_memory_fds_and_tasks_within_bounds() {
    let mut config = SoakConfig::for_duration(Duration::from_secs(25));
    config.warm_up = Duration::from_secs(8);
    let report = run(config, |s| eprintln!("{s:?}")).await;
    assert!(report.calls > 0 && report.bulk_bytes > 0, "{report:?}");
    assert!(report.passed(), "{:#?}", report.failures);
}
