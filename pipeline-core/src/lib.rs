//! The data path of the pipeline: publishers, a bus of live-resizable bounded channels,
//! subscriptions, and worker pools.
//!
//! ```
//! use pipeline_core::bus::{Bus, SubscriptionConfig};
//! use pipeline_core::pool::WorkerPool;
//! use std::time::Duration;
//!
//! let bus: Bus<u32> = Bus::new();
//! let orders = bus.subscribe(SubscriptionConfig::new("orders").capacity(64).max_capacity(4096))?;
//! let pool = WorkerPool::builder("orders").workers(2).max_workers(8).handler(|n: u32| {
//!     assert!(n < 100);
//!     Ok(())
//! }).spawn(orders)?;
//! let publisher = bus.publisher();
//! for n in 0..100 {
//!     publisher.publish(n)?; // waits while the buffer is full: back pressure
//! }
//! bus.resize("orders", 256)?; // a knob the controller turns; nothing is lost
//! pool.resize(4)?;            // another one
//! let report = pool.shutdown(Duration::from_secs(5));
//! assert_eq!((report.processed, report.left), (100, 0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! - [`channel`]: the live-resizable bounded MPMC channel everything is built on.
//! - [`bus`]: [`Bus`](bus::Bus), [`Publisher`](bus::Publisher), subscriptions with
//!   overflow policies (block, drop newest, drop oldest), the publish-rate limit.
//! - [`signal`]: edge-triggered saturation, back-pressure and drop signals.
//! - [`pool`]: [`WorkerPool`](pool::WorkerPool), elastic, panic-safe, with a drain on
//!   shutdown; its workers are threads, or tokio tasks running an async handler.
//! - [`envelope`]: a ready event type with glob topic filters.
//! - [`clock`]: the clock seam, system or manual.
//!
//! The controller in `pipeline-controller` turns these knobs; this crate never knows it
//! exists. `docs/bus-and-pools.md` walks through back pressure, resizing and shutdown.
//!
//! # Features
//!
//! | feature | what it adds | dependencies |
//! | --- | --- | --- |
//! | (default) | everything above; the async channel and bus operations (`send_async`, `recv_async`, `stream`, `publish_async`) are runtime-agnostic | no tokio |
//! | `tokio` | pool workers as tokio tasks running an async handler (`WorkerPoolBuilder::async_handler`, `runtime`), and `WorkerPool::shutdown_async` / `drain_async` | `tokio` (`rt`, `time`) |
//! | `serde` | `Serialize`/`Deserialize` for [`Envelope`](envelope::Envelope) | `serde` |
#![warn(missing_docs)]

pub mod bus;
pub mod channel;
pub mod clock;
pub mod envelope;
pub(crate) mod hazard;
pub mod pool;
pub(crate) mod range;
pub mod signal;
pub(crate) mod sync;
