//! `strata-compute`: the transactional core of a compute node.
//!
//! Values, rows and keys ([`types`], [`row`], [`key`]); the B+tree over
//! 8 KiB pages ([`btree`], with each space's header page in [`space`]); the
//! versioned buffer pool ([`pool`]) and where its misses go ([`source`]);
//! row and metadata locks ([`lock`]); and the engine that ties them to the
//! log service and the page server ([`engine`]).
//!
//! Every page change is a `strata_wal` page operation applied with
//! `strata_wal::redo::apply_op`, so the page server rebuilds byte-identical
//! pages from the log. The compute never writes a page anywhere.

pub mod btree;
pub mod catalog;
pub mod embedded;
pub mod engine;
pub mod error;
pub mod key;
pub mod lock;
pub mod mysql;
pub mod pool;
pub mod row;
pub mod server;
pub mod source;
pub mod space;
pub mod sql;
pub mod txn;
pub mod types;

pub use engine::{Engine, EngineConfig};
pub use error::{EngineError, Result};
pub use txn::{FoundRow, Row, Txn};
