//! One page's cached versions and the page's last-written LSN: the rules
//! that keep a page's versions true, with no locking and no accounting
//! (the pool does both around these calls).
//!
//! Invariants of a [`PageEntry`]:
//! - `versions` is sorted by `from`, and the ranges `[from, to)` are
//!   non-empty and pairwise disjoint: at most one version answers an LSN;
//! - only the last version may be open (`to == Lsn::MAX`);
//! - no version claims validity past the first write this node made to the
//!   page after its `from` (publish closes the open version; an insert is
//!   clipped at `written`).

use std::sync::Arc;

use strata_wal::Lsn;
use strata_wal::page::Page;

/// One immutable image of a page and the LSN range it is valid over.
pub(super) struct Version {
    pub from: Lsn,
    pub to: Lsn,
    pub image: Arc<Page>,
    /// Unique in the pool: tells this version from a later one with the
    /// same `from` when a queue entry is looked up.
    pub id: u64,
    /// Above the durable LSN: the only copy anywhere; never evicted.
    pub pinned: bool,
    /// Read since the clock hand last passed it.
    pub referenced: bool,
}

impl Version {
    fn new(image: Arc<Page>, from: Lsn, to: Lsn, id: u64, pinned: bool) -> Version {
        Version {
            from,
            to,
            image,
            id,
            pinned,
            referenced: false,
        }
    }

    pub fn covers(&self, lsn: Lsn) -> bool {
        self.from <= lsn && lsn < self.to
    }
}

/// What an insert did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Inserted {
    /// A new version `[from, to)` with this id.
    Added { id: u64, to: Lsn },
    /// The cached version with the same `from` now ends later, at `to`.
    Extended { id: u64, to: Lsn },
    /// A cached version already answers `from`, or nothing was left after
    /// clipping.
    Refused,
}

/// A version whose `to` became finite: it names the version (`from`, `id`)
/// and says where it now ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Ended {
    pub from: Lsn,
    pub id: u64,
    pub to: Lsn,
}

/// What a publish did to the versions it found.
#[derive(Default)]
pub(super) struct Published {
    /// Versions from at or above the new one's (only after a caller bug).
    pub removed: Vec<Version>,
    /// The version closed at the new one's `from`.
    pub closed: Option<Ended>,
}

/// What discarding the versions above the durable LSN did.
#[derive(Default)]
pub(super) struct Discarded {
    pub removed: Vec<Version>,
    /// The version left ending just past the durable LSN.
    pub clipped: Option<Ended>,
}

/// A page's cached versions and its last-written LSN.
#[derive(Default)]
pub(super) struct PageEntry {
    versions: Vec<Version>,
    /// The page LSN of the last image this node published for the page
    /// since it started; `Lsn::ZERO` if none (no record has LSN 0).
    pub written: Lsn,
}

impl PageEntry {
    /// Neither a version nor a write to remember: the entry can go.
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty() && self.written == Lsn::ZERO
    }

    pub fn versions(&self) -> &[Version] {
        &self.versions
    }

    /// The version valid at `lsn`. Searched from the newest: most reads
    /// are of the latest version or the one before it.
    pub fn lookup(&mut self, lsn: Lsn) -> Option<&mut Version> {
        self.versions
            .iter_mut()
            .rev()
            .find(|v| v.from <= lsn)
            .filter(|v| v.covers(lsn))
    }

    /// The open version (valid until this node writes the page).
    pub fn current(&mut self) -> Option<&mut Version> {
        self.versions.last_mut().filter(|v| v.to == Lsn::MAX)
    }

    /// Where version `id`, valid from `from`, sits: a binary search, since
    /// versions are sorted by `from` and no two share one. A version's
    /// `from` never changes; the id tells it from a later version with
    /// the same `from` after the first one went.
    pub fn position(&self, from: Lsn, id: u64) -> Option<usize> {
        let i = self.versions.partition_point(|v| v.from < from);
        let v = self.versions.get(i)?;
        (v.from == from && v.id == id).then_some(i)
    }

    pub fn get_mut(&mut self, index: usize) -> Option<&mut Version> {
        self.versions.get_mut(index)
    }

    pub fn remove(&mut self, index: usize) -> Version {
        self.versions.remove(index)
    }

    /// Adds `image` as valid `[from, to)`, clipped so that it claims
    /// nothing this node knows to be false: not past this node's last
    /// write if that came after `from`, and not into the next cached
    /// version. A cached version with the same `from` is the same image:
    /// its `to` is extended instead. Any other cached version covering
    /// `from` wins and the insert is refused.
    pub fn insert(&mut self, image: Arc<Page>, from: Lsn, to: Lsn, id: u64) -> Inserted {
        let mut to = to;
        if self.written > from {
            to = to.min(self.written);
        }
        let at = self.versions.partition_point(|v| v.from <= from);
        if let Some(next) = self.versions.get(at) {
            to = to.min(next.from);
        }
        if at > 0 {
            let prev = &mut self.versions[at - 1];
            if prev.from == from && to > prev.to {
                prev.to = to;
                return Inserted::Extended { id: prev.id, to };
            }
            if prev.to > from {
                return Inserted::Refused;
            }
        }
        if to <= from {
            return Inserted::Refused;
        }
        self.versions
            .insert(at, Version::new(image, from, to, id, false));
        Inserted::Added { id, to }
    }

    /// This node wrote the page at `lsn` (the image's page LSN): the image
    /// becomes the open version `[lsn, MAX)` and closes the one before it
    /// at `lsn`. Versions from at or above `lsn` cannot exist (the applier
    /// writes in LSN order); if they do, they are dropped rather than left
    /// overlapping.
    pub fn publish(&mut self, image: Arc<Page>, lsn: Lsn, id: u64, pinned: bool) -> Published {
        let mut out = Published::default();
        let keep = self.versions.partition_point(|v| v.from < lsn);
        out.removed = self.versions.split_off(keep);
        if let Some(last) = self.versions.last_mut()
            && last.to > lsn
        {
            last.to = lsn;
            out.closed = Some(Ended {
                from: last.from,
                id: last.id,
                to: lsn,
            });
        }
        self.versions
            .push(Version::new(image, lsn, Lsn::MAX, id, pinned));
        self.written = lsn;
        out
    }

    /// The writes above `durable` never happened: their versions go, the
    /// version left last ends at `durable + 1` (nothing past `durable` is
    /// known any more), and a last write above `durable` is forgotten.
    pub fn discard_above(&mut self, durable: Lsn) -> Discarded {
        let mut out = Discarded::default();
        let keep = self.versions.partition_point(|v| v.from <= durable);
        out.removed = self.versions.split_off(keep);
        let ceiling = Lsn(durable.0.saturating_add(1));
        if let Some(last) = self.versions.last_mut()
            && last.to > ceiling
        {
            last.to = ceiling;
            out.clipped = Some(Ended {
                from: last.from,
                id: last.id,
                to: ceiling,
            });
        }
        if self.written > durable {
            self.written = Lsn::ZERO;
        }
        out
    }

    /// Checks the invariants in the module header.
    #[cfg(test)]
    pub fn check(&self) -> Result<(), String> {
        for v in &self.versions {
            if v.from >= v.to {
                return Err(format!("empty range [{}, {})", v.from, v.to));
            }
        }
        for pair in self.versions.windows(2) {
            if pair[0].to > pair[1].from {
                return Err(format!(
                    "[{}, {}) overlaps [{}, {})",
                    pair[0].from, pair[0].to, pair[1].from, pair[1].to
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(lsn: u64) -> Arc<Page> {
        let mut page = Page::new_zeroed();
        page.set_lsn(Lsn(lsn));
        Arc::new(page)
    }

    fn ranges(entry: &PageEntry) -> Vec<(u64, u64)> {
        entry.versions.iter().map(|v| (v.from.0, v.to.0)).collect()
    }

    #[test]
    fn publish_closes_the_open_version() {
        let mut e = PageEntry::default();
        e.insert(image(10), Lsn(10), Lsn::MAX, 1);
        let out = e.publish(image(20), Lsn(20), 2, true);
        assert_eq!(
            out.closed,
            Some(Ended {
                from: Lsn(10),
                id: 1,
                to: Lsn(20)
            })
        );
        assert!(out.removed.is_empty());
        assert_eq!(ranges(&e), vec![(10, 20), (20, u64::MAX)]);
        assert_eq!(e.written, Lsn(20));
        assert_eq!(e.lookup(Lsn(19)).map(|v| v.id), Some(1));
        assert_eq!(e.lookup(Lsn(20)).map(|v| v.id), Some(2));
        assert!(e.lookup(Lsn(9)).is_none());
        e.check().expect("invariants");
    }

    #[test]
    fn insert_is_clipped_by_the_last_write_and_the_next_version() {
        let mut e = PageEntry::default();
        e.publish(image(50), Lsn(50), 1, true);
        // The page server vouched [10, 60) before it knew of the write at 50.
        assert_eq!(
            e.insert(image(10), Lsn(10), Lsn(60), 2),
            Inserted::Added { id: 2, to: Lsn(50) }
        );
        // Another version below it ends at the next cached `from`.
        e.written = Lsn::ZERO;
        assert_eq!(
            e.insert(image(5), Lsn(5), Lsn::MAX, 3),
            Inserted::Added { id: 3, to: Lsn(10) }
        );
        assert_eq!(ranges(&e), vec![(5, 10), (10, 50), (50, u64::MAX)]);
        e.check().expect("invariants");
    }

    #[test]
    fn an_insert_covered_by_a_cached_version_is_refused() {
        let mut e = PageEntry::default();
        e.insert(image(10), Lsn(10), Lsn(30), 1);
        assert_eq!(e.insert(image(20), Lsn(20), Lsn(40), 2), Inserted::Refused);
        // Same `from`, shorter claim: nothing to do.
        assert_eq!(e.insert(image(10), Lsn(10), Lsn(25), 3), Inserted::Refused);
        assert_eq!(ranges(&e), vec![(10, 30)]);
    }

    #[test]
    fn the_same_image_vouched_longer_is_extended() {
        let mut e = PageEntry::default();
        e.insert(image(10), Lsn(10), Lsn(30), 1);
        assert_eq!(
            e.insert(image(10), Lsn(10), Lsn::MAX, 2),
            Inserted::Extended {
                id: 1,
                to: Lsn::MAX
            }
        );
        e.publish(image(40), Lsn(40), 3, true);
        // The last write (40) bounds an extension of the older version.
        assert_eq!(e.insert(image(10), Lsn(10), Lsn::MAX, 4), Inserted::Refused);
        assert_eq!(ranges(&e), vec![(10, 40), (40, u64::MAX)]);
    }

    #[test]
    fn discard_above_drops_newer_versions_and_ends_the_rest_past_durable() {
        let mut e = PageEntry::default();
        e.insert(image(10), Lsn(10), Lsn::MAX, 1);
        e.publish(image(20), Lsn(20), 2, true);
        e.publish(image(30), Lsn(30), 3, true);
        let out = e.discard_above(Lsn(25));
        assert_eq!(
            out.removed.iter().map(|v| v.id).collect::<Vec<_>>(),
            vec![3]
        );
        assert_eq!(
            out.clipped,
            Some(Ended {
                from: Lsn(20),
                id: 2,
                to: Lsn(26)
            })
        );
        assert_eq!(e.position(Lsn(20), 2), Some(1));
        assert_eq!(e.position(Lsn(20), 3), None);
        assert_eq!(e.position(Lsn(15), 2), None);
        assert_eq!(ranges(&e), vec![(10, 20), (20, 26)]);
        assert_eq!(e.written, Lsn::ZERO);
        e.check().expect("invariants");
    }

    #[test]
    fn an_empty_range_is_refused() {
        let mut e = PageEntry::default();
        assert_eq!(e.insert(image(10), Lsn(10), Lsn(10), 1), Inserted::Refused);
        assert!(e.is_empty());
    }
}
