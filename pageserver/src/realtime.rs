//! Real-time priority for GetPage threads, within a share of the CPU.
//!
//! A GetPage thread sleeps until its connection has a request, answers it
//! in tens of microseconds and sleeps again. On a core busy with ingest,
//! compaction or a co-located log replica, the time it waits to run after
//! its wake-up is most of a slow GetPage (docs/pageserver.md, twelfth
//! pass): a normal thread, even with a short slice, often waits behind
//! the running one, while a `SCHED_FIFO` thread preempts every normal
//! thread at once. In the soak, compacting p99 from sending fell from
//! 473–535 µs to 265–293 µs that way.
//!
//! A real-time thread that never sleeps would starve everything else,
//! ingest included (and a GetPage at the latest LSN waits for ingest). So
//! the GetPage threads share a budget: at most a configured share of the
//! machine's CPU time in each [`WINDOW`]. Each thread charges the CPU time
//! it used at real-time priority after each batch of requests; a thread
//! that finds the window's budget spent drops itself to normal priority
//! (with its short slice, [`crate::framed::request_short_slice`]) and goes
//! back once the window has rolled over. So under a flood of reads, ingest
//! and the rest still get the remainder of every window.
//!
//! Real-time priority needs `CAP_SYS_NICE` (or an `RLIMIT_RTPRIO` of at
//! least 1). Without it the first refusal is remembered and every GetPage
//! thread keeps normal priority and its short slice, as before. Threads a
//! real-time GetPage thread starts (the runtime may start a blocking-pool
//! thread from it) are normal threads: the priority is taken with
//! `SCHED_RESET_ON_FORK`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The accounting period of the budget. A flood of reads can hold every
/// core for at most the budget's share of it before the other threads
/// run.
pub const WINDOW: Duration = Duration::from_millis(10);

/// The real-time priority GetPage threads take (the lowest).
const PRIORITY: i32 = 1;

/// The GetPage threads' shared budget of CPU time at real-time priority.
#[derive(Debug)]
pub struct RealtimeBudget {
    /// CPU time per window the threads may use at real-time priority, in
    /// nanoseconds (0: they never take it).
    per_window_ns: u64,
    epoch: Instant,
    spent: Mutex<Spent>,
    /// The kernel refused real-time priority once: not asked again.
    refused: AtomicBool,
    /// GetPage threads at real-time priority now.
    threads: AtomicU64,
    /// Times a thread dropped to normal priority on a spent budget.
    demotions: AtomicU64,
}

#[derive(Debug, Default)]
struct Spent {
    window: u64,
    ns: u64,
}

impl RealtimeBudget {
    /// A budget of `percent` of `cpus` CPUs' time (0: real-time priority
    /// is never taken).
    pub fn new(percent: u32, cpus: usize) -> Self {
        let per_window_ns =
            WINDOW.as_nanos() as u64 * cpus as u64 * u64::from(percent.min(100)) / 100;
        RealtimeBudget {
            per_window_ns,
            epoch: Instant::now(),
            spent: Mutex::new(Spent::default()),
            refused: AtomicBool::new(false),
            threads: AtomicU64::new(0),
            demotions: AtomicU64::new(0),
        }
    }

    /// A budget of `percent` of this machine's CPUs.
    pub fn of_machine(percent: u32) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(percent, cpus)
    }

    /// Real-time priority is never taken.
    pub fn off() -> Self {
        Self::new(0, 1)
    }

    /// CPU time per window at real-time priority.
    pub fn per_window(&self) -> Duration {
        Duration::from_nanos(self.per_window_ns)
    }

    /// GetPage threads at real-time priority now.
    pub fn realtime_threads(&self) -> u64 {
        self.threads.load(Ordering::Relaxed)
    }

    /// Times a GetPage thread dropped to normal priority because the
    /// window's budget was spent.
    pub fn demotions(&self) -> u64 {
        self.demotions.load(Ordering::Relaxed)
    }

    /// Whether the kernel refused real-time priority.
    pub fn refused(&self) -> bool {
        self.refused.load(Ordering::Relaxed)
    }

    fn window_at(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.epoch).as_nanos() / WINDOW.as_nanos()) as u64
    }

    /// Charges `ns` of CPU time used at real-time priority at `now`; false
    /// once the window's budget is spent.
    fn charge(&self, now: Instant, ns: u64) -> bool {
        let window = self.window_at(now);
        let mut spent = self.spent.lock();
        if spent.window != window {
            *spent = Spent { window, ns: 0 };
        }
        spent.ns = spent.ns.saturating_add(ns);
        spent.ns <= self.per_window_ns
    }

    /// Whether `now`'s window has budget left.
    fn may_take(&self, now: Instant) -> bool {
        let window = self.window_at(now);
        let spent = self.spent.lock();
        spent.window != window || spent.ns < self.per_window_ns
    }
}

/// One GetPage thread's standing against the budget. Made on the thread
/// it governs; [`GetPageThread::after_batch`] runs there after each batch
/// of requests.
pub struct GetPageThread<'a> {
    budget: &'a RealtimeBudget,
    realtime: bool,
    /// At normal priority because the budget of this window was spent:
    /// real-time priority is tried again in a later one.
    retry_after: Option<u64>,
    /// The thread's CPU time when it last charged.
    cpu_ns: u64,
}

impl<'a> GetPageThread<'a> {
    /// Takes real-time priority for the calling thread if the budget
    /// allows and the kernel lets it; otherwise a short slice.
    pub fn start(budget: &'a RealtimeBudget) -> Self {
        let mut t = GetPageThread {
            budget,
            realtime: false,
            retry_after: None,
            cpu_ns: thread_cpu_ns(),
        };
        t.try_realtime(Instant::now());
        if !t.realtime && !crate::framed::request_short_slice() {
            tracing::debug!("the kernel gave a GetPage thread no short slice");
        }
        t
    }

    /// Whether the thread runs at real-time priority now.
    pub fn is_realtime(&self) -> bool {
        self.realtime
    }

    /// Charges the CPU time used since the last call, if at real-time
    /// priority, and drops to normal priority if the window's budget is
    /// spent; back at real-time priority once a later window has room.
    pub fn after_batch(&mut self) {
        let now = Instant::now();
        let cpu = thread_cpu_ns();
        let used = cpu.saturating_sub(self.cpu_ns);
        self.cpu_ns = cpu;
        if self.realtime {
            if !self.budget.charge(now, used) {
                self.demote(now);
            }
        } else if self
            .retry_after
            .is_some_and(|w| w != self.budget.window_at(now))
        {
            self.try_realtime(now);
        }
    }

    /// Takes real-time priority if the budget has room now; if it has
    /// none in this window, notes to try in a later one.
    fn try_realtime(&mut self, now: Instant) {
        self.retry_after = None;
        if self.budget.per_window_ns == 0 || self.budget.refused() {
            return;
        }
        if !self.budget.may_take(now) {
            self.retry_after = Some(self.budget.window_at(now));
            return;
        }
        if !set_realtime() {
            if !self.budget.refused.swap(true, Ordering::Relaxed) {
                tracing::info!(
                    "GetPage threads run at normal priority: the kernel refused real-time \
                     priority (it needs CAP_SYS_NICE or an RLIMIT_RTPRIO of at least 1)"
                );
            }
            return;
        }
        self.realtime = true;
        self.budget.threads.fetch_add(1, Ordering::Relaxed);
    }

    fn demote(&mut self, now: Instant) {
        // Lowering one's own priority needs no privilege.
        if !crate::framed::request_short_slice() {
            set_normal();
        }
        self.realtime = false;
        self.retry_after = Some(self.budget.window_at(now));
        self.budget.threads.fetch_sub(1, Ordering::Relaxed);
        self.budget.demotions.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for GetPageThread<'_> {
    fn drop(&mut self) {
        if self.realtime {
            set_normal();
            self.budget.threads.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The calling thread's CPU time, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only to `ts`, which lives across the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Puts the calling thread at `SCHED_FIFO` (the lowest real-time
/// priority), reset to normal in threads it starts; false if the kernel
/// refused (without `CAP_SYS_NICE` or an `RLIMIT_RTPRIO`). Outside the
/// budget: for callers that bound their own CPU, as the soak's clients.
pub fn set_realtime() -> bool {
    let param = libc::sched_param {
        sched_priority: PRIORITY,
    };
    // SAFETY: sched_setscheduler on the calling thread (0) only reads
    // `param`, which lives across the call.
    unsafe {
        libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param) == 0
    }
}

/// Puts the calling thread back at normal priority (always permitted).
fn set_normal() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: as in `set_realtime`.
    unsafe {
        libc::sched_setscheduler(0, libc::SCHED_OTHER, &param);
    }
}

/// The calling thread's scheduling policy, without the reset-on-fork flag,
/// and whether that flag is set.
#[cfg(test)]
fn policy() -> (i32, bool) {
    // SAFETY: sched_getscheduler takes no pointers.
    let p = unsafe { libc::sched_getscheduler(0) };
    (
        p & !libc::SCHED_RESET_ON_FORK,
        p & libc::SCHED_RESET_ON_FORK != 0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_allows_its_share_and_the_next_starts_afresh() {
        // Half of two CPUs: 10 ms of CPU time per 10 ms window.
        let b = RealtimeBudget::new(50, 2);
        assert_eq!(b.per_window(), Duration::from_millis(10));
        let t0 = b.epoch + WINDOW * 3;
        assert!(b.may_take(t0));
        assert!(b.charge(t0, 6_000_000));
        assert!(b.charge(t0 + Duration::from_millis(1), 4_000_000));
        assert!(!b.may_take(t0 + Duration::from_millis(2)), "spent exactly");
        assert!(!b.charge(t0 + Duration::from_millis(2), 1));
        assert!(b.may_take(t0 + WINDOW), "the next window has room");
        assert!(b.charge(t0 + WINDOW, 9_000_000));
        assert_eq!(RealtimeBudget::off().per_window(), Duration::ZERO);
        assert_eq!(
            RealtimeBudget::new(250, 1).per_window(),
            WINDOW,
            "at most every CPU"
        );
    }

    proptest::proptest! {
        /// Whatever the charges, the CPU time a window accepts (charges
        /// answered true) stays within its budget.
        #[test]
        fn a_window_never_accepts_more_than_its_budget(
            charges in proptest::collection::vec((0u64..40, 0u64..3_000_000), 1..200),
        ) {
            let b = RealtimeBudget::new(10, 2); // 2 ms per window
            let mut accepted = std::collections::BTreeMap::<u64, u64>::new();
            let mut at = b.epoch;
            for (step_ms_tenths, ns) in charges {
                at += Duration::from_micros(step_ms_tenths * 100);
                if b.charge(at, ns) {
                    *accepted.entry(b.window_at(at)).or_default() += ns;
                }
            }
            for (window, ns) in accepted {
                proptest::prop_assert!(ns <= 2_000_000, "window {window} accepted {ns} ns");
            }
        }
    }

    /// Burns at least `ns` of the calling thread's CPU time.
    fn burn(ns: u64) {
        let start = thread_cpu_ns();
        let mut x = 0u64;
        while thread_cpu_ns() - start < ns {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }

    #[test]
    fn a_thread_drops_to_normal_on_a_spent_budget_and_comes_back_later() {
        std::thread::spawn(|| {
            // 1% of one CPU: 100 µs per window.
            let budget = RealtimeBudget::new(1, 1);
            let mut t = GetPageThread::start(&budget);
            if budget.refused() {
                // Not permitted here: normal priority, nothing counted.
                assert!(!t.is_realtime());
                assert_eq!(policy().0, libc::SCHED_OTHER);
                assert_eq!(budget.realtime_threads(), 0);
                return;
            }
            assert!(t.is_realtime());
            assert_eq!(policy(), (libc::SCHED_FIFO, true));
            assert_eq!(budget.realtime_threads(), 1);
            // A thread it starts is a normal one.
            let child = std::thread::spawn(policy).join().unwrap();
            assert_eq!(child.0, libc::SCHED_OTHER, "reset on fork");

            burn(300_000);
            t.after_batch();
            assert!(!t.is_realtime(), "over the window's budget");
            assert_eq!(policy().0, libc::SCHED_OTHER);
            assert_eq!((budget.realtime_threads(), budget.demotions()), (0, 1));

            std::thread::sleep(WINDOW * 2);
            t.after_batch();
            assert!(t.is_realtime(), "a later window has room");
            assert_eq!(policy().0, libc::SCHED_FIFO);
            drop(t);
            assert_eq!(policy().0, libc::SCHED_OTHER, "normal again when done");
            assert_eq!(budget.realtime_threads(), 0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_thread_started_in_a_spent_window_takes_realtime_priority_in_a_later_one() {
        std::thread::spawn(|| {
            let budget = RealtimeBudget::new(1, 1);
            // Other threads spent this window's budget.
            let now = Instant::now();
            assert!(!budget.charge(now, budget.per_window_ns + 1));
            let mut t = GetPageThread::start(&budget);
            if budget.window_at(Instant::now()) != budget.window_at(now) {
                return; // the window rolled meanwhile: nothing to see
            }
            assert!(!t.is_realtime(), "no room in this window");
            assert_eq!(policy().0, libc::SCHED_OTHER);
            std::thread::sleep(WINDOW * 2);
            t.after_batch();
            let permitted = !budget.refused();
            assert_eq!(t.is_realtime(), permitted, "tried again in a later window");
            if permitted {
                assert_eq!(policy().0, libc::SCHED_FIFO);
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_zero_budget_never_takes_realtime_priority() {
        std::thread::spawn(|| {
            let budget = RealtimeBudget::off();
            let mut t = GetPageThread::start(&budget);
            burn(10_000);
            t.after_batch();
            assert!(!t.is_realtime());
            assert_eq!(policy().0, libc::SCHED_OTHER);
            assert!(!budget.refused(), "never asked");
        })
        .join()
        .unwrap();
    }
}
