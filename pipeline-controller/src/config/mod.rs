//! Runtime configuration: one model for the controller, the policy and every stage,
//! built in code or read from TOML or YAML, validated all at once, changed while the
//! pipeline runs, and reloaded from its file.
//!
//! - [`PipelineConfig`] is the model (`controller`, `policy`, `stages.<name>`); every
//!   parameter, with its unit, default, range and whether it is critical, is listed in
//!   [`PARAMETERS`] and in `docs/configuration.md` (a test keeps the two equal).
//! - [`PipelineConfig::validate`] reports every broken rule at once as
//!   [`ConfigErrors`].
//! - [`ConfigHandle`] is the live configuration of a running pipeline
//!   ([`Pipeline::config`](crate::pipeline::Pipeline::config)): cheap snapshots, updates
//!   by dotted path or whole, a bounded change history and subscriptions. Critical
//!   parameters (the stage set, `droppable`, the decision log's size) are refused at
//!   runtime with [`ConfigUpdateError::Critical`].
//!
//! The rest reads files and needs the `file-config` feature (on by default; without it
//! the crate builds no TOML or YAML parser and no file watcher):
//!
//! - [`PipelineConfig::from_path`] and [`from_toml_str`](PipelineConfig::from_toml_str)/
//!   [`from_yaml_str`](PipelineConfig::from_yaml_str) read TOML or YAML; syntax errors,
//!   unknown fields and wrong types come from the parser with a line and column
//!   ([`ConfigLoadError::Syntax`]).
//! - Files may use `${VAR}` and `${VAR:-default}`, replaced from the environment
//!   before parsing ([`substitute`](fn@substitute) gives the rules; an unset variable without a default
//!   is a [`ConfigLoadError::Substitution`] naming it and its line).
//! - [`PipelineConfig::from_env`] reads the file that `PIPELINE_CONFIG`
//!   ([`CONFIG_PATH_ENV`]) names.
//! - [`ConfigHandle::watch`] (or [`watch_env`](ConfigHandle::watch_env)) reloads the
//!   file when its content changes: the directory is watched and the bytes compared, so
//!   a Kubernetes ConfigMap update (a swapped `..data` symlink) is seen and a touch is
//!   not a reload.
//!
//! ```no_run
//! # #[cfg(feature = "file-config")] {
//! use pipeline_controller::config::{ConfigHandle, DEFAULT_DEBOUNCE, PipelineConfig};
//!
//! let handle = ConfigHandle::new(PipelineConfig::from_path("pipeline.toml")?)?;
//! let events = handle.subscribe();
//! let watcher = handle.watch("pipeline.toml", DEFAULT_DEBOUNCE)?;
//! for event in events.iter() {
//!     println!("{event}");
//! }
//! # drop(watcher);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "file-config")]
mod file;
mod handle;
mod model;
mod params;
#[cfg(feature = "file-config")]
mod substitute;
mod tree;
#[cfg(feature = "file-config")]
mod watch;

#[cfg(feature = "file-config")]
#[cfg_attr(docsrs, doc(cfg(feature = "file-config")))]
pub use file::{CONFIG_PATH_ENV, ConfigLoadError, Format};
#[cfg(feature = "http")]
pub(crate) use handle::node_at;
pub use handle::{
    ChangeOutcome, ChangeRecord, ChangeSource, ConfigEvent, ConfigHandle, ConfigUpdateError,
    DEFAULT_HISTORY_CAPACITY,
};
pub use model::{
    ConfigError, ConfigErrors, ControllerConfig, MAX_BUFFER_CAPACITY, MAX_WORKERS, PipelineConfig,
    RangeConfig, StageConfig,
};
pub use params::{PARAMETERS, Parameter, is_critical};
#[cfg(feature = "file-config")]
#[cfg_attr(docsrs, doc(cfg(feature = "file-config")))]
pub use substitute::{SubstitutionError, SubstitutionErrors, substitute, substitute_env};
#[cfg(feature = "http")]
pub(crate) use tree::{from_tree, to_tree};
#[cfg(feature = "file-config")]
#[cfg_attr(docsrs, doc(cfg(feature = "file-config")))]
pub use watch::{ConfigWatcher, DEFAULT_DEBOUNCE, WatchError};
