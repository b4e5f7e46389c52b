//! One client's session: the current database, variables, the open
//! transaction and prepared statements; the [`crate::mysql::Handler`] the
//! protocol calls.
//!
//! Transactions, as InnoDB's:
//! - autocommit (the default): a statement outside BEGIN runs in its own
//!   transaction, committed when it succeeds (commit also waits until what
//!   it read is durable) and rolled back when it fails;
//! - BEGIN / START TRANSACTION, or autocommit=0: the transaction stays open
//!   until COMMIT or ROLLBACK; a failing statement undoes only its own
//!   changes, except a deadlock (1213), which rolls back the whole
//!   transaction;
//! - DDL, BEGIN and `SET autocommit=1` commit the open transaction first.
//!
//! Prepared statements are parsed and compiled once; a plan is compiled
//! again only when its table's definition changed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlparser::ast::{Statement, Use};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::engine::Engine;
use crate::txn::Txn;
use crate::types::Value;

use super::compile::{self, Scope};
use super::expr::{Ctx, Env, StmtEnv, Warning};
use super::information_schema::is_virtual;
use super::plan::{Plan, SetItem, SetTarget};
use super::process::{Process, Processes, interrupted};
use super::{Column, Output, Prepared, SqlError, autoparam, ddl, dml, select, show, stats, vars};

/// Makes a [`Session`] per connection; they share one process list.
pub struct SessionFactory {
    engine: Engine,
    processes: Arc<Processes>,
}

impl SessionFactory {
    pub fn new(engine: Engine) -> SessionFactory {
        SessionFactory {
            engine,
            processes: Arc::new(Processes::default()),
        }
    }
}

impl crate::mysql::HandlerFactory for SessionFactory {
    type H = Session;

    fn make(&self, connection_id: u32) -> Session {
        Session::with_processes(self.engine.clone(), connection_id, self.processes.clone())
    }
}

/// What statements read of the session.
struct State {
    connection_id: u32,
    db: Option<String>,
    vars: BTreeMap<String, Value>,
    user_vars: HashMap<String, Value>,
    last_insert_id: u64,
    /// The running statement's clock and reports.
    stmt: StmtEnv,
    /// The last statement's conditions (SHOW WARNINGS), and their count
    /// (which goes on past the ones kept).
    warnings: Vec<Warning>,
    warning_count: usize,
    /// ROW_COUNT() and FOUND_ROWS() for the next statement.
    row_count: i64,
    found_rows: u64,
}

impl State {
    fn env<'a>(&'a self, params: &'a [Value]) -> Env<'a> {
        Env {
            params,
            db: self.db.as_deref(),
            connection_id: self.connection_id,
            last_insert_id: self.last_insert_id,
            sys_vars: &self.vars,
            user_vars: &self.user_vars,
            stmt: &self.stmt,
            catalog: None,
        }
    }

    /// What a finished statement leaves for the next: its warnings (an
    /// error is one too), ROW_COUNT(), FOUND_ROWS(), LAST_INSERT_ID(n), and
    /// the OK packet's warning count.
    fn finish(&mut self, out: &mut Result<Output, SqlError>, diagnostic: bool, tableless: bool) {
        let (mut warnings, mut count) = self.stmt.take_warnings();
        if let Some(id) = self.stmt.insert_id_set() {
            self.last_insert_id = id;
        }
        let keep = diagnostic || (tableless && count == 0 && out.is_ok());
        match out {
            Ok(Output::Ok {
                affected_rows,
                warnings: shown,
                ..
            }) => {
                self.row_count = i64::try_from(*affected_rows).unwrap_or(i64::MAX);
                *shown = u16::try_from(count).unwrap_or(u16::MAX);
            }
            Ok(Output::Rows { rows, .. }) => {
                self.row_count = -1;
                self.found_rows = self.stmt.calc_found_rows().unwrap_or(rows.len() as u64);
            }
            Err(e) => {
                self.row_count = -1;
                count += 1;
                warnings.push(Warning {
                    level: "Error",
                    code: e.code,
                    message: e.message.clone(),
                });
            }
        }
        if keep {
            return;
        }
        self.warnings = warnings;
        self.warning_count = count;
        let errors = self.warnings.iter().filter(|w| w.level == "Error").count();
        for (name, n) in [("warning_count", count), ("error_count", errors)] {
            let v = Value::UInt(n as u64);
            match self.vars.get_mut(name) {
                Some(slot) => *slot = v,
                None => {
                    self.vars.insert(name.to_string(), v);
                }
            }
        }
    }

    fn autocommit(&self) -> bool {
        !matches!(self.vars.get("autocommit"), Some(Value::Int(0)))
    }

    /// `innodb_lock_wait_timeout`, read at every statement as MySQL reads
    /// it at every wait (a SET inside a transaction applies to its next
    /// statement); at its default, the server's own (finer than seconds).
    fn lock_wait_timeout(&self, server: Duration) -> Duration {
        match self.vars.get("innodb_lock_wait_timeout") {
            Some(Value::Int(s)) if *s != whole_seconds(server) => {
                Duration::from_secs(u64::try_from(*s).unwrap_or(1))
            }
            _ => server,
        }
    }
}

/// The variables a session starts with: [`vars::defaults`], with the
/// server's lock wait.
fn session_defaults(engine: &Engine) -> BTreeMap<String, Value> {
    let mut vars = vars::defaults();
    let wait = whole_seconds(engine.lock_wait_timeout());
    vars.insert("innodb_lock_wait_timeout".into(), Value::Int(wait));
    vars
}

/// A lock wait as `innodb_lock_wait_timeout` shows it: whole seconds,
/// rounded up, at least 1.
fn whole_seconds(d: Duration) -> i64 {
    i64::try_from(d.as_millis().div_ceil(1000)).map_or(i64::MAX, |s| s.max(1))
}

struct Stmt {
    text: Arc<str>,
    ast: Statement,
    plan: Arc<Plan>,
    params: u16,
}

/// A text INSERT's template, compiled (`autoparam`).
struct CachedInsert {
    /// The current database it was compiled in.
    db: Option<String>,
    plan: Arc<Plan>,
}

/// Templates kept per session; past this many the cache starts over.
const CACHED_INSERTS: usize = 64;

/// One client's session: current database, variables, open transaction,
/// prepared statements.
pub struct Session {
    engine: Engine,
    state: State,
    txn: Option<Txn>,
    /// Inside BEGIN … COMMIT (whatever autocommit says).
    explicit: bool,
    prepared: HashMap<u32, Stmt>,
    next_stmt: u32,
    /// Text INSERTs' compiled templates, by template.
    inserts: HashMap<Box<str>, CachedInsert>,
    processes: Arc<Processes>,
    process: Arc<Process>,
    /// The running statement's token (KILL QUERY cancels it).
    cancel: tokio_util::sync::CancellationToken,
    /// Rows changed per table by the open transaction's statements,
    /// reported to the statistics when it commits (dropped on rollback).
    changes: Vec<(Arc<crate::catalog::TableDef>, u64)>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.processes.unregister(&self.process);
    }
}

impl Session {
    /// A session with a process list of its own.
    pub fn new(engine: Engine, connection_id: u32) -> Session {
        Session::with_processes(engine, connection_id, Arc::new(Processes::default()))
    }

    /// A session registered in `processes` (SHOW PROCESSLIST, KILL).
    pub fn with_processes(
        engine: Engine,
        connection_id: u32,
        processes: Arc<Processes>,
    ) -> Session {
        let process = processes.register(connection_id);
        let vars = session_defaults(&engine);
        Session {
            engine,
            state: State {
                connection_id,
                db: None,
                vars,
                user_vars: HashMap::new(),
                last_insert_id: 0,
                stmt: StmtEnv::starting(0, 0),
                warnings: Vec::new(),
                warning_count: 0,
                row_count: 0,
                found_rows: 0,
            },
            txn: None,
            explicit: false,
            prepared: HashMap::new(),
            next_stmt: 1,
            inserts: HashMap::new(),
            processes,
            process,
            cancel: tokio_util::sync::CancellationToken::new(),
            changes: Vec::new(),
        }
    }

    /// The current database.
    pub fn database(&self) -> Option<&str> {
        self.state.db.as_deref()
    }

    pub fn in_transaction(&self) -> bool {
        self.txn.is_some()
    }

    pub fn autocommit(&self) -> bool {
        self.state.autocommit()
    }

    /// COM_QUERY: runs every statement of `sql`, answering with the last.
    pub async fn query(&mut self, sql: &str) -> Result<Output, SqlError> {
        if is_consistent_snapshot(sql) {
            return self.begin().await;
        }
        self.processes.questions.fetch_add(1, Ordering::Relaxed);
        self.cancel = self.process.begin_statement(Arc::from(sql))?;
        let result = self.query_all(sql).await;
        self.process.end_statement();
        result
    }

    async fn query_all(&mut self, sql: &str) -> Result<Output, SqlError> {
        if show::is_show(sql)
            && let Some(r) = show::run_text(sql, &self.engine.catalog(), self.state.db.as_deref())
        {
            return r;
        }
        if let Some(shape) = autoparam::insert_shape(sql)
            && let Some(plan) = self.insert_plan(&shape.template)
        {
            let own_txn = self.txn.is_none() && !self.explicit && self.state.autocommit();
            match self.run(plan, &shape.params).await {
                // Compiled before a DDL it then waited for: the ordinary
                // path compiles and runs it again.
                Err(e) if e.code == 1412 && own_txn => {
                    self.inserts.remove(shape.template.as_str());
                }
                other => return other,
            }
        }
        let stmts = parse(sql).map_err(|e| self.failed(e))?;
        let mut last = None;
        for stmt in &stmts {
            last = Some(self.compile_and_run(stmt).await?);
        }
        last.ok_or_else(|| SqlError::new(1065, "42000", "Query was empty"))
    }

    /// Compiles and runs one statement. A statement in its own transaction
    /// that met a table changed by DDL since it was compiled (1412: the
    /// ALTER it waited for rebuilt the table) is compiled and run once
    /// more, as MySQL, which holds the statement until the DDL is done.
    async fn compile_and_run(&mut self, stmt: &Statement) -> Result<Output, SqlError> {
        let plan = self.compile(stmt).map_err(|e| self.failed(e))?;
        let own_txn = self.txn.is_none() && !self.explicit && self.state.autocommit();
        match self.run(Arc::new(plan), &[]).await {
            Err(e) if e.code == 1412 && own_txn => {
                let plan = self.compile(stmt).map_err(|e| self.failed(e))?;
                self.run(Arc::new(plan), &[]).await
            }
            other => other,
        }
    }

    /// The compiled plan of a text INSERT's template, compiled now if the
    /// cache has none for the current database or its table changed.
    /// `None` if it does not parse or compile: the ordinary path then
    /// reports the error against the statement as sent.
    fn insert_plan(&mut self, template: &str) -> Option<Arc<Plan>> {
        if let Some(c) = self.inserts.get(template)
            && c.db == self.state.db
            && compile::is_current(&c.plan, &self.engine.catalog())
        {
            return Some(c.plan.clone());
        }
        let stmts = Parser::parse_sql(&MySqlDialect {}, template).ok()?;
        let [stmt] = stmts.as_slice() else {
            return None;
        };
        let plan = Arc::new(self.compile(stmt).ok()?);
        if self.inserts.len() >= CACHED_INSERTS {
            self.inserts.clear();
        }
        let cached = CachedInsert {
            db: self.state.db.clone(),
            plan: plan.clone(),
        };
        self.inserts.insert(template.into(), cached);
        Some(plan)
    }

    /// COM_STMT_PREPARE.
    pub async fn prepare(&mut self, sql: &str) -> Result<Prepared, SqlError> {
        let mut stmts = parse(sql).map_err(|e| self.failed(e))?;
        if stmts.len() != 1 {
            return Err(self.failed(SqlError::syntax(sql, 1)));
        }
        let ast = stmts.pop().expect("one statement");
        let params = count_params(sql)?;
        let plan = self.compile(&ast).map_err(|e| self.failed(e))?;
        let id = self.next_stmt;
        self.next_stmt = self.next_stmt.wrapping_add(1).max(1);
        let columns = compile::columns_of(&plan);
        self.prepared.insert(
            id,
            Stmt {
                text: Arc::from(sql),
                ast,
                plan: Arc::new(plan),
                params,
            },
        );
        Ok(Prepared {
            id,
            params,
            columns,
        })
    }

    /// COM_STMT_EXECUTE.
    pub async fn execute(&mut self, id: u32, params: Vec<Value>) -> Result<Output, SqlError> {
        let Some(stmt) = self.prepared.get(&id) else {
            return Err(SqlError::new(
                1243,
                "HY000",
                format!("Unknown prepared statement handler ({id}) given to mysqld_stmt_execute"),
            ));
        };
        if params.len() != usize::from(stmt.params) {
            return Err(SqlError::new(
                1210,
                "HY000",
                "Incorrect arguments to mysqld_stmt_execute",
            ));
        }
        self.processes.questions.fetch_add(1, Ordering::Relaxed);
        self.cancel = self.process.begin_statement(stmt.text.clone())?;
        let result = match self.execute_plan(id) {
            Ok(plan) => self.run(plan, &params).await,
            Err(e) => Err(e),
        };
        self.process.end_statement();
        result
    }

    /// The prepared statement's plan, compiled again if its table changed.
    fn execute_plan(&mut self, id: u32) -> Result<Arc<Plan>, SqlError> {
        let Some(stmt) = self.prepared.get(&id) else {
            return Err(SqlError::unsupported("a closed statement"));
        };
        Ok(
            match compile::is_current(&stmt.plan, &self.engine.catalog()) {
                true => stmt.plan.clone(),
                false => {
                    let ast = stmt.ast.clone();
                    let plan = Arc::new(self.compile(&ast).map_err(|e| self.failed(e))?);
                    if let Some(s) = self.prepared.get_mut(&id) {
                        s.plan = plan.clone();
                    }
                    plan
                }
            },
        )
    }

    /// COM_STMT_CLOSE.
    pub fn close(&mut self, id: u32) {
        self.prepared.remove(&id);
    }

    /// COM_INIT_DB / USE.
    pub async fn init_db(&mut self, db: &str) -> Result<(), SqlError> {
        let cat = self.engine.catalog();
        let name = match db.eq_ignore_ascii_case(super::information_schema::NAME) {
            true => super::information_schema::NAME.to_string(),
            false => cat.database(db)?.name.clone(),
        };
        self.process.set_db(Some(name.clone()));
        self.state.db = Some(name);
        Ok(())
    }

    /// COM_FIELD_LIST.
    pub async fn field_list(&mut self, table: &str) -> Result<Vec<Column>, SqlError> {
        let db = self.state.db.clone().ok_or_else(SqlError::no_database)?;
        show::field_list(&self.engine.catalog(), &db, table)
    }

    /// A statement that failed before it ran (parse, compile): its error
    /// is the one condition SHOW ERRORS lists.
    fn failed(&mut self, e: SqlError) -> SqlError {
        let mut out = Err(e);
        self.state.finish(&mut out, false, false);
        match out {
            Err(e) => e,
            Ok(_) => SqlError::new(1105, "HY000", "unknown error"),
        }
    }

    fn compile(&self, stmt: &Statement) -> Result<Plan, SqlError> {
        let catalog = self.engine.catalog();
        let scope = Scope {
            catalog: &catalog,
            db: self.state.db.as_deref(),
            ctes: None,
        };
        compile::compile(stmt, &scope)
    }

    async fn run(&mut self, plan: Arc<Plan>, params: &[Value]) -> Result<Output, SqlError> {
        self.state.stmt = StmtEnv::starting(self.state.row_count, self.state.found_rows);
        self.state.stmt.strict = match self.state.vars.get("sql_mode") {
            // Read without allocating: this runs for every statement.
            Some(Value::Bytes(mode)) => [&b"STRICT_TRANS_TABLES"[..], b"STRICT_ALL_TABLES"]
                .iter()
                .any(|m| mode.windows(m.len()).any(|w| w.eq_ignore_ascii_case(m))),
            _ => true,
        };
        let diagnostic = matches!(plan.as_ref(), Plan::Other(s) if show_warnings(s).is_some());
        // As in MySQL, a statement that uses no table keeps the previous
        // statement's conditions unless it has some of its own.
        let tableless = matches!(plan.as_ref(), Plan::Set(_))
            || matches!(plan.as_ref(), Plan::Select(s) if s.from.is_none());
        let mut out = self.run_statement(plan, params).await;
        self.state.finish(&mut out, diagnostic, tableless);
        out
    }

    async fn run_statement(
        &mut self,
        plan: Arc<Plan>,
        params: &[Value],
    ) -> Result<Output, SqlError> {
        self.count(&plan);
        match plan.as_ref() {
            Plan::Select(s) if s.from.as_ref().is_some_and(|t| is_virtual(&t.def)) => {
                let def = &s.from.as_ref().expect("checked by the guard").def;
                let rows = super::information_schema::rows(def, &self.engine.catalog());
                select::run_over(s, rows, &self.state.env(params))
            }
            Plan::Select(s) if !s.reads_tables() => {
                let env = self.state.env(params);
                let mut none = None;
                select::run(s, &mut none, &env).await
            }
            Plan::Select(_)
            | Plan::Insert(_)
            | Plan::Update(_)
            | Plan::Delete(_)
            | Plan::Multi(_) => self.run_in_txn(&plan, params).await,
            Plan::Set(items) => self.set(items, params).await,
            Plan::Other(stmt) => self.other(stmt).await,
        }
    }

    fn count(&self, plan: &Plan) {
        let p = &self.processes;
        let counter = match plan {
            Plan::Select(_) => &p.com_select,
            Plan::Insert(_) => &p.com_insert,
            Plan::Update(_) => &p.com_update,
            Plan::Delete(_) => &p.com_delete,
            Plan::Multi(m) if m.delete => &p.com_delete,
            Plan::Multi(_) => &p.com_update,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Runs a statement that reads or writes tables, in the open
    /// transaction or (autocommit) its own.
    async fn run_in_txn(&mut self, plan: &Plan, params: &[Value]) -> Result<Output, SqlError> {
        let single = self.txn.is_none() && !self.explicit && self.state.autocommit();
        let mut txn = self.txn.take().unwrap_or_else(|| self.engine.begin());
        txn.set_lock_wait_timeout(
            self.state
                .lock_wait_timeout(self.engine.lock_wait_timeout()),
        );
        if !single {
            txn.begin_statement();
        }
        // information_schema read inside a join, subquery or derived table
        // (one-table plans never need it: no walk for them).
        let catalog = reads_virtual(plan).then(|| self.engine.catalog());
        let result = {
            let mut env = self.state.env(params);
            env.catalog = catalog.as_deref();
            let mut slot = Some(txn);
            let r = tokio::select! {
                r = exec(plan, &mut slot, &env) => r,
                _ = self.cancel.cancelled() => Err(interrupted()),
            };
            txn = slot.expect("exec gives the transaction back");
            r
        };
        if let Ok((out, _)) = &result {
            self.note_changes(plan, out);
        }
        let result = match (single, result) {
            (true, Ok(r)) => {
                let done = txn.commit().await.map(|_| r).map_err(SqlError::from);
                match done.is_ok() {
                    true => self.report_changes(),
                    false => self.changes.clear(),
                }
                done
            }
            (true, Err(e)) => {
                txn.rollback();
                Err(e)
            }
            (false, Ok(r)) => {
                self.txn = Some(txn);
                Ok(r)
            }
            (false, Err(e)) if e.is_deadlock() => {
                txn.rollback();
                self.changes.clear();
                self.explicit = false;
                Err(e)
            }
            (false, Err(e)) => {
                txn.rollback_statement();
                self.txn = Some(txn);
                Err(e)
            }
        };
        let (out, generated) = result?;
        if let Some(id) = generated {
            self.state.last_insert_id = id;
        }
        Ok(out)
    }

    /// Commits the open transaction, if any.
    async fn commit(&mut self) -> Result<(), SqlError> {
        self.explicit = false;
        match self.txn.take() {
            Some(txn) => {
                let done = txn.commit().await;
                match done.is_ok() {
                    true => self.report_changes(),
                    false => self.changes.clear(),
                }
                Ok(done?)
            }
            None => Ok(()),
        }
    }

    /// Remembers the rows a DML statement changed, per target table, until
    /// its transaction commits.
    fn note_changes(&mut self, plan: &Plan, out: &Output) {
        let Output::Ok { affected_rows, .. } = out else {
            return;
        };
        if *affected_rows == 0 {
            return;
        }
        let mut note = |t: &Arc<crate::catalog::TableDef>| match self
            .changes
            .iter_mut()
            .find(|(c, _)| Arc::ptr_eq(c, t))
        {
            Some((_, n)) => *n = n.saturating_add(*affected_rows),
            None => self.changes.push((t.clone(), *affected_rows)),
        };
        match plan {
            Plan::Insert(i) => note(&i.table.def),
            Plan::Update(u) => note(&u.table.def),
            Plan::Delete(d) => note(&d.table.def),
            Plan::Multi(m) => m.targets.iter().for_each(|t| note(&t.table.def)),
            _ => {}
        }
    }

    /// Reports a committed transaction's changes to the statistics and
    /// starts a background refresh of each table that changed enough
    /// (`innodb_stats_auto_recalc`, on unless set to 0).
    fn report_changes(&mut self) {
        if self.changes.is_empty() {
            return;
        }
        let auto = !matches!(
            self.state.vars.get("innodb_stats_auto_recalc"),
            Some(Value::Int(0))
        );
        for (t, n) in self.changes.drain(..) {
            if auto && stats::changed(&t, n) {
                refresh_stats(self.engine.clone(), t);
            }
        }
    }

    async fn begin(&mut self) -> Result<Output, SqlError> {
        self.commit().await?;
        self.txn = Some(self.engine.begin());
        self.explicit = true;
        Ok(ok())
    }

    async fn other(&mut self, stmt: &Statement) -> Result<Output, SqlError> {
        if ddl::is_ddl(stmt) {
            self.commit().await?;
            let db = self.state.db.clone();
            if let Some(r) = ddl::run(&self.engine, stmt, db.as_deref()).await {
                return r;
            }
        }
        match stmt {
            Statement::StartTransaction { .. } => return self.begin().await,
            Statement::Commit { .. } => {
                self.commit().await?;
                return Ok(ok());
            }
            Statement::Rollback {
                savepoint: None, ..
            } => {
                self.explicit = false;
                self.changes.clear();
                if let Some(t) = self.txn.take() {
                    t.rollback();
                }
                return Ok(ok());
            }
            Statement::Use(Use::Object(name) | Use::Database(name) | Use::Schema(name)) => {
                let db = compile::last_name(name)?;
                self.init_db(&db).await?;
                return Ok(ok());
            }
            Statement::Kill { modifier, id } => {
                let id = u32::try_from(*id).map_err(|_| {
                    SqlError::new(1094, "HY000", format!("Unknown thread id: {id}"))
                })?;
                let connection = !matches!(modifier, Some(sqlparser::ast::KillType::Query));
                self.processes.kill(id, connection)?;
                return Ok(ok());
            }
            Statement::Analyze(a) => return self.analyze(a).await,
            Statement::ShowProcessList { full } => {
                return Ok(show::processlist(&self.processes, *full));
            }
            Statement::ShowStatus { filter, .. } => {
                if let Some(e) = show::where_filter(stmt) {
                    return Err(e);
                }
                return Ok(show::status(&self.processes, filter.as_ref()));
            }
            _ => {}
        }
        if let Some(what) = show_warnings(stmt) {
            return Ok(self.show_warnings(what));
        }
        let catalog = self.engine.catalog();
        if let Statement::ShowCreate { obj_type, obj_name } = stmt
            && obj_type.to_string() == "TABLE"
        {
            let (d, t) = super::compile::table_name(obj_name, self.state.db.as_deref())?;
            let t = catalog.table(&d, &t)?;
            let next = match t.auto_increment_column() {
                Some(_) => Some(self.engine.peek_auto_inc(&t).await?),
                None => None,
            };
            return Ok(show::show_create_table(&t, next));
        }
        match show::run(stmt, &catalog, self.state.db.as_deref(), &self.state.vars) {
            Some(r) => r,
            None => Err(SqlError::unsupported(statement_kind(stmt))),
        }
    }

    /// ANALYZE TABLE: commits the open transaction (as MySQL does), then
    /// counts the table's rows and distinct keys in a snapshot of its own.
    async fn analyze(&mut self, a: &sqlparser::ast::Analyze) -> Result<Output, SqlError> {
        let Some(name) = &a.table_name else {
            return Err(SqlError::unsupported("ANALYZE without a table"));
        };
        self.commit().await?;
        let (d, t) = compile::table_name(name, self.state.db.as_deref())?;
        if d.eq_ignore_ascii_case("information_schema") {
            return Err(SqlError::unsupported(
                "ANALYZE of an information_schema table",
            ));
        }
        let def = self.engine.catalog().table(&d, &t)?;
        let mut txn = self.engine.begin();
        let r = tokio::select! {
            r = stats::analyze(&mut txn, &def) => r,
            _ = self.cancel.cancelled() => Err(interrupted()),
        };
        txn.rollback();
        r?;
        Ok(stats::analyze_output(&d, &def.name))
    }

    async fn set(&mut self, items: &[SetItem], params: &[Value]) -> Result<Output, SqlError> {
        for item in items {
            let v = item.value.eval(&Ctx {
                env: &self.state.env(params),
                row: &[],
                aggs: &[],
            })?;
            match &item.target {
                SetTarget::User(name) => {
                    self.state.user_vars.insert(name.clone(), v);
                }
                SetTarget::System(name) => self.set_system(name, v).await?,
                SetTarget::Names(charset, collation) => {
                    let coll = match collation {
                        Some(c) => ddl::collation_named(c)?,
                        None => crate::types::Collation::Utf8mb4GeneralCi,
                    };
                    let charset = Value::Bytes(charset.to_lowercase().into_bytes());
                    for k in ["client", "connection", "results"] {
                        self.state
                            .vars
                            .insert(format!("character_set_{k}"), charset.clone());
                    }
                    self.state.vars.insert(
                        "collation_connection".into(),
                        Value::Bytes(coll.name().as_bytes().to_vec()),
                    );
                }
            }
        }
        Ok(ok())
    }

    async fn set_system(&mut self, name: &str, v: Value) -> Result<(), SqlError> {
        let is_default = matches!(&v, Value::Bytes(b) if b.eq_ignore_ascii_case(b"DEFAULT"));
        let default = is_default
            .then(|| session_defaults(&self.engine).remove(name))
            .flatten();
        let v = match default {
            Some(d) => d,
            None => vars::check_set(&self.state.vars, name, v)?,
        };
        if name == "autocommit" && v == Value::Int(1) && !self.state.autocommit() {
            self.commit().await?;
        }
        let aliases: &[&str] = match name {
            "transaction_isolation" | "tx_isolation" => &["transaction_isolation", "tx_isolation"],
            "transaction_read_only" | "tx_read_only" => &["transaction_read_only", "tx_read_only"],
            _ => &[],
        };
        for a in aliases {
            self.state.vars.insert((*a).to_string(), v.clone());
        }
        self.state.vars.insert(name.to_string(), v);
        Ok(())
    }
}

/// What a SHOW WARNINGS / ERRORS / COUNT(*) … statement asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ShowWarnings {
    Warnings,
    Errors,
    CountWarnings,
    CountErrors,
}

fn show_warnings(stmt: &Statement) -> Option<ShowWarnings> {
    let Statement::ShowVariable { variable } = stmt else {
        return None;
    };
    let words: Vec<String> = variable.iter().map(|i| i.value.to_lowercase()).collect();
    match words
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["warnings", ..] => Some(ShowWarnings::Warnings),
        ["errors", ..] => Some(ShowWarnings::Errors),
        ["count", "warnings"] => Some(ShowWarnings::CountWarnings),
        ["count", "errors"] => Some(ShowWarnings::CountErrors),
        _ => None,
    }
}

impl Session {
    /// The last statement's conditions, as MySQL lists them.
    fn show_warnings(&self, what: ShowWarnings) -> Output {
        use super::meta::{Kind, expr_column};
        let errors = || self.state.warnings.iter().filter(|w| w.level == "Error");
        let count = |name: &str, n: usize| Output::Rows {
            columns: vec![expr_column(name, Kind::UInt)],
            rows: vec![vec![Value::UInt(n as u64)]],
        };
        let listed: Vec<&Warning> = match what {
            ShowWarnings::CountWarnings => {
                return count("@@session.warning_count", self.state.warning_count);
            }
            ShowWarnings::CountErrors => return count("@@session.error_count", errors().count()),
            ShowWarnings::Warnings => self.state.warnings.iter().collect(),
            ShowWarnings::Errors => errors().collect(),
        };
        Output::Rows {
            columns: vec![
                expr_column("Level", Kind::Text),
                expr_column("Code", Kind::UInt),
                expr_column("Message", Kind::Text),
            ],
            rows: listed
                .into_iter()
                .map(|w| {
                    vec![
                        Value::Bytes(w.level.as_bytes().to_vec()),
                        Value::UInt(u64::from(w.code)),
                        Value::Bytes(w.message.as_bytes().to_vec()),
                    ]
                })
                .collect(),
        }
    }
}

fn ok() -> Output {
    Output::Ok {
        affected_rows: 0,
        last_insert_id: 0,
        warnings: 0,
        info: String::new(),
    }
}

/// Recomputes `t`'s statistics in a task of its own, in a transaction of
/// its own (never on a query's path); the table's current definition is
/// used, and a table dropped meanwhile is skipped.
fn refresh_stats(engine: Engine, t: Arc<crate::catalog::TableDef>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(stats::refresh_delay(&t)).await;
            let current = engine.catalog().table_by_id(t.db_id, t.id);
            if let Some(def) = current.filter(|d| d.created_lsn == t.created_lsn) {
                let mut txn = engine.begin();
                if let Err(e) = stats::analyze(&mut txn, &def).await {
                    tracing::debug!(table = %def.name, error = %e, "statistics refresh failed");
                }
                txn.rollback();
            }
            // Changes reported while it ran may call for another.
            if !stats::refreshed(&t) {
                break;
            }
        }
    });
}

/// Whether a plan reads an information_schema table below its top level.
fn reads_virtual(plan: &Plan) -> bool {
    match plan {
        Plan::Select(s) if s.sources.is_none() => false,
        Plan::Insert(i) if i.select.is_none() => false,
        Plan::Update(_) | Plan::Delete(_) | Plan::Set(_) | Plan::Other(_) => false,
        _ => plan.tables().into_iter().any(|t| is_virtual(&t.def)),
    }
}

/// Runs a table statement in `txn` (always given back in the slot).
async fn exec(
    plan: &Plan,
    slot: &mut Option<Txn>,
    env: &Env<'_>,
) -> Result<(Output, Option<u64>), SqlError> {
    if let Plan::Select(s) = plan {
        return select::run(s, slot, env).await.map(|o| (o, None));
    }
    if let Plan::Insert(i) = plan
        && i.select.is_some()
    {
        return dml::insert_select(i, slot, env).await;
    }
    if let Plan::Multi(m) = plan {
        return super::multi::run(m, slot, env).await.map(|o| (o, None));
    }
    let txn = slot.as_mut().expect("a transaction is given");
    match plan {
        Plan::Insert(i) => dml::insert(i, txn, env).await,
        Plan::Update(u) => dml::update(u, txn, env).await.map(|o| (o, None)),
        Plan::Delete(d) => dml::delete(d, txn, env).await.map(|o| (o, None)),
        Plan::Select(_) | Plan::Multi(_) => Err(SqlError::unsupported("this statement here")),
        Plan::Set(_) | Plan::Other(_) => Err(SqlError::unsupported("this statement here")),
    }
}

/// `START TRANSACTION WITH CONSISTENT SNAPSHOT`, which sqlparser does not
/// parse (every transaction's snapshot is consistent here).
/// Looked at for every text statement, so it allocates nothing.
fn is_consistent_snapshot(sql: &str) -> bool {
    let mut words = sql.trim().trim_end_matches(';').split_whitespace();
    ["START", "TRANSACTION", "WITH", "CONSISTENT", "SNAPSHOT"]
        .iter()
        .all(|want| words.next().is_some_and(|w| w.eq_ignore_ascii_case(want)))
        && words.next().is_none()
}

/// Parses `sql` with MySQL's dialect; a parse error becomes 1064.
fn parse(sql: &str) -> Result<Vec<Statement>, SqlError> {
    match Parser::parse_sql(&MySqlDialect {}, sql) {
        Ok(stmts) => Ok(stmts),
        Err(e) => match drop_key_as_drop_index(sql).or_else(|| update_commas_as_joins(sql)) {
            Some(again) => Parser::parse_sql(&MySqlDialect {}, &again)
                .map_err(|_| syntax_error(sql, &e.to_string())),
            None => Err(match unsupported_construct(sql) {
                Some(what) => SqlError::unsupported(what),
                None => syntax_error(sql, &e.to_string()),
            }),
        },
    }
}

/// A MySQL construct Strata does not have that sqlparser cannot parse
/// either (`None`: none recognised), so that it answers 1235 naming it,
/// as for the constructs that parse, instead of MySQL-valid text being a
/// syntax error. Only asked after the parse failed.
fn unsupported_construct(sql: &str) -> Option<&'static str> {
    let tokens = Tokenizer::new(&MySqlDialect {}, sql).tokenize().ok()?;
    let mut depth = 0usize;
    let mut words: Vec<String> = Vec::new();
    for t in &tokens {
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Word(w) if depth == 0 && w.quote_style.is_none() => {
                words.push(w.value.to_ascii_uppercase())
            }
            _ => {}
        }
    }
    let first = words.first().map(String::as_str);
    let has = |w: &str| words.iter().any(|x| x == w);
    let pair = |a: &str, b: &str| words.windows(2).any(|p| p[0] == a && p[1] == b);
    let routine = ["TRIGGER", "PROCEDURE", "FUNCTION", "EVENT"]
        .into_iter()
        .find(|k| has(k));
    Some(match (first, routine) {
        (Some("CREATE"), Some("TRIGGER")) => "CREATE TRIGGER",
        (Some("CREATE"), Some("PROCEDURE")) => "CREATE PROCEDURE",
        (Some("CREATE"), Some("FUNCTION")) => "CREATE FUNCTION",
        (Some("CREATE"), Some("EVENT")) => "CREATE EVENT",
        _ if pair("PARTITION", "BY") || pair("PARTITIONS", "BY") => "PARTITION BY",
        _ if pair("RENAME", "INDEX") || pair("RENAME", "KEY") => "RENAME INDEX",
        _ if pair("INTO", "OUTFILE") || pair("INTO", "DUMPFILE") => "SELECT … INTO OUTFILE",
        _ if first == Some("LOAD") && has("DATA") => "LOAD DATA",
        _ => return None,
    })
}

/// `ALTER TABLE … DROP KEY k`, which sqlparser reads only as DROP INDEX,
/// in those words (`None`: no DROP KEY in the text).
fn drop_key_as_drop_index(sql: &str) -> Option<String> {
    let mut tokens = Tokenizer::new(&MySqlDialect {}, sql).tokenize().ok()?;
    let mut changed = false;
    let mut after_drop = false;
    for t in &mut tokens {
        match t {
            Token::Whitespace(_) => continue,
            Token::Word(w)
                if after_drop && w.quote_style.is_none() && w.value.eq_ignore_ascii_case("KEY") =>
            {
                *t = Token::make_keyword("INDEX");
                changed = true;
            }
            _ => {}
        }
        after_drop = matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("DROP"));
    }
    changed.then(|| tokens.iter().map(|t| t.to_string()).collect())
}

/// `UPDATE t1, t2 SET …`, which sqlparser does not parse, as `UPDATE t1
/// JOIN t2 SET …` (a JOIN without a condition is the same cross product;
/// `None`: not such a statement).
fn update_commas_as_joins(sql: &str) -> Option<String> {
    let tokens = Tokenizer::new(&MySqlDialect {}, sql).tokenize().ok()?;
    let word = |t: &Token, w: &str| matches!(t, Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w));
    let mut meaningful = tokens.iter().filter(|t| !matches!(t, Token::Whitespace(_)));
    if !meaningful.next().is_some_and(|t| word(t, "UPDATE")) {
        return None;
    }
    let (mut depth, mut in_refs, mut changed) = (0usize, true, false);
    let mut out = String::with_capacity(sql.len() + 16);
    for t in &tokens {
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            t if depth == 0 && word(t, "SET") => in_refs = false,
            Token::Comma if in_refs && depth == 0 => {
                out.push_str(" JOIN ");
                changed = true;
                continue;
            }
            _ => {}
        }
        out.push_str(&t.to_string());
    }
    changed.then_some(out)
}

/// 1064 at the position the parser names ("… at Line: L, Column: C"),
/// or at the end of the text.
fn syntax_error(sql: &str, message: &str) -> SqlError {
    let position = message.rsplit_once("at Line: ").and_then(|(_, rest)| {
        let (line, col) = rest.split_once(", Column: ")?;
        let col: usize = col
            .trim()
            .trim_end_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .ok()?;
        Some((line.trim().parse::<usize>().ok()?, col))
    });
    match position {
        Some((line, col)) => {
            let near: String = sql
                .lines()
                .skip(line.saturating_sub(1))
                .collect::<Vec<_>>()
                .join("\n")
                .chars()
                .skip(col.saturating_sub(1))
                .collect();
            SqlError::syntax(&near, line as u64)
        }
        None => SqlError::syntax("", sql.lines().count().max(1) as u64),
    }
}

/// The number of `?` placeholders in `sql` (outside strings and comments).
fn count_params(sql: &str) -> Result<u16, SqlError> {
    let tokens = Tokenizer::new(&MySqlDialect {}, sql)
        .tokenize()
        .map_err(|e| syntax_error(sql, &e.to_string()))?;
    let n = tokens
        .iter()
        .filter(|t| matches!(t, Token::Placeholder(p) if p == "?"))
        .count();
    u16::try_from(n).map_err(|_| {
        SqlError::new(
            1390,
            "HY000",
            "Prepared statement contains too many placeholders",
        )
    })
}

/// A statement's kind, for 1235.
fn statement_kind(stmt: &Statement) -> String {
    let text = stmt.to_string();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

impl crate::mysql::Handler for Session {
    fn query<'a>(&'a mut self, sql: &'a str) -> BoxFuture<'a, Result<Output, SqlError>> {
        Box::pin(Session::query(self, sql))
    }

    fn prepare<'a>(&'a mut self, sql: &'a str) -> BoxFuture<'a, Result<Prepared, SqlError>> {
        Box::pin(Session::prepare(self, sql))
    }

    fn execute(
        &mut self,
        stmt: u32,
        params: Vec<Value>,
    ) -> BoxFuture<'_, Result<Output, SqlError>> {
        Box::pin(Session::execute(self, stmt, params))
    }

    fn close(&mut self, stmt: u32) {
        Session::close(self, stmt)
    }

    fn init_db<'a>(&'a mut self, db: &'a str) -> BoxFuture<'a, Result<(), SqlError>> {
        Box::pin(Session::init_db(self, db))
    }

    fn field_list<'a>(
        &'a mut self,
        table: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Column>, SqlError>> {
        Box::pin(Session::field_list(self, table))
    }

    fn in_transaction(&self) -> bool {
        Session::in_transaction(self)
    }

    fn autocommit(&self) -> bool {
        Session::autocommit(self)
    }

    fn attach(&mut self, connection: tokio_util::sync::CancellationToken) {
        self.process.attach(connection);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_five_words_are_a_consistent_snapshot() {
        for yes in [
            "START TRANSACTION WITH CONSISTENT SNAPSHOT",
            "  start transaction  with\tconsistent snapshot ;",
            "Start Transaction With Consistent Snapshot;",
        ] {
            assert!(is_consistent_snapshot(yes), "{yes:?}");
        }
        for no in [
            "START TRANSACTION",
            "START TRANSACTION WITH CONSISTENT",
            "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
            "START TRANSACTION WITH CONSISTENT SNAPSHOT NOW",
            "INSERT INTO t VALUES (1)",
            "",
        ] {
            assert!(!is_consistent_snapshot(no), "{no:?}");
        }
    }

    #[test]
    fn update_commas_become_joins_only_before_set_and_outside_parentheses() {
        let again = update_commas_as_joins("UPDATE t1, t2 SET t1.a = IF(t2.b, 1, 2), t1.c = 3")
            .expect("a comma list of tables");
        assert_eq!(
            again,
            "UPDATE t1 JOIN  t2 SET t1.a = IF(t2.b, 1, 2), t1.c = 3"
        );
        assert!(parse(&again).is_ok());
        assert!(parse("UPDATE t1, t2 SET t1.a = t2.b WHERE t1.id = t2.id").is_ok());
        assert_eq!(update_commas_as_joins("UPDATE t SET a = 1, b = 2"), None);
        assert_eq!(update_commas_as_joins("SELECT 1, 2"), None);
    }

    #[test]
    fn constructs_sqlparser_cannot_parse_are_named() {
        let named = |sql: &str| parse(sql).err().map(|e| (e.code, e.message));
        for (sql, what) in [
            (
                "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET NEW.a = 1",
                "CREATE TRIGGER",
            ),
            (
                "CREATE DEFINER = root PROCEDURE p() SELECT 1",
                "CREATE PROCEDURE",
            ),
            ("ALTER TABLE t RENAME INDEX a TO b", "RENAME INDEX"),
            (
                "ALTER TABLE t PARTITION BY HASH(id) PARTITIONS 2",
                "PARTITION BY",
            ),
            (
                "SELECT a FROM t INTO OUTFILE '/tmp/x'",
                "SELECT … INTO OUTFILE",
            ),
        ] {
            let (code, message) = named(sql).expect("not parsed");
            assert_eq!(code, 1235, "{sql}");
            assert!(message.contains(what), "{sql}: {message}");
        }
        // Other text that does not parse stays a syntax error.
        assert_eq!(named("SELEC 1").map(|e| e.0), Some(1064));
        assert_eq!(
            named("CREATE TABLE t (event INT,)").map(|e| e.0),
            Some(1064)
        );
    }
}
