//! The configuration model, its files and its validation.

use super::substitute::{SubstitutionErrors, substitute_env};
use crate::policy::PolicyConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The largest buffer capacity a configuration may ask for, in events. Stages built from
/// a configuration give the bus the range `[1, MAX_BUFFER_CAPACITY]`, so the configured
/// range can later move anywhere inside it without a rebuild.
pub const MAX_BUFFER_CAPACITY: usize = 1 << 20;

/// The largest worker count a configuration may ask for, per stage (the pool's hard
/// range is `[1, MAX_WORKERS]` for the same reason).
pub const MAX_WORKERS: usize = 1024;

/// The environment variable that names the configuration file:
/// [`PipelineConfig::from_env`] and [`ConfigHandle::watch_env`](super::ConfigHandle::watch_env)
/// read it.
pub const CONFIG_PATH_ENV: &str = "PIPELINE_CONFIG";

/// The whole runtime configuration: the controller, the policy and every stage.
///
/// Read it from a file with [`from_path`](Self::from_path) (TOML or YAML, by extension;
/// `${VAR}` and `${VAR:-default}` are replaced first, see [`substitute`](super::substitute)),
/// or from the file that `PIPELINE_CONFIG` names with [`from_env`](Self::from_env),
/// check it with [`validate`](Self::validate), build a pipeline with it through
/// [`PipelineBuilder::config`](crate::pipeline::PipelineBuilder::config), and change it
/// while the pipeline runs through its [`ConfigHandle`](super::ConfigHandle).
///
/// # Examples
///
/// ```
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
/// # Ok::<(), pipeline_controller::config::ConfigLoadError>(())
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
    pub overflow: Overflow,
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
            overflow: Overflow::Block,
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

/// What a full buffer does, as written in a configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// The publisher waits (lossless).
    #[default]
    Block,
    /// The new event is dropped.
    DropNewest,
    /// The oldest buffered event is dropped.
    DropOldest,
}

impl Overflow {
    /// The core bus policy of the same name.
    pub fn to_core(self) -> pipeline_core::bus::OverflowPolicy {
        use pipeline_core::bus::OverflowPolicy;
        match self {
            Overflow::Block => OverflowPolicy::Block,
            Overflow::DropNewest => OverflowPolicy::DropNewest,
            Overflow::DropOldest => OverflowPolicy::DropOldest,
        }
    }
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

/// The file formats a configuration can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// TOML (`.toml`).
    Toml,
    /// YAML (`.yaml`, `.yml`).
    Yaml,
}

impl Format {
    /// The format a path's extension names, if any.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "toml" => Some(Format::Toml),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Toml => "TOML",
            Format::Yaml => "YAML",
        })
    }
}

/// Why a configuration could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigLoadError {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The extension is neither `.toml`, `.yaml` nor `.yml`.
    #[error("{}: unknown configuration format (use .toml, .yaml or .yml)", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The text is not valid TOML/YAML, or does not fit the model (an unknown field, a
    /// wrong type, a malformed duration). Serde stops at the first such problem.
    #[error("{format} error at line {line}, column {column}: {message}")]
    Syntax {
        /// The format being read.
        format: Format,
        /// 1-based line of the problem (0 when the parser gave no position).
        line: usize,
        /// 1-based column of the problem (0 when the parser gave no position).
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// The configuration parsed but breaks rules.
    #[error(transparent)]
    Invalid(#[from] ConfigErrors),
    /// A `${VAR}` in the file could not be replaced (an unset variable without a
    /// default, or a malformed reference); every such reference is listed with its line.
    #[error("{}: {errors}", path.display())]
    Substitution {
        /// The file.
        path: PathBuf,
        /// Every reference that could not be replaced.
        errors: SubstitutionErrors,
    },
    /// [`PipelineConfig::from_env`] found the variable unset or empty.
    #[error(
        "{variable} is not set: set it to the configuration file's path (.toml, .yaml or .yml)"
    )]
    EnvNotSet {
        /// The variable, [`CONFIG_PATH_ENV`].
        variable: &'static str,
    },
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

impl PipelineConfig {
    /// Parses TOML and validates the result.
    ///
    /// The text is parsed as given: `${VAR}` is replaced only in files
    /// ([`from_path`](Self::from_path)), since text may come from anywhere (a request
    /// body must not read the server's environment). Call
    /// [`substitute_env`](super::substitute_env) first to substitute here too.
    ///
    /// # Errors
    ///
    /// [`ConfigLoadError::Syntax`] with line and column, or
    /// [`ConfigLoadError::Invalid`] with every broken rule.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigLoadError> {
        let config = Self::parse(text, Format::Toml)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses without validating (syntax, unknown fields and types only).
    pub(crate) fn parse(text: &str, format: Format) -> Result<Self, ConfigLoadError> {
        match format {
            Format::Toml => Self::parse_toml(text),
            Format::Yaml => Self::parse_yaml(text),
        }
    }

    fn parse_toml(text: &str) -> Result<Self, ConfigLoadError> {
        toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((0, 0), |s| line_column(text, s.start));
            ConfigLoadError::Syntax {
                format: Format::Toml,
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })
    }

    /// Parses YAML and validates the result.
    ///
    /// # Errors
    ///
    /// As [`from_toml_str`](Self::from_toml_str).
    pub fn from_yaml_str(text: &str) -> Result<Self, ConfigLoadError> {
        let config = Self::parse(text, Format::Yaml)?;
        config.validate()?;
        Ok(config)
    }

    fn parse_yaml(text: &str) -> Result<Self, ConfigLoadError> {
        // An empty document is an empty mapping: every default.
        if text.trim().is_empty() {
            Ok(PipelineConfig::default())
        } else {
            serde_saphyr::from_str(text).map_err(|e| {
                let (line, column) = e
                    .location()
                    .map_or((0, 0), |l| (l.line() as usize, l.column() as usize));
                ConfigLoadError::Syntax {
                    format: Format::Yaml,
                    line,
                    column,
                    message: e.to_string(),
                }
            })
        }
    }

    /// Parses text in `format` and validates the result.
    ///
    /// # Errors
    ///
    /// As [`from_toml_str`](Self::from_toml_str).
    pub fn from_str_as(text: &str, format: Format) -> Result<Self, ConfigLoadError> {
        match format {
            Format::Toml => Self::from_toml_str(text),
            Format::Yaml => Self::from_yaml_str(text),
        }
    }

    /// Reads a file, TOML or YAML by its extension, replaces `${VAR}` and
    /// `${VAR:-default}` with environment variables (see [`substitute`](super::substitute)
    /// for the rules), and validates the result.
    ///
    /// Line numbers in errors are the file's; a column on a line with a substitution is
    /// one of the substituted text.
    ///
    /// # Errors
    ///
    /// [`ConfigLoadError::Io`], [`ConfigLoadError::UnknownFormat`],
    /// [`ConfigLoadError::Substitution`], or as [`from_toml_str`](Self::from_toml_str).
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_controller::config::PipelineConfig;
    /// use std::time::Duration;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("pipeline.yaml");
    /// std::fs::write(&path, "policy:\n  cooldown: ${PIPELINE_DOC_COOLDOWN_UNSET:-15s}\n")?;
    /// let config = PipelineConfig::from_path(&path)?;
    /// assert_eq!(config.policy.cooldown, Duration::from_secs(15));
    ///
    /// std::fs::write(&path, "policy:\n  cooldown: ${PIPELINE_DOC_COOLDOWN_UNSET}\n")?;
    /// let error = PipelineConfig::from_path(&path).unwrap_err();
    /// assert!(error.to_string().ends_with(
    ///     "pipeline.yaml: 1 substitution error(s): line 2, column 13: environment variable \
    ///      PIPELINE_DOC_COOLDOWN_UNSET is not set and ${PIPELINE_DOC_COOLDOWN_UNSET} has no \
    ///      default (set it, or write ${PIPELINE_DOC_COOLDOWN_UNSET:-default})"
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, ConfigLoadError> {
        let config = Self::parse_path(path.as_ref())?;
        config.validate()?;
        Ok(config)
    }

    /// The path in the `PIPELINE_CONFIG` environment variable ([`CONFIG_PATH_ENV`]).
    ///
    /// # Errors
    ///
    /// [`ConfigLoadError::EnvNotSet`] if it is unset or empty.
    pub fn path_from_env() -> Result<PathBuf, ConfigLoadError> {
        match std::env::var_os(CONFIG_PATH_ENV) {
            Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
            _ => Err(ConfigLoadError::EnvNotSet {
                variable: CONFIG_PATH_ENV,
            }),
        }
    }

    /// Reads the file that the `PIPELINE_CONFIG` environment variable names, as
    /// [`from_path`](Self::from_path) does: the way to point a container at a mounted
    /// ConfigMap (`PIPELINE_CONFIG=/etc/pipeline/pipeline.yaml`). Watch the same file
    /// with [`ConfigHandle::watch_env`](super::ConfigHandle::watch_env).
    ///
    /// # Errors
    ///
    /// [`ConfigLoadError::EnvNotSet`] if the variable is unset or empty, otherwise as
    /// [`from_path`](Self::from_path).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use pipeline_controller::config::{ConfigHandle, DEFAULT_DEBOUNCE, PipelineConfig};
    ///
    /// // PIPELINE_CONFIG=/etc/pipeline/pipeline.yaml
    /// let handle = ConfigHandle::new(PipelineConfig::from_env()?)?;
    /// let watcher = handle.watch_env(DEFAULT_DEBOUNCE)?;
    /// # drop(watcher);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_env() -> Result<Self, ConfigLoadError> {
        Self::from_path(Self::path_from_env()?)
    }

    /// Reads and parses a file without validating it.
    pub(crate) fn parse_path(path: &Path) -> Result<Self, ConfigLoadError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigLoadError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse_bytes(path, bytes)
    }

    /// Parses the bytes read from `path` (format by its extension, then substitution)
    /// without validating.
    pub(crate) fn parse_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self, ConfigLoadError> {
        let format = Format::from_path(path).ok_or_else(|| ConfigLoadError::UnknownFormat {
            path: path.to_owned(),
        })?;
        let text = String::from_utf8(bytes).map_err(|_| ConfigLoadError::Io {
            path: path.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "stream did not contain valid UTF-8",
            ),
        })?;
        let text = substitute_env(&text).map_err(|errors| ConfigLoadError::Substitution {
            path: path.to_owned(),
            errors,
        })?;
        Self::parse(&text, format)
    }

    /// The configuration as TOML.
    ///
    /// # Panics
    ///
    /// Never for this model (every field is representable in TOML).
    pub fn to_toml_string(&self) -> String {
        toml::to_string(self).expect("the configuration model is representable in TOML")
    }

    /// The configuration as YAML.
    ///
    /// # Panics
    ///
    /// Never for this model (every field is representable in YAML).
    pub fn to_yaml_string(&self) -> String {
        serde_saphyr::to_string(self).expect("the configuration model is representable in YAML")
    }

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
            if stage.overflow != Overflow::Block && !stage.droppable {
                push(
                    format!("stages.{name}.overflow"),
                    serde_name(stage.overflow),
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

fn serde_name(overflow: Overflow) -> String {
    match overflow {
        Overflow::Block => "block",
        Overflow::DropNewest => "drop_newest",
        Overflow::DropOldest => "drop_oldest",
    }
    .to_owned()
}
