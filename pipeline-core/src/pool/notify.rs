//! Runtime-agnostic wake-ups for the pool's async waits: a task worker's stop request
//! ([`StopWaker`]) and the exits a shutdown waits for ([`Exits`]).
//!
//! Both pair a flag or a count with a lock-guarded waker: the waiting side lists its
//! waker under the lock and then looks at the flag (count); the waking side changes the
//! flag (count) before it takes the wakers under the same lock. Whichever takes the
//! lock second sees what the other did, so no wake-up is lost (loom models below).

use crate::sync::{Condvar, Mutex, lock};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// The async side of a task worker's stop request: the waker of the task, woken once
/// by [`WorkerState::request_stop`](super::worker::WorkerState::request_stop).
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(crate) struct StopWaker {
    waker: Mutex<Option<Waker>>,
}

#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
impl StopWaker {
    pub(crate) fn new() -> Self {
        StopWaker {
            waker: Mutex::new(None),
        }
    }

    /// Lists `waker` for the next [`wake`](Self::wake). The caller must look at its
    /// stop flag *after* this returns and wait only if it is still clear: a `wake`
    /// that locked first has set the flag before, and this lock sees it.
    pub(crate) fn register(&self, waker: &Waker) {
        let mut slot = lock(&self.waker);
        if !slot.as_ref().is_some_and(|listed| listed.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }

    /// Wakes the listed task, if any; call after setting the stop flag.
    pub(crate) fn wake(&self) {
        let waker = lock(&self.waker).take();
        // No lock held while waking: a waker may run arbitrary code.
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The workers of a pool that have exited: a count with a condition variable for
/// blocking waits (`shutdown`) and wakers for async ones (`shutdown_async`).
pub(crate) struct Exits {
    state: Mutex<ExitState>,
    cond: Condvar,
}

struct ExitState {
    count: usize,
    /// Tasks waiting for the count to grow; all woken at each exit.
    wakers: Vec<Waker>,
}

impl Exits {
    pub(crate) fn new() -> Self {
        Exits {
            state: Mutex::new(ExitState {
                count: 0,
                wakers: Vec::new(),
            }),
            cond: Condvar::new(),
        }
    }

    /// Counts one exit and wakes every waiter, blocked or async.
    pub(crate) fn record(&self) {
        let wakers = {
            let mut state = lock(&self.state);
            state.count += 1;
            std::mem::take(&mut state.wakers)
        };
        self.cond.notify_all();
        for waker in wakers {
            waker.wake();
        }
    }

    /// Exits so far.
    pub(crate) fn count(&self) -> usize {
        lock(&self.state).count
    }

    /// Blocks until `target` workers have exited or `deadline` passes; returns the
    /// exits then.
    pub(crate) fn wait(&self, target: usize, deadline: Instant) -> usize {
        let mut state = lock(&self.state);
        while state.count < target {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            state = self
                .cond
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        state.count
    }

    /// `Ready` once `target` workers have exited; otherwise lists the task to be woken
    /// at the next exit. (A waker left by a dropped wait is woken once, harmlessly.)
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn poll_reached(&self, target: usize, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = lock(&self.state);
        if state.count >= target {
            return Poll::Ready(());
        }
        if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            state.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Loom models of the two lost-wake-up races: a stop request racing a task that lists
/// its waker, and an exit racing a shutdown that lists its own. Run with
/// `RUSTFLAGS="--cfg pipeline_loom" cargo test -p pipeline-core --release --lib pool::notify`.
#[cfg(all(test, pipeline_loom))]
mod loom_models {
    use super::*;
    use crate::sync::atomic::{AtomicBool, Ordering};
    use crate::sync::{Arc, thread};
    use std::future::poll_fn;

    /// A task waits for its stop flag the way a task worker does (look, list the
    /// waker, look again) while another thread sets the flag and wakes it. If the
    /// wake-up could be lost, `block_on` would never return and loom reports a
    /// deadlock.
    #[test]
    fn stop_request_racing_a_waker_registration_is_never_lost() {
        loom::model(|| {
            let stop = Arc::new((AtomicBool::new(false), StopWaker::new()));
            let requester = {
                let stop = stop.clone();
                thread::spawn(move || {
                    stop.0.store(true, Ordering::Release);
                    stop.1.wake();
                })
            };
            loom::future::block_on(poll_fn(|cx| {
                if stop.0.load(Ordering::Acquire) {
                    return Poll::Ready(());
                }
                stop.1.register(cx.waker());
                if stop.0.load(Ordering::Acquire) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }));
            requester.join().unwrap();
        });
    }

    /// A shutdown waits for two exits from two workers that exit at the same time.
    #[test]
    fn exits_racing_an_async_wait_are_never_lost() {
        loom::model(|| {
            let exits = Arc::new(Exits::new());
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    let exits = exits.clone();
                    thread::spawn(move || exits.record())
                })
                .collect();
            loom::future::block_on(poll_fn(|cx| exits.poll_reached(2, cx)));
            assert_eq!(exits.count(), 2);
            for worker in workers {
                worker.join().unwrap();
            }
        });
    }
}
