//! Edge-triggered signals a [`Bus`](crate::bus::Bus) raises about its subscriptions.
//!
//! A signal says that something *changed*: a buffer crossed its high saturation
//! threshold (or came back under the low one), publishers started or stopped waiting
//! for room, a subscription started or stopped dropping events. Levels (lengths,
//! counters) are read with [`Bus::snapshot`](crate::bus::Bus::snapshot) instead.
//!
//! Signals travel on a bounded crossbeam channel from [`Bus::signals`]. Raising one is a
//! `try_send`: it never blocks or slows a publisher. When nobody reads and the channel
//! is full, new signals are skipped and counted ([`Bus::signals_skipped`]).
//!
//! # Hysteresis
//!
//! Each subscription is judged by two thresholds, set for the whole bus with
//! [`BusBuilder::saturation_thresholds`](crate::bus::BusBuilder::saturation_thresholds),
//! as shares of its capacity: `high` (default 0.8) and `low` (default 0.5). [`SignalKind::SaturationHigh`] fires when the length
//! reaches `high * capacity`; nothing more fires until it falls to `low * capacity`,
//! when [`SignalKind::SaturationLow`] fires, together with the end of any back-pressure
//! or drop episode. The band between them keeps a buffer that hovers at one threshold
//! from flooding the channel.
//!
//! The length is compared with the thresholds on one delivery in `stride` (the power of
//! two at or below `capacity / 16`, at most 64; every delivery below capacity 32), so a
//! crossing is seen within about 6% of capacity without measuring a busy buffer per
//! event; a receive looks only while an episode is open, and a resize looks at once.
//!
//! ```
//! use pipeline_core::bus::{Bus, SubscriptionConfig};
//! use pipeline_core::signal::SignalKind;
//!
//! let bus = Bus::builder().saturation_thresholds(0.75, 0.25).build().unwrap();
//! let sub = bus.subscribe(SubscriptionConfig::new("orders").capacity(4)).unwrap();
//! let signals = bus.signals();
//! let publisher = bus.publisher();
//! for i in 0..4 {
//!     publisher.publish(i).unwrap(); // the third reaches 3 = 0.75 * 4
//! }
//! let high = signals.try_recv().unwrap();
//! assert_eq!(&*high.subscription, "orders");
//! assert_eq!(high.kind, SignalKind::SaturationHigh { len: 3, capacity: 4 });
//! assert!(signals.try_recv().is_err()); // once, not per event
//!
//! for _ in 0..3 {
//!     sub.recv().unwrap(); // the third leaves 1 = 0.25 * 4
//! }
//! assert_eq!(signals.try_recv().unwrap().kind, SignalKind::SaturationLow { len: 1, capacity: 4 });
//! ```
//!
//! [`Bus::signals`]: crate::bus::Bus::signals
//! [`Bus::signals_skipped`]: crate::bus::Bus::signals_skipped

mod kind;
mod sender;
mod thresholds;

pub use kind::{Signal, SignalKind};
pub(crate) use sender::SignalSender;
pub use thresholds::{SaturationThresholds, ThresholdError};
