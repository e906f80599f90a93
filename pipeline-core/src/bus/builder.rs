//! [`BusBuilder`]: the bus-wide settings.

use super::delivery;
use super::error::BusError;
use super::rate::RateLimiter;
use super::route::BusCommon;
use super::router::{Bus, BusInner, FanOut};
use crate::clock::{Clock, SystemClock};
use crate::signal::{SaturationThresholds, SignalSender};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

/// The name of a bus built without [`BusBuilder::name`].
pub(crate) const DEFAULT_NAME: &str = "default";

/// Builds a [`Bus`]; from [`Bus::builder`].
///
/// | setting | default | rule |
/// | --- | --- | --- |
/// | [`name`](Self::name) | `"default"` | the `pipeline` label of its metrics |
/// | [`signal_capacity`](Self::signal_capacity) | 1024 signals | at least 1 |
/// | [`saturation_thresholds`](Self::saturation_thresholds) | high 0.8, low 0.5 | `0 <= low < high <= 1` |
/// | [`publish_burst`](Self::publish_burst) | 8 events | at least 1 |
/// | [`publish_rate`](Self::publish_rate) | no limit | positive, finite events/s |
/// | [`clock`](Self::clock) | [`SystemClock`] | |
///
/// With a rate of 1000 events/s and the default burst of 8, an idle bus admits 8
/// events at once, then one per millisecond.
///
/// # Examples
///
/// ```
/// use pipeline_core::bus::Bus;
///
/// let bus = Bus::<String>::builder()
///     .signal_capacity(256)
///     .saturation_thresholds(0.9, 0.6)
///     .publish_burst(32)
///     .publish_rate(Some(10_000.0))
///     .build()
///     .unwrap();
/// assert_eq!(bus.publish_rate(), Some(10_000.0));
/// ```
#[must_use = "a builder does nothing until build() is called"]
pub struct BusBuilder<E> {
    name: Arc<str>,
    signal_capacity: usize,
    thresholds: (f64, f64),
    publish_burst: u32,
    publish_rate: Option<f64>,
    clock: Arc<dyn Clock>,
    _events: PhantomData<fn(E)>,
}

impl<E: Send + 'static> BusBuilder<E> {
    pub(crate) fn new() -> Self {
        let defaults = SaturationThresholds::default();
        BusBuilder {
            name: Arc::from(DEFAULT_NAME),
            signal_capacity: 1024,
            thresholds: (defaults.high(), defaults.low()),
            publish_burst: 8,
            publish_rate: None,
            clock: Arc::new(SystemClock),
            _events: PhantomData,
        }
    }

    /// The bus's name (default `"default"`): the `pipeline` label on every series of
    /// the bus, its subscriptions, the pools on them and a controller over it, so two
    /// buses in one process keep their series apart. Give each bus of a process its
    /// own name.
    ///
    /// ```
    /// use pipeline_core::bus::Bus;
    ///
    /// let orders = Bus::<u32>::builder().name("orders").build().unwrap();
    /// assert_eq!(orders.name(), "orders");
    /// assert_eq!(Bus::<u32>::new().name(), "default");
    /// ```
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// How many signals wait in the signal channel before new ones are skipped
    /// (default 1024).
    pub fn signal_capacity(mut self, capacity: usize) -> Self {
        self.signal_capacity = capacity;
        self
    }

    /// The saturation thresholds, as shares of each subscription's capacity (default
    /// 0.8 and 0.5); see [`signal`](crate::signal#hysteresis).
    pub fn saturation_thresholds(mut self, high: f64, low: f64) -> Self {
        self.thresholds = (high, low);
        self
    }

    /// How many events the publish-rate limiter admits at once after an idle spell
    /// (default 8).
    pub fn publish_burst(mut self, burst: u32) -> Self {
        self.publish_burst = burst;
        self
    }

    /// The publish-rate limit to start with, in events per second (default none); see
    /// [`Bus::set_publish_rate`].
    pub fn publish_rate(mut self, rate: Option<f64>) -> Self {
        self.publish_rate = rate;
        self
    }

    /// The clock for the rate limiter and signal timestamps (default [`SystemClock`]).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Builds a bus that holds **one subscription at a time**, for an event type that
    /// need not be `Clone` (a one-stage pipeline, a bus with one consumer).
    ///
    /// Everything else works as on a bus from [`build`](Self::build): filters, overflow
    /// policies, resizing, the rate limit, signals, `publish_async`. A second
    /// [`subscribe`](Bus::subscribe) while one subscription is live fails with
    /// [`BusError::FanOutNeedsClone`]; once that one is removed (unsubscribed or
    /// dropped), another may take its place.
    ///
    /// # Errors
    ///
    /// As for [`build`](Self::build).
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_core::bus::{Bus, BusError, SubscriptionConfig};
    ///
    /// /// A job that owns a resource: moved from publisher to subscriber, never copied.
    /// struct Job(std::fs::File);
    ///
    /// let bus = Bus::<Job>::builder().build_single().unwrap();
    /// let jobs = bus.subscribe(SubscriptionConfig::new("jobs").capacity(8)).unwrap();
    /// let again = bus.subscribe(SubscriptionConfig::new("audit"));
    /// assert!(matches!(again, Err(BusError::FanOutNeedsClone { .. })));
    ///
    /// let file = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
    /// bus.publisher().publish(Job(file)).unwrap();
    /// let Job(_file) = jobs.recv().unwrap();
    ///
    /// drop(jobs); // the one subscription is gone: another may take its place
    /// let _audit = bus.subscribe(SubscriptionConfig::new("audit")).unwrap();
    /// ```
    pub fn build_single(self) -> Result<Bus<E>, BusError> {
        self.build_with(None)
    }

    fn build_with(self, fan_out: Option<FanOut<E>>) -> Result<Bus<E>, BusError> {
        let invalid = |field, rule: &str| BusError::InvalidConfig {
            field,
            rule: rule.to_owned(),
        };
        if self.signal_capacity == 0 {
            return Err(invalid("signal_capacity", "must be at least 1"));
        }
        if self.publish_burst == 0 {
            return Err(invalid("publish_burst", "must be at least 1"));
        }
        let (high, low) = self.thresholds;
        let thresholds =
            SaturationThresholds::new(high, low).map_err(|e| BusError::InvalidConfig {
                field: "saturation_thresholds",
                rule: e.to_string(),
            })?;
        let limiter = RateLimiter::new(self.clock.clone(), self.publish_burst);
        limiter.set_rate(self.publish_rate)?;
        let common = BusCommon {
            signals: SignalSender::new(self.signal_capacity, self.clock, &self.name),
            name: self.name,
            thresholds,
        };
        Ok(Bus::from_inner(BusInner::new(common, limiter, fan_out)))
    }
}

impl<E: Clone + Send + 'static> BusBuilder<E> {
    /// Builds the bus. Each event is cloned once per extra matching subscription (the
    /// last one gets the event itself); for an event type that is not `Clone`, see
    /// [`build_single`](Self::build_single).
    ///
    /// # Errors
    ///
    /// [`BusError::InvalidConfig`] naming the setting that breaks its rule, or
    /// [`BusError::InvalidRate`] for a bad initial rate.
    pub fn build(self) -> Result<Bus<E>, BusError> {
        self.build_with(Some(delivery::fan_out()))
    }
}

impl<E> fmt::Debug for BusBuilder<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusBuilder")
            .field("name", &self.name)
            .field("signal_capacity", &self.signal_capacity)
            .field("thresholds", &self.thresholds)
            .field("publish_burst", &self.publish_burst)
            .field("publish_rate", &self.publish_rate)
            .field("clock", &self.clock)
            .finish()
    }
}
