//! The configuration model and its validation (its files are in `file.rs`).

use crate::policy::PolicyConfig;
use pipeline_core::bus::OverflowPolicy;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The largest buffer capacity a configuration may ask for, in events
/// (`stages.<name>.buffer.max`).
pub const MAX_BUFFER_CAPACITY: usize = 1 << 20;

/// The largest worker count a configuration may ask for, per stage
/// (`stages.<name>.workers.max`).
pub const MAX_WORKERS: usize = 1024;

/// The whole runtime configuration: the controller, the policy and every stage.
///
/// Build it in code (every field is public, with a default), or, with the
/// `file-config` feature (on by default), read it from a file with
/// [`from_path`](Self::from_path) (TOML or YAML, by extension; `${VAR}` and
/// `${VAR:-default}` are replaced first, see [`substitute`](fn@super::substitute)) or from
/// the file that `PIPELINE_CONFIG` names with [`from_env`](Self::from_env). Check it with
/// [`validate`](Self::validate), build a pipeline with it through
/// [`PipelineBuilder::config`](crate::pipeline::PipelineBuilder::config), and change it
/// while the pipeline runs through its [`ConfigHandle`](super::ConfigHandle). The serde
/// derives are always there, so the model also fits inside a service's own
/// configuration, whatever its format.
///
/// # Examples
///
/// In code:
///
/// ```
/// use pipeline_controller::config::{PipelineConfig, RangeConfig, StageConfig};
/// use std::time::Duration;
///
/// let mut config = PipelineConfig::default();
/// config.policy.cooldown = Duration::from_secs(10);
/// config.stages.insert("enrich".into(), StageConfig {
///     buffer: RangeConfig { initial: 256, min: 64, max: 4096 },
///     workers: RangeConfig { initial: 2, min: 1, max: 8 },
///     ..StageConfig::default()
/// });
/// config.validate()?;
/// # Ok::<(), pipeline_controller::config::ConfigErrors>(())
/// ```
///
/// From TOML (feature `file-config`):
///
/// ```
/// # #[cfg(feature = "file-config")] {
/// use pipeline_controller::config::PipelineConfig;
/// use std::time::Duration;
///
/// let config = PipelineConfig::from_toml_str(r#"
///     [controller]
///     interval = "500ms"
///
///     [policy]
///     cooldown = "10s"
///
///     [stages.enrich]
///     buffer = { initial = 256, min = 64, max = 4096 }
///     workers = { initial = 2, min = 1, max = 8 }
/// "#)?;
/// assert_eq!(config.controller.interval, Duration::from_millis(500));
/// assert_eq!(config.policy.cooldown, Duration::from_secs(10));
/// assert_eq!(config.stages["enrich"].buffer.max, 4096);
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// The control loop itself.
    pub controller: ControllerConfig,
    /// The policy's thresholds, factors, windows and cooldowns (see [`PolicyConfig`]).
    pub policy: PolicyConfig,
    /// One entry per stage, by the stage's name. Critical: the set of names is the
    /// pipeline's topology.
    pub stages: BTreeMap<String, StageConfig>,
}

/// The control loop's own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControllerConfig {
    /// Time between two controller ticks. Default 1 s; range [1 ms, 1 h].
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Decision records kept in the decision log. Default 1024; range [1, 1_000_000].
    /// Critical: the log is allocated when the pipeline is built.
    pub decision_log_capacity: usize,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            interval: Duration::from_secs(1),
            decision_log_capacity: 1024,
        }
    }
}

/// One stage: its buffer and worker ranges and what its buffer does when full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StageConfig {
    /// Buffer capacity in events. Default initial 1024, min 64, max 16384; range
    /// `1 <= min <= initial <= max <= 1048576`.
    pub buffer: RangeConfig,
    /// Worker threads. Default initial 1, min 1, max 1; range
    /// `1 <= min <= initial <= max <= 1024`.
    pub workers: RangeConfig,
    /// What a full buffer does to a publisher: `block` (lossless), `drop_newest` or
    /// `drop_oldest`. Default `block`; dropping needs `droppable = true`.
    pub overflow: OverflowPolicy,
    /// Whether the stage may lose events (and the controller may switch it to a
    /// dropping mode under memory pressure). Default false. Critical: it is the
    /// stage's delivery contract, fixed when the subscription is created.
    pub droppable: bool,
}

impl Default for StageConfig {
    fn default() -> Self {
        StageConfig {
            buffer: RangeConfig {
                initial: 1024,
                min: 64,
                max: 16384,
            },
            workers: RangeConfig {
                initial: 1,
                min: 1,
                max: 1,
            },
            overflow: OverflowPolicy::Block,
            droppable: false,
        }
    }
}

/// A knob's starting value and the range the controller may move it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeConfig {
    /// The value at start (only read when the pipeline is built).
    pub initial: usize,
    /// The smallest value the controller may set.
    pub min: usize,
    /// The largest value the controller may set.
    pub max: usize,
}

/// One broken rule: the field's dotted path, its value and the rule.
///
/// Displays as `path (value) rule`, e.g.
/// `stages.enrich.buffer.max (8) must be >= buffer.min (64)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The field's dotted path, e.g. `stages.enrich.buffer.max`.
    pub path: String,
    /// The field's value, as text.
    pub value: String,
    /// The rule it breaks.
    pub rule: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}) {}", self.path, self.value, self.rule)
    }
}

/// Every rule a configuration breaks, all at once, in field order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The problems, one per broken rule.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} configuration error(s): ", self.0.len())?;
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl PipelineConfig {
    /// Checks every range and every relation between fields, and reports all the
    /// broken rules at once.
    ///
    /// # Errors
    ///
    /// [`ConfigErrors`] listing each broken rule with its field path.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_controller::config::{PipelineConfig, RangeConfig, StageConfig};
    ///
    /// let mut config = PipelineConfig::default();
    /// let mut stage = StageConfig::default();
    /// stage.buffer = RangeConfig { initial: 64, min: 64, max: 8 };
    /// config.stages.insert("enrich".into(), stage);
    /// let errors = config.validate().unwrap_err();
    /// assert_eq!(
    ///     errors.errors()[0].to_string(),
    ///     "stages.enrich.buffer.max (8) must be >= buffer.min (64)"
    /// );
    /// ```
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        let mut push = |path: String, value: String, rule: String| {
            errors.push(ConfigError { path, value, rule });
        };
        let interval = self.controller.interval;
        if interval < Duration::from_millis(1) || interval > Duration::from_secs(3600) {
            push(
                "controller.interval".into(),
                humantime_serde::re::humantime::format_duration(interval).to_string(),
                "must be in [1ms, 1h]".into(),
            );
        }
        let log = self.controller.decision_log_capacity;
        if !(1..=1_000_000).contains(&log) {
            push(
                "controller.decision_log_capacity".into(),
                log.to_string(),
                "must be in [1, 1000000]".into(),
            );
        }
        for problem in self.policy.problems() {
            push(
                format!("policy.{}", problem.field()),
                problem.value().to_owned(),
                problem.rule().to_owned(),
            );
        }
        for (name, stage) in &self.stages {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                push(
                    format!("stages.{name}"),
                    format!("{name:?}"),
                    "stage names must be non-empty and use only ASCII letters, digits, '_' and '-'"
                        .into(),
                );
            }
            for (knob, range, limit) in [
                ("buffer", stage.buffer, MAX_BUFFER_CAPACITY),
                ("workers", stage.workers, MAX_WORKERS),
            ] {
                let at = |field: &str| format!("stages.{name}.{knob}.{field}");
                if range.min < 1 {
                    push(at("min"), range.min.to_string(), "must be >= 1".into());
                }
                if range.max < range.min {
                    push(
                        at("max"),
                        range.max.to_string(),
                        format!("must be >= {knob}.min ({})", range.min),
                    );
                }
                if range.max > limit {
                    push(
                        at("max"),
                        range.max.to_string(),
                        format!("must be <= {limit}"),
                    );
                }
                if range.initial < range.min || range.initial > range.max {
                    push(
                        at("initial"),
                        range.initial.to_string(),
                        format!(
                            "must be within [{knob}.min, {knob}.max] ([{}, {}])",
                            range.min, range.max
                        ),
                    );
                }
            }
            if stage.overflow.drops() && !stage.droppable {
                push(
                    format!("stages.{name}.overflow"),
                    stage.overflow.to_string(),
                    "dropping needs droppable = true".into(),
                );
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }
}
