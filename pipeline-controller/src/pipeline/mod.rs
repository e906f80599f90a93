//! The `Pipeline` builder: stages, a bus, worker pools and the controller, wired.
//!
//! A stage is a subscription on the bus plus a worker pool running a handler on it.
//! The controller watches every stage and the container's memory and CPU, and turns
//! the knobs: buffer capacities (within each subscription's range), worker counts
//! (within each stage's range and the CPU limit), the publish rate, and the overflow
//! mode of droppable stages.
//!
//! ```
//! use pipeline_controller::pipeline::{Pipeline, Stage};
//! use pipeline_core::bus::SubscriptionConfig;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! let done = Arc::new(AtomicU64::new(0));
//! let counter = done.clone();
//! let pipeline = Pipeline::<u64>::builder()
//!     .stage(
//!         Stage::new(SubscriptionConfig::new("sum").capacity(64).min_capacity(8).max_capacity(4096))
//!             .workers(1)
//!             .max_workers(4)
//!             .handler(move |n| {
//!                 counter.fetch_add(n, Ordering::Relaxed);
//!                 Ok(())
//!             }),
//!     )
//!     .interval(Duration::from_millis(200))
//!     .build()?;
//! pipeline.start()?;
//! let publisher = pipeline.publisher();
//! for n in 1..=100 {
//!     publisher.publish(n)?;
//! }
//! let report = pipeline.shutdown(Duration::from_secs(10));
//! assert_eq!(report.left(), 0);
//! assert_eq!(done.load(Ordering::Relaxed), 5050);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Async stages
//!
//! With the `tokio` feature, [`Stage`] takes an async handler (`Stage::async_handler`):
//! that stage's workers are tokio tasks on the runtime current when
//! [`Pipeline::start`] runs (or the one given to `PipelineBuilder::runtime`), and the
//! controller grows and shrinks their number exactly as it does threads: the worker
//! count is a concurrency limit, not a number of threads. `Pipeline::shutdown_async`
//! shuts the pipeline down from async code without blocking a runtime thread; publish
//! with `Publisher::publish_async` there, never with the blocking `publish`.
//!
//! ```
//! # #[cfg(feature = "tokio")] {
//! use pipeline_controller::pipeline::{Pipeline, Stage};
//! use pipeline_core::bus::SubscriptionConfig;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! # let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
//! # runtime.block_on(async {
//! // Inside `#[tokio::main] async fn main()`:
//! let stored = Arc::new(AtomicU64::new(0));
//! let counter = stored.clone();
//! let pipeline = Pipeline::<u64>::builder()
//!     .stage(
//!         Stage::new(SubscriptionConfig::new("store").capacity(64).max_capacity(4096))
//!             .workers(4)
//!             .min_workers(1)
//!             .max_workers(256) // up to 256 writes in flight, on the runtime's threads
//!             .async_handler(move |n| {
//!                 let counter = counter.clone();
//!                 async move {
//!                     tokio::time::sleep(Duration::from_millis(1)).await; // the I/O
//!                     counter.fetch_add(n, Ordering::Relaxed);
//!                     Ok(())
//!                 }
//!             }),
//!     )
//!     .build()?;
//! pipeline.start()?; // the workers are tasks on this runtime
//! let publisher = pipeline.publisher();
//! for n in 1..=100 {
//!     publisher.publish_async(n).await?; // waits as a task under back pressure
//! }
//! let report = pipeline.shutdown_async(Duration::from_secs(10)).await;
//! assert_eq!(report.left(), 0);
//! assert_eq!(stored.load(Ordering::Relaxed), 5050);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! # }
//! ```
//!
//! # Events that are not `Clone`
//!
//! Fan-out clones an event for every extra stage that takes it, so
//! [`PipelineBuilder::stage`] needs `E: Clone`. A pipeline of one stage never copies
//! an event: build it with [`PipelineBuilder::single_stage`], for any `Send` event
//! type (its bus is built with
//! [`BusBuilder::build_single`](pipeline_core::bus::BusBuilder::build_single)).
//! Only a dead-letter hook ([`Stage::dead_letter`]) needs `Clone` there, as the pool
//! keeps a copy of each event for it.
//!
//! ```
//! use pipeline_controller::pipeline::{Pipeline, Stage};
//! use pipeline_core::bus::SubscriptionConfig;
//! use std::time::Duration;
//!
//! /// Owns a buffer that must be moved, never copied.
//! struct Upload(Vec<u8>);
//!
//! let pipeline = Pipeline::<Upload>::builder()
//!     .single_stage(
//!         Stage::new(SubscriptionConfig::new("uploads").capacity(16))
//!             .max_workers(4)
//!             .handler(|upload: Upload| {
//!                 assert_eq!(upload.0.len(), 3);
//!                 Ok(())
//!             }),
//!     )
//!     .build()?;
//! pipeline.start()?;
//! pipeline.publisher().publish(Upload(vec![1, 2, 3]))?;
//! assert_eq!(pipeline.shutdown(Duration::from_secs(10)).left(), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::actuator::{BusActuator, PoolActuator};
use crate::config::{ConfigErrors, ConfigHandle, PipelineConfig};
use crate::control::{
    ControlLoop, ControllerHandle, ControllerState, DecisionLog, DecisionRecord, MemoryProbe,
};
use crate::limits::{Limits, LimitsError, LimitsReader};
use crate::policy::{HysteresisPolicy, MemoryObservation, PolicyConfig, PolicyConfigError};
use crate::sensor::MemorySensor;
use pipeline_core::bus::{Bus, BusBuilder, BusError, Publisher, Subscription, SubscriptionConfig};
use pipeline_core::clock::{Clock, SystemClock};
use pipeline_core::pool::{
    DeadLetter, DrainReport, HandlerError, PoolError, WorkerPool, WorkerPoolBuilder,
};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One stage: a subscription and the pool of workers that handles its events.
///
/// Its worker settings are the pool builder's, with the same names and rules
/// ([`WorkerPoolBuilder`]): [`workers`](Self::workers) to start with (default 1), and
/// the range the controller moves it in, [`min_workers`](Self::min_workers) and
/// [`max_workers`](Self::max_workers), each following `workers` when not set (a fixed
/// size). [`PipelineBuilder::build`] checks `1 <= min_workers <= workers <= max_workers`
/// and names the setter at fault ([`PipelineError::InvalidStage`]).
///
/// ```
/// use pipeline_controller::pipeline::{Pipeline, PipelineError, Stage};
/// use pipeline_core::bus::SubscriptionConfig;
///
/// let stage = Stage::new(SubscriptionConfig::<u32>::new("parse"))
///     .workers(2)
///     .min_workers(1)
///     .max_workers(8) // the controller moves it within [1, 8] and the CPU limit
///     .handler(|_| Ok(()));
/// # let _ = stage;
///
/// let bad = Pipeline::<u32>::builder()
///     .stage(Stage::new(SubscriptionConfig::new("parse")).workers(9).max_workers(8).handler(|_| Ok(())))
///     .controller(false)
///     .build();
/// assert_eq!(
///     bad.err().unwrap().to_string(),
///     "stages.parse.workers: 9 is above max_workers 8: need workers <= max_workers"
/// );
/// ```
pub struct Stage<E> {
    subscription: SubscriptionConfig<E>,
    /// The worker settings, the handler and the dead-letter hook, spawned on the
    /// subscription when the pipeline starts.
    pool: WorkerPoolBuilder<E>,
}

impl<E: Send + 'static> Stage<E> {
    /// A stage on a subscription configured as `subscription` (name, filter, capacity
    /// range, overflow, droppable, event size), with one worker until set otherwise.
    pub fn new(subscription: SubscriptionConfig<E>) -> Self {
        let pool = WorkerPool::builder(subscription.name());
        Stage { subscription, pool }
    }

    /// Workers to start with (default 1); see [`WorkerPoolBuilder::workers`].
    #[must_use]
    pub fn workers(mut self, workers: usize) -> Self {
        self.pool = self.pool.workers(workers);
        self
    }

    /// The fewest workers the controller may leave (default: `workers`); see
    /// [`WorkerPoolBuilder::min_workers`].
    #[must_use]
    pub fn min_workers(mut self, min: usize) -> Self {
        self.pool = self.pool.min_workers(min);
        self
    }

    /// The most workers the controller may start (default: `workers`), within the CPU
    /// limit; see [`WorkerPoolBuilder::max_workers`].
    #[must_use]
    pub fn max_workers(mut self, max: usize) -> Self {
        self.pool = self.pool.max_workers(max);
        self
    }

    /// The function each worker calls per event; each worker is a thread. Replaces an
    /// `async_handler` set before.
    #[must_use]
    pub fn handler(
        mut self,
        handler: impl Fn(E) -> Result<(), HandlerError> + Send + Sync + 'static,
    ) -> Self {
        self.pool = self.pool.handler(handler);
        self
    }

    /// An async handler (feature `tokio`): each worker is a tokio task awaiting
    /// `handler(event)`, on the runtime current when [`Pipeline::start`] runs or the
    /// one given to [`PipelineBuilder::runtime`]. The controller grows and shrinks the
    /// tasks as it does threads; counting, latency, utilisation (busy while the
    /// handler's future runs), panics (caught, counted, dead-lettered) are as for
    /// [`handler`](Self::handler), which it replaces. See
    /// [`WorkerPoolBuilder::async_handler`].
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    #[must_use]
    pub fn async_handler<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(E) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.pool = self.pool.async_handler(handler);
        self
    }
}

impl<E: Clone + Send + 'static> Stage<E> {
    /// Where failed and panicked events go. Needs `E: Clone`: the pool keeps a copy of
    /// each event for the hook (see [`WorkerPoolBuilder::dead_letter`]).
    #[must_use]
    pub fn dead_letter(mut self, hook: impl Fn(DeadLetter<E>) + Send + Sync + 'static) -> Self {
        self.pool = self.pool.dead_letter(hook);
        self
    }
}

/// Why a pipeline could not be built, started or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// A pipeline needs at least one stage.
    #[error("stages: a pipeline needs at least one stage")]
    NoStages,
    /// Two stages share a name.
    #[error("stages.{0}: stage names must be unique")]
    DuplicateStage(String),
    /// A stage has no handler.
    #[error("stages.{0}.handler: every stage needs a handler")]
    MissingHandler(String),
    /// A stage's worker settings break a rule: `field` names the [`Stage`] setter
    /// (`workers`, `min_workers` or `max_workers`), as in
    /// `stages.parse.workers: 9 is above max_workers 8: need workers <= max_workers`.
    #[error("stages.{stage}.{field}: {rule}")]
    InvalidStage {
        /// The stage.
        stage: String,
        /// The setting, named as its setter.
        field: &'static str,
        /// The rule it breaks.
        rule: String,
    },
    /// The controller's tick interval is zero.
    #[error("interval: must be greater than zero")]
    ZeroInterval,
    /// The policy configuration breaks a rule.
    #[error("controller configuration is invalid")]
    Policy(#[source] PolicyConfigError),
    /// The container limits could not be read.
    #[error("cannot read the container limits")]
    Limits(#[source] LimitsError),
    /// The bus refused a subscription.
    #[error("stages.{stage}: the bus refused the subscription")]
    Bus {
        /// The stage.
        stage: String,
        /// What the bus said.
        #[source]
        source: BusError,
    },
    /// A worker pool could not start.
    #[error("stages.{stage}: the worker pool could not start")]
    Pool {
        /// The stage.
        stage: String,
        /// What the pool said.
        #[source]
        source: PoolError,
    },
    /// The configuration given to [`PipelineBuilder::config`] is invalid, or its
    /// stages are not the builder's stages.
    #[error(transparent)]
    Config(ConfigErrors),
    /// `start` was called twice.
    #[error("the pipeline is already started")]
    AlreadyStarted,
    /// The control plane's address could not be bound (feature `http`; see
    /// [`PipelineBuilder::control_plane`]).
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    #[error("control_plane.addr: cannot listen on {addr}")]
    ControlPlane {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// [`PipelineBuilder::single_stage`] was used with another stage.
    #[error(
        "stages: a pipeline built with single_stage has that one stage only \
         (add several with stage(), which needs a Clone event type)"
    )]
    SingleStageWithOthers,
}

/// Builds a [`Pipeline`]; see the [module docs](self).
pub struct PipelineBuilder<E> {
    stages: Vec<Stage<E>>,
    /// How the bus is made: `None` until a stage is added; fan-out (a `Clone` event
    /// type, from `stage`) or single (from `single_stage`).
    bus: Option<BusKind<E>>,
    #[cfg(feature = "tokio")]
    runtime: Option<tokio::runtime::Handle>,
    policy: PolicyConfig,
    interval: Duration,
    limits: Option<Limits>,
    memory: Option<Box<dyn MemoryProbe>>,
    clock: Arc<dyn Clock>,
    log_capacity: usize,
    controller: bool,
    config: Option<PipelineConfig>,
    name: Arc<str>,
    #[cfg(feature = "http")]
    control_plane: Option<crate::control_plane::ControlPlaneConfig>,
}

/// How a pipeline's bus is built.
enum BusKind<E> {
    /// `BusBuilder::build`, recorded by [`PipelineBuilder::stage`] where `E: Clone` is
    /// known.
    FanOut(fn(BusBuilder<E>) -> Result<Bus<E>, BusError>),
    /// `BusBuilder::build_single`, for [`PipelineBuilder::single_stage`].
    Single,
}

fn fan_out_bus<E: Clone + Send + 'static>(builder: BusBuilder<E>) -> Result<Bus<E>, BusError> {
    builder.build()
}

impl<E: Clone + Send + 'static> PipelineBuilder<E> {
    /// Adds a stage. Every stage whose subscription matches an event gets it, so the
    /// bus clones events (hence `E: Clone`); for a single stage of any event type see
    /// [`single_stage`](Self::single_stage).
    #[must_use]
    pub fn stage(mut self, stage: Stage<E>) -> Self {
        self.stages.push(stage);
        self.bus.get_or_insert(BusKind::FanOut(fan_out_bus::<E>));
        self
    }
}

impl<E: Send + 'static> PipelineBuilder<E> {
    /// The pipeline's one stage, for any `Send` event type, `Clone` or not: each event
    /// is moved to the stage, never copied (the bus is built with
    /// [`BusBuilder::build_single`](pipeline_core::bus::BusBuilder::build_single)).
    /// Everything else is as with [`stage`](Self::stage); see the
    /// [module docs](self#events-that-are-not-clone) for an example.
    ///
    /// [`build`](Self::build) refuses it together with any other stage
    /// ([`PipelineError::SingleStageWithOthers`]).
    #[must_use]
    pub fn single_stage(mut self, stage: Stage<E>) -> Self {
        self.stages.push(stage);
        self.bus = Some(BusKind::Single);
        self
    }

    /// The tokio runtime the tasks of async stages run on (feature `tokio`; default:
    /// the runtime current when [`Pipeline::start`] runs). Stages with a sync handler
    /// ignore it.
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    #[must_use]
    pub fn runtime(mut self, runtime: tokio::runtime::Handle) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Takes the policy, the interval, the decision log's size and every stage's
    /// buffer range, worker range, overflow and droppable flag from `config`, and keeps
    /// it live: [`Pipeline::config`] then returns its handle. `config.stages` must name
    /// exactly the builder's stages (their handlers stay in code). Each subscription
    /// and pool is built with its configured range; when the configuration changes,
    /// the controller sets the new ranges on them at its next tick (and moves a knob
    /// outside its new range into it), so the bus snapshot and the pool stats report
    /// the range in force. Overrides [`policy`](Self::policy),
    /// [`interval`](Self::interval) and
    /// [`decision_log_capacity`](Self::decision_log_capacity).
    #[must_use]
    pub fn config(mut self, config: PipelineConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// The controller's policy configuration (default: [`PolicyConfig::default`]).
    #[must_use]
    pub fn policy(mut self, config: PolicyConfig) -> Self {
        self.policy = config;
        self
    }

    /// How often the controller ticks (default 1 s); it also wakes early on urgent
    /// bus signals.
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Use these limits instead of detecting them ([`Limits::detect`] by default).
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Read memory from this probe instead of the cgroup/process sensor (tests, or a
    /// service that accounts memory its own way).
    #[must_use]
    pub fn memory_probe(mut self, probe: impl MemoryProbe + 'static) -> Self {
        self.memory = Some(Box::new(probe));
        self
    }

    /// The clock the controller decides by (default: the system clock).
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How many decision records to keep (default 1024).
    #[must_use]
    pub fn decision_log_capacity(mut self, capacity: usize) -> Self {
        self.log_capacity = capacity;
        self
    }

    /// The pipeline's name (default `"default"`): the `pipeline` label on every series
    /// of its bus, subscriptions, pools and controller (it names the bus, see
    /// [`BusBuilder::name`]), so two pipelines in one process keep their metrics
    /// apart.
    ///
    /// ```
    /// use pipeline_controller::pipeline::{Pipeline, Stage};
    /// use pipeline_core::bus::SubscriptionConfig;
    ///
    /// let pipeline = Pipeline::<u32>::builder()
    ///     .name("billing")
    ///     .stage(Stage::new(SubscriptionConfig::new("invoices")).handler(|_| Ok(())))
    ///     .controller(false)
    ///     .build()?;
    /// assert_eq!(pipeline.bus().name(), "billing");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Serves the control plane ([`crate::control_plane`]: status, decisions, events,
    /// configuration, the controller switch) from [`Pipeline::start`] until shutdown,
    /// on its own thread and runtime, at `config`'s address (by default
    /// `127.0.0.1:0`, loopback only; [`Pipeline::control_plane_addr`] tells the port).
    /// Feature `http`.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    #[must_use]
    pub fn control_plane(mut self, config: crate::control_plane::ControlPlaneConfig) -> Self {
        self.control_plane = Some(config);
        self
    }

    /// Whether to run the controller at all (default true). Off, buffers and pools
    /// keep their initial sizes: the baseline the stress harness compares against.
    #[must_use]
    pub fn controller(mut self, enabled: bool) -> Self {
        self.controller = enabled;
        self
    }

    /// Validates everything and wires the bus, subscriptions and the controller; the
    /// workers and the control loop start with [`Pipeline::start`].
    ///
    /// # Errors
    ///
    /// A [`PipelineError`] naming the field and the rule it breaks;
    /// [`PipelineError::SingleStageWithOthers`] for a
    /// [`single_stage`](Self::single_stage) with another stage.
    pub fn build(mut self) -> Result<Pipeline<E>, PipelineError> {
        let live = match self.config.take() {
            Some(config) => Some(self.use_config(config)?),
            None => None,
        };
        let bus_kind = match self.bus.take() {
            None => return Err(PipelineError::NoStages),
            Some(BusKind::Single) if self.stages.len() > 1 => {
                return Err(PipelineError::SingleStageWithOthers);
            }
            Some(kind) => kind,
        };
        if self.interval.is_zero() {
            return Err(PipelineError::ZeroInterval);
        }
        let mut names = HashSet::new();
        for stage in &self.stages {
            let name = stage.subscription.name().to_owned();
            match stage.pool.validate() {
                Ok(()) => {}
                Err(PoolError::InvalidConfig {
                    field: "handler", ..
                }) => return Err(PipelineError::MissingHandler(name)),
                Err(PoolError::InvalidConfig { field, rule }) => {
                    return Err(PipelineError::InvalidStage {
                        stage: name,
                        field,
                        rule,
                    });
                }
                Err(source) => {
                    return Err(PipelineError::Pool {
                        stage: name,
                        source,
                    });
                }
            }
            if !names.insert(name.clone()) {
                return Err(PipelineError::DuplicateStage(name));
            }
        }
        let policy = HysteresisPolicy::new(self.policy).map_err(PipelineError::Policy)?;
        let limits = match self.limits {
            Some(limits) => limits,
            None => Limits::detect().map_err(PipelineError::Limits)?,
        };
        let memory: Box<dyn MemoryProbe> = match self.memory {
            Some(probe) => probe,
            None => {
                let mut sensor =
                    MemorySensor::new(LimitsReader::new().map_err(PipelineError::Limits)?);
                let limit = limits.memory.bytes;
                // Usage from the sensor, limit from what the pipeline was given.
                Box::new(move |now: Instant| MemoryObservation {
                    limit_bytes: limit,
                    ..MemoryProbe::read(&mut sensor, now)
                })
            }
        };
        let builder = Bus::builder().name(self.name.clone());
        let built = match bus_kind {
            BusKind::FanOut(make) => make(builder),
            BusKind::Single => builder.build_single(),
        };
        let bus = built.map_err(|source| PipelineError::Bus {
            stage: self.stages[0].subscription.name().to_owned(),
            source,
        })?;
        let mut pending = Vec::new();
        for stage in self.stages {
            let name = stage.subscription.name().to_owned();
            let subscription =
                bus.subscribe(stage.subscription)
                    .map_err(|source| PipelineError::Bus {
                        stage: name.clone(),
                        source,
                    })?;
            pending.push(PendingStage {
                name,
                subscription,
                pool: stage.pool,
            });
        }
        Ok(Pipeline {
            bus,
            lifecycle: Mutex::new(Lifecycle::Built(Box::new(Pending {
                stages: pending,
                policy,
                memory,
            }))),
            log: Arc::new(DecisionLog::new(self.log_capacity)),
            state: ControllerState::new(),
            pools_view: Arc::new(Mutex::new(Vec::new())),
            interval: self.interval,
            limits,
            clock: self.clock,
            controller: self.controller,
            live,
            #[cfg(feature = "tokio")]
            runtime: self.runtime,
            #[cfg(feature = "http")]
            control_plane: self.control_plane,
        })
    }

    /// Copies `config` into the builder and its stages, and makes the live handle.
    fn use_config(&mut self, config: PipelineConfig) -> Result<ConfigHandle, PipelineError> {
        config.validate().map_err(PipelineError::Config)?;
        let mut problems = Vec::new();
        let names: HashSet<String> = self
            .stages
            .iter()
            .map(|s| s.subscription.name().to_owned())
            .collect();
        for name in &names {
            if !config.stages.contains_key(name) {
                problems.push(crate::config::ConfigError {
                    path: format!("stages.{name}"),
                    value: "(missing)".into(),
                    rule: "every stage of the pipeline needs a configuration".into(),
                });
            }
        }
        for name in config.stages.keys() {
            if !names.contains(name) {
                problems.push(crate::config::ConfigError {
                    path: format!("stages.{name}"),
                    value: "(no such stage)".into(),
                    rule: "must name a stage added to the builder".into(),
                });
            }
        }
        if !problems.is_empty() {
            return Err(PipelineError::Config(ConfigErrors(problems)));
        }
        self.policy = config.policy.clone();
        self.interval = config.controller.interval;
        self.log_capacity = config.controller.decision_log_capacity;
        // The configured ranges themselves: the control loop sets each new range on the
        // bus and the pool when the configuration changes.
        self.stages = std::mem::take(&mut self.stages)
            .into_iter()
            .map(|Stage { subscription, pool }| {
                let c = &config.stages[subscription.name()];
                Stage {
                    subscription: subscription
                        .capacity(c.buffer.initial)
                        .min_capacity(c.buffer.min)
                        .max_capacity(c.buffer.max)
                        .droppable(c.droppable)
                        .overflow(c.overflow),
                    pool: pool
                        .workers(c.workers.initial)
                        .min_workers(c.workers.min)
                        .max_workers(c.workers.max),
                }
            })
            .collect();
        ConfigHandle::new(config).map_err(PipelineError::Config)
    }
}

struct PendingStage<E> {
    name: String,
    subscription: Subscription<E>,
    pool: WorkerPoolBuilder<E>,
}

struct Pending<E> {
    stages: Vec<PendingStage<E>>,
    policy: HysteresisPolicy,
    memory: Box<dyn MemoryProbe>,
}

/// Where a pipeline is in its life. One value under one lock, so "started" and "not
/// yet started" can never both hold, nor neither.
enum Lifecycle<E> {
    /// Built: the subscriptions buffer what is published; the pools and the control
    /// loop wait for [`Pipeline::start`].
    Built(Box<Pending<E>>),
    /// Started: the pools, the control loop and the control plane run.
    Running(Running<E>),
    /// Shut down, or a start that failed part way (it stopped what it had started).
    Stopped,
}

struct Running<E> {
    pools: Vec<Arc<WorkerPool<E>>>,
    controller: Option<ControllerHandle>,
    #[cfg(feature = "http")]
    server: Option<crate::control_plane::ControlPlaneServer>,
}

/// A built pipeline: publish into it, read its decisions, shut it down.
pub struct Pipeline<E> {
    bus: Bus<E>,
    lifecycle: Mutex<Lifecycle<E>>,
    log: Arc<DecisionLog>,
    /// The controller's switch and latest readings, shared with the loop.
    state: ControllerState,
    /// The running pools, for [`PipelineHandle`]s (empty until started).
    pools_view: Arc<Mutex<Vec<Arc<dyn PoolActuator>>>>,
    interval: Duration,
    limits: Limits,
    clock: Arc<dyn Clock>,
    controller: bool,
    live: Option<ConfigHandle>,
    #[cfg(feature = "tokio")]
    runtime: Option<tokio::runtime::Handle>,
    #[cfg(feature = "http")]
    control_plane: Option<crate::control_plane::ControlPlaneConfig>,
}

impl<E: Send + 'static> Pipeline<E> {
    /// The live configuration, when the pipeline was built with
    /// [`PipelineBuilder::config`]: read it, change it, watch its file. The controller
    /// applies accepted changes at its next tick.
    pub fn config(&self) -> Option<ConfigHandle> {
        self.live.clone()
    }

    /// A builder with no stages, the default policy, a 1 s interval and detected limits.
    pub fn builder() -> PipelineBuilder<E> {
        PipelineBuilder {
            stages: Vec::new(),
            bus: None,
            #[cfg(feature = "tokio")]
            runtime: None,
            policy: PolicyConfig::default(),
            interval: Duration::from_secs(1),
            limits: None,
            memory: None,
            clock: Arc::new(SystemClock),
            log_capacity: 1024,
            controller: true,
            config: None,
            name: Arc::from("default"),
            #[cfg(feature = "http")]
            control_plane: None,
        }
    }

    /// Starts every stage's workers and the control loop. The workers of an async stage
    /// are tasks on the runtime given to the builder, or else on the one current here.
    ///
    /// # Errors
    ///
    /// [`PipelineError::AlreadyStarted`] on a second call (or after a start that
    /// failed); [`PipelineError::Pool`] if a thread cannot start, or an async stage finds
    /// no runtime (the pool's error names `runtime`). The worker settings were checked
    /// by [`PipelineBuilder::build`].
    pub fn start(&self) -> Result<(), PipelineError> {
        // Held for the whole start: a second `start` waits, then finds it running.
        let mut lifecycle = self.lifecycle();
        // Stopped until it has all started: a start that fails part way has dropped
        // (stopped) what it started.
        let Pending {
            stages,
            policy,
            memory,
        } = match std::mem::replace(&mut *lifecycle, Lifecycle::Stopped) {
            Lifecycle::Built(pending) => *pending,
            other => {
                *lifecycle = other;
                return Err(PipelineError::AlreadyStarted);
            }
        };
        let mut pools = Vec::new();
        for stage in stages {
            let builder = stage.pool;
            #[cfg(feature = "tokio")]
            let builder = match &self.runtime {
                Some(runtime) => builder.runtime(runtime.clone()),
                None => builder,
            };
            let pool = builder
                .spawn(stage.subscription)
                .map_err(|source| PipelineError::Pool {
                    stage: stage.name.clone(),
                    source,
                })?;
            pools.push(Arc::new(pool));
        }
        let actuators: Vec<Arc<dyn PoolActuator>> = pools
            .iter()
            .map(|p| p.clone() as Arc<dyn PoolActuator>)
            .collect();
        *self.pools_view.lock().unwrap_or_else(|p| p.into_inner()) = actuators.clone();
        let controller = self.controller.then(|| {
            let bus: Arc<dyn BusActuator> = Arc::new(self.bus.clone());
            let mut control = ControlLoop::new(
                policy,
                bus,
                actuators,
                memory,
                self.limits.cpu.cores,
                self.clock.clone(),
                self.log.clone(),
            )
            .with_state(self.state.clone());
            if let Some(handle) = &self.live {
                control = control.with_config(handle.clone());
            }
            control.spawn(self.interval, Some(self.bus.signals()))
        });
        #[cfg(feature = "http")]
        let server = match &self.control_plane {
            None => None,
            Some(config) => {
                match crate::control_plane::ControlPlaneServer::spawn(self.handle(), config.clone())
                {
                    Ok(server) => Some(server),
                    Err(source) => {
                        // Undo the start: nothing half-running is left behind.
                        drop(controller.map(ControllerHandle::stop));
                        self.bus.close();
                        for pool in pools {
                            let _ = pool.drain(Duration::from_secs(1));
                        }
                        return Err(PipelineError::ControlPlane {
                            addr: config.bind_addr(),
                            source,
                        });
                    }
                }
            }
        };
        *lifecycle = Lifecycle::Running(Running {
            pools,
            controller,
            #[cfg(feature = "http")]
            server,
        });
        Ok(())
    }

    fn lifecycle(&self) -> std::sync::MutexGuard<'_, Lifecycle<E>> {
        self.lifecycle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A cloneable, type-erased handle to this pipeline's readings and controls:
    /// [status](PipelineHandle::status), decisions, the live configuration and the
    /// controller's switch. The control plane is built on one; it outlives nothing
    /// (after shutdown it reads a closed bus and stopped pools).
    pub fn handle(&self) -> PipelineHandle {
        PipelineHandle {
            bus: Arc::new(self.bus.clone()),
            pools: self.pools_view.clone(),
            state: self.state.clone(),
            log: self.log.clone(),
            config: self.live.clone(),
            limit_bytes: self.limits.memory.bytes,
            interval: self.interval,
            controller: self.controller,
        }
    }

    /// What the pipeline looks like now; see [`PipelineStatus`].
    pub fn status(&self) -> PipelineStatus {
        self.handle().status()
    }

    /// Turns the controller on or off while the pipeline runs (it takes effect at the
    /// next tick). Off means no decisions, and the knobs stay where they are.
    pub fn set_controller_enabled(&self, enabled: bool) {
        self.state.set_enabled(enabled);
    }

    /// Whether the controller decides (true by default; false after
    /// `set_controller_enabled(false)`, or when built with
    /// [`controller(false)`](PipelineBuilder::controller)).
    pub fn controller_enabled(&self) -> bool {
        self.controller && self.state.enabled()
    }

    /// The address the control plane listens on, once [`start`](Self::start)ed with
    /// [`PipelineBuilder::control_plane`] (feature `http`).
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn control_plane_addr(&self) -> Option<std::net::SocketAddr> {
        match &*self.lifecycle() {
            Lifecycle::Running(running) => running.server.as_ref().map(|s| s.local_addr()),
            Lifecycle::Built(_) | Lifecycle::Stopped => None,
        }
    }

    /// A handle to publish events; clone it freely.
    pub fn publisher(&self) -> Publisher<E> {
        self.bus.publisher()
    }

    /// The bus, for snapshots, signals and extra subscriptions.
    pub fn bus(&self) -> &Bus<E> {
        &self.bus
    }

    /// The limits the controller works within.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The decision log, oldest first (bounded; see
    /// [`PipelineBuilder::decision_log_capacity`]).
    pub fn decisions(&self) -> Vec<DecisionRecord> {
        self.log.records()
    }

    /// The shared decision log, to read while the pipeline runs.
    pub fn decision_log(&self) -> Arc<DecisionLog> {
        self.log.clone()
    }

    /// Stops the controller, closes the bus to publishers, drains every stage within
    /// `deadline` (shared by all stages), joins the workers, and reports what each
    /// stage processed and what was left.
    ///
    /// This blocks the calling thread; from async code use `shutdown_async` (feature
    /// `tokio`).
    pub fn shutdown(self, deadline: Duration) -> ShutdownReport {
        let until = Instant::now() + deadline;
        let Running {
            pools,
            controller,
            #[cfg(feature = "http")]
            server,
        } = match self.take_running() {
            Ok(running) => running,
            Err(report) => return report,
        };
        #[cfg(feature = "http")]
        if let Some(server) = server {
            server.stop();
        }
        // The loop holds the pools as actuators; stopping it hands them back.
        drop(controller.map(ControllerHandle::stop));
        self.bus.close();
        let mut reports = Vec::new();
        for pool in pools {
            let remaining = until.saturating_duration_since(Instant::now());
            let report = pool.drain(remaining);
            reports.push((pool.name().to_owned(), report));
        }
        ShutdownReport::from_pools(reports)
    }

    /// [`shutdown`](Self::shutdown) from async code (feature `tokio`), blocking no
    /// runtime thread: the control loop is told to stop and awaited
    /// ([`ControllerHandle::stop_async`]), and each stage is drained with
    /// [`WorkerPool::drain_async`], thread and task workers alike. The same report.
    /// Needs a runtime with its time driver enabled (for the deadline).
    ///
    /// # Examples
    ///
    /// See the [module docs](self#async-stages).
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn shutdown_async(self, deadline: Duration) -> ShutdownReport {
        let until = Instant::now() + deadline;
        let Running {
            pools,
            controller,
            #[cfg(feature = "http")]
            server,
        } = match self.take_running() {
            Ok(running) => running,
            Err(report) => return report,
        };
        #[cfg(feature = "http")]
        if let Some(server) = server {
            // Not joined: a thread join would block this runtime thread.
            server.stop_detached();
        }
        if let Some(controller) = controller {
            drop(controller.stop_async().await);
        }
        self.bus.close();
        let mut reports = Vec::new();
        for pool in pools {
            let remaining = until.saturating_duration_since(Instant::now());
            let report = pool.drain_async(remaining).await;
            reports.push((pool.name().to_owned(), report));
        }
        ShutdownReport::from_pools(reports)
    }

    /// The running parts, or (never started) the report of what is still buffered,
    /// with the bus closed. Either way the pipeline is `Stopped` after it, so a second
    /// call finds nothing to stop.
    fn take_running(&self) -> Result<Running<E>, ShutdownReport> {
        let previous = std::mem::replace(&mut *self.lifecycle(), Lifecycle::Stopped);
        match previous {
            Lifecycle::Running(running) => Ok(running),
            not_running => {
                // Never started: what was published is still buffered. Read before the
                // subscriptions of a built pipeline go (dropping one unsubscribes it).
                let snapshot = self.bus.snapshot();
                self.bus.close();
                drop(not_running);
                Err(ShutdownReport {
                    stages: snapshot
                        .subscriptions
                        .iter()
                        .map(|s| StageReport {
                            name: s.name.to_string(),
                            processed: 0,
                            left: s.len as u64,
                        })
                        .collect(),
                    deadline_passed: false,
                })
            }
        }
    }
}

/// What [`Pipeline::shutdown`] (or `shutdown_async`) achieved, per stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// One entry per stage, in the order they were added.
    pub stages: Vec<StageReport>,
    /// Whether the deadline stopped some stage's drain before it was empty.
    pub deadline_passed: bool,
}

impl ShutdownReport {
    fn from_pools(reports: Vec<(String, DrainReport)>) -> Self {
        let deadline_passed = reports.iter().any(|(_, r)| r.deadline_passed);
        let stages = reports
            .into_iter()
            .map(|(name, report)| StageReport {
                name,
                processed: report.processed,
                left: report.left,
            })
            .collect();
        ShutdownReport {
            stages,
            deadline_passed,
        }
    }

    /// Events left unprocessed over all stages.
    pub fn left(&self) -> u64 {
        self.stages.iter().map(|s| s.left).sum()
    }
}

/// One stage's part of a [`ShutdownReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageReport {
    /// The stage.
    pub name: String,
    /// Events its workers finished (successfully or to the dead-letter hook).
    pub processed: u64,
    /// Events still buffered or in a handler at the deadline.
    pub left: u64,
}

/// A cloneable, type-erased handle to a pipeline's readings and controls, from
/// [`Pipeline::handle`]: what an API, a dashboard or a health check needs without
/// knowing the event type.
#[derive(Clone)]
pub struct PipelineHandle {
    bus: Arc<dyn BusActuator>,
    pools: Arc<Mutex<Vec<Arc<dyn PoolActuator>>>>,
    state: ControllerState,
    log: Arc<DecisionLog>,
    config: Option<ConfigHandle>,
    limit_bytes: Option<u64>,
    interval: Duration,
    controller: bool,
}

impl std::fmt::Debug for PipelineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineHandle")
            .field("pipeline", &self.bus.name())
            .finish_non_exhaustive()
    }
}

impl PipelineHandle {
    /// The pipeline's name.
    pub fn name(&self) -> &str {
        self.bus.name()
    }

    /// What the pipeline looks like now: the controller's mode and switch, the publish
    /// rate limit, memory (from the controller's latest tick) and every stage's buffer
    /// and pool.
    pub fn status(&self) -> PipelineStatus {
        let snapshot = self.bus.snapshot();
        let pools = self.pools.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let memory = self.state.memory();
        let stages = snapshot
            .subscriptions
            .iter()
            .map(|sub| {
                let pool = pools
                    .iter()
                    .find(|p| p.name() == &*sub.name)
                    .map(|p| p.stats());
                StageStatus {
                    name: sub.name.to_string(),
                    workers: pool.as_ref().map_or(0, |p| p.workers),
                    min_workers: pool.as_ref().map_or(0, |p| p.min_workers),
                    max_workers: pool.as_ref().map_or(0, |p| p.max_workers),
                    capacity: sub.capacity,
                    min_capacity: sub.min_capacity,
                    max_capacity: sub.max_capacity,
                    len: sub.len,
                    processed: pool.as_ref().map_or(0, |p| p.processed),
                    failed: pool.as_ref().map_or(0, |p| p.failed),
                    utilisation: pool.as_ref().map_or(0.0, |p| p.utilisation),
                }
            })
            .collect();
        PipelineStatus {
            mode: self.state.mode().as_str(),
            controller_enabled: self.controller_enabled(),
            publish_rate_limit: snapshot.publish_rate,
            memory: MemoryStatus {
                used_bytes: memory.map(|m| m.used_bytes),
                limit_bytes: memory.and_then(|m| m.limit_bytes).or(self.limit_bytes),
            },
            stages,
        }
    }

    /// The shared decision log.
    pub fn decision_log(&self) -> &Arc<DecisionLog> {
        &self.log
    }

    /// The live configuration, when the pipeline has one
    /// ([`PipelineBuilder::config`]).
    pub fn config(&self) -> Option<&ConfigHandle> {
        self.config.as_ref()
    }

    /// The controller's switch and latest readings.
    pub fn controller_state(&self) -> &ControllerState {
        &self.state
    }

    /// Whether the pipeline has a controller at all
    /// ([`PipelineBuilder::controller`]).
    pub fn has_controller(&self) -> bool {
        self.controller
    }

    /// Whether the controller decides: it exists and is switched on.
    pub fn controller_enabled(&self) -> bool {
        self.controller && self.state.enabled()
    }

    /// Turns the controller on or off (see [`Pipeline::set_controller_enabled`]).
    pub fn set_controller_enabled(&self, enabled: bool) {
        self.state.set_enabled(enabled);
    }

    /// The controller's tick interval as built (a live configuration may change it).
    pub fn interval(&self) -> Duration {
        self.config
            .as_ref()
            .map_or(self.interval, |c| c.current().controller.interval)
    }
}

/// A pipeline's state at one moment ([`Pipeline::status`]); serialises to the control
/// plane's `GET /api/status` body, whose field names are a contract.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PipelineStatus {
    /// The controller's mode: `normal`, `throttled` or `defensive`.
    pub mode: &'static str,
    /// Whether the controller decides and acts.
    pub controller_enabled: bool,
    /// The publish-rate limit in force, events per second (`None`: unlimited).
    pub publish_rate_limit: Option<f64>,
    /// Memory in use and the limit.
    pub memory: MemoryStatus,
    /// Every stage, in the order they were added.
    pub stages: Vec<StageStatus>,
}

/// Memory in a [`PipelineStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MemoryStatus {
    /// The working set at the controller's latest tick, bytes (`None` before the
    /// first tick or without a controller).
    pub used_bytes: Option<u64>,
    /// The memory limit, bytes (`None`: unknown).
    pub limit_bytes: Option<u64>,
}

/// One stage in a [`PipelineStatus`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StageStatus {
    /// The stage's name.
    pub name: String,
    /// Workers now (0 before the pipeline starts).
    pub workers: usize,
    /// The lowest worker count the controller may set: the pool's range in force (the
    /// configured `workers.min`, set at the controller's tick after a change; 0 before
    /// the pipeline starts).
    pub min_workers: usize,
    /// The highest worker count the controller may set (the configured `workers.max`,
    /// likewise; 0 before the pipeline starts).
    pub max_workers: usize,
    /// The buffer's capacity now, events.
    pub capacity: usize,
    /// The lowest capacity the controller may set: the buffer's range in force (the
    /// configured `buffer.min`, set at the controller's tick after a change).
    pub min_capacity: usize,
    /// The highest capacity the controller may set (the configured `buffer.max`,
    /// likewise).
    pub max_capacity: usize,
    /// Events buffered now.
    pub len: usize,
    /// Events handled successfully so far.
    pub processed: u64,
    /// Events whose handler failed so far.
    pub failed: u64,
    /// Share of the workers' time spent in the handler over the last 5 s, 0 to 1.
    pub utilisation: f64,
}
