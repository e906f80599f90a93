//! [`WorkerPoolBuilder`]: the pool's settings and handler.

use super::error::{DeadLetter, HandlerError, PoolError};
use super::handle::WorkerPool;
use super::worker::{DeadLetterHook, Handler, PoolParts, PoolShared};
use crate::bus::Subscription;
use crate::range::{RangeNames, check_range};
use std::fmt;
use std::sync::Arc;

/// Builds a [`WorkerPool`]; from [`WorkerPool::builder`].
///
/// | setting | default | rule |
/// | --- | --- | --- |
/// | [`workers`](Self::workers) | 1 | `min_workers <= workers <= max_workers` |
/// | [`min_workers`](Self::min_workers) / [`max_workers`](Self::max_workers) | `workers` (fixed size) | `1 <= min <= max` |
/// | [`handler`](Self::handler) | (required) | |
/// | [`dead_letter`](Self::dead_letter) | none: failures are counted and logged | |
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
    handler: Option<Handler<E>>,
    dead_letter: Option<DeadLetterHook<E>>,
}

impl<E: Clone + Send + 'static> WorkerPoolBuilder<E> {
    pub(crate) fn new(name: Arc<str>) -> Self {
        WorkerPoolBuilder {
            name,
            workers: 1,
            min_workers: None,
            max_workers: None,
            handler: None,
            dead_letter: None,
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

    /// The function each worker calls per event, with the event by value. It may run
    /// on several threads at once. An `Err` or a panic sends the event to the
    /// [`dead_letter`](Self::dead_letter) hook.
    pub fn handler(
        mut self,
        handler: impl Fn(E) -> Result<(), HandlerError> + Send + Sync + 'static,
    ) -> Self {
        self.handler = Some(Box::new(handler));
        self
    }

    /// Where events go when the handler fails or panics, with the reason. With a hook
    /// the pool clones each event before handing it to the handler (to still have it
    /// after a panic); without one it does not, and failures are only counted and
    /// logged.
    pub fn dead_letter(mut self, hook: impl Fn(DeadLetter<E>) + Send + Sync + 'static) -> Self {
        self.dead_letter = Some(Box::new(hook));
        self
    }

    /// Starts the workers on `subscription`; the pool owns it from now on.
    ///
    /// # Errors
    ///
    /// [`PoolError::InvalidConfig`] naming the setting that breaks its rule: the setter
    /// that gave the offending value. A bound left unset follows `workers`, so
    /// `workers(0)` alone is refused as `workers`, and `min_workers(0)` as
    /// `min_workers`. [`PoolError::Spawn`] if a thread could not be started.
    pub fn spawn(self, subscription: Subscription<E>) -> Result<WorkerPool<E>, PoolError> {
        let invalid = |field, rule: String| Err(PoolError::InvalidConfig { field, rule });
        // Each error names the setter the offending value came from: a bound that was
        // not set follows `workers`, so `workers(0)` alone is refused as `workers`.
        let names = RangeNames {
            initial: "workers",
            min: "min_workers",
            max: "max_workers",
        };
        let (min, max) = check_range(&names, self.workers, self.min_workers, self.max_workers)
            .map_err(|(field, rule)| PoolError::InvalidConfig { field, rule })?;
        let Some(handler) = self.handler else {
            return invalid("handler", "is required".into());
        };
        let shared = PoolShared::new(PoolParts {
            name: self.name,
            subscription,
            handler,
            dead_letter: self.dead_letter,
        });
        WorkerPool::start(shared, self.workers, min, max)
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
