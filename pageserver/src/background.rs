//! Background work at low CPU priority, so GetPage keeps the CPU.
//!
//! Compaction steps and the image building of flushes are CPU-heavy (redo
//! replay, lz4, k-way merges) and share the machine's cores with the
//! lookups and rebuilds that answer GetPage. Each runs on a thread of its
//! own whose OS scheduling priority is lowered ([`lower_priority`]: nice
//! 19 on Linux, where a nice value applies to one thread): the scheduler
//! then gives a runnable GetPage thread almost all of a contended core,
//! and background work still uses every idle cycle. Threads of the tokio
//! blocking pool are never lowered: they are reused for rebuilds, and an
//! unprivileged thread cannot raise its priority back.
//!
//! Nothing here may block on the async runtime.

use tracing::debug;

use crate::error::{PageServerError, Result};

/// The nice value background threads run at (the lowest priority).
const BACKGROUND_NICE: i32 = 19;

/// Lowers the calling thread's CPU priority (best effort: a failure only
/// leaves it at normal priority). Call it only on a thread that does
/// background work until it exits.
pub fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take no pointers and only act on
        // the calling thread.
        let failed = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, BACKGROUND_NICE) != 0
        };
        if failed {
            debug!(error = %std::io::Error::last_os_error(), "cannot lower a background thread's priority");
        }
    }
}

/// Runs `work` on a new low-priority thread named `name` and waits for it
/// without blocking the async threads.
pub async fn run<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            lower_priority();
            let _ = tx.send(work());
        })
        .map_err(|e| PageServerError::Unavailable(format!("starting {name}: {e}")))?;
    rx.await
        .map_err(|_| PageServerError::Unavailable(format!("{name} panicked")))
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn work_runs_and_its_result_comes_back() {
        assert_eq!(super::run("test-bg", || 6 * 7).await.unwrap(), 42);
        let panicked = super::run("test-bg", || -> u32 { panic!("boom") }).await;
        assert!(panicked.is_err());
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_thread_runs_at_the_lowest_priority() {
        let nice = super::run("test-bg", || {
            // SAFETY: as in lower_priority.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
        })
        .await
        .unwrap();
        assert_eq!(nice, super::BACKGROUND_NICE);
    }
}
