//! Gauges and counters of a bus and its subscriptions, for periodic sampling.

use crate::overflow::OverflowPolicy;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Every gauge of a bus at one moment, from [`Bus::snapshot`](super::Bus::snapshot).
///
/// Counters only grow; a rate is the difference of two snapshots over the difference
/// of their `at`. Values are read one after another without stopping publishers, so
/// under load they describe slightly different instants.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BusSnapshot {
    /// When it was taken, on the bus clock.
    pub at: Instant,
    /// Publishes that returned `Ok` (one per event, however many subscriptions got it),
    /// and cancelled `publish_async` futures the bus completed
    /// (`completed_after_cancel`).
    pub published: u64,
    /// Of those, publishes that matched no subscription.
    pub unmatched: u64,
    /// Publishes refused with [`PublishError::Full`](super::PublishError::Full).
    pub rejected_full: u64,
    /// Publishes that found no rate-limit token at once (refused with `Backoff`, or
    /// made to wait).
    pub rate_limited: u64,
    /// Of `rate_limited`, publishes the rate limit refused: `Backoff` from
    /// `try_publish`, or `Timeout` from `publish_timeout` while it waited for a token.
    /// The others waited and were then published (or refused for another reason), so
    /// `published + rejected_full + rate_limit_refused` counts each attempt once.
    pub rate_limit_refused: u64,
    /// [`publish_async`](super::Publisher::publish_async) futures dropped after the
    /// event had reached a subscription, whose remaining deliveries the bus completed
    /// (so the publish is never partial). Each is also counted in `published`.
    pub completed_after_cancel: u64,
    /// The publish-rate limit in force, in events per second.
    pub publish_rate: Option<f64>,
    /// Signals skipped because the signal channel was full.
    pub signals_skipped: u64,
    /// One entry per live subscription, in subscription order.
    pub subscriptions: Vec<SubscriptionSnapshot>,
}

impl BusSnapshot {
    /// The entry of the subscription called `name`.
    pub fn subscription(&self, name: &str) -> Option<&SubscriptionSnapshot> {
        self.subscriptions.iter().find(|s| &*s.name == name)
    }
}

/// The gauges and counters of one subscription.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SubscriptionSnapshot {
    /// Its name.
    pub name: Arc<str>,
    /// Events buffered now.
    pub len: usize,
    /// The capacity in force.
    pub capacity: usize,
    /// The lowest capacity a resize may set.
    pub min_capacity: usize,
    /// The highest capacity a resize may set.
    pub max_capacity: usize,
    /// `len / capacity` (briefly above 1 while a shrink settles).
    pub saturation: f64,
    /// The most events seen buffered at once.
    pub high_water_mark: usize,
    /// Events accepted into the buffer: `received + dropped_oldest + len`.
    pub delivered: u64,
    /// Events handed to the subscriber.
    pub received: u64,
    /// Events dropped because the buffer was full (DropNewest, or DropOldest when
    /// eviction could not make room).
    pub dropped_newest: u64,
    /// Buffered events evicted by DropOldest.
    pub dropped_oldest: u64,
    /// Delivery attempts that found the buffer full.
    pub full_events: u64,
    /// Total time publishers waited for room.
    pub blocked_time: Duration,
    /// Publishers (threads or tasks) waiting for room in this buffer now: demand
    /// that has arrived and is not in the buffer yet, invisible in `len`.
    pub waiting_publishers: usize,
    /// Times `try_publish` had to wait for room here after its check found room (see
    /// [`Publisher::try_publish`](super::Publisher::try_publish)).
    pub try_publish_waits: u64,
    /// Resizes that changed the capacity.
    pub resizes: u64,
    /// Average bytes of a delivered event, by the subscription's event-size function.
    pub avg_event_bytes: u64,
    /// Estimated memory held by the buffer: `len * avg_event_bytes`.
    pub bytes_buffered: u64,
    /// The overflow policy in force.
    pub overflow: OverflowPolicy,
    /// Whether the policy may be switched to dropping.
    pub droppable: bool,
    /// Whether it is above its high threshold (and not yet back to the low one).
    pub saturated: bool,
    /// Whether a back-pressure episode is open.
    pub back_pressure: bool,
    /// Whether a drop episode is open.
    pub dropping: bool,
}

impl SubscriptionSnapshot {
    /// Events lost to either dropping policy.
    pub fn dropped(&self) -> u64 {
        self.dropped_newest + self.dropped_oldest
    }
}
