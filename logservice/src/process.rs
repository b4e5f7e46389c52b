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
}
