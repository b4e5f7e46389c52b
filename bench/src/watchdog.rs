//! A guard that ends the process if a benchmark stalls.
//!
//! In-process servers that block their runtime's worker threads (a lock
//! held forever, a blocking call on an async thread) also stop every tokio
//! timer, so no timeout inside the runtime can fire and the run hangs
//! silently. The watchdog is a plain thread: past its limit it names what
//! stalled and exits with status 2. Dropping the [`Watchdog`] disarms it.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

pub struct Watchdog {
    /// Dropped to disarm: the thread sees the channel close and ends.
    disarm: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watchdog {
    pub fn arm(limit: Duration, what: String) -> Watchdog {
        let (disarm, disarmed) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("bench-watchdog".into())
            .spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = disarmed.recv_timeout(limit) {
                    eprintln!("strata-bench: {what} did not finish within {limit:?}; giving up");
                    std::process::exit(2);
                }
            })
            .expect("spawning the watchdog thread");
        Watchdog {
            disarm: Some(disarm),
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.disarm.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
