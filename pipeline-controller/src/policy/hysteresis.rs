//! The policy value: configuration plus the state hysteresis needs (mode, cooldowns,
//! windows, the previous backlog), and `decide`, which runs the rules in priority order.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use super::config::{PolicyConfig, PolicyConfigError};
use super::decision::{
    Comparison, Condition, Decision, Direction, Knob, Mode, Reading, Reason, Rule, Threshold,
    Transition,
};
use super::model::{self, PoolModel, PoolView};
use super::observation::Observation;
use super::plan::{MemoryLevels, Plan, memory_condition};
use pipeline_core::bus::OverflowPolicy;

/// The controller's decision function: a hysteresis policy over buffers, the publish
/// rate and worker pools, with an explicit [`Mode`] state machine.
///
/// [`decide`](HysteresisPolicy::decide) is pure apart from the policy's own state: no
/// I/O, no clock reads, no randomness. The caller passes the time, so the same sequence
/// of observations and instants always gives the same decisions, and tests run in
/// simulated time.
///
/// # Examples
///
/// Memory at 92% of the limit: the policy turns defensive and every knob moves toward
/// less memory in the same tick, cooldowns notwithstanding.
///
/// ```
/// use pipeline_controller::policy::{
///     BufferObservation, Change, HysteresisPolicy, Mode, Observation, PoolObservation,
/// };
/// use pipeline_core::bus::OverflowPolicy;
/// use std::time::Instant;
///
/// const MIB: u64 = 1 << 20;
/// let mut policy = HysteresisPolicy::default();
/// let obs = Observation::new()
///     .buffer(BufferObservation::new("metrics", 18, 8, 64).len(18).droppable(true))
///     .pool(PoolObservation::new("metrics", 3, 1, 8).utilisation(0.9))
///     .memory(92 * MIB, Some(100 * MIB))
///     .observed_publish_rate(Some(200.0));
/// let decision = policy.decide(&obs, Instant::now());
///
/// assert_eq!(decision.mode, Mode::Defensive);
/// println!("{decision}");
/// // mode normal -> defensive: memory 0.92 >= critical 0.90
/// // buffer metrics: memory 0.92 >= critical 0.90, shrink 18 -> 9
/// // publish rate: memory 0.92 >= critical 0.90, throttle unlimited -> 100.0/s
/// // buffer metrics: memory 0.92 >= critical 0.90, overflow block -> drop_oldest
/// // pool metrics: memory 0.92 >= critical 0.90, scale down 3 -> 2
/// let changes: Vec<Change> = decision.actions.into_iter().map(|a| a.change).collect();
/// assert_eq!(changes, [
///     Change::ResizeBuffer { name: "metrics".into(), from: 18, to: 9 },
///     Change::SetPublishRate { from: None, to: Some(100.0) },
///     Change::SetOverflow { name: "metrics".into(), from: OverflowPolicy::Block, to: OverflowPolicy::DropOldest },
///     Change::ResizePool { name: "metrics".into(), from: 3, to: 2 },
/// ]);
/// ```
#[derive(Debug, Clone)]
pub struct HysteresisPolicy {
    pub(crate) config: PolicyConfig,
    pub(crate) mode: Mode,
    /// Since when memory and pressure have been below their exit levels, in `Defensive`.
    pub(crate) below_exit_since: Option<Instant>,
    /// When each knob last changed, per direction.
    pub(crate) knobs: BTreeMap<Knob, KnobHistory>,
    pub(crate) buffers: BTreeMap<String, BufferState>,
    pub(crate) pools: BTreeMap<String, PoolState>,
    /// The demand when the policy began throttling: raise steps are a share of it.
    pub(crate) throttle_origin: Option<f64>,
    /// The latest rate the buffers saturated at (the `from` of a throttle), and when.
    pub(crate) ceiling: Option<(f64, Instant)>,
    /// Since when pressure has been gone at the current rate (memory below caution,
    /// PSI below exit, every buffer below relief). A rate change restarts it.
    pub(crate) relief: Option<Relief>,
    /// Buffers switched to dropping by `Defensive`, to switch back when it ends.
    pub(crate) made_dropping: BTreeSet<String>,
    /// Knobs held at the previous decision, and by what (`cooldown`, `window`).
    pub(crate) held: BTreeSet<(Knob, &'static str)>,
}

/// Pressure gone since `since`; the highest saturation since then and whose it was.
#[derive(Debug, Clone)]
pub(crate) struct Relief {
    pub(crate) since: Instant,
    pub(crate) peak: f64,
    pub(crate) fullest: Option<String>,
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KnobHistory {
    pub(crate) up: Option<Instant>,
    pub(crate) down: Option<Instant>,
}

/// What the shrink window and the growth rules need about a buffer.
#[derive(Debug, Clone)]
pub(crate) struct BufferState {
    /// The capacity the window's readings were taken at; a change restarts the window.
    pub(crate) capacity: usize,
    /// When the window started: first sight or the last change of the capacity.
    pub(crate) since: Instant,
    /// Since when saturation has stayed below `low_saturation` at this capacity.
    pub(crate) low_since: Option<Instant>,
    /// The highest saturation since then.
    pub(crate) low_peak: f64,
    /// `len` at the previous tick: a buffer that drains needs no throttle.
    pub(crate) previous_len: Option<usize>,
    /// Since when the buffer has been above `target_saturation` without a break.
    pub(crate) saturated_since: Option<Instant>,
    /// Decisions in a row that saw it above `target_saturation`.
    pub(crate) saturated_ticks: u32,
    /// The model's capacity recommendations at this capacity, oldest first.
    pub(crate) samples: VecDeque<(Instant, usize)>,
    /// Decisions left in which the capacity may follow the model's after a growth
    /// sized by it.
    pub(crate) refine_left: u32,
    /// The level of the stage's λ estimate the refinement belongs to.
    pub(crate) refine_level: u64,
}

/// What the scale-up trend, the scale-down window and the model need about a pool.
#[derive(Debug, Clone)]
pub(crate) struct PoolState {
    /// The worker count the window's samples were taken at; a change restarts it.
    pub(crate) workers: usize,
    /// When the window started: first sight or the last change of the worker count.
    pub(crate) since: Instant,
    /// The backlog at the previous tick.
    pub(crate) previous_backlog: Option<usize>,
    /// Recommendations and utilisations within the stabilisation window, oldest first.
    /// A change of the worker count drops the utilisation-based ones (they describe
    /// the old count) and keeps the model's (a count for the load, whatever the count
    /// now): the HPA's window, which a scale-down does not restart.
    pub(crate) samples: VecDeque<PoolSample>,
    /// Since when every sample has come from the model (`None` while the latest did
    /// not): the model's scale-down waits for a whole window of them.
    pub(crate) modelled_since: Option<Instant>,
    /// The estimates of λ, S and CPU per event.
    pub(crate) model: PoolModel,
    /// When the previous observation was folded in.
    pub(crate) last_at: Option<Instant>,
    /// Decisions left in which the count may follow the model's count both ways after
    /// a scale-up sized by it.
    pub(crate) refine_left: u32,
    /// Whether publishers waited on the stage's buffer at the previous tick.
    pub(crate) waited: bool,
    /// The level of λ's estimate the refinement belongs to: a new level ends it.
    pub(crate) refine_level: u64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolSample {
    pub(crate) at: Instant,
    /// The worker count this tick recommends. With the model: its count at the low end
    /// of the estimate's band (what the load surely needed); without: fewer than now
    /// only when idle.
    pub(crate) recommendation: usize,
    pub(crate) utilisation: f64,
    /// Whether the recommendation came from the model.
    pub(crate) modelled: bool,
}

impl Default for HysteresisPolicy {
    /// A policy with [`PolicyConfig::default`].
    fn default() -> Self {
        HysteresisPolicy::with_valid_config(PolicyConfig::default())
    }
}

impl HysteresisPolicy {
    /// A policy in [`Mode::Normal`] with no history.
    ///
    /// # Errors
    ///
    /// The [`PolicyConfigError`] of [`PolicyConfig::validate`].
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_controller::policy::{HysteresisPolicy, Mode, PolicyConfig};
    ///
    /// let policy = HysteresisPolicy::new(PolicyConfig::default().target_saturation(0.8))?;
    /// assert_eq!(policy.mode(), Mode::Normal);
    /// assert!(HysteresisPolicy::new(PolicyConfig::default().growth_factor(1.0)).is_err());
    /// # Ok::<(), pipeline_controller::policy::PolicyConfigError>(())
    /// ```
    pub fn new(config: PolicyConfig) -> Result<Self, PolicyConfigError> {
        config.validate()?;
        Ok(HysteresisPolicy::with_valid_config(config))
    }

    fn with_valid_config(config: PolicyConfig) -> Self {
        HysteresisPolicy {
            config,
            mode: Mode::Normal,
            below_exit_since: None,
            knobs: BTreeMap::new(),
            buffers: BTreeMap::new(),
            pools: BTreeMap::new(),
            throttle_origin: None,
            relief: None,
            ceiling: None,
            made_dropping: BTreeSet::new(),
            held: BTreeSet::new(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// Replaces the configuration, keeping the mode and all history (a live update).
    ///
    /// # Errors
    ///
    /// The [`PolicyConfigError`] of [`PolicyConfig::validate`]; the configuration in
    /// force stays.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_controller::policy::{HysteresisPolicy, PolicyConfig};
    ///
    /// let mut policy = HysteresisPolicy::default();
    /// policy.set_config(PolicyConfig::default().memory_critical(0.85))?;
    /// assert_eq!(policy.config().memory_critical, 0.85);
    /// assert!(policy.set_config(PolicyConfig::default().buffer_budget(0.0)).is_err());
    /// assert_eq!(policy.config().memory_critical, 0.85);
    /// # Ok::<(), pipeline_controller::policy::PolicyConfigError>(())
    /// ```
    pub fn set_config(&mut self, config: PolicyConfig) -> Result<(), PolicyConfigError> {
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// The mode after the latest decision.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Decides what to change given one observation at `now`.
    ///
    /// Rules run by priority: the mode's entry and exit, then limits (buffers over the
    /// memory budget, workers over the CPU cap), then defensive actions while memory is
    /// critical, else saturation (grow buffers, add workers, or throttle publishers) and
    /// optimisation (shrink under-used buffers, remove idle workers, raise the rate). A
    /// knob changes at most once per decision. `now` should not go backward; if it does,
    /// no cooldown or window counts as elapsed.
    ///
    /// # Examples
    ///
    /// See [`HysteresisPolicy`] and [`Decision`].
    pub fn decide(&mut self, obs: &Observation, now: Instant) -> Decision {
        self.forget_missing(obs);
        let views = self.observe_pools(obs, now);
        self.observe_buffers(obs, &views, now);
        let before = self.mode;
        let memory = MemoryLevels::new(obs, &self.config);
        self.observe_relief(obs, &memory, now);
        let mut plan = Plan::new(obs, views, &self.config);

        let critical = memory.critical();
        let mut mode_reason = None;
        if let Some(critical) = &critical {
            self.below_exit_since = None;
            if self.mode != Mode::Defensive {
                self.mode = Mode::Defensive;
                mode_reason = Some(Reason {
                    rule: Rule::EnterDefensive,
                    conditions: vec![critical.clone()],
                    sizing: None,
                });
            }
        } else if self.mode == Mode::Defensive {
            mode_reason = self.try_leave_defensive(&memory, now);
        }

        self.enforce_budget(obs, &mut plan);
        self.enforce_cpu_cap(obs, &mut plan);
        if self.mode == Mode::Defensive {
            if let Some(critical) = critical {
                self.defensive(obs, &critical, &mut plan);
            }
        } else {
            let restore = mode_reason
                .as_ref()
                .map_or_else(|| self.exit_conditions(&memory), |r| r.conditions.clone());
            self.restore_overflow(obs, restore, &mut plan);
            // Workers first: whether a saturated buffer is draining depends on them.
            self.scale_up(obs, &memory, now, &mut plan);
            let throttle = self.grow_buffers(obs, &memory, now, &mut plan);
            self.rebalance(obs, &memory, now, &mut plan);
            match throttle {
                Some(conditions) => self.throttle(obs, conditions, now, &mut plan),
                None => self.raise_rate(obs, now, &mut plan),
            }
            // While publishers are held back, low saturation and idle workers are the
            // limit's doing, not spare capacity: shrinking would re-saturate as soon as
            // the rate rises (slow-consumer scenario).
            if obs.publish_rate.is_none() {
                self.shrink_buffers(obs, now, &mut plan);
                self.scale_down(obs, now, &mut plan);
            }
        }

        if self.mode != Mode::Defensive {
            // Normal and Throttled follow the policy's rate actions: a limit set by
            // someone else makes the policy Throttled only once it acts on it.
            let rate_action = plan
                .actions
                .iter()
                .find(|a| a.change.knob() == Knob::PublishRate);
            if before == Mode::Defensive || rate_action.is_some() {
                self.mode = if plan.rate.is_some() {
                    Mode::Throttled
                } else {
                    Mode::Normal
                };
            }
            if let (Some(action), None) = (rate_action, &mode_reason) {
                mode_reason = Some(action.reason.clone());
            }
        }
        self.remember(obs, &plan, now);

        let transition = (self.mode != before).then(|| Transition {
            from: before,
            to: self.mode,
            reason: mode_reason.expect("every mode change has a reason"),
        });
        let mut holds = plan.holds;
        let held = holds
            .iter()
            .map(|h| (h.change.knob(), h.cause.as_str()))
            .collect();
        for hold in &mut holds {
            hold.new = !self
                .held
                .contains(&(hold.change.knob(), hold.cause.as_str()));
        }
        self.held = held;
        Decision {
            mode: self.mode,
            transition,
            actions: plan.actions,
            holds,
        }
    }

    /// In `Defensive` without a critical reading: leave once memory and pressure have
    /// stayed below their exit levels for the hold time.
    fn try_leave_defensive(&mut self, memory: &MemoryLevels, now: Instant) -> Option<Reason> {
        if !memory.below_exit() {
            self.below_exit_since = None;
            return None;
        }
        let since = *self.below_exit_since.get_or_insert(now);
        let held = now.saturating_duration_since(since);
        if held < self.config.defensive_exit_hold {
            return None;
        }
        self.below_exit_since = None;
        // Provisional: the end of `decide` picks Throttled or Normal from the rate.
        self.mode = Mode::Throttled;
        let mut conditions = self.exit_conditions(memory);
        for condition in &mut conditions {
            condition.held_for = Some(held);
        }
        Some(Reason {
            rule: Rule::LeaveDefensive,
            conditions,
            sizing: None,
        })
    }

    /// Memory and pressure against their exit levels, as conditions.
    fn exit_conditions(&self, memory: &MemoryLevels) -> Vec<Condition> {
        let c = &self.config;
        let mut conditions = Vec::new();
        if let Some(share) = memory.share {
            let comparison = if share < c.defensive_exit {
                Comparison::Below
            } else {
                Comparison::AtOrAbove
            };
            conditions.push(memory_condition(
                share,
                comparison,
                Threshold::DefensiveExit,
                c.defensive_exit,
            ));
        }
        if let Some(psi) = memory.psi {
            let comparison = if psi < c.psi_exit {
                Comparison::Below
            } else {
                Comparison::AtOrAbove
            };
            conditions.push(Condition::compare(
                Reading::Pressure,
                psi,
                comparison,
                Threshold::PsiExit,
                c.psi_exit,
            ));
        }
        conditions
    }

    /// Whether `knob` may turn in `direction` at `now`: its last change that way is at
    /// least a cooldown ago.
    pub(crate) fn cooled(&self, knob: &Knob, direction: Direction, now: Instant) -> bool {
        let last = self.knobs.get(knob).and_then(|h| match direction {
            Direction::Up => h.up,
            Direction::Down => h.down,
        });
        last.is_none_or(|at| now.saturating_duration_since(at) >= self.config.cooldown)
    }

    /// Drops the state of buffers and pools no longer observed.
    fn forget_missing(&mut self, obs: &Observation) {
        let buffers: BTreeSet<&str> = obs.buffers.iter().map(|b| b.name.as_str()).collect();
        let pools: BTreeSet<&str> = obs.pools.iter().map(|p| p.name.as_str()).collect();
        self.buffers
            .retain(|name, _| buffers.contains(name.as_str()));
        self.pools.retain(|name, _| pools.contains(name.as_str()));
        self.made_dropping
            .retain(|name| buffers.contains(name.as_str()));
        self.knobs.retain(|knob, _| match knob {
            Knob::Buffer(name) | Knob::Overflow(name) => buffers.contains(name.as_str()),
            Knob::Pool(name) => pools.contains(name.as_str()),
            Knob::PublishRate => true,
        });
        self.held.retain(|(knob, _)| match knob {
            Knob::Buffer(name) | Knob::Overflow(name) => buffers.contains(name.as_str()),
            Knob::Pool(name) => pools.contains(name.as_str()),
            Knob::PublishRate => true,
        });
    }

    /// Folds this tick's readings into each pool's model and scale-down window, and
    /// returns what the model says about each pool (in `obs.pools` order).
    fn observe_pools(&mut self, obs: &Observation, now: Instant) -> Vec<Option<PoolView>> {
        let c = &self.config;
        let mut views = Vec::with_capacity(obs.pools.len());
        for p in &obs.pools {
            let state = self
                .pools
                .entry(p.name.clone())
                .or_insert_with(|| PoolState {
                    workers: p.workers,
                    since: now,
                    previous_backlog: None,
                    samples: VecDeque::new(),
                    modelled_since: None,
                    model: PoolModel::default(),
                    last_at: None,
                    refine_left: 0,
                    waited: false,
                    refine_level: 0,
                });
            if state.workers != p.workers {
                state.workers = p.workers;
                state.since = now;
                state.samples.retain(|s| s.modelled);
            }
            state.refine_left = state.refine_left.saturating_sub(1);
            // The interval since the previous reading (one second at the first).
            let dt = state
                .last_at
                .map(|at| now.saturating_duration_since(at))
                .filter(|dt| !dt.is_zero())
                .unwrap_or(Duration::from_secs(1));
            state.last_at = Some(now);
            // Publishers that waited on the stage's lossless buffer are demand the
            // arrival count does not see (this tick), or sees all at once when room
            // appears (the next tick, or after a resize).
            let buffer = obs.buffers.iter().find(|b| b.name == p.name);
            let waited = p.waiting > 0.0
                || buffer.is_some_and(|b| {
                    b.overflow == OverflowPolicy::Block && (b.was_full() || b.len >= b.capacity)
                });
            let resized = buffer.is_some_and(|b| {
                self.buffers
                    .get(&b.name)
                    .is_some_and(|s| s.capacity != b.capacity)
            });
            let flushed = state.waited || resized;
            state.waited = waited;
            state.model.update(
                p.arrival_rate,
                p.service_time,
                p.cpu_per_event,
                p.workers,
                waited,
                flushed,
                dt,
                c,
            );
            let backlog = p.backlog as f64 + p.waiting.max(0.0);
            let view = model::pool_view(&state.model, backlog, c, dt);
            let recommendation = match &view {
                // The model's count, or the low end of its band while the estimate is
                // fresh: a dip in the load holds the workers for a window, the noise of
                // the first readings after a step does not.
                Some(v) => clamp_workers(v.recommendation(), p),
                // As the HPA: the count that would bring utilisation to target; here only
                // below the low mark may it be fewer than now.
                None => {
                    let wanted = (p.workers as f64 * p.utilisation / c.target_utilisation).ceil();
                    let wanted = if wanted.is_finite() {
                        wanted as usize
                    } else {
                        p.workers
                    };
                    if p.utilisation < c.low_utilisation {
                        wanted.max(p.min).min(p.workers)
                    } else {
                        wanted.max(p.workers)
                    }
                }
            };
            let modelled = view.is_some();
            state.modelled_since = match state.modelled_since {
                Some(since) if modelled => Some(since),
                _ if modelled => Some(now),
                _ => None,
            };
            if !modelled {
                // The utilisation rule reads only samples taken at this count.
                state.samples.retain(|s| !s.modelled);
            }
            state.samples.push_back(PoolSample {
                at: now,
                recommendation,
                utilisation: p.utilisation,
                modelled,
            });
            let window = c.stabilisation_window;
            while state
                .samples
                .front()
                .is_some_and(|s| now.saturating_duration_since(s.at) >= window)
            {
                state.samples.pop_front();
            }
            views.push(view);
        }
        views
    }

    /// Adds this tick's readings to each buffer's shrink window and saturation run.
    fn observe_buffers(&mut self, obs: &Observation, views: &[Option<PoolView>], now: Instant) {
        let c = &self.config;
        for b in &obs.buffers {
            let state = self
                .buffers
                .entry(b.name.clone())
                .or_insert_with(|| BufferState {
                    capacity: b.capacity,
                    since: now,
                    low_since: None,
                    low_peak: 0.0,
                    previous_len: None,
                    saturated_since: None,
                    saturated_ticks: 0,
                    samples: VecDeque::new(),
                    refine_left: 0,
                    refine_level: 0,
                });
            let saturation = b.saturation();
            if state.capacity != b.capacity {
                state.since = now;
                state.samples.clear();
            }
            if state.capacity != b.capacity || saturation >= c.low_saturation {
                state.capacity = b.capacity;
                state.low_since = None;
                state.low_peak = 0.0;
            }
            if saturation < c.low_saturation {
                state.low_since.get_or_insert(now);
                state.low_peak = state.low_peak.max(saturation);
            }
            let saturated = saturation > c.target_saturation;
            if saturated {
                state.saturated_since.get_or_insert(now);
                state.saturated_ticks = state.saturated_ticks.saturating_add(1);
            } else {
                state.saturated_since = None;
                state.saturated_ticks = 0;
            }
            state.refine_left = state.refine_left.saturating_sub(1);
            if let Some(view) = stage_view(obs, views, &b.name) {
                let arrivals = super::rules::admitted(view.arrival, obs);
                let (low, mid) = capacities(&view, arrivals, b.min, b.max, c);
                let recommendation = if view.firm { mid } else { low };
                // A saturated buffer is evidence against shrinking it, whatever λ says.
                let recommendation = if saturated {
                    recommendation.max(b.capacity)
                } else {
                    recommendation
                };
                state.samples.push_back((now, recommendation));
            }
            let window = c.stabilisation_window;
            while state
                .samples
                .front()
                .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= window)
            {
                state.samples.pop_front();
            }
        }
    }

    /// Tracks how long pressure has been gone, for raising the rate.
    fn observe_relief(&mut self, obs: &Observation, memory: &MemoryLevels, now: Instant) {
        let fullest = obs
            .buffers
            .iter()
            .max_by(|a, b| a.saturation().total_cmp(&b.saturation()));
        let saturation = fullest.map_or(0.0, |b| b.saturation());
        let relieved = memory.caution().is_none()
            && memory.calm()
            && saturation < self.config.relief_saturation;
        if !relieved {
            self.relief = None;
            return;
        }
        let relief = self.relief.get_or_insert_with(|| Relief {
            since: now,
            peak: saturation,
            fullest: fullest.map(|b| b.name.clone()),
        });
        if saturation > relief.peak {
            relief.peak = saturation;
            relief.fullest = fullest.map(|b| b.name.clone());
        }
    }

    /// Records what this decision changed, for cooldowns, and this tick's lengths and
    /// backlogs.
    fn remember(&mut self, obs: &Observation, plan: &Plan, now: Instant) {
        for action in &plan.actions {
            if action.change.knob() == Knob::PublishRate {
                // Relief seen at the old rate says nothing about the new one.
                self.relief = None;
            }
            // A growth or scale-up sized by the model opens its refinement; any other
            // change of the knob (defensive, limits, the way down) closes it.
            let sized_up = matches!(action.reason.rule, Rule::ScaleUp | Rule::GrowBuffer)
                && action.reason.sizing.is_some();
            // It belongs to the level of λ's estimate it was sized for.
            let refine = |left: &mut u32, level: &mut u64, now_level: u64| {
                if sized_up {
                    *left = model::REFINE_TICKS + 1;
                    *level = now_level;
                } else if action.reason.rule != Rule::Refine {
                    *left = 0;
                }
            };
            match action.change.knob() {
                Knob::Pool(name) => {
                    if let Some(state) = self.pools.get_mut(&name) {
                        let now_level = state.model.arrival.level();
                        refine(&mut state.refine_left, &mut state.refine_level, now_level);
                    }
                }
                Knob::Buffer(name) => {
                    let now_level = self.pools.get(&name).map_or(0, |p| p.model.arrival.level());
                    if let Some(state) = self.buffers.get_mut(&name) {
                        refine(&mut state.refine_left, &mut state.refine_level, now_level);
                    }
                }
                _ => {}
            }
            let history = self.knobs.entry(action.change.knob()).or_default();
            match action.change.direction() {
                Direction::Up => history.up = Some(now),
                Direction::Down => history.down = Some(now),
            }
        }
        for b in &obs.buffers {
            if let Some(state) = self.buffers.get_mut(&b.name) {
                state.previous_len = Some(b.len);
            }
        }
        for p in &obs.pools {
            if let Some(state) = self.pools.get_mut(&p.name) {
                state.previous_backlog = Some(p.backlog);
            }
        }
        if plan.rate.is_none() {
            self.throttle_origin = None;
            self.ceiling = None;
        }
    }
}

/// A model count within the pool's range, and at least one worker while work waits.
pub(crate) fn clamp_workers(count: usize, p: &super::observation::PoolObservation) -> usize {
    let floor = if p.backlog > 0 || p.waiting > 0.0 {
        p.min.max(1)
    } else {
        p.min
    };
    count.max(floor).min(p.max.max(p.min))
}

/// The model's view of the stage a buffer belongs to (the pool of the same name).
pub(crate) fn stage_view(
    obs: &Observation,
    views: &[Option<PoolView>],
    name: &str,
) -> Option<PoolView> {
    let i = obs.pools.iter().position(|p| p.name == name)?;
    views.get(i).copied().flatten()
}

/// The model's capacities for a buffer receiving `arrivals` (λ, or less under a rate
/// limit): at the low end of λ's band and at it, within `[min, max]`.
pub(crate) fn capacities(
    view: &PoolView,
    arrivals: f64,
    min: usize,
    max: usize,
    config: &PolicyConfig,
) -> (usize, usize) {
    let low_arrival = arrivals * (1.0 - model::Z * view.arrival_error).max(0.0);
    let clamp = |k: usize| k.max(min).min(max.max(min));
    (
        clamp(model::capacity_for(low_arrival, config)),
        clamp(model::capacity_for(arrivals, config)),
    )
}
