//! [`WorkerPoolBuilder`]: the pool's settings and handler.

use super::error::{DeadLetter, HandlerError, PoolError};
use super::handle::WorkerPool;
use super::worker::{DeadLetterHook, Handler, PoolParts, PoolShared, Work};
use crate::bus::Subscription;
use crate::range::{Bounds, RangeNames, check_range};
use std::fmt;
use std::sync::Arc;

/// The worker settings' names, as their setters are called.
pub(crate) const WORKER_NAMES: RangeNames = RangeNames {
    initial: "workers",
    min: "min_workers",
    max: "max_workers",
};

/// Builds a [`WorkerPool`]; from [`WorkerPool::builder`].
///
/// | setting | default | rule |
/// | --- | --- | --- |
/// | [`workers`](Self::workers) | 1 | `min_workers <= workers <= max_workers` |
/// | [`min_workers`](Self::min_workers) / [`max_workers`](Self::max_workers) | `workers` (fixed size) | `1 <= min <= max` |
/// | [`handler`](Self::handler) or `async_handler` | (required) | the last one set wins |
/// | [`dead_letter`](Self::dead_letter) | none: failures are counted and logged | needs `E: Clone` |
/// | `runtime` (feature `tokio`) | the runtime current at [`spawn`](Self::spawn) | only for `async_handler` |
///
/// # Examples
///
/// ```
/// use pipeline_core::bus::{Bus, SubscriptionConfig};
/// use pipeline_core::pool::{HandlerError, WorkerPool};
/// use std::sync::mpsc;
/// use std::time::Duration;
///
/// let bus = Bus::new();
/// let sub = bus.subscribe(SubscriptionConfig::new("jobs")).unwrap();
/// let (dead_tx, dead_rx) = mpsc::channel();
/// let dead_tx = std::sync::Mutex::new(dead_tx);
/// let pool = WorkerPool::builder("jobs")
///     .workers(2)
///     .min_workers(1)
///     .max_workers(8)
///     .handler(|job: u32| {
///         if job == 13 {
///             return Err(HandlerError::new("unlucky"));
///         }
///         Ok(())
///     })
///     .dead_letter(move |letter| dead_tx.lock().unwrap().send(letter.event).unwrap())
///     .spawn(sub)
///     .unwrap();
/// bus.publisher().publish(13).unwrap();
/// assert_eq!(dead_rx.recv_timeout(Duration::from_secs(30)).unwrap(), 13);
/// assert_eq!(pool.resize(100).unwrap(), 8); // clamped
/// ```
#[must_use = "a builder does nothing until spawn() is called"]
pub struct WorkerPoolBuilder<E> {
    name: Arc<str>,
    workers: usize,
    min_workers: Option<usize>,
    max_workers: Option<usize>,
    handler: Option<HandlerKind<E>>,
    dead_letter: Option<DeadLetterHook<E>>,
    #[cfg(feature = "tokio")]
    runtime: Option<tokio::runtime::Handle>,
}

/// The handler as given: sync (thread workers) or async (task workers).
enum HandlerKind<E> {
    Sync(Handler<E>),
    #[cfg(feature = "tokio")]
    Async(super::task::AsyncHandler<E>),
}

impl<E: Send + 'static> WorkerPoolBuilder<E> {
    pub(crate) fn new(name: Arc<str>) -> Self {
        WorkerPoolBuilder {
            name,
            workers: 1,
            min_workers: None,
            max_workers: None,
            handler: None,
            dead_letter: None,
            #[cfg(feature = "tokio")]
            runtime: None,
        }
    }

    /// Workers to start with (default 1).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// The fewest workers [`WorkerPool::resize`] may leave (default: `workers`).
    pub fn min_workers(mut self, min: usize) -> Self {
        self.min_workers = Some(min);
        self
    }

    /// The most workers [`WorkerPool::resize`] may start (default: `workers`).
    pub fn max_workers(mut self, max: usize) -> Self {
        self.max_workers = Some(max);
        self
    }

    /// The function each worker calls per event, with the event by value; each worker
    /// is a thread. It may run on several threads at once. An `Err` or a panic sends
    /// the event to the [`dead_letter`](Self::dead_letter) hook.
    pub fn handler(
        mut self,
        handler: impl Fn(E) -> Result<(), HandlerError> + Send + Sync + 'static,
    ) -> Self {
        self.handler = Some(HandlerKind::Sync(Box::new(handler)));
        self
    }

    /// An async handler: each worker is a tokio task that awaits `handler(event)` per
    /// event (feature `tokio`). The tasks run on the [`runtime`](Self::runtime) given,
    /// or else on the runtime current when [`spawn`](Self::spawn) runs.
    ///
    /// Everything else is as for [`handler`](Self::handler): the counters, the
    /// latency histogram, utilisation (a worker is busy while the handler's future
    /// runs, awaiting included), the dead-letter hook (a panic in the call or in any
    /// poll of its future is caught and counted as a panic), [`WorkerPool::resize`]
    /// (a concurrency limit: growing spawns tasks, shrinking stops the newest, each
    /// after the event it holds) and shutdown. An idle task waits with wakers (no
    /// timer, no polling) and is woken at once by a stop request. Use
    /// [`WorkerPool::shutdown_async`] from async code.
    ///
    /// The runtime must have its time driver enabled (`enable_all()`, as
    /// `#[tokio::main]` does) for `shutdown_async`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "tokio")] {
    /// use pipeline_core::bus::{Bus, SubscriptionConfig};
    /// use pipeline_core::pool::WorkerPool;
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::time::Duration;
    ///
    /// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// let bus = Bus::new();
    /// // Room for all 100: a current-thread runtime runs its tasks only inside
    /// // `block_on`, so until then nothing would make room for a blocked publish.
    /// let sub = bus.subscribe(SubscriptionConfig::new("io").capacity(128)).unwrap();
    /// let total = Arc::new(AtomicU64::new(0));
    /// let sum = total.clone();
    /// let pool = WorkerPool::builder("io")
    ///     .workers(16) // 16 tasks on one runtime thread
    ///     .async_handler(move |n: u64| {
    ///         let sum = sum.clone();
    ///         async move {
    ///             tokio::time::sleep(Duration::from_millis(1)).await; // I/O, say
    ///             sum.fetch_add(n, Ordering::Relaxed);
    ///             Ok(())
    ///         }
    ///     })
    ///     .runtime(runtime.handle().clone())
    ///     .spawn(sub)
    ///     .unwrap();
    /// let publisher = bus.publisher();
    /// (1..=100).for_each(|n| publisher.publish(n).unwrap()); // a thread, not a task
    /// drop(publisher);
    /// let report = runtime.block_on(pool.shutdown_async(Duration::from_secs(30)));
    /// assert_eq!((report.processed, report.left), (100, 0));
    /// assert_eq!(total.load(Ordering::Relaxed), 5050);
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn async_handler<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(E) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.handler = Some(HandlerKind::Async(super::task::AsyncHandler::new(handler)));
        self
    }

    /// The runtime the workers of an [`async_handler`](Self::async_handler) run on
    /// (feature `tokio`; default: the runtime current at [`spawn`](Self::spawn)).
    /// A pool of thread workers ignores it.
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn runtime(mut self, runtime: tokio::runtime::Handle) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Checks the settings as [`spawn`](Self::spawn) does, without spawning anything:
    /// for a caller that builds now and spawns later (a `Pipeline` checks its stages
    /// when it is built, and starts their pools later).
    ///
    /// # Errors
    ///
    /// [`PoolError::InvalidConfig`] as for [`spawn`](Self::spawn), except the check of
    /// `runtime`, which depends on where `spawn` is called.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_core::pool::{PoolError, WorkerPool};
    ///
    /// let builder = WorkerPool::<u32>::builder("jobs").workers(9).max_workers(8);
    /// assert!(matches!(
    ///     builder.validate(),
    ///     Err(PoolError::InvalidConfig { field: "workers", .. })
    /// ));
    /// let builder = WorkerPool::<u32>::builder("jobs").handler(|_| Ok(()));
    /// assert!(builder.validate().is_ok());
    /// ```
    pub fn validate(&self) -> Result<(), PoolError> {
        self.check().map(drop)
    }

    /// The checks of `validate`; returns the range.
    fn check(&self) -> Result<Bounds, PoolError> {
        // Each error names the setter the offending value came from: a bound that was
        // not set follows `workers`, so `workers(0)` alone is refused as `workers`.
        let range = check_range(
            &WORKER_NAMES,
            self.workers,
            self.min_workers,
            self.max_workers,
        )
        .map_err(|(field, rule)| PoolError::InvalidConfig { field, rule })?;
        if self.handler.is_none() {
            return Err(PoolError::InvalidConfig {
                field: "handler",
                rule: "is required".into(),
            });
        }
        Ok(range)
    }

    /// Starts the workers on `subscription`; the pool owns it from now on.
    ///
    /// # Errors
    ///
    /// [`PoolError::InvalidConfig`] naming the setting that breaks its rule: the setter
    /// that gave the offending value. A bound left unset follows `workers`, so
    /// `workers(0)` alone is refused as `workers`, and `min_workers(0)` as
    /// `min_workers`. An async handler with no `runtime` set and no runtime current
    /// is refused as `runtime`. [`PoolError::Spawn`] if a thread could
    /// not be started.
    pub fn spawn(self, subscription: Subscription<E>) -> Result<WorkerPool<E>, PoolError> {
        let range = self.check()?;
        let work = match self.handler {
            None => unreachable!("check() refuses a builder without a handler"),
            Some(HandlerKind::Sync(handler)) => Work::Threads(handler),
            #[cfg(feature = "tokio")]
            Some(HandlerKind::Async(handler)) => {
                let runtime = match self.runtime {
                    Some(runtime) => runtime,
                    None => tokio::runtime::Handle::try_current().map_err(|_| {
                        PoolError::InvalidConfig {
                            field: "runtime",
                            rule: "an async handler needs a tokio runtime: spawn the pool \
                                   inside one, or give one with `runtime(handle)`"
                                .into(),
                        }
                    })?,
                };
                Work::Tasks(super::task::Tasks { runtime, handler })
            }
        };
        let shared = PoolShared::new(PoolParts {
            name: self.name,
            subscription,
            work,
            dead_letter: self.dead_letter,
        });
        WorkerPool::start(shared, self.workers, range)
    }
}

impl<E: Clone + Send + 'static> WorkerPoolBuilder<E> {
    /// Where events go when the handler fails or panics, with the reason. With a hook
    /// the pool clones each event before handing it to the handler (to still have it
    /// after a panic), which is why this needs `E: Clone`; without one it does not,
    /// and failures are only counted and logged.
    pub fn dead_letter(mut self, hook: impl Fn(DeadLetter<E>) + Send + Sync + 'static) -> Self {
        self.dead_letter = Some(DeadLetterHook {
            hook: Box::new(hook),
            clone: E::clone,
        });
        self
    }
}

impl<E> fmt::Debug for WorkerPoolBuilder<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerPoolBuilder")
            .field("name", &self.name)
            .field("workers", &self.workers)
            .field("min_workers", &self.min_workers)
            .field("max_workers", &self.max_workers)
            .field("handler", &self.handler.as_ref().map(|_| ".."))
            .field("dead_letter", &self.dead_letter.as_ref().map(|_| ".."))
            .finish()
    }
}
