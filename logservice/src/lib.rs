//! `strata-logservice`: one replica of Strata's quorum-replicated WAL, and
//! the writer-side client.

pub mod error;
pub mod history;
pub mod msg;
pub mod replica;
pub mod storage;
pub mod writer;

pub use error::{LogError, Result};
