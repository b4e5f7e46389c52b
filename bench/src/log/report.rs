//! The `log` workload's report: the floor, each phase, every headline
//! figure next to its floor (or the ideal the floor implies), and last the
//! machine-readable `RESULT` line.
//!
//! The ideals for many writers assume perfect group commit: every writer's
//! batch of a round shares one quorum fsync and one round trip, so `n`
//! writers commit `n` times per floor latency. Real figures fall short of
//! them; how far is what the table shows.

use super::phase::Phase;
use crate::floor::Floor;
use crate::report::{Table, per_sec, times, us};

/// Prints the whole report; `phases` holds one phase per writer count.
pub fn print(floor: &Floor, phases: &[Phase]) {
    println!();
    print_floor(floor);
    println!();
    print_phases(phases);
    println!();
    print_against_floor(floor, phases);
    println!();
    println!("{}", result_line(floor, phases));
}

fn print_floor(floor: &Floor) {
    println!("floor (same disk, same loopback, plain std I/O, no Strata code)");
    let mut t = Table::new(&["component", "p50", "p99", "samples"]);
    let (f, r) = (floor.quorum_fsync, floor.loopback_rtt);
    t.row(vec![
        "quorum fsync: 2nd of 3 × (4 KiB + fdatasync)".into(),
        us(f.p50_us),
        us(f.p99_us),
        f.samples.to_string(),
    ]);
    t.row(vec![
        "loopback TCP round trip, 64 B".into(),
        us(r.p50_us),
        us(r.p99_us),
        r.samples.to_string(),
    ]);
    t.row(vec![
        "floor = fsync + round trip".into(),
        us(floor.commit_p50_us()),
        us(floor.commit_p99_us()),
        String::new(),
    ]);
    t.print();
}

fn print_phases(phases: &[Phase]) {
    println!("log service: 3 replicas on 127.0.0.1, writers share one client");
    let mut t = Table::new(&[
        "writers",
        "commits",
        "commits/s",
        "p50",
        "p99",
        "fsyncs by replica",
        "commits/fsync",
    ]);
    for p in phases {
        t.row(vec![
            p.writers.to_string(),
            p.commits.to_string(),
            per_sec(p.commits_per_sec()),
            us(p.latency.p50_us),
            us(p.latency.p99_us),
            fsyncs_by_replica(&p.fsyncs_by_replica),
            format!("{:.2}", p.commits_per_fsync()),
        ]);
    }
    t.print();
}

fn print_against_floor(floor: &Floor, phases: &[Phase]) {
    println!("against the floor");
    let mut t = Table::new(&[
        "figure",
        "strata",
        "floor / ideal",
        "strata ÷ floor",
        "ideal means",
    ]);
    let one = phase(phases, 1);
    let floor_rate = 1e6 / floor.commit_p50_us();
    let lat = |name: &str, strata: f64, bound: f64, means: &str| {
        vec![
            name.into(),
            us(strata),
            us(bound),
            times(strata / bound),
            means.into(),
        ]
    };
    t.row(lat(
        "commit p50, 1 writer",
        one.latency.p50_us,
        floor.commit_p50_us(),
        "fsync p50 + RTT p50",
    ));
    t.row(lat(
        "commit p99, 1 writer",
        one.latency.p99_us,
        floor.commit_p99_us(),
        "fsync p99 + RTT p99 (rough)",
    ));
    for p in phases {
        let ideal = p.writers as f64 * floor_rate;
        t.row(vec![
            format!("throughput, {}", writers(p.writers)),
            per_sec(p.commits_per_sec()),
            per_sec(ideal),
            times(p.commits_per_sec() / ideal),
            format!("{} / floor p50", p.writers),
        ]);
    }
    let many = phase(phases, 64);
    t.row(vec![
        "commits per fsync, 64 writers".into(),
        format!("{:.2}", many.commits_per_fsync()),
        "64".into(),
        times(many.commits_per_fsync() / 64.0),
        "every writer in every fsync".into(),
    ]);
    let speedup = many.commits_per_sec() / one.commits_per_sec();
    t.row(vec![
        "group commit speedup, 64 vs 1".into(),
        times(speedup),
        times(64.0),
        times(speedup / 64.0),
        "64 writers at 1 writer's latency".into(),
    ]);
    t.print();
}

/// The last line of the output, for scripts.
fn result_line(floor: &Floor, phases: &[Phase]) -> String {
    let (one, many) = (phase(phases, 1), phase(phases, 64));
    let commit_p50_us = one.latency.p50_us;
    let floor_us = floor.commit_p50_us();
    format!(
        "RESULT commit_p50_us={commit_p50_us:.1} floor_us={floor_us:.1} ratio={:.2} tput_1={:.0} \
         tput_64={:.0} group_commit_speedup={:.2} commits_per_fsync_64={:.2}",
        commit_p50_us / floor_us,
        one.commits_per_sec(),
        many.commits_per_sec(),
        many.commits_per_sec() / one.commits_per_sec(),
        many.commits_per_fsync(),
    )
}

fn fsyncs_by_replica(counts: &[u64]) -> String {
    counts
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(" / ")
}

fn writers(n: usize) -> String {
    if n == 1 {
        "1 writer".into()
    } else {
        format!("{n} writers")
    }
}

fn phase(phases: &[Phase], writers: usize) -> &Phase {
    phases
        .iter()
        .find(|p| p.writers == writers)
        .expect("every writer count the report names is measured")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::stats::Latency;

    fn latency(p50_us: f64) -> Latency {
        Latency {
            samples: 1,
            p50_us,
            p99_us: 2.0 * p50_us,
        }
    }

    fn phase(writers: usize, commits: u64, fsyncs_each_replica: u64) -> Phase {
        Phase {
            writers,
            commits,
            elapsed: Duration::from_secs(2),
            latency: latency(400.0),
            fsyncs_by_replica: vec![fsyncs_each_replica; 3],
        }
    }

    #[test]
    fn result_line_names_every_figure_in_order() {
        let floor = Floor {
            quorum_fsync: latency(150.0),
            loopback_rtt: latency(50.0),
        };
        let phases = [
            phase(1, 4000, 4000),
            phase(16, 20_000, 2000),
            phase(64, 64_000, 1000),
        ];
        assert_eq!(
            result_line(&floor, &phases),
            "RESULT commit_p50_us=400.0 floor_us=200.0 ratio=2.00 tput_1=2000 tput_64=32000 \
             group_commit_speedup=16.00 commits_per_fsync_64=64.00"
        );
    }
}
