//! Elastic worker pools: N workers on one subscription, each calling a handler per
//! event, resizable while running, with panic isolation, dead letters and a graceful,
//! bounded shutdown. Workers are threads running a sync handler, or (feature `tokio`)
//! tokio tasks running an async one; everything below holds for both.
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
//! [`WorkerPool::resize`] clamps into `[min_workers, max_workers]` and returns at once;
//! [`WorkerPool::set_worker_range`] moves that range while the pool runs (and a count
//! outside the new range into it at once).
//! A worker checks whether it was told to stop before each receive, never after: an
//! event it has received is always handled, by it. So scaling down loses nothing: the
//! stopped worker finishes the event it holds, and events still buffered stay for the
//! others. An idle worker waits for an event *or* its own stop request, so the request
//! wakes it at once, with no polling; if an event reaches it first, it handles that
//! one and then stops.
//!
//! # Async workers
//!
//! With the `tokio` feature, `WorkerPoolBuilder::async_handler` takes
//! `Fn(E) -> impl Future<Output = Result<(), HandlerError>>`, and each worker is a
//! task on the runtime given with `WorkerPoolBuilder::runtime` (or the one current
//! at `spawn`). The worker count is then a concurrency limit (how many events are in
//! the handler at once), not a number of threads: sixteen workers may share one
//! runtime thread, and an event waiting on I/O holds no thread. Counting, latency,
//! utilisation (a worker is busy while its handler's future runs, awaiting included),
//! panics (caught in the call and in every poll), dead letters, resizing and the
//! stop protocol are the thread workers'. An idle task waits with wakers for an event
//! or its own stop request: no timer, no polling.
//!
//! ```
//! # #[cfg(feature = "tokio")] {
//! use pipeline_core::bus::{Bus, SubscriptionConfig};
//! use pipeline_core::pool::WorkerPool;
//! use std::time::Duration;
//!
//! let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
//! runtime.block_on(async {
//!     let bus = Bus::new();
//!     let sub = bus.subscribe(SubscriptionConfig::new("fetch").capacity(256)).unwrap();
//!     let pool = WorkerPool::builder("fetch")
//!         .workers(8)
//!         .max_workers(64) // a controller may allow 64 requests in flight
//!         .async_handler(|url: String| async move {
//!             tokio::time::sleep(Duration::from_millis(1)).await; // stands in for I/O
//!             if url.is_empty() {
//!                 return Err("empty url".into());
//!             }
//!             Ok(())
//!         })
//!         .spawn(sub) // tasks on this runtime
//!         .unwrap();
//!     let publisher = bus.publisher();
//!     for n in 0..100 {
//!         publisher.try_publish(format!("https://example.invalid/{n}")).unwrap();
//!     }
//!     pool.resize(32).unwrap(); // 24 more tasks
//!     drop(publisher);
//!     let report = pool.shutdown_async(Duration::from_secs(30)).await; // never blocks
//!     assert_eq!((report.processed, report.left), (100, 0));
//! });
//! # }
//! ```
//!
//! Never call the blocking [`Publisher::publish`](crate::bus::Publisher::publish) or
//! [`WorkerPool::shutdown`] on a runtime thread; use their async forms.
//!
//! # Failures
//!
//! A handler that returns `Err` or panics has its event sent to the dead-letter hook
//! with a [`DeadLetterReason`] (the error, or the panic message, as [`panic_message`]
//! words it), and is counted (`failed`, `panics`). A panic is caught with
//! `catch_unwind`; the worker that caught it keeps going, so no thread (or task) is
//! replaced and the worker count does not change. Without a hook, failures are counted and logged (`tracing` at
//! `WARN`/`ERROR`). Nothing is dropped silently. Only the hook needs `E: Clone` (the
//! pool keeps a clone of each event for it); a pool without one takes any `Send` event.
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
//! | method | takes | waits by |
//! | --- | --- | --- |
//! | [`WorkerPool::shutdown`] | the pool | blocking the thread (condition variable) |
//! | [`WorkerPool::drain`] | `&self` (a pool shared in an `Arc`) | blocking the thread |
//! | `WorkerPool::shutdown_async` (feature `tokio`) | the pool | awaiting: wakers, and `tokio::time` for the deadline |
//! | `WorkerPool::drain_async` (feature `tokio`) | `&self` | awaiting |
//!
//! The async forms work for thread and task workers alike and never block a runtime
//! thread; at the deadline every worker still running is told to stop after its event
//! (which also wakes a task waiting for one) and detached.
//!
//! Dropping a pool without `shutdown` tells the workers to stop after their current
//! event and does not wait; what is buffered stays in the subscription, which leaves
//! the bus with the last worker.
//!
//! # Metrics
//!
//! | name | kind | labels | updated |
//! | --- | --- | --- | --- |
//! | `pipeline_pool_workers` | gauge | `pipeline`, `pool` | on resize |
//! | `pipeline_pool_utilisation_ratio` | gauge | `pipeline`, `pool` | on [`WorkerPool::stats`] |
//! | `pipeline_pool_processed_total` | counter | `pipeline`, `pool` | per event |
//! | `pipeline_pool_failed_total` | counter | `pipeline`, `pool` | per failure |
//! | `pipeline_pool_panics_total` | counter | `pipeline`, `pool` | per panic |
//! | `pipeline_pool_dead_letters_total` | counter | `pipeline`, `pool` | per dead letter |
//! | `pipeline_pool_processing_seconds` | histogram | `pipeline`, `pool` | per event |
//!
//! Thread and task workers report the same metrics. `tracing` events: start, resize
//! and shutdown report at `INFO`, handler errors at `WARN`, panics at `ERROR`.
//!
//! # Features
//!
//! | feature | adds | dependencies |
//! | --- | --- | --- |
//! | (none) | thread workers, `shutdown`, `drain` | no tokio |
//! | `tokio` | `async_handler`, `runtime`, `shutdown_async`, `drain_async` | `tokio` (`rt`, `time`) |

mod builder;
mod error;
mod handle;
mod notify;
mod stats;
#[cfg(feature = "tokio")]
mod task;
mod worker;

pub use builder::WorkerPoolBuilder;
pub use error::{DeadLetter, DeadLetterReason, HandlerError, PoolError, panic_message};
pub use handle::{DrainReport, WorkerPool};
pub use stats::{CpuSample, Latency, LatencyRecorder, PoolStats};
