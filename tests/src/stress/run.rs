//! Runs one scenario in this process: builds the pipeline, drives the workload with
//! real payloads, samples a timeline, prints status and decisions live.

use super::scenario::{Cost, DECISION_LOG_CAPACITY, LatencyWindow, Scenario, StageSpec};
use crate::workload::{Pattern, Workload};
use bytes::Bytes;
use hdrhistogram::Histogram;
use pipeline_controller::control::DecisionRecord;
use pipeline_controller::control::Entry;
use pipeline_controller::limits::Limits;
use pipeline_controller::pipeline::PipelineHandle;
use pipeline_controller::policy::{Change, Direction, MemoryObservation};
use pipeline_controller::{Pipeline, Stage};
use pipeline_core::bus::{Bus, SubscriptionConfig};
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
    /// `born`, as time since the start of the run.
    at: Duration,
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
    /// Seconds since the start of the run (the time axis of the timeline).
    pub t: f64,
    /// Mode after the decision.
    pub mode: String,
    /// `action` (a knob changed), `refused` (the knob refused the change), `mode` (a
    /// change of mode) or `hold` (a change held back by a cooldown or the
    /// stabilisation window).
    pub kind: String,
    /// The rule that acted (`grow-buffer`, `scale-down`, ...), for actions and holds.
    #[serde(default)]
    pub rule: Option<String>,
    /// The knob it turns (`buffer orders`, `pool orders`, `publish rate`).
    #[serde(default)]
    pub knob: Option<String>,
    /// `up` (more capacity, workers or rate, or lossless again) or `down`.
    #[serde(default)]
    pub direction: Option<String>,
    /// The value in force after an action (`3953`, `5`, `120.0/s`, `unlimited`), or
    /// the mode a transition went to.
    #[serde(default)]
    pub value: Option<String>,
    /// The decision with its reason, as the decision log prints it (without its
    /// timestamp).
    pub text: String,
}

impl DecisionLine {
    /// `record`, logged `t` seconds into the run.
    pub fn new(record: &DecisionRecord, t: f64) -> Self {
        let full = record.to_string();
        // The log's own "[    1.0s] " prefix: the run prints its own time instead.
        let text = full
            .strip_prefix('[')
            .and_then(|rest| rest.split_once("s] "))
            .map_or(full.as_str(), |(_, text)| text)
            .to_owned();
        let mut line = DecisionLine {
            t,
            mode: record.mode.as_str().to_owned(),
            kind: "hold".into(),
            rule: None,
            knob: None,
            direction: None,
            value: None,
            text,
        };
        let change = match &record.entry {
            Entry::Action { action, outcome } => {
                line.kind = if outcome.is_ok() { "action" } else { "refused" }.into();
                line.rule = Some(action.reason.rule.name().into());
                line.value = outcome.as_ref().ok().cloned();
                Some(&action.change)
            }
            Entry::Mode(transition) => {
                line.kind = "mode".into();
                line.value = Some(transition.to.as_str().into());
                None
            }
            Entry::Hold(hold) => {
                line.rule = Some(hold.rule.name().into());
                Some(&hold.change)
            }
            // An entry kind added to the log later: shown with its text only.
            #[allow(unreachable_patterns)]
            _ => {
                line.kind = "other".into();
                None
            }
        };
        if let Some(change) = change {
            line.knob = Some(change.knob().to_string());
            line.direction = Some(
                match change.direction() {
                    Direction::Up => "up",
                    Direction::Down => "down",
                }
                .into(),
            );
        }
        line
    }

    /// Whether it changed something (an applied action or a change of mode): these are
    /// the markers on the report's charts.
    pub fn is_change(&self) -> bool {
        matches!(self.kind.as_str(), "action" | "mode")
    }

    /// The chart marker's label: the rule and the value now in force
    /// (`grow-buffer 3953`, `scale-down 1`), or the mode entered (`mode defensive`);
    /// with several stages, the knob's stage is named too.
    pub fn label(&self, several_stages: bool) -> String {
        match self.kind.as_str() {
            "mode" => format!("mode {}", self.value.as_deref().unwrap_or("?")),
            _ => {
                let mut label = self.rule.clone().unwrap_or_else(|| self.kind.clone());
                if several_stages
                    && let Some(stage) = self.knob.as_deref().and_then(|k| k.split_once(' '))
                    && matches!(stage.0, "buffer" | "pool")
                {
                    label.push(' ');
                    label.push_str(stage.1);
                }
                if let Some(value) = &self.value {
                    label.push_str(" \u{2192} ");
                    label.push_str(value);
                }
                label
            }
        }
    }
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
    /// p99 latency of the events that arrived within the scenario's
    /// `latency_window`, seconds (`None` without a window or events in it).
    #[serde(default)]
    pub p99_window_s: Option<f64>,
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

/// Controls a run from outside: live rate changes, its counters and the pipeline's
/// handle (for the control plane), and stopping a run that holds its load.
#[derive(Clone)]
pub struct RunControl {
    workload: Arc<Mutex<Workload>>,
    pipeline: PipelineHandle,
    bus: Bus<Event>,
    start: Instant,
    offered: Arc<AtomicU64>,
    handled: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
}

impl std::fmt::Debug for RunControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunControl")
            .field("pipeline", &self.pipeline)
            .finish_non_exhaustive()
    }
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

    /// The workload's patterns now (base rates as set, shapes as in the scenario).
    pub fn patterns(&self) -> Vec<Pattern> {
        lock(&self.workload).patterns().cloned().collect()
    }

    /// The run's pipeline, for a control plane over it.
    pub fn pipeline(&self) -> &PipelineHandle {
        &self.pipeline
    }

    /// Time since the run started (the time axis of its timeline and shapes).
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Arrivals the workload generated so far (the offered load, published or not).
    pub fn offered_total(&self) -> u64 {
        self.offered.load(Ordering::Relaxed)
    }

    /// Events the bus accepted so far.
    pub fn published_total(&self) -> u64 {
        self.bus.snapshot().published
    }

    /// Events the handlers finished so far (ok or failed).
    pub fn handled_total(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    /// Ends the run at its next sample, as if its duration had passed (the way to end
    /// a run with [`RunOptions::hold`]); [`run`] then shuts the pipeline down and
    /// returns.
    pub fn stop(&self) {
        self.done.store(true, Ordering::Relaxed);
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
    /// Keep running past the scenario's duration with the load in force then (the
    /// shapes' final factors) until [`RunControl::stop`]; the timeline and decision
    /// list keep their latest [`HELD_SAMPLES`] entries.
    pub hold: bool,
    /// Build the pipeline with a live configuration
    /// ([`Scenario::pipeline_config`](super::Scenario::pipeline_config)), so the
    /// control plane's `PATCH /api/config` can change it.
    pub live_config: bool,
}

/// How many timeline samples and decisions a run with [`RunOptions::hold`] keeps
/// (an hour of samples at the usual 250 ms).
pub const HELD_SAMPLES: usize = 14_400;

/// The length a run with [`RunOptions::hold`] is given: far beyond any session, short
/// enough for deadline arithmetic on `Instant`.
const HOLD_LIMIT: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

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

/// The counters a run's threads share: the handlers record into them, the generator
/// counts arrivals, the sampler and [`RunControl`] read them.
#[derive(Clone)]
struct Counters {
    /// End-to-end latency of every event handled, microseconds.
    latency: Arc<Mutex<Histogram<u64>>>,
    /// The same, for arrivals within the scenario's latency window only.
    windowed: Arc<Mutex<Histogram<u64>>>,
    handled: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    /// Arrivals generated (the offered load).
    offered: Arc<AtomicU64>,
    /// Arrivals due but not yet published.
    backlog: Arc<AtomicU64>,
    /// Arrivals never published.
    unpublished: Arc<AtomicU64>,
    /// Set when the run ends (duration passed or [`RunControl::stop`]).
    done: Arc<AtomicBool>,
}

impl Counters {
    fn new() -> Result<Counters, hdrhistogram::CreationError> {
        let histogram = || Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_MICROS, 3);
        Ok(Counters {
            latency: Arc::new(Mutex::new(histogram()?)),
            windowed: Arc::new(Mutex::new(histogram()?)),
            handled: Arc::default(),
            failed: Arc::default(),
            offered: Arc::default(),
            backlog: Arc::default(),
            unpublished: Arc::default(),
            done: Arc::default(),
        })
    }
}

/// The longest latency the histograms hold (an hour), microseconds.
const MAX_LATENCY_MICROS: u64 = 3_600_000_000;

/// What the sampling loop gathered.
struct Sampled {
    timeline: Vec<Sample>,
    decisions: Vec<DecisionLine>,
    peak_memory: u64,
}

/// Runs `scenario` here; `control` receives the handle for live changes.
///
/// In four steps: `setup` builds the pipeline, `drive` starts the workload's
/// generator, `sample` records the timeline and decisions until the run ends, and
/// `collect` shuts down and sums up.
pub fn run(
    scenario: &Scenario,
    options: &RunOptions,
    control: Option<mpsc::Sender<RunControl>>,
) -> Result<RunResult, Box<dyn std::error::Error>> {
    let counters = Counters::new()?;
    let (pipeline, limit) = setup(scenario, options, &counters)?;
    pipeline.start()?;
    let start = Instant::now();
    let duration = if options.hold {
        HOLD_LIMIT
    } else {
        scenario.duration
    };
    let workload = Arc::new(Mutex::new(Workload::new(
        scenario.patterns.clone(),
        scenario.seed,
    )));
    if let Some(tx) = control {
        let _ = tx.send(RunControl {
            workload: workload.clone(),
            pipeline: pipeline.handle(),
            bus: pipeline.bus().clone(),
            start,
            offered: counters.offered.clone(),
            handled: counters.handled.clone(),
            done: counters.done.clone(),
        });
    }
    let generator = drive(&pipeline, scenario, &workload, &counters, start, duration)?;
    let sampled = sample(
        &pipeline, scenario, options, &workload, &counters, start, duration, limit,
    );
    let result = collect(
        scenario, options, pipeline, &counters, sampled, start, duration, limit,
    );
    let _ = generator.join();
    Ok(result)
}

/// Builds the scenario's pipeline (not started) and returns it with the memory limit
/// the run works against.
fn setup(
    scenario: &Scenario,
    options: &RunOptions,
    counters: &Counters,
) -> Result<(Pipeline<Event>, u64), Box<dyn std::error::Error>> {
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
    let mut builder = Pipeline::<Event>::builder()
        .policy(scenario.policy_config())
        .interval(scenario.interval)
        .limits(limits)
        .controller(scenario.controller)
        .decision_log_capacity(DECISION_LOG_CAPACITY);
    if !options.in_cgroup {
        builder = builder.memory_probe(move |_now: Instant| MemoryObservation {
            used_bytes: rss_bytes(),
            limit_bytes: Some(limit),
            psi_some_avg10: None,
        });
    }
    let topics: Vec<&str> = scenario.patterns.iter().map(|p| p.topic.as_str()).collect();
    for (i, spec) in scenario.stages.iter().enumerate() {
        let topic = topics
            .iter()
            .position(|t| *t == spec.topic)
            .expect("checked") as u16;
        let sub = SubscriptionConfig::new(spec.name.as_str())
            .filter(move |e: &Event| e.topic == topic)
            .capacity(spec.capacity)
            .min_capacity(spec.min_capacity)
            .max_capacity(spec.max_capacity)
            .overflow(spec.overflow)
            .droppable(spec.droppable)
            .event_size(|e: &Event| e.payload.len() + 48);
        let seed = scenario.seed.wrapping_add(1000 * i as u64);
        let stage = Stage::new(sub)
            .workers(spec.workers[0])
            .min_workers(spec.workers[1])
            .max_workers(spec.workers[2])
            .handler(handler(spec, seed, scenario.latency_window, counters))
            .dead_letter(|_| {});
        builder = builder.stage(stage);
    }
    if options.live_config {
        builder = builder.config(scenario.pipeline_config());
    }
    Ok((builder.build()?, limit))
}

/// A stage's handler: spends the stage's cost (sleeping or spinning), fails its share
/// of events, and records each event's end-to-end latency.
fn handler(
    spec: &StageSpec,
    seed: u64,
    window: Option<LatencyWindow>,
    counters: &Counters,
) -> impl Fn(Event) -> Result<(), HandlerError> + Send + Sync + 'static {
    let (cost, error_rate) = (spec.cost, spec.error_rate);
    let counter = AtomicU64::new(0);
    let counters = counters.clone();
    move |event: Event| {
        thread_local! {
            static RNG: std::cell::RefCell<Option<StdRng>> = const { std::cell::RefCell::new(None) };
        }
        let (draw, fail) = RNG.with(|r| {
            let mut r = r.borrow_mut();
            let rng = r.get_or_insert_with(|| {
                StdRng::seed_from_u64(
                    seed ^ counter
                        .fetch_add(1, Ordering::Relaxed)
                        .wrapping_mul(0x9E37_79B9),
                )
            });
            (
                rng.random_range(f64::MIN_POSITIVE..1.0),
                rng.random::<f64>() < error_rate,
            )
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
        let micros = (event.born.elapsed().as_micros().max(1) as u64).min(MAX_LATENCY_MICROS);
        let _ = lock(&counters.latency).record(micros);
        if window.is_some_and(|w| w.contains(event.at)) {
            let _ = lock(&counters.windowed).record(micros);
        }
        counters.handled.fetch_add(1, Ordering::Relaxed);
        if fail {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            return Err(HandlerError::new("injected failure"));
        }
        Ok(())
    }
}

/// Starts the generator thread: every 2 ms it applies the scenario's scheduled rate
/// changes, takes the arrivals due and publishes them (blocking while the bus is
/// full, until the run's end), counting what it could not publish.
fn drive(
    pipeline: &Pipeline<Event>,
    scenario: &Scenario,
    workload: &Arc<Mutex<Workload>>,
    counters: &Counters,
    start: Instant,
    duration: Duration,
) -> std::io::Result<thread::JoinHandle<()>> {
    let publisher = pipeline.publisher();
    let workload = workload.clone();
    let counters = counters.clone();
    let mut changes = scenario.rate_changes.clone();
    changes.sort_by_key(|c| c.at);
    thread::Builder::new()
        .name("stress-generator".into())
        .spawn(move || {
            let mut next_change = 0;
            loop {
                let now = start.elapsed();
                if now >= duration || counters.done.load(Ordering::Relaxed) {
                    break;
                }
                while next_change < changes.len() && changes[next_change].at <= now {
                    let c = &changes[next_change];
                    let _ = lock(&workload).set_rate(&c.topic, c.rate);
                    next_change += 1;
                }
                let arrivals = lock(&workload).due(now);
                counters
                    .offered
                    .fetch_add(arrivals.len() as u64, Ordering::Relaxed);
                counters
                    .backlog
                    .store(arrivals.len() as u64, Ordering::Relaxed);
                let total = arrivals.len();
                for (k, a) in arrivals.into_iter().enumerate() {
                    let event = Event {
                        topic: a.pattern as u16,
                        born: start + a.at,
                        at: a.at,
                        payload: Bytes::from(vec![0xA5u8; a.size]),
                    };
                    let left = duration.saturating_sub(start.elapsed());
                    if publisher.publish_timeout(event, left).is_err() {
                        counters
                            .unpublished
                            .fetch_add((total - k) as u64, Ordering::Relaxed);
                        counters.backlog.store(0, Ordering::Relaxed);
                        if start.elapsed() >= duration {
                            return;
                        }
                        break;
                    }
                    counters
                        .backlog
                        .store((total - k - 1) as u64, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(2));
            }
        })
}

/// Samples the run until it ends: a timeline point per tick (at most 250 ms), the
/// decisions as they are logged, the status line and decisions printed when verbose.
#[allow(clippy::too_many_arguments)]
fn sample(
    pipeline: &Pipeline<Event>,
    scenario: &Scenario,
    options: &RunOptions,
    workload: &Arc<Mutex<Workload>>,
    counters: &Counters,
    start: Instant,
    duration: Duration,
    limit: u64,
) -> Sampled {
    let log = pipeline.decision_log();
    let tick = Duration::from_millis(250)
        .min(duration / 20)
        .max(Duration::from_millis(50));
    let mut workers: HashMap<String, u64> = scenario
        .stages
        .iter()
        .map(|s| (s.name.clone(), s.workers[0] as u64))
        .collect();
    let mut timeline = Vec::new();
    let mut decisions = Vec::new();
    let mut seen = 0usize;
    let mut last = (Instant::now(), 0u64);
    let mut last_status = Instant::now() - Duration::from_secs(2);
    let mut peak_memory = 0u64;
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
            let at = r.at.saturating_duration_since(start).as_secs_f64();
            let line = DecisionLine::new(r, at);
            if options.verbose {
                println!("{}", decision_text(&line));
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
        let intended: f64 = lock(workload).patterns().map(|p| p.rate_at(elapsed)).sum();
        let dt = now.duration_since(last.0).as_secs_f64().max(1e-6);
        let mem = rss_bytes();
        peak_memory = peak_memory.max(mem);
        let s = Sample {
            t: elapsed.as_secs_f64(),
            offered_rate: intended,
            publish_rate: (snap.published - last.1) as f64 / dt,
            rate_limit: snap.publish_rate,
            buffer_len: snap.subscriptions.iter().map(|s| s.len as u64).sum(),
            buffer_capacity: snap.subscriptions.iter().map(|s| s.capacity as u64).sum(),
            workers: workers.values().sum(),
            memory_bytes: mem,
            memory_limit: limit,
            dropped: snap.subscriptions.iter().map(|s| s.dropped()).sum(),
            backlog: counters.backlog.load(Ordering::Relaxed),
            max_saturation: snap
                .subscriptions
                .iter()
                .map(|s| s.saturation)
                .fold(0.0, f64::max),
            mode: mode.clone(),
        };
        last = (now, snap.published);
        if options.verbose && last_status.elapsed() >= Duration::from_millis(990) {
            last_status = Instant::now();
            println!("{}", status_line(&s));
            let _ = std::io::stdout().flush();
        }
        timeline.push(s);
        if options.hold && timeline.len() > HELD_SAMPLES {
            timeline.drain(..timeline.len() - HELD_SAMPLES);
        }
        if options.hold && decisions.len() > HELD_SAMPLES {
            decisions.drain(..decisions.len() - HELD_SAMPLES);
        }
        if elapsed >= duration || counters.done.load(Ordering::Relaxed) {
            break;
        }
    }
    counters.done.store(true, Ordering::Relaxed);
    Sampled {
        timeline,
        decisions,
        peak_memory,
    }
}

/// Shuts the pipeline down (letting the buffers drain for a while) and sums the run
/// up: counts, latency quantiles, settling and reversals.
#[allow(clippy::too_many_arguments)]
fn collect(
    scenario: &Scenario,
    options: &RunOptions,
    pipeline: Pipeline<Event>,
    counters: &Counters,
    sampled: Sampled,
    start: Instant,
    duration: Duration,
    limit: u64,
) -> RunResult {
    // A held run lasted until it was stopped.
    let ran = start.elapsed().min(duration);
    let snap = pipeline.bus().snapshot();
    let dropped = snap.subscriptions.iter().map(|s| s.dropped()).sum();
    let published = snap.published;
    let drain = if options.hold {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(5).max(duration / 4)
    };
    let report = pipeline.shutdown(drain);
    let Sampled {
        timeline,
        decisions,
        peak_memory,
    } = sampled;
    let settle_from = scenario.settle_from.unwrap_or_default().as_secs_f64();
    let unsettled = |s: &Sample| s.max_saturation > 0.9 || s.backlog > 100;
    let settling_s = timeline
        .iter()
        .filter(|s| s.t >= settle_from && unsettled(s))
        .map(|s| s.t - settle_from)
        .fold(0.0, f64::max);
    let h = lock(&counters.latency);
    let w = lock(&counters.windowed);
    RunResult {
        scenario: scenario.name.clone(),
        controller: scenario.controller,
        duration_s: ran.as_secs_f64(),
        offered: counters.offered.load(Ordering::Relaxed),
        published,
        dropped,
        unpublished: counters.unpublished.load(Ordering::Relaxed),
        left: report.left(),
        handled: counters.handled.load(Ordering::Relaxed),
        failed: counters.failed.load(Ordering::Relaxed),
        p50_s: h.value_at_quantile(0.5) as f64 / 1e6,
        p99_s: h.value_at_quantile(0.99) as f64 / 1e6,
        p99_window_s: (!w.is_empty()).then(|| w.value_at_quantile(0.99) as f64 / 1e6),
        peak_memory_bytes: peak_memory,
        memory_limit: limit,
        settling_s,
        reversals: reversals(&timeline),
        decisions,
        timeline,
    }
}

/// What the columns of [`status_line`] mean, for the run's header.
pub const STATUS_LEGEND: &str = "\
status each second: in/out = offered/published events/s, lim = publish-rate limit,
  buf = buffered/capacity, wrk = workers, mem = memory share of the limit,
  drop = events dropped (k = thousand, M = million)";

/// The widest [`status_line`], in columns, for times under 10 000 s and under 100 workers.
pub const STATUS_WIDTH: usize = 100;

/// The status line printed once a second, at most [`STATUS_WIDTH`] columns wide:
///
/// ```text
///   25.3s  in 3000/s  out 3014/s  lim none  buf  173/3953  wrk  5  mem   3%  drop    0  normal
/// ```
///
/// Counts and rates take at most four columns (`3953`, `66k`, `1.2M`); the backlog of
/// arrivals the publisher has not published yet is in the report (out < in shows it
/// live).
pub fn status_line(s: &Sample) -> String {
    format!(
        "{:>6.1}s  in {:>4}/s  out {:>4}/s  lim {:>4}  buf {:>4}/{:<4}  wrk {:>2}  mem {:>3.0}%  drop {:>4}  {}",
        s.t,
        compact(s.offered_rate),
        compact(s.publish_rate),
        s.rate_limit.map_or("none".into(), compact),
        compact(s.buffer_len as f64),
        compact(s.buffer_capacity as f64),
        s.workers,
        (100.0 * s.memory_bytes as f64 / s.memory_limit.max(1) as f64).min(999.0),
        compact(s.dropped as f64),
        s.mode
    )
}

/// A decision as the run prints it: its time on the run's clock (the status lines'),
/// then what the decision log says.
pub fn decision_text(line: &DecisionLine) -> String {
    let what = match line.kind.as_str() {
        "hold" => "held",
        "refused" => "refused",
        _ => "decision",
    };
    format!("{:>6.1}s  {what}: {}", line.t, line.text)
}

/// A non-negative number in at most four columns: exact below 10 000, then thousands
/// (`66k`, `999k`), millions (`1.2M`, `12M`) and billions (`3G`, at most `999G`).
pub fn compact(v: f64) -> String {
    let v = v.max(0.0).round();
    if v < 10_000.0 {
        format!("{v:.0}")
    } else if v < 1e6 {
        format!("{:.0}k", (v / 1e3).floor())
    } else if v < 1e7 {
        format!("{:.1}M", (v / 1e5).floor() / 10.0)
    } else if v < 1e9 {
        format!("{:.0}M", (v / 1e6).floor())
    } else {
        format!("{:.0}G", (v / 1e9).floor().min(999.0))
    }
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
