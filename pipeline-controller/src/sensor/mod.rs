//! Readings of memory and CPU in use, against the limits of [`crate::limits`].
//!
//! A sensor is built on a [`LimitsReader`](crate::limits::LimitsReader), keeps the cgroup
//! directories it found, and on each `read(now)` re-reads only the usage, limit and
//! pressure files. It returns a value ([`MemoryReading`], [`CpuReading`]) that says where
//! each number came from; rates come from the previous reading and the instants the
//! caller passed, so nothing here reads a clock.
//!
//! # Definitions
//!
//! - **Working set**: memory usage minus inactive file cache, the way the kubelet counts
//!   it. Inactive file pages are reclaimed before the OOM killer runs, so they do not
//!   count toward "about to run out". v2: `memory.current - inactive_file` (from
//!   `memory.stat`); v1: `memory.usage_in_bytes - total_inactive_file`; saturating at 0.
//!   Without a memory cgroup: the process's resident set.
//! - **Pressure (PSI)**: the share of recent wall time in which some (or all) tasks were
//!   stalled waiting for memory, from the cgroup's `memory.pressure` (v2) or
//!   `/proc/pressure/memory`. See [`Pressure`].
//! - **Growth and time to limit**: working-set change per second since the previous
//!   reading, and how long until the limit at that rate.
//! - **CPU share**: CPU time used between two readings per wall second (cores), divided
//!   by the CPU limit's cores.
//!
//! # Examples
//!
//! ```
//! use pipeline_controller::limits::LimitsReader;
//! use pipeline_controller::sensor::MemorySensor;
//! use std::time::Instant;
//!
//! let mut sensor = MemorySensor::new(LimitsReader::new()?);
//! let reading = sensor.read(Instant::now())?;
//! assert!(reading.working_set_bytes > 0);
//! # Ok::<(), pipeline_controller::limits::LimitsError>(())
//! ```

mod cpu;
mod memory;
mod psi;

pub use cpu::{CpuReading, CpuSensor, CpuUsageSource};
pub use memory::{MemoryReading, MemorySensor, MemoryUsageSource};
pub use psi::{Pressure, PressureAverages, PressureSource};
