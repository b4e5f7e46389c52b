//! Quorum fsync: three threads, each owning one file, each writing 4 KiB and
//! calling `sync_data`; a sample is the time until the second of the three
//! is done (a majority of 3).
//!
//! Each file is filled with zeros and synced before sampling, and the 4 KiB
//! writes overwrite that preallocated region in order (wrapping around), the
//! way a log appends into a preallocated segment: no block allocation, no
//! file-size change, so `fdatasync` has no metadata to journal. That is the
//! cheapest durable 4 KiB write the disk offers, which is what a floor
//! should be; a log service that grows its files pays more, and the ratio
//! shows it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::stats::Latency;

const REPLICAS: usize = 3;
const WRITE_BYTES: usize = 4096;
/// Each file's preallocated region, overwritten in a loop.
const REGION_BYTES: u64 = 4 << 20;
/// Rounds run before sampling starts (cold caches, first allocations).
const WARMUP_ROUNDS: usize = 50;

/// Measures `samples` quorum fsyncs in `dir`.
pub fn quorum_fsync(dir: &Path, samples: usize) -> io::Result<Latency> {
    let files = (0..REPLICAS)
        .map(|i| preallocated(&dir.join(format!("floor-fsync-{i}"))))
        .collect::<io::Result<Vec<_>>>()?;
    let rounds = WARMUP_ROUNDS + samples;
    let majority = thread::scope(|s| {
        // One bounded "go" channel per thread and one shared channel back:
        // the coordinator starts a round by sending to every thread and
        // waits for all three answers, so rounds never overlap. Dropping
        // the "go" senders (also on error) ends every thread.
        let (done_tx, done_rx) = mpsc::sync_channel(REPLICAS);
        let go: Vec<mpsc::SyncSender<()>> = files
            .into_iter()
            .map(|file| {
                let (go_tx, go_rx) = mpsc::sync_channel(1);
                let done_tx = done_tx.clone();
                s.spawn(move || replica(file, go_rx, done_tx));
                go_tx
            })
            .collect();
        coordinate(&go, &done_rx, rounds)
    })?;
    let sampled = majority.into_iter().skip(WARMUP_ROUNDS).collect();
    Ok(Latency::from_samples(sampled).expect("at least one round is sampled"))
}

/// Runs the rounds; returns, per round, the second-fastest of the three.
///
/// Each thread times its own write + fsync from the moment it starts it,
/// and the sample is the median of the three durations. Timing from a
/// common start instead would add the threads' wake-up skew, which is
/// scheduler noise, not disk; leaving it out keeps the floor a floor.
fn coordinate(
    go: &[mpsc::SyncSender<()>],
    done: &mpsc::Receiver<io::Result<Duration>>,
    rounds: usize,
) -> io::Result<Vec<Duration>> {
    let mut majority = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        for tx in go {
            tx.send(())
                .map_err(|_| io::Error::other("fsync thread ended"))?;
        }
        let mut round = [Duration::ZERO; REPLICAS];
        for slot in &mut round {
            *slot = done
                .recv()
                .map_err(|_| io::Error::other("fsync thread ended"))??;
        }
        round.sort_unstable();
        majority.push(round[REPLICAS / 2]);
    }
    Ok(majority)
}

/// One replica's thread: on every "go", writes 4 KiB and syncs it.
fn replica(file: File, go: mpsc::Receiver<()>, done: mpsc::SyncSender<io::Result<Duration>>) {
    let block = [0xA5u8; WRITE_BYTES];
    let mut offset = 0u64;
    while go.recv().is_ok() {
        let start = Instant::now();
        let result = file
            .write_all_at(&block, offset)
            .and_then(|()| file.sync_data())
            .map(|()| start.elapsed());
        let failed = result.is_err();
        if done.send(result).is_err() || failed {
            return;
        }
        offset = (offset + WRITE_BYTES as u64) % REGION_BYTES;
    }
}

/// Creates `path` filled with `REGION_BYTES` of zeros, durably.
fn preallocated(path: &Path) -> io::Result<File> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..REGION_BYTES / zeros.len() as u64 {
        file.write_all(&zeros)?;
    }
    file.sync_all()?;
    Ok(file)
}
