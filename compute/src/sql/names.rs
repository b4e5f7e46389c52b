//! Column names of a query with several sources (joins, derived tables,
//! subqueries): which source a name (`c`, `t.c`, `db.t.c`) means, and its
//! position in the query's row layout (see [`super::plan::FromPlan`]).
//!
//! A name no source of this query has is looked up in the enclosing
//! query's names (a correlated reference) and becomes one of this query's
//! extras; a name two sources have is ambiguous (1052) unless USING merged
//! them. Extras are numbered as they are found, so every position is final
//! the moment it is handed out.

use std::cell::RefCell;
use std::sync::Arc;

use crate::catalog::{ColumnDef, IndexDef, TableDef};
use crate::types::Collation;

use super::SqlError;
use super::compile::Scope;
use super::expr::Expr;
use super::plan::{Extra, Subquery};

/// One source's names.
pub(crate) struct NamedSource {
    /// The alias, or the table's name.
    pub qualifier: String,
    /// The database of a base table (for `db.t.c`).
    pub db: Option<String>,
    /// The base table and its database, if the source is one.
    pub table: Option<(String, Arc<TableDef>)>,
    pub columns: Vec<String>,
    pub offset: usize,
    /// Columns a USING join merged into an earlier source's: skipped by
    /// unqualified names and `*`.
    pub merged: Vec<bool>,
}

pub(crate) struct Names<'a> {
    pub sources: Vec<NamedSource>,
    /// Every source's columns in layout order, as one table (for the
    /// static kinds of expressions).
    pub joined: TableDef,
    pub scope: &'a Scope<'a>,
    pub outer: Option<&'a Names<'a>>,
    pub extras: RefCell<Vec<Extra>>,
    pub subqueries: RefCell<Vec<Subquery>>,
    /// The select list's aliases, which HAVING and ORDER BY may name
    /// where no source has the name.
    pub aliases: RefCell<Vec<(String, Expr)>>,
}

impl<'a> Names<'a> {
    /// A table definition with no columns (the start of `joined`).
    pub(crate) fn empty_table() -> TableDef {
        TableDef {
            db_id: 0,
            name: String::new(),
            id: 0,
            schema_version: 0,
            created_lsn: Default::default(),
            columns: Vec::new(),
            primary: IndexDef::unplaced_primary(),
            secondary: Vec::new(),
        }
    }

    pub(crate) fn new(scope: &'a Scope<'a>, outer: Option<&'a Names<'a>>) -> Names<'a> {
        Names {
            sources: Vec::new(),
            joined: Self::empty_table(),
            scope,
            outer,
            extras: RefCell::new(Vec::new()),
            subqueries: RefCell::new(Vec::new()),
            aliases: RefCell::new(Vec::new()),
        }
    }

    /// Adds a source; 1066 if its qualifier is taken.
    pub(crate) fn add(
        &mut self,
        qualifier: String,
        db: Option<String>,
        table: Option<(String, Arc<TableDef>)>,
        columns: Vec<ColumnDef>,
    ) -> Result<usize, SqlError> {
        if self
            .sources
            .iter()
            .any(|s| s.qualifier.eq_ignore_ascii_case(&qualifier) && s.db == db)
        {
            return Err(SqlError::new(
                1066,
                "42000",
                format!("Not unique table/alias: '{qualifier}'"),
            ));
        }
        let offset = self.width();
        self.sources.push(NamedSource {
            qualifier,
            db,
            table,
            columns: columns.iter().map(|c| c.name.clone()).collect(),
            offset,
            merged: vec![false; columns.len()],
        });
        self.joined.columns.extend(columns);
        Ok(self.sources.len() - 1)
    }

    /// Where the extras start.
    pub(crate) fn width(&self) -> usize {
        self.joined.columns.len()
    }

    /// The source a layout position belongs to.
    pub(crate) fn source_of(&self, col: usize) -> Option<usize> {
        self.sources
            .iter()
            .position(|s| col >= s.offset && col < s.offset + s.columns.len())
    }

    fn column(&self, pos: usize) -> Expr {
        Expr::Column(pos, self.joined.columns[pos].ty.collation())
    }

    /// The sources a qualifier (`t` or `db.t`) names.
    fn qualified(&self, db: Option<&str>, t: &str) -> Vec<&NamedSource> {
        self.sources
            .iter()
            .filter(|s| {
                s.qualifier.eq_ignore_ascii_case(t)
                    && db.is_none_or(|d| s.db.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(d)))
            })
            .collect()
    }

    /// The position of `c` in `s`, if it has it.
    fn find(s: &NamedSource, c: &str) -> Option<usize> {
        s.columns
            .iter()
            .position(|x| x.eq_ignore_ascii_case(c))
            .map(|i| s.offset + i)
    }

    /// A column name in this query, else in the enclosing ones; `Ok(None)`
    /// if no query has it.
    pub(crate) fn resolve(&self, parts: &[&str], clause: &str) -> Result<Option<Expr>, SqlError> {
        let shown = parts.join(".");
        let found: Vec<usize> = match parts {
            [c] => self
                .sources
                .iter()
                .filter_map(|s| Self::find(s, c).filter(|&p| !s.merged[p - s.offset]))
                .collect(),
            [t, c] => self
                .qualified(None, t)
                .into_iter()
                .filter_map(|s| Self::find(s, c))
                .collect(),
            [d, t, c] => self
                .qualified(Some(d), t)
                .into_iter()
                .filter_map(|s| Self::find(s, c))
                .collect(),
            _ => return Err(SqlError::unknown_column(&shown, clause)),
        };
        match found.as_slice() {
            [p] => return Ok(Some(self.column(*p))),
            [] => {
                if let [c] = parts
                    && let Some((_, e)) = self
                        .aliases
                        .borrow()
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(c))
                {
                    return Ok(Some(e.clone()));
                }
            }
            _ => {
                return Err(SqlError::new(
                    1052,
                    "23000",
                    format!("Column '{shown}' in {clause} is ambiguous"),
                ));
            }
        }
        let Some(outer) = self.outer else {
            return Ok(None);
        };
        let Some(e) = outer.resolve(parts, clause)? else {
            return Ok(None);
        };
        Ok(Some(self.outer_ref(e)))
    }

    /// An extra holding `e` (over the enclosing row).
    fn outer_ref(&self, e: Expr) -> Expr {
        let coll = match &e {
            Expr::Column(_, c) => *c,
            _ => Collation::Binary,
        };
        let mut extras = self.extras.borrow_mut();
        let k = extras
            .iter()
            .position(|x| matches!(x, Extra::Outer(o) if *o == e))
            .unwrap_or_else(|| {
                extras.push(Extra::Outer(e));
                extras.len() - 1
            });
        Expr::Column(self.width() + k, coll)
    }

    /// Registers a subquery; its result's position.
    pub(crate) fn add_subquery(&self, sub: Subquery) -> Expr {
        let mut subs = self.subqueries.borrow_mut();
        subs.push(sub);
        let mut extras = self.extras.borrow_mut();
        extras.push(Extra::Subquery(subs.len() - 1));
        Expr::Column(self.width() + extras.len() - 1, Collation::Binary)
    }

    /// The positions `*` (or `t.*`) expands to.
    pub(crate) fn wildcard(
        &self,
        qualifier: Option<(&str, Option<&str>)>,
    ) -> Result<Vec<usize>, SqlError> {
        let mut out = Vec::new();
        let mut any = false;
        for s in &self.sources {
            if let Some((t, db)) = qualifier {
                let db_ok =
                    db.is_none_or(|d| s.db.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(d)));
                if !s.qualifier.eq_ignore_ascii_case(t) || !db_ok {
                    continue;
                }
                any = true;
                out.extend(s.offset..s.offset + s.columns.len());
            } else {
                any = true;
                out.extend(
                    (0..s.columns.len())
                        .filter(|&i| !s.merged[i])
                        .map(|i| s.offset + i),
                );
            }
        }
        match (any, qualifier) {
            (true, _) => Ok(out),
            (false, Some((t, _))) => {
                Err(SqlError::new(1051, "42S02", format!("Unknown table '{t}'")))
            }
            (false, None) => Err(SqlError::new(1096, "HY000", "No tables used")),
        }
    }
}
