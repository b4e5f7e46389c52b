//! Background work at low CPU and I/O priority, so GetPage keeps the CPU.
//!
//! Compaction steps, flushes (and their image building) and uploads are
//! CPU-heavy (redo replay, lz4, k-way merges, crcs) and share the
//! machine's cores with the lookups and rebuilds that answer GetPage. Each
//! runs on a thread of its own whose OS scheduling priority is lowered
//! ([`lower_priority`]: nice 19 on Linux, where a nice value applies to
//! one thread, and the lowest best-effort I/O priority): the scheduler
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

/// `ioprio_set`'s "who": one thread (Linux's IOPRIO_WHO_PROCESS).
#[cfg(target_os = "linux")]
const IOPRIO_WHO_PROCESS: libc::c_int = 1;
/// The best-effort class at its lowest level (7): `IOPRIO_CLASS_BE << 13 | 7`.
#[cfg(target_os = "linux")]
const BACKGROUND_IOPRIO: libc::c_int = (2 << 13) | 7;

/// Lowers the calling thread's CPU and I/O priority (best effort: a
/// failure only leaves it at normal priority). Call it only on a thread
/// that does background work until it exits.
pub fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid, setpriority and ioprio_set take no pointers and
        // only act on the calling thread.
        let (nice_failed, ioprio_failed) = unsafe {
            let tid = libc::gettid();
            (
                libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, BACKGROUND_NICE) != 0,
                libc::syscall(
                    libc::SYS_ioprio_set,
                    IOPRIO_WHO_PROCESS,
                    tid,
                    BACKGROUND_IOPRIO,
                ) != 0,
            )
        };
        if nice_failed || ioprio_failed {
            debug!(error = %std::io::Error::last_os_error(), nice_failed, ioprio_failed,
                "cannot lower a background thread's priority");
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
        let (nice, ioprio) = super::run("test-bg", || {
            // SAFETY: as in lower_priority.
            unsafe {
                let tid = libc::gettid();
                (
                    libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t),
                    libc::syscall(libc::SYS_ioprio_get, super::IOPRIO_WHO_PROCESS, tid),
                )
            }
        })
        .await
        .unwrap();
        assert_eq!(nice, super::BACKGROUND_NICE);
        assert_eq!(ioprio, libc::c_long::from(super::BACKGROUND_IOPRIO));
    }
}
