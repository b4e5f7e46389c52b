//! `strata-pageserver`: turns the committed log into pages and answers
//! `GetPage@LSN` for any page at any LSN it holds.
//!
//! Ingest ([`ingest`]) follows the committed WAL from the log service into an
//! open in-memory layer ([`layer::inmem`]); the [`timeline`] freezes it into
//! immutable delta layer files ([`layer::delta_file`]) named by an atomically
//! replaced [`manifest`], and rebuilds pages by replaying records over the
//! newest image with `strata_wal::redo::apply`; [`cache`] keeps rebuilt
//! pages under a memory budget; [`server`] is the gRPC edge and [`client`]
//! its client. In the background the timeline compacts layers and drops
//! history below the GC horizon ([`timeline::compact`], [`timeline::gc`]);
//! [`metrics`] gathers figures for the status RPC and [`http`]'s
//! `/metrics`. With a bucket, [`remote`] uploads layer files and manifests
//! under a fencing generation and rebuilds a wiped local directory from
//! them.

pub mod background;
pub mod cache;
pub mod client;
pub mod durable;
pub mod error;
pub mod framed;
pub mod http;
pub mod ingest;
pub mod layer;
pub mod manifest;
pub mod metrics;
pub mod realtime;
pub mod remote;
pub mod server;
pub mod service;
pub mod sync;
pub mod testing;
pub mod timeline;
pub mod workload;

pub use error::{PageServerError, Result};
