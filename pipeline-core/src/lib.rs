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
//! | `serde` | `Serialize`/`Deserialize` for [`Envelope`](envelope::Envelope) and [`OverflowPolicy`](bus::OverflowPolicy) (as `block`, `drop_newest`, `drop_oldest`) | `serde` |
#![warn(missing_docs)]
// docs.rs (and `--cfg docsrs` builds) mark what needs a feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod bus;
pub mod channel;
pub mod clock;
pub mod envelope;
pub(crate) mod hazard;
pub(crate) mod overflow;
pub mod pool;
pub(crate) mod range;
pub mod signal;
pub(crate) mod sync;

/// `# HELP` and units for every metric family of this crate. Run each time a bus is
/// built (a few map inserts): the `metrics` facade gives a description to the recorder
/// installed at the time, so a bus built after the exporter was installed describes
/// its series whatever came before.
pub(crate) fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    {
        describe_counter!(
            "pipeline_bus_published_total",
            Unit::Count,
            "Publishes that returned Ok."
        );
        describe_counter!(
            "pipeline_bus_unmatched_total",
            Unit::Count,
            "Publishes no subscription's filter matched (accepted, delivered nowhere)."
        );
        describe_counter!(
            "pipeline_bus_rejected_full_total",
            Unit::Count,
            "Publishes refused because a Block subscription was full (try_publish)."
        );
        describe_counter!(
            "pipeline_bus_rate_limited_total",
            Unit::Count,
            "Publishes the publish-rate limit refused or delayed."
        );
        describe_counter!(
            "pipeline_bus_rate_limit_refused_total",
            Unit::Count,
            "Publishes the publish-rate limit refused (Backoff, or Timeout waiting for a token)."
        );
        describe_gauge!(
            "pipeline_bus_publish_rate_limit_per_second",
            "The publish-rate limit in force, events per second (0: none)."
        );
        describe_gauge!(
            "pipeline_bus_subscriptions",
            Unit::Count,
            "Live subscriptions on the bus."
        );
        describe_counter!(
            "pipeline_bus_signals_skipped_total",
            Unit::Count,
            "Saturation and back-pressure signals skipped because nobody drained the signal channel."
        );
        describe_counter!(
            "pipeline_subscription_delivered_total",
            Unit::Count,
            "Events delivered into a subscription's buffer."
        );
        describe_counter!(
            "pipeline_subscription_received_total",
            Unit::Count,
            "Events taken from a subscription's buffer by its receivers."
        );
        describe_counter!(
            "pipeline_subscription_dropped_total",
            Unit::Count,
            "Events a subscription dropped because its buffer was full, by overflow policy."
        );
        describe_gauge!(
            "pipeline_subscription_buffered_events",
            Unit::Count,
            "Events in a subscription's buffer."
        );
        describe_gauge!(
            "pipeline_subscription_capacity_events",
            Unit::Count,
            "A subscription's buffer capacity in force."
        );
        describe_gauge!(
            "pipeline_subscription_buffered_bytes",
            Unit::Bytes,
            "Estimated memory held by a subscription's buffer."
        );
        describe_gauge!(
            "pipeline_subscription_saturation_ratio",
            "A subscription's buffered events over its capacity."
        );
        describe_gauge!(
            "pipeline_pool_workers",
            Unit::Count,
            "Workers (threads or tasks) a pool runs."
        );
        describe_gauge!(
            "pipeline_pool_utilisation_ratio",
            "Share of a pool's worker time spent in the handler over the last 5 seconds."
        );
        describe_counter!(
            "pipeline_pool_processed_total",
            Unit::Count,
            "Events a pool's handler processed successfully."
        );
        describe_counter!(
            "pipeline_pool_failed_total",
            Unit::Count,
            "Events whose handler returned an error."
        );
        describe_counter!(
            "pipeline_pool_panics_total",
            Unit::Count,
            "Events whose handler panicked (caught; the worker goes on)."
        );
        describe_counter!(
            "pipeline_pool_dead_letters_total",
            Unit::Count,
            "Events handed to a pool's dead-letter hook."
        );
        describe_histogram!(
            "pipeline_pool_processing_seconds",
            Unit::Seconds,
            "Handler time per event."
        );
    }
}
