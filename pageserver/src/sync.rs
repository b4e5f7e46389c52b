//! Locks for the GetPage path that wait without yielding the core.
//!
//! parking_lot's locks spin on a contended lock with `sched_yield` before
//! they park. On a machine whose cores are all busy, Linux's EEVDF
//! scheduler then pushes the yielding thread's deadline back, and it can
//! wait a whole slice of another thread (milliseconds) before it looks at
//! the lock again; a perf trace of `pageserver-soak` showed GetPage threads
//! off the CPU in exactly that yield. The standard library's locks spin
//! briefly and then sleep on a futex, and are woken when the lock is
//! released. These wrap them with parking_lot's shape (no poisoning: a
//! panic while holding one leaves the data as it was, as parking_lot
//! does).

use std::sync::{MutexGuard, RwLockReadGuard, RwLockWriteGuard};

#[derive(Debug, Default)]
pub struct Mutex<T>(std::sync::Mutex<T>);

impl<T> Mutex<T> {
    pub const fn new(value: T) -> Mutex<T> {
        Mutex(std::sync::Mutex::new(value))
    }

    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Default)]
pub struct RwLock<T>(std::sync::RwLock<T>);

impl<T> RwLock<T> {
    pub const fn new(value: T) -> RwLock<T> {
        RwLock(std::sync::RwLock::new(value))
    }

    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_holding_a_lock_leaves_it_usable() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let l = std::sync::Arc::new(RwLock::new(2));
        let (m2, l2) = (m.clone(), l.clone());
        let panicked = std::thread::spawn(move || {
            let _m = m2.lock();
            let _l = l2.write();
            panic!("while holding both");
        })
        .join();
        assert!(panicked.is_err());
        *m.lock() += 1;
        *l.write() += 1;
        assert_eq!((*m.lock(), *l.read()), (2, 3));
    }
}
