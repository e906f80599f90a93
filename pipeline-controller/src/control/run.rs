//! The control loop: sense, decide, act, record.

use super::log::{DecisionLog, DecisionRecord, Entry};
use super::observe::{MemoryProbe, Previous, observe};
use crate::actuator::{BusActuator, PoolActuator, apply};
use crate::config::{ConfigHandle, PipelineConfig};
use crate::policy::{Decision, HysteresisPolicy, MemoryObservation, Mode, Rule};
use crossbeam_channel::{Receiver, Sender, bounded, select};
use pipeline_core::clock::Clock;
use pipeline_core::signal::{Signal, SignalKind};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One controller: the policy, the knobs it turns, the probes it reads, and its log.
///
/// [`tick`](ControlLoop::tick) runs one sense-decide-act round at the clock's current
/// time; [`spawn`](ControlLoop::spawn) runs ticks on a thread. Tests drive `tick` with a
/// manual clock, so the loop runs in simulated time.
pub struct ControlLoop {
    policy: HysteresisPolicy,
    bus: Arc<dyn BusActuator>,
    pools: Vec<Arc<dyn PoolActuator>>,
    memory: Box<dyn MemoryProbe>,
    cpu_limit_cores: Option<f64>,
    clock: Arc<dyn Clock>,
    log: Arc<DecisionLog>,
    previous: Previous,
    started: Instant,
    mode: Mode,
    /// Ticks so far (the `tick` field of the `control_tick` span).
    ticks: u64,
    /// The bus's name: the `pipeline` label of the controller's metrics.
    pipeline: Arc<str>,
    /// The live configuration, the version last applied and its snapshot.
    config: Option<(ConfigHandle, Option<u64>, Arc<PipelineConfig>)>,
    /// The on/off switch, and what the loop publishes after every tick.
    state: ControllerState,
}

impl std::fmt::Debug for ControlLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlLoop")
            .field("mode", &self.mode)
            .field("pools", &self.pools.len())
            .finish_non_exhaustive()
    }
}

impl ControlLoop {
    /// A loop over `bus` and `pools`, reading memory from `memory`, bounded by
    /// `cpu_limit_cores`, deciding with `policy`, on `clock`, recording into `log`.
    pub fn new(
        policy: HysteresisPolicy,
        bus: Arc<dyn BusActuator>,
        pools: Vec<Arc<dyn PoolActuator>>,
        memory: Box<dyn MemoryProbe>,
        cpu_limit_cores: Option<f64>,
        clock: Arc<dyn Clock>,
        log: Arc<DecisionLog>,
    ) -> Self {
        let started = clock.now();
        let pipeline: Arc<str> = Arc::from(bus.name());
        register_metrics(&pipeline);
        ControlLoop {
            policy,
            bus,
            pools,
            memory,
            cpu_limit_cores,
            clock,
            log,
            previous: Previous::default(),
            started,
            mode: Mode::Normal,
            ticks: 0,
            pipeline,
            config: None,
            state: ControllerState::new(),
        }
    }

    /// Shares `state` with this loop: the loop decides only while it is
    /// [enabled](ControllerState::set_enabled), and after every tick publishes its
    /// mode, its memory reading and a tick count there, waking
    /// [`ControllerState::next_tick`] waiters.
    #[must_use]
    pub fn with_state(mut self, state: ControllerState) -> Self {
        self.state = state;
        self
    }

    /// The state this loop shares (see [`with_state`](Self::with_state)).
    pub fn state(&self) -> &ControllerState {
        &self.state
    }

    /// Follows a live configuration: at every tick, when it changed, the policy takes
    /// its `policy` section, each stage's buffer and worker ranges are set on the bus
    /// and the pool ([`BusActuator::set_capacity_range`],
    /// [`PoolActuator::set_worker_range`]: a knob outside its new range is moved into
    /// it at once, and the readings the policy observes report the new range), each
    /// droppable stage's overflow is set, and [`spawn`](Self::spawn) ticks at its
    /// `controller.interval`.
    #[must_use]
    pub fn with_config(mut self, handle: ConfigHandle) -> Self {
        let snapshot = handle.current();
        self.config = Some((handle, None, snapshot));
        self
    }

    /// Applies a configuration change, if any, to the policy and the knobs.
    fn refresh_config(&mut self) {
        let Some((handle, seen, snapshot)) = &mut self.config else {
            return;
        };
        let version = handle.version();
        if *seen == Some(version) {
            return;
        }
        let config = handle.current();
        *seen = Some(version);
        *snapshot = config.clone();
        if let Err(error) = self.policy.set_config(config.policy.clone()) {
            // The handle validated it; a policy that disagrees keeps its configuration.
            tracing::warn!(target: "pipeline::controller", %error, "policy configuration refused");
        }
        // Each stage's ranges go to the bus and the pool, once per change: from then on
        // the bus snapshot and the pool stats report them, `observe` reads them there,
        // and a resize outside them is clamped by the knob itself.
        let bus = self.bus.snapshot();
        for (name, stage) in &config.stages {
            if let Some(sub) = bus.subscription(name) {
                let range = stage.buffer;
                if (sub.min_capacity, sub.max_capacity) != (range.min, range.max) {
                    match self.bus.set_capacity_range(name, range.min, range.max) {
                        Ok(to) => {
                            tracing::info!(target: "pipeline::controller", stage = %name, min = range.min, max = range.max, from = sub.capacity, to, "buffer range set from the configuration")
                        }
                        Err(error) => {
                            tracing::warn!(target: "pipeline::controller", stage = %name, %error, "buffer range not set")
                        }
                    }
                }
                if sub.droppable
                    && sub.overflow != stage.overflow
                    && let Err(error) = self.bus.set_overflow(name, stage.overflow)
                {
                    tracing::warn!(target: "pipeline::controller", stage = %name, %error, "overflow not set");
                }
            }
            if let Some(pool) = self.pools.iter().find(|p| p.name() == name) {
                let range = stage.workers;
                let stats = pool.stats();
                if (stats.min_workers, stats.max_workers) != (range.min, range.max) {
                    match pool.set_worker_range(range.min, range.max) {
                        Ok(to) => {
                            tracing::info!(target: "pipeline::controller", stage = %name, min = range.min, max = range.max, from = stats.workers, to, "worker range set from the configuration")
                        }
                        Err(error) => {
                            tracing::warn!(target: "pipeline::controller", stage = %name, %error, "worker range not set")
                        }
                    }
                }
            }
        }
    }

    /// The tick interval: the live configuration's, else `fallback`.
    fn interval(&self, fallback: Duration) -> Duration {
        self.config
            .as_ref()
            .map_or(fallback, |(_, _, c)| c.controller.interval)
    }

    /// Whether memory is at or above the policy's critical level (share of the limit, or
    /// PSI) right now: the loop's early wake between ticks.
    fn memory_critical(&mut self) -> bool {
        let reading = self.memory.read(self.clock.now());
        let config = self.policy.config();
        reading
            .share()
            .is_some_and(|share| share >= config.memory_critical)
            || reading
                .psi_some_avg10
                .is_some_and(|psi| psi >= config.psi_critical)
    }

    /// The mode after the latest tick.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Replaces the policy's configuration, keeping its state (cooldowns, windows).
    pub fn policy_mut(&mut self) -> &mut HysteresisPolicy {
        &mut self.policy
    }

    /// One round: read the bus, the pools and memory, decide, apply every action,
    /// and record each in the log, in `tracing` and in `metrics`. Returns the
    /// decision as the policy made it.
    ///
    /// While the loop's [`ControllerState`] is disabled, a tick only reads memory and
    /// publishes the tick: no configuration change is applied, nothing is decided, and
    /// every knob stays where it is; the returned decision is empty.
    pub fn tick(&mut self) -> Decision {
        if !self.state.enabled() {
            let memory = self.memory.read(self.clock.now());
            self.ticks += 1;
            self.state.publish(self.mode, memory);
            return Decision {
                mode: self.mode,
                transition: None,
                actions: Vec::new(),
                holds: Vec::new(),
            };
        }
        self.refresh_config();
        let now = self.clock.now();
        let snapshot = self.bus.snapshot();
        let memory = self.memory.read(now);
        let memory_reading = memory;
        let obs = observe(
            now,
            &snapshot,
            &self.pools,
            memory,
            self.cpu_limit_cores,
            &mut self.previous,
        );
        let decision = self.policy.decide(&obs, now);
        self.mode = decision.mode;
        self.ticks += 1;
        let span = tracing::info_span!(
            target: "pipeline::controller",
            "control_tick",
            tick = self.ticks,
            mode = decision.mode.as_str(),
            actions = decision.actions.len(),
            holds = decision.holds.len(),
        );
        let _entered = span.enter();
        let since_start = now.saturating_duration_since(self.started);
        if let Some(transition) = &decision.transition {
            tracing::warn!(target: "pipeline::controller", from = transition.from.as_str(), to = transition.to.as_str(), "{transition}");
            metrics::counter!("pipeline_controller_mode_changes_total", "pipeline" => self.pipeline.to_string(), "to" => transition.to.as_str()).increment(1);
            self.log.push(DecisionRecord {
                at: now,
                since_start,
                mode: decision.mode,
                entry: Entry::Mode(transition.clone()),
            });
        }
        // A state set: one series per mode, 1 for the mode in force.
        for mode in [Mode::Normal, Mode::Throttled, Mode::Defensive] {
            let value = if mode == decision.mode { 1.0 } else { 0.0 };
            metrics::gauge!("pipeline_controller_mode", "pipeline" => self.pipeline.to_string(), "mode" => mode.as_str()).set(value);
        }
        for action in &decision.actions {
            let outcome = apply(self.bus.as_ref(), &self.pools, &action.change).map_err(|e| {
                let mut why = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    why.push_str(": ");
                    why.push_str(&cause.to_string());
                    source = cause.source();
                }
                why
            });
            let rule = action.reason.rule.label();
            let knob = action.change.knob().to_string();
            let (from, to) = action.change.values();
            let first = action.reason.conditions.first();
            let reading = first.map(|c| c.reading.to_string());
            let value = first.map(|c| c.value);
            let threshold = first.map(|c| c.threshold_value);
            let decision_span = tracing::info_span!(
                target: "pipeline::controller",
                "decision",
                rule,
                knob = %knob,
                from = %from,
                to = %to,
                reading = reading.as_deref(),
                value,
                threshold,
            );
            let _decision = decision_span.enter();
            match &outcome {
                Ok(_) => {
                    tracing::info!(target: "pipeline::controller", rule, "{action}")
                }
                Err(why) => {
                    tracing::warn!(target: "pipeline::controller", rule, %why, "{action} not applied")
                }
            }
            let result = if outcome.is_ok() {
                "applied"
            } else {
                "refused"
            };
            metrics::counter!("pipeline_controller_actions_total", "pipeline" => self.pipeline.to_string(), "rule" => rule, "outcome" => result).increment(1);
            self.log.push(DecisionRecord {
                at: now,
                since_start,
                mode: decision.mode,
                entry: Entry::Action {
                    action: action.clone(),
                    outcome,
                },
            });
        }
        // Why nothing happened: a hold is logged when it starts, counted every tick.
        for hold in &decision.holds {
            metrics::counter!("pipeline_controller_holds_total", "pipeline" => self.pipeline.to_string(), "rule" => hold.rule.label(), "cause" => hold.cause.as_str()).increment(1);
            if hold.new {
                tracing::debug!(target: "pipeline::controller", rule = hold.rule.label(), cause = hold.cause.as_str(), "{hold}");
                self.log.push(DecisionRecord {
                    at: now,
                    since_start,
                    mode: decision.mode,
                    entry: Entry::Hold(hold.clone()),
                });
            }
        }
        drop(_entered);
        self.state.publish(self.mode, memory_reading);
        decision
    }

    /// Runs ticks every `interval` (or the live configuration's, see
    /// [`with_config`](Self::with_config)) on a new thread, and early (at most every
    /// `interval / 10`) when `signals` reports back pressure starting or a buffer
    /// saturating, or when memory, looked at every quarter interval (at most every
    /// 250 ms), is critical. Stop it with the returned handle, from a thread
    /// ([`ControllerHandle::stop`]) or from async code
    /// ([`ControllerHandle::stop_async`]).
    ///
    /// # Panics
    ///
    /// If the thread cannot be spawned.
    pub fn spawn(
        mut self,
        interval: Duration,
        signals: Option<Receiver<Signal>>,
    ) -> ControllerHandle {
        let (stop_tx, stop_rx) = bounded::<()>(0);
        let never = crossbeam_channel::never();
        let done = Arc::new(Done::default());
        let finish = Finish(done.clone());
        let thread = std::thread::Builder::new()
            .name("pipeline-controller".into())
            .spawn(move || {
                let finish = finish;
                let signals = signals.unwrap_or(never);
                let mut last = Instant::now();
                let _applied = self.tick();
                loop {
                    // A live configuration may change the interval between ticks.
                    let interval = self.interval(interval);
                    let min_gap = interval / 10;
                    let wait = interval
                        .saturating_sub(last.elapsed())
                        .min(memory_watch(interval));
                    select! {
                        recv(stop_rx) -> _ => break,
                        recv(signals) -> signal => match signal {
                            Ok(signal) if urgent(&signal) && last.elapsed() >= min_gap => {}
                            Ok(_) => continue,
                            Err(_) => break,
                        },
                        default(wait) => {
                            // Between ticks, a look at memory alone: critical memory
                            // cannot wait for the next tick (it ticks at most once per
                            // look, so at most every `memory_watch`).
                            if last.elapsed() < interval && !self.memory_critical() {
                                continue;
                            }
                        }
                    }
                    last = Instant::now();
                    let _applied = self.tick();
                }
                finish.with(self);
            })
            .expect("spawn the controller thread");
        ControllerHandle {
            stop: Some(stop_tx),
            thread: Some(thread),
            done,
        }
    }
}

/// How a spawned loop ends: handed back, or `None` if its thread panicked; with the
/// waker of an async [`ControllerHandle::stop_async`] waiting for it.
#[derive(Default)]
struct Done(Mutex<DoneState>);

#[derive(Default)]
struct DoneState {
    finished: bool,
    control: Option<ControlLoop>,
    waker: Option<Waker>,
}

impl Done {
    fn lock(&self) -> MutexGuard<'_, DoneState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Owned by the loop's thread: marks the loop finished when it ends, with the loop
/// ([`with`](Self::with)) or, if the thread unwinds, without.
struct Finish(Arc<Done>);

impl Finish {
    fn with(self, control: ControlLoop) {
        self.0.lock().control = Some(control);
        // `drop` marks it finished and wakes the waiter.
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.0.lock();
            state.finished = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// How often memory is looked at between ticks: a quarter of the interval, at most
/// 250 ms, at least 10 ms.
fn memory_watch(interval: Duration) -> Duration {
    (interval / 4).clamp(Duration::from_millis(10), Duration::from_millis(250))
}

fn urgent(signal: &Signal) -> bool {
    matches!(
        signal.kind,
        SignalKind::BackPressureStarted | SignalKind::SaturationHigh { .. }
    )
}

/// Stops a spawned [`ControlLoop`].
pub struct ControllerHandle {
    /// Dropped to stop the loop: its receiver then reports the disconnect at once.
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// Where the loop is handed back when it ends.
    done: Arc<Done>,
}

impl std::fmt::Debug for ControllerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerHandle")
            .field("running", &self.stop.is_some())
            .finish_non_exhaustive()
    }
}

impl ControllerHandle {
    /// Stops the loop after its current tick and hands it back, blocking the calling
    /// thread until its thread has ended. From async code use
    /// [`stop_async`](Self::stop_async).
    ///
    /// # Panics
    ///
    /// If the loop's thread panicked.
    pub fn stop(mut self) -> ControlLoop {
        drop(self.stop.take());
        let joined = self.thread.take().expect("not yet stopped").join();
        let control = self.done.lock().control.take();
        match (joined, control) {
            (Ok(()), Some(control)) => control,
            _ => panic!("the controller thread panicked"),
        }
    }

    /// Stops the loop after its current tick and hands it back, waiting as a task:
    /// never blocks the calling thread (runtime-agnostic: the loop's thread wakes the
    /// future when it ends). The thread is detached, as it is returning. Dropping the
    /// future before it completes still stops the loop, without waiting.
    ///
    /// # Panics
    ///
    /// The future panics if the loop's thread panicked.
    ///
    /// # Examples
    ///
    /// ```
    /// # use pipeline_controller::control::{ControlLoop, DecisionLog};
    /// # use pipeline_controller::policy::{HysteresisPolicy, MemoryObservation, PolicyConfig};
    /// # use pipeline_core::bus::Bus;
    /// # use pipeline_core::clock::SystemClock;
    /// # use std::sync::Arc;
    /// # use std::time::{Duration, Instant};
    /// let bus: Bus<u32> = Bus::new();
    /// let control = ControlLoop::new(
    ///     HysteresisPolicy::new(PolicyConfig::default()).unwrap(),
    ///     Arc::new(bus),
    ///     Vec::new(),
    ///     Box::new(|_: Instant| MemoryObservation::default()),
    ///     None,
    ///     Arc::new(SystemClock),
    ///     Arc::new(DecisionLog::new(16)),
    /// );
    /// let handle = control.spawn(Duration::from_millis(10), None);
    /// # let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// // In async code: `handle.stop_async().await`.
    /// let control: ControlLoop = runtime.block_on(handle.stop_async());
    /// # let _ = control;
    /// ```
    pub fn stop_async(mut self) -> impl Future<Output = ControlLoop> + Send + 'static {
        drop(self.stop.take());
        // Detached: it hands the loop back through `done`, then returns.
        drop(self.thread.take());
        let done = self.done.clone();
        std::future::poll_fn(move |cx| {
            let mut state = done.lock();
            if !state.finished {
                if !state
                    .waker
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    state.waker = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
            match state.control.take() {
                Some(control) => Poll::Ready(control),
                None => panic!("the controller thread panicked"),
            }
        })
    }
}

impl Drop for ControllerHandle {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Describes the controller's metrics (`# HELP`) and registers every decision counter
/// at 0, so a scrape shows each rule's series before it first acts.
fn register_metrics(pipeline: &str) {
    use metrics::Unit;
    metrics::describe_counter!(
        "pipeline_controller_actions_total",
        Unit::Count,
        "Actions the controller decided, by rule and outcome (applied or refused)."
    );
    metrics::describe_counter!(
        "pipeline_controller_holds_total",
        Unit::Count,
        "Ticks on which a rule wanted a change but a cooldown or the stabilisation window held it, by rule and cause."
    );
    metrics::describe_counter!(
        "pipeline_controller_mode_changes_total",
        Unit::Count,
        "Mode changes, by the mode entered."
    );
    metrics::describe_gauge!(
        "pipeline_controller_mode",
        "The controller's mode as a state set: 1 for the mode in force, 0 for the others."
    );
    for rule in Rule::ALL {
        for outcome in ["applied", "refused"] {
            metrics::counter!("pipeline_controller_actions_total", "pipeline" => pipeline.to_owned(), "rule" => rule.label(), "outcome" => outcome).increment(0);
        }
    }
    for mode in [Mode::Normal, Mode::Throttled, Mode::Defensive] {
        metrics::counter!("pipeline_controller_mode_changes_total", "pipeline" => pipeline.to_owned(), "to" => mode.as_str())
            .increment(0);
    }
}

/// What a running [`ControlLoop`] shares with the rest of the process: an on/off switch,
/// and, after every tick, its mode, its latest memory reading and a tick count, with
/// waiters woken (the control plane's event stream waits here). Clone it freely: clones
/// share it.
///
/// Switched off, the loop keeps ticking (readings and ticks are still published) but
/// decides nothing and moves no knob; switched on again, it resumes at its next tick.
///
/// ```
/// use pipeline_controller::control::ControllerState;
///
/// let state = ControllerState::new();
/// assert!(state.enabled());
/// state.set_enabled(false);
/// assert!(!state.enabled());
/// assert_eq!(state.ticks(), 0);
/// ```
#[derive(Clone, Default)]
pub struct ControllerState(Arc<StateInner>);

#[derive(Default)]
struct StateInner {
    disabled: std::sync::atomic::AtomicBool,
    shared: Mutex<Shared>,
}

#[derive(Default)]
struct Shared {
    ticks: u64,
    mode: Mode,
    memory: Option<MemoryObservation>,
    waiters: Vec<Waker>,
}

impl std::fmt::Debug for ControllerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerState")
            .field("enabled", &self.enabled())
            .field("ticks", &self.ticks())
            .finish_non_exhaustive()
    }
}

impl ControllerState {
    /// Enabled, no tick yet, mode normal.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.0.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the loop decides and acts (the default) or only watches.
    pub fn enabled(&self) -> bool {
        !self.0.disabled.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Turns the controller on or off; it takes effect at the loop's next tick. Off
    /// means no decisions, and the knobs stay where they are.
    pub fn set_enabled(&self, enabled: bool) {
        self.0
            .disabled
            .store(!enabled, std::sync::atomic::Ordering::Release);
        tracing::info!(target: "pipeline::controller", enabled, "controller switched");
    }

    /// Ticks finished so far.
    pub fn ticks(&self) -> u64 {
        self.lock().ticks
    }

    /// The mode after the latest tick (normal before the first).
    pub fn mode(&self) -> Mode {
        self.lock().mode
    }

    /// The memory reading of the latest tick (`None` before the first).
    pub fn memory(&self) -> Option<MemoryObservation> {
        self.lock().memory
    }

    /// Records a finished tick and wakes every waiter.
    fn publish(&self, mode: Mode, memory: MemoryObservation) {
        let waiters = {
            let mut shared = self.lock();
            shared.ticks += 1;
            shared.mode = mode;
            shared.memory = Some(memory);
            std::mem::take(&mut shared.waiters)
        };
        for waker in waiters {
            waker.wake();
        }
    }

    /// Waits (as a task, runtime-agnostic) until more than `seen` ticks have finished,
    /// and returns the tick count then.
    pub fn next_tick(&self, seen: u64) -> impl Future<Output = u64> + Send + 'static {
        let state = self.clone();
        std::future::poll_fn(move |cx| {
            let mut shared = state.lock();
            if shared.ticks > seen {
                return Poll::Ready(shared.ticks);
            }
            if !shared.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                shared.waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
    }
}
