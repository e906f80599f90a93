//! A fan-out event bus: publishers, subscriptions with their own live-resizable
//! buffers, overflow policies, a publish-rate limit, signals and snapshots.
//!
//! # Hello, bus
//!
//! ```
//! use pipeline_core::bus::{Bus, SubscriptionConfig};
//!
//! let bus = Bus::new();
//! let billing = bus.subscribe(SubscriptionConfig::new("billing").capacity(64)).unwrap();
//! let large = bus
//!     .subscribe(SubscriptionConfig::new("large").filter(|amount: &u64| *amount >= 1000))
//!     .unwrap();
//!
//! let publisher = bus.publisher();
//! let producer = std::thread::spawn(move || {
//!     for amount in [10, 2500, 40] {
//!         publisher.publish(amount).unwrap(); // waits while "billing" is full
//!     }
//! });
//! producer.join().unwrap();
//! assert_eq!(billing.try_iter().collect::<Vec<_>>(), [10, 2500, 40]);
//! assert_eq!(large.try_iter().collect::<Vec<_>>(), [2500]);
//! ```
//!
//! Each event is cloned once per extra matching subscription: put big payloads behind
//! an `Arc` (or use [`Envelope`](crate::envelope::Envelope), whose payload is
//! [`bytes::Bytes`]). An event type that is not `Clone` can use a bus from
//! [`BusBuilder::build_single`], which holds one subscription at a time.
//!
//! # Back pressure and overflow policies
//!
//! Each subscription has an [`OverflowPolicy`] for a full buffer:
//! - [`Block`](OverflowPolicy::Block) (default, lossless): `publish` waits,
//!   `try_publish` returns [`PublishError::Full`].
//! - [`DropNewest`](OverflowPolicy::DropNewest): the new event is dropped.
//! - [`DropOldest`](OverflowPolicy::DropOldest): the oldest buffered event is evicted to
//!   make room.
//!
//! Every drop is counted ([`SubscriptionSnapshot::dropped_newest`] and
//! [`dropped_oldest`](SubscriptionSnapshot::dropped_oldest)) and opens a drop episode
//! (a [`SignalKind::DropsStarted`](crate::signal::SignalKind::DropsStarted) signal).
//! Only a subscription made [`droppable`](SubscriptionConfig::droppable) may drop, or be
//! switched to dropping by [`Bus::set_overflow`]; the others never lose an event.
//!
//! ```
//! use pipeline_core::bus::{Bus, OverflowPolicy, SubscriptionConfig};
//!
//! let bus = Bus::new();
//! let latest = bus
//!     .subscribe(
//!         SubscriptionConfig::new("latest")
//!             .capacity(2)
//!             .droppable(true)
//!             .overflow(OverflowPolicy::DropOldest),
//!     )
//!     .unwrap();
//! let publisher = bus.publisher();
//! for i in 1..=5 {
//!     publisher.try_publish(i).unwrap(); // never full: the oldest makes room
//! }
//! assert_eq!(latest.try_iter().collect::<Vec<_>>(), [4, 5]);
//! assert_eq!(latest.stats().dropped_oldest, 3);
//! ```
//!
//! # Publishing: what a caller can rely on
//!
//! A publish is never partial: an `Err` hands the event back and means *no*
//! subscription received it. [`Publisher::try_publish`] never waits for a token or on a
//! subscription it found full; with several matching `Block` subscriptions it checks
//! them all before delivering anything (see its docs for the one race it resolves by
//! waiting rather than by delivering in part).
//!
//! # From async code
//!
//! [`Publisher::publish`] and [`Subscription::recv`] block their thread while they
//! wait: never call them on an async runtime's thread. Their async forms wait as
//! tasks, with the same semantics, on the same bus at the same time as threads:
//! [`Publisher::publish_async`] (room in `Block` subscriptions, rate-limit tokens on a
//! runtime-agnostic timer), [`Subscription::recv_async`] and [`Subscription::stream`].
//!
//! ```
//! use futures::StreamExt;
//! use pipeline_core::bus::{Bus, SubscriptionConfig};
//! # use futures::executor::block_on;
//!
//! let bus = Bus::new();
//! let sub = bus.subscribe(SubscriptionConfig::new("s").capacity(2)).unwrap();
//! let publisher = bus.publisher();
//! let consumer = std::thread::spawn(move || block_on(sub.stream().collect::<Vec<u32>>()));
//! block_on(async {
//!     for n in 0..5 {
//!         publisher.publish_async(n).await.unwrap(); // waits as a task while full
//!     }
//! });
//! bus.close(); // the stream ends once drained
//! assert_eq!(consumer.join().unwrap(), [0, 1, 2, 3, 4]);
//! ```
//!
//! Dropping a `publish_async` future before the event reached any subscription
//! delivers nothing (the event goes with the future); dropping it later completes
//! the publish, so it is never partial: see [`Publisher::publish_async`].
//!
//! # Knobs for the controller
//!
//! By subscription name: [`Bus::resize`] (clamped into the subscription's
//! `[min_capacity, max_capacity]`), [`Bus::set_capacity_range`] (moves that range, and
//! a capacity outside it into it at once) and [`Bus::set_overflow`]. For the whole bus:
//! [`Bus::set_publish_rate`], a token bucket every publisher honours at once. Readings:
//! [`Bus::snapshot`] and [`Bus::signals`].
//!
//! # Metrics
//!
//! Through the `metrics` facade (install any recorder; this crate has no exporter).
//! Counters marked *snapshot* are updated on each [`Bus::snapshot`] (and
//! [`Subscription::stats`]) from the bus's own counters, so the publish path makes no
//! metrics call. Every series carries a `pipeline` label, the bus's
//! [name](BusBuilder::name) (default `"default"`), so two buses in one process keep
//! their series apart; every family is described (`# HELP`).
//!
//! | name | kind | labels | updated |
//! | --- | --- | --- | --- |
//! | `pipeline_bus_published_total` | counter | `pipeline` | snapshot |
//! | `pipeline_bus_unmatched_total` | counter | `pipeline` | snapshot |
//! | `pipeline_bus_rejected_full_total` | counter | `pipeline` | snapshot |
//! | `pipeline_bus_rate_limited_total` | counter | `pipeline` | snapshot |
//! | `pipeline_bus_rate_limit_refused_total` | counter | `pipeline` | snapshot |
//! | `pipeline_bus_publish_rate_limit_per_second` | gauge (0 = none) | `pipeline` | on change |
//! | `pipeline_bus_subscriptions` | gauge | `pipeline` | on change |
//! | `pipeline_bus_signals_skipped_total` | counter | `pipeline` | per skipped signal |
//! | `pipeline_subscription_delivered_total` | counter | `pipeline`, `subscription` | snapshot |
//! | `pipeline_subscription_received_total` | counter | `pipeline`, `subscription` | snapshot |
//! | `pipeline_subscription_dropped_total` | counter | `pipeline`, `subscription`, `policy` | per drop |
//! | `pipeline_subscription_buffered_events` | gauge | `pipeline`, `subscription` | snapshot |
//! | `pipeline_subscription_capacity_events` | gauge | `pipeline`, `subscription` | snapshot |
//! | `pipeline_subscription_buffered_bytes` | gauge | `pipeline`, `subscription` | snapshot |
//! | `pipeline_subscription_saturation_ratio` | gauge | `pipeline`, `subscription` | snapshot |
//!
//! `tracing` events (target `pipeline_core::bus::...`): subscribe, unsubscribe, close,
//! resize, overflow switch and rate change at `INFO`; each signal at `DEBUG`.

mod builder;
mod config;
mod delivery;
mod error;
mod finisher;
mod publish_async;
mod publisher;
mod rate;
mod route;
mod router;
mod snapshot;
mod subscription;

pub use crate::overflow::OverflowPolicy;
pub use builder::BusBuilder;
pub use config::{DEFAULT_CAPACITY, SubscriptionConfig};
pub use error::{BusError, PublishError};
pub use publish_async::PublishFuture;
pub use publisher::Publisher;
pub use router::Bus;
pub use snapshot::{BusSnapshot, SubscriptionSnapshot};
pub use subscription::{Subscription, SubscriptionRecv, SubscriptionStream};

/// The examples of `docs/bus-and-pools.md`, compiled and run as doc tests so the guide
/// stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/bus-and-pools.md")]
pub struct GuideDoctests;
