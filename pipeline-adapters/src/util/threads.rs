//! [`ThreadGroup`]: named threads joined with a deadline.

use crate::source::JoinError;
use pipeline_core::pool::panic_message;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Exits {
    /// Threads that have returned (or unwound).
    count: Mutex<usize>,
    changed: Condvar,
}

/// Counts the exit when dropped, so a panicking thread is counted too.
struct ExitGuard(Arc<Exits>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        *self.0.count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.changed.notify_all();
    }
}

/// Threads that are joined together, waiting at most a deadline (a std `join` cannot
/// time out).
#[derive(Default)]
pub(crate) struct ThreadGroup {
    exits: Arc<Exits>,
    handles: Mutex<Vec<JoinHandle<()>>>,
    spawned: Mutex<usize>,
    /// Panics seen while reaping, reported by the next `join`.
    panics: Mutex<Vec<String>>,
}

impl ThreadGroup {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Starts `f` on a thread called `name`; joins the threads that have finished.
    pub(crate) fn spawn(
        &self,
        name: String,
        f: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<()> {
        let guard = ExitGuard(self.exits.clone());
        let handle = std::thread::Builder::new().name(name).spawn(move || {
            let _guard = guard;
            f();
        })?;
        *self.spawned.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        let mut handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        self.reap(&mut handles);
        handles.push(handle);
        Ok(())
    }

    fn reap(&self, handles: &mut Vec<JoinHandle<()>>) {
        let (done, running): (Vec<_>, Vec<_>) = handles.drain(..).partition(|h| h.is_finished());
        *handles = running;
        for handle in done {
            if let Err(payload) = handle.join() {
                self.panics
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(panic_message(payload.as_ref()));
            }
        }
    }

    /// Waits until every thread has returned, at most `timeout`.
    ///
    /// Returns [`JoinError::Timeout`] if some are still running (they stay in the
    /// group; a later call may join them), [`JoinError::Panicked`] if one panicked.
    pub(crate) fn join(&self, timeout: Duration) -> Result<(), JoinError> {
        let deadline = Instant::now() + timeout;
        let spawned = *self.spawned.lock().unwrap_or_else(|p| p.into_inner());
        let mut count = self.exits.count.lock().unwrap_or_else(|p| p.into_inner());
        while *count < spawned {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            count = self
                .exits
                .changed
                .wait_timeout(count, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let all_done = *count >= spawned;
        drop(count);
        {
            let mut handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
            // An exit is counted just before the thread returns: give it that moment.
            if all_done {
                for handle in handles.drain(..) {
                    if let Err(payload) = handle.join() {
                        self.panics
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(panic_message(payload.as_ref()));
                    }
                }
            } else {
                self.reap(&mut handles);
            }
        }
        if let Some(message) = self.panics.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Err(JoinError::Panicked(message));
        }
        if all_done {
            Ok(())
        } else {
            Err(JoinError::Timeout(timeout))
        }
    }
}
