//! SELECT and UNION into a [`SelectPlan`]: the FROM clause's sources and
//! joins ([`super::from`]), the select list, WHERE, GROUP BY (expressions,
//! output aliases, positions), HAVING, ORDER BY (expressions, aliases,
//! positions), LIMIT.
//!
//! A plain read of one table becomes the single-table plan
//! (`SelectPlan::from`, the access path chosen by [`super::access`]); any
//! other query gets a [`FromPlan`] whose joins [`super::planner`] orders.
//! UNION becomes a query over one source (the union), so its ORDER BY and
//! LIMIT run like any other query's.

use sqlparser::ast::{
    self, GroupByExpr, LimitClause, OrderByKind, OrderBySort, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, SetOperator, SetQuantifier, Value as AstValue,
};

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, OnceLock};

use crate::catalog::ColumnDef;
use crate::types::{Collation, ColumnType, IntWidth};

use super::SqlError;
use super::compile::{ExprCompiler, Params, Scope, collation_of, kind_of, limit_expr};
use super::expr::Expr;
use super::meta::{self, Kind};
use super::names::Names;
use super::plan::{AggSpec, FromPlan, OrderKey, OutItem, SelectPlan, Source, SourceKind};

/// A query, perhaps inside another (`outer`: the enclosing query's names,
/// for correlated references).
pub(crate) fn query(
    q: &ast::Query,
    scope: &Scope<'_>,
    params: &mut Params,
    outer: Option<&Names<'_>>,
) -> Result<SelectPlan, SqlError> {
    if q.fetch.is_some() {
        return Err(SqlError::unsupported("FETCH"));
    }
    if let Some(with) = &q.with {
        return with_ctes(q, with, scope, params, outer);
    }
    query_body(q, scope, params, outer)
}

/// A query without its WITH clause.
fn query_body(
    q: &ast::Query,
    scope: &Scope<'_>,
    params: &mut Params,
    outer: Option<&Names<'_>>,
) -> Result<SelectPlan, SqlError> {
    // NOWAIT / SKIP LOCKED would change what a lock conflict does; run
    // as a plain locking read they would wait instead: refused.
    if let Some(nb) = q.locks.iter().find_map(|l| l.nonblock.as_ref()) {
        return Err(SqlError::unsupported(format!("FOR UPDATE {nb}")));
    }
    let tail = Tail {
        order: q.order_by.as_ref(),
        limit: q.limit_clause.as_ref(),
        lock: !q.locks.is_empty(),
    };
    match q.body.as_ref() {
        SetExpr::Select(s) => select(s, &tail, scope, params, outer),
        SetExpr::Query(inner) if tail.is_empty() => query(inner, scope, params, outer),
        body @ (SetExpr::SetOperation { .. } | SetExpr::Query(_)) => {
            union(body, &tail, scope, params, outer)
        }
        other => Err(SqlError::unsupported(format!("this query form ({other})"))),
    }
}

/// The common table expressions of a WITH clause: each is compiled as a
/// derived table wherever it is named, seeing the CTEs defined before it
/// and those of enclosing queries; every reference carries the CTE's id,
/// so it runs once per statement (`SourceKind::Cte`).
pub(crate) struct Ctes<'a> {
    list: &'a [ast::Cte],
    /// Where each one's `?` placeholders are numbered from (a CTE is
    /// compiled again for every reference; its `?` keep their numbers).
    params: Vec<usize>,
    /// Each one's id (unique in the process).
    ids: Vec<u64>,
    /// WITH RECURSIVE: a CTE may read itself.
    recursive: bool,
    /// How many of `list` are in view.
    visible: usize,
    parent: Option<&'a Ctes<'a>>,
    /// While a recursive CTE's parts compile: its working table.
    working: Option<Arc<Working>>,
}

/// A recursive CTE's working table, as its recursive parts see it.
pub(crate) struct Working {
    /// Its position in the WITH list.
    index: usize,
    pub id: u64,
    pub name: String,
    /// Its columns: the first anchor's (unset until it has compiled).
    pub columns: OnceLock<Vec<ColumnDef>>,
    /// References compiled so far (counted by `super::from`).
    pub uses: AtomicUsize,
}

/// What a table name that is a CTE's means.
pub(crate) enum CteRef<'a> {
    /// A CTE: its definition, the first number of its `?`, the CTEs its
    /// body sees, its id, whether it may read itself, and whether it is
    /// named inside a recursive CTE's part (its rows may change per round,
    /// so they are not kept).
    Def {
        def: &'a ast::Cte,
        first_param: usize,
        seen: Ctes<'a>,
        id: u64,
        recursive: bool,
        in_recursion: bool,
    },
    /// A recursive CTE read by its own recursive part.
    Working(Arc<Working>),
}

impl<'a> Ctes<'a> {
    /// What the CTE `name` in view is.
    pub(crate) fn find(&self, name: &str) -> Option<CteRef<'a>> {
        let named = |c: &ast::Cte| c.alias.name.value.eq_ignore_ascii_case(name);
        if let Some(w) = &self.working
            && named(&self.list[w.index])
        {
            return Some(CteRef::Working(w.clone()));
        }
        let own = self.list[..self.visible].iter().position(named);
        match own {
            Some(i) => Some(CteRef::Def {
                def: &self.list[i],
                first_param: self.params[i],
                seen: Ctes {
                    list: self.list,
                    params: self.params.clone(),
                    ids: self.ids.clone(),
                    recursive: self.recursive,
                    visible: i,
                    parent: self.parent,
                    working: None,
                },
                id: self.ids[i],
                recursive: self.recursive,
                in_recursion: self.in_recursion(),
            }),
            None => self.parent.and_then(|p| p.find(name)).map(|r| match r {
                CteRef::Def {
                    def,
                    first_param,
                    seen,
                    id,
                    recursive,
                    ..
                } => CteRef::Def {
                    def,
                    first_param,
                    seen,
                    id,
                    recursive,
                    in_recursion: self.in_recursion(),
                },
                w => w,
            }),
        }
    }

    /// Whether a recursive CTE's part is compiling here or around.
    fn in_recursion(&self) -> bool {
        self.working.is_some() || self.parent.is_some_and(|p| p.in_recursion())
    }
}

/// Ids for CTE definitions.
static NEXT_CTE: AtomicU64 = AtomicU64::new(1);

/// Error 3573: a recursive CTE's blocks in the wrong shape.
pub(crate) fn bad_recursion(name: &str) -> SqlError {
    SqlError::new(
        3573,
        "HY000",
        format!(
            "Recursive Common Table Expression '{name}' should have one or more \
             non-recursive query blocks followed by one or more recursive ones"
        ),
    )
}

/// The plan of CTE `def` named in a query (`first_param`: where its `?`
/// are numbered from). Under WITH RECURSIVE a body that reads itself is a
/// UNION of anchors, then recursive parts (`SourceKind::Recursive`).
pub(crate) fn cte_body(
    def: &ast::Cte,
    id: u64,
    seen: &Ctes<'_>,
    scope: &Scope<'_>,
    params: &mut Params,
) -> Result<SelectPlan, SqlError> {
    let first_param = params.0;
    let plain = |ctes: &Ctes<'_>, params: &mut Params| {
        let inner = Scope {
            catalog: scope.catalog,
            db: scope.db,
            ctes: Some(ctes),
        };
        params.0 = first_param;
        query(&def.query, &inner, params, None)
    };
    if !seen.recursive {
        return plain(seen, params);
    }
    let name = def.alias.name.value.clone();
    let working = Arc::new(Working {
        index: seen.visible,
        id,
        name: name.clone(),
        columns: OnceLock::new(),
        uses: AtomicUsize::new(0),
    });
    let ctes = Ctes {
        list: seen.list,
        params: seen.params.clone(),
        ids: seen.ids.clone(),
        recursive: true,
        visible: seen.visible,
        parent: seen.parent,
        working: Some(working.clone()),
    };
    let inner = Scope {
        catalog: scope.catalog,
        db: scope.db,
        ctes: Some(&ctes),
    };
    let q = &def.query;
    let mut bodies = Vec::new();
    let is_union = matches!(q.body.as_ref(), SetExpr::SetOperation { .. });
    if is_union {
        union_parts(&q.body, &mut bodies)?;
    }
    if !is_union || q.with.is_some() {
        let plan = plain(&ctes, params)?;
        return match working.uses.load(AtomicOrdering::Relaxed) {
            0 => Ok(plan),
            _ => Err(bad_recursion(&name)),
        };
    }
    let mut parts = Vec::with_capacity(bodies.len());
    let mut anchors = 0;
    for (all, b) in bodies {
        let before = working.uses.load(AtomicOrdering::Relaxed);
        let p = part(b, &inner, params, None)?;
        let reads_itself = working.uses.load(AtomicOrdering::Relaxed) > before;
        match (reads_itself, anchors == parts.len()) {
            (false, true) => {
                anchors += 1;
                if anchors == 1 {
                    let _ = working.columns.set(cte_columns(&p, &def.alias));
                }
            }
            (false, false) => return Err(bad_recursion(&name)),
            (true, _) => {
                if p.grouped {
                    return Err(SqlError::new(
                        3575,
                        "HY000",
                        format!(
                            "Recursive Common Table Expression '{name}' can contain neither \
                             aggregation nor window functions in recursive query block"
                        ),
                    ));
                }
                if p.distinct || !p.order.is_empty() || p.limit.is_some() {
                    return Err(SqlError::unsupported(
                        "aggregation, DISTINCT, ORDER BY or LIMIT in a recursive query block",
                    ));
                }
            }
        }
        parts.push((all, p));
    }
    let tail_empty = q.order_by.is_none() && q.limit_clause.is_none() && q.locks.is_empty();
    if anchors == parts.len() {
        return plain(seen, params);
    }
    if !tail_empty {
        return Err(SqlError::unsupported(
            "ORDER BY or LIMIT on a recursive common table expression",
        ));
    }
    let Some(columns) = working.columns.get().cloned() else {
        return Err(bad_recursion(&name));
    };
    if parts.iter().any(|(_, p)| p.items.len() != columns.len()) {
        return Err(SqlError::new(
            1222,
            "21000",
            "The used SELECT statements have a different number of columns",
        ));
    }
    let source = SourceKind::Recursive(Box::new(super::plan::RecursivePlan { id, parts, anchors }));
    wrap(source, name, columns, &Tail::none(), scope, params)
}

/// A CTE's columns: its first query block's, renamed by the alias's list.
fn cte_columns(p: &SelectPlan, alias: &ast::TableAlias) -> Vec<ColumnDef> {
    p.items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let name = alias
                .columns
                .get(i)
                .map_or_else(|| item.column.name.clone(), |c| c.name.value.clone());
            column_def(name, item.kind)
        })
        .collect()
}

/// `WITH c1 AS (…), c2 AS (…) <query>`: every body is compiled once here
/// (checking it and numbering its `?` in the text's order), then the query.
fn with_ctes(
    q: &ast::Query,
    with: &ast::With,
    scope: &Scope<'_>,
    params: &mut Params,
    outer: Option<&Names<'_>>,
) -> Result<SelectPlan, SqlError> {
    let list = &with.cte_tables;
    let mut ctes = Ctes {
        list,
        params: Vec::with_capacity(list.len()),
        ids: list
            .iter()
            .map(|_| NEXT_CTE.fetch_add(1, AtomicOrdering::Relaxed))
            .collect(),
        recursive: with.recursive,
        visible: 0,
        parent: scope.ctes,
        working: None,
    };
    for (i, c) in list.iter().enumerate() {
        let name = &c.alias.name.value;
        if list[..i]
            .iter()
            .any(|d| d.alias.name.value.eq_ignore_ascii_case(name))
        {
            return Err(SqlError::new(
                1066,
                "42000",
                format!("Not unique table/alias: '{name}'"),
            ));
        }
        ctes.params.push(params.0);
        ctes.visible = i;
        let body = cte_body(c, ctes.ids[i], &ctes, scope, params)?;
        if !c.alias.columns.is_empty() && c.alias.columns.len() != body.items.len() {
            return Err(SqlError::new(
                1353,
                "HY000",
                "In definition of view, derived table or common table expression, \
                 SELECT list and column names list have different column counts",
            ));
        }
    }
    ctes.visible = list.len();
    let scope = Scope {
        catalog: scope.catalog,
        db: scope.db,
        ctes: Some(&ctes),
    };
    query_body(q, &scope, params, outer)
}

/// What follows a query's body.
pub(crate) struct Tail<'q> {
    order: Option<&'q ast::OrderBy>,
    limit: Option<&'q LimitClause>,
    lock: bool,
}

impl Tail<'_> {
    pub(crate) fn none() -> Tail<'static> {
        Tail {
            order: None,
            limit: None,
            lock: false,
        }
    }

    fn is_empty(&self) -> bool {
        self.order.is_none() && self.limit.is_none() && !self.lock
    }
}

/// One part of a UNION: a query body without ORDER BY or LIMIT of its own.
fn part(
    body: &SetExpr,
    scope: &Scope<'_>,
    params: &mut Params,
    outer: Option<&Names<'_>>,
) -> Result<SelectPlan, SqlError> {
    let none = Tail {
        order: None,
        limit: None,
        lock: false,
    };
    match body {
        SetExpr::Select(s)
            if s.select_modifiers
                .as_ref()
                .is_some_and(|m| m.sql_calc_found_rows) =>
        {
            Err(SqlError::unsupported("SQL_CALC_FOUND_ROWS in a UNION"))
        }
        SetExpr::Select(s) => select(s, &none, scope, params, outer),
        SetExpr::Query(q) => query(q, scope, params, outer),
        other => Err(SqlError::unsupported(format!("this query form ({other})"))),
    }
}

/// The parts of a (left-deep) UNION, each with whether it keeps
/// duplicates (UNION ALL).
fn union_parts<'b>(body: &'b SetExpr, out: &mut Vec<(bool, &'b SetExpr)>) -> Result<(), SqlError> {
    match body {
        SetExpr::SetOperation {
            op: SetOperator::Union,
            set_quantifier,
            left,
            right,
        } => {
            union_parts(left, out)?;
            let all = match set_quantifier {
                SetQuantifier::All => true,
                SetQuantifier::Distinct | SetQuantifier::None => false,
                other => return Err(SqlError::unsupported(format!("UNION {other}"))),
            };
            out.push((all, right));
            Ok(())
        }
        SetExpr::SetOperation { op, .. } => Err(SqlError::unsupported(op)),
        other => {
            out.push((true, other));
            Ok(())
        }
    }
}

fn union(
    body: &SetExpr,
    tail: &Tail<'_>,
    scope: &Scope<'_>,
    params: &mut Params,
    outer: Option<&Names<'_>>,
) -> Result<SelectPlan, SqlError> {
    let mut bodies = Vec::new();
    union_parts(body, &mut bodies)?;
    let mut parts = Vec::with_capacity(bodies.len());
    for (all, b) in bodies {
        parts.push((all, part(b, scope, params, outer)?));
    }
    let first = &parts[0].1;
    let n = first.items.len();
    if parts.iter().any(|(_, p)| p.items.len() != n) {
        return Err(SqlError::new(
            1222,
            "21000",
            "The used SELECT statements have a different number of columns",
        ));
    }
    let columns: Vec<ColumnDef> = (0..n)
        .map(|i| {
            let kinds: Vec<Kind> = parts.iter().map(|(_, p)| p.items[i].kind).collect();
            let name = first.items[i].column.name.clone();
            let kind = unify(&kinds);
            column_def(name, kind)
        })
        .collect();
    let source = SourceKind::Union(parts);
    wrap(source, "union".into(), columns, tail, scope, params)
}

/// The kind of a column several queries give.
fn unify(kinds: &[Kind]) -> Kind {
    let mut it = kinds.iter().copied().filter(|k| *k != Kind::Null);
    let Some(first) = it.next() else {
        return Kind::Null;
    };
    it.fold(first, |a, b| match (a, b) {
        _ if a == b => a,
        (Kind::Int | Kind::UInt, Kind::Int | Kind::UInt) => Kind::Int,
        (Kind::Decimal(x), Kind::Decimal(y)) => Kind::Decimal(x.max(y)),
        (Kind::Int | Kind::UInt, Kind::Decimal(s)) | (Kind::Decimal(s), Kind::Int | Kind::UInt) => {
            Kind::Decimal(s)
        }
        (Kind::Int | Kind::UInt | Kind::Decimal(_) | Kind::Double, Kind::Double)
        | (Kind::Double, Kind::Int | Kind::UInt | Kind::Decimal(_)) => Kind::Double,
        _ => Kind::Any,
    })
}

/// A column of a derived table (or union) for values of `kind`.
pub(crate) fn column_def(name: String, kind: Kind) -> ColumnDef {
    let ty = match kind {
        Kind::Int => ColumnType::Int {
            width: IntWidth::Big,
            unsigned: false,
        },
        Kind::UInt => ColumnType::Int {
            width: IntWidth::Big,
            unsigned: true,
        },
        Kind::Decimal(s) => ColumnType::Decimal {
            precision: 38,
            scale: s,
        },
        Kind::Double => ColumnType::Double,
        Kind::Date => ColumnType::Date,
        Kind::DateTime => ColumnType::DateTime,
        Kind::Text | Kind::Null | Kind::Any => ColumnType::Text {
            max_bytes: u32::MAX,
            collation: Collation::Utf8mb4GeneralCi,
        },
    };
    ColumnDef {
        name,
        ty,
        nullable: true,
        default: None,
        auto_increment: false,
    }
}

/// `SELECT * FROM (source) ORDER BY … LIMIT …`: a query over one source
/// made at compile time (a union's rows, EXPLAIN's answer).
pub(crate) fn wrap(
    kind: SourceKind,
    name: String,
    columns: Vec<ColumnDef>,
    tail: &Tail<'_>,
    scope: &Scope<'_>,
    params: &mut Params,
) -> Result<SelectPlan, SqlError> {
    let mut names = Names::new(scope, None);
    names.add(name.clone(), None, None, columns.clone())?;
    let items: Vec<OutItem> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let kind = meta::column_kind(c);
            OutItem {
                expr: Expr::Column(i, c.ty.collation()),
                column: meta::expr_column(&c.name, kind),
                kind,
            }
        })
        .collect();
    let mut cx = compiler(&names, params, "order clause", None);
    let order = order_by(tail.order, &mut cx, &items)?;
    let (limit, offset) = limits(tail.limit, params)?;
    let width = names.width();
    let sources = vec![Source {
        name,
        kind,
        offset: 0,
        columns: width,
        names: columns.iter().map(|c| c.name.clone()).collect(),
    }];
    let from = FromPlan {
        sources,
        width,
        extras: Vec::new(),
        subqueries: Vec::new(),
        steps: super::planner::single(),
        residual: None,
    };
    Ok(SelectPlan {
        from: None,
        sources: Some(Box::new(from)),
        items,
        filter: None,
        access: Default::default(),
        aggs: Vec::new(),
        grouped: false,
        group_by: Vec::new(),
        rollup: false,
        having: None,
        order,
        index_order: None,
        distinct: false,
        limit,
        offset,
        lock: tail.lock,
        calc_found_rows: false,
    })
}

/// An expression compiler over a query's names.
pub(crate) fn compiler<'c>(
    names: &'c Names<'c>,
    params: &'c mut Params,
    clause: &'static str,
    aggs: Option<&'c mut Vec<AggSpec>>,
) -> ExprCompiler<'c> {
    ExprCompiler {
        table: Some(&names.joined),
        alias: None,
        clause,
        params,
        aggs,
        names: Some(names),
    }
}

fn select(
    s: &ast::Select,
    tail: &Tail<'_>,
    scope: &Scope<'_>,
    params: &mut Params,
    outer: Option<&Names<'_>>,
) -> Result<SelectPlan, SqlError> {
    let mut names = Names::new(scope, outer);
    let joins = super::from::sources(&s.from, &mut names, scope, params)?;
    let mut aggs = Vec::new();
    let items = projection(&s.projection, &names, params, &mut aggs)?;
    let mut cx = compiler(&names, params, "on clause", None);
    let joins = joins.compile(&mut cx)?;
    cx.clause = "where clause";
    let filter = s.selection.as_ref().map(|e| cx.expr(e)).transpose()?;
    cx.clause = "group statement";
    let (group_by, rollup) = group_by(&s.group_by, &mut cx, &items)?;
    cx.clause = "having clause";
    cx.aggs = Some(&mut aggs);
    if s.having.is_some() || tail.order.is_some() {
        *names.aliases.borrow_mut() = items
            .iter()
            .map(|i| (i.column.name.clone(), i.expr.clone()))
            .collect();
    }
    let having = s
        .having
        .as_ref()
        .map(|e| having_expr(e, &mut cx, &items))
        .transpose()?;
    cx.clause = "order clause";
    let order = order_by(tail.order, &mut cx, &items)?;
    let (limit, offset) = limits(tail.limit, params)?;
    let grouped = !aggs.is_empty() || !group_by.is_empty();
    let distinct = match &s.distinct {
        None | Some(ast::Distinct::All) => false,
        Some(ast::Distinct::Distinct) => true,
        Some(other) => return Err(SqlError::unsupported(other)),
    };
    let mut plan = SelectPlan {
        from: None,
        sources: None,
        items,
        filter,
        access: Default::default(),
        aggs,
        grouped,
        group_by,
        rollup,
        having,
        order,
        index_order: None,
        distinct,
        limit,
        offset,
        lock: tail.lock,
        calc_found_rows: s
            .select_modifiers
            .as_ref()
            .is_some_and(|m| m.sql_calc_found_rows),
    };
    // Rolled-up expressions and GROUPING() read the group slots.
    super::rollup::bind(&mut plan)?;
    let simple = outer.is_none()
        && names.extras.borrow().is_empty()
        && names.sources.len() == 1
        && joins.is_plain();
    if simple && let Some((db, t)) = &names.sources[0].table {
        let tref = super::plan::TableRef {
            db: db.clone(),
            def: t.clone(),
        };
        super::access::choose_for_select(&mut plan, t);
        plan.from = Some(tref);
        return Ok(plan);
    }
    if names.sources.is_empty() && names.extras.borrow().is_empty() {
        return Ok(plan);
    }
    let from = super::planner::plan(&mut plan, names, joins)?;
    plan.sources = Some(Box::new(from));
    Ok(plan)
}

pub(crate) fn limits(
    limit: Option<&LimitClause>,
    params: &mut Params,
) -> Result<(Option<Expr>, Option<Expr>), SqlError> {
    Ok(match limit {
        None => (None, None),
        Some(LimitClause::LimitOffset {
            limit,
            offset,
            limit_by,
        }) if limit_by.is_empty() => {
            let l = limit.as_ref().map(|e| limit_expr(e, params)).transpose()?;
            let o = offset
                .as_ref()
                .map(|o| limit_expr(&o.value, params))
                .transpose()?;
            (l, o)
        }
        Some(LimitClause::OffsetCommaLimit { offset, limit }) => {
            let o = limit_expr(offset, params)?;
            (Some(limit_expr(limit, params)?), Some(o))
        }
        Some(other) => return Err(SqlError::unsupported(other)),
    })
}

fn projection(
    list: &[SelectItem],
    names: &Names<'_>,
    params: &mut Params,
    aggs: &mut Vec<AggSpec>,
) -> Result<Vec<OutItem>, SqlError> {
    let mut items = Vec::new();
    for item in list {
        let (e, name) = match item {
            SelectItem::Wildcard(_) => {
                for p in names.wildcard(None)? {
                    items.push(column_item(names, p, None));
                }
                continue;
            }
            SelectItem::QualifiedWildcard(kind, _) => {
                let SelectItemQualifiedWildcardKind::ObjectName(name) = kind else {
                    return Err(SqlError::unsupported(item));
                };
                let parts: Vec<&str> = name
                    .0
                    .iter()
                    .filter_map(|p| p.as_ident().map(|i| i.value.as_str()))
                    .collect();
                let q = match parts.as_slice() {
                    [t] => (*t, None),
                    [d, t] => (*t, Some(*d)),
                    _ => return Err(SqlError::unsupported(name)),
                };
                for p in names.wildcard(Some(q))? {
                    items.push(column_item(names, p, None));
                }
                continue;
            }
            SelectItem::UnnamedExpr(e) => (e, unnamed(e)),
            SelectItem::ExprWithAlias { expr, alias } => (expr, alias.value.clone()),
            other => return Err(SqlError::unsupported(other)),
        };
        let mut cx = compiler(names, params, "field list", Some(aggs));
        let expr = cx.expr(e)?;
        match expr {
            Expr::Column(p, _) if p < names.width() => {
                items.push(column_item(names, p, Some(name)));
            }
            expr => {
                let kind = kind_of(&expr, Some(&names.joined), aggs);
                let column = meta::expr_column(&name, kind);
                items.push(OutItem { expr, column, kind });
            }
        }
    }
    Ok(items)
}

/// The output item of layout column `p`.
fn column_item(names: &Names<'_>, p: usize, name: Option<String>) -> OutItem {
    let c = &names.joined.columns[p];
    let name = name.unwrap_or_else(|| c.name.clone());
    let expr = Expr::Column(p, c.ty.collation());
    let source = names.source_of(p).map(|s| &names.sources[s]);
    match source {
        Some(s) if s.table.is_some() => {
            let (db, t) = s.table.as_ref().expect("checked");
            let mut column = meta::table_column(db, t, p - s.offset, &name);
            column.table = s.qualifier.clone();
            OutItem {
                expr,
                column,
                kind: meta::column_kind(c),
            }
        }
        _ => {
            let kind = match c.ty {
                ColumnType::Text { .. } => Kind::Any,
                _ => meta::column_kind(c),
            };
            OutItem {
                expr,
                column: meta::expr_column(&name, kind),
                kind,
            }
        }
    }
}

/// The name MySQL gives an unaliased expression: its text (a column: the
/// name as written).
fn unnamed(e: &ast::Expr) -> String {
    match e {
        ast::Expr::Identifier(id) => id.value.clone(),
        ast::Expr::CompoundIdentifier(ids) => ids.last().map_or(String::new(), |i| {
            if ids.first().is_some_and(|f| f.value.starts_with("@@")) {
                e.to_string()
            } else {
                i.value.clone()
            }
        }),
        ast::Expr::Value(v) => match &v.value {
            AstValue::SingleQuotedString(s) | AstValue::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        other => other.to_string(),
    }
}

/// The GROUP BY expressions, and whether WITH ROLLUP follows them.
fn group_by(
    g: &GroupByExpr,
    cx: &mut ExprCompiler<'_>,
    items: &[OutItem],
) -> Result<(Vec<Expr>, bool), SqlError> {
    let (list, rollup) = match g {
        GroupByExpr::Expressions(list, mods) if mods.is_empty() => (list, false),
        GroupByExpr::Expressions(list, mods)
            if matches!(mods.as_slice(), [ast::GroupByWithModifier::Rollup]) =>
        {
            (list, true)
        }
        other => return Err(SqlError::unsupported(other)),
    };
    let exprs = list
        .iter()
        .map(|e| {
            let x = output_ref(e, cx, items, "group statement")?;
            if x.as_ref().is_some_and(has_agg) {
                return Err(SqlError::new(
                    1056,
                    "42000",
                    format!("Can't group on '{e}'"),
                ));
            }
            x.map_or_else(|| cx.expr(e), Ok)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((exprs, rollup))
}

fn has_agg(e: &Expr) -> bool {
    let mut found = false;
    e.walk(&mut |x| found |= matches!(x, Expr::Agg(_)));
    found
}

/// HAVING may name output aliases.
fn having_expr(
    e: &ast::Expr,
    cx: &mut ExprCompiler<'_>,
    items: &[OutItem],
) -> Result<Expr, SqlError> {
    if let ast::Expr::Identifier(id) = e
        && cx.names.is_some_and(|n| {
            n.resolve(&[id.value.as_str()], "having clause")
                .ok()
                .flatten()
                .is_none()
        })
        && let Some(item) = items
            .iter()
            .find(|i| i.column.name.eq_ignore_ascii_case(&id.value))
    {
        return Ok(item.expr.clone());
    }
    cx.expr(e)
}

fn order_by(
    ob: Option<&ast::OrderBy>,
    cx: &mut ExprCompiler<'_>,
    items: &[OutItem],
) -> Result<Vec<OrderKey>, SqlError> {
    let Some(ob) = ob else {
        return Ok(Vec::new());
    };
    let OrderByKind::Expressions(list) = &ob.kind else {
        return Err(SqlError::unsupported("ORDER BY ALL"));
    };
    let mut keys = Vec::new();
    for o in list {
        let desc = match &o.options.sort {
            None | Some(OrderBySort::Asc) => false,
            Some(OrderBySort::Desc) => true,
            Some(_) => return Err(SqlError::unsupported("ORDER BY … USING")),
        };
        let expr = match output_ref(&o.expr, cx, items, "order clause")? {
            Some(x) => x,
            None => cx.expr(&o.expr)?,
        };
        let collation = collation_of(&[&expr]);
        keys.push(OrderKey {
            expr,
            desc,
            collation,
        });
    }
    Ok(keys)
}

/// An ORDER BY / GROUP BY term that names an output column: a position
/// (`ORDER BY 2`) or an output alias that is not a column of the sources.
fn output_ref(
    e: &ast::Expr,
    cx: &mut ExprCompiler<'_>,
    items: &[OutItem],
    clause: &str,
) -> Result<Option<Expr>, SqlError> {
    if let ast::Expr::Value(v) = e
        && let AstValue::Number(n, _) = &v.value
    {
        let pos: usize = n.parse().unwrap_or(0);
        return match items.get(pos.wrapping_sub(1)) {
            Some(item) => Ok(Some(item.expr.clone())),
            None => Err(SqlError::unknown_column(n, clause)),
        };
    }
    if let ast::Expr::Identifier(id) = e {
        let by_alias = items
            .iter()
            .find(|i| i.column.name.eq_ignore_ascii_case(&id.value));
        let is_column = match cx.names {
            Some(n) => n
                .sources
                .iter()
                .any(|s| s.columns.iter().any(|c| c.eq_ignore_ascii_case(&id.value))),
            None => cx.table.and_then(|t| t.column_index(&id.value)).is_some(),
        };
        if let (Some(item), false) = (by_alias, is_column) {
            return Ok(Some(item.expr.clone()));
        }
    }
    Ok(None)
}

/// `GROUP_CONCAT([DISTINCT] e, … [ORDER BY …] [SEPARATOR 's'])`, and
/// `COUNT(DISTINCT e, …)` (the number of distinct tuples without NULL).
pub(crate) fn group_concat(cx: &mut ExprCompiler<'_>, f: &ast::Function) -> Result<Expr, SqlError> {
    let ast::FunctionArguments::List(list) = &f.args else {
        return Err(SqlError::unsupported("GROUP_CONCAT without arguments"));
    };
    let distinct = matches!(
        list.duplicate_treatment,
        Some(ast::DuplicateTreatment::Distinct)
    );
    let count = super::compile::last_name(&f.name)?.eq_ignore_ascii_case("COUNT");
    if count && !distinct {
        return Err(SqlError::syntax(&f.to_string(), 1));
    }
    let mut inner = ExprCompiler {
        table: cx.table,
        alias: cx.alias,
        clause: cx.clause,
        params: cx.params,
        aggs: None,
        names: cx.names,
    };
    let mut args = Vec::new();
    for a in &list.args {
        match a {
            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => args.push(inner.expr(e)?),
            other => return Err(SqlError::unsupported(format!("GROUP_CONCAT({other})"))),
        }
    }
    let mut separator = b",".to_vec();
    let mut order = Vec::new();
    for c in &list.clauses {
        match c {
            ast::FunctionArgumentClause::Separator(v) => match &v.value {
                AstValue::SingleQuotedString(s) | AstValue::DoubleQuotedString(s) => {
                    separator = s.as_bytes().to_vec()
                }
                other => return Err(SqlError::unsupported(format!("SEPARATOR {other}"))),
            },
            ast::FunctionArgumentClause::OrderBy(list) => {
                for o in list {
                    let desc = matches!(o.options.sort, Some(OrderBySort::Desc));
                    let position = match &o.expr {
                        ast::Expr::Value(v) => match &v.value {
                            AstValue::Number(n, _) => Some(n),
                            _ => None,
                        },
                        _ => None,
                    };
                    let expr = match position {
                        Some(n) => {
                            let pos: usize = n.parse().unwrap_or(0);
                            args.get(pos.wrapping_sub(1))
                                .cloned()
                                .ok_or_else(|| SqlError::unknown_column(n, "order clause"))?
                        }
                        None => inner.expr(&o.expr)?,
                    };
                    let collation = collation_of(&[&expr]);
                    order.push(OrderKey {
                        expr,
                        desc,
                        collation,
                    });
                }
            }
            other => return Err(SqlError::unsupported(format!("GROUP_CONCAT … {other}"))),
        }
    }
    let mut args = args.into_iter();
    let Some(first) = args.next() else {
        return Err(SqlError::unsupported("GROUP_CONCAT()"));
    };
    let collation = collation_of(&[&first]);
    let Some(aggs) = cx.aggs.as_deref_mut() else {
        return Err(SqlError::new(
            1111,
            "HY000",
            "Invalid use of group function",
        ));
    };
    aggs.push(AggSpec {
        func: match count {
            true => super::plan::AggFunc::Count,
            false => super::plan::AggFunc::GroupConcat,
        },
        arg: Some(first),
        distinct,
        collation,
        concat: Some(Box::new(super::plan::ConcatSpec {
            more: args.collect(),
            order,
            separator,
        })),
    });
    Ok(Expr::Agg(aggs.len() - 1))
}
