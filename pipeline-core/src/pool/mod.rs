//! Elastic worker pools: N threads on one subscription, each calling a handler per
//! event, resizable while running, with panic isolation, dead letters and a graceful,
//! bounded shutdown.
//!
//! # Hello, pool
//!
//! ```
//! use pipeline_core::bus::{Bus, SubscriptionConfig};
//! use pipeline_core::pool::WorkerPool;
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::time::Duration;
//!
//! let bus = Bus::new();
//! let sub = bus.subscribe(SubscriptionConfig::new("sums").capacity(128)).unwrap();
//! let total = Arc::new(AtomicU64::new(0));
//! let sum = total.clone();
//! let pool = WorkerPool::builder("summer")
//!     .workers(2)
//!     .min_workers(1)
//!     .max_workers(4)
//!     .handler(move |n: u64| {
//!         sum.fetch_add(n, Ordering::Relaxed);
//!         Ok(())
//!     })
//!     .spawn(sub)
//!     .unwrap();
//!
//! let publisher = bus.publisher();
//! for n in 1..=100 {
//!     publisher.publish(n).unwrap();
//! }
//! pool.resize(4).unwrap(); // while events flow
//! pool.resize(1).unwrap();
//! let report = pool.shutdown(Duration::from_secs(30));
//! assert_eq!(report.left, 0);
//! assert_eq!(total.load(Ordering::Relaxed), 5050); // nothing lost
//! ```
//!
//! # Resizing
//!
//! [`WorkerPool::resize`] clamps into `[min_workers, max_workers]` and returns at once.
//! A worker checks whether it was told to stop before each receive, never after: an
//! event it has received is always handled, by it. So scaling down loses nothing: the
//! stopped worker finishes the event it holds, and events still buffered stay for the
//! others. An idle worker waits for an event *or* its own stop request, so the request
//! wakes it at once, with no polling; if an event reaches it first, it handles that
//! one and then stops.
//!
//! # Failures
//!
//! A handler that returns `Err` or panics has its event sent to the dead-letter hook
//! with a [`DeadLetterReason`] (the error, or the panic message), and is counted
//! (`failed`, `panics`). A panic is caught with `catch_unwind`; the worker that caught
//! it keeps going, so no thread is replaced and the worker count does not change.
//! Without a hook, failures are counted and logged (`tracing` at `WARN`/`ERROR`).
//! Nothing is dropped silently.
//!
//! # Shutdown
//!
//! [`WorkerPool::shutdown`] with a timeout. It first takes the pool's subscription off
//! the bus ([`Subscription::unsubscribe`](crate::bus::Subscription::unsubscribe)), so
//! the pool stops accepting: events published from then on are not for it. Stop the
//! sources first if nothing may be lost; that is the caller's job. The workers then
//! drain what is buffered until it is empty (the subscription reports disconnection:
//! no polling) or the deadline passes, and the pool waits for them at most until the
//! deadline. The [`DrainReport`] says how many events the pool finished, how many were
//! left (buffered, or still in a handler at the deadline), and whether the deadline cut
//! the drain short.
//!
//! Dropping a pool without `shutdown` tells the workers to stop after their current
//! event and does not wait; what is buffered stays in the subscription, which leaves
//! the bus with the last worker.
//!
//! # Metrics
//!
//! | name | kind | labels | updated |
//! | --- | --- | --- | --- |
//! | `pipeline_pool_workers` | gauge | `pool` | on resize |
//! | `pipeline_pool_utilisation_ratio` | gauge | `pool` | on [`WorkerPool::stats`] |
//! | `pipeline_pool_processed_total` | counter | `pool` | per event |
//! | `pipeline_pool_failed_total` | counter | `pool` | per failure |
//! | `pipeline_pool_panics_total` | counter | `pool` | per panic |
//! | `pipeline_pool_dead_letters_total` | counter | `pool` | per dead letter |
//! | `pipeline_pool_processing_seconds` | histogram | `pool` | per event |
//!
//! `tracing` events: start, resize and shutdown report at `INFO`, handler errors at
//! `WARN`, panics at `ERROR`.

mod builder;
mod error;
mod handle;
mod stats;
mod worker;

pub use builder::WorkerPoolBuilder;
pub use error::{DeadLetter, DeadLetterReason, HandlerError, PoolError};
pub use handle::{DrainReport, WorkerPool};
pub use stats::{Latency, LatencyRecorder, PoolStats};
