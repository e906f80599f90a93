//! The live configuration: snapshots, updates, history and subscriptions.

#[cfg(feature = "file-config")]
use super::file::ConfigLoadError;
use super::model::{ConfigErrors, PipelineConfig};
use super::params::{flatten, is_critical};
use super::tree::{Node, TreeError, from_tree, parse_value, to_tree};
use crate::sync::{ArcCell, AtomicU64, Mutex as WriteLock, Ordering};
use crossbeam_channel::{Receiver, Sender, unbounded};
use std::collections::{BTreeSet, VecDeque};
use std::fmt;
#[cfg(feature = "file-config")]
use std::path::Path;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Where a change came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeSource {
    /// [`ConfigHandle::update`] or [`ConfigHandle::apply`].
    Api,
    /// A (hot) reload of this file.
    File(PathBuf),
}

impl fmt::Display for ChangeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeSource::Api => f.write_str("api"),
            ChangeSource::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

/// Whether a change took effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeOutcome {
    /// In force; the controller picks it up at its next tick.
    Applied,
    /// Refused; the old value stays. The reason names the rule or the critical
    /// parameters.
    Rejected(String),
}

/// One parameter's change, as kept in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRecord {
    /// The dotted path, e.g. `policy.cooldown`.
    pub parameter: String,
    /// The value before (`None`: the parameter did not exist, e.g. a new stage).
    pub old: Option<String>,
    /// The value asked for (`None`: the parameter was removed).
    pub new: Option<String>,
    /// When the change was asked for.
    pub at: SystemTime,
    /// Who asked.
    pub source: ChangeSource,
    /// Whether it took effect.
    pub outcome: ChangeOutcome,
}

/// What a subscriber hears for each attempt to change the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEvent {
    /// Who asked.
    pub source: ChangeSource,
    /// When.
    pub at: SystemTime,
    /// The per-parameter changes asked for (empty when the file could not be read or
    /// nothing differed).
    pub changes: Vec<ChangeRecord>,
    /// `Ok(())` when applied (or when nothing differed), otherwise every reason.
    pub result: Result<(), Vec<String>>,
}

impl ConfigEvent {
    /// Whether the change (or reload) took effect.
    pub fn is_applied(&self) -> bool {
        self.result.is_ok()
    }
}

impl fmt::Display for ConfigEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.result {
            Ok(()) => {
                write!(
                    f,
                    "{}: applied {} change(s)",
                    self.source,
                    self.changes.len()
                )?;
                for c in &self.changes {
                    write!(
                        f,
                        "; {} {} -> {}",
                        c.parameter,
                        c.old.as_deref().unwrap_or("(none)"),
                        c.new.as_deref().unwrap_or("(none)")
                    )?;
                }
                Ok(())
            }
            Err(reasons) => write!(f, "{}: rejected: {}", self.source, reasons.join("; ")),
        }
    }
}

/// Why a runtime change was refused. The configuration in force is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigUpdateError {
    /// The new configuration breaks rules.
    #[error(transparent)]
    Invalid(#[from] ConfigErrors),
    /// The change touches parameters that need a restart.
    #[error("critical parameter(s) {}: changing them needs a restart", .0.join(", "))]
    Critical(Vec<String>),
    /// [`ConfigHandle::update`] named no parameter of the model.
    #[error("{0}: no such parameter")]
    UnknownParameter(String),
    /// The value does not fit the parameter's type.
    #[error("{path}: {message}")]
    WrongType {
        /// The parameter.
        path: String,
        /// What the parser said.
        message: String,
    },
    /// The file could not be read or parsed.
    #[error("{0}")]
    Load(String),
}

impl ConfigUpdateError {
    fn reasons(&self) -> Vec<String> {
        match self {
            ConfigUpdateError::Invalid(errors) => {
                errors.errors().iter().map(ToString::to_string).collect()
            }
            other => vec![other.to_string()],
        }
    }
}

type Callback = Box<dyn Fn(&ConfigEvent) + Send + Sync>;

struct Inner {
    current: ArcCell<PipelineConfig>,
    version: AtomicU64,
    /// Serialises writers: validate-diff-store is one step.
    write: WriteLock<()>,
    history: Mutex<VecDeque<ChangeRecord>>,
    history_capacity: usize,
    subscribers: Mutex<Vec<Sender<ConfigEvent>>>,
    callbacks: Mutex<Vec<Callback>>,
}

/// The live configuration of a running pipeline; clone it freely (all clones share it).
///
/// Readers take [`current`](Self::current), a cheap `Arc` snapshot: a whole
/// configuration, old or new, never a mix. Writers ([`update`](Self::update),
/// [`apply`](Self::apply), a file reload) validate first, refuse critical changes, and
/// swap the whole configuration at once; the controller re-reads it at every tick.
///
/// # Examples
///
/// ```
/// use pipeline_controller::config::{ChangeOutcome, ConfigHandle, PipelineConfig};
/// use std::time::Duration;
///
/// let handle = ConfigHandle::new(PipelineConfig::default())?;
/// let events = handle.subscribe();
/// handle.update("policy.cooldown", "10s")?;
/// assert_eq!(handle.current().policy.cooldown, Duration::from_secs(10));
///
/// let change = &handle.history()[0];
/// assert_eq!(change.parameter, "policy.cooldown");
/// assert_eq!((change.old.as_deref(), change.new.as_deref()), (Some("30s"), Some("10s")));
/// assert_eq!(change.outcome, ChangeOutcome::Applied);
/// assert!(events.try_recv().unwrap().is_applied());
///
/// let err = handle.update("controller.decision_log_capacity", "10").unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "critical parameter(s) controller.decision_log_capacity: changing them needs a restart"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ConfigHandle {
    inner: Arc<Inner>,
}

impl fmt::Debug for ConfigHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigHandle")
            .field("version", &self.version())
            .finish_non_exhaustive()
    }
}

/// How many change records a handle keeps by default.
pub const DEFAULT_HISTORY_CAPACITY: usize = 256;

impl ConfigHandle {
    /// A handle holding `config`, keeping the latest [`DEFAULT_HISTORY_CAPACITY`]
    /// change records.
    ///
    /// # Errors
    ///
    /// [`ConfigErrors`] if `config` is invalid.
    pub fn new(config: PipelineConfig) -> Result<Self, ConfigErrors> {
        Self::with_history_capacity(config, DEFAULT_HISTORY_CAPACITY)
    }

    /// As [`new`](Self::new), keeping the latest `capacity` change records.
    ///
    /// # Errors
    ///
    /// [`ConfigErrors`] if `config` is invalid.
    pub fn with_history_capacity(
        config: PipelineConfig,
        capacity: usize,
    ) -> Result<Self, ConfigErrors> {
        config.validate()?;
        Ok(ConfigHandle {
            inner: Arc::new(Inner {
                current: ArcCell::new(Arc::new(config)),
                version: AtomicU64::new(0),
                write: WriteLock::new(()),
                history: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
                history_capacity: capacity,
                subscribers: Mutex::new(Vec::new()),
                callbacks: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The configuration in force: a cheap snapshot that never changes under you.
    pub fn current(&self) -> Arc<PipelineConfig> {
        self.inner.current.load()
    }

    /// How many changes have been applied since the handle was made (the controller
    /// re-reads the configuration when this moves).
    pub fn version(&self) -> u64 {
        self.inner.version.load(Ordering::Acquire)
    }

    /// Sets one parameter by its dotted path. `value` is TOML value syntax (`0.8`,
    /// `4`, `true`, `"drop_oldest"`); anything that is not is taken as a string, so
    /// durations and modes can be written bare (`10s`, `drop_oldest`).
    ///
    /// # Errors
    ///
    /// [`ConfigUpdateError::UnknownParameter`], [`ConfigUpdateError::WrongType`],
    /// [`ConfigUpdateError::Invalid`] or [`ConfigUpdateError::Critical`]; refusals
    /// are recorded in the history and reported to subscribers.
    pub fn update(&self, path: &str, value: &str) -> Result<Vec<ChangeRecord>, ConfigUpdateError> {
        self.update_nodes([(path, Ok(parse_value(value)))])
    }

    /// As [`update`](Self::update), with a typed value.
    ///
    /// # Errors
    ///
    /// As [`update`](Self::update).
    #[cfg(feature = "file-config")]
    #[cfg_attr(docsrs, doc(cfg(feature = "file-config")))]
    pub fn update_value(
        &self,
        path: &str,
        value: toml::Value,
    ) -> Result<Vec<ChangeRecord>, ConfigUpdateError> {
        self.update_nodes([(path, to_tree(&value))])
    }

    /// Sets several parameters by their dotted paths together, on the configuration in
    /// force when the change is made (read, modified and applied under the writer
    /// lock, so a file reload or another update at the same time is neither lost nor
    /// overwritten): all of them or none. Values are anything serde can write as a
    /// configuration value (numbers, strings, booleans; e.g. `serde_json::Value`).
    ///
    /// # Errors
    ///
    /// As [`update`](Self::update); [`ConfigUpdateError::WrongType`] names the paths
    /// when the values together do not make a configuration.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_controller::config::{ConfigHandle, PipelineConfig};
    ///
    /// let handle = ConfigHandle::new(PipelineConfig::default())?;
    /// // Each alone would break `low_utilisation < target_utilisation`; together they fit.
    /// handle.update_values([
    ///     ("policy.target_utilisation", 0.25),
    ///     ("policy.low_utilisation", 0.2),
    /// ])?;
    /// assert_eq!(handle.current().policy.target_utilisation, 0.25);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn update_values<'a, V: serde::Serialize>(
        &self,
        values: impl IntoIterator<Item = (&'a str, V)>,
    ) -> Result<Vec<ChangeRecord>, ConfigUpdateError> {
        self.update_nodes(values.into_iter().map(|(path, v)| (path, to_tree(&v))))
    }

    /// Sets the node at each path to its value (or records why a value is no
    /// configuration value) and applies the result, all under the writer lock.
    fn update_nodes<'a>(
        &self,
        values: impl IntoIterator<Item = (&'a str, Result<Node, TreeError>)>,
    ) -> Result<Vec<ChangeRecord>, ConfigUpdateError> {
        // Read-modify-write under the writer lock: two updates of different parameters
        // at once must both land (found by the loom model, tests/loom_config.rs).
        let _writer = self.inner.write.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.current();
        let mut tree = to_tree(&*current).expect("the configuration model is a tree");
        let mut paths = Vec::new();
        let wrong_type = |path: String, e: TreeError| {
            let error = ConfigUpdateError::WrongType {
                path,
                message: e.message().trim().to_owned(),
            };
            self.record_failure(ChangeSource::Api, &error);
            error
        };
        for (path, value) in values {
            let slot = node_at(&mut tree, path)
                .map_err(|_| ConfigUpdateError::UnknownParameter(path.to_owned()))?;
            *slot = value.map_err(|e| wrong_type(path.to_owned(), e))?;
            paths.push(path);
        }
        let new = from_tree::<PipelineConfig>(tree).map_err(|e| wrong_type(paths.join(", "), e))?;
        self.apply_locked(new, ChangeSource::Api)
    }

    /// Replaces the whole configuration, if it is valid and changes no critical
    /// parameter; related parameters change together.
    ///
    /// # Errors
    ///
    /// [`ConfigUpdateError::Invalid`] or [`ConfigUpdateError::Critical`]; the
    /// configuration in force is then unchanged.
    pub fn apply(&self, new: PipelineConfig) -> Result<Vec<ChangeRecord>, ConfigUpdateError> {
        self.apply_from(new, ChangeSource::Api)
    }

    /// Reads `path` (TOML or YAML by extension, `${VAR}` substituted, as
    /// [`PipelineConfig::from_path`] does) and applies it as a reload from that file,
    /// whole or not at all.
    ///
    /// # Errors
    ///
    /// [`ConfigUpdateError::Load`] when the file cannot be read, substituted or parsed,
    /// otherwise as [`apply`](Self::apply).
    #[cfg(feature = "file-config")]
    #[cfg_attr(docsrs, doc(cfg(feature = "file-config")))]
    pub fn reload_from(&self, path: &Path) -> Result<Vec<ChangeRecord>, ConfigUpdateError> {
        self.reload_parsed(path, PipelineConfig::parse_path(path))
    }

    /// Applies what was read from `path` (a parsed, unvalidated configuration or why it
    /// could not be read) as a reload from that file.
    #[cfg(feature = "file-config")]
    pub(super) fn reload_parsed(
        &self,
        path: &Path,
        parsed: Result<PipelineConfig, ConfigLoadError>,
    ) -> Result<Vec<ChangeRecord>, ConfigUpdateError> {
        let source = ChangeSource::File(path.to_owned());
        // Validation happens in `apply_from`, so a refused file's changes are recorded.
        match parsed {
            Ok(new) => self.apply_from(new, source),
            Err(other) => {
                let mut message = other.to_string();
                let mut cause = std::error::Error::source(&other);
                while let Some(c) = cause {
                    message.push_str(": ");
                    message.push_str(&c.to_string());
                    cause = c.source();
                }
                let error = ConfigUpdateError::Load(message);
                self.record_failure(source, &error);
                Err(error)
            }
        }
    }

    /// Applies `new` on behalf of `source`: validate, diff, refuse critical changes,
    /// swap, record, notify.
    fn apply_from(
        &self,
        new: PipelineConfig,
        source: ChangeSource,
    ) -> Result<Vec<ChangeRecord>, ConfigUpdateError> {
        let _writer = self.inner.write.lock().unwrap_or_else(|p| p.into_inner());
        self.apply_locked(new, source)
    }

    /// `apply_from` with the writer lock already held by the caller.
    fn apply_locked(
        &self,
        new: PipelineConfig,
        source: ChangeSource,
    ) -> Result<Vec<ChangeRecord>, ConfigUpdateError> {
        let at = SystemTime::now();
        let current = self.current();
        let before = flatten(&current);
        let after = flatten(&new);
        let paths: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
        let mut changes: Vec<ChangeRecord> = paths
            .into_iter()
            .filter(|p| before.get(*p) != after.get(*p))
            .map(|p| ChangeRecord {
                parameter: p.clone(),
                old: before.get(p).cloned(),
                new: after.get(p).cloned(),
                at,
                source: source.clone(),
                outcome: ChangeOutcome::Applied,
            })
            .collect();
        let verdict = match new.validate() {
            Err(errors) => Err(ConfigUpdateError::Invalid(errors)),
            Ok(()) => {
                let mut critical: Vec<String> = Vec::new();
                for c in &changes {
                    let name = match (c.old.is_some(), c.new.is_some()) {
                        // A stage appears or disappears: name the stage.
                        (false, _) | (_, false) => c
                            .parameter
                            .splitn(3, '.')
                            .take(2)
                            .collect::<Vec<_>>()
                            .join("."),
                        _ => c.parameter.clone(),
                    };
                    if (c.old.is_none() || c.new.is_none() || is_critical(&c.parameter))
                        && !critical.contains(&name)
                    {
                        critical.push(name);
                    }
                }
                if critical.is_empty() {
                    Ok(())
                } else {
                    Err(ConfigUpdateError::Critical(critical))
                }
            }
        };
        match verdict {
            Ok(()) => {
                if !changes.is_empty() {
                    self.inner.current.store(Arc::new(new));
                    self.inner.version.fetch_add(1, Ordering::AcqRel);
                    for c in &changes {
                        tracing::info!(target: "pipeline::config", parameter = %c.parameter, old = ?c.old, new = ?c.new, source = %source, "configuration changed");
                    }
                }
                self.record(source, at, changes.clone(), Ok(()));
                Ok(changes)
            }
            Err(error) => {
                let reason = error.to_string();
                for c in &mut changes {
                    c.outcome = ChangeOutcome::Rejected(reason.clone());
                }
                tracing::warn!(target: "pipeline::config", source = %source, %reason, "configuration change rejected");
                self.record(source, at, changes, Err(error.reasons()));
                Err(error)
            }
        }
    }

    fn record_failure(&self, source: ChangeSource, error: &ConfigUpdateError) {
        tracing::warn!(target: "pipeline::config", source = %source, reason = %error, "configuration change rejected");
        self.record(source, SystemTime::now(), Vec::new(), Err(error.reasons()));
    }

    fn record(
        &self,
        source: ChangeSource,
        at: SystemTime,
        changes: Vec<ChangeRecord>,
        result: Result<(), Vec<String>>,
    ) {
        {
            let mut history = self.inner.history.lock().unwrap_or_else(|p| p.into_inner());
            for c in &changes {
                history.push_front(c.clone());
            }
            history.truncate(self.inner.history_capacity);
        }
        let event = ConfigEvent {
            source,
            at,
            changes,
            result,
        };
        self.inner
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|tx| tx.send(event.clone()).is_ok());
        for callback in self
            .inner
            .callbacks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            callback(&event);
        }
    }

    /// The change history, newest first, at most the handle's history capacity.
    pub fn history(&self) -> Vec<ChangeRecord> {
        self.inner
            .history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// A channel that receives an event for every later attempt to change the
    /// configuration (applied or rejected, from the API or a file). Dropping the
    /// receiver unsubscribes.
    pub fn subscribe(&self) -> Receiver<ConfigEvent> {
        let (tx, rx) = unbounded();
        self.inner
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx);
        rx
    }

    /// Calls `callback` for every later attempt to change the configuration, on the
    /// thread that made it. It must not change the configuration itself.
    pub fn on_change(&self, callback: impl Fn(&ConfigEvent) + Send + Sync + 'static) {
        self.inner
            .callbacks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(callback));
    }
}

/// The parameter (a leaf, not a section) at a dotted path of a configuration tree, or
/// why the path names none.
pub(crate) fn node_at<'t>(tree: &'t mut Node, path: &str) -> Result<&'t mut Node, &'static str> {
    let mut node = tree;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let Node::Table(table) = node else {
            return Err("no such parameter");
        };
        let child = table.get_mut(part).ok_or("no such parameter")?;
        if parts.peek().is_none() && matches!(child, Node::Table(_)) {
            return Err("names a section, not a parameter");
        }
        node = child;
    }
    Ok(node)
}
