//! The lock manager's behaviour: compatibility, FIFO, upgrades, deadlock
//! victims, timeouts, cancellation, and a concurrent stress run. Timeouts
//! here only bound requests that are meant to fail; no test asserts a time.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use proptest::prelude::*;
use tokio::task::JoinHandle;

use super::*;
use LockMode::{Exclusive as X, Shared as S};

/// For requests that must time out (nobody will release).
const SHORT: Duration = Duration::from_millis(50);
/// For requests that must be granted: long enough never to fire.
const LONG: Duration = Duration::from_secs(60);

fn row(k: u8) -> LockKey {
    LockKey::Row {
        space: 1,
        key: vec![k],
    }
}

fn table(table_id: u64) -> LockKey {
    LockKey::Table { table_id }
}

/// Yields until exactly `n` requests are queued.
async fn until_waiting(m: &LockManager, n: usize) {
    let queued = async {
        while m.waiting_count() != n {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(LONG, queued)
        .await
        .expect("the requests queue");
}

fn spawn_lock(
    m: &Arc<LockManager>,
    txn: TxnId,
    key: LockKey,
    mode: LockMode,
) -> JoinHandle<Result<Acquired, LockError>> {
    let m = Arc::clone(m);
    tokio::spawn(async move { m.lock(txn, key, mode, LONG).await })
}

async fn joined(h: JoinHandle<Result<Acquired, LockError>>) -> Result<Acquired, LockError> {
    h.await.expect("the lock task does not panic")
}

fn is_clean(m: &LockManager) -> bool {
    m.waiting_count() == 0 && m.entry_count() == 0 && m.waits.lock().is_empty()
}

#[tokio::test]
async fn exclusive_excludes() {
    let m = LockManager::new();
    assert_eq!(m.lock(1, row(1), X, SHORT).await, Ok(Acquired::Immediately));
    assert_eq!(m.lock(2, row(1), X, SHORT).await, Err(LockError::Timeout));
    assert_eq!(m.lock(2, row(1), S, SHORT).await, Err(LockError::Timeout));
    assert_eq!(m.lock(2, row(2), X, SHORT).await, Ok(Acquired::Immediately));
    assert_eq!((m.held_count(1), m.held_count(2)), (1, 1));
    m.release_all(1);
    assert_eq!(m.lock(2, row(1), X, SHORT).await, Ok(Acquired::Immediately));
    m.release_all(2);
    assert!(is_clean(&m));
}

#[tokio::test]
async fn shared_shares_and_reenters() {
    let m = LockManager::new();
    assert_eq!(m.lock(1, row(1), S, SHORT).await, Ok(Acquired::Immediately));
    assert_eq!(m.lock(2, row(1), S, SHORT).await, Ok(Acquired::Immediately));
    assert_eq!(m.lock(3, row(1), X, SHORT).await, Err(LockError::Timeout));
    assert_eq!(m.lock(1, row(1), S, SHORT).await, Ok(Acquired::Immediately));
    assert_eq!(m.held_count(1), 1, "re-entry does not hold twice");
    assert_eq!(
        m.lock(4, table(9), X, SHORT).await,
        Ok(Acquired::Immediately)
    );
    assert_eq!(
        m.lock(4, table(9), S, SHORT).await,
        Ok(Acquired::Immediately)
    );
    assert_eq!(m.held_count(4), 1);
    for txn in [1, 2, 4] {
        m.release_all(txn);
    }
    assert!(is_clean(&m));
}

#[tokio::test]
async fn fifo_shared_waits_behind_queued_exclusive() {
    let m = Arc::new(LockManager::new());
    m.lock(1, row(1), S, SHORT).await.expect("free key");
    let writer = spawn_lock(&m, 2, row(1), X);
    until_waiting(&m, 1).await;
    assert_eq!(m.lock(3, row(1), S, SHORT).await, Err(LockError::Timeout));
    assert_eq!(
        m.lock(1, row(1), S, SHORT).await,
        Ok(Acquired::Immediately),
        "a holder re-enters past the queue"
    );
    let reader = spawn_lock(&m, 3, row(1), S);
    until_waiting(&m, 2).await;
    m.release_all(1);
    assert_eq!(joined(writer).await, Ok(Acquired::AfterWait));
    assert_eq!(m.waiting_count(), 1, "the reader waits for the writer");
    m.release_all(2);
    assert_eq!(joined(reader).await, Ok(Acquired::AfterWait));
    m.release_all(3);
    assert!(is_clean(&m));
}

#[tokio::test]
async fn sole_holder_upgrades_at_once() {
    let m = LockManager::new();
    m.lock(1, row(1), S, SHORT).await.expect("free key");
    assert_eq!(m.lock(1, row(1), X, SHORT).await, Ok(Acquired::Immediately));
    assert_eq!(m.lock(2, row(1), S, SHORT).await, Err(LockError::Timeout));
    assert_eq!(m.held_count(1), 1);
    m.release_all(1);
    assert!(is_clean(&m));
}

#[tokio::test]
async fn upgrade_waits_for_other_readers_ahead_of_queued_writers() {
    let m = Arc::new(LockManager::new());
    m.lock(1, row(1), S, SHORT).await.expect("free key");
    m.lock(2, row(1), S, SHORT).await.expect("shared");
    let writer = spawn_lock(&m, 3, row(1), X);
    until_waiting(&m, 1).await;
    let upgrade = spawn_lock(&m, 1, row(1), X);
    until_waiting(&m, 2).await;
    m.release_all(2);
    assert_eq!(joined(upgrade).await, Ok(Acquired::AfterWait));
    assert_eq!(m.waiting_count(), 1, "the writer now waits for 1's X");
    assert_eq!(m.lock(2, row(1), S, SHORT).await, Err(LockError::Timeout));
    m.release_all(1);
    assert_eq!(joined(writer).await, Ok(Acquired::AfterWait));
    m.release_all(3);
    assert!(is_clean(&m));
}

#[tokio::test]
async fn two_upgrades_deadlock() {
    let m = Arc::new(LockManager::new());
    m.lock(1, row(1), S, SHORT).await.expect("free key");
    m.lock(2, row(1), S, SHORT).await.expect("shared");
    let first = spawn_lock(&m, 1, row(1), X);
    until_waiting(&m, 1).await;
    assert_eq!(m.lock(2, row(1), X, LONG).await, Err(LockError::Deadlock));
    assert_eq!(m.held_count(2), 1, "the victim keeps its locks");
    m.release_all(2);
    assert_eq!(joined(first).await, Ok(Acquired::AfterWait));
    m.release_all(1);
    assert!(is_clean(&m));
}

#[tokio::test]
async fn two_cycle_has_one_victim() {
    let m = Arc::new(LockManager::new());
    m.lock(1, row(1), X, SHORT).await.expect("free key");
    m.lock(2, row(2), X, SHORT).await.expect("free key");
    let survivor = spawn_lock(&m, 1, row(2), X);
    until_waiting(&m, 1).await;
    assert_eq!(m.lock(2, row(1), X, LONG).await, Err(LockError::Deadlock));
    assert_eq!(m.waiting_count(), 1, "the survivor still waits");
    assert_eq!(m.held_count(2), 1, "the victim keeps its locks");
    m.release_all(2);
    assert_eq!(joined(survivor).await, Ok(Acquired::AfterWait));
    assert_eq!(m.held_count(1), 2);
    m.release_all(1);
    assert!(is_clean(&m));
}

#[tokio::test]
async fn three_cycle_has_one_victim() {
    let m = Arc::new(LockManager::new());
    for (txn, k) in [(1, 1), (2, 2), (3, 3)] {
        m.lock(txn, row(k), X, SHORT).await.expect("free key");
    }
    let a = spawn_lock(&m, 1, row(2), X);
    until_waiting(&m, 1).await;
    let b = spawn_lock(&m, 2, row(3), S);
    until_waiting(&m, 2).await;
    assert_eq!(m.lock(3, row(1), S, LONG).await, Err(LockError::Deadlock));
    assert_eq!(m.waiting_count(), 2, "only the requester is the victim");
    m.release_all(3);
    assert_eq!(joined(b).await, Ok(Acquired::AfterWait));
    assert_eq!(m.waiting_count(), 1);
    m.release_all(2);
    assert_eq!(joined(a).await, Ok(Acquired::AfterWait));
    m.release_all(1);
    assert!(is_clean(&m));
}

#[tokio::test]
async fn table_and_row_locks_form_one_graph() {
    let m = Arc::new(LockManager::new());
    // 1 is DML on table 7 (its metadata lock shared) holding row 1;
    // 2 holds row 2 and runs DDL on table 7; 3 is other DML on table 7.
    m.lock(1, table(7), S, SHORT).await.expect("free key");
    m.lock(1, row(1), X, SHORT).await.expect("free key");
    m.lock(2, row(2), X, SHORT).await.expect("free key");
    let ddl = spawn_lock(&m, 2, table(7), X);
    until_waiting(&m, 1).await;
    let dml = spawn_lock(&m, 3, table(7), S);
    until_waiting(&m, 2).await;
    // 1 → row 2 (held by 2) closes 1 → 2 → 1 through the metadata lock.
    assert_eq!(m.lock(1, row(2), X, LONG).await, Err(LockError::Deadlock));
    m.release_all(1);
    assert_eq!(joined(ddl).await, Ok(Acquired::AfterWait));
    assert_eq!(m.waiting_count(), 1, "DML queued behind DDL waits for it");
    m.release_all(2);
    assert_eq!(joined(dml).await, Ok(Acquired::AfterWait));
    m.release_all(3);
    assert!(is_clean(&m));
}

#[tokio::test]
async fn timeout_withdraws_the_request() {
    let m = LockManager::new();
    m.lock(1, row(1), S, SHORT).await.expect("free key");
    m.lock(2, row(2), X, SHORT).await.expect("free key");
    assert_eq!(m.lock(2, row(1), X, SHORT).await, Err(LockError::Timeout));
    assert_eq!(m.waiting_count(), 0);
    assert_eq!(m.held_count(2), 1, "earlier locks stay held");
    assert_eq!(
        m.lock(3, row(1), S, SHORT).await,
        Ok(Acquired::Immediately),
        "no stale writer left in the queue"
    );
    for txn in [1, 2, 3] {
        m.release_all(txn);
    }
    assert!(is_clean(&m));
}

#[tokio::test]
async fn a_writer_giving_up_grants_the_readers_behind_it() {
    let m = Arc::new(LockManager::new());
    m.lock(1, row(1), S, SHORT).await.expect("free key");
    let impatient = {
        let m = Arc::clone(&m);
        tokio::spawn(async move { m.lock(2, row(1), X, SHORT).await })
    };
    until_waiting(&m, 1).await;
    let reader = spawn_lock(&m, 3, row(1), S);
    until_waiting(&m, 2).await;
    assert_eq!(joined(impatient).await, Err(LockError::Timeout));
    let granted = tokio::time::timeout(LONG / 4, joined(reader)).await;
    assert_eq!(
        granted,
        Ok(Ok(Acquired::AfterWait)),
        "woken by the withdrawal"
    );
    m.release_all(1);
    m.release_all(3);
    assert!(is_clean(&m));
}

#[tokio::test]
async fn a_dropped_writer_grants_the_readers_behind_it() {
    let m = Arc::new(LockManager::new());
    m.lock(1, row(1), S, SHORT).await.expect("free key");
    let mut writer = Box::pin(m.lock(2, row(1), X, LONG));
    assert!(futures::poll!(writer.as_mut()).is_pending());
    let reader = spawn_lock(&m, 3, row(1), S);
    until_waiting(&m, 2).await;
    drop(writer);
    let granted = tokio::time::timeout(LONG / 4, joined(reader)).await;
    assert_eq!(granted, Ok(Ok(Acquired::AfterWait)), "woken by the drop");
    m.release_all(1);
    m.release_all(3);
    assert!(is_clean(&m));
}

#[tokio::test]
async fn dropped_waiter_leaves_the_queue() {
    let m = LockManager::new();
    m.lock(1, row(1), S, SHORT).await.expect("free key");
    let mut waiting = Box::pin(m.lock(2, row(1), X, LONG));
    assert!(futures::poll!(waiting.as_mut()).is_pending());
    assert_eq!(m.waiting_count(), 1);
    drop(waiting);
    assert_eq!(m.waiting_count(), 0);
    assert!(m.waits.lock().is_empty());
    assert_eq!(m.lock(3, row(1), S, SHORT).await, Ok(Acquired::Immediately));
    assert_eq!(m.held_count(2), 0);
    m.release_all(1);
    m.release_all(3);
    assert!(is_clean(&m));
}

#[tokio::test]
async fn dropped_waiter_granted_meanwhile_keeps_the_lock_until_release_all() {
    let m = LockManager::new();
    m.lock(1, row(1), X, SHORT).await.expect("free key");
    let mut waiting = Box::pin(m.lock(2, row(1), X, LONG));
    assert!(futures::poll!(waiting.as_mut()).is_pending());
    m.release_all(1); // grants 2, whose future is never polled again
    drop(waiting);
    assert_eq!(m.held_count(2), 1);
    assert_eq!(m.lock(3, row(1), S, SHORT).await, Err(LockError::Timeout));
    m.release_all(2);
    assert_eq!(m.lock(3, row(1), X, SHORT).await, Ok(Acquired::Immediately));
    m.release_all(3);
    assert!(is_clean(&m));
}

#[tokio::test]
async fn release_all_wakes_every_compatible_waiter() {
    let m = Arc::new(LockManager::new());
    m.lock(1, row(1), X, SHORT).await.expect("free key");
    m.lock(1, row(2), X, SHORT).await.expect("free key");
    let readers: Vec<_> = (2..5).map(|txn| spawn_lock(&m, txn, row(1), S)).collect();
    until_waiting(&m, 3).await;
    let other = spawn_lock(&m, 5, row(2), X);
    until_waiting(&m, 4).await;
    m.release_all(1);
    for reader in readers {
        assert_eq!(joined(reader).await, Ok(Acquired::AfterWait));
    }
    assert_eq!(joined(other).await, Ok(Acquired::AfterWait));
    for txn in 2..6 {
        assert_eq!(m.held_count(txn), 1);
        m.release_all(txn);
    }
    assert!(is_clean(&m));
}

#[tokio::test]
async fn a_chain_without_a_cycle_waits_and_drains() {
    // A request that does not close a cycle waits even when the graph
    // around it is busy: 3 waits behind 2, which waits for 1.
    let m = Arc::new(LockManager::new());
    m.lock(1, row(1), X, SHORT).await.expect("free key");
    m.lock(2, row(2), X, SHORT).await.expect("free key");
    let two = spawn_lock(&m, 2, row(1), X);
    until_waiting(&m, 1).await;
    let three = spawn_lock(&m, 3, row(2), X);
    until_waiting(&m, 2).await;
    m.release_all(1);
    assert_eq!(joined(two).await, Ok(Acquired::AfterWait));
    m.release_all(2);
    assert_eq!(joined(three).await, Ok(Acquired::AfterWait));
    m.release_all(3);
    assert!(is_clean(&m));
}

/// A small xorshift generator: the stress runs need no reproducibility
/// beyond "some interleaving", and no extra dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// How the stress transactions behave.
#[derive(Clone, Copy)]
struct Stress {
    tasks: u64,
    txns_per_task: u64,
    rows: u8,
    lock_timeout: Duration,
    /// Drop some lock futures before they finish (a client going away).
    cancel: bool,
}

#[derive(Default)]
struct Tally {
    /// Per key index, the transactions in their critical section holding it
    /// in X and in S.
    exclusive: [AtomicUsize; 8],
    shared: [AtomicUsize; 8],
    violations: AtomicUsize,
    deadlocks: AtomicUsize,
    timeouts: AtomicUsize,
    next_txn: AtomicU64,
}

fn stress_key(index: usize, rows: u8) -> LockKey {
    if index == usize::from(rows) {
        table(1)
    } else {
        row(index as u8)
    }
}

/// Why a stress attempt ended without reaching its critical section.
enum Abort {
    Lock(LockError),
    Cancelled,
}

/// Takes 1–3 random keys (the table lock among them) in random order.
async fn stress_acquire(
    m: &LockManager,
    cfg: Stress,
    txn: TxnId,
    rng: &mut Rng,
) -> Result<HashMap<usize, LockMode>, Abort> {
    let mut held: HashMap<usize, LockMode> = HashMap::new();
    for _ in 0..=rng.below(3) {
        let index = rng.below(u64::from(cfg.rows) + 1) as usize;
        let mode = if rng.below(2) == 0 { S } else { X };
        let request = m.lock(txn, stress_key(index, cfg.rows), mode, cfg.lock_timeout);
        let outcome = if cfg.cancel && rng.below(6) == 0 {
            let patience = Duration::from_micros(rng.below(500));
            match tokio::time::timeout(patience, request).await {
                Ok(outcome) => outcome,
                Err(_) => return Err(Abort::Cancelled),
            }
        } else {
            request.await
        };
        outcome.map_err(Abort::Lock)?;
        let strongest = held.entry(index).or_insert(mode);
        if mode == X {
            *strongest = X;
        }
    }
    Ok(held)
}

/// The critical section: counts holders and records any overlap of an X
/// holder with another holder of the same key.
async fn stress_critical(tally: &Tally, held: &HashMap<usize, LockMode>) {
    for (&k, &mode) in held {
        let clash = match mode {
            X => {
                tally.exclusive[k].fetch_add(1, Ordering::SeqCst) != 0
                    || tally.shared[k].load(Ordering::SeqCst) != 0
            }
            S => {
                tally.shared[k].fetch_add(1, Ordering::SeqCst);
                tally.exclusive[k].load(Ordering::SeqCst) != 0
            }
        };
        if clash {
            tally.violations.fetch_add(1, Ordering::SeqCst);
        }
    }
    tokio::task::yield_now().await;
    for (&k, &mode) in held {
        let counter = if mode == X {
            &tally.exclusive[k]
        } else {
            &tally.shared[k]
        };
        counter.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn stress_task(m: Arc<LockManager>, tally: Arc<Tally>, cfg: Stress, seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
    for _ in 0..cfg.txns_per_task {
        loop {
            let txn = tally.next_txn.fetch_add(1, Ordering::Relaxed);
            let outcome = stress_acquire(&m, cfg, txn, &mut rng).await;
            if let Ok(held) = &outcome {
                stress_critical(&tally, held).await;
            }
            m.release_all(txn);
            match outcome {
                Ok(_) => break,
                Err(Abort::Lock(LockError::Deadlock)) => &tally.deadlocks,
                Err(Abort::Lock(LockError::Timeout)) => &tally.timeouts,
                Err(Abort::Cancelled) => continue,
            }
            .fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn run_stress(cfg: Stress) -> Arc<Tally> {
    let m = Arc::new(LockManager::new());
    let tally = Arc::new(Tally::default());
    let tasks: Vec<_> = (0..cfg.tasks)
        .map(|seed| tokio::spawn(stress_task(m.clone(), tally.clone(), cfg, seed + 1)))
        .collect();
    let all = async {
        for task in tasks {
            task.await.expect("a stress task does not panic");
        }
    };
    tokio::time::timeout(Duration::from_secs(40), all)
        .await
        .expect("every transaction finishes: no hang");
    assert_eq!(tally.violations.load(Ordering::SeqCst), 0, "X never shared");
    assert!(is_clean(&m), "no request, entry or registration left");
    for txn in 0..tally.next_txn.load(Ordering::SeqCst) {
        assert_eq!(m.held_count(txn), 0);
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_detects_every_deadlock() {
    // Lock waits never time out (LONG is beyond the test's bound), so a
    // missed cycle would hang the run or show up as a timeout.
    let cfg = Stress {
        tasks: 16,
        txns_per_task: 60,
        rows: 4,
        lock_timeout: LONG,
        cancel: false,
    };
    let tally = run_stress(cfg).await;
    assert_eq!(tally.timeouts.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_with_timeouts_and_cancellations() {
    let cfg = Stress {
        tasks: 16,
        txns_per_task: 60,
        rows: 3,
        lock_timeout: Duration::from_millis(1),
        cancel: true,
    };
    run_stress(cfg).await;
}

/// One step of the sequential model test.
#[derive(Clone, Debug)]
enum Step {
    Lock(TxnId, u8, LockMode),
    Release(TxnId),
}

fn step() -> impl Strategy<Value = Step> {
    let mode = prop_oneof![Just(S), Just(X)];
    prop_oneof![
        4 => (0u64..4, 0u8..3, mode).prop_map(|(t, k, m)| Step::Lock(t, k, m)),
        1 => (0u64..4).prop_map(Step::Release),
    ]
}

/// What a request that may not wait gets, from the holders of its key.
fn model_outcome(holders: &HashMap<TxnId, LockMode>, txn: TxnId, mode: LockMode) -> bool {
    let mine = holders.get(&txn).copied();
    if mine == Some(X) || (mine == Some(S) && mode == S) {
        return true;
    }
    holders
        .iter()
        .all(|(&t, &m)| t == txn || (m == S && mode == S))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    /// Requests that may not wait (zero timeout) against a model of the
    /// compatibility rules: granted exactly when the model says so, and
    /// nothing left queued.
    #[test]
    fn matches_the_compatibility_model(steps in proptest::collection::vec(step(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        let m = LockManager::new();
        let mut model: HashMap<u8, HashMap<TxnId, LockMode>> = HashMap::new();
        for step in steps {
            match step {
                Step::Release(txn) => {
                    m.release_all(txn);
                    model.values_mut().for_each(|h| { h.remove(&txn); });
                }
                Step::Lock(txn, k, mode) => {
                    let holders = model.entry(k).or_default();
                    let expect_granted = model_outcome(holders, txn, mode);
                    let got = rt.block_on(m.lock(txn, row(k), mode, Duration::ZERO));
                    if expect_granted {
                        prop_assert_eq!(got, Ok(Acquired::Immediately));
                        let held = holders.entry(txn).or_insert(mode);
                        if mode == X { *held = X; }
                    } else {
                        prop_assert_eq!(got, Err(LockError::Timeout));
                    }
                }
            }
            prop_assert_eq!(m.waiting_count(), 0);
            for txn in 0..4 {
                let count = model.values().filter(|h| h.contains_key(&txn)).count();
                prop_assert_eq!(m.held_count(txn), count);
            }
        }
        for txn in 0..4 {
            m.release_all(txn);
        }
        prop_assert!(is_clean(&m));
    }
}
