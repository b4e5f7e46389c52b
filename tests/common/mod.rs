//! Helpers for the cross-process tests: real `strata` processes on
//! 127.0.0.1, started with flags and killed with SIGKILL.

#![allow(dead_code)] // each test binary uses its own part

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A port that was free a moment ago, below Linux's default ephemeral
/// range (32768–60999). A port the kernel hands out for a bind to port 0
/// could also be handed to any outgoing connection, or to another test's
/// bind, before the process given it binds it (a replica then failed to
/// start with "Address already in use"). Ports below that range are only
/// taken by an explicit bind.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Each test process starts at its own place in the range.
    let start = std::process::id().wrapping_mul(2_654_435_761) % COUNT;
    for _ in 0..COUNT {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (start + step) % COUNT) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + COUNT)
}

/// One `strata <role>` process, restartable with the same flags and
/// environment.
pub struct Process {
    args: Vec<String>,
    env: Vec<(String, String)>,
    stderr: Option<PathBuf>,
    child: Option<Child>,
}

impl Process {
    pub fn new(args: Vec<String>) -> Process {
        Process {
            args,
            env: Vec::new(),
            stderr: None,
            child: None,
        }
    }

    /// Starts it with `key=value` in its environment as well.
    pub fn with_env(mut self, key: &str, value: &str) -> Process {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Appends its standard error to `path` instead of the test's.
    pub fn with_stderr_to(mut self, path: &Path) -> Process {
        self.stderr = Some(path.into());
        self
    }

    pub fn start(&mut self) {
        let stderr = match &self.stderr {
            Some(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("opening the stderr file")
                .into(),
            None => Stdio::inherit(),
        };
        let child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("starting strata");
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn terminate(&mut self) {
        terminate(self.child.take().expect("running"), &self.args[0]);
    }

    /// SIGTERM; how it exited.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        sigterm(&child);
        child.wait().unwrap()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// SIGTERM (what Ctrl-C does), then asserts a clean exit (status 0).
pub fn terminate(mut child: Child, what: &str) {
    sigterm(&child);
    let status = child.wait().unwrap();
    assert!(status.success(), "strata {what} exited with {status}");
}

fn sigterm(child: &Child) {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
}

/// A log replica: `strata logservice` with id `id` (1-based) of `ports`.
pub fn log_replica(cluster: &str, dir: &Path, id: usize, ports: &[u16]) -> Process {
    let port = ports[id - 1];
    let peers: Vec<String> = ports
        .iter()
        .filter(|p| **p != port)
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let data: PathBuf = dir.join(format!("log-{id}"));
    Process::new(vec![
        "logservice".into(),
        "--id".into(),
        id.to_string(),
        "--cluster-id".into(),
        cluster.into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--data-dir".into(),
        data.to_str().unwrap().into(),
        "--peers".into(),
        peers.join(","),
    ])
}

pub fn endpoint(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// `strata up` on MySQL port `port` with any free storage ports, started.
pub fn up(dir: &Path, port: u16, password: Option<&str>) -> Process {
    let mut p = up_process(dir, port, password);
    p.start();
    p
}

/// `strata up` on MySQL port `port` with any free storage ports, not
/// started yet.
pub fn up_process(dir: &Path, port: u16, password: Option<&str>) -> Process {
    let mut args: Vec<String> = vec![
        "up".into(),
        "--data-dir".into(),
        dir.display().to_string(),
        "--log-base-port".into(),
        "0".into(),
        "--pageserver-port".into(),
        "0".into(),
        "--mysql-port".into(),
        port.to_string(),
    ];
    if let Some(p) = password {
        args.extend(["--root-password".into(), p.into()]);
    }
    Process::new(args)
}
