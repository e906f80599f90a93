//! [`SinkPool`]: a sink run by a worker pool on one subscription, plus its flush
//! thread.

use super::stats::SinkStats;
use super::traits::{Message, Sink, Undelivered};
use crate::util::StopSignal;
use pipeline_core::bus::Subscription;
use pipeline_core::envelope::Envelope;
use pipeline_core::pool::{DeadLetterReason, DrainReport, PoolError, WorkerPool};
use std::fmt;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Builds a [`SinkPool`]; from [`SinkPool::builder`].
///
/// | setting | default | rule |
/// | --- | --- | --- |
/// | [`workers`](Self::workers) | 1 | `min_workers <= workers <= max_workers` |
/// | [`min_workers`](Self::min_workers) / [`max_workers`](Self::max_workers) | `workers` | `1 <= min <= max` |
///
/// The rules are checked by [`WorkerPool`]'s builder in [`spawn`](Self::spawn).
#[must_use = "a builder does nothing until spawn() is called"]
pub struct SinkPoolBuilder<S> {
    sink: Arc<S>,
    workers: usize,
    min_workers: Option<usize>,
    max_workers: Option<usize>,
}

impl<S: Sink> SinkPoolBuilder<S> {
    /// Workers to start with (default 1): concurrent deliveries.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// The fewest workers a resize may leave (default: `workers`).
    pub fn min_workers(mut self, min: usize) -> Self {
        self.min_workers = Some(min);
        self
    }

    /// The most workers a resize may start (default: `workers`).
    pub fn max_workers(mut self, max: usize) -> Self {
        self.max_workers = Some(max);
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
        let name = format!("sink-{}", self.sink.name());
        let handler_sink = self.sink.clone();
        let dead_sink = self.sink.clone();
        let mut builder = WorkerPool::builder(name.clone())
            .workers(self.workers)
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
            });
        if let Some(min) = self.min_workers {
            builder = builder.min_workers(min);
        }
        if let Some(max) = self.max_workers {
            builder = builder.max_workers(max);
        }
        let pool = builder.spawn(subscription)?;
        let flusher = match self.sink.flush_interval() {
            None => None,
            Some(interval) => {
                let stop = StopSignal::new();
                let sink = self.sink.clone();
                let stopping = stop.clone();
                // Dropped when the thread returns: `shutdown` waits on it with a deadline.
                let (exited_tx, exited) = mpsc::channel::<()>();
                let thread = std::thread::Builder::new()
                    .name(format!("{name}-flush"))
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
                    exited,
                })
            }
        };
        Ok(SinkPool {
            pool: Some(pool),
            sink: self.sink,
            flusher,
        })
    }
}

impl<S> fmt::Debug for SinkPoolBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkPoolBuilder")
            .field("workers", &self.workers)
            .field("min_workers", &self.min_workers)
            .field("max_workers", &self.max_workers)
            .finish_non_exhaustive()
    }
}

/// A [`Sink`] running on a subscription through a [`WorkerPool`].
///
/// Resize it through [`pool`](Self::pool) (that is the controller's knob: concurrent
/// deliveries); read the sink's counters with [`stats`](Self::stats) and the pool's
/// with `pool().stats()`.
pub struct SinkPool<S: Sink> {
    pool: Option<WorkerPool<Envelope>>,
    sink: Arc<S>,
    flusher: Option<Flusher>,
}

struct Flusher {
    stop: StopSignal,
    thread: JoinHandle<()>,
    exited: mpsc::Receiver<()>,
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
    /// A builder for a pool running `sink`.
    pub fn builder(sink: S) -> SinkPoolBuilder<S> {
        SinkPoolBuilder {
            sink: Arc::new(sink),
            workers: 1,
            min_workers: None,
            max_workers: None,
        }
    }

    /// The worker pool: resize it, read its utilisation.
    pub fn pool(&self) -> &WorkerPool<Envelope> {
        self.pool.as_ref().expect("the pool lives until shutdown")
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
    /// Stop the sources that publish to the subscription first.
    pub fn shutdown(mut self, timeout: Duration) -> SinkDrainReport<S> {
        let deadline = Instant::now() + timeout;
        let pool = self.pool.take().expect("the pool lives until shutdown");
        let drain = pool.shutdown(timeout);
        if let Some(flusher) = self.flusher.take() {
            flusher.stop.stop();
            // The flusher may be in the middle of sending a batch: wait for it as long
            // as the deadline allows, then leave it detached.
            let left = deadline.saturating_duration_since(Instant::now());
            if let Err(mpsc::RecvTimeoutError::Disconnected) = flusher.exited.recv_timeout(left) {
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
    /// Stops the flush thread and the workers after their current event; does not wait
    /// and does not flush (use [`shutdown`](SinkPool::shutdown) for that).
    fn drop(&mut self) {
        if let Some(flusher) = &self.flusher {
            flusher.stop.stop();
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
