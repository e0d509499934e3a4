//! Locks that survive a panic elsewhere.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// [`Mutex::lock`] that recovers a poisoned lock. Every value toolgate
/// keeps behind a mutex (registries, caches, counters) is left consistent
/// between statements, so a panic in one holder is no reason to fail
/// every later call: that would turn one bug into an outage.
pub trait LockExt<T: ?Sized> {
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> LockExt<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
