//! Actuators: the only way the controller touches the world.
//!
//! Two small object-safe traits over `pipeline-core`'s public knobs, so the control
//! loop holds `dyn` values and never sees the event type or core's internals:
//! [`BusActuator`] (buffer capacities, overflow modes, the publish-rate limit, and the
//! readings that go with them) is implemented for [`Bus<E>`], and [`PoolActuator`]
//! (worker count and stats) for [`WorkerPool<E>`], for any `Send` event type (`Clone`
//! or not) and for thread and task workers alike. [`apply`] routes one policy
//! [`Change`] to the knob it names.
//!
//! ```
//! use pipeline_controller::actuator::{apply, BusActuator, PoolActuator};
//! use pipeline_controller::policy::Change;
//! use pipeline_core::bus::{Bus, SubscriptionConfig};
//!
//! let bus: Bus<u32> = Bus::new();
//! let _orders = bus.subscribe(SubscriptionConfig::new("orders").capacity(8).max_capacity(64))?;
//! let pools: Vec<std::sync::Arc<dyn PoolActuator>> = Vec::new();
//! let change = Change::ResizeBuffer { name: "orders".into(), from: 8, to: 12 };
//! assert_eq!(apply(&bus, &pools, &change)?, "12");
//! assert_eq!(bus.snapshot().subscription("orders").unwrap().capacity, 12);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::policy::{Change, Overflow};
use pipeline_core::bus::{Bus, BusError, BusSnapshot, OverflowPolicy};
use pipeline_core::pool::{PoolError, PoolStats, WorkerPool};
use std::sync::Arc;

/// The bus's knobs and readings, without its event type.
pub trait BusActuator: Send + Sync {
    /// The bus's name: the `pipeline` label of the controller's metrics (default
    /// `"default"`).
    fn name(&self) -> &str {
        "default"
    }
    /// Every subscription's gauges (see [`Bus::snapshot`]).
    fn snapshot(&self) -> BusSnapshot;
    /// Sets a subscription's capacity; returns the capacity in force after.
    ///
    /// # Errors
    ///
    /// As [`Bus::resize`].
    fn resize_buffer(&self, name: &str, capacity: usize) -> Result<usize, BusError>;
    /// Switches a subscription's overflow policy.
    ///
    /// # Errors
    ///
    /// As [`Bus::set_overflow`] (a non-droppable subscription refuses to drop).
    fn set_overflow(&self, name: &str, policy: OverflowPolicy) -> Result<(), BusError>;
    /// Sets the publish-rate limit (`None`: unlimited).
    ///
    /// # Errors
    ///
    /// As [`Bus::set_publish_rate`].
    fn set_publish_rate(&self, rate: Option<f64>) -> Result<(), BusError>;
}

impl<E: Send + 'static> BusActuator for Bus<E> {
    fn name(&self) -> &str {
        Bus::name(self)
    }
    fn snapshot(&self) -> BusSnapshot {
        Bus::snapshot(self)
    }
    fn resize_buffer(&self, name: &str, capacity: usize) -> Result<usize, BusError> {
        self.resize(name, capacity)
    }
    fn set_overflow(&self, name: &str, policy: OverflowPolicy) -> Result<(), BusError> {
        Bus::set_overflow(self, name, policy)
    }
    fn set_publish_rate(&self, rate: Option<f64>) -> Result<(), BusError> {
        Bus::set_publish_rate(self, rate)
    }
}

/// A worker pool's knob and readings, without its event type.
pub trait PoolActuator: Send + Sync {
    /// The pool's name (the policy names pools by it).
    fn name(&self) -> &str;
    /// The pool's gauges and counters.
    fn stats(&self) -> PoolStats;
    /// Sets the worker count; returns the count in force after.
    ///
    /// # Errors
    ///
    /// As [`WorkerPool::resize`].
    fn resize(&self, workers: usize) -> Result<usize, PoolError>;
}

impl<E: Send + 'static> PoolActuator for WorkerPool<E> {
    fn name(&self) -> &str {
        WorkerPool::name(self)
    }
    fn stats(&self) -> PoolStats {
        WorkerPool::stats(self)
    }
    fn resize(&self, workers: usize) -> Result<usize, PoolError> {
        WorkerPool::resize(self, workers)
    }
}

/// Why an action could not be applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActuatorError {
    /// The bus refused.
    #[error("the bus refused")]
    Bus(#[source] BusError),
    /// The pool refused.
    #[error("pool {name} refused")]
    Pool {
        /// The pool.
        name: String,
        /// What it said.
        #[source]
        source: PoolError,
    },
    /// The change names a pool the controller does not know.
    #[error("no pool named {0}")]
    UnknownPool(String),
}

/// The core policy matching the controller's view of an overflow mode.
pub fn overflow_policy(mode: Overflow) -> OverflowPolicy {
    match mode {
        Overflow::Block => OverflowPolicy::Block,
        Overflow::DropNewest => OverflowPolicy::DropNewest,
        Overflow::DropOldest => OverflowPolicy::DropOldest,
    }
}

/// The controller's view of a core overflow policy.
pub fn overflow_mode(policy: OverflowPolicy) -> Overflow {
    match policy {
        OverflowPolicy::Block => Overflow::Block,
        OverflowPolicy::DropNewest => Overflow::DropNewest,
        OverflowPolicy::DropOldest => Overflow::DropOldest,
        // A policy added to core later reads as lossless until the policy knows it.
        #[allow(unreachable_patterns)]
        _ => Overflow::Block,
    }
}

/// Applies one change to the knob it names; returns the value now in force, as text
/// for the decision log.
///
/// # Errors
///
/// [`ActuatorError`] when the bus or the pool refuses, or the pool is unknown.
pub fn apply(
    bus: &dyn BusActuator,
    pools: &[Arc<dyn PoolActuator>],
    change: &Change,
) -> Result<String, ActuatorError> {
    match change {
        Change::ResizeBuffer { name, to, .. } => bus
            .resize_buffer(name, *to)
            .map(|c| c.to_string())
            .map_err(ActuatorError::Bus),
        Change::SetOverflow { name, to, .. } => bus
            .set_overflow(name, overflow_policy(*to))
            .map(|()| to.as_str().to_owned())
            .map_err(ActuatorError::Bus),
        Change::SetPublishRate { to, .. } => bus
            .set_publish_rate(*to)
            .map(|()| to.map_or_else(|| "unlimited".to_owned(), |r| format!("{r:.1}/s")))
            .map_err(ActuatorError::Bus),
        Change::ResizePool { name, to, .. } => {
            let pool = pools
                .iter()
                .find(|p| p.name() == name)
                .ok_or_else(|| ActuatorError::UnknownPool(name.clone()))?;
            pool.resize(*to)
                .map(|n| n.to_string())
                .map_err(|source| ActuatorError::Pool {
                    name: name.clone(),
                    source,
                })
        }
    }
}
