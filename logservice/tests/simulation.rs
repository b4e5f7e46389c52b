//! Deterministic simulation of the log protocol: the real replica and
//! writer state machines under a seeded network that drops, delays,
//! duplicates and partitions, with crashing and wiped disks (see
//! `sim/world.rs`), plus scenario tests that pin down single situations.
//!
//! `cargo test -p strata-logservice --test simulation` runs 200 seeds
//! (capped at 90 s). `STRATA_SIM_SEED=<n>` replays one seed,
//! `STRATA_SIM_SEEDS=<count>` changes how many, `STRATA_SIM_TRACE=1`
//! prints every event of the runs.

mod sim {
    pub mod check;
    pub mod net;
    pub mod rng;
    pub mod world;
}

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sim::world::{self, Report, SimConfig};

const DEFAULT_SEEDS: u64 = 200;
/// No new seed starts after this long.
const TIME_CAP: Duration = Duration::from_secs(90);

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}")),
    )
}

fn sim_config() -> SimConfig {
    SimConfig {
        chaos_ms: 2_000,
        settle_ms: 30_000,
        trace: std::env::var("STRATA_SIM_TRACE").is_ok_and(|v| v != "0"),
    }
}

/// One seed; a panic inside the state machines counts as a failure too.
fn run_seed(seed: u64) -> Result<Report, String> {
    let cfg = sim_config();
    match std::panic::catch_unwind(|| world::run(seed, cfg)) {
        Ok(result) => result,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into());
            Err(format!("panicked: {msg}"))
        }
    }
}

fn fail(seed: u64, err: &str) -> ! {
    eprintln!("simulation seed {seed} failed: {err}");
    eprintln!("replay: STRATA_SIM_SEED={seed} cargo test -p strata-logservice --test simulation");
    panic!("simulation seed {seed} failed: {err}");
}

#[test]
fn random_runs() {
    if let Some(seed) = env_u64("STRATA_SIM_SEED") {
        match run_seed(seed) {
            Ok(r) => eprintln!("seed {seed}: {r:?}"),
            Err(e) => fail(seed, &e),
        }
        return;
    }
    let seeds = env_u64("STRATA_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let failures = Mutex::new(Vec::new());
    let totals = Mutex::new(Report::default());
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    if started.elapsed() > TIME_CAP || !failures.lock().unwrap().is_empty() {
                        return;
                    }
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= seeds {
                        return;
                    }
                    match run_seed(seed) {
                        Ok(r) => add(&mut totals.lock().unwrap(), &r),
                        Err(e) => failures.lock().unwrap().push((seed, e)),
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    let t = totals.into_inner().unwrap();
    let ran = next.load(Ordering::Relaxed).min(seeds);
    eprintln!(
        "simulation: {ran} seeds in {:.1}s: {} events, {} messages, {} elections, {} crashes, {} peer fetches, {} batches acknowledged, {} MiB committed",
        started.elapsed().as_secs_f64(),
        t.events,
        t.messages,
        t.elections,
        t.crashes,
        t.peer_fetches,
        t.acks,
        t.committed_bytes >> 20
    );
    if let Some((seed, err)) = failures.into_iter().min_by_key(|(seed, _)| *seed) {
        fail(seed, &err);
    }
}

fn add(t: &mut Report, r: &Report) {
    t.events += r.events;
    t.messages += r.messages;
    t.elections += r.elections;
    t.crashes += r.crashes;
    t.peer_fetches += r.peer_fetches;
    t.acks += r.acks;
    t.committed_bytes += r.committed_bytes;
}
