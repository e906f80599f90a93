//! [`SinkPool`]: a sink run by a worker pool on one subscription, plus its flush
//! thread.

use super::stats::SinkStats;
use super::traits::{Message, Sink, Undelivered};
use crate::util::StopSignal;
use pipeline_core::bus::Subscription;
use pipeline_core::envelope::Envelope;
use pipeline_core::pool::{
    DeadLetterReason, DrainReport, PoolError, WorkerPool, WorkerPoolBuilder,
};
use std::fmt;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Builds a [`SinkPool`]; from [`SinkPool::builder`].
///
/// The pool's settings are a [`WorkerPoolBuilder`]'s, given whole with
/// [`pool`](Self::pool): its name, `workers`, `min_workers` and `max_workers`, checked
/// by it in [`spawn`](Self::spawn). Without one the pool is
/// `WorkerPool::builder("sink-<sink name>")`: one worker, a fixed size.
///
/// # Examples
///
/// ```
/// use pipeline_adapters::sink::{Sink, SinkPool, SinkStats, Undelivered};
/// use pipeline_core::bus::{Bus, SubscriptionConfig};
/// use pipeline_core::envelope::Envelope;
/// use pipeline_core::pool::{HandlerError, WorkerPool};
///
/// struct Discard;
/// impl Sink for Discard {
///     fn name(&self) -> &str { "discard" }
///     fn handle(&self, _: Envelope) -> Result<(), HandlerError> { Ok(()) }
///     fn stats(&self) -> SinkStats { SinkStats::default() }
///     fn dead_letter(&self, _: Undelivered) {}
/// }
///
/// let bus = Bus::new();
/// let default = SinkPool::builder(Discard)
///     .spawn(bus.subscribe(SubscriptionConfig::new("a")).unwrap())
///     .unwrap();
/// assert_eq!(default.pool().name(), "sink-discard");
/// let staged = SinkPool::builder(Discard)
///     // The stage's name (its subscription's too) and its range of workers.
///     .pool(WorkerPool::builder("archive").workers(2).min_workers(1).max_workers(8))
///     .spawn(bus.subscribe(SubscriptionConfig::new("archive")).unwrap())
///     .unwrap();
/// assert_eq!(staged.pool().name(), "archive");
/// assert_eq!(staged.pool().resize(100).unwrap(), 8); // clamped to the range
/// ```
#[must_use = "a builder does nothing until spawn() is called"]
pub struct SinkPoolBuilder<S> {
    sink: Arc<S>,
    pool: WorkerPoolBuilder<Envelope>,
}

impl<S: Sink> SinkPoolBuilder<S> {
    /// The worker pool's settings (default `WorkerPool::builder("sink-<sink name>")`,
    /// one worker): its name, in thread names, logs, the `pool` metrics label and
    /// [`PoolStats::name`](pipeline_core::pool::PoolStats::name), and its `workers`
    /// (concurrent deliveries), `min_workers` and `max_workers` (the range a controller
    /// resizes it in).
    ///
    /// A controller names the pools it resizes by their name, and a pipeline
    /// configuration names a stage's buffer and pool alike: give the pool its
    /// subscription's name to make the sink pool that stage's pool.
    ///
    /// The handler and the dead-letter hook are the sink's: any set on `pool` are
    /// replaced.
    pub fn pool(mut self, pool: WorkerPoolBuilder<Envelope>) -> Self {
        self.pool = pool;
        self
    }

    /// Starts the workers on `subscription` (and the flush thread, if the sink has a
    /// [`flush_interval`](Sink::flush_interval)).
    ///
    /// # Errors
    ///
    /// [`PoolError::InvalidConfig`] naming the setting that breaks its rule,
    /// [`PoolError::Spawn`] if a thread could not be started.
    pub fn spawn(self, subscription: Subscription<Envelope>) -> Result<SinkPool<S>, PoolError> {
        let handler_sink = self.sink.clone();
        let dead_sink = self.sink.clone();
        let pool = self
            .pool
            .handler(move |event: Envelope| handler_sink.handle(event))
            .dead_letter(move |letter| {
                // A handler error was an attempt that failed; a panic was no attempt.
                let (error, attempts) = match letter.reason {
                    DeadLetterReason::Failed(error) => (error.into_inner(), 1),
                    other => (Box::new(Message(other.to_string())) as _, 0),
                };
                dead_sink.dead_letter(Undelivered::new(
                    dead_sink.name(),
                    vec![letter.event],
                    error,
                    attempts,
                ));
            })
            .spawn(subscription)?;
        let flusher = match self.sink.flush_interval() {
            None => None,
            Some(interval) => {
                let stop = StopSignal::new();
                let sink = self.sink.clone();
                let stopping = stop.clone();
                // Dropped when the thread returns: `shutdown` waits on it with a deadline.
                let (exited_tx, exited) = mpsc::channel::<()>();
                let thread = std::thread::Builder::new()
                    .name(format!("{}-flush", pool.name()))
                    .spawn(move || {
                        let _exited = exited_tx;
                        while !stopping.sleep(interval) {
                            sink.flush(false);
                        }
                    })
                    .map_err(PoolError::Spawn)?;
                Some(Flusher {
                    stop,
                    thread,
                    exited: Mutex::new(exited),
                })
            }
        };
        Ok(SinkPool {
            pool: Arc::new(pool),
            sink: self.sink,
            flusher,
            drained: false,
        })
    }
}

impl<S: Sink> fmt::Debug for SinkPoolBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkPoolBuilder")
            .field("sink", &self.sink.name())
            .field("pool", &self.pool)
            .finish()
    }
}

/// A [`Sink`] running on a subscription through a [`WorkerPool`]: a pipeline stage.
///
/// The worker pool is shared ([`pool`](Self::pool) hands out the `Arc`), so a
/// controller can drive the stage like any other: `pipeline-controller`'s
/// `PoolActuator` is implemented for `WorkerPool<E>`, so
/// `sink_pool.pool().clone()` coerces to `Arc<dyn PoolActuator>` for a `ControlLoop`,
/// which then resizes the pool (concurrent deliveries) within
/// `[min_workers, max_workers]` while the stage's subscription, on the bus, is the
/// buffer it resizes. Read the sink's counters with [`stats`](Self::stats) and the
/// pool's with `pool().stats()`.
///
/// # Shutdown order
///
/// Stop the sources, then the control loop (`ControllerHandle::stop`), then call
/// [`shutdown`](Self::shutdown). It drains through the shared handle
/// ([`WorkerPool::drain`]), so it also works while a controller still holds a clone:
/// from then on the controller's resizes start nothing, and what it reads is a pool
/// with no workers. Stopping the controller first keeps its log free of such
/// decisions.
///
/// # Examples
///
/// ```
/// use pipeline_adapters::sink::{Sink, SinkPool, SinkStats, Undelivered};
/// use pipeline_core::bus::{Bus, SubscriptionConfig};
/// use pipeline_core::envelope::Envelope;
/// use pipeline_core::pool::{HandlerError, WorkerPool};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// struct Discard;
/// impl Sink for Discard {
///     fn name(&self) -> &str { "discard" }
///     fn handle(&self, _: Envelope) -> Result<(), HandlerError> { Ok(()) }
///     fn stats(&self) -> SinkStats { SinkStats::default() }
///     fn dead_letter(&self, _: Undelivered) {}
/// }
///
/// let bus = Bus::new();
/// let stage = bus.subscribe(SubscriptionConfig::new("out")).unwrap();
/// let sink_pool = SinkPool::builder(Discard)
///     // The stage's name (its buffer's and its pool's) and its range of workers.
///     .pool(WorkerPool::builder("out").workers(1).max_workers(4))
///     .spawn(stage)
///     .unwrap();
/// // What a controller keeps (as `Arc<dyn PoolActuator>`), and turns:
/// let knob: Arc<WorkerPool<Envelope>> = sink_pool.pool().clone();
/// assert_eq!(knob.resize(3).unwrap(), 3);
/// bus.publisher().publish(Envelope::new("t", "x")).unwrap();
///
/// let report = sink_pool.shutdown(Duration::from_secs(5)); // the knob is still held
/// assert_eq!((report.drain.processed, report.drain.left), (1, 0));
/// assert_eq!(knob.stats().workers, 0);
/// ```
pub struct SinkPool<S: Sink> {
    pool: Arc<WorkerPool<Envelope>>,
    sink: Arc<S>,
    flusher: Option<Flusher>,
    /// Whether `shutdown` ran (then `drop` has nothing left to stop).
    drained: bool,
}

struct Flusher {
    stop: StopSignal,
    thread: JoinHandle<()>,
    /// In a mutex only so that `SinkPool` is `Sync` (a receiver is not).
    exited: Mutex<mpsc::Receiver<()>>,
}

/// What [`SinkPool::shutdown`] achieved.
#[derive(Debug)]
#[non_exhaustive]
pub struct SinkDrainReport<S> {
    /// The pool's drain.
    pub drain: DrainReport,
    /// Whether the final flush ran (it is skipped when the deadline passed first).
    pub flushed: bool,
    /// The sink, for a last look at its counters.
    pub sink: Arc<S>,
}

impl<S: Sink> SinkPool<S> {
    /// A builder for a pool running `sink`; the pool's settings are a
    /// [`WorkerPoolBuilder`] given to [`SinkPoolBuilder::pool`].
    pub fn builder(sink: S) -> SinkPoolBuilder<S> {
        let pool = WorkerPool::builder(format!("sink-{}", sink.name()));
        SinkPoolBuilder {
            sink: Arc::new(sink),
            pool,
        }
    }

    /// The worker pool, shared: resize it, read its utilisation, or clone the `Arc`
    /// for a controller (it coerces to `Arc<dyn PoolActuator>`).
    ///
    /// Its utilisation is the share of the workers' time spent in
    /// [`Sink::handle`]: for a batching sink, delivering (waiting for the endpoint's
    /// answer or the server's acknowledgements counts as busy), since under traffic
    /// the workers send every batch (see the [module docs](super)).
    pub fn pool(&self) -> &Arc<WorkerPool<Envelope>> {
        &self.pool
    }

    /// The sink.
    pub fn sink(&self) -> &Arc<S> {
        &self.sink
    }

    /// The sink's counters.
    pub fn stats(&self) -> SinkStats {
        self.sink.stats()
    }

    /// Drains the subscription through the workers, stops the flush thread, and flushes
    /// what is still buffered, all within `timeout`.
    ///
    /// Stop the sources that publish to the subscription first, and the control loop
    /// that resizes the pool (see [Shutdown order](SinkPool#shutdown-order)); clones
    /// of [`pool`](Self::pool) held elsewhere do not stop the drain.
    ///
    /// It blocks the calling thread until done: from async code, call it in
    /// `tokio::task::spawn_blocking`.
    pub fn shutdown(mut self, timeout: Duration) -> SinkDrainReport<S> {
        let deadline = Instant::now() + timeout;
        let drain = self.pool.drain(timeout);
        self.drained = true;
        if let Some(flusher) = self.flusher.take() {
            flusher.stop.stop();
            // The flusher may be in the middle of sending a batch: wait for it as long
            // as the deadline allows, then leave it detached.
            let left = deadline.saturating_duration_since(Instant::now());
            let exited = flusher
                .exited
                .into_inner()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Err(mpsc::RecvTimeoutError::Disconnected) = exited.recv_timeout(left) {
                let _ = flusher.thread.join();
            }
        }
        let flushed = Instant::now() < deadline;
        if flushed {
            self.sink.flush(true);
        }
        SinkDrainReport {
            drain,
            flushed,
            sink: self.sink.clone(),
        }
    }
}

impl<S: Sink> Drop for SinkPool<S> {
    /// Stops the flush thread and the workers after their current event, also while
    /// a controller still holds the pool; does not wait for a worker in its handler
    /// and does not flush (use [`shutdown`](SinkPool::shutdown) for that).
    fn drop(&mut self) {
        if let Some(flusher) = &self.flusher {
            flusher.stop.stop();
        }
        if !self.drained {
            // A drain whose deadline has passed: every worker stops after its event.
            let _ = self.pool.drain(Duration::ZERO);
        }
    }
}

impl<S: Sink> fmt::Debug for SinkPool<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkPool")
            .field("sink", &self.sink.name())
            .field("pool", &self.pool)
            .finish()
    }
}
