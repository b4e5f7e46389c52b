//! `strata-logservice`: one replica of Strata's quorum-replicated WAL
//! ([`server`], around the [`replica`] state machine on [`segment`] files),
//! and its clients: the writer ([`client::LogClient`], around the
//! [`writer`] state machine) and readers of the committed log.
//!
//! The protocol lives in the two state machines, which do no I/O, so that
//! the simulator in `tests/simulation.rs` runs exactly the code that ships.

pub mod client;
pub mod control_file;
pub mod error;
pub mod framed;
pub mod history;
pub mod msg;
pub mod process;
pub mod replica;
pub mod segment;
pub mod server;
pub mod sniff;
pub mod storage;
pub mod tail;
pub mod wire;
pub mod writer;

pub use error::{LogError, Result};
