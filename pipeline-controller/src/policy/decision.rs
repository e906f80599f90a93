//! What the policy decided: a [`Decision`] value listing [`Action`]s, each with the
//! [`Reason`] a person reads to see why.

use std::fmt;
use std::time::Duration;

use super::observation::Overflow;

/// The policy's mode: an explicit state machine with entry and exit thresholds.
///
/// ```text
///            memory >= critical (or PSI >= psi_critical)
///   Normal ---------------------------------------------> Defensive
///   |    ^                                                |  ^
///   |    | rate lifted          memory >= critical        |  |
///   v    |                  +-----------------------------+--+
///   Throttled <-------------+  memory < defensive_exit held for defensive_exit_hold
/// ```
///
/// - `Normal`: no publish-rate limit; buffers and pools follow saturation and
///   utilisation.
/// - `Throttled`: the policy limits the publish rate and raises it step by step while
///   pressure is gone; lifting it returns to `Normal`.
/// - `Defensive`: memory is at or above the critical level: shrink, throttle, drop where
///   allowed, scale down. Left only after memory stayed below the exit level for the
///   hold time, and then into `Throttled`, since the rate is still limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Mode {
    /// No pressure the policy had to push back on.
    #[default]
    Normal,
    /// The publish rate is limited by the policy.
    Throttled,
    /// Memory is critical; every knob is turned toward less memory.
    Defensive,
}

impl Mode {
    /// `normal`, `throttled` or `defensive`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Normal => "normal",
            Mode::Throttled => "throttled",
            Mode::Defensive => "defensive",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one call to [`decide`](super::HysteresisPolicy::decide) wants done.
///
/// Apply the [`actions`](Decision::actions) in order; each knob appears at most once. An
/// empty decision (no actions, no transition) means "leave everything as it is".
///
/// # Examples
///
/// ```
/// use pipeline_controller::policy::{BufferObservation, Change, HysteresisPolicy, Observation};
/// use std::time::Instant;
///
/// let mut policy = HysteresisPolicy::default();
/// let obs = Observation::new().buffer(BufferObservation::new("orders", 64, 8, 1024).len(60));
/// let decision = policy.decide(&obs, Instant::now());
/// for action in &decision.actions {
///     println!("{action}"); // buffer orders: saturation 0.94 > target 0.70, grow 64 -> 96
/// }
/// assert!(matches!(
///     decision.actions[0].change,
///     Change::ResizeBuffer { from: 64, to: 96, .. }
/// ));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use = "a decision does nothing until its actions are applied"]
pub struct Decision {
    /// The mode after this decision.
    pub mode: Mode,
    /// The mode change this decision made, if any.
    pub transition: Option<Transition>,
    /// The knob changes, highest priority first.
    pub actions: Vec<Action>,
}

impl Decision {
    /// Whether there is nothing to do: no action and no mode change.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty() && self.transition.is_none()
    }
}

impl fmt::Display for Decision {
    /// One line per transition and action; `no change` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("no change");
        }
        let mut first = true;
        let mut line = |f: &mut fmt::Formatter<'_>, item: &dyn fmt::Display| {
            if !std::mem::take(&mut first) {
                f.write_str("\n")?;
            }
            write!(f, "{item}")
        };
        if let Some(transition) = &self.transition {
            line(f, transition)?;
        }
        for action in &self.actions {
            line(f, action)?;
        }
        Ok(())
    }
}

/// A change of [`Mode`] and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The mode before.
    pub from: Mode,
    /// The mode after.
    pub to: Mode,
    /// The readings that caused it.
    pub reason: Reason,
}

impl fmt::Display for Transition {
    /// `mode normal -> defensive: memory 0.92 >= critical 0.90`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mode {} -> {}: ", self.from, self.to)?;
        write_conditions(f, &self.reason.conditions, None)
    }
}

/// One knob change and its reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// What to change.
    pub change: Change,
    /// Why.
    pub reason: Reason,
}

impl fmt::Display for Action {
    /// `<knob>: <conditions>, <change>`, for example
    /// `buffer orders: saturation 0.92 > target 0.70, grow 64 -> 96`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.change.knob())?;
        write_conditions(f, &self.reason.conditions, self.change.name())?;
        f.write_str(", ")?;
        match &self.change {
            Change::ResizeBuffer { from, to, .. } => {
                let verb = if to > from { "grow" } else { "shrink" };
                write!(f, "{verb} {from} -> {to}")
            }
            Change::SetPublishRate { from, to } => {
                let verb = match to {
                    None => "lift",
                    Some(to) if from.is_some_and(|from| *to > from) => "raise",
                    Some(_) => "throttle",
                };
                write!(f, "{verb} {} -> {}", Rate(*from), Rate(*to))
            }
            Change::ResizePool { from, to, .. } => {
                let verb = if to > from { "scale up" } else { "scale down" };
                write!(f, "{verb} {from} -> {to}")
            }
            Change::SetOverflow { from, to, .. } => write!(f, "overflow {from} -> {to}"),
        }
    }
}

/// A publish rate for display: `80.0/s` or `unlimited`.
struct Rate(Option<f64>);

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(rate) => write!(f, "{rate:.1}/s"),
            None => f.write_str("unlimited"),
        }
    }
}

/// A knob change, in the terms the actuators use.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Set a subscription's buffer capacity.
    ResizeBuffer {
        /// The subscription.
        name: String,
        /// The capacity observed.
        from: usize,
        /// The capacity to set, within the buffer's `[min, max]`.
        to: usize,
    },
    /// Set the bus's publish-rate limit, events per second (`None`: unlimited).
    SetPublishRate {
        /// The limit observed.
        from: Option<f64>,
        /// The limit to set.
        to: Option<f64>,
    },
    /// Set a pool's worker count.
    ResizePool {
        /// The pool.
        name: String,
        /// The worker count observed.
        from: usize,
        /// The worker count to set, within the pool's `[min, max]`.
        to: usize,
    },
    /// Switch a droppable subscription's overflow mode.
    SetOverflow {
        /// The subscription.
        name: String,
        /// The mode observed.
        from: Overflow,
        /// The mode to set.
        to: Overflow,
    },
}

impl Change {
    /// The knob it turns (cooldowns are kept per knob and direction).
    pub fn knob(&self) -> Knob {
        match self {
            Change::ResizeBuffer { name, .. } => Knob::Buffer(name.clone()),
            Change::SetPublishRate { .. } => Knob::PublishRate,
            Change::ResizePool { name, .. } => Knob::Pool(name.clone()),
            Change::SetOverflow { name, .. } => Knob::Overflow(name.clone()),
        }
    }

    /// Which way it turns the knob: up is more capacity, more workers, a higher (or no)
    /// rate limit, or back to lossless; down is the opposite.
    pub fn direction(&self) -> Direction {
        let up = match self {
            Change::ResizeBuffer { from, to, .. } | Change::ResizePool { from, to, .. } => {
                to > from
            }
            Change::SetPublishRate { from, to } => match (from, to) {
                (_, None) => true,
                (None, Some(_)) => false,
                (Some(from), Some(to)) => to > from,
            },
            Change::SetOverflow { to, .. } => !to.drops(),
        };
        if up { Direction::Up } else { Direction::Down }
    }

    /// The subscription or pool it is about, `None` for the publish rate.
    pub fn name(&self) -> Option<&str> {
        match self {
            Change::ResizeBuffer { name, .. }
            | Change::ResizePool { name, .. }
            | Change::SetOverflow { name, .. } => Some(name),
            Change::SetPublishRate { .. } => None,
        }
    }
}

/// One knob the policy turns.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Knob {
    /// A subscription's buffer capacity.
    Buffer(String),
    /// A subscription's overflow mode.
    Overflow(String),
    /// A pool's worker count.
    Pool(String),
    /// The bus's publish-rate limit.
    PublishRate,
}

impl fmt::Display for Knob {
    /// `buffer orders`, `pool orders`, `publish rate`; an overflow mode is shown as its
    /// buffer.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Knob::Buffer(name) | Knob::Overflow(name) => write!(f, "buffer {name}"),
            Knob::Pool(name) => write!(f, "pool {name}"),
            Knob::PublishRate => f.write_str("publish rate"),
        }
    }
}

/// Which way a change turns its knob (see [`Change::direction`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// More capacity, more workers, a higher or no rate limit, or lossless again.
    Up,
    /// Less of it.
    Down,
}

/// Why an action or a transition happened: the rule, and the readings that crossed
/// their thresholds (the first one is the trigger; any further ones are the conditions
/// that chose this rule over another).
///
/// # Examples
///
/// ```
/// use pipeline_controller::policy::{Comparison, Condition, Reading, Reason, Rule, Threshold};
///
/// let reason = Reason {
///     rule: Rule::GrowBuffer,
///     conditions: vec![Condition {
///         reading: Reading::Saturation { buffer: "orders".into() },
///         value: 0.92,
///         comparison: Comparison::Above,
///         threshold: Threshold::TargetSaturation,
///         threshold_value: 0.7,
///         held_for: None,
///     }],
/// };
/// assert_eq!(reason.to_string(), "grow-buffer: buffer orders saturation 0.92 > target 0.70");
/// assert_eq!(reason.conditions[0].threshold.field(), Some("target_saturation"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    /// The rule that acted.
    pub rule: Rule,
    /// The readings and the thresholds they crossed.
    pub conditions: Vec<Condition>,
}

impl fmt::Display for Reason {
    /// `<rule>: <condition> and <condition>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.rule)?;
        write_conditions(f, &self.conditions, None)
    }
}

/// Writes conditions joined by " and "; readings about `own` (the action's own buffer or
/// pool) leave out the name, which the action already shows.
fn write_conditions(
    f: &mut fmt::Formatter<'_>,
    conditions: &[Condition],
    own: Option<&str>,
) -> fmt::Result {
    for (i, condition) in conditions.iter().enumerate() {
        if i > 0 {
            f.write_str(" and ")?;
        }
        condition.write(f, own)?;
    }
    Ok(())
}

/// One reading compared with one threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// What was read.
    pub reading: Reading,
    /// Its value (for a held condition, the value now).
    pub value: f64,
    /// How it compares with the threshold.
    pub comparison: Comparison,
    /// Which threshold.
    pub threshold: Threshold,
    /// The threshold's value.
    pub threshold_value: f64,
    /// How long the comparison has held, for rules that wait for it (scale-down and
    /// shrink windows, the defensive exit hold).
    pub held_for: Option<Duration>,
}

impl Condition {
    fn write(&self, f: &mut fmt::Formatter<'_>, own: Option<&str>) -> fmt::Result {
        self.reading.write(f, own)?;
        let (value, threshold) = (
            self.reading.format(self.value),
            self.reading.format(self.threshold_value),
        );
        write!(f, " {value} {}", self.comparison)?;
        match self.threshold.to_string().as_str() {
            "" => write!(f, " {threshold}")?,
            name => write!(f, " {name} {threshold}")?,
        }
        if let Some(held) = self.held_for {
            // Whole seconds as such ("for 30s"); shorter windows (tests) with a decimal.
            if held.subsec_millis() == 0 {
                write!(f, " for {}s", held.as_secs())?;
            } else {
                write!(f, " for {:.1}s", held.as_secs_f64())?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Condition {
    /// `buffer orders saturation 0.92 > target 0.70`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, None)
    }
}

/// What a [`Condition`] read.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    /// A buffer's saturation (see
    /// [`BufferObservation::saturation`](super::BufferObservation::saturation)).
    Saturation {
        /// The buffer.
        buffer: String,
    },
    /// A buffer's capacity, slots.
    Capacity {
        /// The buffer.
        buffer: String,
    },
    /// All buffers' bytes at capacity as a share of the memory limit.
    BufferBytes,
    /// Memory in use as a share of the limit.
    Memory,
    /// PSI "some" avg10, percent.
    Pressure,
    /// A pool's utilisation, 0 to 1.
    Utilisation {
        /// The pool.
        pool: String,
    },
    /// A pool's backlog, events.
    Backlog {
        /// The pool.
        pool: String,
    },
    /// Workers across all pools.
    Workers,
    /// Events per second publishers offered.
    Demand,
}

impl Reading {
    fn write(&self, f: &mut fmt::Formatter<'_>, own: Option<&str>) -> fmt::Result {
        let (what, name, kind) = match self {
            Reading::Saturation { buffer } => ("saturation", Some(buffer), "buffer"),
            Reading::Capacity { buffer } => ("capacity", Some(buffer), "buffer"),
            Reading::Utilisation { pool } => ("utilisation", Some(pool), "pool"),
            Reading::Backlog { pool } => ("backlog", Some(pool), "pool"),
            Reading::BufferBytes => ("buffer bytes", None, ""),
            Reading::Memory => ("memory", None, ""),
            Reading::Pressure => ("memory pressure", None, ""),
            Reading::Workers => ("workers", None, ""),
            Reading::Demand => ("demand", None, ""),
        };
        match name {
            Some(name) if Some(name.as_str()) != own => write!(f, "{kind} {name} {what}"),
            _ => f.write_str(what),
        }
    }

    /// A value of this reading as text: shares with two decimals, counts whole, rates
    /// with one decimal and `/s`, pressure with one decimal and `%`.
    fn format(&self, value: f64) -> String {
        match self {
            Reading::Capacity { .. } | Reading::Backlog { .. } => format!("{value:.0}"),
            Reading::Workers => {
                if value.fract() == 0.0 {
                    format!("{value:.0}")
                } else {
                    format!("{value:.2}")
                }
            }
            Reading::Demand => format!("{value:.1}/s"),
            Reading::Pressure => format!("{value:.1}%"),
            _ => format!("{value:.2}"),
        }
    }
}

impl fmt::Display for Reading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, None)
    }
}

/// How a reading compares with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Comparison {
    /// `>`
    Above,
    /// `>=`
    AtOrAbove,
    /// `<`
    Below,
    /// `<=`
    AtOrBelow,
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Comparison::Above => ">",
            Comparison::AtOrAbove => ">=",
            Comparison::Below => "<",
            Comparison::AtOrBelow => "<=",
        })
    }
}

/// Which threshold a [`Condition`] compared with. Most are fields of
/// [`PolicyConfig`](super::PolicyConfig) ([`field`](Threshold::field) names it); the
/// others come from the observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Threshold {
    /// `memory_critical`.
    MemoryCritical,
    /// `psi_critical`.
    PsiCritical,
    /// `defensive_exit`.
    DefensiveExit,
    /// `psi_exit`.
    PsiExit,
    /// `memory_caution`.
    MemoryCaution,
    /// `target_saturation`.
    TargetSaturation,
    /// `low_saturation`.
    LowSaturation,
    /// `relief_saturation`.
    ReliefSaturation,
    /// `buffer_budget`.
    BufferBudget,
    /// `target_utilisation`.
    TargetUtilisation,
    /// `low_utilisation`.
    LowUtilisation,
    /// The buffer's own maximum capacity.
    MaxCapacity,
    /// The CPU limit times `workers_per_core`.
    CpuCap,
    /// The pool's backlog at the previous tick.
    PreviousBacklog,
    /// Zero (a backlog on a pool with no worker is stuck, however small).
    Zero,
    /// The publish-rate limit in force.
    PublishRate,
}

impl Threshold {
    /// The [`PolicyConfig`](super::PolicyConfig) field holding it, `None` for those that
    /// come from the observation.
    pub fn field(self) -> Option<&'static str> {
        Some(match self {
            Threshold::MemoryCritical => "memory_critical",
            Threshold::PsiCritical => "psi_critical",
            Threshold::DefensiveExit => "defensive_exit",
            Threshold::PsiExit => "psi_exit",
            Threshold::MemoryCaution => "memory_caution",
            Threshold::TargetSaturation => "target_saturation",
            Threshold::LowSaturation => "low_saturation",
            Threshold::ReliefSaturation => "relief_saturation",
            Threshold::BufferBudget => "buffer_budget",
            Threshold::TargetUtilisation => "target_utilisation",
            Threshold::LowUtilisation => "low_utilisation",
            Threshold::MaxCapacity
            | Threshold::CpuCap
            | Threshold::PreviousBacklog
            | Threshold::Zero
            | Threshold::PublishRate => return None,
        })
    }
}

impl fmt::Display for Threshold {
    /// The short name used in reasons: `critical`, `target`, `budget`, ...
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Threshold::MemoryCritical | Threshold::PsiCritical => "critical",
            Threshold::DefensiveExit | Threshold::PsiExit => "exit",
            Threshold::MemoryCaution => "caution",
            Threshold::TargetSaturation | Threshold::TargetUtilisation => "target",
            Threshold::LowSaturation | Threshold::LowUtilisation => "low",
            Threshold::ReliefSaturation => "relief",
            Threshold::BufferBudget => "budget",
            Threshold::MaxCapacity => "max",
            Threshold::CpuCap => "cpu cap",
            Threshold::PreviousBacklog => "previous",
            Threshold::Zero => "",
            Threshold::PublishRate => "limit",
        })
    }
}

/// The rules of the policy, by priority (see `docs/controller.md` for each one's
/// thresholds and the scenario that backs its defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Rule {
    /// Memory or pressure reached the critical level: enter `Defensive`.
    EnterDefensive,
    /// Memory and pressure stayed below their exit levels for the hold time: leave
    /// `Defensive`.
    LeaveDefensive,
    /// Defensive: shrink a buffer by `defensive_shrink_factor`, toward its minimum.
    DefensiveShrink,
    /// Defensive: cut the publish rate by `defensive_rate_factor`.
    DefensiveThrottle,
    /// Defensive: switch a droppable `Block` buffer to `DropOldest`.
    DefensiveDrop,
    /// Defensive: remove one worker from a pool, toward its minimum.
    DefensiveScaleDown,
    /// Leaving `Defensive`: switch buffers the policy made drop back to `Block`.
    RestoreOverflow,
    /// The buffers' bytes exceed the memory budget (the limit fell, or events grew):
    /// shrink them to fit.
    OverBudget,
    /// The workers exceed the CPU cap (the limit fell): scale pools down to fit.
    CpuCap,
    /// A buffer is above its target saturation and its growth fits: grow it.
    GrowBuffer,
    /// A buffer is above its target saturation and cannot grow (at its max, over the
    /// budget, or memory above caution): cut the publish rate by `rate_decrease_factor`.
    Throttle,
    /// A pool is busy above target, its backlog is not shrinking, errors are low, memory
    /// and CPU allow: add workers.
    ScaleUp,
    /// At the CPU cap, a pool with work waiting has no worker: move one to it from the
    /// least utilised pool that can spare one.
    Rebalance,
    /// A buffer stayed below its low saturation for the stabilisation window: shrink it.
    ShrinkBuffer,
    /// A pool stayed below its low utilisation for the stabilisation window: remove a
    /// worker.
    ScaleDown,
    /// Pressure has been gone for the stabilisation window: raise the publish rate by a
    /// step (at most halfway to a recent ceiling), or lift it once publishers offer
    /// clearly less than it.
    RaiseRate,
}

impl Rule {
    /// The rule's name in kebab case, as in logs and `docs/controller.md`.
    pub fn name(self) -> &'static str {
        match self {
            Rule::EnterDefensive => "enter-defensive",
            Rule::LeaveDefensive => "leave-defensive",
            Rule::DefensiveShrink => "defensive-shrink",
            Rule::DefensiveThrottle => "defensive-throttle",
            Rule::DefensiveDrop => "defensive-drop",
            Rule::DefensiveScaleDown => "defensive-scale-down",
            Rule::RestoreOverflow => "restore-overflow",
            Rule::OverBudget => "over-budget",
            Rule::CpuCap => "cpu-cap",
            Rule::GrowBuffer => "grow-buffer",
            Rule::Throttle => "throttle",
            Rule::ScaleUp => "scale-up",
            Rule::Rebalance => "rebalance",
            Rule::ShrinkBuffer => "shrink-buffer",
            Rule::ScaleDown => "scale-down",
            Rule::RaiseRate => "raise-rate",
        }
    }

    /// Whether the rule acts regardless of cooldowns: the defensive rules and the ones
    /// that bring a knob back within a limit. Waiting would risk the container's limit.
    pub fn bypasses_cooldown(self) -> bool {
        matches!(
            self,
            Rule::EnterDefensive
                | Rule::LeaveDefensive
                | Rule::DefensiveShrink
                | Rule::DefensiveThrottle
                | Rule::DefensiveDrop
                | Rule::DefensiveScaleDown
                | Rule::RestoreOverflow
                | Rule::OverBudget
                | Rule::CpuCap
        )
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
