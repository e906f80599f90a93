//! [`WorkerPool`]: spawning, resizing, measuring and shutting down workers.

use super::builder::{WORKER_NAMES, WorkerPoolBuilder};
use super::error::PoolError;
use super::stats::{PoolStats, WorkerRecord, window_start};
use super::worker::{PoolShared, Work, WorkerState, thread};
use crate::range::Bounds;
use crate::sync::{Arc, Mutex, atomic::Ordering, lock};
use std::fmt;
use std::time::{Duration, Instant};

/// N workers taking events from one [`Subscription`](crate::bus::Subscription) and
/// calling a handler for each: threads, or tokio tasks with an async handler (feature
/// `tokio`); built with [`WorkerPool::builder`].
///
/// See the [module docs](super) for resize, panic and shutdown semantics. It is `Send`
/// and `Sync`: share it in an `Arc` (with a control loop, say) and shut it down with
/// [`drain`](Self::drain) from any holder.
pub struct WorkerPool<E> {
    shared: Arc<PoolShared<E>>,
    /// Taken first: `stats()` holds it while it takes `shared.retired` and then each
    /// worker's `record`, one at a time (the lock order is on `PoolShared::retired`).
    /// Workers never take it.
    workers: Mutex<Workers>,
    /// The subscription's receive count when the pool took it over.
    received_at_start: u64,
}

struct Workers {
    /// The range `resize` clamps into: set by the builder, moved by
    /// `set_worker_range`.
    range: Bounds,
    active: Vec<Worker>,
    /// Told to stop; joined once they have exited.
    retiring: Vec<Worker>,
    spawned: usize,
}

struct Worker {
    state: Arc<WorkerState>,
    runner: Runner,
}

/// What runs a worker.
enum Runner {
    Thread(thread::JoinHandle<()>),
    /// A detached tokio task, followed through its state and the exit count.
    #[cfg(feature = "tokio")]
    Task,
}

/// How `end_drain` treats the threads of exited workers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Join {
    /// Join them (they are done: it returns at once in practice).
    Blocking,
    /// Join those whose thread has returned, detach the others: never blocks.
    #[cfg(feature = "tokio")]
    IfFinished,
}

/// What [`WorkerPool::shutdown`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainReport {
    /// Events the pool finished over its whole life, before or during the shutdown:
    /// processed, failed or panicked (each either succeeded or went to the dead-letter
    /// hook). With nothing dropped, `processed + left` is every event the subscription
    /// took in while the pool owned it.
    pub processed: u64,
    /// Events not finished: still in the subscription, or held by a worker that was
    /// still in its handler at the deadline.
    pub left: u64,
    /// Whether the deadline stopped the drain before the subscription was empty.
    pub deadline_passed: bool,
    /// Workers still in their handler at the deadline. They are detached: each finishes
    /// its event, then exits without taking another.
    pub unfinished_workers: usize,
}

impl<E: Send + 'static> WorkerPool<E> {
    /// A builder for a pool called `name` (used in thread names, logs and metrics).
    pub fn builder(name: impl Into<std::sync::Arc<str>>) -> WorkerPoolBuilder<E> {
        WorkerPoolBuilder::new(name.into())
    }

    pub(crate) fn start(
        shared: PoolShared<E>,
        workers: usize,
        range: Bounds,
    ) -> Result<Self, PoolError> {
        let received_at_start = shared.subscription.stats().received;
        let pool = WorkerPool {
            shared: Arc::new(shared),
            workers: Mutex::new(Workers {
                range,
                active: Vec::new(),
                retiring: Vec::new(),
                spawned: 0,
            }),
            received_at_start,
        };
        pool.resize(workers)?;
        tracing::info!(pool = %pool.shared.name, workers, min = range.min, max = range.max, "pool: started");
        Ok(pool)
    }

    fn spawn_worker(&self, workers: &mut Workers) -> Result<(), PoolError> {
        let started = self.shared.nanos_since_epoch(Instant::now());
        let worker = match &self.shared.work {
            Work::Threads(_) => {
                let state = Arc::new(WorkerState::for_thread(started));
                let shared = self.shared.clone();
                let mine = state.clone();
                let thread = thread::Builder::new()
                    .name(format!("{}-{}", self.shared.name, workers.spawned))
                    .spawn(move || shared.run_worker(&mine))
                    .map_err(PoolError::Spawn)?;
                Worker {
                    state,
                    runner: Runner::Thread(thread),
                }
            }
            #[cfg(feature = "tokio")]
            Work::Tasks(tasks) => {
                let state = Arc::new(WorkerState::for_task(started));
                tasks.spawn(&self.shared, &state);
                Worker {
                    state,
                    runner: Runner::Task,
                }
            }
        };
        workers.spawned += 1;
        workers.active.push(worker);
        Ok(())
    }

    /// Sets the number of workers, **clamped** into `[min_workers, max_workers]` (see
    /// [`set_worker_range`](Self::set_worker_range)), and returns the number now in
    /// force. Returns at once.
    ///
    /// Growing starts threads (tasks, for an async handler). Shrinking tells the newest
    /// workers to stop: each one finishes the event it holds and takes no other, so no
    /// event is lost; events still buffered stay for the remaining workers. A stopped
    /// worker that was waiting for an event is woken at once (no polling); if an event
    /// reached it first, it handles that one, then stops.
    ///
    /// Once a shutdown ([`drain`](Self::drain) and friends) has begun, it starts and
    /// stops nothing and returns the workers still counted.
    ///
    /// # Errors
    ///
    /// [`PoolError::Spawn`] if a thread could not be started; the workers started
    /// before it keep running.
    pub fn resize(&self, workers: usize) -> Result<usize, PoolError> {
        let mut w = lock(&self.workers);
        let target = w.range.clamp(workers);
        self.resize_locked(&mut w, target, workers)
    }

    /// Sets the range `[min, max]` that [`resize`](Self::resize) clamps into (the one
    /// given to the builder by [`min_workers`](WorkerPoolBuilder::min_workers) and
    /// [`max_workers`](WorkerPoolBuilder::max_workers)), and returns the number of
    /// workers now in force.
    ///
    /// A worker count outside the new range is moved into it at once: clamped to the
    /// nearer bound, by a resize like any other (nothing is lost, it is logged).
    /// [`stats`](Self::stats) reports the new range from then on. Once a shutdown has
    /// begun the range is still recorded, but no worker is started or stopped.
    ///
    /// # Errors
    ///
    /// [`PoolError::InvalidConfig`] naming `min_workers` or `max_workers` unless
    /// `1 <= min <= max` (nothing changes then); [`PoolError::Spawn`] as for
    /// [`resize`](Self::resize).
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_core::bus::{Bus, SubscriptionConfig};
    /// use pipeline_core::pool::{PoolError, WorkerPool};
    /// use std::time::Duration;
    ///
    /// let bus = Bus::new();
    /// let sub = bus.subscribe(SubscriptionConfig::new("jobs")).unwrap();
    /// let pool = WorkerPool::builder("jobs")
    ///     .workers(4)
    ///     .min_workers(1)
    ///     .max_workers(8)
    ///     .handler(|_job: u32| Ok(()))
    ///     .spawn(sub)
    ///     .unwrap();
    /// assert_eq!(pool.set_worker_range(1, 2).unwrap(), 2); // 4 is above: clamped at once
    /// let stats = pool.stats();
    /// assert_eq!((stats.min_workers, stats.max_workers), (1, 2));
    /// assert_eq!(pool.resize(10).unwrap(), 2); // resizes clamp into the new range
    /// assert!(matches!(
    ///     pool.set_worker_range(0, 2),
    ///     Err(PoolError::InvalidConfig { field: "min_workers", .. })
    /// ));
    /// # pool.shutdown(Duration::from_secs(5));
    /// ```
    pub fn set_worker_range(&self, min: usize, max: usize) -> Result<usize, PoolError> {
        let mut w = lock(&self.workers);
        let before = w
            .range
            .replace(&WORKER_NAMES, min, max)
            .map_err(|(field, rule)| PoolError::InvalidConfig { field, rule })?;
        if before != w.range {
            tracing::info!(pool = %self.shared.name, from = %before, to = %w.range, "pool: worker range set");
        }
        let workers = w.active.len();
        let target = w.range.clamp(workers);
        self.resize_locked(&mut w, target, workers)
    }

    /// Moves the worker count to `target` (already within the range) and returns the
    /// count in force; `requested` is what was asked, for the log.
    fn resize_locked(
        &self,
        w: &mut Workers,
        target: usize,
        requested: usize,
    ) -> Result<usize, PoolError> {
        if self.shared.draining.load(Ordering::Acquire) {
            // Checked under `workers`: a drain that began before this lock counted
            // every worker it waits for, and none starts after.
            return Ok(w.active.len());
        }
        reap(&mut w.retiring);
        let before = w.active.len();
        while w.active.len() < target {
            self.spawn_worker(w)?;
        }
        while w.active.len() > target {
            if let Some(worker) = w.active.pop() {
                worker.state.request_stop();
                w.retiring.push(worker);
            }
        }
        self.shared.metrics.workers.set(target as f64);
        if before != target {
            tracing::info!(
                pool = %self.shared.name,
                from = before,
                to = target,
                requested,
                "pool: resized"
            );
        }
        Ok(target)
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The workers' gauges and counters (see [`PoolStats`]). Merges the workers'
    /// latency histograms, so call it for periodic sampling, not per event. Also sets
    /// the `pipeline_pool_utilisation_ratio` gauge.
    pub fn stats(&self) -> PoolStats {
        let shared = &self.shared;
        let w = lock(&self.workers);
        let now = shared.nanos_since_epoch(Instant::now());
        let from = window_start(now);
        let mut record = WorkerRecord::new();
        let mut in_progress = 0;
        // Worker-nanoseconds on offer in the window: each worker counts from its start
        // (or the window's) to its exit (or now), so a pool that just grew is not
        // measured as if its new workers had idled through the whole window.
        let mut capacity = 0;
        // Each record is counted exactly once, without holding `retired` and a
        // worker's `record` together (the lock order in `PoolShared::retired`). A worker
        // sets `exited` under `retired` when it merges its record there, so the
        // workers not exited as seen under `retired` are exactly those whose records
        // are not in it. Their own records are read next; one that exits meanwhile
        // leaves its record as it is, so it is still counted once, from there.
        let live: Vec<&WorkerState> = {
            let retired = lock(&shared.retired);
            record.merge(&retired);
            capacity += retired.alive_in_window(now);
            w.active
                .iter()
                .chain(&w.retiring)
                .map(|worker| &*worker.state)
                .filter(|state| !state.exited.load(Ordering::Acquire))
                .collect()
        };
        for state in live {
            record.merge(&lock(&state.record));
            capacity += now.saturating_sub(state.started.max(from));
            let since = state.busy_since.load(Ordering::Relaxed);
            if since != 0 {
                in_progress += now.saturating_sub((since - 1).max(from));
            }
        }
        let retiring = w
            .retiring
            .iter()
            .filter(|x| !x.state.exited.load(Ordering::Acquire))
            .count();
        // Workers that exited on their own (the subscription was closed) no longer count.
        let workers = w
            .active
            .iter()
            .filter(|x| !x.state.exited.load(Ordering::Acquire))
            .count();
        let busy = record.busy_in_window(now) + in_progress;
        let utilisation = if capacity > 0 {
            (busy as f64 / capacity as f64).clamp(0.0, 1.0)
        } else {
            0.0
        };
        shared.metrics.utilisation.set(utilisation);
        let c = &shared.counters;
        PoolStats {
            name: shared.name.clone(),
            workers,
            retiring,
            min_workers: w.range.min,
            max_workers: w.range.max,
            utilisation,
            processed: c.processed.load(Ordering::Acquire),
            failed: c.failed.load(Ordering::Acquire),
            panics: c.panics.load(Ordering::Acquire),
            dead_letters: c.dead_letters.load(Ordering::Relaxed),
            dead_letter_panics: c.dead_letter_panics.load(Ordering::Relaxed),
            queued: shared.subscription.len(),
            latency: record.latency(),
            busy_time: record.busy(),
            cpu: record.cpu(),
        }
    }

    /// Stops accepting, drains the subscription and stops every worker, waiting at most
    /// `timeout`.
    ///
    /// The subscription is taken off the bus first, so events published from now on
    /// are not for this pool (stop the sources before, if none may be lost). The
    /// workers take what is buffered until it is gone or the deadline passes, then
    /// exit. A worker still in its handler at the deadline is not waited for: it is
    /// detached, finishes that event and exits, and the event counts in
    /// [`DrainReport::left`].
    ///
    /// This blocks the calling thread: from async code use `shutdown_async` (feature
    /// `tokio`). On the thread of a
    /// current-thread runtime that runs the pool's own task workers it would keep them
    /// from running until the deadline.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_core::bus::{Bus, SubscriptionConfig};
    /// use pipeline_core::pool::WorkerPool;
    /// use std::time::Duration;
    ///
    /// let bus = Bus::new();
    /// let sub = bus.subscribe(SubscriptionConfig::new("jobs")).unwrap();
    /// let pool = WorkerPool::builder("jobs")
    ///     .workers(2)
    ///     .handler(|_job: i32| Ok(()))
    ///     .spawn(sub)
    ///     .unwrap();
    /// let publisher = bus.publisher();
    /// (0..100).for_each(|i| publisher.publish(i).unwrap());
    /// drop(publisher); // stop the sources first
    ///
    /// let report = pool.shutdown(Duration::from_secs(30));
    /// assert_eq!((report.processed, report.left, report.deadline_passed), (100, 0, false));
    /// ```
    pub fn shutdown(self, timeout: Duration) -> DrainReport {
        self.drain(timeout)
    }

    /// [`shutdown`](Self::shutdown) through a shared reference, for a pool shared in
    /// an `Arc` (with a control loop, say): the same drain and the same report. From
    /// then on [`resize`](Self::resize) starts nothing; a second call waits (until its
    /// own deadline) only for workers the first one left running, and reports again.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_core::bus::{Bus, SubscriptionConfig};
    /// use pipeline_core::pool::WorkerPool;
    /// use std::sync::Arc;
    /// use std::time::Duration;
    ///
    /// let bus = Bus::new();
    /// let sub = bus.subscribe(SubscriptionConfig::new("jobs")).unwrap();
    /// let pool = WorkerPool::builder("jobs").workers(2).handler(|_: u8| Ok(()));
    /// let pool = Arc::new(pool.spawn(sub).unwrap());
    /// let knob = pool.clone(); // held elsewhere, say by a controller
    /// bus.publisher().publish(1).unwrap();
    /// let report = pool.drain(Duration::from_secs(30));
    /// assert_eq!((report.processed, report.left), (1, 0));
    /// assert_eq!(knob.resize(2).unwrap(), 0); // shut down: nothing starts
    /// ```
    pub fn drain(&self, timeout: Duration) -> DrainReport {
        let deadline = Instant::now() + timeout;
        let spawned = self.begin_drain(deadline);
        self.shared.exits.wait(spawned, deadline);
        self.end_drain(spawned, Join::Blocking)
    }

    /// [`shutdown`](Self::shutdown) for async code (feature `tokio`): the same drain
    /// and report, waiting as a task, never blocking a runtime thread. Works for thread
    /// and task workers alike. Exits are awaited through wakers, the deadline with
    /// `tokio::time`, so it must run on a runtime with its time driver enabled.
    /// Threads of exited workers are joined only if they have returned, else detached
    /// (they are about to return).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "tokio")] {
    /// use pipeline_core::bus::{Bus, SubscriptionConfig};
    /// use pipeline_core::pool::WorkerPool;
    /// use std::time::Duration;
    ///
    /// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// runtime.block_on(async {
    ///     let bus = Bus::new();
    ///     let sub = bus.subscribe(SubscriptionConfig::new("jobs")).unwrap();
    ///     let pool = WorkerPool::builder("jobs")
    ///         .workers(4)
    ///         .async_handler(|_job: u32| async { Ok(()) }) // tasks on this runtime
    ///         .spawn(sub)
    ///         .unwrap();
    ///     let publisher = bus.publisher();
    ///     (0..10).for_each(|i| publisher.try_publish(i).unwrap()); // never blocks
    ///     drop(publisher);
    ///     let report = pool.shutdown_async(Duration::from_secs(30)).await;
    ///     assert_eq!((report.processed, report.left, report.deadline_passed), (10, 0, false));
    /// });
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn shutdown_async(self, timeout: Duration) -> DrainReport {
        self.drain_async(timeout).await
    }

    /// [`drain`](Self::drain) for async code (feature `tokio`): what
    /// [`shutdown_async`](Self::shutdown_async) does, through a shared reference.
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn drain_async(&self, timeout: Duration) -> DrainReport {
        let deadline = Instant::now() + timeout;
        let spawned = self.begin_drain(deadline);
        let exits = &self.shared.exits;
        let all_exited = std::future::poll_fn(|cx| exits.poll_reached(spawned, cx));
        let deadline_at = tokio::time::Instant::from_std(deadline);
        // At the deadline `end_drain` detaches whoever is left.
        let _ = tokio::time::timeout_at(deadline_at, all_exited).await;
        self.end_drain(spawned, Join::IfFinished)
    }

    /// Switches the pool to draining until `deadline`; returns the workers ever started,
    /// all of which the drain waits for.
    fn begin_drain(&self, deadline: Instant) -> usize {
        self.shared.start_draining(deadline);
        lock(&self.workers).spawned
    }

    /// After the wait: joins (or detaches) the workers, tells those still running to
    /// stop after their event, and makes the report.
    fn end_drain(&self, spawned: usize, join: Join) -> DrainReport {
        #[cfg(not(feature = "tokio"))]
        let Join::Blocking = join;
        let shared = &self.shared;
        let unfinished_workers = spawned.saturating_sub(shared.exits.count());
        let all: Vec<Worker> = {
            let mut w = lock(&self.workers);
            let mut all = std::mem::take(&mut w.active);
            all.append(&mut w.retiring);
            all
        };
        for worker in all {
            if !worker.state.exited.load(Ordering::Acquire) {
                // Detached: it finishes its event and stops (see the module docs). A
                // waiting task (or thread) is woken by this.
                worker.state.request_stop();
                continue;
            }
            match worker.runner {
                Runner::Thread(thread) => {
                    #[cfg(feature = "tokio")]
                    if join == Join::IfFinished && !thread.is_finished() {
                        continue; // detached: it has counted its exit and is returning
                    }
                    let _ = thread.join();
                }
                #[cfg(feature = "tokio")]
                Runner::Task => {}
            }
        }
        let finished = shared.counters.finished();
        let sub = shared.subscription.stats();
        let received = sub.received.saturating_sub(self.received_at_start);
        let in_flight = received.saturating_sub(finished);
        let report = DrainReport {
            processed: finished,
            left: sub.len as u64 + in_flight,
            deadline_passed: unfinished_workers > 0 || shared.deadline_hit.load(Ordering::Acquire),
            unfinished_workers,
        };
        shared.metrics.workers.set(0.0);
        tracing::info!(
            pool = %shared.name,
            processed = report.processed,
            left = report.left,
            deadline_passed = report.deadline_passed,
            unfinished_workers,
            "pool: shut down"
        );
        report
    }
}

/// Joins the retiring workers that have exited.
fn reap(retiring: &mut Vec<Worker>) {
    let (exited, running): (Vec<Worker>, Vec<Worker>) = retiring
        .drain(..)
        .partition(|w| w.state.exited.load(Ordering::Acquire));
    *retiring = running;
    for worker in exited {
        // It has merged its record and counted its exit; only the return is left.
        match worker.runner {
            Runner::Thread(thread) => {
                let _ = thread.join();
            }
            #[cfg(feature = "tokio")]
            Runner::Task => {}
        }
    }
}

impl<E> Drop for WorkerPool<E> {
    /// Tells every worker to stop after its current event; does not wait. What is
    /// buffered stays in the subscription, which goes away with the last worker.
    fn drop(&mut self) {
        let w = lock(&self.workers);
        for worker in w.active.iter().chain(&w.retiring) {
            worker.state.request_stop();
        }
    }
}

impl<E> fmt::Debug for WorkerPool<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = lock(&self.workers);
        f.debug_struct("WorkerPool")
            .field("name", &self.shared.name)
            .field("min", &w.range.min)
            .field("max", &w.range.max)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(pipeline_loom)))]
mod tests {
    use super::*;
    use crate::bus::{Bus, SubscriptionConfig};

    /// Waits (bounded, generously: this only detects a hang) until `done`.
    fn eventually(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn turns(pool: &WorkerPool<u32>) -> (Vec<u64>, Vec<u64>) {
        let w = lock(&pool.workers);
        let of = |list: &Vec<Worker>| {
            list.iter()
                .map(|w| w.state.turns.load(Ordering::Relaxed))
                .collect()
        };
        (of(&w.active), of(&w.retiring))
    }

    /// Issue 13, finding 11: idle workers sleep until an event or their own stop
    /// request, and never wake to poll a flag (the old loop woke every `idle_poll`,
    /// 100 ms, and took that long to free a stopped worker). Each loop turn is
    /// counted: an idle worker makes exactly one, however long it idles; a stopped
    /// one exactly one more, with no event sent.
    #[test]
    fn idle_workers_sleep_until_told_to_stop() {
        let bus = Bus::new();
        let sub = bus.subscribe(SubscriptionConfig::new("s")).unwrap();
        let pool = WorkerPool::builder("idle")
            .workers(3)
            .min_workers(1)
            .max_workers(3)
            .handler(|_: u32| Ok(()))
            .spawn(sub)
            .unwrap();
        eventually("every worker to start waiting", || {
            turns(&pool).0.iter().all(|&t| t == 1)
        });
        // Long enough for a polling worker to wake several times over.
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(turns(&pool), (vec![1, 1, 1], vec![]), "an idle worker woke");
        assert_eq!(pool.resize(1).unwrap(), 1);
        eventually("the stopped workers to exit", || pool.stats().retiring == 0);
        assert_eq!(turns(&pool), (vec![1], vec![2, 2]));
        assert!(!pool.shutdown(Duration::from_secs(60)).deadline_passed);
    }

    #[cfg(feature = "tokio")]
    fn polls(pool: &WorkerPool<u32>) -> (Vec<u64>, Vec<u64>) {
        let w = lock(&pool.workers);
        let of = |list: &Vec<Worker>| {
            list.iter()
                .map(|w| w.state.polls.load(Ordering::Relaxed))
                .collect()
        };
        (of(&w.active), of(&w.retiring))
    }

    /// The same for task workers: an idle task makes one loop turn and is polled once
    /// (its receive is pending, its waker listed), however long it idles: no timer, no
    /// polling. A stop request wakes a stopped task once (one more poll, which sees
    /// the flag, and one more turn, which exits); the others are not woken.
    #[cfg(feature = "tokio")]
    #[test]
    fn idle_tasks_sleep_until_told_to_stop() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let bus = Bus::new();
        let sub = bus.subscribe(SubscriptionConfig::new("s")).unwrap();
        let pool = WorkerPool::builder("idle-tasks")
            .workers(3)
            .min_workers(1)
            .max_workers(3)
            .async_handler(|_: u32| async { Ok(()) })
            .runtime(runtime.handle().clone())
            .spawn(sub)
            .unwrap();
        eventually("every task to start waiting", || {
            polls(&pool).0.iter().all(|&p| p == 1)
        });
        // Long enough for a polling (or timer-driven) task to wake several times over.
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(turns(&pool), (vec![1, 1, 1], vec![]), "an idle task turned");
        assert_eq!(
            polls(&pool),
            (vec![1, 1, 1], vec![]),
            "an idle task was polled"
        );
        assert_eq!(pool.resize(1).unwrap(), 1);
        eventually("the stopped tasks to exit", || pool.stats().retiring == 0);
        assert_eq!(turns(&pool), (vec![1], vec![2, 2]));
        assert_eq!(polls(&pool), (vec![1], vec![2, 2]));
        assert!(!pool.shutdown(Duration::from_secs(60)).deadline_passed);
    }
}
