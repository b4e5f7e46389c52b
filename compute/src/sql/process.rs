//! The server's connections as SHOW PROCESSLIST and KILL see them, and the
//! few status counters SHOW STATUS reports.
//!
//! Every [`super::Session`] registers a [`Process`] here when it starts and
//! removes it when dropped. A statement runs with a fresh cancellation
//! token: KILL QUERY cancels it (the statement stops with 1317 and its
//! changes are undone); KILL CONNECTION cancels it and the connection's
//! own token, which the protocol loop watches. Counters are relaxed
//! atomics, one add per statement.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::types::Value;

use super::SqlError;

/// Every connection of one server, and its counters.
pub struct Processes {
    list: Mutex<BTreeMap<u32, Arc<Process>>>,
    started: Instant,
    pub(crate) questions: AtomicU64,
    pub(crate) com_select: AtomicU64,
    pub(crate) com_insert: AtomicU64,
    pub(crate) com_update: AtomicU64,
    pub(crate) com_delete: AtomicU64,
    connections: AtomicU64,
}

impl Default for Processes {
    fn default() -> Self {
        Processes {
            list: Mutex::new(BTreeMap::new()),
            started: Instant::now(),
            questions: AtomicU64::new(0),
            com_select: AtomicU64::new(0),
            com_insert: AtomicU64::new(0),
            com_update: AtomicU64::new(0),
            com_delete: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        }
    }
}

/// One connection.
pub struct Process {
    pub id: u32,
    state: Mutex<ProcessState>,
}

struct ProcessState {
    db: Option<String>,
    /// `Sleep` between statements, `Query` while one runs.
    command: &'static str,
    since: Instant,
    info: Option<Arc<str>>,
    /// Cancelled by KILL QUERY / KILL CONNECTION.
    statement: CancellationToken,
    /// The connection's own token (the protocol loop's), if attached.
    connection: Option<CancellationToken>,
    killed: bool,
}

impl Processes {
    /// Registers connection `id`.
    pub fn register(&self, id: u32) -> Arc<Process> {
        let p = Arc::new(Process {
            id,
            state: Mutex::new(ProcessState {
                db: None,
                command: "Sleep",
                since: Instant::now(),
                info: None,
                statement: CancellationToken::new(),
                connection: None,
                killed: false,
            }),
        });
        self.list.lock().insert(id, p.clone());
        self.connections.fetch_add(1, Ordering::Relaxed);
        p
    }

    /// Removes `p` (not a newer process that took its id).
    pub fn unregister(&self, p: &Arc<Process>) {
        let mut list = self.list.lock();
        if list.get(&p.id).is_some_and(|now| Arc::ptr_eq(now, p)) {
            list.remove(&p.id);
        }
    }

    /// KILL [QUERY | CONNECTION] id.
    pub fn kill(&self, id: u32, connection: bool) -> Result<(), SqlError> {
        let p = self
            .list
            .lock()
            .get(&id)
            .cloned()
            .ok_or_else(|| SqlError::new(1094, "HY000", format!("Unknown thread id: {id}")))?;
        let mut st = p.state.lock();
        st.statement.cancel();
        if connection {
            st.killed = true;
            if let Some(c) = &st.connection {
                c.cancel();
            }
        }
        Ok(())
    }

    /// SHOW PROCESSLIST's rows: Id, User, Host, db, Command, Time, State,
    /// Info (the statement cut to 100 characters unless `full`).
    pub fn rows(&self, full: bool) -> Vec<Vec<Value>> {
        let text = |s: &str| Value::Bytes(s.as_bytes().to_vec());
        let list: Vec<Arc<Process>> = self.list.lock().values().cloned().collect();
        list.iter()
            .map(|p| {
                let st = p.state.lock();
                let info = st.info.as_ref().map_or(Value::Null, |i| match full {
                    true => text(i),
                    false => text(&i.chars().take(100).collect::<String>()),
                });
                vec![
                    Value::UInt(u64::from(p.id)),
                    text("root"),
                    text("localhost"),
                    st.db.as_deref().map_or(Value::Null, text),
                    text(st.command),
                    Value::Int(st.since.elapsed().as_secs() as i64),
                    text(if st.command == "Query" {
                        "executing"
                    } else {
                        ""
                    }),
                    info,
                ]
            })
            .collect()
    }

    /// SHOW STATUS's variables, by name.
    pub fn status(&self) -> Vec<(&'static str, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let running = self
            .list
            .lock()
            .values()
            .filter(|p| p.state.lock().command == "Query")
            .count();
        vec![
            ("Com_delete", get(&self.com_delete)),
            ("Com_insert", get(&self.com_insert)),
            ("Com_select", get(&self.com_select)),
            ("Com_update", get(&self.com_update)),
            ("Connections", get(&self.connections)),
            ("Questions", get(&self.questions)),
            ("Threads_connected", self.list.lock().len() as u64),
            ("Threads_running", running as u64),
            ("Uptime", self.started.elapsed().as_secs()),
        ]
    }
}

impl Process {
    /// A statement starts: its token, or 1317 if the connection was killed.
    /// The token is new only after a KILL QUERY cancelled the last one.
    pub fn begin_statement(&self, sql: Arc<str>) -> Result<CancellationToken, SqlError> {
        let mut st = self.state.lock();
        if st.killed {
            return Err(interrupted());
        }
        st.command = "Query";
        st.since = Instant::now();
        st.info = Some(sql);
        if st.statement.is_cancelled() {
            st.statement = CancellationToken::new();
        }
        Ok(st.statement.clone())
    }

    pub fn end_statement(&self) {
        let mut st = self.state.lock();
        st.command = "Sleep";
        st.since = Instant::now();
        st.info = None;
    }

    pub fn set_db(&self, db: Option<String>) {
        self.state.lock().db = db;
    }

    /// The connection's token: KILL CONNECTION cancels it.
    pub fn attach(&self, connection: CancellationToken) {
        self.state.lock().connection = Some(connection);
    }
}

/// 1317.
pub fn interrupted() -> SqlError {
    SqlError::new(1317, "70100", "Query execution was interrupted")
}
