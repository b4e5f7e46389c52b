//! The FROM clause: its sources (tables, derived tables) added to the
//! query's [`Names`] in FROM order, and its joins: INNER / CROSS / comma
//! joins, LEFT and RIGHT [OUTER] JOIN with ON, USING or NATURAL.
//!
//! A RIGHT JOIN runs as a LEFT JOIN with its sides swapped. Parenthesized
//! joins joined by an inner join (or first) are flattened into their
//! chain. Several tables as an outer join's inner side — `a LEFT JOIN (b
//! JOIN c …) …`, or the left side of `a JOIN b … RIGHT JOIN c …` — become a
//! nest ([`CompiledJoins::nests`]), to any depth (a nest inside a nest
//! records its parent).
//! A parenthesized join on a RIGHT JOIN's right side runs first, the left
//! side LEFT JOINed to it; a RIGHT JOIN whose left side joins several
//! tables makes them a nest, also inside a nest. USING and NATURAL work
//! with every shape; they look only at the chain the join ends (a comma
//! binds looser than JOIN).
//! The execution
//! order of a query with outer joins is fixed here; inner joins are
//! ordered by the planner.

use sqlparser::ast::{self, JoinConstraint, JoinOperator, TableFactor};

use crate::types::Collation;

use super::SqlError;
use super::compile::{ExprCompiler, Params, Scope};
use super::expr::{CmpOp, Expr};
use super::names::Names;
use super::plan::{JoinKind, SourceKind};

/// A join's condition before compilation.
enum Cond<'q> {
    None,
    On(&'q ast::Expr),
    /// Pairs of layout positions (left, right) USING / NATURAL equates.
    Using(Vec<(usize, usize)>),
}

/// The joins of a FROM clause, per source (FROM order).
pub(crate) struct Joins<'q> {
    kinds: Vec<JoinKind>,
    conds: Vec<Cond<'q>>,
    /// The ON conditions of inner joins with a parenthesized group.
    more: Vec<(Cond<'q>, Option<usize>)>,
    /// Per source, the nest it belongs to (see [`CompiledJoins::nests`]).
    scope: Vec<Option<usize>>,
    /// Nested inner sides of outer joins: members (in run order) and ON.
    nests: Vec<(Vec<usize>, Cond<'q>)>,
    /// Per nest, the nest it is inside (a nest inside a nest).
    nest_parent: Vec<Option<usize>>,
    /// The order the sources must run in (outer joins); `None`: any.
    fixed: Option<Vec<usize>>,
    pub(crate) kinds_sources: Vec<SourceKind>,
}

/// The compiled joins.
pub(crate) struct CompiledJoins {
    pub kinds: Vec<JoinKind>,
    /// Per source, the ON condition (a LEFT JOIN's: its match condition;
    /// an inner join's: part of WHERE).
    pub on: Vec<Option<Expr>>,
    /// Inner join conditions not tied to one source (as WHERE's).
    pub more: Vec<(Expr, Option<usize>)>,
    /// Per source, the nest it belongs to.
    pub scope: Vec<Option<usize>>,
    /// The inner sides of outer joins that are several tables
    /// (`a LEFT JOIN (b JOIN c ON …) ON …`, `a JOIN b … RIGHT JOIN c ON …`):
    /// their members, in the order they run, and the outer join's ON.
    pub nests: Vec<(Vec<usize>, Option<Expr>)>,
    /// Per nest, the nest it is inside: its members are also the outer
    /// nest's, and its step runs among the outer nest's steps.
    pub nest_parent: Vec<Option<usize>>,
    pub fixed: Option<Vec<usize>>,
    pub sources: Vec<SourceKind>,
}

impl CompiledJoins {
    /// A single source, no join.
    pub(crate) fn is_plain(&self) -> bool {
        self.more.is_empty() && self.on.len() <= 1 && self.on.iter().all(Option::is_none)
    }
}

impl Cond<'_> {
    /// The condition as an expression (USING: the AND of its equalities).
    fn compile(self, cx: &mut ExprCompiler<'_>) -> Result<Option<Expr>, SqlError> {
        Ok(match self {
            Cond::None => None,
            Cond::On(e) => Some(cx.expr(e)?),
            Cond::Using(pairs) => pairs
                .into_iter()
                .map(|(l, r)| {
                    let coll = cx
                        .names
                        .map_or(Collation::Binary, |n| n.joined.columns[l].ty.collation());
                    Expr::Cmp(
                        CmpOp::Eq,
                        Box::new(Expr::Column(l, coll)),
                        Box::new(Expr::Column(r, coll)),
                        coll,
                    )
                })
                .reduce(|a, b| Expr::And(Box::new(a), Box::new(b))),
        })
    }
}

impl<'q> Joins<'q> {
    pub(crate) fn compile(self, cx: &mut ExprCompiler<'_>) -> Result<CompiledJoins, SqlError> {
        let mut on = Vec::with_capacity(self.conds.len());
        let mut more = Vec::new();
        for (c, scope) in self.more {
            if let Some(e) = c.compile(cx)? {
                more.push((e, scope));
            }
        }
        let mut nests = Vec::with_capacity(self.nests.len());
        for (members, c) in self.nests {
            nests.push((members, c.compile(cx)?));
        }
        for c in self.conds {
            on.push(c.compile(cx)?);
        }
        Ok(CompiledJoins {
            kinds: self.kinds,
            on,
            more,
            scope: self.scope,
            nests,
            nest_parent: self.nest_parent,
            fixed: self.fixed,
            sources: self.kinds_sources,
        })
    }
}

/// Adds every source of `from` to `names`.
pub(crate) fn sources<'q>(
    from: &'q [ast::TableWithJoins],
    names: &mut Names<'_>,
    scope: &Scope<'_>,
    params: &mut Params,
) -> Result<Joins<'q>, SqlError> {
    let mut j = Joins {
        kinds: Vec::new(),
        conds: Vec::new(),
        more: Vec::new(),
        scope: Vec::new(),
        nests: Vec::new(),
        nest_parent: Vec::new(),
        fixed: None,
        kinds_sources: Vec::new(),
    };
    let mut order = Vec::new();
    let mut outer = false;
    let mut cx = Chain {
        names,
        scope,
        params,
        order: &mut order,
        outer: &mut outer,
        nest: None,
    };
    for twj in from {
        cx.chain(twj, &mut j)?;
    }
    if outer {
        j.fixed = Some(order);
    }
    Ok(j)
}

/// What a FROM clause's chains are added with.
struct Chain<'n, 'a, 's> {
    names: &'n mut Names<'a>,
    scope: &'s Scope<'s>,
    params: &'n mut Params,
    /// The sources in the order they must run (if an outer join fixes it).
    order: &'n mut Vec<usize>,
    outer: &'n mut bool,
    /// The nest the sources being added belong to.
    nest: Option<usize>,
}

impl Chain<'_, '_, '_> {
    /// One chain `t1 JOIN t2 … JOIN tn`; a parenthesized group joined by
    /// an inner join (or first) is flattened into it: inner joins are
    /// associative, and its own outer joins keep their single-table inner
    /// sides.
    fn chain<'q>(
        &mut self,
        twj: &'q ast::TableWithJoins,
        j: &mut Joins<'q>,
    ) -> Result<(), SqlError> {
        let chain_start = self.order.len();
        let more_start = j.more.len();
        // The chain's sources, as numbered: a join's left side is the
        // chain so far (a comma binds looser than JOIN).
        let src_start = self.names.sources.len();
        let first = self.group(&twj.relation, j)?;
        for join in &twj.joins {
            let (kind, constraint, swap) = match &join.join_operator {
                JoinOperator::Join(c)
                | JoinOperator::Inner(c)
                | JoinOperator::CrossJoin(c)
                | JoinOperator::StraightJoin(c) => (JoinKind::Inner, c, false),
                JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (JoinKind::Left, c, false),
                JoinOperator::Right(c) | JoinOperator::RightOuter(c) => (JoinKind::Left, c, true),
                other => {
                    return Err(SqlError::unsupported(
                        format!("{other:?}")
                            .split('(')
                            .next()
                            .unwrap_or("this join")
                            .to_string(),
                    ));
                }
            };
            if let TableFactor::NestedJoin { .. } = &join.relation {
                match (kind, swap) {
                    (JoinKind::Inner, _) => {
                        let start = self.names.sources.len();
                        self.group(&join.relation, j)?;
                        let cond = condition_over(constraint, self.names, src_start, start, false)?;
                        j.more.push((cond, self.nest));
                    }
                    (_, true) => self.right_group(
                        &join.relation,
                        constraint,
                        (chain_start, more_start, src_start),
                        j,
                    )?,
                    (_, false) => self.left_nest(&join.relation, constraint, src_start, j)?,
                }
                continue;
            }
            let right = factor(&join.relation, self.names, self.scope, self.params, j)?;
            let left_one = self.order.len() - chain_start == 1;
            if swap && !left_one {
                // `a JOIN b … RIGHT JOIN c ON q`: c, then (a JOIN b …)
                // LEFT JOINed on q as one nest.
                let cond = condition_over(constraint, self.names, src_start, right, true)?;
                let members = self.order[chain_start..].to_vec();
                let more = more_start..j.more.len();
                self.new_nest(&members, more, j);
                j.nests.push((members, cond));
                j.kinds.push(JoinKind::Inner);
                j.conds.push(Cond::None);
                j.scope.push(self.nest);
                self.order.insert(chain_start, right);
                *self.outer = true;
                continue;
            }
            let first = match (swap, first) {
                (true, Some(f)) => f,
                // `(a) RIGHT JOIN b`: the group is its one table.
                (true, None) => self.order[chain_start],
                (false, _) => 0,
            };
            let cond = condition_over(constraint, self.names, src_start, right, swap)?;
            *self.outer |= kind == JoinKind::Left;
            if swap {
                // `a RIGHT JOIN b ON c`: b, then a LEFT JOINed on c.
                j.kinds.push(JoinKind::Inner);
                j.conds.push(Cond::None);
                j.scope.push(self.nest);
                j.kinds[first] = JoinKind::Left;
                j.conds[first] = cond;
                self.order.insert(chain_start, right);
            } else {
                j.kinds.push(kind);
                j.conds.push(cond);
                j.scope.push(self.nest);
                self.order.push(right);
            }
        }
        Ok(())
    }

    /// `… LEFT JOIN (group) ON cond` (or USING, NATURAL): the group's
    /// sources as one nest — inside the nest being added, if any (its
    /// members are then the outer nest's too).
    fn left_nest<'q>(
        &mut self,
        f: &'q TableFactor,
        constraint: &'q JoinConstraint,
        src_start: usize,
        j: &mut Joins<'q>,
    ) -> Result<(), SqlError> {
        let n = j.nests.len();
        let before = self.order.len();
        let start = self.names.sources.len();
        let parent = self.nest;
        // Reserved now: nests inside the group number after this one.
        j.nests.push((Vec::new(), Cond::None));
        j.nest_parent.push(parent);
        self.nest = Some(n);
        let added = self.group(f, j);
        self.nest = parent;
        added?;
        let cond = condition_over(constraint, self.names, src_start, start, false)?;
        j.nests[n] = (self.order[before..].to_vec(), cond);
        *self.outer = true;
        Ok(())
    }

    /// `left RIGHT JOIN (group) ON q` (or USING, NATURAL): the group runs
    /// first (flattened, as any inner group), then the left side — the
    /// chain so far, from `chain_start` (sources from `src_start`) — LEFT
    /// JOINed on `q`: one table as any LEFT JOIN, several as a nest (whose
    /// `more` conditions, from `more_start`, go with it).
    fn right_group<'q>(
        &mut self,
        f: &'q TableFactor,
        constraint: &'q JoinConstraint,
        (chain_start, more_start, src_start): (usize, usize, usize),
        j: &mut Joins<'q>,
    ) -> Result<(), SqlError> {
        let left = self.order[chain_start..].to_vec();
        let more_mid = j.more.len();
        let before = self.order.len();
        let start = self.names.sources.len();
        self.group(f, j)?;
        let cond = condition_over(constraint, self.names, src_start, start, true)?;
        let group: Vec<usize> = self.order.drain(before..).collect();
        self.order.splice(chain_start..chain_start, group);
        match left.as_slice() {
            [one] => {
                j.kinds[*one] = JoinKind::Left;
                j.conds[*one] = cond;
            }
            _ => {
                self.new_nest(&left, more_start..more_mid, j);
                j.nests.push((left, cond));
            }
        }
        *self.outer = true;
        Ok(())
    }

    /// Makes `members` (already added, in the nest being added or at the
    /// top level) a new nest there, with the inner-join conditions
    /// `j.more[more]` of that level; a nest among the members moves inside
    /// the new one. The caller pushes the nest's members and ON next.
    fn new_nest(&mut self, members: &[usize], more: std::ops::Range<usize>, j: &mut Joins<'_>) {
        let n = j.nests.len();
        let parent = self.nest;
        j.nest_parent.push(parent);
        for &m in members {
            match j.scope[m] {
                s if s == parent => j.scope[m] = Some(n),
                Some(mut top) => {
                    // The nest holding `m` directly at this level.
                    while let Some(p) = j.nest_parent[top]
                        && Some(p) != parent
                        && p != n
                    {
                        top = p;
                    }
                    j.nest_parent[top] = Some(n);
                }
                // Every member of the chain is at this level or deeper.
                None => {}
            }
        }
        for m in &mut j.more[more] {
            if m.1 == parent {
                m.1 = Some(n);
            }
        }
    }

    /// A table, a derived table, or a parenthesized join (flattened): the
    /// source number of a single source.
    fn group<'q>(
        &mut self,
        f: &'q TableFactor,
        j: &mut Joins<'q>,
    ) -> Result<Option<usize>, SqlError> {
        if let TableFactor::NestedJoin {
            table_with_joins,
            alias,
        } = f
        {
            // MySQL's grammar has no alias for a parenthesized join (only
            // a derived table, a SELECT, takes one): a syntax error there.
            if let Some(alias) = alias {
                return Err(SqlError::syntax(&format!("AS {alias}"), 1));
            }
            self.chain(table_with_joins, j)?;
            return Ok(None);
        }
        let s = factor(f, self.names, self.scope, self.params, j)?;
        j.kinds.push(JoinKind::Inner);
        j.conds.push(Cond::None);
        j.scope.push(self.nest);
        self.order.push(s);
        Ok(Some(s))
    }
}

/// One table or derived table; its source number.
fn factor(
    f: &TableFactor,
    names: &mut Names<'_>,
    scope: &Scope<'_>,
    params: &mut Params,
    j: &mut Joins<'_>,
) -> Result<usize, SqlError> {
    match f {
        TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } if cte(name, scope).is_some() => {
            let found = cte(name, scope).expect("checked by the guard");
            let (def, first_param, seen, id, in_recursion) = match found {
                super::query::CteRef::Working(w) => {
                    let Some(columns) = w.columns.get().cloned() else {
                        return Err(super::query::bad_recursion(&w.name));
                    };
                    w.uses.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let named = alias.as_ref().map_or(&w.name, |a| &a.name.value);
                    j.kinds_sources.push(SourceKind::Working(w.id));
                    return names.add(named.clone(), None, None, columns);
                }
                super::query::CteRef::Def {
                    def,
                    first_param,
                    seen,
                    id,
                    in_recursion,
                    ..
                } => (def, first_param, seen, id, in_recursion),
            };
            // Compiled again for this reference, its `?` numbered as the
            // first time.
            let mut own = Params(first_param);
            let plan = super::query::cte_body(def, id, &seen, scope, &mut own)?;
            let named = alias.as_ref().unwrap_or(&def.alias);
            let mut columns = derived_columns(&plan, &def.alias);
            if alias.is_some() {
                for (c, a) in columns.iter_mut().zip(&named.columns) {
                    c.name = a.name.value.clone();
                }
            }
            check_duplicates(&columns)?;
            // Inside a recursive part its rows may differ per round: not kept.
            j.kinds_sources.push(match in_recursion {
                true => SourceKind::Query(Box::new(plan)),
                false => SourceKind::Cte(id, Box::new(plan)),
            });
            names.add(named.name.value.clone(), None, None, columns)
        }
        TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } => {
            let super::plan::TableRef { db, def } = super::compile::resolve_table(name, scope)?;
            let qualifier = alias
                .as_ref()
                .map_or_else(|| def.name.clone(), |a| a.name.value.clone());
            // An aliased table is named by its alias alone (no `db.`).
            let qualifying_db = alias.is_none().then(|| db.clone());
            let columns = def.columns.clone();
            j.kinds_sources
                .push(SourceKind::Table(super::plan::TableRef {
                    db: db.clone(),
                    def: def.clone(),
                }));
            names.add(qualifier, qualifying_db, Some((db, def)), columns)
        }
        TableFactor::Derived {
            lateral: false,
            subquery,
            alias,
            ..
        } => {
            let Some(alias) = alias else {
                return Err(SqlError::new(
                    1248,
                    "42000",
                    "Every derived table must have its own alias",
                ));
            };
            let plan = super::query::query(subquery, scope, params, None)?;
            let columns = derived_columns(&plan, alias);
            check_duplicates(&columns)?;
            j.kinds_sources.push(SourceKind::Query(Box::new(plan)));
            names.add(alias.name.value.clone(), None, None, columns)
        }
        other => Err(SqlError::unsupported(other)),
    }
}

/// The CTE a one-part table name means, if any.
fn cte<'a>(name: &ast::ObjectName, scope: &Scope<'a>) -> Option<super::query::CteRef<'a>> {
    let [part] = name.0.as_slice() else {
        return None;
    };
    scope.ctes?.find(&part.as_ident()?.value)
}

/// A derived table's columns: the query's, renamed by the alias's list.
fn derived_columns(
    plan: &super::plan::SelectPlan,
    alias: &ast::TableAlias,
) -> Vec<crate::catalog::ColumnDef> {
    let mut columns: Vec<_> = plan
        .items
        .iter()
        .map(|i| super::query::column_def(i.column.name.clone(), i.kind))
        .collect();
    for (c, a) in columns.iter_mut().zip(&alias.columns) {
        c.name = a.name.value.clone();
    }
    columns
}

fn check_duplicates(columns: &[crate::catalog::ColumnDef]) -> Result<(), SqlError> {
    for (i, c) in columns.iter().enumerate() {
        if columns[..i]
            .iter()
            .any(|d| d.name.eq_ignore_ascii_case(&c.name))
        {
            return Err(SqlError::new(
                1060,
                "42S21",
                format!("Duplicate column name '{}'", c.name),
            ));
        }
    }
    Ok(())
}

/// The layout positions of the unmerged columns named `c` in `sources`.
fn positions(sources: &[super::names::NamedSource], c: &str) -> Vec<usize> {
    sources
        .iter()
        .filter_map(|s| {
            s.columns
                .iter()
                .position(|x| x.eq_ignore_ascii_case(c))
                .filter(|&i| !s.merged[i])
                .map(|i| s.offset + i)
        })
        .collect()
}

/// A join condition between the sources `left..start` (the chain so far)
/// and the sources from `start` on (right: one source, or a parenthesized
/// group). USING and NATURAL resolve their columns now, each side having
/// each exactly once (else 1054 or 1052); the copy of the side that is
/// not preserved (the right one, or the left one of a RIGHT JOIN: `swap`)
/// is merged away from `*` and plain names.
fn condition_over<'q>(
    c: &'q JoinConstraint,
    names: &mut Names<'_>,
    left: usize,
    start: usize,
    swap: bool,
) -> Result<Cond<'q>, SqlError> {
    let columns: Vec<String> = match c {
        JoinConstraint::None => return Ok(Cond::None),
        JoinConstraint::On(e) => return Ok(Cond::On(e)),
        JoinConstraint::Using(list) => list
            .iter()
            .map(super::compile::last_name)
            .collect::<Result<_, _>>()?,
        JoinConstraint::Natural => {
            let mut common: Vec<String> = Vec::new();
            for r in &names.sources[start..] {
                for (i, c) in r.columns.iter().enumerate() {
                    if !r.merged[i]
                        && !common.iter().any(|x| x.eq_ignore_ascii_case(c))
                        && !positions(&names.sources[left..start], c).is_empty()
                    {
                        common.push(c.clone());
                    }
                }
            }
            common
        }
    };
    let mut pairs = Vec::new();
    for c in &columns {
        let unknown = || SqlError::unknown_column(c, "from clause");
        let one = |found: Vec<usize>| match found.as_slice() {
            [p] => Ok(*p),
            [] => Err(unknown()),
            _ => Err(SqlError::new(
                1052,
                "23000",
                format!("Column '{c}' in from clause is ambiguous"),
            )),
        };
        let l = one(positions(&names.sources[left..start], c))?;
        let r = one(positions(&names.sources[start..], c))?;
        pairs.push((l, r));
    }
    for &(l, r) in &pairs {
        // The preserved side's column is the one `c` and `*` mean.
        let drop = if swap { l } else { r };
        if let Some(s) = names.source_of(drop) {
            let off = names.sources[s].offset;
            names.sources[s].merged[drop - off] = true;
        }
    }
    Ok(Cond::Using(pairs))
}
