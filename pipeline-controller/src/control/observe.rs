//! Turning the bus snapshot, the pools' stats and the sensors into an `Observation`.

use crate::actuator::{PoolActuator, overflow_mode};
use crate::policy::{BufferObservation, MemoryObservation, Observation, PoolObservation};
use crate::sensor::MemorySensor;
use pipeline_core::bus::BusSnapshot;
use pipeline_core::pool::PoolStats;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the controller reads memory from. Implemented for the real
/// [`MemorySensor`]; tests and the stress harness can plug in their own.
pub trait MemoryProbe: Send {
    /// Memory in use, the limit and PSI, at `now`.
    fn read(&mut self, now: Instant) -> MemoryObservation;
}

impl MemoryProbe for MemorySensor {
    fn read(&mut self, now: Instant) -> MemoryObservation {
        match MemorySensor::read(self, now) {
            Ok(reading) => MemoryObservation {
                used_bytes: reading.working_set_bytes,
                limit_bytes: reading.limit.bytes,
                psi_some_avg10: reading.pressure.map(|p| p.some.avg10),
            },
            Err(error) => {
                // A sensor that fails (a cgroup file vanished) must not stop the loop:
                // with no reading the memory rules stay quiet, and the error is logged.
                tracing::warn!(target: "pipeline::controller", %error, "memory sensor failed");
                MemoryObservation {
                    used_bytes: 0,
                    limit_bytes: None,
                    psi_some_avg10: None,
                }
            }
        }
    }
}

/// A probe that reports a fixed limit and whatever usage the closure returns.
impl<F: FnMut(Instant) -> MemoryObservation + Send> MemoryProbe for F {
    fn read(&mut self, now: Instant) -> MemoryObservation {
        self(now)
    }
}

/// Counters from the previous tick, to turn totals into rates and deltas.
#[derive(Debug, Default)]
pub(crate) struct Previous {
    at: Option<Instant>,
    published: u64,
    dropped: HashMap<Arc<str>, u64>,
    blocked: HashMap<Arc<str>, Duration>,
    finished: HashMap<Arc<str>, (u64, u64)>,
}

pub(crate) fn observe(
    now: Instant,
    snapshot: &BusSnapshot,
    pools: &[Arc<dyn PoolActuator>],
    memory: MemoryObservation,
    cpu_limit_cores: Option<f64>,
    previous: &mut Previous,
) -> Observation {
    let mut obs = Observation::new()
        .memory(memory.used_bytes, memory.limit_bytes)
        .psi(memory.psi_some_avg10)
        .cpu_limit(cpu_limit_cores)
        .publish_rate(snapshot.publish_rate);
    let dt = previous
        .at
        .map(|at| now.saturating_duration_since(at).as_secs_f64())
        .filter(|dt| *dt > 0.0);
    if let Some(dt) = dt {
        let rate = snapshot.published.saturating_sub(previous.published) as f64 / dt;
        obs = obs.observed_publish_rate(Some(rate));
    }
    for sub in &snapshot.subscriptions {
        let dropped = sub.dropped();
        let dropped_before = previous
            .dropped
            .insert(sub.name.clone(), dropped)
            .unwrap_or(dropped);
        let blocked_before = previous
            .blocked
            .insert(sub.name.clone(), sub.blocked_time)
            .unwrap_or(sub.blocked_time);
        obs = obs.buffer(
            BufferObservation::new(
                sub.name.to_string(),
                sub.capacity,
                sub.min_capacity,
                sub.max_capacity,
            )
            .len(sub.len)
            .bytes_per_event(sub.avg_event_bytes as f64)
            .droppable(sub.droppable)
            .overflow(overflow_mode(sub.overflow))
            .drops(dropped.saturating_sub(dropped_before))
            .blocked(sub.blocked_time.saturating_sub(blocked_before)),
        );
    }
    for pool in pools {
        let stats: PoolStats = pool.stats();
        let ok = stats.processed;
        let bad = stats.failed + stats.panics;
        let (ok_before, bad_before) = previous
            .finished
            .insert(stats.name.clone(), (ok, bad))
            .unwrap_or((ok, bad));
        let (d_ok, d_bad) = (ok.saturating_sub(ok_before), bad.saturating_sub(bad_before));
        let error_rate = if d_ok + d_bad == 0 {
            0.0
        } else {
            d_bad as f64 / (d_ok + d_bad) as f64
        };
        obs = obs.pool(
            PoolObservation::new(
                stats.name.to_string(),
                stats.workers,
                stats.min_workers,
                stats.max_workers,
            )
            .utilisation(stats.utilisation)
            .error_rate(error_rate)
            .backlog(stats.queued),
        );
    }
    previous.at = Some(now);
    previous.published = snapshot.published;
    obs
}
