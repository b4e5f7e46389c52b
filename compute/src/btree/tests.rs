//! The tree against a `BTreeMap` model, through an in-memory writer that
//! logs every op as a framed WAL record and applies it with redo, as the
//! engine does; replaying the log from blank pages gives the same bytes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use proptest::collection::vec;
use proptest::prelude::*;
use strata_wal::op::PageOp;
use strata_wal::page::Page;
use strata_wal::record::{MAX_RECORD_BYTES, RecordIter};
use strata_wal::{Lsn, PageId, Record, redo};

use super::node::{self, ValueRef};
use super::*;
use crate::space;

const SPACE: u32 = 7;

/// Pages in memory; every op framed as a record (kept in `log`) and
/// applied with `redo::apply_op` at the record's LSN.
#[derive(Default)]
struct MemStore {
    pages: HashMap<PageId, Arc<Page>>,
    log: Vec<u8>,
    lsn: Lsn,
    records: usize,
}

impl PageRead for MemStore {
    fn page(&mut self, id: PageId) -> Result<Arc<Page>> {
        self.pages.get(&id).cloned().ok_or(TreeError::Miss(id))
    }
}

impl PageWrite for MemStore {
    fn apply(&mut self, id: PageId, op: PageOp) -> Result<()> {
        let fresh = matches!(op, PageOp::Init { .. } | PageOp::FullImage { .. });
        let mut page = match self.pages.get(&id) {
            Some(p) => Page::clone(p),
            None if fresh => Page::new_zeroed(),
            None => panic!("{op:?} on page {id}, never read nor written"),
        };
        let record = Record::Page { page: id, op };
        let mut framed = Vec::new();
        let lsn = record
            .encode(&mut framed, self.lsn)
            .expect("every op the tree makes fits a record");
        assert!(framed.len() <= MAX_RECORD_BYTES);
        let Record::Page { op, .. } = record else {
            unreachable!("a page record")
        };
        redo::apply_op(&mut page, lsn, &op)
            .map_err(|source| TreeError::Page { page: id, source })?;
        self.log.extend_from_slice(&framed);
        self.lsn = lsn;
        self.records += 1;
        self.pages.insert(id, Arc::new(page));
        Ok(())
    }
}

impl MemStore {
    /// A store holding a created space and an empty tree in it.
    fn with_tree() -> (MemStore, BTree) {
        let mut s = MemStore::default();
        space::create_space(&mut s, SPACE).unwrap();
        let tree = BTree::create(&mut s, SPACE).unwrap();
        (s, tree)
    }

    /// Every page rebuilt from blank pages by replaying the log.
    fn replayed(&self) -> HashMap<PageId, Page> {
        let mut pages: HashMap<PageId, Page> = HashMap::new();
        for r in RecordIter::new(&self.log, Lsn::ZERO) {
            let r = r.expect("the log decodes");
            let page = pages.entry(r.page).or_default();
            redo::apply(page, &r).expect("the log replays");
        }
        pages
    }

    /// Checks that replay gives every live page byte for byte, and returns
    /// a store on the replayed pages (a restart), keeping the log.
    fn restart(self) -> MemStore {
        let pages = self.replayed();
        assert_eq!(pages.len(), self.pages.len());
        for (id, page) in &pages {
            assert!(page.as_bytes() == self.pages[id].as_bytes(), "page {id}");
        }
        MemStore {
            pages: pages.into_iter().map(|(id, p)| (id, Arc::new(p))).collect(),
            ..self
        }
    }
}

/// Key `seed`: ordered by seed, of varied length (up to 300 bytes).
fn key(seed: u16) -> Vec<u8> {
    let mut k = seed.to_be_bytes().to_vec();
    let len = usize::from(seed) * 37 % 300;
    k.extend((0..len).map(|i| (i as u8).wrapping_mul(31) ^ (seed as u8)));
    k
}

/// A value of size class `class`: small, medium, or overflow-sized.
fn value(class: u8, salt: u8) -> Vec<u8> {
    let len = match class {
        0 => usize::from(salt) % 40,
        1 => 100 + usize::from(salt) * 7 % 1400,
        _ => 2100 + usize::from(salt) * 90,
    };
    (0..len)
        .map(|i| (i as u8).wrapping_mul(salt | 1) ^ class)
        .collect()
}

#[derive(Clone, Debug)]
enum Op {
    Put(u16, u8, u8),
    Delete(u16),
    Get(u16),
    /// Lower, upper, upper inclusive, direction, how many, batch size.
    Scan(u16, u16, bool, Direction, u8, u8),
}

fn arb_op(keys: u16) -> impl Strategy<Value = Op> {
    let class = prop_oneof![6 => Just(0u8), 3 => Just(1u8), 1 => Just(2u8)];
    let dir = prop_oneof![Just(Direction::Forward), Just(Direction::Reverse)];
    prop_oneof![
        8 => (0..keys, class, any::<u8>()).prop_map(|(k, c, s)| Op::Put(k, c, s)),
        4 => (0..keys).prop_map(Op::Delete),
        1 => (0..keys).prop_map(Op::Get),
        1 => (0..keys, 0..keys, any::<bool>(), dir, 0..40u8, 1..12u8)
            .prop_map(|(a, b, incl, d, n, batch)| Op::Scan(a.min(b), a.max(b), incl, d, n, batch)),
    ]
}

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Runs `ops` on the tree and the model, checking each answer.
fn run(s: &mut MemStore, tree: BTree, model: &mut Model, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Put(k, class, salt) => {
                let (k, v) = (key(*k), value(*class, *salt));
                let got = tree.put(s, &k, &v).unwrap();
                assert_eq!(got, model.insert(k, v), "{op:?}");
            }
            Op::Delete(k) => {
                let k = key(*k);
                assert_eq!(tree.delete(s, &k).unwrap(), model.remove(&k), "{op:?}");
            }
            Op::Get(k) => {
                let k = key(*k);
                assert_eq!(tree.get(s, &k).unwrap().as_ref(), model.get(&k), "{op:?}");
            }
            Op::Scan(a, b, incl, dir, n, batch) => {
                let lower = Bound::Included(key(*a));
                let upper = match incl {
                    true => Bound::Included(key(*b)),
                    false => Bound::Excluded(key(*b)),
                };
                let (n, batch) = (usize::from(*n), usize::from(*batch));
                let got = scan(s, tree, lower.clone(), upper.clone(), *dir, n, batch);
                let range = model
                    .range((lower, upper))
                    .map(|(k, v)| (k.clone(), v.clone()));
                let want: Vec<_> = match dir {
                    Direction::Forward => range.take(n).collect(),
                    Direction::Reverse => range.rev().take(n).collect(),
                };
                assert_eq!(got, want, "{op:?}");
            }
        }
    }
}

/// Up to `limit` entries of a range, read `batch` at a time (1: through
/// `Cursor::next`).
fn scan(
    r: &mut impl PageRead,
    tree: BTree,
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
    dir: Direction,
    limit: usize,
    batch: usize,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut c = tree.cursor(lower, upper, dir);
    let mut out = Vec::new();
    while out.len() < limit {
        let before = out.len();
        if batch == 1 {
            out.extend(c.next(r).unwrap());
        } else {
            c.next_batch(r, batch, &mut out).unwrap();
            assert!(out.len() - before <= batch, "a batch larger than asked");
        }
        if out.len() == before {
            break;
        }
    }
    out.truncate(limit);
    out
}

/// Full scans both ways equal the model; the tree's structure is sound.
fn check(s: &mut MemStore, tree: BTree, model: &Model) {
    let mut all = |dir, batch| {
        scan(
            s,
            tree,
            Bound::Unbounded,
            Bound::Unbounded,
            dir,
            usize::MAX,
            batch,
        )
    };
    let want: Vec<_> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(all(Direction::Forward, 1), want);
    assert_eq!(all(Direction::Forward, 64), want);
    let mut back = all(Direction::Reverse, 7);
    back.reverse();
    assert_eq!(back, want);
    check_structure(s, tree);
}

/// What a walk of the tree found.
#[derive(Default)]
struct Walk {
    leaves: Vec<PageId>,
    reachable: HashSet<u32>,
}

/// Keys sorted within bounds, levels consistent, only the root empty, the
/// leaf chain in key order, and every page of the space either reachable
/// from the root, on the free list, or the header, exactly once.
fn check_structure(s: &mut MemStore, tree: BTree) {
    let mut walk = Walk::default();
    let root = s.page(tree.root).unwrap();
    walk_page(s, tree, tree.root, root.level(), None, None, &mut walk);
    for pair in walk.leaves.windows(2) {
        assert_eq!(s.page(pair[0]).unwrap().right_link(), pair[1].page_no);
    }
    let last = *walk.leaves.last().expect("a tree has a leaf");
    assert_eq!(s.page(last).unwrap().right_link(), 0);
    let free = space::free_list(s, SPACE).unwrap();
    let header = space::read_header(s, SPACE).unwrap();
    let mut seen: HashSet<u32> = walk.reachable.clone();
    for p in &free {
        assert_eq!(
            s.page(PageId::new(SPACE, *p)).unwrap().page_type(),
            page_type::FREE
        );
        assert!(seen.insert(*p), "page {p} is both free and used");
    }
    assert!(seen.insert(0));
    let all: HashSet<u32> = (0..header.next_page_no).collect();
    assert_eq!(seen, all, "pages leaked or out of range");
}

#[allow(clippy::too_many_arguments)]
fn walk_page(
    s: &mut MemStore,
    tree: BTree,
    id: PageId,
    level: u8,
    lo: Option<&[u8]>,
    hi: Option<&[u8]>,
    walk: &mut Walk,
) {
    let page = s.page(id).unwrap();
    assert_eq!(page.level(), level, "page {id}");
    assert!(walk.reachable.insert(id.page_no), "page {id} reached twice");
    assert!(id == tree.root || page.slot_count() > 0, "empty page {id}");
    let in_range = |k: &[u8]| lo.is_none_or(|l| k >= l) && hi.is_none_or(|h| k < h);
    if level == 0 {
        assert_eq!(page.page_type(), page_type::LEAF);
        let mut prev: Option<Vec<u8>> = None;
        for slot in 0..page.slot_count() {
            let (k, v) = node::parse_leaf(id, page.item(slot).unwrap()).unwrap();
            assert!(in_range(k) && prev.as_deref().is_none_or(|p| p < k));
            if let ValueRef::Overflow { first, len } = v {
                let (value, chain) = overflow::read_chain(s, SPACE, first, len).unwrap();
                assert_eq!(value.len(), len as usize);
                walk.reachable.extend(chain);
            }
            prev = Some(k.to_vec());
        }
        walk.leaves.push(id);
        return;
    }
    assert_eq!(page.page_type(), page_type::INNER);
    let items: Vec<(u32, Vec<u8>)> = (0..page.slot_count())
        .map(|slot| {
            let (c, k) = node::parse_inner(id, page.item(slot).unwrap()).unwrap();
            (c, k.to_vec())
        })
        .collect();
    assert!(items[0].1.is_empty());
    for (i, (child, k)) in items.iter().enumerate() {
        let clo = if i == 0 { lo } else { Some(&k[..]) };
        if i > 0 {
            assert!(in_range(k) && items[i - 1].1 < *k);
        }
        let chi = items.get(i + 1).map(|(_, k)| &k[..]).or(hi);
        let child = PageId::new(SPACE, *child);
        walk_page(s, tree, child, level - 1, clo, chi, walk);
    }
}

fn depth(s: &mut MemStore, tree: BTree) -> u8 {
    s.page(tree.root).unwrap().level()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Random puts, deletes, gets and scans match the model, before and
    /// after a restart from the replayed log.
    #[test]
    fn the_tree_matches_a_model_across_restarts(
        keys in 300..2500u16,
        first in vec(arb_op(2500), 200..1500),
        second in vec(arb_op(2500), 100..800),
    ) {
        let keys_first: Vec<Op> = first.into_iter().map(|op| clamp(op, keys)).collect();
        let (mut s, tree) = MemStore::with_tree();
        let mut model = Model::new();
        run(&mut s, tree, &mut model, &keys_first);
        check(&mut s, tree, &model);
        let mut s = s.restart();
        let tree = BTree::open(tree.root);
        check(&mut s, tree, &model);
        run(&mut s, tree, &mut model, &second);
        check(&mut s, tree, &model);
        s.restart();
    }

    /// Sorted entries bulk-loaded read back as the model, in far fewer
    /// records than entries, and the tree then takes changes.
    #[test]
    fn a_bulk_load_equals_the_model(
        n in 0..4000usize,
        big in vec(0..4000usize, 0..4),
        ops in vec(arb_op(4000), 0..300),
    ) {
        let mut s = MemStore::default();
        space::create_space(&mut s, SPACE).unwrap();
        let before = s.records;
        let mut loader = BulkLoader::new(&mut s, SPACE).unwrap();
        let mut model = Model::new();
        for i in 0..n {
            let k = key(i as u16);
            let v = if big.contains(&i) { value(2, i as u8) } else { value((i % 2) as u8, i as u8) };
            loader.push(&mut s, &k, &v).unwrap();
            model.insert(k, v);
        }
        let tree = loader.finish(&mut s).unwrap();
        let records = s.records - before;
        prop_assert!(records <= 10 + n / 3 + 6 * big.len(), "{} records for {} entries", records, n);
        check(&mut s, tree, &model);
        let mut s = s.restart();
        run(&mut s, tree, &mut model, &ops);
        check(&mut s, tree, &model);
    }
}

/// `op` with its keys below `keys`.
fn clamp(op: Op, keys: u16) -> Op {
    match op {
        Op::Put(k, c, v) => Op::Put(k % keys, c, v),
        Op::Delete(k) => Op::Delete(k % keys),
        Op::Get(k) => Op::Get(k % keys),
        Op::Scan(a, b, i, d, n, batch) => {
            let (a, b) = (a % keys, b % keys);
            Op::Scan(a.min(b), a.max(b), i, d, n, batch)
        }
    }
}

#[test]
fn splits_and_merges_change_the_depth() {
    let (mut s, tree) = MemStore::with_tree();
    let mut model = Model::new();
    let puts: Vec<Op> = (0..3000).map(|k| Op::Put(k, 1, k as u8)).collect();
    run(&mut s, tree, &mut model, &puts);
    assert!(
        depth(&mut s, tree) >= 2,
        "3,000 medium entries need 3 levels"
    );
    check(&mut s, tree, &model);
    let dels: Vec<Op> = (0..3000).filter(|k| k % 7 != 0).map(Op::Delete).collect();
    run(&mut s, tree, &mut model, &dels);
    check(&mut s, tree, &model);
    let leaves = s
        .pages
        .values()
        .filter(|p| p.page_type() == page_type::LEAF)
        .count();
    assert!(
        leaves < 3000 / 7 / 3,
        "{leaves} leaves: sparse leaves were merged"
    );
}

#[test]
fn deleting_every_key_frees_the_pages_and_inserts_reuse_them() {
    let (mut s, tree) = MemStore::with_tree();
    let mut model = Model::new();
    let puts: Vec<Op> = (0..1500)
        .map(|k| Op::Put(k * 7 % 1500, (k % 3) as u8, k as u8))
        .collect();
    run(&mut s, tree, &mut model, &puts);
    let used = space::read_header(&mut s, SPACE).unwrap().next_page_no;
    let dels: Vec<Op> = (0..1500).map(Op::Delete).collect();
    run(&mut s, tree, &mut model, &dels);
    check(&mut s, tree, &model);
    assert_eq!(depth(&mut s, tree), 0);
    let free = space::free_list(&mut s, SPACE).unwrap();
    assert_eq!(
        free.len() as u32,
        used - 2,
        "all but the header and the root"
    );
    run(&mut s, tree, &mut model, &puts);
    check(&mut s, tree, &model);
    assert_eq!(
        space::read_header(&mut s, SPACE).unwrap().next_page_no,
        used
    );
}

#[test]
fn the_largest_value_round_trips_and_limits_are_typed() {
    let (mut s, tree) = MemStore::with_tree();
    let big: Vec<u8> = (0..MAX_VALUE_BYTES)
        .map(|i| (i * 7 + i / 9000) as u8)
        .collect();
    let k = vec![0xAB; MAX_KEY_BYTES];
    assert_eq!(tree.put(&mut s, &k, &big).unwrap(), None);
    assert_eq!(tree.put(&mut s, b"small", b"v").unwrap(), None);
    assert!(tree.get(&mut s, &k).unwrap() == Some(big.clone()));
    let s2 = s.restart();
    let mut s = s2;
    assert!(tree.get(&mut s, &k).unwrap() == Some(big.clone()));
    let long = vec![1; MAX_KEY_BYTES + 1];
    assert!(matches!(
        tree.put(&mut s, &long, b""),
        Err(TreeError::KeyTooLarge { len }) if len == MAX_KEY_BYTES + 1
    ));
    assert!(matches!(
        tree.get(&mut s, &long),
        Err(TreeError::KeyTooLarge { .. })
    ));
    let huge = vec![0; MAX_VALUE_BYTES + 1];
    assert!(matches!(
        tree.put(&mut s, b"k", &huge),
        Err(TreeError::ValueTooLarge { len }) if len == MAX_VALUE_BYTES + 1
    ));
    assert!(tree.delete(&mut s, &k).unwrap() == Some(big));
    let mut model = Model::new();
    model.insert(b"small".to_vec(), b"v".to_vec());
    check(&mut s, tree, &model);
    assert!(space::free_list(&mut s, SPACE).unwrap().len() > MAX_VALUE_BYTES / PAGE_CHUNK);
}

const PAGE_CHUNK: usize = overflow::CHUNK_BYTES;

/// Reads through a store, but a page not yet "fetched" is a miss.
struct Fetching<'a> {
    store: &'a mut MemStore,
    fetched: HashSet<PageId>,
    misses: usize,
}

impl PageRead for Fetching<'_> {
    fn page(&mut self, id: PageId) -> Result<Arc<Page>> {
        if !self.fetched.contains(&id) {
            return Err(TreeError::Miss(id));
        }
        self.store.page(id)
    }
}

impl Fetching<'_> {
    /// `f` retried after fetching each page it missed.
    fn retry<T>(&mut self, mut f: impl FnMut(&mut Self) -> Result<T>) -> T {
        loop {
            match f(self) {
                Ok(v) => return v,
                Err(TreeError::Miss(id)) => {
                    assert!(self.fetched.insert(id), "missed {id} twice");
                    self.misses += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Gets and scans through a reader that misses give the model's
    /// answers once retried; a cursor that missed did not move.
    #[test]
    fn misses_retried_give_the_right_answers(
        ops in vec(arb_op(1200), 300..900),
        probes in vec((0..1200u16, any::<bool>()), 1..8),
    ) {
        let (mut s, tree) = MemStore::with_tree();
        let mut model = Model::new();
        run(&mut s, tree, &mut model, &ops);
        let mut r = Fetching { store: &mut s, fetched: HashSet::new(), misses: 0 };
        for (k, reverse) in probes {
            let k = key(k);
            let got = r.retry(|r| tree.get(r, &k));
            prop_assert_eq!(got.as_ref(), model.get(&k));
            let (dir, lower, upper) = match reverse {
                false => (Direction::Forward, Bound::Included(k.clone()), Bound::Unbounded),
                true => (Direction::Reverse, Bound::Unbounded, Bound::Excluded(k.clone())),
            };
            let mut c = tree.cursor(lower.clone(), upper.clone(), dir);
            let mut got = Vec::new();
            while let Some(e) = r.retry(|r| c.next(r)) {
                got.push(e);
            }
            let range = model.range((lower, upper)).map(|(k, v)| (k.clone(), v.clone()));
            let want: Vec<_> = match reverse { false => range.collect(), true => range.rev().collect() };
            prop_assert_eq!(got, want);
        }
        prop_assert!(r.misses > 0);
    }
}

#[test]
fn path_names_the_pages_a_change_reads() {
    let (mut s, tree) = MemStore::with_tree();
    let mut model = Model::new();
    let puts: Vec<Op> = (0..2000).map(|k| Op::Put(k, 1, k as u8)).collect();
    run(&mut s, tree, &mut model, &puts);
    let k = key(1234);
    let path = tree.path(&mut s, &k).unwrap();
    assert_eq!(path.first(), Some(&tree.root));
    assert_eq!(path.last(), Some(&space::header_page(SPACE)));
    assert_eq!(path.len(), usize::from(depth(&mut s, tree)) + 2);
    let leaf = s.page(path[path.len() - 2]).unwrap();
    assert!(matches!(
        node::search_leaf(&leaf, path[path.len() - 2], &k),
        Ok(Ok(_))
    ));
    // With just those pages fetched, a get does not miss.
    let mut r = Fetching {
        store: &mut s,
        fetched: path.into_iter().collect(),
        misses: 0,
    };
    assert_eq!(r.retry(|r| tree.get(r, &k)).as_ref(), model.get(&k));
    assert_eq!(r.misses, 0);
}

#[test]
fn a_cursor_sees_changes_made_between_steps() {
    let (mut s, tree) = MemStore::with_tree();
    let mut model = Model::new();
    let puts: Vec<Op> = (0..800).map(|k| Op::Put(k, 1, k as u8)).collect();
    run(&mut s, tree, &mut model, &puts);
    for dir in [Direction::Forward, Direction::Reverse] {
        let mut c = tree.cursor(Bound::Unbounded, Bound::Unbounded, dir);
        let mut got = Vec::new();
        while let Some((k, _)) = c.next(&mut s).unwrap() {
            // Delete a run of keys ahead and behind: leaves empty and merge.
            let seed = u16::from_be_bytes([k[0], k[1]]);
            for d in [
                seed.wrapping_add(1),
                seed.wrapping_sub(1),
                seed.wrapping_add(2),
            ] {
                tree.delete(&mut s, &key(d)).unwrap();
                model.remove(&key(d));
            }
            got.push(seed);
        }
        assert!(got.windows(2).all(|w| match dir {
            Direction::Forward => w[0] < w[1],
            Direction::Reverse => w[0] > w[1],
        }));
        assert!(!got.is_empty());
        check(&mut s, tree, &model);
    }
}

#[test]
fn space_counters_and_allocation() {
    let mut s = MemStore::default();
    space::create_space(&mut s, 0).unwrap();
    space::set_counters(&mut s, 0, 42, 9).unwrap();
    let a = space::allocate_page(&mut s, 0).unwrap();
    let b = space::allocate_page(&mut s, 0).unwrap();
    assert_eq!((a, b), (1, 2));
    let h = space::read_header(&mut s, 0).unwrap();
    assert_eq!(
        h,
        space::SpaceHeader {
            next_page_no: 3,
            free_head: 0,
            auto_inc: 42,
            next_space_id: 9
        }
    );
    s.apply(
        PageId::new(0, a),
        PageOp::Init {
            page_type: page_type::LEAF,
            level: 0,
        },
    )
    .unwrap();
    space::free_page(&mut s, PageId::new(0, a)).unwrap();
    assert_eq!(space::free_list(&mut s, 0).unwrap(), vec![a]);
    assert_eq!(space::allocate_page(&mut s, 0).unwrap(), a);
    assert!(space::free_page(&mut s, PageId::new(0, 0)).is_err());
    assert_eq!(space::read_header(&mut s, 0).unwrap().auto_inc, 42);
}
