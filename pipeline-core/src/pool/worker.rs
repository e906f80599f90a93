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
//! under a mutex with a condition variable and a waker list (`notify::Exits`), so
//! `shutdown` can wait for all workers with a deadline instead of an unbounded `join`,
//! and `shutdown_async` can wait as a task.
//!
//! Task workers (feature `tokio`, `task.rs`) follow the same protocol with the same
//! records; only the waiting differs: the stop request wakes the task's waker
//! (`notify::StopWaker`) instead of an [`Interrupt`], and an idle task waits for its
//! subscription's `recv_async` or that waker. Everything here that both kinds share
//! (the drain check, the bookkeeping around a handler call, the exit) is written once.

use super::error::{DeadLetter, DeadLetterReason, HandlerError, panic_message};
use super::notify::{Exits, StopWaker};
use super::stats::WorkerRecord;
use crate::bus::Subscription;
use crate::channel::{Interrupt, RecvTimeoutError};
pub(crate) use crate::sync::thread;
use crate::sync::{
    Mutex,
    atomic::{AtomicBool, AtomicU64, Ordering},
    lock,
};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

pub(crate) type Handler<E> = Box<dyn Fn(E) -> Result<(), HandlerError> + Send + Sync>;

/// The dead-letter hook, with the way to copy an event for it: only a pool that has a
/// hook clones events, so only [`dead_letter`](super::WorkerPoolBuilder::dead_letter)
/// needs `E: Clone`.
pub(crate) struct DeadLetterHook<E> {
    pub(crate) hook: Box<dyn Fn(DeadLetter<E>) + Send + Sync>,
    pub(crate) clone: fn(&E) -> E,
}

/// What the workers run: a sync handler on threads, or an async one on tasks.
pub(crate) enum Work<E> {
    Threads(Handler<E>),
    #[cfg(feature = "tokio")]
    Tasks(super::task::Tasks<E>),
}

/// A handler call in progress: when it started, and the thread's CPU clock then when
/// this call is one the worker samples for CPU time (see [`CPU_SAMPLE_MASK`]).
pub(crate) struct Begun {
    started: Instant,
    /// `started` in nanoseconds since the pool's epoch.
    start: u64,
    /// The thread's CPU time at the start, for a sampled thread-worker call.
    cpu_start: Option<Duration>,
    /// Whether this call is sampled for CPU time (read by async workers, which
    /// measure it per poll).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) sampled: bool,
}

/// A worker measures the CPU time of one handler call in `CPU_SAMPLE_MASK + 1` (its
/// own count): the thread CPU clock is a system call (about 0.2 us), too dear for
/// every event of a fast handler, and a sample is enough for the controller's CPU per
/// event.
const CPU_SAMPLE_MASK: u64 = 7;

/// The CPU time the calling thread has used, where the OS tells it (Linux:
/// `CLOCK_THREAD_CPUTIME_ID`).
#[cfg(all(target_os = "linux", not(miri)))]
pub(crate) fn thread_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the call only writes it.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0;
    ok.then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// The CPU time the calling thread has used: not measured on this platform.
#[cfg(not(all(target_os = "linux", not(miri))))]
pub(crate) fn thread_cpu_time() -> Option<Duration> {
    None
}

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
    pub(crate) fn new(pool: &str, pipeline: &str) -> Self {
        let labels = || [("pipeline", pipeline.to_owned()), ("pool", pool.to_owned())];
        PoolMetrics {
            workers: metrics::gauge!("pipeline_pool_workers", &labels()),
            utilisation: metrics::gauge!("pipeline_pool_utilisation_ratio", &labels()),
            processed: metrics::counter!("pipeline_pool_processed_total", &labels()),
            failed: metrics::counter!("pipeline_pool_failed_total", &labels()),
            panics: metrics::counter!("pipeline_pool_panics_total", &labels()),
            dead_letters: metrics::counter!("pipeline_pool_dead_letters_total", &labels()),
            processing: metrics::histogram!("pipeline_pool_processing_seconds", &labels()),
        }
    }
}

/// What every worker of one pool shares.
pub(crate) struct PoolShared<E> {
    pub(crate) name: std::sync::Arc<str>,
    pub(crate) subscription: Subscription<E>,
    pub(crate) work: Work<E>,
    dead_letter: Option<DeadLetterHook<E>>,
    /// The pool's time origin; worker records count nanoseconds from it.
    pub(crate) epoch: Instant,
    pub(crate) draining: AtomicBool,
    /// Nanoseconds since `epoch`; read only once `draining` is set.
    drain_deadline: AtomicU64,
    /// Set by a worker that stopped draining because the deadline passed.
    pub(crate) deadline_hit: AtomicBool,
    pub(crate) counters: PoolCounters,
    /// Workers that have exited, to wait on (blocking or async).
    pub(crate) exits: Exits,
    /// The records of exited workers; also the lock that orders a worker's exit
    /// against `stats()` (see [`WorkerState::exited`]).
    ///
    /// Lock order: `WorkerPool::workers`, then `retired` *or* one worker's
    /// [`WorkerState::record`], never both: each of those two is taken alone, so a
    /// worker (which never takes `workers`) holds at most one lock at a time. `exits`
    /// (and a task worker's `StopWaker`) is taken alone. (Issue 13, finding 8:
    /// `stats()` nested `retired` -> `record` while an exit nested `record` ->
    /// `retired`, and both hung.)
    pub(crate) retired: Mutex<WorkerRecord>,
    pub(crate) metrics: PoolMetrics,
}

/// One worker's flags and record.
pub(crate) struct WorkerState {
    /// Set by [`request_stop`](Self::request_stop); read before each receive.
    pub(crate) stop: AtomicBool,
    /// Fired with `stop`: wakes the worker if it is waiting for an event.
    wake: StopWake,
    /// Turns of the worker loop (unit tests: an idle worker makes one, then sleeps).
    #[cfg(test)]
    pub(crate) turns: AtomicU64,
    /// Polls of a task worker's wait for an event (unit tests: an idle task is polled
    /// once, then sleeps until a wake-up).
    #[cfg(all(test, feature = "tokio"))]
    pub(crate) polls: AtomicU64,
    /// 1 + nanoseconds since the pool's epoch when the current event started; 0 when
    /// idle.
    pub(crate) busy_since: AtomicU64,
    /// Handler calls begun by this worker (written by the worker only): picks the
    /// calls sampled for CPU time.
    pub(crate) calls: AtomicU64,
    /// Never held together with the pool's `retired` (see the lock order there).
    pub(crate) record: Mutex<WorkerRecord>,
    /// Set, under the pool's `retired` lock, once the record has been merged there.
    pub(crate) exited: AtomicBool,
    /// Nanoseconds since the pool's epoch when the worker was started: utilisation
    /// counts a worker's capacity from then, not over the whole window.
    pub(crate) started: u64,
}

/// How a stop request wakes a waiting worker.
enum StopWake {
    /// A thread blocked in the channel's receive.
    Thread(Interrupt),
    /// A task waiting for `recv_async` or this waker.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    Task(StopWaker),
}

impl WorkerState {
    /// Tells the worker to stop after the event it holds; wakes it if it is waiting
    /// for one. Idempotent.
    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        match &self.wake {
            StopWake::Thread(interrupt) => interrupt.fire(),
            StopWake::Task(waker) => waker.wake(),
        }
    }

    /// The interrupt of a thread worker's receive.
    fn interrupt(&self) -> Option<&Interrupt> {
        match &self.wake {
            StopWake::Thread(interrupt) => Some(interrupt),
            StopWake::Task(_) => None,
        }
    }

    /// The stop waker of a task worker.
    #[cfg(feature = "tokio")]
    pub(crate) fn stop_waker(&self) -> &StopWaker {
        match &self.wake {
            StopWake::Task(waker) => waker,
            StopWake::Thread(_) => unreachable!("a thread worker has no stop waker"),
        }
    }

    /// The state of a thread worker started at `started` (nanoseconds since the
    /// pool's epoch).
    pub(crate) fn for_thread(started: u64) -> Self {
        Self::new(started, StopWake::Thread(Interrupt::new()))
    }

    /// The state of a task worker started at `started`.
    #[cfg(feature = "tokio")]
    pub(crate) fn for_task(started: u64) -> Self {
        Self::new(started, StopWake::Task(StopWaker::new()))
    }

    fn new(started: u64, wake: StopWake) -> Self {
        WorkerState {
            started,
            stop: AtomicBool::new(false),
            wake,
            #[cfg(test)]
            turns: AtomicU64::new(0),
            #[cfg(all(test, feature = "tokio"))]
            polls: AtomicU64::new(0),
            busy_since: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            record: Mutex::new(WorkerRecord::new()),
            exited: AtomicBool::new(false),
        }
    }
}

/// Everything [`PoolShared::new`] needs.
pub(crate) struct PoolParts<E> {
    pub(crate) name: std::sync::Arc<str>,
    pub(crate) subscription: Subscription<E>,
    pub(crate) work: Work<E>,
    pub(crate) dead_letter: Option<DeadLetterHook<E>>,
}

impl<E> PoolShared<E> {
    pub(crate) fn new(parts: PoolParts<E>) -> Self {
        PoolShared {
            metrics: PoolMetrics::new(&parts.name, parts.subscription.bus_name()),
            name: parts.name,
            subscription: parts.subscription,
            work: parts.work,
            dead_letter: parts.dead_letter,
            epoch: Instant::now(),
            draining: AtomicBool::new(false),
            drain_deadline: AtomicU64::new(0),
            deadline_hit: AtomicBool::new(false),
            counters: PoolCounters::default(),
            exits: Exits::new(),
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

    /// What a worker may do before its next receive: `Err` to exit (told to stop, or
    /// the drain deadline passed), else `Ok` with the drain deadline, if draining.
    #[inline]
    pub(crate) fn before_receive(&self, me: &WorkerState) -> Result<Option<Instant>, ()> {
        #[cfg(test)]
        me.turns.fetch_add(1, Ordering::Relaxed);
        if me.stop.load(Ordering::Acquire) {
            return Err(());
        }
        if self.draining.load(Ordering::Acquire) {
            let deadline = self.drain_deadline.load(Ordering::Relaxed);
            if self.nanos_since_epoch(Instant::now()) >= deadline {
                self.deadline_hit.store(true, Ordering::Release);
                return Err(());
            }
            Ok(Some(self.epoch + Duration::from_nanos(deadline)))
        } else {
            // Idle waits have no deadline: a stop request wakes the wait.
            Ok(None)
        }
    }

    /// The body of a worker thread.
    pub(crate) fn run_worker(&self, me: &WorkerState) {
        // One variant without the `tokio` feature.
        #[cfg_attr(not(feature = "tokio"), allow(clippy::infallible_destructuring_match))]
        let handler = match &self.work {
            Work::Threads(handler) => handler,
            #[cfg(feature = "tokio")]
            Work::Tasks(_) => unreachable!("a pool of task workers starts no thread"),
        };
        while let Ok(deadline) = self.before_receive(me) {
            match self.receive(me, deadline) {
                // Received: handled here whatever the flags say now (module docs).
                Ok(event) => self.handle(me, event, handler),
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
            .receive_interruptible(true, deadline, me.interrupt())
    }

    /// Loom has no time (a deadline would pass at once and a draining worker would
    /// stop early), so under loom a worker waits for an event, the disconnect that
    /// draining causes, or a stop request made before it went to sleep (loom's
    /// stand-in interrupt does not wake a sleeping wait). What loom checks, the flags
    /// around the receive, is the same.
    #[cfg(pipeline_loom)]
    fn receive(&self, me: &WorkerState, _deadline: Option<Instant>) -> Result<E, RecvTimeoutError> {
        self.subscription
            .receive_interruptible(true, None, me.interrupt())
    }

    fn handle(&self, me: &WorkerState, event: E, handler: &Handler<E>) {
        let kept = self.keep(&event);
        let begun = self.begin(me, true);
        let outcome = catch_unwind(AssertUnwindSafe(|| handler(event)));
        self.finish(me, begun, outcome, kept, None);
    }

    /// The handler takes the event by value; with a dead-letter hook, a clone is kept
    /// for it.
    #[inline]
    pub(crate) fn keep(&self, event: &E) -> Option<E> {
        self.dead_letter.as_ref().map(|hook| (hook.clone)(event))
    }

    /// Marks the worker busy: a handler call starts. `thread` says whether the call
    /// runs on this thread to its end (a thread worker), so the thread's CPU clock
    /// measures it; a task's handler is measured per poll instead (`pool/task.rs`).
    #[inline]
    pub(crate) fn begin(&self, me: &WorkerState, thread: bool) -> Begun {
        let calls = me.calls.load(Ordering::Relaxed);
        me.calls.store(calls.wrapping_add(1), Ordering::Relaxed);
        let sampled = calls & CPU_SAMPLE_MASK == 0;
        let cpu_start = if sampled && thread {
            thread_cpu_time()
        } else {
            None
        };
        let started = Instant::now();
        let start = self.nanos_since_epoch(started);
        me.busy_since.store(start + 1, Ordering::Relaxed);
        Begun {
            started,
            start,
            cpu_start,
            sampled,
        }
    }

    /// Records a finished handler call: busy time, latency, the outcome's counters and
    /// metrics, and the dead letter of a failure or panic (with the clone `kept`).
    pub(crate) fn finish(
        &self,
        me: &WorkerState,
        begun: Begun,
        outcome: std::thread::Result<Result<(), HandlerError>>,
        kept: Option<E>,
        cpu: Option<Duration>,
    ) {
        let Begun {
            started,
            start,
            cpu_start,
            ..
        } = begun;
        let elapsed = started.elapsed();
        // Only a sampled thread call reads the CPU clock again.
        let cpu = cpu
            .or_else(|| cpu_start.and_then(|start| Some(thread_cpu_time()?.saturating_sub(start))));
        me.busy_since.store(0, Ordering::Relaxed);
        // Busy and CPU totals ride in the worker's own record (one lock it takes per
        // event anyway), not in counters every worker would write.
        lock(&me.record).record(start, elapsed, cpu);
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
            if catch_unwind(AssertUnwindSafe(|| (hook.hook)(letter))).is_err() {
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
    pub(crate) fn exit(&self, me: &WorkerState) {
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
        self.exits.record();
    }
}
