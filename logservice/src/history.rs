//! Term history: which writer term wrote which range of the log.
//!
//! A history is a list of `(term, start_lsn)` entries, terms strictly rising
//! and starts non-decreasing; entry `i` covers `[start_i, start_{i+1})` and
//! the last entry runs to the end of the log. Bytes at the same position
//! with the same term are identical on every replica (one writer per term,
//! writing one stream), so two logs agree up to the point where their
//! histories diverge — the rule that lets a new writer truncate each replica
//! at exactly the right place (as Raft's log matching).

use strata_wal::Lsn;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TermEntry {
    pub term: u64,
    pub start: Lsn,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TermHistory {
    entries: Vec<TermEntry>,
}

impl TermHistory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a history from entries, checking that terms rise and starts
    /// do not fall. Used on input from disk and the network.
    pub fn from_entries(entries: Vec<TermEntry>) -> Result<Self, &'static str> {
        for w in entries.windows(2) {
            if w[1].term <= w[0].term {
                return Err("term history terms must rise");
            }
            if w[1].start < w[0].start {
                return Err("term history starts must not fall");
            }
        }
        Ok(TermHistory { entries })
    }

    pub fn entries(&self) -> &[TermEntry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn last(&self) -> Option<TermEntry> {
        self.entries.last().copied()
    }

    /// The term of the byte at `pos` (0 if the history has no entry there).
    pub fn term_at(&self, pos: Lsn) -> u64 {
        self.entries
            .iter()
            .rev()
            .find(|e| e.start <= pos)
            .map_or(0, |e| e.term)
    }

    /// The term of the byte just before `pos`: the `prev_term` of an append
    /// starting there.
    pub fn term_before(&self, pos: Lsn) -> u64 {
        if pos == Lsn::ZERO {
            0
        } else {
            self.term_at(Lsn(pos.0 - 1))
        }
    }

    /// The first position at or after `pos` where the term changes, if any.
    pub fn next_boundary_after(&self, pos: Lsn) -> Option<Lsn> {
        self.entries.iter().map(|e| e.start).find(|s| *s > pos)
    }

    /// Where the start of term `term` is, if this history holds it.
    pub fn start_of(&self, term: u64) -> Option<Lsn> {
        self.entries
            .iter()
            .find(|e| e.term == term)
            .map(|e| e.start)
    }

    /// Records that bytes from `start` on are of `term`; a no-op if the last
    /// entry already is `term`. Terms must rise.
    pub fn push(&mut self, term: u64, start: Lsn) {
        match self.entries.last() {
            Some(last) if last.term == term => {}
            Some(last) => {
                assert!(
                    term > last.term,
                    "term history must rise: {} after {}",
                    term,
                    last.term
                );
                self.entries.push(TermEntry { term, start });
            }
            None => self.entries.push(TermEntry { term, start }),
        }
    }

    /// Forgets every entry that starts at or after `end`: the log was cut
    /// there, so those terms have no bytes any more.
    pub fn cut(&mut self, end: Lsn) {
        // An entry starting exactly at `end` has no bytes; the one before it
        // still covers bytes below `end` and stays.
        self.entries.retain(|e| e.start < end);
    }

    /// The history of a log that is this one cut at `end`.
    pub fn cut_at(&self, end: Lsn) -> TermHistory {
        let mut h = self.clone();
        h.cut(end);
        h
    }

    /// The term of the last byte of a log that ends at `end`.
    pub fn last_term(&self, end: Lsn) -> u64 {
        self.term_before(end)
    }

    /// The position up to which a log with this history ending at `end`
    /// holds the same bytes as a log with history `other` ending at
    /// `other_end`.
    pub fn divergence(&self, end: Lsn, other: &TermHistory, other_end: Lsn) -> Lsn {
        let mut common = Lsn::ZERO;
        for (i, (a, b)) in self.entries.iter().zip(&other.entries).enumerate() {
            if a.term != b.term || a.start != b.start {
                break;
            }
            let a_end = self.entries.get(i + 1).map_or(end, |n| n.start).min(end);
            let b_end = other
                .entries
                .get(i + 1)
                .map_or(other_end, |n| n.start)
                .min(other_end);
            common = a_end.min(b_end);
            if a_end != b_end {
                break;
            }
        }
        common
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(entries: &[(u64, u64)]) -> TermHistory {
        TermHistory::from_entries(
            entries
                .iter()
                .map(|&(term, start)| TermEntry {
                    term,
                    start: Lsn(start),
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn term_at_and_before() {
        let x = h(&[(1, 0), (3, 100), (4, 250)]);
        assert_eq!(x.term_at(Lsn(0)), 1);
        assert_eq!(x.term_at(Lsn(99)), 1);
        assert_eq!(x.term_at(Lsn(100)), 3);
        assert_eq!(x.term_before(Lsn(100)), 1);
        assert_eq!(x.term_before(Lsn(0)), 0);
        assert_eq!(x.term_at(Lsn(1000)), 4);
    }

    #[test]
    fn divergence_finds_the_common_prefix() {
        let a = h(&[(1, 0), (2, 100)]);
        let b = h(&[(1, 0), (3, 80)]);
        // a holds term 1 up to 100, b only up to 80: they agree up to 80.
        assert_eq!(a.divergence(Lsn(150), &b, Lsn(120)), Lsn(80));
        assert_eq!(b.divergence(Lsn(120), &a, Lsn(150)), Lsn(80));
        // Same history, different lengths: the shorter end.
        assert_eq!(a.divergence(Lsn(150), &a, Lsn(130)), Lsn(130));
        // Nothing in common.
        assert_eq!(
            h(&[(2, 0)]).divergence(Lsn(10), &h(&[(1, 0)]), Lsn(10)),
            Lsn(0)
        );
        // Same terms, but the second term started elsewhere: agree only on
        // the first term's shorter range.
        let c = h(&[(1, 0), (2, 90)]);
        assert_eq!(a.divergence(Lsn(150), &c, Lsn(150)), Lsn(90));
    }

    #[test]
    fn cut_drops_entries_without_bytes() {
        let mut x = h(&[(1, 0), (3, 100), (4, 250)]);
        x.cut(Lsn(250));
        assert_eq!(x, h(&[(1, 0), (3, 100)]));
        x.cut(Lsn(100));
        assert_eq!(x, h(&[(1, 0)]));
    }

    #[test]
    fn from_entries_rejects_bad_order() {
        let e = |term, start| TermEntry {
            term,
            start: Lsn(start),
        };
        assert!(TermHistory::from_entries(vec![e(2, 0), e(2, 5)]).is_err());
        assert!(TermHistory::from_entries(vec![e(1, 10), e(2, 5)]).is_err());
    }
}
