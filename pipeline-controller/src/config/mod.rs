//! Runtime configuration: one model for the controller, the policy and every stage,
//! read from TOML or YAML, validated all at once, changed while the pipeline runs, and
//! reloaded from its file.
//!
//! - [`PipelineConfig`] is the model (`controller`, `policy`, `stages.<name>`); every
//!   parameter, with its unit, default, range and whether it is critical, is listed in
//!   [`PARAMETERS`] and in `docs/configuration.md` (a test keeps the two equal).
//! - [`PipelineConfig::validate`] reports every broken rule at once as
//!   [`ConfigErrors`]; syntax errors, unknown fields and wrong types come from the parser
//!   with a line and column ([`ConfigLoadError::Syntax`]).
//! - [`ConfigHandle`] is the live configuration of a running pipeline
//!   ([`Pipeline::config`](crate::pipeline::Pipeline::config)): cheap snapshots, updates
//!   by dotted path or whole, a bounded change history and subscriptions. Critical
//!   parameters (the stage set, `droppable`, the decision log's size) are refused at
//!   runtime with [`ConfigUpdateError::Critical`].
//! - [`ConfigHandle::watch`] reloads the file when it changes.
//!
//! ```no_run
//! use pipeline_controller::config::{ConfigHandle, DEFAULT_DEBOUNCE, PipelineConfig};
//!
//! let handle = ConfigHandle::new(PipelineConfig::from_path("pipeline.toml")?)?;
//! let events = handle.subscribe();
//! let watcher = handle.watch("pipeline.toml", DEFAULT_DEBOUNCE)?;
//! for event in events.iter() {
//!     println!("{event}");
//! }
//! # drop(watcher);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod handle;
mod model;
mod params;
mod watch;

pub use handle::{
    ChangeOutcome, ChangeRecord, ChangeSource, ConfigEvent, ConfigHandle, ConfigUpdateError,
    DEFAULT_HISTORY_CAPACITY,
};
pub use model::{
    ConfigError, ConfigErrors, ConfigLoadError, ControllerConfig, Format, MAX_BUFFER_CAPACITY,
    MAX_WORKERS, Overflow, PipelineConfig, RangeConfig, StageConfig,
};
pub use params::{PARAMETERS, Parameter, flatten, generic_path, is_critical, parameters_markdown};
pub use watch::{ConfigWatcher, DEFAULT_DEBOUNCE, WatchError};
