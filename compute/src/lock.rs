//! Row and metadata locks. (Stub: helper D owns this file.)

use std::time::Duration;

pub type TxnId = u64;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LockKey {
    /// A key (present or absent) of the index in `space`.
    Row { space: u32, key: Vec<u8> },
    /// A table's metadata lock.
    Table { table_id: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// Granted at once (or already held).
    Immediately,
    /// Granted after waiting for another transaction: re-read what it guards.
    AfterWait,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    #[error("Deadlock found when trying to get lock; try restarting transaction")]
    Deadlock,
    #[error("Lock wait timeout exceeded; try restarting transaction")]
    Timeout,
}

pub struct LockManager {}

impl LockManager {
    pub fn new() -> LockManager {
        unimplemented!("helper D")
    }

    /// Takes `key` in `mode` for `txn`, waiting at most `timeout`.
    pub async fn lock(
        &self,
        txn: TxnId,
        key: LockKey,
        mode: LockMode,
        timeout: Duration,
    ) -> Result<Acquired, LockError> {
        let _ = (txn, key, mode, timeout);
        unimplemented!("helper D")
    }

    /// Releases every lock `txn` holds, waking its waiters.
    pub fn release_all(&self, txn: TxnId) {
        let _ = txn;
        unimplemented!("helper D")
    }
}

impl Default for LockManager {
    fn default() -> Self {
        LockManager::new()
    }
}
