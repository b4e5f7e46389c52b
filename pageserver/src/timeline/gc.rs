//! History and GC: how far back pages stay readable, and dropping layers
//! below that.
//!
//! The **horizon** is the oldest LSN reads may ask for. The history window
//! keeps the last `history_bytes` of WAL and/or the WAL of the last
//! `history` (both: whichever keeps more), counted back from the durable
//! LSN. The oldest snapshot any compute reports holds the horizon back
//! further, but never more than `snapshot_cap_bytes` below the durable
//! LSN. The horizon never moves back. With no window configured nothing is
//! collected.
//!
//! The time side needs to know when each LSN was durable: the timeline
//! samples (time, durable LSN) at every flush. After a restart the samples
//! are gone, so the time window holds GC back until it has passed again
//! (never forward: no history inside the window is dropped).
//!
//! **Reads below the horizon** are refused with
//! [`PageServerError::SnapshotTooOld`](crate::PageServerError): the layer
//! map carries the cutoff, so a reader sees layers and cutoff together.
//!
//! **Deleting.** A delta layer may go once an image layer at `L` ≤ the
//! horizon exists and the delta ends at or below `L`; older image layers go
//! too. Rebuilding any page at any LSN ≥ `L` then needs only the image at
//! `L` and the deltas above it, which stay. Images are written (by
//! [`super::compact`]) at the end of an L1 run at or below the horizon once
//! the deltas they free outweigh the last image run, or once reads would
//! walk `image_after_delta_runs` delta runs. No page version inside the
//! window is lost: deletion only ever follows a durable image below the
//! horizon.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_wal::Lsn;

use super::compact::Step;
use super::{LayerFile, LayerMap, Timeline};
use crate::error::Result;
use crate::layer::desc::LayerKind;

/// How much history the timeline keeps.
#[derive(Clone, Debug)]
pub struct GcConfig {
    /// Keep at least the last this many bytes of WAL readable.
    pub history_bytes: Option<u64>,
    /// Keep at least the WAL of this long readable.
    pub history: Option<Duration>,
    /// A compute's snapshot holds the horizon back at most this many bytes
    /// below the durable LSN.
    pub snapshot_cap_bytes: u64,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            history_bytes: Some(1 << 30),
            history: None,
            snapshot_cap_bytes: 8 << 30,
        }
    }
}

/// Samples of when each durable LSN was reached, oldest first.
#[derive(Default)]
pub struct LsnTimes {
    samples: VecDeque<(Instant, Lsn)>,
}

/// Samples kept at most; past it every other middle one goes (the answer
/// only gets older, never newer).
const MAX_SAMPLES: usize = 4096;

impl LsnTimes {
    pub fn record(&mut self, at: Instant, lsn: Lsn) {
        self.samples.push_back((at, lsn));
        if self.samples.len() > MAX_SAMPLES {
            self.samples.remove(MAX_SAMPLES / 2);
        }
    }

    /// The newest sampled LSN durable at least `age` ago (ZERO if none),
    /// dropping samples that can no longer be the answer.
    pub fn durable_before(&mut self, now: Instant, age: Duration) -> Lsn {
        let Some(limit) = now.checked_sub(age) else {
            return Lsn::ZERO;
        };
        while self.samples.len() >= 2 && self.samples[1].0 <= limit {
            self.samples.pop_front();
        }
        match self.samples.front() {
            Some((at, lsn)) if *at <= limit => *lsn,
            _ => Lsn::ZERO,
        }
    }
}

impl Timeline {
    /// Records a compute's oldest snapshot (replacing its last report).
    pub fn report_snapshot(&self, compute_id: &str, oldest: Lsn) {
        self.snapshots.lock().insert(compute_id.to_string(), oldest);
    }

    /// The oldest snapshot any compute reported.
    pub fn oldest_snapshot(&self) -> Option<Lsn> {
        self.snapshots.lock().values().min().copied()
    }

    /// The horizon GC may move to now (never below the current cutoff).
    pub fn gc_horizon(&self) -> Lsn {
        let config = &self.config.gc;
        let durable = self.durable();
        let cutoff = self.gc_cutoff();
        if config.history_bytes.is_none() && config.history.is_none() {
            return cutoff;
        }
        let mut horizon = durable;
        if let Some(bytes) = config.history_bytes {
            horizon = horizon.min(Lsn(durable.0.saturating_sub(bytes)));
        }
        if let Some(age) = config.history {
            let by_time = self.lsn_times.lock().durable_before(Instant::now(), age);
            horizon = horizon.min(by_time);
        }
        if let Some(oldest) = self.oldest_snapshot() {
            let floor = Lsn(durable.0.saturating_sub(config.snapshot_cap_bytes));
            horizon = horizon.min(oldest.max(floor));
        }
        horizon.max(cutoff)
    }

    /// The LSN to write an image layer run at, if one is due: the end of
    /// the newest L1 run above the newest image, at or below the horizon if
    /// it frees more than the last image run costs, or anywhere once too
    /// many delta runs lie above the newest image.
    pub(super) fn image_due(&self, map: &LayerMap, horizon: Lsn) -> Option<Lsn> {
        let newest_image = newest_image(map, Lsn::MAX);
        let above = newest_image.unwrap_or(Lsn::ZERO);
        let runs: BTreeSet<Lsn> = map
            .files
            .iter()
            .filter(|f| f.desc.kind == LayerKind::L1 && f.desc.range.end > above)
            .map(|f| f.desc.range.end)
            .collect();
        let for_gc = runs.range(..=horizon).next_back().copied().filter(|at| {
            let freed = deletable(map, *at)
                .iter()
                .map(|f| f.desc.file_bytes)
                .sum::<u64>();
            let cost = image_bytes(map, newest_image);
            freed > 0 && freed >= cost
        });
        let l0 = map
            .files
            .iter()
            .filter(|f| f.desc.kind == LayerKind::L0)
            .count();
        let for_reads = (runs.len() + l0 >= self.config.compaction.image_after_delta_runs.max(1))
            .then(|| runs.last().copied())
            .flatten();
        for_gc.or(for_reads)
    }

    /// Raises the cutoff to the horizon and drops the layers it frees.
    pub(super) fn collect(&self, map: &LayerMap, horizon: Lsn) -> Result<Step> {
        let cutoff = horizon.max(map.gc_cutoff);
        let remove = match newest_image(map, cutoff) {
            Some(at) => deletable(map, at),
            None => Vec::new(),
        };
        if remove.is_empty() {
            if cutoff > map.gc_cutoff {
                self.raise_cutoff(cutoff);
            }
            return Ok(Step::Idle);
        }
        let deleted = remove.len();
        self.swap_layers(&remove, Vec::new(), Some(cutoff))?;
        tracing::info!(%cutoff, deleted, "GC deleted layers below the horizon");
        Ok(Step::Collected { deleted })
    }

    /// Refuses reads below `cutoff` from now on (in memory; the manifest
    /// records it with the next deletion, which is all a restart needs).
    fn raise_cutoff(&self, cutoff: Lsn) {
        self.publish_map(|map| {
            (cutoff > map.gc_cutoff).then(|| LayerMap {
                gc_cutoff: cutoff,
                ..map.clone()
            })
        });
    }
}

/// The LSN of the newest image layer at or below `at`.
fn newest_image(map: &LayerMap, at: Lsn) -> Option<Lsn> {
    map.files
        .iter()
        .filter_map(|f| f.desc.image_lsn())
        .filter(|l| *l <= at)
        .max()
}

/// Bytes of the image run at `at`.
fn image_bytes(map: &LayerMap, at: Option<Lsn>) -> u64 {
    map.files
        .iter()
        .filter(|f| at.is_some() && f.desc.image_lsn() == at)
        .map(|f| f.desc.file_bytes)
        .sum()
}

/// The layers an image run at `at` makes unnecessary: deltas ending at or
/// below it, and older images.
fn deletable(map: &LayerMap, at: Lsn) -> Vec<Arc<LayerFile>> {
    map.files
        .iter()
        .filter(|f| match f.desc.image_lsn() {
            Some(l) => l < at,
            None => f.desc.range.end <= at,
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_times_answer_the_newest_old_enough_sample() {
        let t0 = Instant::now();
        let mut times = LsnTimes::default();
        for i in 0..10u64 {
            times.record(t0 + Duration::from_secs(i), Lsn(100 * (i + 1)));
        }
        let now = t0 + Duration::from_secs(20);
        assert_eq!(
            times.durable_before(now, Duration::from_secs(30)),
            Lsn::ZERO
        );
        assert_eq!(times.durable_before(now, Duration::from_secs(15)), Lsn(600));
        // Asking again (samples were dropped) gives the same answer.
        assert_eq!(times.durable_before(now, Duration::from_secs(15)), Lsn(600));
        assert_eq!(times.durable_before(now, Duration::from_secs(1)), Lsn(1000));
    }
}
