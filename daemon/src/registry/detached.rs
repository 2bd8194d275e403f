//! Writes that finish whether or not their caller waits.
//!
//! hyper drops a handler's future when the client closes the connection. A write that
//! stores a record and then updates the index must not stop between the two: the record
//! would be on disk but unknown to the index (404s, 409s on the next auto-numbered publish,
//! and its image collected as unreferenced). Running the whole operation as a task of its
//! own makes it one unit that only the task itself ends.

use std::future::Future;

/// Runs `work` to completion on its own task and returns its result when the caller is
/// still there to take it. A panic in `work` is resumed in the caller, as if it had run
/// inline.
pub(super) async fn detached<T, F>(work: F) -> T
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    match tokio::spawn(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Tasks are cancelled only when the runtime shuts down, and then nobody waits here.
        Err(e) => panic!("a registry write was cancelled: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn the_work_finishes_when_the_caller_stops_waiting() {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let caller = detached(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            flag.store(true, Ordering::SeqCst);
        });
        // The caller gives up long before the work is done.
        assert!(tokio::time::timeout(Duration::from_millis(5), caller)
            .await
            .is_err());
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(done.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn results_reach_a_caller_that_waits() {
        assert_eq!(detached(async { 7 }).await, 7);
    }
}
