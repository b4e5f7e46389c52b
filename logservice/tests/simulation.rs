//! Deterministic simulation of the log protocol: the real replica and
//! writer state machines under a seeded network that drops, delays,
//! duplicates and partitions, with crashing and wiped disks (see
//! `sim/world.rs`), plus scenario tests that pin down single situations.
//!
//! `cargo test -p strata-logservice --test simulation` runs 500 seeds
//! (no new one starts after 90 s). `STRATA_SIM_SEED=<n>` replays one seed,
//! `STRATA_SIM_SEEDS=<count>` changes how many (and `STRATA_SIM_FIRST` the
//! first, `STRATA_SIM_SECONDS` the time cap), `STRATA_SIM_TRACE=1` prints
//! every event of the runs.

mod sim {
    pub mod check;
    pub mod lab;
    pub mod net;
    pub mod rng;
    pub mod world;
}

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sim::lab::{ALL, Lab, batch, holds};
use sim::world::{self, Report, SimConfig};
use strata_logservice::msg::{AppendOutcome, AppendRequest};
use strata_logservice::writer::{Outgoing, Phase, WriterConfig};
use strata_wal::Lsn;

/// Wiped-disk bugs need many runs (one disk is lost per run), long
/// histories need long ones: most seeds run 2 to 8 simulated seconds of
/// chaos, every tenth 20 seconds. About 20 s for the default on 2 cores.
const DEFAULT_SEEDS: u64 = 500;
/// No new seed starts after this long (`STRATA_SIM_SECONDS` to change).
const TIME_CAP_SECS: u64 = 90;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}")),
    )
}

fn sim_config(seed: u64) -> SimConfig {
    let chaos_ms = if seed % 10 == 9 {
        20_000
    } else {
        2_000 + seed.wrapping_mul(0x9E37_79B9) % 6_001
    };
    SimConfig {
        chaos_ms,
        settle_ms: 30_000,
        trace: std::env::var("STRATA_SIM_TRACE").is_ok_and(|v| v != "0"),
    }
}

/// One seed; a panic inside the state machines counts as a failure too.
fn run_seed(seed: u64) -> Result<Report, String> {
    let cfg = sim_config(seed);
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
    let first = env_u64("STRATA_SIM_FIRST").unwrap_or(0);
    let end = first + env_u64("STRATA_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
    let cap = Duration::from_secs(env_u64("STRATA_SIM_SECONDS").unwrap_or(TIME_CAP_SECS));
    let started = Instant::now();
    let next = AtomicU64::new(first);
    let ran = AtomicU64::new(0);
    let failures = Mutex::new(Vec::new());
    let totals = Mutex::new(Report::default());
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    if started.elapsed() > cap || !failures.lock().unwrap().is_empty() {
                        return;
                    }
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        return;
                    }
                    ran.fetch_add(1, Ordering::Relaxed);
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
    let ran = ran.load(Ordering::Relaxed);
    eprintln!(
        "simulation: {ran} seeds from {first} in {:.1}s: {} events, {} messages, {} elections, {} crashes, {} peer fetches, {} batches acknowledged, {} MiB committed",
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

#[test]
fn a_seed_replays_exactly() {
    // Everything in a run comes from the seed: two runs of one seed see the
    // same events, messages and commits.
    for seed in [7, 19] {
        let a = format!("{:?}", run_seed(seed).unwrap());
        let b = format!("{:?}", run_seed(seed).unwrap());
        assert_eq!(a, b, "seed {seed} ran differently twice");
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

// ---- scenarios ----

/// A writer that leads a new cluster after the bootstrap round.
fn bootstrapped() -> (Lab, strata_logservice::writer::Writer) {
    let mut lab = Lab::new();
    let mut w1 = lab.writer("w1");
    assert!(
        lab.elect(&mut w1, ALL).unwrap(),
        "an empty cluster bootstraps"
    );
    (lab, w1)
}

#[test]
fn an_empty_cluster_bootstraps_and_commits() {
    let (mut lab, mut w1) = bootstrapped();
    assert_eq!(
        w1.term(),
        2,
        "the first round finds empty logs, the second bootstraps"
    );
    for id in [1, 2, 3] {
        assert!(lab.replica(id).control().voter, "replica {id} is a voter");
    }
    let a = batch(1, 3, 100);
    let lsn = lab.submit(&mut w1, &a, ALL).unwrap();
    assert_eq!(w1.commit(), lsn);
    lab.tick(&mut w1, ALL, 100).unwrap();
    for id in [1, 2, 3] {
        assert_eq!(
            lab.replica(id).commit(),
            lsn,
            "replica {id} learnt the commit"
        );
        assert!(holds(&lab.log(id), &a, lsn));
    }
}

#[test]
fn a_new_commit_lsn_reaches_every_replica_at_once_by_default() {
    // Readers (the page server) must see a commit even if the writer stops
    // right after it: the default sends the commit LSN without waiting for
    // an append to carry it.
    assert_eq!(WriterConfig::new("w", Vec::new()).commit_heartbeat_ms, 0);
    let (mut lab, mut w1) = bootstrapped();
    let a = lab.submit(&mut w1, &batch(1, 3, 100), ALL).unwrap();
    assert_eq!(w1.commit(), a);
    lab.tick(&mut w1, ALL, 0).unwrap();
    for id in [1, 2, 3] {
        assert_eq!(lab.replica(id).commit(), a, "replica {id} knows the commit");
    }
}

#[test]
fn without_pumping_on_responses_the_next_batch_carries_the_commit() {
    // The client's driver: responses send nothing, so the callers they
    // complete run first, and the batch they append next brings the new
    // commit LSN to every replica instead of a heartbeat of its own.
    let mut lab = Lab::new();
    let mut w1 = strata_logservice::writer::Writer::new(WriterConfig {
        pump_on_response: false,
        ..world::writer_config("w1")
    });
    assert!(lab.elect(&mut w1, ALL).unwrap());
    let a = w1.submit(&batch(1, 3, 100)).unwrap();
    let mut answered = Vec::new();
    for o in w1.pump(0) {
        answered.extend(lab.step(&mut w1, o, ALL).unwrap());
    }
    assert_eq!(w1.commit(), a, "every replica acknowledged the batch");
    assert!(
        answered.is_empty(),
        "the responses sent nothing: {answered:?}"
    );
    let b = w1.submit(&batch(2, 3, 100)).unwrap();
    let next = w1.pump(0);
    assert_eq!(next.len(), 3, "one append per replica: {next:?}");
    for o in &next {
        let Outgoing::Append(_, req) = o else {
            panic!("not an append: {o:?}");
        };
        assert!(!req.data.is_empty(), "the next batch, not a heartbeat");
        assert_eq!(req.commit_lsn, a, "it carries the new commit LSN");
    }
    lab.run(&mut w1, next, ALL).unwrap();
    assert_eq!(w1.commit(), b);
    for id in [1, 2, 3] {
        assert_eq!(lab.replica(id).commit(), b, "replica {id} knows the commit");
    }
}

#[test]
fn a_bootstrap_that_reached_one_replica_is_finished_by_the_next_writer() {
    let mut lab = Lab::new();
    let mut w1 = lab.writer("w1");
    // The first round reaches everyone; the bootstrap round only replica 3.
    let mut bootstrap = Vec::new();
    for o in w1.start_election(0) {
        bootstrap.extend(lab.step(&mut w1, o, ALL).unwrap());
    }
    assert_eq!(bootstrap.len(), 3, "every log is empty: a bootstrap round");
    for o in bootstrap {
        lab.step(&mut w1, o, &[3]).unwrap();
    }
    assert!(lab.replica(3).control().voter && !lab.replica(1).control().voter);
    // One voter of three, every log still empty: a later writer must be
    // able to bootstrap, or the cluster never elects anyone.
    let mut w2 = lab.writer("w2");
    w2.observe_term(w1.term());
    assert!(lab.elect(&mut w2, ALL).unwrap(), "the cluster is not stuck");
    let lsn = lab.submit(&mut w2, &batch(2, 1, 10), ALL).unwrap();
    assert_eq!(w2.commit(), lsn);
}

#[test]
fn a_stale_writer_is_fenced_and_its_batch_never_lands() {
    let (mut lab, mut w1) = bootstrapped();
    let a = lab.submit(&mut w1, &batch(1, 2, 50), ALL).unwrap();
    let mut w2 = lab.writer("w2");
    w2.observe_term(w1.term());
    assert!(lab.elect(&mut w2, ALL).unwrap());
    let log_before: Vec<Vec<u8>> = ALL.iter().map(|&id| lab.log(id)).collect();
    // w1 does not know yet: it takes a batch and sends it.
    let b = batch(9, 2, 50);
    let b_lsn = w1.submit(&b).expect("w1 still thinks it leads");
    lab.run(&mut w1, Vec::new(), ALL).unwrap();
    assert!(matches!(w1.phase(), Phase::Fenced { by_term } if by_term == w2.term()));
    assert!(
        w1.commit() < b_lsn,
        "a fenced writer's batch is not committed"
    );
    assert_eq!(
        w1.submit(&b),
        Err(strata_logservice::writer::SubmitError::Fenced { by_term: w2.term() })
    );
    for (i, &id) in ALL.iter().enumerate() {
        assert_eq!(
            lab.log(id),
            log_before[i],
            "replica {id} took nothing from the stale writer"
        );
    }
    // The replica says so to an append of the old term directly, too.
    let stale = AppendRequest {
        term: w1.term(),
        prev_term: w1.term(),
        start: a,
        data_term: w1.term(),
        data: bytes::Bytes::new(),
        commit_lsn: a,
        trim_floor: Lsn::ZERO,
    };
    let answer = lab.replica_mut(1).append(&stale).unwrap();
    assert_eq!(answer.outcome, AppendOutcome::Fenced);
    assert_eq!(answer.promised_term, w2.term());
    let c = lab.submit(&mut w2, &batch(3, 1, 10), ALL).unwrap();
    assert_eq!(w2.commit(), c);
    assert!(holds(&lab.log(1), &batch(1, 2, 50), a));
}

#[test]
fn a_torn_tail_is_cut_to_the_last_complete_batch() {
    let (mut lab, mut w1) = bootstrapped();
    let a = lab.submit(&mut w1, &batch(1, 2, 100), ALL).unwrap();
    // A batch larger than an append, written but never synced.
    lab.auto_sync = false;
    let big = batch(2, 6, 1500);
    let big_lsn = lab.submit(&mut w1, &big, ALL).unwrap();
    assert!(w1.commit() < big_lsn);
    let unsynced = lab.replica(1).storage().volatile_len();
    assert_eq!(
        lab.replica(1).end(),
        big_lsn,
        "replica 1 wrote the whole batch"
    );
    assert!(unsynced as u64 >= big_lsn.0 - a.0);
    lab.auto_sync = true;
    let history = lab.replica(1).control().history.clone();
    // Every byte survives but the last is torn: the batch is incomplete.
    lab.crash(1, unsynced, true);
    lab.restart(1);
    assert_eq!(
        lab.replica(1).end(),
        a,
        "cut back to the last complete batch"
    );
    assert_eq!(lab.replica(1).flush(), a);
    // Half the batch survives, untorn: still incomplete.
    lab.crash(2, unsynced / 2, false);
    lab.restart(2);
    assert_eq!(lab.replica(2).end(), a);
    // All of it survives, untorn: the batch is whole and stays.
    let unsynced3 = lab.replica(3).storage().volatile_len();
    lab.crash(3, unsynced3, false);
    lab.restart(3);
    assert_eq!(lab.replica(3).end(), big_lsn);
    assert!(holds(&lab.log(3), &big, big_lsn));
    assert_eq!(lab.replica(3).control().history, history);
    // The writer carries on: replicas 1 and 2 get the batch again.
    lab.tick(&mut w1, ALL, 1000).unwrap();
    lab.tick(&mut w1, ALL, 1000).unwrap();
    assert_eq!(w1.commit(), big_lsn);
    for id in [1, 2, 3] {
        assert!(holds(&lab.log(id), &big, big_lsn), "replica {id}");
    }
}

/// Commits `a` everywhere, then batches 2..=5 on replicas 1 and 2 only.
fn committed_without_replica_3() -> (
    Lab,
    strata_logservice::writer::Writer,
    Vec<(strata_wal::Batch, Lsn)>,
) {
    let (mut lab, mut w1) = bootstrapped();
    let a = batch(1, 1, 50);
    let a_lsn = lab.submit(&mut w1, &a, ALL).unwrap();
    lab.tick(&mut w1, ALL, 100).unwrap();
    let mut batches = vec![(a, a_lsn)];
    for tag in 2..=5 {
        let b = batch(tag, 2, 300);
        let lsn = lab.submit(&mut w1, &b, &[1, 2]).unwrap();
        batches.push((b, lsn));
    }
    assert_eq!(w1.commit(), batches[4].1);
    (lab, w1, batches)
}

#[test]
fn a_replica_wiped_mid_term_does_not_vote_before_it_has_that_terms_commits() {
    let (mut lab, mut w1, batches) = committed_without_replica_3();
    lab.wipe(1);
    w1.on_replica_reset(1);
    // The writer reaches the new replica 1, which copies the committed log
    // of replica 3: that holds only the first batch, yet it is above the
    // start of the term.
    lab.tick(&mut w1, &[1], 100).unwrap();
    assert!(lab.replica(1).is_behind());
    lab.catch_up(1, 3).unwrap();
    assert_eq!(lab.replica(1).commit(), batches[0].1);
    assert!(
        !lab.replica(1).control().voter,
        "replica 1 lacks batches committed before its wipe: it must not vote"
    );
    // With replica 2 down, replicas 1 and 3 cannot elect anyone, who would
    // adopt a log without batches 2..=5.
    lab.crash(2, 0, false);
    let mut w2 = lab.writer("w2");
    w2.observe_term(w1.term());
    assert!(
        !lab.elect(&mut w2, &[1, 3]).unwrap(),
        "one voter of three elected a writer"
    );
    // Replica 2 is back: the next writer has every acknowledged batch.
    lab.restart(2);
    assert!(lab.elect(&mut w2, ALL).unwrap());
    let c = batch(6, 1, 10);
    let c_lsn = lab.submit(&mut w2, &c, ALL).unwrap();
    assert_eq!(w2.commit(), c_lsn);
    lab.tick(&mut w2, ALL, 100).unwrap();
    lab.catch_up(1, 2).unwrap();
    lab.catch_up(3, 2).unwrap();
    for id in [1, 2, 3] {
        for (b, lsn) in &batches {
            assert!(
                holds(&lab.log(id), b, *lsn),
                "replica {id} lacks the batch at {}",
                lsn.0
            );
        }
    }
    // And replica 1 is a voter again once the writer commits past it.
    lab.tick(&mut w2, ALL, 100).unwrap();
    let d_lsn = lab.submit(&mut w2, &batch(7, 1, 10), ALL).unwrap();
    lab.tick(&mut w2, ALL, 100).unwrap();
    assert_eq!(lab.replica(1).commit(), d_lsn);
    assert!(
        lab.replica(1).control().voter,
        "a caught-up replica votes again"
    );
}

#[test]
fn acknowledgements_from_before_a_wipe_are_not_counted() {
    let (mut lab, mut w1) = bootstrapped();
    lab.submit(&mut w1, &batch(1, 1, 50), ALL).unwrap();
    // Only replica 3 takes the next batch: durable there, not committed.
    let b = batch(2, 2, 300);
    let b_lsn = lab.submit(&mut w1, &b, &[3]).unwrap();
    assert!(w1.commit() < b_lsn);
    // Replica 3's process dies (the writer's stream to it breaks) and it
    // comes back on an empty disk.
    w1.on_replica_reset(3);
    lab.wipe(3);
    // Replica 2 takes the batch now: one durable copy is not a majority.
    lab.tick(&mut w1, &[2], 1000).unwrap();
    assert!(holds(&lab.log(2), &b, b_lsn));
    assert!(
        w1.commit() < b_lsn,
        "the writer counted replica 3's acknowledgement of a disk that is gone"
    );
    lab.tick(&mut w1, &[1, 2], 1000).unwrap();
    assert_eq!(w1.commit(), b_lsn, "replicas 1 and 2 commit it");
}

#[test]
fn a_fenced_writer_cannot_commit_with_a_replica_that_forgot_its_promise() {
    let (mut lab, mut w1) = bootstrapped();
    lab.submit(&mut w1, &batch(1, 1, 50), ALL).unwrap();
    lab.tick(&mut w1, ALL, 100).unwrap();
    // w2 takes over with replicas 1 and 2 and commits x; w1 hears nothing.
    let mut w2 = lab.writer("w2");
    w2.observe_term(w1.term());
    assert!(lab.elect(&mut w2, &[1, 2]).unwrap());
    let x = batch(2, 2, 300);
    let x_lsn = lab.submit(&mut w2, &x, &[1, 2]).unwrap();
    assert_eq!(w2.commit(), x_lsn);
    // Replica 1 comes back on an empty disk: it forgot its promise to w2.
    w1.on_replica_reset(1);
    w2.on_replica_reset(1);
    lab.wipe(1);
    // w1, which still leads in its own mind, reaches replicas 1 and 3.
    let z = batch(3, 2, 300);
    let z_lsn = w1.submit(&z).expect("w1 does not know it was fenced");
    lab.run(&mut w1, Vec::new(), &[1, 3]).unwrap();
    lab.catch_up(1, 3).unwrap();
    lab.tick(&mut w1, &[1, 3], 1000).unwrap();
    lab.tick(&mut w1, &[1, 3], 1000).unwrap();
    assert!(
        w1.commit() < z_lsn,
        "w1 committed z over x, which w2 committed on a majority before"
    );
    assert!(!lab.replica(1).control().voter);
    // w2 carries on with replica 2 and the new replica 1: x stays.
    lab.tick(&mut w2, &[1, 2], 100).unwrap();
    lab.catch_up(1, 2).unwrap();
    lab.tick(&mut w2, &[1, 2], 100).unwrap();
    assert!(holds(&lab.log(1), &x, x_lsn));
    assert!(holds(&lab.log(2), &x, x_lsn));
}

/// The data appends among `out`.
fn data_appends(out: &[Outgoing]) -> Vec<&AppendRequest> {
    out.iter()
        .filter_map(|o| match o {
            Outgoing::Append(_, req) if !req.data.is_empty() => Some(req),
            _ => None,
        })
        .collect()
}

#[test]
fn small_batches_gather_behind_an_append_in_flight_and_backlogs_pipeline() {
    let (mut lab, mut w1) = bootstrapped();
    let min = world::writer_config("w1").pipeline_min_bytes;
    let a = w1.submit(&batch(1, 1, 100)).unwrap();
    let first = w1.pump(lab.now_ms);
    assert_eq!(data_appends(&first).len(), 3, "one append per replica");
    // While those are unanswered, small batches wait…
    w1.submit(&batch(2, 1, 100)).unwrap();
    let c = w1.submit(&batch(3, 1, 100)).unwrap();
    let held = w1.pump(lab.now_ms);
    assert!(
        data_appends(&held).is_empty(),
        "sent behind one in flight: {held:?}"
    );
    // …and leave together, in one append per replica, on the answers.
    let mut next = Vec::new();
    for o in first {
        next.extend(lab.step(&mut w1, o, ALL).unwrap());
    }
    assert_eq!(w1.commit(), a);
    let together = data_appends(&next);
    assert_eq!(together.len(), 3, "{next:?}");
    for req in &together {
        assert_eq!((req.start, req.end()), (a, c), "both batches in one append");
    }
    lab.run(&mut w1, next, ALL).unwrap();
    assert_eq!(w1.commit(), c);

    // A backlog of at least `pipeline_min_bytes` does not wait.
    let d = w1.submit(&batch(4, 1, 100)).unwrap();
    let first = w1.pump(lab.now_ms);
    assert_eq!(data_appends(&first).len(), 3);
    let mut end = d;
    while end.0 - d.0 < min {
        end = w1.submit(&batch(5, 4, 400)).unwrap();
    }
    let piped = w1.pump(lab.now_ms);
    assert_eq!(data_appends(&piped).len(), 3, "pipelined: {piped:?}");
    for req in data_appends(&piped) {
        assert_eq!(req.start, d, "right behind the append in flight");
    }
    lab.run(&mut w1, first.into_iter().chain(piped).collect(), ALL)
        .unwrap();
    assert_eq!(w1.commit(), end);
}

#[test]
fn appends_stay_within_max_append_bytes() {
    let (mut lab, mut w1) = bootstrapped();
    let max = world::writer_config("w1").max_append_bytes;
    // 40 records of 500 bytes: one 21 KiB batch, then small ones behind it.
    let big = batch(1, 40, 500);
    let lsn = w1.submit(&big).unwrap();
    for tag in 2..6 {
        w1.submit(&batch(tag, 1, 100)).unwrap();
    }
    let mut sent = 0;
    let mut queue = std::collections::VecDeque::from(w1.pump(lab.now_ms));
    while let Some(o) = queue.pop_front() {
        if let strata_logservice::writer::Outgoing::Append(_, req) = &o {
            assert!(
                req.data.len() <= max,
                "an append of {} bytes",
                req.data.len()
            );
            sent += req.data.len();
        }
        queue.extend(lab.step(&mut w1, o, ALL).unwrap());
        if queue.is_empty() {
            queue.extend(w1.pump(lab.now_ms));
        }
    }
    assert!(sent >= 3 * big.len(), "the batch went to every replica");
    assert!(w1.commit() >= lsn);
}

/// Replica 3 misses a large batch; it is committed on 1 and 2.
fn large_batch_missed_by_replica_3() -> (Lab, strata_logservice::writer::Writer, Lsn) {
    let (mut lab, mut w1) = bootstrapped();
    let a = lab.submit(&mut w1, &batch(1, 1, 50), ALL).unwrap();
    lab.tick(&mut w1, ALL, 100).unwrap();
    assert_eq!(lab.replica(3).commit(), a);
    let big = lab.submit(&mut w1, &batch(2, 12, 1500), &[1, 2]).unwrap();
    lab.tick(&mut w1, &[1, 2], 100).unwrap();
    assert_eq!(lab.replica(1).commit(), big);
    (lab, w1, big)
}

#[test]
fn a_replica_catching_up_from_a_peer_commits_whole_batches_only() {
    let (mut lab, _w1, big) = large_batch_missed_by_replica_3();
    // Fetch in pieces smaller than the batch: the replica's commit LSN
    // must stay at a batch end, or its readers see half a transaction.
    loop {
        let req = lab.replica(3).catch_up_request(2000);
        let resp = lab.replica(1).fetch(&req).unwrap();
        let more = lab.replica_mut(3).apply_peer_fetch(&resp).unwrap();
        // The commit LSN follows what is durable here.
        Lab::sync(lab.replica_mut(3)).unwrap();
        let r = lab.replica(3);
        let log = lab.log(3);
        let commit = r.commit().0 as usize;
        strata_wal::record::decode_batches(&log[..commit], Lsn::ZERO)
            .unwrap_or_else(|e| panic!("commit LSN {commit} is not a batch end: {e}"));
        if !more {
            break;
        }
    }
    assert_eq!(lab.replica(3).commit(), big);
}

#[test]
fn a_replica_with_a_divergent_tail_catches_up_from_a_peer() {
    let (mut lab, mut w1, big) = large_batch_missed_by_replica_3();
    // Replica 3 copies the large batch from a peer (the writer's window no
    // longer holds it), then alone takes w1's next batches: never committed.
    lab.catch_up(3, 1).unwrap();
    for tag in 3..6 {
        w1.submit(&batch(tag, 3, 700)).unwrap();
    }
    lab.tick(&mut w1, &[3], 1000).unwrap();
    lab.tick(&mut w1, &[3], 1000).unwrap();
    let stray_end = lab.replica(3).end();
    assert!(
        stray_end > big,
        "replica 3 took the large batch and the stray ones"
    );
    // w2 takes over with replicas 1 and 2 and commits other batches.
    let mut w2 = lab.writer("w2");
    w2.observe_term(w1.term());
    assert!(lab.elect(&mut w2, &[1, 2]).unwrap());
    let mut last = Lsn::ZERO;
    for tag in 6.. {
        last = lab.submit(&mut w2, &batch(tag, 2, 900), &[1, 2]).unwrap();
        if last > stray_end {
            break;
        }
    }
    lab.tick(&mut w2, &[1, 2], 100).unwrap();
    // Replica 3's end is no record boundary in the peer's log: catching up
    // must still find where the logs part, cut there and copy.
    lab.catch_up(3, 1).unwrap();
    assert_eq!(lab.replica(3).commit(), last);
    assert_eq!(lab.log(3)[..last.0 as usize], lab.log(1)[..last.0 as usize]);
}

#[test]
fn an_append_that_ends_inside_a_batch_does_not_commit_half_of_it() {
    let (mut lab, mut w1) = bootstrapped();
    let a = lab.submit(&mut w1, &batch(1, 1, 50), ALL).unwrap();
    lab.tick(&mut w1, ALL, 100).unwrap();
    // Replica 3 alone takes a large batch, durably, and restarts: it holds
    // the whole batch but no longer knows its log matches the writer's.
    let big = batch(2, 12, 1000);
    let big_lsn = lab.submit(&mut w1, &big, &[3]).unwrap();
    let unsynced = lab.replica(3).storage().volatile_len();
    lab.crash(3, unsynced, false);
    lab.restart(3);
    assert_eq!(lab.replica(3).flush(), big_lsn);
    // The writer (the batch meanwhile committed elsewhere) resends its
    // first part: an append that ends between two records of the batch.
    let log = lab.log(3);
    let mut mid = a;
    for r in strata_wal::record::RecordIter::new(&log[a.0 as usize..big_lsn.0 as usize], a) {
        mid = r.unwrap().lsn;
        if mid.0 - a.0 > 4000 {
            break;
        }
    }
    let term = w1.term();
    let resend = AppendRequest {
        term,
        prev_term: term,
        start: a,
        data_term: term,
        data: bytes::Bytes::copy_from_slice(&log[a.0 as usize..mid.0 as usize]),
        commit_lsn: big_lsn,
        trim_floor: Lsn::ZERO,
    };
    let r = lab.replica_mut(3);
    assert_eq!(r.append(&resend).unwrap().outcome, AppendOutcome::Accepted);
    let commit = r.commit().0 as usize;
    strata_wal::record::decode_batches(&log[..commit], Lsn::ZERO)
        .unwrap_or_else(|e| panic!("commit LSN {commit} is not a batch end: {e}"));
}
