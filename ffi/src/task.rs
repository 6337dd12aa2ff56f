//! Running binding calls on the shared peerlink runtime.
//!
//! uniffi polls an exported future from the foreign language's executor, where no tokio
//! context exists. Each async entry point therefore spawns its work onto
//! `peerlink::runtime::handle()` and awaits the join handle, which any executor can poll.
//! Dropping the awaiting future (a cancelled Kotlin coroutine or Swift task) aborts the work,
//! so a cancelled `call` tells the peer to stop.

use std::future::Future;

use tokio::task::JoinHandle;

use crate::error::PeerlinkError;

struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `work` on the peerlink runtime and returns its result.
pub(crate) async fn run<T, F>(work: F) -> Result<T, PeerlinkError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, PeerlinkError>> + Send + 'static,
{
    let mut task = AbortOnDrop(peerlink::runtime::handle().spawn(work));
    match (&mut task.0).await {
        Ok(result) => result,
        Err(e) if e.is_cancelled() => Err(PeerlinkError::Cancelled {
            code: "cancelled".into(),
            detail: "the operation was cancelled".into(),
        }),
        Err(_) => Err(PeerlinkError::internal("the operation failed unexpectedly")),
    }
}

/// Like [`run`] for work that cannot fail; `fallback` stands in if the task dies.
pub(crate) async fn run_infallible<T, F>(work: F, fallback: T) -> T
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    run(async move { Ok(work.await) }).await.unwrap_or(fallback)
}
