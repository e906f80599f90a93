//! [`StopSignal`]: a flag that threads check, and sleep on without polling.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Inner {
    stopped: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

/// A cloneable stop request. `sleep` returns early when `stop` is called.
#[derive(Debug, Clone, Default)]
pub(crate) struct StopSignal(Arc<Inner>);

impl StopSignal {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Asks every holder to stop; wakes the sleepers. Idempotent.
    pub(crate) fn stop(&self) {
        let _guard = self.0.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.0.stopped.store(true, Ordering::Release);
        self.0.wake.notify_all();
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::Acquire)
    }

    /// Sleeps for `duration` or until stopped; returns whether it was stopped.
    pub(crate) fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        let mut guard = self.0.lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if self.is_stopped() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            guard = self
                .0
                .wake
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}
