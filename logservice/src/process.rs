//! Settings a Strata server process makes for itself at start.
//!
//! They belong to the binaries (`strata`, `strata-bench`), which call
//! them first thing in `main`; a program that embeds a cluster decides
//! for its own process.

/// Turns transparent huge pages off for this process (Linux
/// `PR_SET_THP_DISABLE`; inherited by child processes; elsewhere a no-op).
///
/// mimalloc asks for huge pages on its arenas (`madvise(MADV_HUGEPAGE)`),
/// so on a kernel with THP in `madvise` mode, Debian's default, the first
/// touch of each 2 MiB of heap zeroes it whole, and the default `defrag`
/// setting compacts memory to find one, inside whatever thread touched
/// it. In the page server's soak that thread was often a GetPage thread:
/// in the first three seconds of ingest the GetPage threads spent over a
/// quarter of their time in huge-page faults, and GetPage p99 over the
/// first second was 22–32 ms (docs/pageserver.md, tenth pass). With
/// 4 KiB pages a fault costs microseconds. Databases commonly ask for THP off for the same reason
/// (Redis, MongoDB, Oracle); this asks only for this process.
pub fn disable_transparent_huge_pages() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) takes no pointers
        // and only sets a flag of the calling process.
        if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Makes `command`'s process start with transparent huge pages as the
/// machine sets them rather than off (the flag is inherited through fork
/// and exec): for a peer measured beside Strata, such as MariaDB in the
/// sysbench comparison, which should run as the machine runs it.
pub fn machine_huge_pages(command: &mut std::process::Command) -> &mut std::process::Command {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure runs in the child between fork and exec and
        // only makes one system call, which is async-signal-safe. Best
        // effort: where the call is refused, the child keeps what it
        // inherited rather than not start.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0);
                Ok(())
            });
        }
    }
    command
}

/// Moves mimalloc's return of freed memory to the operating system onto
/// a thread of its own (`memory-purge`), which does it every
/// [`PURGE_EVERY`]; without it, mimalloc does it inside whichever thread
/// happens to allocate or free once its purge delay (a second) has
/// passed. For the binaries whose global allocator is mimalloc (feature
/// `mimalloc`).
///
/// Returning memory (`madvise(MADV_DONTNEED)`) flushes the other CPUs'
/// TLBs, and the calling thread waits until every CPU has answered its
/// interrupt. On a virtual machine whose other vCPU the host has
/// descheduled, that wait lasts until the host runs it again. In the page
/// server's soak, a GetPage thread that happened to purge stalled 10–30 ms
/// about once a second; with the purger, the GetPages over 3 ms were
/// 13–53% of the build's before, run for run (docs/pageserver.md,
/// eleventh pass). Here the purger thread waits
/// instead, and the request threads never purge: their own check finds
/// the purge deadline far away.
///
/// Leaves mimalloc as it is, and returns `Ok(false)`, when the
/// environment sets `MIMALLOC_PURGE_DELAY`: the operator's choice stands.
#[cfg(feature = "mimalloc")]
pub fn purge_freed_memory_in_background() -> std::io::Result<bool> {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return Ok(false);
    }
    // The thread first, so that a failure to start it leaves mimalloc
    // purging on its own.
    spawn_purger(PURGE_EVERY)?;
    leave_purges_to_the_purger();
    Ok(true)
}

/// How often the purger returns freed memory: ten seconds, as jemalloc's
/// default decay. Memory freed and allocated again within that time is
/// reused without a page fault; in the page server's soak, purging every
/// second instead took 950–990 thousand minor page faults a run, against
/// 400–440 thousand, for about the same peak resident memory.
#[cfg(feature = "mimalloc")]
pub const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// mimalloc's `mi_option_purge_delay` (position 15 of `mi_option_t` in
/// mimalloc 2 and 3; `libmimalloc-sys` names only the first options). A
/// test checks the position against the option's default.
#[cfg(feature = "mimalloc")]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// A purge delay no process waits out (about 11 days): mimalloc then never
/// purges on its own, while a forced collection still purges everything
/// freed (a negative delay would forbid purging altogether).
#[cfg(feature = "mimalloc")]
const PURGE_DELAY_LEFT_TO_THE_PURGER_MS: std::ffi::c_long = 1_000_000_000;

#[cfg(feature = "mimalloc")]
fn leave_purges_to_the_purger() {
    // SAFETY: mi_option_set only stores a value in mimalloc's option table.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_LEFT_TO_THE_PURGER_MS)
    };
}

#[cfg(feature = "mimalloc")]
fn spawn_purger(every: std::time::Duration) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("memory-purge".into())
        .spawn(move || {
            // SAFETY: a block from mi_malloc freed once by mi_free; it
            // makes this thread's mimalloc state, without which
            // mi_collect does nothing.
            unsafe { libmimalloc_sys::mi_free(libmimalloc_sys::mi_malloc(8)) };
            loop {
                std::thread::sleep(every);
                // SAFETY: mi_collect takes no pointers; forced, it returns
                // every range freed since the last time, from all threads.
                unsafe { libmimalloc_sys::mi_collect(true) };
            }
        })
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn huge_pages_are_off_for_the_process_afterwards() {
        disable_transparent_huge_pages().unwrap();
        // SAFETY: PR_GET_THP_DISABLE takes no pointers.
        let flag = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(flag, 1, "PR_GET_THP_DISABLE after disabling");
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        // Kernels since 5.0 print the flag's effect here too.
        if let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) {
            assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
        }
        // A child started with the machine's setting has the flag clear,
        // and a plain child inherits it.
        let child_flag = |restore: bool| {
            let mut cmd = std::process::Command::new("sh");
            cmd.args(["-c", "grep '^THP_enabled' /proc/self/status"]);
            if restore {
                machine_huge_pages(&mut cmd);
            }
            let out = cmd.output().unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        if status.contains("THP_enabled:") {
            assert!(
                child_flag(false).contains('0'),
                "a plain child inherits the flag"
            );
            assert!(
                child_flag(true).contains('1'),
                "machine_huge_pages clears it"
            );
        }
    }

    /// This process's resident memory, in bytes.
    #[cfg(feature = "mimalloc")]
    fn resident() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        // SAFETY: sysconf takes no pointers.
        pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize
    }

    /// Runs in a process of its own (this test binary again, with only
    /// this test): mimalloc's options and resident memory are
    /// process-wide, and other tests would move both.
    #[cfg(all(feature = "mimalloc", target_os = "linux"))]
    #[test]
    fn freed_memory_is_returned_by_the_purger_thread_only() {
        const CHILD: &str = "STRATA_PURGE_TEST_CHILD";
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        if std::env::var_os(CHILD).is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "process::tests::freed_memory_is_returned_by_the_purger_thread_only",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD, "1")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{text}");
            assert!(
                text.contains("1 passed"),
                "the test did not run in the child: {text}"
            );
            return;
        }

        // SAFETY: mi_option_get only reads mimalloc's option table.
        let default = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert!(
            default == 1_000 || default == 10,
            "option {MI_OPTION_PURGE_DELAY} is not the purge delay (mimalloc 3 has 1000 ms, 2 has 10 ms): {default}"
        );
        leave_purges_to_the_purger();

        const BLOCKS: usize = 64;
        const BLOCK: usize = 1 << 20;
        let freed = BLOCKS * BLOCK;
        let before = resident();
        // A thread that allocates, writes and frees the blocks, then ends:
        // its ending hands its empty pages back to mimalloc's arenas,
        // where they wait to be purged.
        std::thread::spawn(|| {
            // SAFETY: each block is BLOCK bytes from mi_malloc, written
            // within bounds, then freed once.
            unsafe {
                let blocks: Vec<*mut u8> = (0..BLOCKS)
                    .map(|_| libmimalloc_sys::mi_malloc(BLOCK).cast())
                    .collect();
                for &b in &blocks {
                    assert!(!b.is_null());
                    std::ptr::write_bytes(b, 0xA5, BLOCK);
                }
                for b in blocks {
                    libmimalloc_sys::mi_free(b.cast());
                }
            }
        })
        .join()
        .unwrap();
        // Past mimalloc's own delay, an allocating thread's collection
        // (as any allocation may make) leaves the memory resident.
        std::thread::sleep(std::time::Duration::from_millis(1_500));
        // SAFETY: a block from mi_malloc freed once; mi_collect takes no
        // pointers.
        unsafe {
            libmimalloc_sys::mi_free(libmimalloc_sys::mi_malloc(8));
            libmimalloc_sys::mi_collect(false);
        }
        let held = resident();
        assert!(
            held >= before + freed * 3 / 4,
            "freed memory was returned without the purger: {before} -> {held} bytes resident"
        );

        spawn_purger(std::time::Duration::from_millis(20)).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let now = resident();
            if now + freed * 3 / 4 <= held {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the purger did not return the freed memory: {held} -> {now} bytes resident"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
