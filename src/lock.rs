//! Locks that outlive a panic.
//!
//! A standard lock is poisoned when a thread panics while holding it, and every later `lock()` then
//! returns an error. Here a panic is a bug in one request or one job, never a reason to fail every later
//! one: each critical section leaves its data consistent at every step (a map insert, a counter, a swap),
//! so the data behind a poisoned lock is as good as any. [`Recover::recover`] takes the guard either way;
//! it is the one place that decision is made.

use std::sync::{LockResult, PoisonError};

/// The guard of a lock, poisoned or not.
pub(crate) trait Recover<G> {
    /// The guard, whether or not another thread panicked while holding the lock.
    fn recover(self) -> G;
}

impl<G> Recover<G> for LockResult<G> {
    fn recover(self) -> G {
        self.unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::Recover;

    #[test]
    fn a_lock_poisoned_by_a_panic_still_gives_its_data() {
        let shared = Arc::new(Mutex::new(1));
        let held = shared.clone();
        let panicked = std::thread::spawn(move || {
            let mut n = held.lock().recover();
            *n = 2;
            panic!("a bug while holding the lock");
        })
        .join();
        assert!(panicked.is_err());
        assert!(shared.is_poisoned());
        assert_eq!(*shared.lock().recover(), 2);
    }
}
