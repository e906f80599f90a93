//! The worker loop and the state workers share.
//!
//! # The stop protocol
//!
//! Each worker has a `stop` flag; the pool has a `draining` flag and a deadline.
//! A worker checks its flag (and the drain state) *before* each receive and never
//! after: an event it has received is always handled, by it. So scaling down never
//! loses an event: the stopped worker finishes the event it holds, and everything still
//! buffered stays in the subscription for the others. A worker waiting for an event
//! waits for an event *or* its own stop request (a one-shot interrupt that the
//! request fires, `WorkerState::request_stop`), so it sleeps until one of the two and
//! never wakes to poll its flag.
//!
//! Draining takes the subscription off the bus, so nothing new arrives and the
//! channel reports disconnection once it is empty: a worker takes events until then,
//! or until the deadline, and never has to poll for "empty". Every exit is counted
//! under a mutex with a condition variable, so `shutdown` can wait for all workers
//! with a deadline instead of an unbounded `join`.

use super::error::{DeadLetter, DeadLetterReason, HandlerError};
use super::stats::WorkerRecord;
use crate::bus::Subscription;
use crate::channel::{Interrupt, RecvTimeoutError};
pub(crate) use crate::sync::{Condvar, thread};
use crate::sync::{
    Mutex,
    atomic::{AtomicBool, AtomicU64, Ordering},
    lock,
};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

pub(crate) type Handler<E> = Box<dyn Fn(E) -> Result<(), HandlerError> + Send + Sync>;
pub(crate) type DeadLetterHook<E> = Box<dyn Fn(DeadLetter<E>) + Send + Sync>;

#[derive(Default)]
pub(crate) struct PoolCounters {
    pub(crate) processed: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) panics: AtomicU64,
    pub(crate) dead_letters: AtomicU64,
    pub(crate) dead_letter_panics: AtomicU64,
}

impl PoolCounters {
    /// Events finished, whatever the outcome.
    pub(crate) fn finished(&self) -> u64 {
        self.processed.load(Ordering::Acquire)
            + self.failed.load(Ordering::Acquire)
            + self.panics.load(Ordering::Acquire)
    }
}

pub(crate) struct PoolMetrics {
    pub(crate) workers: metrics::Gauge,
    pub(crate) utilisation: metrics::Gauge,
    processed: metrics::Counter,
    failed: metrics::Counter,
    panics: metrics::Counter,
    dead_letters: metrics::Counter,
    processing: metrics::Histogram,
}

impl PoolMetrics {
    pub(crate) fn new(pool: &str) -> Self {
        let label = || pool.to_owned();
        PoolMetrics {
            workers: metrics::gauge!("pipeline_pool_workers", "pool" => label()),
            utilisation: metrics::gauge!("pipeline_pool_utilisation_ratio", "pool" => label()),
            processed: metrics::counter!("pipeline_pool_processed_total", "pool" => label()),
            failed: metrics::counter!("pipeline_pool_failed_total", "pool" => label()),
            panics: metrics::counter!("pipeline_pool_panics_total", "pool" => label()),
            dead_letters: metrics::counter!("pipeline_pool_dead_letters_total", "pool" => label()),
            processing: metrics::histogram!("pipeline_pool_processing_seconds", "pool" => label()),
        }
    }
}

/// What every worker of one pool shares.
pub(crate) struct PoolShared<E> {
    pub(crate) name: std::sync::Arc<str>,
    pub(crate) subscription: Subscription<E>,
    handler: Handler<E>,
    dead_letter: Option<DeadLetterHook<E>>,
    /// The pool's time origin; worker records count nanoseconds from it.
    pub(crate) epoch: Instant,
    pub(crate) draining: AtomicBool,
    /// Nanoseconds since `epoch`; read only once `draining` is set.
    drain_deadline: AtomicU64,
    /// Set by a worker that stopped draining because the deadline passed.
    pub(crate) deadline_hit: AtomicBool,
    pub(crate) counters: PoolCounters,
    /// Workers that have exited, with `exited` to wait on.
    pub(crate) exits: Mutex<usize>,
    pub(crate) exited: Condvar,
    /// The records of exited workers; also the lock that orders a worker's exit
    /// against `stats()` (see [`WorkerState::exited`]).
    ///
    /// Lock order: `WorkerPool::workers`, then `retired` *or* one worker's
    /// [`WorkerState::record`], never both: each of those two is taken alone, so a
    /// worker (which never takes `workers`) holds at most one lock at a time. `exits`
    /// is taken alone. (Issue 13, finding 8: `stats()` nested `retired` -> `record`
    /// while an exit nested `record` -> `retired`, and both hung.)
    pub(crate) retired: Mutex<WorkerRecord>,
    pub(crate) metrics: PoolMetrics,
}

/// One worker's flags and record.
pub(crate) struct WorkerState {
    /// Set by [`request_stop`](Self::request_stop); read before each receive.
    pub(crate) stop: AtomicBool,
    /// Fired with `stop`: wakes the worker if it is waiting for an event.
    wake: Interrupt,
    /// Turns of the worker loop (unit tests: an idle worker makes one, then sleeps).
    #[cfg(test)]
    pub(crate) turns: AtomicU64,
    /// 1 + nanoseconds since the pool's epoch when the current event started; 0 when
    /// idle.
    pub(crate) busy_since: AtomicU64,
    /// Never held together with the pool's `retired` (see the lock order there).
    pub(crate) record: Mutex<WorkerRecord>,
    /// Set, under the pool's `retired` lock, once the record has been merged there.
    pub(crate) exited: AtomicBool,
    /// Nanoseconds since the pool's epoch when the worker was started: utilisation
    /// counts a worker's capacity from then, not over the whole window.
    pub(crate) started: u64,
}

impl WorkerState {
    /// Tells the worker to stop after the event it holds; wakes it if it is waiting
    /// for one. Idempotent.
    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake.fire();
    }

    pub(crate) fn new(started: u64) -> Self {
        WorkerState {
            started,
            stop: AtomicBool::new(false),
            wake: Interrupt::new(),
            #[cfg(test)]
            turns: AtomicU64::new(0),
            busy_since: AtomicU64::new(0),
            record: Mutex::new(WorkerRecord::new()),
            exited: AtomicBool::new(false),
        }
    }
}

/// Everything [`PoolShared::new`] needs.
pub(crate) struct PoolParts<E> {
    pub(crate) name: std::sync::Arc<str>,
    pub(crate) subscription: Subscription<E>,
    pub(crate) handler: Handler<E>,
    pub(crate) dead_letter: Option<DeadLetterHook<E>>,
}

impl<E: Clone + Send + 'static> PoolShared<E> {
    pub(crate) fn new(parts: PoolParts<E>) -> Self {
        PoolShared {
            metrics: PoolMetrics::new(&parts.name),
            name: parts.name,
            subscription: parts.subscription,
            handler: parts.handler,
            dead_letter: parts.dead_letter,
            epoch: Instant::now(),
            draining: AtomicBool::new(false),
            drain_deadline: AtomicU64::new(0),
            deadline_hit: AtomicBool::new(false),
            counters: PoolCounters::default(),
            exits: Mutex::new(0),
            exited: Condvar::new(),
            retired: Mutex::new(WorkerRecord::new()),
        }
    }

    pub(crate) fn nanos_since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Switches every worker to draining until `deadline`, and takes the subscription
    /// off the bus: no new event arrives, and once what is buffered is gone the
    /// workers see the disconnect instead of waiting.
    pub(crate) fn start_draining(&self, deadline: Instant) {
        self.drain_deadline
            .store(self.nanos_since_epoch(deadline), Ordering::Relaxed);
        // Release: a worker that sees `draining` sees the deadline.
        self.draining.store(true, Ordering::Release);
        self.subscription.unsubscribe();
    }

    /// The body of a worker thread.
    pub(crate) fn run_worker(&self, me: &WorkerState) {
        loop {
            #[cfg(test)]
            me.turns.fetch_add(1, Ordering::Relaxed);
            if me.stop.load(Ordering::Acquire) {
                break;
            }
            let deadline = if self.draining.load(Ordering::Acquire) {
                let deadline = self.drain_deadline.load(Ordering::Relaxed);
                if self.nanos_since_epoch(Instant::now()) >= deadline {
                    self.deadline_hit.store(true, Ordering::Release);
                    break;
                }
                Some(self.epoch + Duration::from_nanos(deadline))
            } else {
                // Idle waits have no deadline: a stop request wakes the wait.
                None
            };
            match self.receive(me, deadline) {
                // Received: handled here whatever the flags say now (module docs).
                Ok(event) => self.handle(me, event),
                // Woken to stop, or the drain deadline passed: the flags say which.
                Err(RecvTimeoutError::Timeout) => continue,
                // Drained after `start_draining` (or the bus is gone).
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.exit(me);
    }

    /// Waits for an event until `deadline` (if any) or until this worker is told to
    /// stop (`Timeout` then).
    #[cfg(not(pipeline_loom))]
    fn receive(&self, me: &WorkerState, deadline: Option<Instant>) -> Result<E, RecvTimeoutError> {
        self.subscription
            .receive_interruptible(true, deadline, Some(&me.wake))
    }

    /// Loom has no time (a deadline would pass at once and a draining worker would
    /// stop early), so under loom a worker waits for an event, the disconnect that
    /// draining causes, or a stop request made before it went to sleep (loom's
    /// stand-in interrupt does not wake a sleeping wait). What loom checks, the flags
    /// around the receive, is the same.
    #[cfg(pipeline_loom)]
    fn receive(&self, me: &WorkerState, _deadline: Option<Instant>) -> Result<E, RecvTimeoutError> {
        self.subscription
            .receive_interruptible(true, None, Some(&me.wake))
    }

    fn handle(&self, me: &WorkerState, event: E) {
        // The handler takes the event by value; keep a clone for the dead-letter hook.
        let kept = self.dead_letter.as_ref().map(|_| event.clone());
        let started = Instant::now();
        let start = self.nanos_since_epoch(started);
        me.busy_since.store(start + 1, Ordering::Relaxed);
        let outcome = catch_unwind(AssertUnwindSafe(|| (self.handler)(event)));
        let elapsed = started.elapsed();
        me.busy_since.store(0, Ordering::Relaxed);
        lock(&me.record).record(start, elapsed);
        self.metrics.processing.record(elapsed.as_secs_f64());
        let (reason, counter) = match outcome {
            Ok(Ok(())) => {
                self.counters.processed.fetch_add(1, Ordering::Release);
                self.metrics.processed.increment(1);
                return;
            }
            Ok(Err(error)) => {
                tracing::warn!(pool = %self.name, %error, "pool: handler failed");
                self.metrics.failed.increment(1);
                (DeadLetterReason::Failed(error), &self.counters.failed)
            }
            Err(payload) => {
                let message = panic_message(payload.as_ref());
                tracing::error!(
                    pool = %self.name,
                    panic = %message,
                    "pool: handler panicked; the worker goes on"
                );
                self.metrics.panics.increment(1);
                (DeadLetterReason::Panicked(message), &self.counters.panics)
            }
        };
        if let (Some(hook), Some(event)) = (&self.dead_letter, kept) {
            let letter = DeadLetter {
                event,
                reason,
                pool: self.name.clone(),
            };
            if catch_unwind(AssertUnwindSafe(|| hook(letter))).is_err() {
                self.counters
                    .dead_letter_panics
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(pool = %self.name, "pool: dead-letter hook panicked");
            }
            self.counters.dead_letters.fetch_add(1, Ordering::Relaxed);
            self.metrics.dead_letters.increment(1);
        }
        // Counted last: once an event counts as finished, its dead letter is out.
        counter.fetch_add(1, Ordering::Release);
    }

    /// Merges the worker's record into the pool's and counts the exit.
    fn exit(&self, me: &WorkerState) {
        let now = self.nanos_since_epoch(Instant::now());
        // A copy, so that `record` and `retired` are never held together (the lock
        // order on `PoolShared::retired`). The record itself stays as it is: until
        // `exited` is set, `stats()` counts it from there; after, from `retired`.
        let last = {
            let mut record = lock(&me.record);
            record.lived(me.started, now);
            record.clone()
        };
        {
            let mut retired = lock(&self.retired);
            retired.merge(&last);
            me.exited.store(true, Ordering::Release);
        }
        *lock(&self.exits) += 1;
        self.exited.notify_all();
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}
