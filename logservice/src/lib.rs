//! `strata-logservice`: one replica of Strata's quorum-replicated WAL, and
//! the writer-side client.

pub mod control_file;
pub mod error;
pub mod history;
pub mod segment;
pub mod storage;

pub use error::{LogError, Result};
