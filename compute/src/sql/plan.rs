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
use super::expr::Expr;
use super::meta::Kind;

pub(crate) enum Plan {
    Select(Box<SelectPlan>),
    Insert(Box<InsertPlan>),
    Update(Box<UpdatePlan>),
    Delete(Box<DeletePlan>),
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
}

pub(crate) struct AggSpec {
    pub func: AggFunc,
    pub arg: Option<Expr>,
    pub distinct: bool,
    /// The argument's collation (MIN/MAX of strings).
    pub collation: Collation,
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
    pub from: Option<TableRef>,
    pub items: Vec<OutItem>,
    pub filter: Option<Expr>,
    pub access: Access,
    pub aggs: Vec<AggSpec>,
    /// Whether the query aggregates (aggregates or GROUP BY).
    pub grouped: bool,
    pub group_by: Vec<Expr>,
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
}

pub(crate) struct InsertPlan {
    pub table: TableRef,
    /// Target column positions, in the order of each row's values.
    pub columns: Vec<usize>,
    /// `None`: DEFAULT.
    pub rows: Vec<Vec<Option<Expr>>>,
    /// IGNORE, REPLACE or ON DUPLICATE KEY UPDATE.
    pub conflict: super::upsert::Conflict,
}

pub(crate) struct UpdatePlan {
    pub table: TableRef,
    pub assignments: Vec<(usize, Expr)>,
    pub filter: Option<Expr>,
    pub access: Access,
    pub limit: Option<Expr>,
}

pub(crate) struct DeletePlan {
    pub table: TableRef,
    pub filter: Option<Expr>,
    pub access: Access,
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
    pub(crate) fn table(&self) -> Option<&TableRef> {
        match self {
            Plan::Select(s) => s.from.as_ref(),
            Plan::Insert(i) => Some(&i.table),
            Plan::Update(u) => Some(&u.table),
            Plan::Delete(d) => Some(&d.table),
            Plan::Set(_) | Plan::Other(_) => None,
        }
    }
}
