//! Latency samples and their percentiles.
//!
//! Percentiles are computed by sorting every sample (nearest-rank), which is
//! exact and cheap at the sample counts a benchmark run collects (a few
//! hundred thousand at most). Figures are reported in microseconds as `f64`.

use std::time::Duration;

/// The summary of one set of latency samples.
#[derive(Clone, Copy, Debug)]
pub struct Latency {
    pub samples: usize,
    pub p50_us: f64,
    pub p99_us: f64,
}

impl Latency {
    /// Summarises `samples`; `None` when there are none.
    pub fn from_samples(mut samples: Vec<Duration>) -> Option<Latency> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        Some(Latency {
            samples: samples.len(),
            p50_us: micros(nearest_rank(&samples, 0.50)),
            p99_us: micros(nearest_rank(&samples, 0.99)),
        })
    }
}

/// The smallest sample at or above fraction `p` of a sorted, non-empty set.
fn nearest_rank(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples = (1..=100).rev().map(Duration::from_micros).collect();
        let l = Latency::from_samples(samples).expect("non-empty");
        assert_eq!(l.samples, 100);
        assert_eq!(l.p50_us, 50.0);
        assert_eq!(l.p99_us, 99.0);
    }

    #[test]
    fn one_sample_is_every_percentile() {
        let l = Latency::from_samples(vec![Duration::from_micros(7)]).expect("non-empty");
        assert_eq!((l.p50_us, l.p99_us), (7.0, 7.0));
    }

    #[test]
    fn no_samples_no_summary() {
        assert!(Latency::from_samples(Vec::new()).is_none());
    }
}
