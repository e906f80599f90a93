//! Turning the bus snapshot, the pools' stats and the sensors into an `Observation`,
//! including the queueing model's readings per stage: λ (events offered), S (handler
//! time per event) and the demand waiting in blocked publishers.

use crate::actuator::PoolActuator;
use crate::policy::{BufferObservation, MemoryObservation, Observation, PoolObservation};
use crate::sensor::MemorySensor;
use pipeline_core::bus::{BusSnapshot, SubscriptionSnapshot};
use pipeline_core::pool::PoolStats;
use std::collections::{HashMap, VecDeque};
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
    /// Bus-wide publishes that matched a subscription, refused `Full`, and refused by
    /// the rate limit.
    matched: u64,
    rejected_full: u64,
    rate_limit_refused: u64,
    dropped: HashMap<Arc<str>, u64>,
    blocked: HashMap<Arc<str>, Duration>,
    /// Per subscription: events offered to it so far (delivered plus dropped newest),
    /// and its latest share of the matched publishes.
    offered: HashMap<Arc<str>, (u64, f64)>,
    finished: HashMap<Arc<str>, (u64, u64)>,
    /// Per pool, the recent ticks, for the service time and CPU per event.
    ticks: HashMap<Arc<str>, VecDeque<PoolTick>>,
    /// Per pool, its handler-time and CPU totals at the previous tick.
    totals: HashMap<Arc<str>, PoolTotals>,
}

/// One pool's tick: when it ended, events finished in it, the handler (wall) time
/// they took, and the CPU time of the sampled ones.
#[derive(Debug, Clone, Copy)]
struct PoolTick {
    at: Instant,
    finished: u64,
    busy: Duration,
    cpu_events: u64,
    cpu_time: Duration,
}

/// A pool's totals at the previous tick, to turn them into the tick's deltas.
#[derive(Debug, Clone, Copy, Default)]
struct PoolTotals {
    busy: Duration,
    cpu_events: u64,
    cpu_time: Duration,
}

/// The span the service time and CPU per event are averaged over (the model smooths
/// further; this only keeps one slow tick's few events from deciding alone).
const SERVICE_WINDOW: Duration = Duration::from_millis(4750);

/// Per subscription: events per second offered to it over the tick. Those it took in
/// (`delivered`, which counts what `DropOldest` evicted later) and those `DropNewest`
/// refused, plus its share of the publishes refused bus-wide, `Full` or by the rate
/// limit (the share of matched publishes it got this tick, or its last known share).
/// A publisher blocked on a full buffer is not counted here but in the waiting demand;
/// one that waits for a rate-limit token is counted once, when it publishes; one that
/// gets `Backoff` and retries, once per try.
fn offered_rate(
    sub: &SubscriptionSnapshot,
    refused: u64,
    matched: u64,
    dt: f64,
    previous: &mut Previous,
) -> f64 {
    let offered = sub.delivered + sub.dropped_newest;
    let (before, share_before) = previous
        .offered
        .get(&sub.name)
        .copied()
        .unwrap_or((offered, 1.0));
    let took = offered.saturating_sub(before);
    let share = if matched > 0 {
        (took as f64 / matched as f64).min(1.0)
    } else {
        share_before
    };
    previous.offered.insert(sub.name.clone(), (offered, share));
    (took as f64 + share * refused as f64) / dt
}

/// The mean handler time per event, and the mean CPU time per event, over the ticks
/// of the last `SERVICE_WINDOW`: handler time summed by the pool (exact) over the
/// events finished, and the sampled CPU time over the sampled events. `None` until an
/// event finished (or was sampled) in the window.
fn service_and_cpu(
    ticks: &VecDeque<PoolTick>,
    now: Instant,
) -> (Option<Duration>, Option<Duration>) {
    let (mut finished, mut busy, mut cpu_events, mut cpu_time) =
        (0, Duration::ZERO, 0, Duration::ZERO);
    for tick in ticks
        .iter()
        .filter(|t| now.saturating_duration_since(t.at) < SERVICE_WINDOW)
    {
        finished += tick.finished;
        busy += tick.busy;
        cpu_events += tick.cpu_events;
        cpu_time += tick.cpu_time;
    }
    let per = |total: Duration, events: u64| {
        (events > 0).then(|| Duration::from_secs_f64(total.as_secs_f64() / events as f64))
    };
    (per(busy, finished), per(cpu_time, cpu_events))
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
    let matched_total = snapshot.published.saturating_sub(snapshot.unmatched);
    let matched = matched_total.saturating_sub(previous.matched);
    let refused = snapshot
        .rejected_full
        .saturating_sub(previous.rejected_full)
        + snapshot
            .rate_limit_refused
            .saturating_sub(previous.rate_limit_refused);
    // Per stage (a subscription and the pool of the same name): λ and waiting demand.
    let mut stages: HashMap<Arc<str>, (f64, f64)> = HashMap::new();
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
        let blocked = sub.blocked_time.saturating_sub(blocked_before);
        let arrival = offered_rate(sub, refused, matched, dt.unwrap_or(1.0), previous);
        if let Some(dt) = dt {
            // Publishers waiting for room now (the channel counts them as they start
            // and stop waiting), or on average over the tick by Little's law (blocked
            // time / elapsed time; blocked time is added when a wait ends), whichever
            // is more: each holds one event the buffer has not taken.
            let average = blocked.as_secs_f64() / dt;
            let waiting = average.max(sub.waiting_publishers as f64);
            stages.insert(sub.name.clone(), (arrival, waiting));
        }
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
            .overflow(sub.overflow)
            .drops(dropped.saturating_sub(dropped_before))
            .blocked(blocked),
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
        let totals = PoolTotals {
            busy: stats.busy_time,
            cpu_events: stats.cpu.events,
            cpu_time: stats.cpu.time,
        };
        let before = previous
            .totals
            .insert(stats.name.clone(), totals)
            .unwrap_or(totals);
        let ticks = previous.ticks.entry(stats.name.clone()).or_default();
        if previous.at.is_some() {
            ticks.push_back(PoolTick {
                at: now,
                finished: d_ok + d_bad,
                busy: totals.busy.saturating_sub(before.busy),
                cpu_events: totals.cpu_events.saturating_sub(before.cpu_events),
                cpu_time: totals.cpu_time.saturating_sub(before.cpu_time),
            });
        }
        while ticks
            .front()
            .is_some_and(|t| now.saturating_duration_since(t.at) > 2 * SERVICE_WINDOW)
        {
            ticks.pop_front();
        }
        let (service_time, cpu_per_event) = service_and_cpu(ticks, now);
        let mut observation = PoolObservation::new(
            stats.name.to_string(),
            stats.workers,
            stats.min_workers,
            stats.max_workers,
        )
        .utilisation(stats.utilisation)
        .error_rate(error_rate)
        .backlog(stats.queued)
        .service_time(service_time)
        .cpu_per_event(cpu_per_event);
        if let Some(&(arrival, waiting)) = stages.get(&stats.name) {
            observation = observation.arrival_rate(arrival).waiting(waiting);
        }
        obs = obs.pool(observation);
    }
    previous.at = Some(now);
    previous.published = snapshot.published;
    previous.matched = matched_total;
    previous.rejected_full = snapshot.rejected_full;
    previous.rate_limit_refused = snapshot.rate_limit_refused;
    obs
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline_core::bus::{Bus, SubscriptionConfig};
    use pipeline_core::clock::{Clock, ManualClock};
    use pipeline_core::pool::WorkerPool;

    /// λ of a stage whose publisher waits for rate-limit tokens is the rate it
    /// publishes at: a wait is not also counted as a refusal (it used to be, which
    /// doubled λ while throttled); a `Backoff` is demand the stage did not get.
    #[test]
    fn a_publisher_waiting_for_tokens_is_counted_once() {
        let clock = ManualClock::new();
        let bus: Bus<u32> = Bus::builder()
            .clock(clock.clone())
            .publish_burst(1)
            .publish_rate(Some(50.0))
            .build()
            .unwrap();
        let sub = bus
            .subscribe(SubscriptionConfig::new("s").capacity(1024))
            .unwrap();
        let pool = WorkerPool::builder("s")
            .handler(|_: u32| Ok(()))
            .spawn(sub)
            .unwrap();
        let pools: Vec<Arc<dyn PoolActuator>> = vec![Arc::new(pool)];
        let mut previous = Previous::default();
        let arrival = |previous: &mut Previous| {
            let obs = observe(
                clock.now(),
                &bus.snapshot(),
                &pools,
                MemoryObservation::default(),
                None,
                previous,
            );
            obs.pools[0].arrival_rate
        };
        arrival(&mut previous);
        let publisher = bus.publisher();
        // One second of a blocking publisher held to 50/s by the limit.
        for i in 0..50 {
            publisher.publish(i).unwrap(); // the manual clock's sleep advances it
        }
        clock.advance(Duration::from_millis(20));
        let lambda = arrival(&mut previous).expect("a rate after two ticks");
        assert!(
            (lambda - 50.0).abs() < 1e-9,
            "λ {lambda}, published 50 in 1 s"
        );

        // 50 more refused with Backoff within the next second, 50 published.
        for i in 0..50 {
            publisher.publish(i).unwrap();
            assert!(publisher.try_publish(i).is_err(), "no token left");
        }
        clock.advance(Duration::from_millis(20));
        let lambda = arrival(&mut previous).expect("a rate");
        assert!(
            (lambda - 100.0).abs() < 1e-9,
            "λ {lambda}, 50 published and 50 refused in 1 s"
        );
    }
}
