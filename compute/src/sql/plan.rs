//! Compiled statements: what [`super::compile`] makes of sqlparser's AST
//! and the executors run. A plan names its table's definition and the
//! `?` parameters by position, so a prepared statement is compiled once and
//! executed many times; it is compiled again when the table's definition
//! changes (its schema version).

use std::sync::Arc;

use sqlparser::ast::Statement;

use crate::catalog::TableDef;
use crate::types::Collation;

use super::Column;
use super::expr::{CmpOp, Expr};
use super::meta::Kind;

pub(crate) enum Plan {
    Select(Box<SelectPlan>),
    Insert(Box<InsertPlan>),
    Update(Box<UpdatePlan>),
    Delete(Box<DeletePlan>),
    /// Multi-table UPDATE or DELETE.
    Multi(Box<super::multi::MultiPlan>),
    Set(Vec<SetItem>),
    /// Run from the AST itself (DDL, SHOW, USE, transactions); no `?`.
    Other(Box<Statement>),
}

/// A table a plan reads or writes.
#[derive(Clone)]
pub(crate) struct TableRef {
    pub db: String,
    pub def: Arc<TableDef>,
}

pub(crate) struct OutItem {
    pub expr: Expr,
    pub column: Column,
    /// `Kind::Any`: decided by the first non-NULL value.
    pub kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AggFunc {
    CountStar,
    Count,
    Sum,
    Avg,
    Min,
    Max,
    GroupConcat,
}

pub(crate) struct AggSpec {
    pub func: AggFunc,
    pub arg: Option<Expr>,
    pub distinct: bool,
    /// The argument's collation (MIN/MAX of strings).
    pub collation: Collation,
    /// GROUP_CONCAT: the further arguments (concatenated with `arg`), the
    /// ORDER BY, and the separator.
    pub concat: Option<Box<ConcatSpec>>,
}

pub(crate) struct ConcatSpec {
    pub more: Vec<Expr>,
    pub order: Vec<OrderKey>,
    pub separator: Vec<u8>,
}

/// How rows are found: through index `index` (0: primary), with values
/// for a prefix of its columns (`eq`, each column one or several — IN —
/// alternatives) and perhaps a range on the next column.
#[derive(Clone, Debug, Default)]
pub(crate) struct Access {
    pub index: usize,
    pub eq: Vec<Vec<Expr>>,
    pub lower: Option<(Expr, bool)>,
    pub upper: Option<(Expr, bool)>,
    /// The index entries alone answer the query (a secondary index holding
    /// every column it reads: [`super::covering`]).
    pub cover: Option<super::covering::Cover>,
}

impl Access {
    pub(crate) fn is_full_scan(&self) -> bool {
        self.eq.is_empty() && self.lower.is_none() && self.upper.is_none()
    }
}

pub(crate) struct OrderKey {
    pub expr: Expr,
    pub desc: bool,
    pub collation: Collation,
}

pub(crate) struct SelectPlan {
    /// The one table of a plain single-table query (the fast path);
    /// `None` with `sources` for joins, derived tables and subqueries.
    pub from: Option<TableRef>,
    /// Several sources (joins, derived tables, UNION, subqueries): the rows
    /// [`super::join`] assembles. Items and the filter then evaluate over
    /// its row layout.
    pub sources: Option<Box<FromPlan>>,
    pub items: Vec<OutItem>,
    pub filter: Option<Expr>,
    pub access: Access,
    pub aggs: Vec<AggSpec>,
    /// Whether the query aggregates (aggregates or GROUP BY).
    pub grouped: bool,
    pub group_by: Vec<Expr>,
    /// GROUP BY … WITH ROLLUP: after each group, the super-aggregate rows
    /// of the shorter prefixes that end there (expressions that are not
    /// plain columns read group slots: [`super::rollup`]).
    pub rollup: bool,
    pub having: Option<Expr>,
    pub order: Vec<OrderKey>,
    /// The access path yields rows in the ORDER BY's order (reversed if
    /// `Some(true)`), so no sort is needed.
    pub index_order: Option<bool>,
    pub distinct: bool,
    pub limit: Option<Expr>,
    pub offset: Option<Expr>,
    /// FOR UPDATE / FOR SHARE: a locking (current) read.
    pub lock: bool,
    /// SELECT SQL_CALC_FOUND_ROWS: FOUND_ROWS() is then the rows before
    /// LIMIT (every row is read).
    pub calc_found_rows: bool,
}

pub(crate) struct InsertPlan {
    pub table: TableRef,
    /// Target column positions, in the order of each row's values.
    pub columns: Vec<usize>,
    /// `None`: DEFAULT.
    pub rows: Vec<Vec<Option<Expr>>>,
    /// INSERT … SELECT: the query whose rows are inserted (`rows` empty).
    pub select: Option<Box<SelectPlan>>,
    /// IGNORE, REPLACE or ON DUPLICATE KEY UPDATE.
    pub conflict: super::upsert::Conflict,
}

pub(crate) struct UpdatePlan {
    pub table: TableRef,
    pub assignments: Vec<(usize, Expr)>,
    pub filter: Option<Expr>,
    pub access: Access,
    /// ORDER BY: the rows change in this order (and LIMIT takes the first).
    pub order: Vec<OrderKey>,
    pub limit: Option<Expr>,
}

pub(crate) struct DeletePlan {
    pub table: TableRef,
    pub filter: Option<Expr>,
    pub access: Access,
    pub order: Vec<OrderKey>,
    pub limit: Option<Expr>,
}

pub(crate) enum SetTarget {
    System(String),
    User(String),
    /// SET NAMES charset [COLLATE collation].
    Names(String, Option<String>),
}

pub(crate) struct SetItem {
    pub target: SetTarget,
    pub value: Expr,
}

impl Plan {
    /// The tables (definition ids and versions) the plan was compiled
    /// against: a change to any makes it stale.
    pub(crate) fn tables(&self) -> Vec<&TableRef> {
        match self {
            Plan::Select(s) => s.tables(),
            Plan::Insert(i) => {
                let mut v = vec![&i.table];
                v.extend(i.select.iter().flat_map(|s| s.tables()));
                v
            }
            Plan::Update(u) => vec![&u.table],
            Plan::Delete(d) => vec![&d.table],
            Plan::Multi(m) => m.query.tables(),
            Plan::Set(_) | Plan::Other(_) => Vec::new(),
        }
    }
}

impl SelectPlan {
    /// Every table the query reads, subqueries and derived tables included.
    pub(crate) fn tables(&self) -> Vec<&TableRef> {
        let mut out: Vec<&TableRef> = self.from.iter().collect();
        if let Some(f) = &self.sources {
            for s in &f.sources {
                match &s.kind {
                    SourceKind::Table(t) => out.push(t),
                    SourceKind::Query(q) => out.extend(q.tables()),
                    SourceKind::Union(parts) => {
                        out.extend(parts.iter().flat_map(|(_, p)| p.tables()))
                    }
                    SourceKind::Cte(_, q) => out.extend(q.tables()),
                    SourceKind::Recursive(r) => {
                        out.extend(r.parts.iter().flat_map(|(_, p)| p.tables()))
                    }
                    SourceKind::Values(_) | SourceKind::Working(_) => {}
                }
            }
            for sub in &f.subqueries {
                out.extend(sub.plan.tables());
            }
        }
        out
    }

    /// Whether running the query needs a transaction.
    pub(crate) fn reads_tables(&self) -> bool {
        self.from.is_some()
            || self.sources.as_ref().is_some_and(|f| {
                f.subqueries.iter().any(|s| s.plan.reads_tables())
                    || f.sources.iter().any(|s| match &s.kind {
                        SourceKind::Table(_) => true,
                        SourceKind::Query(q) => q.reads_tables(),
                        SourceKind::Union(parts) => parts.iter().any(|(_, p)| p.reads_tables()),
                        SourceKind::Cte(_, q) => q.reads_tables(),
                        SourceKind::Recursive(r) => r.parts.iter().any(|(_, p)| p.reads_tables()),
                        SourceKind::Values(_) | SourceKind::Working(_) => false,
                    })
            })
    }
}

/// The FROM clause of a query that is not a plain single-table read.
///
/// Row layout: every source's columns in FROM order (`Source::offset`),
/// then the `extras`: values from the enclosing query's row (correlated
/// references) and subquery results, each at `width + k`. Expressions of
/// the query index into that layout whatever order the joins run in.
pub(crate) struct FromPlan {
    pub sources: Vec<Source>,
    /// Where the extras start (the sum of the sources' widths).
    pub width: usize,
    pub extras: Vec<Extra>,
    /// The subqueries the `Extra::Subquery` entries name.
    pub subqueries: Vec<Subquery>,
    /// The joins in the order they run.
    pub steps: Vec<Step>,
    /// WHERE conjuncts that read subquery results: applied last.
    pub residual: Option<Expr>,
}

pub(crate) struct Source {
    /// The alias, or the table's name.
    pub name: String,
    pub kind: SourceKind,
    pub offset: usize,
    pub columns: usize,
    /// The column names (EXPLAIN).
    pub names: Vec<String>,
}

pub(crate) enum SourceKind {
    Table(TableRef),
    /// A derived table.
    Query(Box<SelectPlan>),
    /// UNION of queries: `true` for UNION ALL (keep duplicates) before each
    /// part but the first.
    Union(Vec<(bool, SelectPlan)>),
    /// Rows given at compile time (EXPLAIN's answer).
    Values(Vec<Vec<crate::types::Value>>),
    /// A common table expression named `id` (one per definition): it runs
    /// once per statement; later references read its kept rows.
    Cte(u64, Box<SelectPlan>),
    /// A recursive CTE's UNION: its anchors run once, then its recursive
    /// parts again and again over the rows the last round added.
    Recursive(Box<RecursivePlan>),
    /// Inside a recursive part: the rows the recursive CTE `id`'s last
    /// round added (its working table).
    Working(u64),
}

pub(crate) struct RecursivePlan {
    pub id: u64,
    /// The query blocks with whether each keeps duplicates (UNION ALL);
    /// the first `anchors` do not read the CTE, the rest do.
    pub parts: Vec<(bool, SelectPlan)>,
    pub anchors: usize,
}

/// One value of the row beyond the sources.
pub(crate) enum Extra {
    /// A correlated reference: this expression over the enclosing
    /// query's row, fixed while the subquery runs.
    Outer(Expr),
    /// The result of subquery `i` of [`FromPlan::subqueries`].
    Subquery(usize),
    /// The row key of source `i` (a base table), for a multi-table UPDATE
    /// or DELETE; NULL when an outer join found no row.
    Key(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SubqueryTest {
    /// `(SELECT …)`: its one value (NULL without rows; 1242 with several).
    Scalar,
    /// `[NOT] EXISTS`.
    Exists(bool),
    /// `lhs [NOT] IN (SELECT …)`, `lhs op ANY/ALL (SELECT …)`.
    Quantified(CmpOp, bool /* all */, bool /* negated */),
    /// `(a, b) [NOT] IN (SELECT x, y …)`: the left row is `Subquery::row`.
    RowIn(bool /* negated */),
}

pub(crate) struct Subquery {
    pub test: SubqueryTest,
    /// The left-hand side of IN / ANY / ALL, over the enclosing row.
    pub lhs: Option<Expr>,
    pub collation: Collation,
    /// `RowIn`: the left row's values, each with its comparison collation.
    pub row: Vec<(Expr, Collation)>,
    pub plan: Box<SelectPlan>,
    /// Whether it reads the enclosing row (run again for each row).
    pub correlated: bool,
    /// Whether WHERE reads it (computed before filtering).
    pub in_where: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JoinKind {
    /// The first source, or an inner join.
    Inner,
    /// LEFT JOIN: a row of NULLs when nothing matches.
    Left,
}

/// How a step finds its source's rows for a partial row.
#[derive(Clone, Debug)]
pub(crate) enum Method {
    /// Read once through the access path (constants only), then every row
    /// is a candidate (a nested loop over the buffered rows).
    Scan,
    /// Read once, hashed on `build` (the source's columns); each partial
    /// row probes with `probe` (over the bound sources).
    Hash {
        build: Vec<usize>,
        probe: Vec<Expr>,
        /// The build columns' types (how both sides' keys are encoded).
        types: Vec<crate::types::ColumnType>,
    },
    /// The access path read again for every partial row: its key
    /// expressions read the bound sources (index nested-loop join).
    Lookup,
    /// A nest: these steps (its member sources') run over the partial
    /// rows, then this step's ON picks the matches of each partial row (a
    /// row of NULLs when none: the nest is an outer join's inner side).
    Nest(Vec<Step>),
}

#[derive(Clone, Debug)]
pub(crate) struct Step {
    pub source: usize,
    pub kind: JoinKind,
    pub access: Access,
    pub method: Method,
    /// Conjuncts over this source alone (and constants): checked on each
    /// row read, before the join.
    pub pushed: Option<Expr>,
    /// The join condition, over the whole row (a LEFT JOIN's ON).
    pub on: Option<Expr>,
    /// WHERE conjuncts that can be checked once this source is joined
    /// (after a LEFT JOIN's NULL row).
    pub after: Option<Expr>,
    /// The estimate of rows each partial row meets (EXPLAIN's `rows`).
    pub rows: u64,
    /// The indexes that could have served (EXPLAIN's `possible_keys`).
    pub possible: Vec<usize>,
    /// The index gives the query's order (EXPLAIN; first step only).
    pub ordered: bool,
}
