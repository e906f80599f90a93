//! The [`Sink`] trait and [`SinkPool`], which runs a sink on a bus subscription through
//! a [`WorkerPool`](pipeline_core::pool::WorkerPool), so the number of concurrent
//! deliveries is a knob the controller turns.
//!
//! # Hello, sink
//!
//! ```
//! use pipeline_adapters::sink::{Sink, SinkPool, SinkStats, Undelivered};
//! use pipeline_core::bus::{Bus, SubscriptionConfig};
//! use pipeline_core::envelope::Envelope;
//! use pipeline_core::pool::{HandlerError, WorkerPool};
//! use std::sync::Mutex;
//! use std::time::Duration;
//!
//! /// Keeps every payload in memory.
//! #[derive(Default)]
//! struct Collect(Mutex<Vec<String>>);
//!
//! impl Sink for Collect {
//!     fn name(&self) -> &str {
//!         "collect"
//!     }
//!     fn handle(&self, event: Envelope) -> Result<(), HandlerError> {
//!         let text = String::from_utf8(event.payload().to_vec())?;
//!         self.0.lock().unwrap().push(text);
//!         Ok(())
//!     }
//!     fn stats(&self) -> SinkStats {
//!         SinkStats::default()
//!     }
//!     fn dead_letter(&self, undelivered: Undelivered) {
//!         eprintln!("lost {} events: {}", undelivered.events.len(), undelivered.error);
//!     }
//! }
//!
//! let bus = Bus::new();
//! let subscription = bus.subscribe(SubscriptionConfig::new("out")).unwrap();
//! let pool = SinkPool::builder(Collect::default())
//!     // The pool's settings: a worker pool's, named like its subscription.
//!     .pool(WorkerPool::builder("out").workers(1).max_workers(4))
//!     .spawn(subscription)
//!     .unwrap();
//! bus.publisher().publish(Envelope::new("greetings", "hello")).unwrap();
//! let report = pool.shutdown(Duration::from_secs(5));
//! assert_eq!(report.drain.left, 0);
//! assert_eq!(*report.sink.0.lock().unwrap(), ["hello"]);
//! ```
//!
//! # Batching sinks
//!
//! The HTTP and NATS sinks deliver batches. Each worker adds its event to the open
//! batch; the worker whose event fills it, or arrives once the batch's *linger* has
//! passed, sends it, so with `n` workers at most `n` batches are in flight (the pool
//! size is the concurrency). Under traffic the workers send every batch, so their
//! busy time, the pool's utilisation, is the time spent delivering (waiting for
//! acknowledgements included). A batch no event comes to close (the tail of a burst)
//! is sent by the pool's flush thread, which calls [`Sink::flush`] every
//! [`Sink::flush_interval`], within about twice the linger; at shutdown, after the
//! pool has drained, [`SinkPool::shutdown`] flushes what is left.
//!
//! # Failures and dead letters
//!
//! A sink retries what it can (see [`RetryPolicy`]) and hands what it cannot deliver to
//! its dead-letter hook as an [`Undelivered`], with every event of the failed batch.
//! An event whose handler panics reaches the same hook, through the pool. A batching
//! sink (HTTP, NATS) catches a panic while it delivers a batch itself: every event of
//! the batch not yet delivered goes to the hook with the error `delivery panicked:
//! <message>` (logged at `ERROR`), the batch leaves `in_flight`, and the worker goes
//! on. Without a hook, undelivered events are counted and logged at `WARN`.
//!
//! # Telling "slow" from "erroring"
//!
//! [`SinkStats`] counts attempts, attempt errors and retries and records the latency of
//! each attempt. A controller reads, over an interval:
//! - error ratio = `attempt_errors / attempts`;
//! - latency = [`Latency::p90`];
//! - utilisation of the pool (from its [`PoolStats`](pipeline_core::pool::PoolStats)).
//!
//! High latency with a low error ratio is a slow but healthy endpoint: more workers
//! help. A rising error ratio is an erroring endpoint: more workers only add load,
//! fewer (and the retries' backoff) let it recover.

#[cfg(any(feature = "http", feature = "nats"))]
mod batch;
mod pool;
mod retry;
mod stats;
pub(crate) mod traits;

cfg_adapters! {
    mod common;
    mod counters;
    mod dead;

    pub(crate) use common::{SinkCommon, common_setters};
    pub(crate) use counters::{Attempt, SinkCounters};
    pub(crate) use dead::DeadLetters;
}

#[cfg(any(feature = "http", feature = "nats"))]
pub(crate) use batch::{Batcher, deliver_batch};
pub use pool::{SinkDrainReport, SinkPool, SinkPoolBuilder};
pub use retry::{RetryPolicy, RetryPolicyError};
pub use stats::{Latency, SinkStats};
pub use traits::{DeadLetterHook, Sink, Undelivered};
