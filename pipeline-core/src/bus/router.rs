//! [`Bus`]: the subscription list and the knobs the controller turns.

use super::builder::BusBuilder;
use super::config::{CAPACITY_NAMES, SubscriptionConfig};
use super::delivery::DeliverMany;
use super::error::BusError;
use super::publisher::Publisher;
use super::rate::RateLimiter;
use super::route::{BusCommon, Route, SubShared, SubSpec};
use super::snapshot::BusSnapshot;
use super::subscription::Subscription;
use crate::channel;
use crate::hazard::{Registry, cell::HazardCell};
use crate::overflow::OverflowPolicy;
use crate::signal::Signal;
use crate::sync::{
    atomic::{AtomicU64, Ordering},
    lock,
};
use std::fmt;
use std::sync::Arc;

/// The subscription list as publishers see it: replaced whole (copy-on-write) when a
/// subscription comes or goes, so a publisher reads it without any lock.
pub(crate) struct Routes<E> {
    pub(crate) closed: bool,
    pub(crate) list: Vec<Arc<Route<E>>>,
    /// The bus is open and has one subscription, with no filter and no event-size
    /// function: a publish to it runs none of the user's code (see `Publisher`'s fast
    /// path).
    pub(crate) plain_lone: bool,
}

impl<E> Routes<E> {
    pub(crate) fn new(closed: bool, list: Vec<Arc<Route<E>>>) -> Self {
        let plain_lone = !closed && matches!(&list[..], [route] if route.is_plain());
        Routes {
            closed,
            list,
            plain_lone,
        }
    }
}

/// What a bus needs `E: Clone` for, as functions monomorphised where `E: Clone` is
/// known (`BusBuilder::build`): the copy for each extra subscription, and the
/// blocking delivery to several, which so calls `Clone` directly.
pub(crate) struct FanOut<E> {
    pub(crate) clone: fn(&E) -> E,
    pub(crate) deliver_many: DeliverMany<E>,
}

impl<E> Clone for FanOut<E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E> Copy for FanOut<E> {}

#[derive(Default)]
pub(crate) struct BusCounters {
    pub(crate) unmatched: AtomicU64,
    pub(crate) rejected_full: AtomicU64,
    pub(crate) rate_limited: AtomicU64,
    /// Of `rate_limited`, publishes that gave up for want of a token (`Backoff`, or
    /// `Timeout` while waiting for one).
    pub(crate) rate_limit_refused: AtomicU64,
    /// `publish_async` futures dropped after their first delivery whose remaining
    /// deliveries the bus has completed (see `Publisher::publish_async`). Each is also
    /// a publish that delivered, so `published()` adds them.
    pub(crate) completed_after_cancel: AtomicU64,
}

struct BusMetrics {
    published: metrics::Counter,
    unmatched: metrics::Counter,
    rejected_full: metrics::Counter,
    rate_limited: metrics::Counter,
    rate_limit_refused: metrics::Counter,
    rate_limit: metrics::Gauge,
    subscriptions: metrics::Gauge,
}

/// Hazard of a publisher's slot that protects the route list it is reading (guarded
/// reads: the general publish path).
pub(crate) const ROUTES: usize = 0;
/// Hazard of a publisher's slot that stays on the route list it last read (sticky
/// reads: the fast path).
pub(crate) const ROUTES_STICKY: usize = 1;
/// Counter of a publisher's slot: publishes that returned `Ok`.
pub(crate) const PUBLISHED: usize = 0;

pub(crate) struct BusInner<E> {
    /// Read by every publish under a hazard (no reference count touched); replaced
    /// whole when a subscription comes or goes.
    pub(crate) routes: HazardCell<Routes<E>>,
    /// One slot per publishing thread: the route-list hazard and the publish count.
    pub(crate) registry: Arc<Registry>,
    pub(crate) common: Arc<BusCommon>,
    pub(crate) limiter: RateLimiter,
    pub(crate) counters: BusCounters,
    /// How an event goes to several subscriptions: `Some` for a bus from `build` (or
    /// `new`), `None` for one from `build_single`, which holds one subscription at a
    /// time and so never fans out.
    fan_out: Option<FanOut<E>>,
    next_id: AtomicU64,
    metrics: BusMetrics,
}

impl<E> BusInner<E> {
    pub(crate) fn new(common: BusCommon, limiter: RateLimiter, fan_out: Option<FanOut<E>>) -> Self {
        crate::describe_metrics();
        let pipeline = || ("pipeline", common.name.to_string());
        BusInner {
            routes: HazardCell::new(Routes::new(false, Vec::new()), ROUTES, ROUTES_STICKY),
            registry: Registry::with_sticky(ROUTES_STICKY),
            metrics: BusMetrics {
                published: metrics::counter!("pipeline_bus_published_total", &[pipeline()]),
                unmatched: metrics::counter!("pipeline_bus_unmatched_total", &[pipeline()]),
                rejected_full: metrics::counter!("pipeline_bus_rejected_full_total", &[pipeline()]),
                rate_limited: metrics::counter!("pipeline_bus_rate_limited_total", &[pipeline()]),
                rate_limit_refused: metrics::counter!(
                    "pipeline_bus_rate_limit_refused_total",
                    &[pipeline()]
                ),
                rate_limit: metrics::gauge!(
                    "pipeline_bus_publish_rate_limit_per_second",
                    &[pipeline()]
                ),
                subscriptions: metrics::gauge!("pipeline_bus_subscriptions", &[pipeline()]),
            },
            common: Arc::new(common),
            limiter,
            counters: BusCounters::default(),
            fan_out,
            next_id: AtomicU64::new(0),
        }
    }

    /// Replaces the list with `change(current)`; returns what `change` returned.
    fn change<R>(&self, change: impl FnOnce(&Routes<E>) -> (Option<Routes<E>>, R)) -> R {
        self.routes.update(&self.registry, |current| {
            let (next, result) = change(current);
            if let Some(next) = &next {
                self.metrics.subscriptions.set(next.list.len() as f64);
            }
            (next, result)
        })
    }

    /// Publishes that returned `Ok`, over every thread, and cancelled `publish_async`
    /// futures whose deliveries the bus completed.
    pub(crate) fn published(&self) -> u64 {
        self.registry.sum(PUBLISHED) + self.counters.completed_after_cancel.load(Ordering::Relaxed)
    }

    /// `E::clone`, if this bus fans out.
    pub(crate) fn fan_out_fn(&self) -> Option<fn(&E) -> E> {
        self.fan_out.map(|f| f.clone)
    }

    /// The blocking delivery to any number of routes but one, if this bus fans out.
    #[inline]
    pub(crate) fn deliver_many(&self) -> Option<DeliverMany<E>> {
        self.fan_out.map(|f| f.deliver_many)
    }

    /// A copy of `event` for one more matching subscription.
    ///
    /// Only called with two or more matching subscriptions, which a bus without a
    /// clone function never has: `subscribe` refuses a second live one.
    #[inline]
    pub(crate) fn fan_out(&self, event: &E) -> E {
        match self.fan_out {
            Some(f) => (f.clone)(event),
            None => unreachable!("a bus from build_single holds one subscription at a time"),
        }
    }

    /// Removes the first route `pick` chooses; returns it.
    pub(crate) fn remove(&self, pick: impl Fn(&Route<E>) -> bool) -> Option<Arc<Route<E>>> {
        let removed = self.change(|routes| match routes.list.iter().position(|r| pick(r)) {
            None => (None, None),
            Some(at) => {
                let mut list = routes.list.clone();
                let removed = list.remove(at);
                let next = Routes::new(routes.closed, list);
                (Some(next), Some(removed))
            }
        })?;
        removed.detach();
        tracing::info!(subscription = %removed.shared.name, "bus: unsubscribed");
        Some(removed)
    }

    fn find(&self, name: &str) -> Result<Arc<Route<E>>, BusError> {
        self.routes
            .load_full()
            .list
            .iter()
            .find(|r| &*r.shared.name == name)
            .cloned()
            .ok_or_else(|| BusError::UnknownSubscription(name.to_owned()))
    }
}

/// A fan-out event bus: each published event goes to every subscription whose filter
/// matches, through that subscription's own live-resizable buffer.
///
/// `Bus` is a cheap handle (clone it freely). The bus stays open while any `Bus` or
/// [`Publisher`] handle exists, or until [`close`](Bus::close). See the
/// [module docs](super) for a tour.
///
/// Events need `Clone` only to go to several subscriptions: [`Bus::new`] and
/// [`BusBuilder::build`] ask for `E: Clone`, while [`BusBuilder::build_single`] makes a
/// bus for any `E: Send + 'static` that holds one subscription at a time.
pub struct Bus<E> {
    inner: Arc<BusInner<E>>,
}

impl<E: Clone + Send + 'static> Bus<E> {
    /// A bus with default settings (see [`BusBuilder`]); events are cloned for each
    /// extra matching subscription.
    pub fn new() -> Self {
        BusBuilder::new()
            .build()
            .expect("the default bus settings are valid")
    }
}

impl<E: Send + 'static> Bus<E> {
    /// A builder to set the signal channel, saturation thresholds, rate-limit burst and
    /// clock.
    pub fn builder() -> BusBuilder<E> {
        BusBuilder::new()
    }

    pub(crate) fn from_inner(inner: BusInner<E>) -> Self {
        Bus {
            inner: Arc::new(inner),
        }
    }

    /// Adds a subscription; events published from now on that match its filter are
    /// buffered for it.
    ///
    /// Safe while events flow: publishers pick up the new list on their next publish.
    ///
    /// # Errors
    ///
    /// [`BusError::InvalidConfig`] naming the field for a config that breaks a rule (see
    /// [`SubscriptionConfig`]), [`BusError::DuplicateName`] when a live subscription
    /// has the name, [`BusError::FanOutNeedsClone`] on a bus from
    /// [`BusBuilder::build_single`] that already has a live subscription,
    /// [`BusError::Closed`] after [`close`](Bus::close).
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_core::bus::{Bus, BusError, SubscriptionConfig};
    ///
    /// let bus = Bus::<u8>::new();
    /// let _audit = bus.subscribe(SubscriptionConfig::new("audit")).unwrap();
    /// let again = bus.subscribe(SubscriptionConfig::new("audit"));
    /// assert!(matches!(again, Err(BusError::DuplicateName(_))));
    ///
    /// let bad = bus.subscribe(SubscriptionConfig::new("x").capacity(8).max_capacity(4));
    /// assert!(matches!(bad, Err(BusError::InvalidConfig { field: "capacity", .. })));
    /// ```
    pub fn subscribe(&self, config: SubscriptionConfig<E>) -> Result<Subscription<E>, BusError> {
        let range = config.validate()?;
        let inner = &self.inner;
        inner.change(|routes| {
            if routes.closed {
                return (None, Err(BusError::Closed));
            }
            if routes.list.iter().any(|r| r.shared.name == config.name) {
                return (None, Err(BusError::DuplicateName(config.name.clone())));
            }
            if let (None, Some(existing)) = (inner.fan_out, routes.list.first()) {
                let refused = BusError::FanOutNeedsClone {
                    subscription: config.name.clone(),
                    existing: existing.shared.name.clone(),
                };
                return (None, Err(refused));
            }
            let (tx, rx) = channel::bounded(config.capacity);
            let spec = SubSpec {
                id: inner.next_id.fetch_add(1, Ordering::Relaxed),
                name: config.name.clone(),
                capacity: config.capacity,
                range,
                policy: config.overflow,
                droppable: config.droppable,
                sized: config.event_size.is_some(),
                default_event_bytes: size_of::<E>(),
            };
            let shared = Arc::new(SubShared::new(spec, inner.common.clone()));
            let route = Route::new(
                shared.clone(),
                config.filter.clone(),
                tx,
                rx.clone(),
                config.event_size,
            );
            let mut list = routes.list.clone();
            list.push(Arc::new(route));
            tracing::info!(
                subscription = %config.name,
                capacity = config.capacity,
                min_capacity = range.min,
                max_capacity = range.max,
                overflow = %config.overflow,
                droppable = config.droppable,
                "bus: subscribed"
            );
            let subscription = Subscription::new(shared, rx, Arc::downgrade(inner));
            let next = Routes::new(false, list);
            (Some(next), Ok(subscription))
        })
    }

    /// Removes the subscription called `name`. Its handle keeps working: it receives
    /// what is still buffered, then reports disconnection. (Dropping the
    /// [`Subscription`] handle removes it too.)
    ///
    /// # Errors
    ///
    /// [`BusError::UnknownSubscription`] when no live subscription has the name.
    pub fn unsubscribe(&self, name: &str) -> Result<(), BusError> {
        self.inner
            .remove(|r| &*r.shared.name == name)
            .map(drop)
            .ok_or_else(|| BusError::UnknownSubscription(name.to_owned()))
    }

    /// The bus's name ([`BusBuilder::name`], default `"default"`): the `pipeline`
    /// label of its metrics.
    pub fn name(&self) -> &str {
        &self.inner.common.name
    }

    /// A new publishing handle. Publishers are cheap; clone one per thread or share it.
    pub fn publisher(&self) -> Publisher<E> {
        Publisher::new(self.inner.clone())
    }

    /// Sets the capacity of subscription `name`, **clamped** into its
    /// `[min_capacity, max_capacity]` (see [`set_capacity_range`](Self::set_capacity_range)),
    /// and returns the capacity now in force.
    ///
    /// The resize never blocks publishers or the subscriber and copies nothing (see
    /// [`crate::channel`]); publishers waiting on a full buffer wake and use
    /// the new room at once.
    ///
    /// # Errors
    ///
    /// [`BusError::UnknownSubscription`] when no live subscription has the name.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_core::bus::{Bus, SubscriptionConfig};
    ///
    /// let bus = Bus::<u8>::new();
    /// let sub = bus
    ///     .subscribe(SubscriptionConfig::new("s").capacity(8).min_capacity(4).max_capacity(64))
    ///     .unwrap();
    /// assert_eq!(bus.resize("s", 32), Ok(32));
    /// assert_eq!(bus.resize("s", 1000), Ok(64)); // clamped
    /// assert_eq!(sub.capacity(), 64);
    /// ```
    pub fn resize(&self, name: &str, capacity: usize) -> Result<usize, BusError> {
        let route = self.inner.find(name)?;
        let range = lock(&route.shared.control);
        let applied = range.clamp(capacity);
        route.resize_locked(applied, capacity)
    }

    /// Sets the range `[min, max]` that [`resize`](Self::resize) clamps the capacity of
    /// subscription `name` into (the range given at subscribe time by
    /// [`min_capacity`](SubscriptionConfig::min_capacity) and
    /// [`max_capacity`](SubscriptionConfig::max_capacity)), and returns the capacity now
    /// in force.
    ///
    /// A capacity outside the new range is moved into it at once: clamped to the
    /// nearer bound, by a resize like any other (never blocking, nothing lost, counted
    /// in [`SubscriptionSnapshot::resizes`](super::SubscriptionSnapshot::resizes) and
    /// logged). [`snapshot`](Self::snapshot) reports the new range from then on.
    ///
    /// # Errors
    ///
    /// [`BusError::InvalidConfig`] naming `min_capacity` or `max_capacity` unless
    /// `1 <= min <= max` (nothing changes then); [`BusError::UnknownSubscription`]
    /// when no live subscription has the name.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_core::bus::{Bus, BusError, SubscriptionConfig};
    ///
    /// let bus = Bus::<u8>::new();
    /// let sub = bus
    ///     .subscribe(SubscriptionConfig::new("s").capacity(64).min_capacity(16).max_capacity(256))
    ///     .unwrap();
    /// assert_eq!(bus.set_capacity_range("s", 8, 32), Ok(32)); // 64 is above: clamped at once
    /// assert_eq!(sub.capacity(), 32);
    /// let s = bus.snapshot();
    /// let s = s.subscription("s").unwrap();
    /// assert_eq!((s.min_capacity, s.max_capacity), (8, 32));
    /// assert_eq!(bus.resize("s", 1000), Ok(32)); // resizes clamp into the new range
    /// assert!(matches!(
    ///     bus.set_capacity_range("s", 64, 16),
    ///     Err(BusError::InvalidConfig { field: "max_capacity", .. })
    /// ));
    /// ```
    pub fn set_capacity_range(
        &self,
        name: &str,
        min: usize,
        max: usize,
    ) -> Result<usize, BusError> {
        let route = self.inner.find(name)?;
        let mut range = lock(&route.shared.control);
        let before = range
            .replace(&CAPACITY_NAMES, min, max)
            .map_err(|(field, rule)| BusError::InvalidConfig { field, rule })?;
        if before != *range {
            tracing::info!(subscription = %route.shared.name, from = %before, to = %*range, "bus: subscription capacity range set");
        }
        let capacity = route.shared.capacity();
        route.resize_locked(range.clamp(capacity), capacity)
    }

    /// Switches the overflow policy of subscription `name`, effective for publishes
    /// that start after the call (a publish already waiting for room keeps waiting).
    ///
    /// # Errors
    ///
    /// [`BusError::NotDroppable`] when asking a subscription that is not
    /// [`droppable`](SubscriptionConfig::droppable) for a dropping policy;
    /// [`BusError::UnknownSubscription`] when no live subscription has the name.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_core::bus::{Bus, BusError, OverflowPolicy, SubscriptionConfig};
    ///
    /// let bus = Bus::<u8>::new();
    /// let _metrics = bus.subscribe(SubscriptionConfig::new("metrics").droppable(true)).unwrap();
    /// let _orders = bus.subscribe(SubscriptionConfig::new("orders")).unwrap();
    /// bus.set_overflow("metrics", OverflowPolicy::DropOldest).unwrap();
    /// assert!(matches!(
    ///     bus.set_overflow("orders", OverflowPolicy::DropNewest),
    ///     Err(BusError::NotDroppable { .. })
    /// ));
    /// bus.set_overflow("orders", OverflowPolicy::Block).unwrap(); // always allowed
    /// ```
    pub fn set_overflow(&self, name: &str, policy: OverflowPolicy) -> Result<(), BusError> {
        let route = self.inner.find(name)?;
        let shared = &route.shared;
        if policy.drops() && !shared.droppable {
            return Err(BusError::NotDroppable {
                subscription: shared.name.clone(),
                requested: policy,
            });
        }
        let _control = lock(&shared.control);
        let before = shared.set_policy(policy);
        if before != policy {
            tracing::info!(
                subscription = %shared.name,
                from = %before,
                to = %policy,
                "bus: overflow policy switched"
            );
        }
        Ok(())
    }

    /// Limits publishing on this bus to `rate` events per second, for every publisher
    /// at once (`None` lifts the limit). Effective for the next token.
    ///
    /// The limiter is a token bucket of [`publish_burst`](BusBuilder::publish_burst)
    /// tokens refilled at `rate`: `publish` waits for a token, `try_publish` returns
    /// [`PublishError::Backoff`](super::PublishError::Backoff) with the exact wait. A
    /// change keeps the bucket's fill level in tokens.
    ///
    /// # Errors
    ///
    /// [`BusError::InvalidRate`] unless `rate` is positive and finite.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_core::bus::{Bus, PublishError};
    /// use pipeline_core::clock::ManualClock;
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let bus = Bus::<u8>::builder().clock(clock.clone()).publish_burst(2).build().unwrap();
    /// bus.set_publish_rate(Some(10.0)).unwrap(); // one token per 100 ms
    /// let publisher = bus.publisher();
    /// publisher.try_publish(1).unwrap();
    /// publisher.try_publish(2).unwrap(); // the burst
    /// let err = publisher.try_publish(3).unwrap_err();
    /// assert_eq!(err.retry_after(), Some(Duration::from_millis(100)));
    /// clock.advance(Duration::from_millis(100));
    /// publisher.try_publish(err.into_inner()).unwrap();
    /// assert_eq!(bus.publish_rate(), Some(10.0));
    /// ```
    pub fn set_publish_rate(&self, rate: Option<f64>) -> Result<(), BusError> {
        self.inner.limiter.set_rate(rate)?;
        self.inner.metrics.rate_limit.set(rate.unwrap_or(0.0));
        tracing::info!(rate = ?rate, "bus: publish rate limit set");
        Ok(())
    }

    /// The publish-rate limit in force, in events per second.
    pub fn publish_rate(&self) -> Option<f64> {
        self.inner.limiter.rate()
    }

    /// The receiving end of the signal channel (see [`signal`](crate::signal)).
    ///
    /// Every call returns a handle on the same channel: each signal goes to one of
    /// them, so take one and keep it. It is a crossbeam receiver, so it can sit in a
    /// `select!` beside a tick.
    pub fn signals(&self) -> crossbeam_channel::Receiver<Signal> {
        self.inner.common.signals.receiver()
    }

    /// Signals skipped because the signal channel was full.
    pub fn signals_skipped(&self) -> u64 {
        self.inner.common.signals.skipped()
    }

    /// The gauges and counters of the bus and of every subscription, cheaply (a few
    /// atomic loads and one short lock per subscription), for periodic sampling. Each
    /// call also updates the `metrics` gauges and counters (see the
    /// [module docs](super#metrics)).
    pub fn snapshot(&self) -> BusSnapshot {
        let inner = &self.inner;
        let routes = inner.routes.load_full();
        let c = &inner.counters;
        let snapshot = BusSnapshot {
            at: inner.limiter.clock().now(),
            published: inner.published(),
            unmatched: c.unmatched.load(Ordering::Relaxed),
            rejected_full: c.rejected_full.load(Ordering::Relaxed),
            rate_limited: c.rate_limited.load(Ordering::Relaxed),
            rate_limit_refused: c.rate_limit_refused.load(Ordering::Relaxed),
            completed_after_cancel: c.completed_after_cancel.load(Ordering::Relaxed),
            publish_rate: inner.limiter.rate(),
            signals_skipped: inner.common.signals.skipped(),
            subscriptions: routes
                .list
                .iter()
                .map(|r| r.shared.snapshot(r.tx.stats()))
                .collect(),
        };
        let m = &inner.metrics;
        m.published.absolute(snapshot.published);
        m.unmatched.absolute(snapshot.unmatched);
        m.rejected_full.absolute(snapshot.rejected_full);
        m.rate_limited.absolute(snapshot.rate_limited);
        m.rate_limit_refused.absolute(snapshot.rate_limit_refused);
        snapshot
    }

    /// Closes the bus: publishes fail with `Closed`, subscribing fails, and every
    /// subscription receives what is buffered and then reports disconnection. Idempotent.
    pub fn close(&self) {
        let removed = self.inner.change(|routes| {
            let next = Routes::new(true, Vec::new());
            (Some(next), routes.list.clone())
        });
        for route in &removed {
            route.detach();
        }
        tracing::info!(subscriptions = removed.len(), "bus: closed");
    }

    /// Whether [`close`](Bus::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.routes.load_full().closed
    }
}

impl<E: Clone + Send + 'static> Default for Bus<E> {
    fn default() -> Self {
        Bus::new()
    }
}

impl<E> Clone for Bus<E> {
    fn clone(&self) -> Self {
        Bus {
            inner: self.inner.clone(),
        }
    }
}

impl<E> fmt::Debug for Bus<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let routes = self.inner.routes.load_full();
        f.debug_struct("Bus")
            .field("closed", &routes.closed)
            .field(
                "subscriptions",
                &routes
                    .list
                    .iter()
                    .map(|r| &*r.shared.name)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}
