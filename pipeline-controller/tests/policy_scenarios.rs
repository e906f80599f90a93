//! The policy in simulated time, against scenario files in `tests/data/policy/`.
//!
//! Each file describes a small system (stages: a buffer and the worker pool that drains
//! it; a memory and CPU limit), a workload over time in phases (arrival rate, service
//! rate per worker, application memory, limits), a seed for the arrival noise, policy
//! config overrides, and what to expect: an exact action trace and/or ranges for
//! statistics and for values at given times. The runner steps a fluid model of the
//! system in 100 ms sub-steps, asks the policy for a decision at the end of every
//! simulated second, and applies the actions to the model, so the policy closes the
//! loop. Every failure of a scenario is collected and printed before the test fails.
//!
//! Each run prints its trace and a report row (settling time, memory overshoot,
//! reversals per knob); `docs/controller.md` has the table, made with
//! `cargo test -p pipeline-controller --test policy_scenarios -- --nocapture --test-threads=1`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pipeline_controller::policy::{
    BufferObservation, Change, Direction, HysteresisPolicy, Knob, Mode, Observation, PolicyConfig,
    PoolObservation,
};
use pipeline_core::bus::OverflowPolicy;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

const MIB: f64 = 1024.0 * 1024.0;
const SUB_STEPS: u32 = 10;

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run(stringify!($name));
            }
        )*

        /// A scenario file without a test would never run.
        #[test]
        fn every_scenario_file_has_a_test() {
            let known = [$(stringify!($name)),*];
            let mut missing = Vec::new();
            for entry in std::fs::read_dir(data_dir()).expect("read tests/data/policy") {
                let path = entry.expect("list tests/data/policy").path();
                let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
                if path.extension().is_some_and(|e| e == "yaml") && !known.contains(&stem.as_str()) {
                    missing.push(stem);
                }
            }
            assert!(missing.is_empty(), "scenario files without a test: {missing:?}");
        }
    };
}

scenarios!(
    gradual_load_increase,
    burst_10x,
    burst_10x_without_model,
    memory_squeeze,
    slow_consumer,
    steady_load,
    limit_lowered,
    pressure_without_limit,
    failing_handler,
);

// ---- the file format ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    /// Seeds the arrival noise.
    seed: u64,
    #[serde(default)]
    config: ConfigOverrides,
    system: System,
    phases: Vec<Phase>,
    expect: Expect,
}

macro_rules! overrides {
    (values: $($field:ident: $ty:ty),*; seconds: $($secs:ident),* $(,)?) => {
        /// Fields of `PolicyConfig` to change from the default; durations in seconds.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct ConfigOverrides {
            $(#[serde(default)] $field: Option<$ty>,)*
            $(#[serde(default)] $secs: Option<f64>,)*
        }

        impl ConfigOverrides {
            fn apply(&self, mut config: PolicyConfig) -> PolicyConfig {
                $(if let Some(value) = self.$field { config.$field = value; })*
                $(if let Some(value) = self.$secs { config.$secs = Duration::from_secs_f64(value); })*
                config
            }
        }
    };
}

overrides! {
    values: memory_critical: f64, psi_critical: f64, defensive_exit: f64, psi_exit: f64,
        memory_caution: f64, target_saturation: f64, low_saturation: f64,
        relief_saturation: f64, growth_factor: f64, shrink_factor: f64,
        defensive_shrink_factor: f64, buffer_budget: f64, resize_tolerance: f64,
        rate_decrease_factor: f64, defensive_rate_factor: f64, min_publish_rate: f64,
        rate_increase_step: f64, target_utilisation: f64, low_utilisation: f64,
        max_error_rate: f64, workers_per_core: f64, max_scale_up_step: usize,
        scale_down_step: usize;
    seconds: defensive_exit_hold, stabilisation_window, cooldown, rate_ceiling_hold,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct System {
    memory_limit_mib: Option<f64>,
    cpu_limit: Option<f64>,
    /// Relative noise on the arrival rate, drawn once per second: 0.1 = +-10%.
    #[serde(default)]
    noise: f64,
    /// Whether the loop measures the queueing model's readings (λ offered per stage,
    /// including refused publishes, and S), as the library's loop does. `false` plays
    /// a loop that does not (the cold-start rules). Default true.
    #[serde(default = "yes")]
    model: bool,
    stages: Vec<Stage>,
}

fn yes() -> bool {
    true
}

/// A subscription and the pool that drains it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stage {
    name: String,
    capacity: usize,
    min: usize,
    max: usize,
    event_kib: f64,
    #[serde(default)]
    droppable: bool,
    #[serde(default)]
    overflow: OverflowPolicy,
    /// Share of published events this subscription matches.
    #[serde(default = "one")]
    share: f64,
    workers: usize,
    min_workers: usize,
    max_workers: usize,
    /// Events per second one worker handles.
    service_rate: f64,
    /// Memory one worker holds, MiB.
    #[serde(default)]
    worker_mib: f64,
}

fn one() -> f64 {
    1.0
}

/// A stretch of simulated time. Limits and service rates set here stay until a later
/// phase changes them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Phase {
    /// Seconds.
    duration: u32,
    /// Events per second offered by publishers.
    arrival: Ramp,
    /// Memory the application holds outside the buffers and workers, MiB.
    base_memory_mib: Ramp,
    #[serde(default)]
    error_rate: f64,
    /// PSI some avg10 reported, percent.
    #[serde(default)]
    psi: Option<f64>,
    #[serde(default)]
    memory_limit_mib: Option<f64>,
    #[serde(default)]
    cpu_limit: Option<f64>,
    /// Per stage: events per second one worker handles from this phase on.
    #[serde(default)]
    service_rate: BTreeMap<String, f64>,
}

/// A constant, or `[from, to]` changing linearly over the phase.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
enum Ramp {
    Constant(f64),
    Linear([f64; 2]),
}

impl Ramp {
    fn at(self, progress: f64) -> f64 {
        match self {
            Ramp::Constant(value) => value,
            Ramp::Linear([from, to]) => from + (to - from) * progress,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// Every mode change and action, exactly, as `t=<s> <display>`.
    #[serde(default)]
    trace: Option<Vec<String>>,
    /// Ranges `[min, max]` (inclusive) for the statistics of the run.
    #[serde(default)]
    stats: BTreeMap<String, [f64; 2]>,
    /// Checks at given seconds (after that second's decision was applied).
    #[serde(default)]
    at: Vec<AtCheck>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AtCheck {
    t: u32,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    values: BTreeMap<String, [f64; 2]>,
}

// ---- the simulated system ----

struct SimStage {
    spec: Stage,
    capacity: usize,
    overflow: OverflowPolicy,
    workers: usize,
    service_rate: f64,
    /// Buffered events (a fluid: fractions are fine).
    len: f64,
    total_drops: f64,
    processed: f64,
}

/// What one simulated second produced, per stage.
#[derive(Default, Clone)]
struct StageTick {
    drops: f64,
    blocked: Duration,
    busy: f64,
}

struct Sim {
    stages: Vec<SimStage>,
    memory_limit_mib: Option<f64>,
    cpu_limit: Option<f64>,
    publish_rate: Option<f64>,
    refused: f64,
    rng: StdRng,
    noise: f64,
    model: bool,
}

impl Sim {
    fn new(scenario: &Scenario) -> Sim {
        let stages = scenario
            .system
            .stages
            .iter()
            .map(|spec| SimStage {
                capacity: spec.capacity,
                overflow: spec.overflow,
                workers: spec.workers,
                service_rate: spec.service_rate,
                len: 0.0,
                total_drops: 0.0,
                processed: 0.0,
                spec: spec.clone(),
            })
            .collect();
        Sim {
            stages,
            memory_limit_mib: scenario.system.memory_limit_mib,
            cpu_limit: scenario.system.cpu_limit,
            publish_rate: None,
            refused: 0.0,
            rng: StdRng::seed_from_u64(scenario.seed),
            noise: scenario.system.noise,
            model: scenario.system.model,
        }
    }

    fn memory_mib(&self, base_mib: f64) -> f64 {
        base_mib
            + self
                .stages
                .iter()
                .map(|s| s.len * s.spec.event_kib / 1024.0 + s.workers as f64 * s.spec.worker_mib)
                .sum::<f64>()
    }

    /// Runs one second of arrivals and service; returns the observation at its end and
    /// the highest memory share within it.
    fn second(&mut self, phase: &Phase, progress: (f64, f64)) -> (Observation, f64) {
        let noise = if self.noise > 0.0 {
            1.0 + self.noise * self.rng.random_range(-1.0..=1.0)
        } else {
            1.0
        };
        let dt = 1.0 / f64::from(SUB_STEPS);
        let mut ticks = vec![StageTick::default(); self.stages.len()];
        let mut offered_total = 0.0;
        let mut peak_share: f64 = 0.0;
        let mut base = 0.0;
        for step in 0..SUB_STEPS {
            let p = progress.0
                + (progress.1 - progress.0) * (f64::from(step) + 1.0) / f64::from(SUB_STEPS);
            base = phase.base_memory_mib.at(p);
            let offered = phase.arrival.at(p).max(0.0) * noise * dt;
            offered_total += offered;
            let admitted = match self.publish_rate {
                Some(rate) => offered.min(rate * dt),
                None => offered,
            };
            // A publish waits while any lossless subscription it matches is full.
            let mut accepted = admitted;
            for s in &self.stages {
                if s.overflow == OverflowPolicy::Block && s.spec.share > 0.0 {
                    let room = (s.capacity as f64 - s.len).max(0.0) / s.spec.share;
                    accepted = accepted.min(room);
                }
            }
            self.refused += offered - accepted;
            for (s, tick) in self.stages.iter_mut().zip(&mut ticks) {
                let inflow = accepted * s.spec.share;
                let room = (s.capacity as f64 - s.len).max(0.0);
                match s.overflow {
                    OverflowPolicy::Block => {
                        if admitted * s.spec.share > room + 1e-9 {
                            tick.blocked += Duration::from_secs_f64(dt);
                        }
                        s.len += inflow;
                    }
                    OverflowPolicy::DropNewest => {
                        let entered = inflow.min(room);
                        tick.drops += inflow - entered;
                        s.len += entered;
                    }
                    OverflowPolicy::DropOldest => {
                        let evicted = (inflow - room).max(0.0);
                        tick.drops += evicted;
                        s.len += inflow - evicted;
                    }
                    other => panic!("the simulation does not know overflow {other}"),
                }
                let served = s.len.min(s.workers as f64 * s.service_rate * dt);
                s.len -= served;
                s.processed += served;
                tick.busy += served;
            }
            if let Some(limit) = self.memory_limit_mib {
                peak_share = peak_share.max(self.memory_mib(base) / limit);
            }
        }

        let mut obs = Observation::new()
            .memory(
                (self.memory_mib(base) * MIB) as u64,
                self.memory_limit_mib.map(|l| (l * MIB) as u64),
            )
            .psi(phase.psi)
            .cpu_limit(self.cpu_limit)
            .publish_rate(self.publish_rate)
            .observed_publish_rate(Some(offered_total));
        for (s, tick) in self.stages.iter_mut().zip(&ticks) {
            s.total_drops += tick.drops;
            let len = s.len.round() as usize;
            obs.buffers.push(
                BufferObservation::new(&s.spec.name, s.capacity, s.spec.min, s.spec.max)
                    .len(len)
                    .bytes_per_event(s.spec.event_kib * 1024.0)
                    .droppable(s.spec.droppable)
                    .overflow(s.overflow)
                    .drops(tick.drops.round() as u64)
                    .blocked(tick.blocked),
            );
            let capacity = s.workers as f64 * s.service_rate;
            let utilisation = if capacity > 0.0 {
                (tick.busy / capacity).min(1.0)
            } else {
                0.0
            };
            let mut pool = PoolObservation::new(
                &s.spec.name,
                s.workers,
                s.spec.min_workers,
                s.spec.max_workers,
            )
            .utilisation(utilisation)
            .error_rate(phase.error_rate)
            .backlog(len);
            if self.model && s.service_rate > 0.0 {
                // Offered to this stage, refused or not; the handler's time per event.
                pool = pool
                    .arrival_rate(offered_total * s.spec.share)
                    .service_time(Duration::from_secs_f64(1.0 / s.service_rate));
            }
            obs.pools.push(pool);
        }
        (obs, peak_share)
    }

    fn apply(&mut self, change: &Change) {
        let stage = |stages: &mut Vec<SimStage>, name: &str| -> usize {
            stages
                .iter()
                .position(|s| s.spec.name == name)
                .expect("actions name known stages")
        };
        match change {
            Change::ResizeBuffer { name, to, .. } => {
                let i = stage(&mut self.stages, name);
                self.stages[i].capacity = *to;
            }
            Change::ResizePool { name, to, .. } => {
                let i = stage(&mut self.stages, name);
                self.stages[i].workers = *to;
            }
            Change::SetOverflow { name, to, .. } => {
                let i = stage(&mut self.stages, name);
                self.stages[i].overflow = *to;
            }
            Change::SetPublishRate { to, .. } => self.publish_rate = *to,
        }
    }
}

// ---- running and checking ----

/// The state after one second's decision was applied.
struct Record {
    t: u32,
    mode: Mode,
    capacities: Vec<usize>,
    workers: Vec<usize>,
    backlogs: Vec<f64>,
    rate: Option<f64>,
    memory_share: f64,
}

struct Run {
    trace: Vec<String>,
    records: Vec<Record>,
    /// (second, knob, direction) of every action.
    moves: Vec<(u32, String, Direction)>,
    stats: BTreeMap<String, f64>,
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/policy")
}

fn knob_key(knob: &Knob) -> String {
    match knob {
        Knob::Buffer(name) => format!("buffer.{name}"),
        Knob::Overflow(name) => format!("overflow.{name}"),
        Knob::Pool(name) => format!("pool.{name}"),
        Knob::PublishRate => "rate".to_string(),
    }
}

fn simulate(scenario: &Scenario, config: PolicyConfig, failures: &mut Vec<String>) -> Run {
    let mut policy = HysteresisPolicy::new(config.clone()).expect("scenario config is valid");
    let mut sim = Sim::new(scenario);
    let start = Instant::now();
    let mut run = Run {
        trace: Vec::new(),
        records: Vec::new(),
        moves: Vec::new(),
        stats: BTreeMap::new(),
    };
    let mut peak_share: f64 = 0.0;
    let mut t = 0;
    for phase in &scenario.phases {
        if let Some(limit) = phase.memory_limit_mib {
            sim.memory_limit_mib = Some(limit);
        }
        if let Some(cpu) = phase.cpu_limit {
            sim.cpu_limit = Some(cpu);
        }
        for (name, rate) in &phase.service_rate {
            match sim.stages.iter_mut().find(|s| &s.spec.name == name) {
                Some(stage) => stage.service_rate = *rate,
                None => failures.push(format!("phase names unknown stage {name:?}")),
            }
        }
        let duration = f64::from(phase.duration);
        for second in 0..phase.duration {
            t += 1;
            let progress = (
                f64::from(second) / duration,
                f64::from(second + 1) / duration,
            );
            let (obs, peak) = sim.second(phase, progress);
            peak_share = peak_share.max(peak);
            let decision = policy.decide(&obs, start + Duration::from_secs(u64::from(t)));
            if let Some(transition) = &decision.transition {
                run.trace.push(format!("t={t} {transition}"));
            }
            for action in &decision.actions {
                run.trace.push(format!("t={t} {action}"));
                check_action(&obs, &action.change, &config, t, failures);
                run.moves.push((
                    t,
                    knob_key(&action.change.knob()),
                    action.change.direction(),
                ));
                sim.apply(&action.change);
            }
            run.records.push(Record {
                t,
                mode: decision.mode,
                capacities: sim.stages.iter().map(|s| s.capacity).collect(),
                workers: sim.stages.iter().map(|s| s.workers).collect(),
                backlogs: sim.stages.iter().map(|s| s.len).collect(),
                rate: sim.publish_rate,
                memory_share: sim.memory_limit_mib.map_or(0.0, |limit| {
                    sim.memory_mib(phase.base_memory_mib.at(progress.1)) / limit
                }),
            });
        }
    }
    for s in &sim.stages {
        if !s.spec.droppable && s.total_drops > 0.0 {
            failures.push(format!(
                "lossless stage {} dropped {:.0} events",
                s.spec.name, s.total_drops
            ));
        }
    }
    run.stats = statistics(scenario, &config, &run, &sim, peak_share);
    run
}

/// Invariants every action must keep, whatever the scenario.
fn check_action(
    obs: &Observation,
    change: &Change,
    config: &PolicyConfig,
    t: u32,
    failures: &mut Vec<String>,
) {
    match change {
        Change::ResizeBuffer { name, to, .. } => {
            let b = obs
                .buffers
                .iter()
                .find(|b| &b.name == name)
                .expect("known buffer");
            if *to < b.min || *to > b.max {
                failures.push(format!(
                    "t={t}: buffer {name} resized to {to}, outside [{}, {}]",
                    b.min, b.max
                ));
            }
        }
        Change::ResizePool { name, from, to } => {
            let p = obs
                .pools
                .iter()
                .find(|p| &p.name == name)
                .expect("known pool");
            if *to < p.min || *to > p.max {
                failures.push(format!(
                    "t={t}: pool {name} resized to {to}, outside [{}, {}]",
                    p.min, p.max
                ));
            }
            if let Some(cores) = obs.cpu_limit_cores {
                let cap = (cores * config.workers_per_core).floor() as usize;
                let total = obs.total_workers() - from + to;
                if to > from && total > cap {
                    failures.push(format!("t={t}: pool {name} scaled up to a total of {total} workers over the cpu cap {cap}"));
                }
            }
        }
        Change::SetOverflow { name, to, .. } => {
            let b = obs
                .buffers
                .iter()
                .find(|b| &b.name == name)
                .expect("known buffer");
            if to.drops() && !b.droppable {
                failures.push(format!("t={t}: lossless buffer {name} switched to {to}"));
            }
        }
        Change::SetPublishRate { to: Some(to), .. } if *to < config.min_publish_rate => {
            failures.push(format!(
                "t={t}: publish rate {to} below the floor {}",
                config.min_publish_rate
            ));
        }
        Change::SetPublishRate { .. } => {}
    }
}

fn statistics(
    scenario: &Scenario,
    config: &PolicyConfig,
    run: &Run,
    sim: &Sim,
    peak_share: f64,
) -> BTreeMap<String, f64> {
    let mut stats = BTreeMap::new();
    stats.insert("actions".to_string(), run.moves.len() as f64);
    if let Some(&(last, _, _)) = run.moves.last() {
        stats.insert("last_action_at".to_string(), f64::from(last));
        let last_phase_start: u32 = scenario
            .phases
            .iter()
            .rev()
            .skip(1)
            .map(|p| p.duration)
            .sum();
        stats.insert(
            "settling_time".to_string(),
            f64::from(last.saturating_sub(last_phase_start)),
        );
    } else {
        stats.insert("settling_time".to_string(), 0.0);
    }
    // Memory statistics need a limit to be a share of.
    if sim.memory_limit_mib.is_some() {
        stats.insert("peak_memory_share".to_string(), peak_share);
        stats.insert(
            "overshoot".to_string(),
            (peak_share - config.memory_critical).max(0.0),
        );
    }
    if let Some(last) = run.records.last() {
        stats.insert("final_memory_share".to_string(), last.memory_share);
        stats.insert(
            "final.publish_rate".to_string(),
            last.rate.unwrap_or(f64::INFINITY),
        );
    }
    let lowest_rate = run
        .records
        .iter()
        .filter_map(|r| r.rate)
        .fold(f64::INFINITY, f64::min);
    stats.insert("min.publish_rate".to_string(), lowest_rate);
    stats.insert("refused".to_string(), sim.refused.round());

    let mut knobs: Vec<String> = vec!["rate".to_string()];
    for (i, s) in sim.stages.iter().enumerate() {
        let name = &s.spec.name;
        knobs.extend([
            format!("buffer.{name}"),
            format!("pool.{name}"),
            format!("overflow.{name}"),
        ]);
        let peak_capacity = run
            .records
            .iter()
            .map(|r| r.capacities[i])
            .max()
            .unwrap_or(s.capacity);
        let peak_workers = run
            .records
            .iter()
            .map(|r| r.workers[i])
            .max()
            .unwrap_or(s.workers);
        stats.insert(format!("peak.capacity.{name}"), peak_capacity as f64);
        stats.insert(format!("final.capacity.{name}"), s.capacity as f64);
        stats.insert(format!("peak.workers.{name}"), peak_workers as f64);
        stats.insert(format!("final.workers.{name}"), s.workers as f64);
        stats.insert(format!("drops.{name}"), s.total_drops.round());
        stats.insert(format!("processed.{name}"), s.processed.round());
        let peak_backlog = run
            .records
            .iter()
            .map(|r| r.backlogs[i])
            .fold(0.0, f64::max);
        stats.insert(format!("peak.backlog.{name}"), peak_backlog.round());
    }
    let mut total = 0;
    for knob in knobs {
        let directions: Vec<Direction> = run
            .moves
            .iter()
            .filter(|m| m.1 == knob)
            .map(|m| m.2)
            .collect();
        let reversals = directions.windows(2).filter(|w| w[0] != w[1]).count();
        total += reversals;
        stats.insert(format!("reversals.{knob}"), reversals as f64);
    }
    stats.insert("reversals.total".to_string(), total as f64);

    for mode in [Mode::Throttled, Mode::Defensive] {
        let mut entries = 0;
        let mut previous = Mode::Normal;
        for r in &run.records {
            if r.mode == mode && previous != mode {
                entries += 1;
                if entries == 1 {
                    stats.insert(format!("entered.{mode}"), f64::from(r.t));
                }
            }
            previous = r.mode;
        }
        stats.insert(format!("entries.{mode}"), f64::from(entries));
        let seconds = run.records.iter().filter(|r| r.mode == mode).count();
        stats.insert(format!("seconds_in.{mode}"), seconds as f64);
    }
    stats
}

fn value_at(record: &Record, stages: &[Stage], key: &str) -> Option<f64> {
    let stage = |name: &str| stages.iter().position(|s| s.name == name);
    let (what, name) = key.split_once('.').unwrap_or((key, ""));
    Some(match what {
        "capacity" => record.capacities[stage(name)?] as f64,
        "workers" => record.workers[stage(name)?] as f64,
        "backlog" => record.backlogs[stage(name)?].round(),
        "publish_rate" => record.rate.unwrap_or(f64::INFINITY),
        "memory_share" => record.memory_share,
        _ => return None,
    })
}

fn in_range(value: f64, [min, max]: [f64; 2]) -> bool {
    value >= min && value <= max
}

fn run(name: &str) {
    let path = data_dir().join(format!("{name}.yaml"));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut failures = Vec::new();
    if !text.trim_start().starts_with('#') {
        failures.push("the file must open with a comment saying what it expects".to_string());
    }
    let scenario: Scenario =
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
    let config = scenario.config.apply(PolicyConfig::default());
    let run = simulate(&scenario, config, &mut failures);

    println!("== {name}: trace");
    for line in &run.trace {
        println!("  - \"{line}\"");
    }
    println!("== {name}: statistics");
    for (key, value) in &run.stats {
        println!("  {key}: {value:.3}");
    }
    println!("{}", report_row(name, &run));

    if let Some(expected) = &scenario.expect.trace
        && expected != &run.trace
    {
        let mut diff = String::new();
        let longest = expected.len().max(run.trace.len());
        for i in 0..longest {
            let (want, got) = (expected.get(i), run.trace.get(i));
            if want != got {
                let _ = write!(
                    diff,
                    "\n    line {}: expected {want:?}\n             got {got:?}",
                    i + 1
                );
            }
        }
        failures.push(format!("trace differs:{diff}"));
    }
    for (key, range) in &scenario.expect.stats {
        match run.stats.get(key) {
            Some(&value) if in_range(value, *range) => {}
            Some(value) => failures.push(format!("{key} = {value:.3}, expected within {range:?}")),
            None => failures.push(format!(
                "{key}: no such statistic (or no value in this run)"
            )),
        }
    }
    for check in &scenario.expect.at {
        let Some(record) = run.records.iter().find(|r| r.t == check.t) else {
            failures.push(format!("t={}: the run has no such second", check.t));
            continue;
        };
        if let Some(mode) = &check.mode
            && record.mode.as_str() != mode
        {
            failures.push(format!(
                "t={}: mode {}, expected {mode}",
                check.t, record.mode
            ));
        }
        for (key, range) in &check.values {
            match value_at(record, &scenario.system.stages, key) {
                Some(value) if in_range(value, *range) => {}
                Some(value) => failures.push(format!(
                    "t={}: {key} = {value:.3}, expected within {range:?}",
                    check.t
                )),
                None => failures.push(format!("t={}: {key}: no such value", check.t)),
            }
        }
    }
    if !failures.is_empty() {
        panic!(
            "scenario {name}: {} failure(s):\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
}

/// A row of the table in docs/controller.md.
fn report_row(name: &str, run: &Run) -> String {
    let stat = |key: &str| run.stats.get(key).copied();
    let reversals: Vec<String> = run
        .stats
        .iter()
        .filter(|(key, value)| {
            key.starts_with("reversals.") && key.as_str() != "reversals.total" && **value > 0.0
        })
        .map(|(key, value)| format!("{} {value:.0}", key.trim_start_matches("reversals.")))
        .collect();
    format!(
        "| {name} | {} | {} | {} | {} | {:.0} | {} |",
        stat("last_action_at").map_or("-".to_string(), |t| format!("{t:.0}")),
        stat("settling_time").map_or("-".to_string(), |t| format!("{t:.0}")),
        stat("peak_memory_share").map_or("-".to_string(), |m| format!("{m:.3}")),
        stat("overshoot").map_or("-".to_string(), |o| format!("{o:.3}")),
        stat("reversals.total").unwrap_or(0.0),
        if reversals.is_empty() {
            "none".to_string()
        } else {
            reversals.join(", ")
        },
    )
}
