//! Three `strata logservice` processes on 127.0.0.1; a writer appends
//! 10,000 batches while one replica is SIGKILLed and restarted. Commits go
//! on (no gap of a second or more), the restarted replica catches up, and
//! every replica reads back the same bytes. (`strata up` itself, with its
//! compute node as the log's writer, is tested through MySQL clients in
//! `tests/mysql_clients.rs`.)

mod common;

use std::time::{Duration, Instant};

use strata_logservice::client::{LogClient, LogClientConfig, LogReader, replica_status};
use strata_wal::{BatchBuilder, Lsn, Record};

const CLUSTER: &str = "proc-test";
const BATCHES: u64 = 10_000;
const WRITERS: u64 = 4;

fn payload(i: u64) -> Vec<u8> {
    let mut p = vec![(i % 253) as u8; 64 + (i % 5) as usize * 100];
    p[..8].copy_from_slice(&i.to_le_bytes());
    p
}

async fn read_log(endpoint: String, upto: Lsn) -> Vec<u8> {
    let mut r = LogReader::new(CLUSTER, "proc-test-reader", vec![endpoint], Lsn::ZERO);
    let mut out = Vec::new();
    while r.position() < upto {
        let chunk = tokio::time::timeout(Duration::from_secs(20), r.next_chunk())
            .await
            .unwrap()
            .unwrap();
        out.extend_from_slice(&chunk.data);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_continue_through_a_sigkilled_replica_and_it_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..3).map(|_| common::free_port()).collect();
    let mut replicas: Vec<common::Process> = (1..=3)
        .map(|id| common::log_replica(CLUSTER, dir.path(), id, &ports))
        .collect();
    for r in &mut replicas {
        r.start();
    }
    let endpoints: Vec<String> = ports.iter().map(|p| common::endpoint(*p)).collect();
    let client = LogClient::connect(LogClientConfig::new(
        CLUSTER,
        "proc-writer",
        endpoints.clone(),
    ))
    .await
    .unwrap();

    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in (w..BATCHES).step_by(WRITERS as usize) {
                let mut b = BatchBuilder::new();
                b.push(&Record::RowChange {
                    payload: payload(i),
                })
                .unwrap();
                let lsn = c.append(b.commit(i)).await.unwrap();
                acks.push((started.elapsed(), lsn));
            }
            acks
        }));
    }
    // Kill replica 2 once the writers are well under way, restart it later.
    while client.state().commit_lsn < Lsn(150_000) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    replicas[1].kill();
    tokio::time::sleep(Duration::from_millis(700)).await;
    replicas[1].start();

    let mut acks = Vec::new();
    for t in tasks {
        acks.extend(t.await.unwrap());
    }
    acks.sort();
    let longest_gap = acks.windows(2).map(|w| w[1].0 - w[0].0).max().unwrap();
    assert!(
        longest_gap < Duration::from_secs(1),
        "commits stalled for {longest_gap:?}"
    );
    let last = acks.iter().map(|a| a.1).max().unwrap();

    // The restarted replica catches up from its peers.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = replica_status(&endpoints[1], CLUSTER).await;
        if s.as_ref()
            .is_ok_and(|s| s.flush_lsn >= last && s.commit_lsn >= last)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica 2 did not catch up: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let logs = futures::future::join_all(endpoints.iter().map(|e| read_log(e.clone(), last))).await;
    assert_eq!(logs[0].len(), logs[1].len());
    assert!(logs[0] == logs[1] && logs[0] == logs[2], "replicas differ");
    let batches = strata_wal::record::decode_batches(&logs[0], Lsn::ZERO).unwrap();
    let mut seen = vec![false; BATCHES as usize];
    for b in &batches {
        for (_, rec) in &b.records {
            if let Record::RowChange { payload: p } = rec {
                let i = u64::from_le_bytes(p[..8].try_into().unwrap());
                assert_eq!(*p, payload(i), "batch {i} reads back different");
                seen[i as usize] = true;
            }
        }
    }
    assert!(
        seen.iter().all(|s| *s),
        "some acknowledged batches are missing"
    );
    client.close();
}
