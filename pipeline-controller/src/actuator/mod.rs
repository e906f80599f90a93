//! Actuators: the only way the controller touches the world.
//!
//! Two small object-safe traits over `pipeline-core`'s public knobs, so the control
//! loop holds `dyn` values and never sees the event type or core's internals:
//! [`BusActuator`] (buffer capacities and their ranges, overflow modes, the
//! publish-rate limit, and the readings that go with them) is implemented for
//! [`Bus<E>`], and [`PoolActuator`] (worker count, its range, and stats) for
//! [`WorkerPool<E>`], for any `Send` event type (`Clone` or not) and for thread and
//! task workers alike. [`apply`] routes one policy [`Change`] to the knob it names.
//!
//! The ranges live in core, with the knobs they bound: a resize outside its range is
//! clamped into it by the bus or the pool, and the readings (the bus snapshot, the
//! pool stats) report the range in force, so what the policy observes and what a
//! knob accepts are one range. The control loop sets them from the live configuration
//! ([`set_capacity_range`](BusActuator::set_capacity_range),
//! [`set_worker_range`](PoolActuator::set_worker_range)); a knob outside a new range is
//! moved into it at once.
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

use crate::policy::Change;
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
    /// Sets the range `[min, max]` a subscription's capacity is clamped into, moving a
    /// capacity outside it into it at once; returns the capacity in force after.
    ///
    /// # Errors
    ///
    /// As [`Bus::set_capacity_range`] (`1 <= min <= max`, a known subscription).
    fn set_capacity_range(&self, name: &str, min: usize, max: usize) -> Result<usize, BusError>;
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
    fn set_capacity_range(&self, name: &str, min: usize, max: usize) -> Result<usize, BusError> {
        Bus::set_capacity_range(self, name, min, max)
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
    /// Sets the range `[min, max]` the worker count is clamped into, moving a count
    /// outside it into it at once; returns the count in force after.
    ///
    /// # Errors
    ///
    /// As [`WorkerPool::set_worker_range`] (`1 <= min <= max`).
    fn set_worker_range(&self, min: usize, max: usize) -> Result<usize, PoolError>;
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
    fn set_worker_range(&self, min: usize, max: usize) -> Result<usize, PoolError> {
        WorkerPool::set_worker_range(self, min, max)
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
            .set_overflow(name, *to)
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
