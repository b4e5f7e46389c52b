//! EXPLAIN for SELECT: one row per table in the order the joins run, with
//! the access path the planner chose, in MySQL 8's columns (id,
//! select_type, table, partitions, type, possible_keys, key, key_len, ref,
//! rows, filtered, Extra). Derived tables, UNION parts and subqueries get
//! rows of their own with their own ids, as MySQL numbers them.
//!
//! The answer is made at compile time and returned as a query over a
//! constant source, so EXPLAIN runs through the ordinary SELECT path.

use crate::catalog::TableDef;
use crate::types::{ColumnType, IntWidth, Value};

use super::SqlError;
use super::access::conjuncts;
use super::compile::{Params, Scope};
use super::expr::Expr;
use super::meta::Kind;
use super::plan::{Access, FromPlan, Method, SelectPlan, SourceKind, Step};
use super::query::{Tail, column_def, wrap};

const COLUMNS: [&str; 12] = [
    "id",
    "select_type",
    "table",
    "partitions",
    "type",
    "possible_keys",
    "key",
    "key_len",
    "ref",
    "rows",
    "filtered",
    "Extra",
];

/// `EXPLAIN <query>` as a plan.
pub(crate) fn explain(
    q: &sqlparser::ast::Query,
    scope: &Scope<'_>,
    params: &mut Params,
) -> Result<SelectPlan, SqlError> {
    let plan = super::query::query(q, scope, params, None)?;
    let mut out = Explainer {
        rows: Vec::new(),
        next_id: 1,
    };
    out.query(&plan, "SIMPLE");
    let columns = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let kind = if matches!(i, 0 | 9) {
                Kind::Int
            } else {
                Kind::Text
            };
            column_def((*n).to_string(), kind)
        })
        .collect();
    let tail = Tail::none();
    wrap(
        SourceKind::Values(out.rows),
        "explain".into(),
        columns,
        &tail,
        scope,
        params,
    )
}

struct Explainer {
    rows: Vec<Vec<Value>>,
    next_id: i64,
}

/// One table's line before it becomes a row.
struct Line {
    table: String,
    ty: &'static str,
    possible: Vec<String>,
    key: Option<String>,
    key_len: Option<u32>,
    reference: Option<String>,
    rows: u64,
    extra: Vec<&'static str>,
}

fn text(s: &str) -> Value {
    Value::Bytes(s.as_bytes().to_vec())
}

fn opt(s: Option<String>) -> Value {
    s.map_or(Value::Null, |s| text(&s))
}

impl Explainer {
    fn push(&mut self, id: i64, select_type: &str, l: Line) {
        let join = |v: &[String]| (!v.is_empty()).then(|| v.join(","));
        let extra = (!l.extra.is_empty()).then(|| l.extra.join("; "));
        self.rows.push(vec![
            Value::Int(id),
            text(select_type),
            text(&l.table),
            Value::Null,
            text(l.ty),
            opt(join(&l.possible)),
            opt(l.key),
            opt(l.key_len.map(|n| n.to_string())),
            opt(l.reference),
            Value::Int(i64::try_from(l.rows).unwrap_or(i64::MAX)),
            text("100.00"),
            opt(extra),
        ]);
    }

    /// The rows of one query; `select_type` for a plain query.
    fn query(&mut self, plan: &SelectPlan, select_type: &str) {
        let id = self.next_id;
        self.next_id += 1;
        let nested = plan.sources.as_ref().is_some_and(|f| {
            !f.subqueries.is_empty()
                || f.sources
                    .iter()
                    .any(|s| !matches!(s.kind, SourceKind::Table(_)))
        });
        let select_type = match (select_type, nested) {
            ("SIMPLE", true) => "PRIMARY",
            (s, _) => s,
        };
        if let Some(t) = &plan.from {
            let line = single(plan, &t.def);
            self.push(id, select_type, line);
            return;
        }
        let Some(from) = &plan.sources else {
            self.push_none(id, select_type);
            return;
        };
        if let [s] = from.sources.as_slice()
            && let SourceKind::Union(parts) = &s.kind
        {
            self.union(parts, plan);
            return;
        }
        let mut later = Vec::new();
        // A nest shows as its members, in the order they run.
        fn flatten<'s>(steps: &'s [Step], out: &mut Vec<&'s Step>) {
            for s in steps {
                match &s.method {
                    Method::Nest(inner) => flatten(inner, out),
                    _ => out.push(s),
                }
            }
        }
        let mut flat: Vec<&Step> = Vec::new();
        flatten(&from.steps, &mut flat);
        for (i, step) in flat.into_iter().enumerate() {
            let mut line = step_line(from, step);
            if i == 0 {
                line.extra.extend(sort_extra(plan));
            }
            if let SourceKind::Query(q) | SourceKind::Cte(_, q) = &from.sources[step.source].kind {
                let derived = self.next_id + later.len() as i64;
                line.table = format!("<derived{derived}>");
                later.push(q.as_ref());
            }
            self.push(id, select_type, line);
        }
        if from.steps.is_empty() {
            self.push_none(id, select_type);
        } else if from.residual.is_some()
            && let Some(last) = self.rows.last_mut()
        {
            let extra = match &last[11] {
                Value::Bytes(b) => format!("Using where; {}", String::from_utf8_lossy(b)),
                _ => "Using where".to_string(),
            };
            if !extra.starts_with("Using where; Using where") {
                last[11] = text(extra.trim_end_matches("; "));
            }
        }
        for q in later {
            self.query(q, "DERIVED");
        }
        for sub in &from.subqueries {
            let kind = if sub.correlated {
                "DEPENDENT SUBQUERY"
            } else {
                "SUBQUERY"
            };
            self.query(&sub.plan, kind);
        }
    }

    /// A query without tables.
    fn push_none(&mut self, id: i64, select_type: &str) {
        self.rows.push(bare_row(
            Value::Int(id),
            select_type,
            Value::Null,
            Value::Null,
            "No tables used",
        ));
    }

    fn union(&mut self, parts: &[(bool, SelectPlan)], plan: &SelectPlan) {
        self.next_id -= 1;
        let mut ids = Vec::new();
        for (i, (_, p)) in parts.iter().enumerate() {
            ids.push(self.next_id.to_string());
            self.query(p, if i == 0 { "PRIMARY" } else { "UNION" });
        }
        let distinct = parts.iter().skip(1).any(|(all, _)| !all);
        if distinct || !plan.order.is_empty() {
            let mut extra = vec!["Using temporary"];
            if !plan.order.is_empty() {
                extra.push("Using filesort");
            }
            self.rows.push(bare_row(
                Value::Null,
                "UNION RESULT",
                text(&format!("<union{}>", ids.join(","))),
                text("ALL"),
                &extra.join("; "),
            ));
        }
    }
}

/// A row naming no index: NULL but for these columns.
fn bare_row(id: Value, select_type: &str, table: Value, ty: Value, extra: &str) -> Vec<Value> {
    let mut row = vec![Value::Null; COLUMNS.len()];
    row[0] = id;
    row[1] = text(select_type);
    row[2] = table;
    row[4] = ty;
    row[11] = text(extra);
    row
}

fn sort_extra(plan: &SelectPlan) -> Vec<&'static str> {
    let mut extra = Vec::new();
    if !plan.group_by.is_empty() {
        extra.push("Using temporary");
    }
    if plan.distinct && plan.group_by.is_empty() && !plan.items.is_empty() {
        extra.push("Using temporary");
    }
    if !plan.order.is_empty() && plan.index_order.is_none() {
        extra.push("Using filesort");
    }
    extra
}

/// The line of a single-table plan.
fn single(plan: &SelectPlan, t: &TableDef) -> Line {
    let mut list = Vec::new();
    if let Some(f) = &plan.filter {
        conjuncts(f, &mut list);
    }
    let (_, possible) = super::access::choose_at(t, &list, 0, &Expr::is_constant);
    let mut line = access_line(
        t,
        &t.name,
        &plan.access,
        &possible,
        plan.index_order.is_some(),
        |_| None,
    );
    line.rows = super::planner::estimate(t, &plan.access);
    if list.len() > used_parts(&plan.access) || (line.ty == "range" && !list.is_empty()) {
        line.extra.push("Using where");
    }
    if plan.access.cover.is_some() {
        line.extra.push("Using index");
    }
    line.extra.extend(sort_extra(plan));
    line
}

/// How many conjuncts an access path consumes (at most).
fn used_parts(a: &Access) -> usize {
    a.eq.len() + usize::from(a.lower.is_some()) + usize::from(a.upper.is_some())
}

fn count(e: &Option<Expr>) -> usize {
    let mut list = Vec::new();
    if let Some(e) = e {
        conjuncts(e, &mut list);
    }
    list.len()
}

fn step_line(from: &FromPlan, step: &Step) -> Line {
    let src = &from.sources[step.source];
    let SourceKind::Table(t) = &src.kind else {
        let mut extra = Vec::new();
        if step.pushed.is_some() || step.on.is_some() || step.after.is_some() {
            extra.push("Using where");
        }
        if matches!(step.method, Method::Hash { .. }) || (step.source != from.steps[0].source) {
            extra.push("Using join buffer (hash join)");
        }
        return Line {
            table: src.name.clone(),
            ty: "ALL",
            possible: Vec::new(),
            key: None,
            key_len: None,
            reference: None,
            rows: step.rows,
            extra,
        };
    };
    let name_of = |e: &Expr| -> Option<String> {
        let Expr::Column(i, _) = e else {
            return None;
        };
        let s = from
            .sources
            .iter()
            .find(|s| *i >= s.offset && *i < s.offset + s.columns)?;
        let SourceKind::Table(st) = &s.kind else {
            return Some(format!("{}.{}", s.name, s.names.get(i - s.offset)?));
        };
        let col = &st.def.columns.get(i - s.offset)?.name;
        Some(format!("{}.{}.{}", st.db, s.name, col))
    };
    let mut line = access_line(
        &t.def,
        &src.name,
        &step.access,
        &step.possible,
        step.ordered,
        name_of,
    );
    line.rows = step.rows;
    let conds = count(&step.pushed) + count(&step.on) + count(&step.after);
    if conds > used_parts(&step.access) || (line.ty == "range" && conds > 0) {
        line.extra.push("Using where");
    }
    if step.access.cover.is_some() {
        line.extra.push("Using index");
    }
    let first = from.steps.first().is_some_and(|f| f.source == step.source);
    if !first && !matches!(step.method, Method::Lookup) {
        line.extra.push("Using join buffer (hash join)");
    }
    line
}

/// The columns an access path decides.
fn access_line(
    t: &TableDef,
    name: &str,
    a: &Access,
    possible: &[usize],
    ordered: bool,
    name_of: impl Fn(&Expr) -> Option<String>,
) -> Line {
    let idx = super::access::index_def(t, a.index);
    let index_name = |n: usize| super::access::index_def(t, n).name.clone();
    let possible: Vec<String> = possible.iter().map(|&n| index_name(n)).collect();
    let points = a.eq.iter().all(|alts| alts.len() == 1);
    let ranged = a.lower.is_some() || a.upper.is_some();
    let constant = a.eq.iter().flatten().all(Expr::is_constant);
    let full = a.eq.len() == idx.columns.len() && idx.unique;
    let ty = if a.is_full_scan() {
        // A whole index read in its order, or a covering one.
        if (ordered && !t.has_hidden_key()) || a.cover.is_some() {
            "index"
        } else {
            "ALL"
        }
    } else if !points || ranged {
        "range"
    } else if full && constant {
        "const"
    } else if full {
        "eq_ref"
    } else {
        "ref"
    };
    let used = match ty {
        "ALL" => 0,
        "index" => idx.columns.len(),
        _ => a.eq.len() + usize::from(ranged),
    };
    let key_len = (used > 0).then(|| {
        idx.columns[..used.min(idx.columns.len())]
            .iter()
            .map(|&c| key_bytes(&t.columns[c].ty) + u32::from(t.columns[c].nullable))
            .sum()
    });
    let reference = (matches!(ty, "const" | "eq_ref" | "ref")).then(|| {
        a.eq.iter()
            .map(|alts| match alts.first() {
                Some(e) if e.is_constant() => "const".to_string(),
                Some(e) => name_of(e).unwrap_or_else(|| "func".into()),
                None => "const".into(),
            })
            .collect::<Vec<_>>()
            .join(",")
    });
    Line {
        table: name.to_string(),
        ty,
        possible,
        key: (ty != "ALL").then(|| idx.name.clone()),
        key_len,
        reference,
        rows: 0,
        extra: Vec::new(),
    }
}

/// A key part's length as MySQL's `key_len` counts it (utf8mb4: 4 bytes
/// a character, 2 more for a variable length).
pub(crate) fn key_bytes(ty: &ColumnType) -> u32 {
    match ty {
        ColumnType::Int { width, .. } => match width {
            IntWidth::Tiny => 1,
            IntWidth::Small => 2,
            IntWidth::Medium => 3,
            IntWidth::Int => 4,
            IntWidth::Big => 8,
        },
        ColumnType::Boolean => 1,
        ColumnType::Double => 8,
        ColumnType::Decimal { precision, scale } => {
            let digits =
                |d: u8| u32::from(d / 9) * 4 + [0, 1, 1, 2, 2, 3, 3, 4, 4][usize::from(d % 9)];
            digits(precision.saturating_sub(*scale)) + digits(*scale)
        }
        ColumnType::Char { max_chars, .. } => max_chars * 4,
        ColumnType::VarChar { max_chars, .. } => max_chars * 4 + 2,
        ColumnType::Text { .. } | ColumnType::Blob { .. } => 3072,
        ColumnType::Date => 3,
        ColumnType::DateTime => 5,
        ColumnType::Timestamp => 4,
    }
}
