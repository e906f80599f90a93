//! Runs one scenario in this process: builds the pipeline, drives the workload with
//! real payloads, samples a timeline, prints status and decisions live.

use super::scenario::{Cost, Scenario};
use crate::workload::{Pattern, Workload};
use bytes::Bytes;
use hdrhistogram::Histogram;
use pipeline_controller::control::Entry;
use pipeline_controller::limits::Limits;
use pipeline_controller::policy::{Change, MemoryObservation, PolicyConfig};
use pipeline_controller::{Pipeline, Stage};
use pipeline_core::bus::{OverflowPolicy, PublishError, SubscriptionConfig};
use pipeline_core::pool::HandlerError;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

/// One generated event: its topic, scheduled arrival and a real payload.
#[derive(Clone)]
pub struct Event {
    topic: u16,
    born: Instant,
    payload: Bytes,
}

/// One timeline sample.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Sample {
    /// Seconds since the start.
    pub t: f64,
    /// Offered load: the workload's current rate (events/s), whether or not the
    /// publisher keeps up.
    pub offered_rate: f64,
    /// Published events/s over the last sample period.
    pub publish_rate: f64,
    /// The bus's publish rate limit (events/s), if any.
    pub rate_limit: Option<f64>,
    /// Buffered events, all stages.
    pub buffer_len: u64,
    /// Buffer capacity, all stages.
    pub buffer_capacity: u64,
    /// Workers, all stages.
    pub workers: u64,
    /// Resident memory, bytes.
    pub memory_bytes: u64,
    /// The memory limit, bytes.
    pub memory_limit: u64,
    /// Events dropped so far.
    pub dropped: u64,
    /// Arrivals due but not yet published (publisher blocked).
    pub backlog: u64,
    /// Highest buffer saturation among the stages.
    pub max_saturation: f64,
    /// The controller's mode.
    pub mode: String,
}

/// One controller decision as it went into the report.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct DecisionLine {
    /// Seconds since the start of the controller.
    pub t: f64,
    /// Mode after the decision.
    pub mode: String,
    /// The decision with its reason.
    pub text: String,
}

/// The outcome of a run in this process.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RunResult {
    /// Scenario name.
    pub scenario: String,
    /// Whether the controller ran.
    pub controller: bool,
    /// Length of the load phase, seconds.
    pub duration_s: f64,
    /// Arrivals generated.
    pub offered: u64,
    /// Events accepted by the bus.
    pub published: u64,
    /// Events dropped by buffers.
    pub dropped: u64,
    /// Arrivals never published (the publisher was still blocked at the end).
    pub unpublished: u64,
    /// Events left in buffers after the drain deadline.
    pub left: u64,
    /// Events handled (ok or failed).
    pub handled: u64,
    /// Handler failures.
    pub failed: u64,
    /// p50 latency, seconds.
    pub p50_s: f64,
    /// p99 latency, seconds.
    pub p99_s: f64,
    /// Peak resident memory seen, bytes.
    pub peak_memory_bytes: u64,
    /// The memory limit, bytes.
    pub memory_limit: u64,
    /// Settling time after the last load change, seconds.
    pub settling_s: f64,
    /// Direction reversals of capacities and worker counts.
    pub reversals: u64,
    /// Decisions taken.
    pub decisions: Vec<DecisionLine>,
    /// The sampled timeline.
    pub timeline: Vec<Sample>,
}

impl RunResult {
    /// Lost share of the published events: dropped by a buffer. Events still
    /// buffered when the drain deadline passed are reported as `left`, arrivals the
    /// publisher never got to publish (back pressure or the rate limit held it until
    /// the end) as [`unserved`](Self::unserved); neither counts as loss.
    pub fn loss(&self) -> f64 {
        if self.published == 0 {
            0.0
        } else {
            self.dropped as f64 / self.published as f64
        }
    }

    /// Share of the offered arrivals never published.
    pub fn unserved(&self) -> f64 {
        if self.offered == 0 {
            0.0
        } else {
            self.unpublished as f64 / self.offered as f64
        }
    }
}

/// Controls a run from outside: live rate changes.
#[derive(Clone)]
pub struct RunControl {
    workload: Arc<Mutex<Workload>>,
}

impl RunControl {
    /// Sets a pattern's base rate live (see `Workload::set_rate`).
    pub fn set_rate(
        &self,
        topic: &str,
        events_per_sec: f64,
    ) -> Result<(), crate::workload::UnknownPattern> {
        lock(&self.workload).set_rate(topic, events_per_sec)
    }

    /// Replaces the patterns live (see `Workload::update`), e.g. after a file edit.
    pub fn update(&self, patterns: &[Pattern]) {
        lock(&self.workload).update(patterns);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Options of a run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Print the status line and decisions.
    pub verbose: bool,
    /// Use the kernel's cgroup sensor and limit (inside a memory cgroup).
    pub in_cgroup: bool,
}

/// Resident set size of this process, from /proc/self/statm.
pub fn rss_bytes() -> u64 {
    let page = 4096u64;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |p| p * page)
}

fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Runs `scenario` here; `control` receives the handle for live changes.
pub fn run(
    scenario: &Scenario,
    options: &RunOptions,
    control: Option<mpsc::Sender<RunControl>>,
) -> Result<RunResult, Box<dyn std::error::Error>> {
    let mut limits = Limits::detect()?;
    let limit = if options.in_cgroup {
        limits.memory.bytes.unwrap_or(0)
    } else {
        let l = scenario
            .memory_limit
            .or(limits.memory.bytes)
            .unwrap_or(u64::MAX);
        limits.memory.bytes = Some(l);
        l
    };
    let mut policy = PolicyConfig::default();
    let p = &scenario.policy;
    if let Some(v) = p.stabilisation_window {
        policy = policy.stabilisation_window(v);
    }
    if let Some(v) = p.cooldown {
        policy = policy.cooldown(v);
    }
    if let Some(v) = p.defensive_exit_hold {
        policy = policy.defensive_exit_hold(v);
    }
    if let Some(v) = p.rate_ceiling_hold {
        policy = policy.rate_ceiling_hold(v);
    }
    if let Some(v) = p.buffer_budget {
        policy = policy.buffer_budget(v);
    }
    if let Some(v) = p.workers_per_core {
        policy = policy.workers_per_core(v);
    }
    if let Some(v) = p.min_publish_rate {
        policy = policy.min_publish_rate(v);
    }

    let topics: Vec<String> = scenario.patterns.iter().map(|p| p.topic.clone()).collect();
    let latency = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1,
        3_600_000_000,
        3,
    )?));
    let handled = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut builder = Pipeline::<Event>::builder()
        .policy(policy)
        .interval(scenario.interval)
        .limits(limits)
        .controller(scenario.controller)
        .decision_log_capacity(100_000);
    if !options.in_cgroup {
        builder = builder.memory_probe(move |_now: Instant| MemoryObservation {
            used_bytes: rss_bytes(),
            limit_bytes: Some(limit),
            psi_some_avg10: None,
        });
    }
    let mut workers: HashMap<String, u64> = HashMap::new();
    for (i, spec) in scenario.stages.iter().enumerate() {
        let topic = topics
            .iter()
            .position(|t| *t == spec.topic)
            .expect("checked") as u16;
        let overflow = match spec.overflow.as_str() {
            "drop_newest" => OverflowPolicy::DropNewest,
            "drop_oldest" => OverflowPolicy::DropOldest,
            _ => OverflowPolicy::Block,
        };
        let sub = SubscriptionConfig::new(spec.name.as_str())
            .filter(move |e: &Event| e.topic == topic)
            .capacity(spec.capacity)
            .min_capacity(spec.min_capacity)
            .max_capacity(spec.max_capacity)
            .overflow(overflow)
            .droppable(spec.droppable)
            .event_size(|e: &Event| e.payload.len() + 48);
        let cost = spec.cost;
        let error_rate = spec.error_rate;
        let seed = scenario.seed.wrapping_add(1000 * i as u64);
        let counter = Arc::new(AtomicU64::new(0));
        let (latency, handled, failed) = (latency.clone(), handled.clone(), failed.clone());
        workers.insert(spec.name.clone(), spec.workers[0] as u64);
        let stage = Stage::new(sub)
            .workers(spec.workers[0], spec.workers[1], spec.workers[2])
            .handler(move |event: Event| {
                thread_local! {
                    static RNG: std::cell::RefCell<Option<StdRng>> = const { std::cell::RefCell::new(None) };
                }
                let (draw, fail) = RNG.with(|r| {
                    let mut r = r.borrow_mut();
                    let rng = r.get_or_insert_with(|| {
                        StdRng::seed_from_u64(seed ^ counter.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9))
                    });
                    (rng.random_range(f64::MIN_POSITIVE..1.0), rng.random::<f64>() < error_rate)
                });
                match cost {
                    Cost::Fixed { time } => thread::sleep(time),
                    Cost::Exponential { mean } => thread::sleep(mean.mul_f64(-draw.ln())),
                    Cost::Spin { time } => {
                        let until = Instant::now() + time;
                        let mut x = 0u64;
                        while Instant::now() < until {
                            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                        }
                    }
                }
                // Touch the payload so it is real memory that was really read.
                std::hint::black_box(event.payload.first());
                let micros = event.born.elapsed().as_micros().max(1) as u64;
                let _ = lock(&latency).record(micros.min(3_600_000_000));
                handled.fetch_add(1, Ordering::Relaxed);
                if fail {
                    failed.fetch_add(1, Ordering::Relaxed);
                    return Err(HandlerError::new("injected failure"));
                }
                Ok(())
            })
            .dead_letter(|_| {});
        builder = builder.stage(stage);
    }
    let pipeline = builder.build()?;
    pipeline.start()?;
    let start = Instant::now();
    let duration = scenario.duration;

    let workload = Arc::new(Mutex::new(Workload::new(
        scenario.patterns.clone(),
        scenario.seed,
    )));
    if let Some(tx) = control {
        let _ = tx.send(RunControl {
            workload: workload.clone(),
        });
    }
    let offered = Arc::new(AtomicU64::new(0));
    let backlog = Arc::new(AtomicU64::new(0));
    let unpublished = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let generator = {
        let publisher = pipeline.publisher();
        let (workload, offered, backlog, unpublished, done) = (
            workload.clone(),
            offered.clone(),
            backlog.clone(),
            unpublished.clone(),
            done.clone(),
        );
        let mut changes = scenario.rate_changes.clone();
        changes.sort_by_key(|c| c.at);
        thread::Builder::new()
            .name("stress-generator".into())
            .spawn(move || {
                let mut next_change = 0;
                loop {
                    let now = start.elapsed();
                    if now >= duration || done.load(Ordering::Relaxed) {
                        break;
                    }
                    while next_change < changes.len() && changes[next_change].at <= now {
                        let c = &changes[next_change];
                        let _ = lock(&workload).set_rate(&c.topic, c.rate);
                        next_change += 1;
                    }
                    let arrivals = lock(&workload).due(now);
                    offered.fetch_add(arrivals.len() as u64, Ordering::Relaxed);
                    backlog.store(arrivals.len() as u64, Ordering::Relaxed);
                    let total = arrivals.len();
                    for (k, a) in arrivals.into_iter().enumerate() {
                        let event = Event {
                            topic: a.pattern as u16,
                            born: start + a.at,
                            payload: Bytes::from(vec![0xA5u8; a.size]),
                        };
                        let left = duration.saturating_sub(start.elapsed());
                        match publisher.publish_timeout(event, left) {
                            Ok(()) => {}
                            Err(PublishError::Closed(_)) | Err(_) => {
                                unpublished.fetch_add((total - k) as u64, Ordering::Relaxed);
                                backlog.store(0, Ordering::Relaxed);
                                if start.elapsed() >= duration {
                                    return;
                                }
                                break;
                            }
                        }
                        backlog.store((total - k - 1) as u64, Ordering::Relaxed);
                    }
                    thread::sleep(Duration::from_millis(2));
                }
            })?
    };

    // Sampling, status and decisions.
    let log = pipeline.decision_log();
    let tick = Duration::from_millis(250)
        .min(duration / 20)
        .max(Duration::from_millis(50));
    let mut timeline = Vec::new();
    let mut decisions = Vec::new();
    let mut seen = 0usize;
    let mut last = (Instant::now(), 0u64, 0u64);
    let mut last_status = Instant::now() - Duration::from_secs(2);
    let mut peak = 0u64;
    let mut mode = String::from(if scenario.controller { "normal" } else { "off" });
    let mut last_trim = Instant::now();
    loop {
        thread::sleep(tick);
        let elapsed = start.elapsed();
        let records = log.records();
        for r in records.iter().skip(seen) {
            mode = r.mode.as_str().to_owned();
            if let Entry::Action {
                action,
                outcome: Ok(_),
            } = &r.entry
                && let Change::ResizePool { name, to, .. } = &action.change
            {
                workers.insert(name.clone(), *to as u64);
            }
            let line = DecisionLine {
                t: elapsed.as_secs_f64(),
                mode: mode.clone(),
                text: r.to_string(),
            };
            if options.verbose {
                println!("  decision {:>6.1}s [{}] {}", line.t, line.mode, r);
            }
            decisions.push(line);
        }
        seen = records.len();
        if last_trim.elapsed() >= Duration::from_secs(1) {
            trim_heap();
            last_trim = Instant::now();
        }
        let snap = pipeline.bus().snapshot();
        let now = Instant::now();
        let off = offered.load(Ordering::Relaxed);
        let intended: f64 = lock(&workload).patterns().map(|p| p.rate_at(elapsed)).sum();
        let dt = now.duration_since(last.0).as_secs_f64().max(1e-6);
        let mem = rss_bytes();
        peak = peak.max(mem);
        let s = Sample {
            t: elapsed.as_secs_f64(),
            offered_rate: intended,
            publish_rate: (snap.published - last.2) as f64 / dt,
            rate_limit: snap.publish_rate,
            buffer_len: snap.subscriptions.iter().map(|s| s.len as u64).sum(),
            buffer_capacity: snap.subscriptions.iter().map(|s| s.capacity as u64).sum(),
            workers: workers.values().sum(),
            memory_bytes: mem,
            memory_limit: limit,
            dropped: snap.subscriptions.iter().map(|s| s.dropped()).sum(),
            backlog: backlog.load(Ordering::Relaxed),
            max_saturation: snap
                .subscriptions
                .iter()
                .map(|s| s.saturation)
                .fold(0.0, f64::max),
            mode: mode.clone(),
        };
        last = (now, off, snap.published);
        if options.verbose && last_status.elapsed() >= Duration::from_millis(990) {
            last_status = Instant::now();
            println!(
                "[{:>5.1}/{:.0}s] offered {:>6.0}/s published {:>6.0}/s limit {:>7} | buffer {:>6}/{:<6} | workers {:>2} | mem {:>6.1}/{:.0} MiB ({:>3.0}%) | drops {} | backlog {} | mode {}",
                s.t,
                duration.as_secs_f64(),
                s.offered_rate,
                s.publish_rate,
                s.rate_limit.map_or("none".into(), |r| format!("{r:.0}/s")),
                s.buffer_len,
                s.buffer_capacity,
                s.workers,
                s.memory_bytes as f64 / 1048576.0,
                s.memory_limit as f64 / 1048576.0,
                100.0 * s.memory_bytes as f64 / s.memory_limit.max(1) as f64,
                s.dropped,
                s.backlog,
                s.mode
            );
            let _ = std::io::stdout().flush();
        }
        timeline.push(s);
        if elapsed >= duration {
            break;
        }
    }
    done.store(true, Ordering::Relaxed);
    let snap = pipeline.bus().snapshot();
    let dropped = snap.subscriptions.iter().map(|s| s.dropped()).sum();
    let published = snap.published;
    let drain = Duration::from_secs(5).max(duration / 4);
    let report = pipeline.shutdown(drain);
    let _ = generator.join();
    let h = lock(&latency);
    let settle_from = scenario.settle_from.unwrap_or_default().as_secs_f64();
    let unsettled = |s: &Sample| s.max_saturation > 0.9 || s.backlog > 100;
    let settling_s = timeline
        .iter()
        .filter(|s| s.t >= settle_from && unsettled(s))
        .map(|s| s.t - settle_from)
        .fold(0.0, f64::max);
    Ok(RunResult {
        scenario: scenario.name.clone(),
        controller: scenario.controller,
        duration_s: duration.as_secs_f64(),
        offered: offered.load(Ordering::Relaxed),
        published,
        dropped,
        unpublished: unpublished.load(Ordering::Relaxed),
        left: report.left(),
        handled: handled.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        p50_s: h.value_at_quantile(0.5) as f64 / 1e6,
        p99_s: h.value_at_quantile(0.99) as f64 / 1e6,
        peak_memory_bytes: peak,
        memory_limit: limit,
        settling_s,
        reversals: reversals(&timeline),
        decisions,
        timeline,
    })
}

/// Direction reversals of the total capacity and the worker count over the timeline.
pub fn reversals(timeline: &[Sample]) -> u64 {
    fn count(values: impl Iterator<Item = u64>) -> u64 {
        let mut last: Option<u64> = None;
        let mut dir = 0i8;
        let mut n = 0;
        for v in values {
            if let Some(l) = last
                && v != l
            {
                let d = if v > l { 1 } else { -1 };
                if dir != 0 && d != dir {
                    n += 1;
                }
                dir = d;
            }
            last = Some(v);
        }
        n
    }
    count(timeline.iter().map(|s| s.buffer_capacity)) + count(timeline.iter().map(|s| s.workers))
}
