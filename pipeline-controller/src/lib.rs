//! The self-tuning side of the pipeline: container limits detection (cgroup v1/v2, env
//! override, host fallback), memory and CPU sensors, the pure hysteresis policy, the
//! actuators over `pipeline-core`'s knobs, the control loop, and the [`Pipeline`]
//! builder that wires them. It re-exports `pipeline-core` as [`core`], so one
//! dependency serves.
//!
//! See `docs/architecture.md` for how the parts fit together and `docs/controller.md`
//! for every rule of the controller.
//!
//! # A self-tuning pipeline
//!
//! ```
//! use pipeline_controller::core::bus::SubscriptionConfig;
//! use pipeline_controller::{Pipeline, Stage};
//! use std::time::Duration;
//!
//! let pipeline = Pipeline::<Vec<u8>>::builder()
//!     .stage(
//!         Stage::new(SubscriptionConfig::new("ingest").capacity(64).min_capacity(8).max_capacity(8192))
//!             .workers(1)
//!             .min_workers(1)
//!             .max_workers(8) // the controller moves it within [1, 8]
//!             .handler(|event: Vec<u8>| {
//!                 std::hint::black_box(event.len()); // the work
//!                 Ok(())
//!             }),
//!     )
//!     .build()?; // limits detected from the container (cgroup v1/v2) or the host
//! pipeline.start()?;
//! let publisher = pipeline.publisher();
//! for _ in 0..1_000 {
//!     publisher.publish(vec![0u8; 512])?; // back pressure and backoff happen here
//! }
//! for decision in pipeline.decisions() {
//!     println!("{decision}"); // what the controller did, and why
//! }
//! assert_eq!(pipeline.shutdown(Duration::from_secs(10)).left(), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Limits and sensors
//!
//! [`limits`] says how much memory and CPU this process may use and where each number
//! came from (a cgroup v2 or v1 file, an override variable, the cpuset or affinity mask,
//! or the host). [`sensor`] reads how much is in use: the cgroup's working set, memory
//! pressure (PSI), growth rate and time left until the limit, and CPU used as a share of
//! the CPU limit. Every read goes through a root path, so the whole layer runs against
//! fixture trees in tests; `docs/operations.md` lists what is read in containers.
//!
//! ```
//! use pipeline_controller::limits::LimitsReader;
//! use pipeline_controller::sensor::{CpuSensor, MemorySensor};
//! use std::time::Instant;
//!
//! let reader = LimitsReader::new()?;
//! println!("limits: {}", reader.read()?);
//!
//! let mut memory = MemorySensor::new(reader.clone());
//! let reading = memory.read(Instant::now())?;
//! println!("working set {} bytes ({:?})", reading.working_set_bytes, reading.usage_source);
//!
//! let mut cpu = CpuSensor::new(reader);
//! let first = cpu.read(Instant::now())?;
//! assert_eq!(first.cores_used, None); // a rate needs two readings
//! # Ok::<(), pipeline_controller::limits::LimitsError>(())
//! ```
//!
//! # Features
//!
//! | feature | what it adds | dependencies |
//! | --- | --- | --- |
//! | `file-config` (default) | configuration files: [`PipelineConfig::from_path`](config::PipelineConfig::from_path) and `from_env` (TOML, YAML, `${VAR}` substitution), hot reload with [`ConfigHandle::watch`](config::ConfigHandle::watch) | `toml`, `serde-saphyr`, `notify` |
//! | `tokio` | stages whose workers are tokio tasks (`Stage::async_handler`), `Pipeline::shutdown_async`; turns on `pipeline-core/tokio` | `tokio` |
//! | `http` | the control plane: an axum `Router` over a running pipeline (module `control_plane`) | `axum`, `tokio`, `serde_json`, `toml` |
//!
//! Without `file-config` the configuration is built in code; [`config::ConfigHandle`]
//! (live updates, history, subscriptions) and validation stay.

#![warn(missing_docs)]
// docs.rs (and `--cfg docsrs` builds) mark what needs a feature.
#![cfg_attr(docsrs, feature(doc_cfg))]
// Without `file-config` the docs still mention the file loaders they cannot link to.
#![cfg_attr(not(feature = "file-config"), allow(rustdoc::broken_intra_doc_links))]

pub use pipeline::{Pipeline, PipelineBuilder, PipelineError, Stage};
pub use pipeline_core as core;

pub mod actuator;
pub mod config;
pub mod control;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod control_plane;
pub mod limits;
pub mod pipeline;
pub mod policy;
pub mod sensor;
pub(crate) mod sync;

/// The README's examples, compiled and run as doc tests so the front page stays true
/// (with the `tokio` feature: its first example is the async one).
#[cfg(all(doctest, feature = "tokio"))]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
