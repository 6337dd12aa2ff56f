//! The process-wide tokio runtime used by the language bindings.
//!
//! Rust applications use their own runtime; bindings (Node, Swift, Kotlin) have none, so every
//! binding entry point hops onto this one.

use std::sync::OnceLock;

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

/// A handle to the shared multi-thread runtime, created on first use.
///
/// # Panics
///
/// Panics if the operating system refuses to create the runtime's threads, which leaves the
/// bindings nothing to run on.
pub fn handle() -> tokio::runtime::Handle {
    RUNTIME
        .get_or_init(|| {
            #[allow(clippy::expect_used)]
            tokio::runtime::Builder::new_multi_thread()
                .thread_name("peerlink")
                .enable_all()
                .build()
                .expect("cannot start the peerlink runtime")
        })
        .handle()
        .clone()
}

#[cfg(test)]
mod tests {
    #[test]
    fn handle_runs_tasks_and_is_shared() {
        let a = super::handle();
        let b = super::handle();
        assert_eq!(a.id(), b.id());
        assert_eq!(a.block_on(async { 40 + 2 }), 42);
    }
}
