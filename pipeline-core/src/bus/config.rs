//! What a subscription wants: [`SubscriptionConfig`].

use super::error::BusError;
use crate::overflow::OverflowPolicy;
use crate::range::{Bounds, RangeNames, check_range};
use std::fmt;
use std::sync::Arc;

/// The capacity settings' names, as their setters are called.
pub(crate) const CAPACITY_NAMES: RangeNames = RangeNames {
    initial: "capacity",
    min: "min_capacity",
    max: "max_capacity",
};

pub(crate) type Filter<E> = Arc<dyn Fn(&E) -> bool + Send + Sync>;

/// The capacity a subscription starts with when none is given.
pub const DEFAULT_CAPACITY: usize = 1024;

/// How to subscribe: a name, which events, how much to buffer, what to do when full.
///
/// The setters return the config, so it reads as one expression; validation happens
/// in [`Bus::subscribe`](super::Bus::subscribe), whose errors name the setter that gave
/// the offending value. A bound left unset follows `capacity`, so `capacity(0)` alone is
/// refused as `capacity`, and `min_capacity(0)` as `min_capacity`.
///
/// | field | default | rule |
/// | --- | --- | --- |
/// | name | (required) | unique on the bus, not empty |
/// | filter | every event | |
/// | capacity | 1024 events | `min_capacity <= capacity <= max_capacity` |
/// | min_capacity / max_capacity | `capacity` (fixed size) | `1 <= min <= max` |
/// | overflow | [`OverflowPolicy::Block`] | a dropping policy needs `droppable` |
/// | droppable | `false` | |
/// | event_size | `size_of::<E>()` | bytes one buffered event holds |
///
/// # Examples
///
/// ```
/// use pipeline_core::bus::{Bus, OverflowPolicy, SubscriptionConfig};
///
/// let bus = Bus::<u32>::new();
/// let evens = bus
///     .subscribe(
///         SubscriptionConfig::new("evens")
///             .filter(|n: &u32| n % 2 == 0)
///             .capacity(64)
///             .min_capacity(16)
///             .max_capacity(4096) // the controller may move it within 16..=4096
///             .droppable(true)
///             .overflow(OverflowPolicy::DropOldest),
///     )
///     .unwrap();
/// assert_eq!(evens.capacity(), 64);
/// ```
#[must_use = "a config does nothing until passed to Bus::subscribe"]
pub struct SubscriptionConfig<E> {
    pub(crate) name: Arc<str>,
    pub(crate) filter: Option<Filter<E>>,
    pub(crate) capacity: usize,
    pub(crate) min_capacity: Option<usize>,
    pub(crate) max_capacity: Option<usize>,
    pub(crate) overflow: OverflowPolicy,
    pub(crate) droppable: bool,
    pub(crate) event_size: Option<fn(&E) -> usize>,
}

impl<E> SubscriptionConfig<E> {
    /// A config for a subscription called `name`, with every other field at its default.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        SubscriptionConfig {
            name: name.into(),
            filter: None,
            capacity: DEFAULT_CAPACITY,
            min_capacity: None,
            max_capacity: None,
            overflow: OverflowPolicy::Block,
            droppable: false,
            event_size: None,
        }
    }

    /// Receive only the events for which `filter` returns `true`.
    ///
    /// It runs on the publisher's thread for every publish, so keep it cheap.
    pub fn filter(mut self, filter: impl Fn(&E) -> bool + Send + Sync + 'static) -> Self {
        self.filter = Some(Arc::new(filter));
        self
    }

    /// The capacity to start with, in events (default 1024).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// The smallest capacity [`Bus::resize`](super::Bus::resize) may set (default: the
    /// initial capacity).
    pub fn min_capacity(mut self, min: usize) -> Self {
        self.min_capacity = Some(min);
        self
    }

    /// The largest capacity [`Bus::resize`](super::Bus::resize) may set (default: the
    /// initial capacity).
    pub fn max_capacity(mut self, max: usize) -> Self {
        self.max_capacity = Some(max);
        self
    }

    /// What to do with an event when the buffer is full (default
    /// [`OverflowPolicy::Block`]). A dropping policy needs [`droppable`](Self::droppable).
    pub fn overflow(mut self, policy: OverflowPolicy) -> Self {
        self.overflow = policy;
        self
    }

    /// Whether this subscription may lose events: configured with a dropping policy, or
    /// switched to one at run time by [`Bus::set_overflow`](super::Bus::set_overflow)
    /// (the controller's defensive mode). Default `false`: lossless.
    pub fn droppable(mut self, droppable: bool) -> Self {
        self.droppable = droppable;
        self
    }

    /// How many bytes one buffered event holds, for memory accounting (default
    /// `size_of::<E>()`). Called once per delivered event, on the publisher's thread.
    pub fn event_size(mut self, size: fn(&E) -> usize) -> Self {
        self.event_size = Some(size);
        self
    }

    /// The subscription's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn validate(&self) -> Result<Bounds, BusError> {
        let invalid = |field, rule: String| Err(BusError::InvalidConfig { field, rule });
        if self.name.is_empty() {
            return invalid("name", "must not be empty".into());
        }
        // Each error names the setter the offending value came from: a bound that was
        // not set follows `capacity`, so `capacity(0)` alone is refused as `capacity`.
        let range = check_range(
            &CAPACITY_NAMES,
            self.capacity,
            self.min_capacity,
            self.max_capacity,
        )
        .map_err(|(field, rule)| BusError::InvalidConfig { field, rule })?;
        if self.overflow.drops() && !self.droppable {
            return invalid(
                "overflow",
                format!(
                    "{} drops events, which needs droppable(true)",
                    self.overflow
                ),
            );
        }
        Ok(range)
    }
}

impl<E> Clone for SubscriptionConfig<E> {
    fn clone(&self) -> Self {
        SubscriptionConfig {
            name: self.name.clone(),
            filter: self.filter.clone(),
            capacity: self.capacity,
            min_capacity: self.min_capacity,
            max_capacity: self.max_capacity,
            overflow: self.overflow,
            droppable: self.droppable,
            event_size: self.event_size,
        }
    }
}

impl<E> fmt::Debug for SubscriptionConfig<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionConfig")
            .field("name", &self.name)
            .field("filter", &self.filter.as_ref().map(|_| ".."))
            .field("capacity", &self.capacity)
            .field("min_capacity", &self.min_capacity)
            .field("max_capacity", &self.max_capacity)
            .field("overflow", &self.overflow)
            .field("droppable", &self.droppable)
            .field("event_size", &self.event_size.map(|_| ".."))
            .finish()
    }
}
