//! Scenario files: the pipeline, the workload, the controller settings and the
//! expectations of one stress run, as YAML (`tests/scenarios/*.yaml`).

use crate::workload::{Pattern, Shape};
use pipeline_controller::config::{ControllerConfig, PipelineConfig, RangeConfig, StageConfig};
use pipeline_controller::policy::PolicyConfig;
use pipeline_core::bus::OverflowPolicy;
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

/// The scenario run when `pipeline-stress` gets no file.
pub const DEFAULT_SCENARIO: &str = include_str!("../../scenarios/default.yaml");

/// One stress scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, used for the report folder.
    pub name: String,
    /// What the scenario shows.
    #[serde(default)]
    pub description: String,
    /// How long the load runs.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Seed of the workload's and the handlers' random numbers.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// The time compression `--quick` applies (default 5); `1` keeps the full length
    /// (memory squeezes: memory fills at the real event rate).
    #[serde(default = "default_quick")]
    pub quick: f64,
    /// `false` runs the baseline: fixed buffers, fixed workers, no rate limit.
    #[serde(default = "yes")]
    pub controller: bool,
    /// The controller's tick interval.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// The memory limit the controller works against (e.g. `256MiB`); in a cgroup
    /// run, the cgroup's limit.
    #[serde(default, deserialize_with = "de_opt_bytes")]
    pub memory_limit: Option<u64>,
    /// Run inside a child memory cgroup with `memory_limit` (needs root).
    #[serde(default)]
    pub cgroup: bool,
    /// The policy: `PolicyConfig`'s fields, any of them, as in a configuration file's
    /// `policy` section; the rest keep the library's defaults.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// The stages, one per topic.
    pub stages: Vec<StageSpec>,
    /// The load.
    pub patterns: Vec<Pattern>,
    /// Live rate changes through `Workload::set_rate`, while the run goes on.
    #[serde(default)]
    pub rate_changes: Vec<RateChange>,
    /// When the last load change happens (settling time counts from here); default:
    /// the start.
    #[serde(default, with = "humantime_serde")]
    pub settle_from: Option<Duration>,
    /// The part of the run whose p99 latency is also reported on its own (after a
    /// cold start or a step has settled): events that arrived within it.
    #[serde(default)]
    pub latency_window: Option<LatencyWindow>,
    /// The bounds the run must meet.
    pub expect: Expectations,
}

/// Arrivals from `from` (since the start) until `to` (the end of the run if absent).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyWindow {
    /// Start, since the start of the run.
    #[serde(with = "humantime_serde")]
    pub from: Duration,
    /// End, since the start of the run.
    #[serde(default, with = "humantime_serde")]
    pub to: Option<Duration>,
}

impl LatencyWindow {
    /// Whether an arrival `at` after the start falls within the window.
    pub fn contains(&self, at: Duration) -> bool {
        at >= self.from && self.to.is_none_or(|to| at < to)
    }
}

/// One stage: a subscription on one topic and its worker pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// Stage and subscription name.
    pub name: String,
    /// The pattern topic it consumes.
    pub topic: String,
    /// Initial buffer capacity.
    pub capacity: usize,
    /// Smallest capacity the controller may set.
    pub min_capacity: usize,
    /// Largest capacity the controller may set.
    pub max_capacity: usize,
    /// Initial, minimum and maximum workers.
    pub workers: [usize; 3],
    /// `block` (the default), `drop_newest` or `drop_oldest`.
    #[serde(default)]
    pub overflow: OverflowPolicy,
    /// Whether the controller may switch it to dropping.
    #[serde(default)]
    pub droppable: bool,
    /// Service time per event.
    pub cost: Cost,
    /// Share of events the handler fails.
    #[serde(default)]
    pub error_rate: f64,
}

/// The handler's service time.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Cost {
    /// Sleeps exactly `time`.
    Fixed {
        /// Service time.
        #[serde(with = "humantime_serde")]
        time: Duration,
    },
    /// Sleeps an exponential time with mean `mean` (seeded).
    Exponential {
        /// Mean service time.
        #[serde(with = "humantime_serde")]
        mean: Duration,
    },
    /// Burns CPU for `time`.
    Spin {
        /// Service time.
        #[serde(with = "humantime_serde")]
        time: Duration,
    },
}

/// A rate set live through the API at `at`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateChange {
    /// When.
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    /// Which pattern.
    pub topic: String,
    /// New base rate, events per second.
    pub rate: f64,
}

/// Bounds on the run's outcome; an absent bound is not checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectations {
    /// Largest share of published events dropped.
    pub max_loss: Option<f64>,
    /// Largest peak memory share of the limit.
    pub max_peak_memory_share: Option<f64>,
    /// Largest p99 end-to-end latency (from the scheduled arrival).
    #[serde(default, with = "humantime_serde")]
    pub max_p99_latency: Option<Duration>,
    /// Longest settling time after `settle_from`.
    #[serde(default, with = "humantime_serde")]
    pub max_settling_time: Option<Duration>,
    /// Most direction reversals of buffer capacities and worker counts.
    pub max_reversals: Option<u64>,
    /// Fewest controller decisions (shows it acted).
    pub min_decisions: Option<u64>,
    /// Largest buffer capacity, all stages, at the end of the run (shows the buffers
    /// were given back after a burst).
    pub max_final_capacity: Option<u64>,
    /// Most workers, all stages, at the end of the run (shows the workers were given
    /// back after a burst).
    pub max_final_workers: Option<u64>,
    /// Most OOM kills (cgroup runs).
    pub max_oom_kills: Option<u64>,
    /// The baseline: the run passes when at least one bound above is violated (it
    /// shows what happens without the controller).
    #[serde(default)]
    pub violations_expected: bool,
}

fn yes() -> bool {
    true
}
fn default_seed() -> u64 {
    7
}
fn default_quick() -> f64 {
    5.0
}
fn default_interval() -> Duration {
    Duration::from_millis(250)
}

/// Decision records the harness keeps: every decision of a run goes into the report.
pub const DECISION_LOG_CAPACITY: usize = 100_000;

/// One setting whose value differs from the library's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingDifference {
    /// Dotted path, e.g. `policy.cooldown`.
    pub field: String,
    /// The value the run uses, as written in a configuration file (`1s`, `0.25`).
    pub value: String,
    /// The library's default (`absent` for a field the default does not have).
    pub default: String,
}

/// Appends to `out` every leaf of `actual` that differs from `default`, recursing into
/// objects; `path` names the root.
pub fn differences(
    path: &str,
    default: &serde_json::Value,
    actual: &serde_json::Value,
    out: &mut Vec<SettingDifference>,
) {
    use serde_json::Value;
    match (default, actual) {
        (Value::Object(d), Value::Object(a)) => {
            // Serialization order: the struct's field order.
            let mut keys: Vec<&String> = a.keys().collect();
            keys.extend(d.keys().filter(|k| !a.contains_key(*k)));
            for key in keys {
                let child = format!("{path}.{key}");
                match (d.get(key), a.get(key)) {
                    (Some(dv), Some(av)) => differences(&child, dv, av, out),
                    (dv, av) => out.push(SettingDifference {
                        field: child,
                        value: av.map_or("absent".into(), plain),
                        default: dv.map_or("absent".into(), plain),
                    }),
                }
            }
        }
        (d, a) if d != a => out.push(SettingDifference {
            field: path.to_owned(),
            value: plain(a),
            default: plain(d),
        }),
        _ => {}
    }
}

/// A JSON value as a configuration file would spell it: strings without quotes.
fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Parses `256MiB`, `1GiB`, `512KiB`, `100MB` or a plain byte count.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num.parse().map_err(|_| format!("not a size: {text:?}"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1u64,
        "k" | "kb" => 1000,
        "kib" | "ki" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" | "mi" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" | "gi" => 1 << 30,
        other => return Err(format!("unknown unit {other:?} in {text:?}")),
    };
    Ok((num * mult as f64) as u64)
}

fn de_opt_bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::N(n)) => Ok(Some(n)),
        Some(Raw::S(s)) => parse_bytes(&s).map(Some).map_err(serde::de::Error::custom),
    }
}

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The YAML does not describe a scenario.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl Scenario {
    /// Parses YAML text; `origin` names it in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, ScenarioError> {
        let scenario: Scenario =
            serde_saphyr::from_str(text).map_err(|e| ScenarioError::Parse {
                path: origin.to_owned(),
                message: e.to_string(),
            })?;
        scenario.check().map_err(|message| ScenarioError::Parse {
            path: origin.to_owned(),
            message,
        })?;
        Ok(scenario)
    }

    /// Reads and parses a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// The embedded default scenario.
    pub fn default_scenario() -> Self {
        Self::from_yaml(DEFAULT_SCENARIO, "scenarios/default.yaml")
            .expect("the default scenario parses")
    }

    /// The policy the run uses: the library's defaults with the scenario's `policy`
    /// section applied.
    pub fn policy_config(&self) -> PolicyConfig {
        self.policy.clone()
    }

    /// The control loop's settings the run uses: the scenario's interval and the
    /// decision log's size ([`DECISION_LOG_CAPACITY`]).
    pub fn controller_config(&self) -> ControllerConfig {
        // Fields the controller's configuration gains later keep their defaults.
        #[allow(clippy::needless_update)]
        ControllerConfig {
            interval: self.interval,
            decision_log_capacity: DECISION_LOG_CAPACITY,
            ..ControllerConfig::default()
        }
    }

    /// The run's whole configuration as the library's live model: the controller
    /// settings, the policy, and each stage's buffer and worker ranges, overflow and
    /// droppable flag. `pipeline-stress --serve` builds its pipeline with it, so the
    /// control plane can change it while the run goes on.
    pub fn pipeline_config(&self) -> PipelineConfig {
        let stages = self
            .stages
            .iter()
            .map(|s| {
                let stage = StageConfig {
                    buffer: RangeConfig {
                        initial: s.capacity,
                        min: s.min_capacity,
                        max: s.max_capacity,
                    },
                    workers: RangeConfig {
                        initial: s.workers[0],
                        min: s.workers[1],
                        max: s.workers[2],
                    },
                    overflow: s.overflow,
                    droppable: s.droppable,
                };
                (s.name.clone(), stage)
            })
            .collect();
        PipelineConfig {
            controller: self.controller_config(),
            policy: self.policy_config(),
            stages,
        }
    }

    /// Every controller and policy setting of this run that differs from the library's
    /// defaults ([`ControllerConfig::default`], [`PolicyConfig::default`]), found by
    /// comparing their serialized forms field by field, so a field added to either
    /// shows up without a change here.
    pub fn settings_differing_from_defaults(&self) -> Vec<SettingDifference> {
        let mut out = Vec::new();
        let value = |v: Result<serde_json::Value, serde_json::Error>| {
            v.unwrap_or_else(|e| serde_json::Value::String(format!("<not serializable: {e}>")))
        };
        differences(
            "controller",
            &value(serde_json::to_value(ControllerConfig::default())),
            &value(serde_json::to_value(self.controller_config())),
            &mut out,
        );
        differences(
            "policy",
            &value(serde_json::to_value(PolicyConfig::default())),
            &value(serde_json::to_value(self.policy_config())),
            &mut out,
        );
        out
    }

    fn check(&self) -> Result<(), String> {
        if self.stages.is_empty() {
            return Err("stages: at least one".into());
        }
        self.policy.validate().map_err(|e| format!("policy.{e}"))?;
        for s in &self.stages {
            if !self.patterns.iter().any(|p| p.topic == s.topic) {
                return Err(format!("stages.{}.topic: no pattern {:?}", s.name, s.topic));
            }
        }
        if self.cgroup && self.memory_limit.is_none() {
            return Err("cgroup: needs memory_limit".into());
        }
        Ok(())
    }

    /// Compresses time by `factor` (> 1 shortens): the duration, the shapes, the
    /// rate changes, the controller's interval and windows (not the bounds).
    pub fn compress(&mut self, factor: f64) {
        if factor <= 1.0 {
            return;
        }
        let s = |d: Duration| d.div_f64(factor);
        self.duration = s(self.duration);
        self.interval = s(self.interval).max(Duration::from_millis(50));
        for p in &mut self.patterns {
            p.shape = match p.shape.clone() {
                Shape::Ramp { from, to, over } => Shape::Ramp {
                    from,
                    to,
                    over: s(over),
                },
                Shape::Step { at, factor } => Shape::Step { at: s(at), factor },
                Shape::Burst {
                    at,
                    length,
                    factor: f,
                } => Shape::Burst {
                    at: s(at),
                    length: s(length),
                    factor: f,
                },
                Shape::Sine { amplitude, period } => Shape::Sine {
                    amplitude,
                    period: s(period),
                },
                Shape::Constant => Shape::Constant,
            };
        }
        for c in &mut self.rate_changes {
            c.at = s(c.at);
        }
        self.settle_from = self.settle_from.map(s);
        if let Some(w) = &mut self.latency_window {
            w.from = s(w.from);
            w.to = w.to.map(s);
        }
        let p = &mut self.policy;
        for d in [
            &mut p.stabilisation_window,
            &mut p.cooldown,
            &mut p.defensive_exit_hold,
            &mut p.rate_ceiling_hold,
        ] {
            *d = s(*d).max(Duration::from_millis(200));
        }
        // The settling bound is not compressed: the worker pools measure utilisation
        // and pace their resizes on their own clocks, which do not compress.
    }
}
