//! The join planner: which order the sources of a query run in, how each
//! finds its rows, and where each condition is checked.
//!
//! - Conditions are split into AND-ed conjuncts. A conjunct is checked as
//!   soon as every source it reads has run: on the rows a source reads
//!   (pushed down) when it reads only that source, else as a join
//!   condition. A LEFT JOIN's ON stays with its join; WHERE conjuncts over
//!   its inner side are checked after the NULL row is made. Conjuncts that
//!   read a subquery's result are checked last (`residual`).
//! - Access: for a table, the best index path ([`super::access`]) over
//!   conjuncts comparing its columns with constants or with sources already
//!   read. A path that reads earlier sources is an index nested-loop join
//!   (`Method::Lookup`); otherwise the source is read once, and hashed on
//!   an equality with earlier sources if there is one (`Method::Hash`),
//!   or joined by a nested loop over the buffered rows (`Method::Scan`).
//! - Order: with outer joins, as written (a RIGHT JOIN swapped). With
//!   inner joins only, greedy: next is the source connected to those
//!   already placed (no cross product while a connected one remains) with
//!   the fewest estimated rows per partial row ([`super::stats`]).

use crate::catalog::TableDef;

use super::SqlError;
use super::access::{self, conjuncts};
use super::expr::{CmpOp, Expr};
use super::from::CompiledJoins;
use super::names::Names;
use super::plan::{
    Access, Extra, FromPlan, JoinKind, Method, SelectPlan, Source, SourceKind, Step,
};
use super::stats;

/// The steps of a query over one compile-time source.
pub(crate) fn single() -> Vec<Step> {
    vec![Step {
        source: 0,
        kind: JoinKind::Inner,
        access: Access::default(),
        method: Method::Scan,
        pushed: None,
        on: None,
        after: None,
        rows: 0,
        possible: Vec::new(),
        ordered: false,
    }]
}

/// A conjunct and what it reads.
struct Conjunct {
    expr: Expr,
    /// Bit i: reads source i.
    reads: u64,
    /// Reads a subquery's result.
    late: bool,
    /// A LEFT JOIN's ON conjunct: its source (or `NEST + n`: nest n's ON).
    on_of: Option<usize>,
    /// The nest whose inner steps check it (`None`: the query's own).
    scope: Option<usize>,
    done: bool,
}

/// `on_of` of a nest's ON conjuncts: above any source number.
const NEST: usize = 1 << 20;

fn and_all(list: Vec<Expr>) -> Option<Expr> {
    list.into_iter()
        .reduce(|a, b| Expr::And(Box::new(a), Box::new(b)))
}

/// What `e` reads: sources (bits) and whether a subquery result.
fn reads(e: &Expr, names: &Names<'_>) -> (u64, bool) {
    let width = names.width();
    let extras = names.extras.borrow();
    let (mut bits, mut late) = (0u64, false);
    e.walk(&mut |x| {
        if let Expr::Column(i, _) = x {
            if *i < width {
                if let Some(s) = names.source_of(*i) {
                    bits |= 1 << s;
                }
            } else if matches!(extras.get(*i - width), Some(Extra::Subquery(_)) | None) {
                late = true;
            }
        }
    });
    (bits, late)
}

/// Plans the FROM clause of `plan` (whose filter moves into the steps).
pub(crate) fn plan(
    plan: &mut SelectPlan,
    names: Names<'_>,
    joins: CompiledJoins,
) -> Result<FromPlan, SqlError> {
    let n = names.sources.len();
    if n > 60 {
        return Err(SqlError::new(
            1116,
            "HY000",
            "Too many tables; MySQL can only use 61 tables in a join",
        ));
    }
    let mut list: Vec<Conjunct> = Vec::new();
    let add = |e: &Expr, on_of: Option<usize>, scope: Option<usize>, list: &mut Vec<Conjunct>| {
        let mut parts = Vec::new();
        conjuncts(e, &mut parts);
        for p in parts {
            let (bits, late) = reads(p, &names);
            list.push(Conjunct {
                expr: p.clone(),
                reads: bits,
                late,
                on_of,
                scope,
                done: false,
            });
        }
    };
    if let Some(f) = plan.filter.take() {
        add(&f, None, None, &mut list);
    }
    for (e, scope) in &joins.more {
        add(e, None, *scope, &mut list);
    }
    for (n, (_, on)) in joins.nests.iter().enumerate() {
        if let Some(on) = on {
            add(on, Some(NEST + n), None, &mut list);
        }
    }
    for (s, on) in joins.on.iter().enumerate() {
        if let Some(on) = on {
            let of = (joins.kinds[s] == JoinKind::Left).then_some(s);
            add(on, of, joins.scope[s], &mut list);
        }
    }
    let sources: Vec<Source> = joins
        .sources
        .into_iter()
        .zip(&names.sources)
        .map(|(kind, s)| Source {
            name: s.qualifier.clone(),
            kind,
            offset: s.offset,
            columns: s.columns.len(),
            names: s.columns.clone(),
        })
        .collect();
    let mut steps = Vec::with_capacity(n);
    let mut bound = 0u64;
    let mut order_left: Vec<usize> = match &joins.fixed {
        Some(o) => o.clone(),
        None => (0..n).collect(),
    };
    while !order_left.is_empty() {
        let pick = match joins.fixed {
            Some(_) => 0,
            None => greedy(&order_left, bound, &sources, &list, &names),
        };
        let s = order_left.remove(pick);
        if let Some(nn) = joins.scope[s] {
            // A nest: its members' steps run inside one outer-join step.
            let cx = NestCx {
                nests: &joins.nests,
                parent: &joins.nest_parent,
                scope: &joins.scope,
                kinds: &joins.kinds,
                sources: &sources,
                names: &names,
            };
            let top = cx.outermost(nn, None);
            let members = &joins.nests[top].0;
            order_left.retain(|x| !members.contains(x));
            steps.push(cx.nest(top, None, &mut bound, &mut list));
            continue;
        }
        let at = Place {
            bound,
            first: steps.is_empty(),
            scope: None,
        };
        let step = step(s, joins.kinds[s], &at, &sources, &mut list, &names);
        steps.push(step);
        bound |= 1 << s;
    }
    if list
        .iter()
        .any(|c| !c.done && (c.on_of.is_some() || c.scope.is_some()))
    {
        return Err(SqlError::unsupported(
            "a subquery in a LEFT or RIGHT JOIN's ON",
        ));
    }
    let mut residual = Vec::new();
    for c in list.iter_mut().filter(|c| !c.done) {
        c.done = true;
        residual.push(c.expr.clone());
    }
    let width = names.width();
    let extras = names.extras.into_inner();
    let subqueries = names.subqueries.into_inner();
    let mut from = FromPlan {
        sources,
        width,
        extras,
        subqueries,
        steps,
        residual: and_all(residual),
    };
    mark_where_subqueries(&mut from);
    order_by_index(plan, &mut from);
    super::covering::mark_join(plan, &mut from);
    Ok(from)
}

/// Where a step goes: after the sources `bound`, first of its sequence or
/// not, among the query's own steps or inside nest `scope`.
struct Place {
    bound: u64,
    first: bool,
    scope: Option<usize>,
}

/// What building a nest's steps reads (of [`CompiledJoins`]).
struct NestCx<'a, 'n> {
    nests: &'a [(Vec<usize>, Option<Expr>)],
    parent: &'a [Option<usize>],
    scope: &'a [Option<usize>],
    kinds: &'a [JoinKind],
    sources: &'a [Source],
    names: &'a Names<'n>,
}

impl NestCx<'_, '_> {
    /// The nest holding nest `n` directly inside `within` (`None`: at the
    /// query's top level): `n` itself or one of the nests around it.
    fn outermost(&self, n: usize, within: Option<usize>) -> usize {
        let mut top = n;
        // Bounded by the number of nests (a parent numbers lower).
        for _ in 0..self.nests.len() {
            match self.parent.get(top).copied().flatten() {
                p if p == within => break,
                Some(p) => top = p,
                None => break,
            }
        }
        top
    }

    /// The outer-join step of nest `nn` (inside nest `parent`), its members'
    /// steps in their order — a nest inside it as one step of its own —
    /// after the sources `bound`, which it extends by its members.
    fn nest(
        &self,
        nn: usize,
        parent: Option<usize>,
        bound: &mut u64,
        list: &mut [Conjunct],
    ) -> Step {
        let members = &self.nests[nn].0;
        let mut inner = Vec::with_capacity(members.len());
        let mut inner_bound = *bound;
        let mut done: Vec<usize> = Vec::new();
        for &m in members {
            if done.contains(&m) {
                continue;
            }
            if let Some(sub) = self.scope[m].filter(|&s| s != nn) {
                let top = self.outermost(sub, Some(nn));
                done.extend(&self.nests[top].0);
                inner.push(self.nest(top, Some(nn), &mut inner_bound, list));
                continue;
            }
            let at = Place {
                bound: inner_bound,
                first: inner.is_empty(),
                scope: Some(nn),
            };
            let kind = self.kinds[m];
            inner.push(step(m, kind, &at, self.sources, list, self.names));
            inner_bound |= 1 << m;
        }
        *bound = inner_bound;
        nest_step(nn, parent, inner, inner_bound, list)
    }
}

/// The outer-join step of nest `n` (its members' steps already built):
/// the ON is checked on the nest's rows, a row of NULLs when none passes,
/// then the conjuncts due of the steps around it (WHERE's at the top
/// level, the enclosing nest's inside one).
fn nest_step(
    n: usize,
    parent: Option<usize>,
    inner: Vec<Step>,
    after_bits: u64,
    list: &mut [Conjunct],
) -> Step {
    let (mut on, mut after) = (Vec::new(), Vec::new());
    for c in list.iter_mut() {
        if c.done || c.late || c.reads & !after_bits != 0 {
            continue;
        }
        match c.on_of {
            Some(o) if o == NEST + n => on.push(c.expr.clone()),
            None if c.scope == parent => after.push(c.expr.clone()),
            _ => continue,
        }
        c.done = true;
    }
    let rows = inner.iter().map(|s| s.rows.max(1)).product();
    Step {
        source: inner.first().map_or(0, |s| s.source),
        kind: JoinKind::Left,
        access: Access::default(),
        method: Method::Nest(inner),
        pushed: None,
        on: and_all(on),
        after: and_all(after),
        rows,
        possible: Vec::new(),
        ordered: false,
    }
}

/// Which subqueries the residual filter reads (computed before it).
fn mark_where_subqueries(from: &mut FromPlan) {
    let Some(r) = &from.residual else {
        return;
    };
    let width = from.width;
    let mut used = Vec::new();
    r.walk(&mut |x| {
        if let Expr::Column(i, _) = x
            && *i >= width
            && let Some(Extra::Subquery(k)) = from.extras.get(*i - width)
        {
            used.push(*k);
        }
    });
    for k in used {
        from.subqueries[k].in_where = true;
    }
}

/// A single-table first step whose index gives the ORDER BY needs no sort
/// when nothing after it can reorder (one source).
fn order_by_index(plan: &mut SelectPlan, from: &mut FromPlan) {
    if from.steps.len() != 1 || plan.grouped || plan.order.is_empty() {
        return;
    }
    let step = &mut from.steps[0];
    let Some(SourceKind::Table(t)) = from.sources.get(step.source).map(|s| &s.kind) else {
        return;
    };
    if !matches!(step.method, Method::Scan) || step.access.eq.iter().any(|a| a.len() != 1) {
        return;
    }
    let mut probe = SelectPlan {
        from: None,
        sources: None,
        items: Vec::new(),
        filter: None,
        access: step.access.clone(),
        aggs: Vec::new(),
        grouped: false,
        group_by: Vec::new(),
        rollup: false,
        having: None,
        order: std::mem::take(&mut plan.order),
        index_order: None,
        distinct: false,
        limit: None,
        offset: None,
        lock: false,
        calc_found_rows: false,
    };
    let full = probe.access.is_full_scan();
    access::order_for(&mut probe, &t.def, full);
    plan.order = std::mem::take(&mut probe.order);
    if let Some(dir) = probe.index_order {
        step.access = probe.access;
        step.ordered = true;
        plan.index_order = Some(dir);
    }
}

/// The next source to place: connected to the placed ones, fewest rows.
fn greedy(
    left: &[usize],
    bound: u64,
    sources: &[Source],
    list: &[Conjunct],
    names: &Names<'_>,
) -> usize {
    let connected = |s: usize| {
        bound == 0
            || list.iter().any(|c| {
                !c.late
                    && c.reads & (1 << s) != 0
                    && c.reads & bound != 0
                    && c.reads & !(bound | 1 << s) == 0
            })
    };
    let mut best = (true, u64::MAX, 0);
    for (i, &s) in left.iter().enumerate() {
        let (_, _, rows) = access_for(s, bound, None, sources, list, names);
        let key = (!connected(s), rows, i);
        if key < best {
            best = key;
        }
    }
    best.2
}

/// The access path for source `s` given the sources `bound`, whether it
/// reads them, and its estimated rows per partial row.
fn access_for(
    s: usize,
    bound: u64,
    scope: Option<usize>,
    sources: &[Source],
    list: &[Conjunct],
    names: &Names<'_>,
) -> (Access, Vec<usize>, u64) {
    let src = &sources[s];
    let SourceKind::Table(t) = &src.kind else {
        let rows = match &src.kind {
            SourceKind::Values(v) => v.len() as u64,
            _ => stats::DEFAULT_ROWS,
        };
        return (Access::default(), Vec::new(), rows);
    };
    let usable_for =
        |c: &Conjunct| !c.late && c.reads & (1 << s) != 0 && c.reads & !(bound | 1 << s) == 0;
    let mine: Vec<&Expr> = list
        .iter()
        .filter(|c| !c.done && c.scope == scope && usable_for(c))
        .filter(|c| c.on_of.is_none_or(|o| o == s))
        .filter(|c| c.on_of == Some(s) || !left_inner(s, list))
        .map(|c| &c.expr)
        .collect();
    let usable = |e: &Expr| {
        let (bits, late) = reads(e, names);
        !late && bits & !bound == 0
    };
    let (access, possible) = access::choose_at(&t.def, &mine, src.offset, &usable);
    let rows = estimate(&t.def, &access);
    (access, possible, rows)
}

/// Whether source `s` is a LEFT JOIN's inner side (it has ON conjuncts).
fn left_inner(s: usize, list: &[Conjunct]) -> bool {
    list.iter().any(|c| c.on_of == Some(s))
}

/// Rows an access path is expected to find.
pub(crate) fn estimate(t: &TableDef, a: &Access) -> u64 {
    let rows = stats::rows(t).max(1);
    let idx = access::index_def(t, a.index);
    if !a.eq.is_empty() && a.eq.len() == idx.columns.len() && idx.unique {
        return a
            .eq
            .iter()
            .map(|alts| alts.len() as u64)
            .product::<u64>()
            .max(1);
    }
    let points = a.eq.iter().map(|alts| alts.len() as u64).product::<u64>();
    let counted = match a.eq.len() {
        0 => None,
        k => stats::distinct(t, a.index).and_then(|d| d.get(k - 1).copied()),
    };
    let mut r = match counted {
        // ANALYZE TABLE counted the distinct values of this prefix.
        Some(d) => rows.div_ceil(d.max(1)).saturating_mul(points),
        None => {
            let mut r = rows;
            for alts in &a.eq {
                r = (r / 10).max(1) * alts.len() as u64;
            }
            r
        }
    };
    if a.lower.is_some() || a.upper.is_some() {
        r = (r / 3).max(1);
    }
    r.min(rows)
}

/// Builds the step that joins source `s` at `at`.
fn step(
    s: usize,
    kind: JoinKind,
    at: &Place,
    sources: &[Source],
    list: &mut [Conjunct],
    names: &Names<'_>,
) -> Step {
    let (bound, first) = (at.bound, at.first);
    let (access, possible, rows) = access_for(s, bound, at.scope, sources, list, names);
    let after_bits = bound | 1 << s;
    let covered =
        |c: &Conjunct| !c.done && !c.late && c.scope == at.scope && c.reads & !after_bits == 0;
    let mut pushed = Vec::new();
    let mut on = Vec::new();
    let mut after = Vec::new();
    for c in list.iter_mut() {
        if !covered(c) {
            continue;
        }
        let own = c.reads == 1 << s;
        match (kind, c.on_of) {
            (JoinKind::Left, Some(o)) if o == s => {
                if own {
                    pushed.push(c.expr.clone());
                } else {
                    on.push(c.expr.clone());
                }
            }
            (_, Some(_)) => continue,
            (JoinKind::Left, None) => after.push(c.expr.clone()),
            (JoinKind::Inner, None) if own => pushed.push(c.expr.clone()),
            (JoinKind::Inner, None) if c.reads == 0 && first => after.push(c.expr.clone()),
            (JoinKind::Inner, None) if c.reads == 0 => continue,
            (JoinKind::Inner, None) => on.push(c.expr.clone()),
        }
        c.done = true;
    }
    let reads_bound = access_reads_bound(&access, names);
    let method = if reads_bound {
        Method::Lookup
    } else if first {
        Method::Scan
    } else {
        hash_keys(s, bound, sources, &on, names).unwrap_or(Method::Scan)
    };
    Step {
        source: s,
        kind,
        access,
        method,
        pushed: and_all(pushed),
        on: and_all(on),
        after: and_all(after),
        rows,
        possible,
        ordered: false,
    }
}

fn access_reads_bound(a: &Access, names: &Names<'_>) -> bool {
    let width = names.width();
    let mut reads = false;
    let mut check = |e: &Expr| {
        e.walk(&mut |x| {
            if let Expr::Column(i, _) = x
                && *i < width
            {
                reads = true;
            }
        })
    };
    a.eq.iter().flatten().for_each(&mut check);
    a.lower
        .iter()
        .chain(a.upper.iter())
        .for_each(|(e, _)| check(e));
    reads
}

/// Equalities `s.col = expr(earlier sources)` among the join conditions:
/// a hash join on them.
fn hash_keys(
    s: usize,
    bound: u64,
    sources: &[Source],
    on: &[Expr],
    names: &Names<'_>,
) -> Option<Method> {
    let src = &sources[s];
    let mine = |e: &Expr| match e {
        Expr::Column(i, _) if *i >= src.offset && *i < src.offset + src.columns => {
            Some(*i - src.offset)
        }
        _ => None,
    };
    let earlier = |e: &Expr| {
        let (bits, late) = reads(e, names);
        !late && bits != 0 && bits & !bound == 0
    };
    let (mut build, mut probe) = (Vec::new(), Vec::new());
    for c in on {
        let Expr::Cmp(CmpOp::Eq, a, b, _) = c else {
            continue;
        };
        match (mine(a), mine(b)) {
            (Some(i), None) if earlier(b) => {
                build.push(i);
                probe.push(b.as_ref().clone());
            }
            (None, Some(i)) if earlier(a) => {
                build.push(i);
                probe.push(a.as_ref().clone());
            }
            _ => {}
        }
    }
    let types = build
        .iter()
        .map(|&i| names.joined.columns[src.offset + i].ty.clone())
        .collect();
    (!build.is_empty()).then_some(Method::Hash {
        build,
        probe,
        types,
    })
}
