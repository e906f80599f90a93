//! What the policy decided: a [`Decision`] value listing [`Action`]s, each with the
//! [`Reason`] a person reads to see why.

use std::fmt;
use std::time::Duration;

use pipeline_core::bus::OverflowPolicy;

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
    /// Changes a rule wanted but did not make yet, because the knob is cooling down or
    /// a window has not passed: why nothing happened, for operators. Not to be applied.
    pub holds: Vec<Hold>,
}

impl Decision {
    /// Whether there is nothing to do: no action and no mode change (there may be
    /// [holds](Decision::holds)).
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty() && self.transition.is_none()
    }
}

impl fmt::Display for Decision {
    /// One line per transition, action and hold; `no change` when there is none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() && self.holds.is_empty() {
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
        for hold in &self.holds {
            line(f, hold)?;
        }
        Ok(())
    }
}

/// A change a rule wanted but held back, and what held it.
///
/// # Examples
///
/// ```
/// use pipeline_controller::policy::{Change, Hold, HoldCause, Rule};
/// use std::time::Duration;
///
/// let hold = Hold {
///     change: Change::ResizePool { name: "orders".into(), from: 12, to: 9 },
///     rule: Rule::ScaleDown,
///     cause: HoldCause::Window { left: Duration::from_secs(13) },
///     new: true,
/// };
/// assert_eq!(
///     hold.to_string(),
///     "pool orders: scale down 12 -> 9 held by the stabilisation window, 13s left"
/// );
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Hold {
    /// The change the rule would make now.
    pub change: Change,
    /// The rule.
    pub rule: Rule,
    /// What holds it.
    pub cause: HoldCause,
    /// Whether this knob was not held for this cause at the previous decision: log
    /// holds when they start, count them every decision.
    pub new: bool,
}

impl fmt::Display for Hold {
    /// `<knob>: <change> held by <cause>, <time> left`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.change.knob())?;
        write_change(f, &self.change)?;
        let (what, left) = match self.cause {
            HoldCause::Cooldown { left } => ("the cooldown", left),
            HoldCause::Window { left } => ("the stabilisation window", left),
        };
        write!(f, " held by {what}, {} left", Secs(left))
    }
}

/// What holds a change back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HoldCause {
    /// The knob changed this way less than `cooldown` ago.
    Cooldown {
        /// Until the cooldown ends.
        left: Duration,
    },
    /// The way down waits for the stabilisation window: it has not passed since the
    /// knob last changed, or a recommendation within it was higher.
    Window {
        /// Until the change could be made if readings stay as they are.
        left: Duration,
    },
}

impl HoldCause {
    /// `cooldown` or `window`, for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldCause::Cooldown { .. } => "cooldown",
            HoldCause::Window { .. } => "window",
        }
    }
}

/// A duration as `30s`, `1.5s` or `250ms`.
struct Secs(Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_nanos() == 0 {
            write!(f, "{}s", d.as_secs())
        } else if d < Duration::from_secs(1) && d.subsec_nanos().is_multiple_of(1_000_000) {
            write!(f, "{}ms", d.as_millis())
        } else {
            write!(f, "{:.1}s", d.as_secs_f64())
        }
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
        write_reason(f, &self.reason, self.change.name())?;
        f.write_str(", ")?;
        write_change(f, &self.change)
    }
}

impl Action {
    /// Whether the cooldown applies to this action: not for urgent rules (see
    /// [`Rule::bypasses_cooldown`]), nor for growth and scale-up sized by the queueing
    /// model, nor for its refinement, whose hysteresis is the model's band and the
    /// stabilisation window, nor for a scale-down sized by the model, which takes the
    /// highest of its counts over the whole window (as the Kubernetes HPA does).
    pub fn respects_cooldown(&self) -> bool {
        if self.reason.rule.bypasses_cooldown() || self.reason.rule == Rule::Refine {
            return false;
        }
        let sized = self.reason.sizing.is_some();
        let model_scale_down = sized && self.reason.rule == Rule::ScaleDown;
        !(sized && self.change.direction() == Direction::Up || model_scale_down)
    }
}

fn write_change(f: &mut fmt::Formatter<'_>, change: &Change) -> fmt::Result {
    match change {
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

/// The sizing (if any), then the conditions, joined by " and ".
fn write_reason(f: &mut fmt::Formatter<'_>, reason: &Reason, own: Option<&str>) -> fmt::Result {
    if let Some(sizing) = &reason.sizing {
        write!(f, "{sizing}")?;
        if !reason.conditions.is_empty() {
            f.write_str(" and ")?;
        }
    }
    write_conditions(f, &reason.conditions, own)
}

/// How the queueing model sized a pool or a buffer: the figures and the result, as the
/// decision log shows them.
///
/// # Examples
///
/// ```
/// use pipeline_controller::policy::Sizing;
/// use std::time::Duration;
///
/// let sizing = Sizing::Workers {
///     arrival_rate: 300.0,
///     service_time: Duration::from_millis(20),
///     target: 0.7,
///     for_load: 9,
///     target_wait: Duration::ZERO,
///     for_wait: 0,
///     backlog: 1800.0,
///     drain_time: Duration::from_secs(5),
///     for_drain: 14,
///     shifted: None,
/// };
/// assert_eq!(
///     sizing.to_string(),
///     "λ 300/s x S 20.0ms = load 6.00, target 0.70 -> 9 workers \
///      (backlog 1800 drains in 5s: 14 workers)"
/// );
/// assert_eq!(sizing.recommended(), 14);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Sizing {
    /// A pool's workers: `max(ceil(λS / target), wait count, ceil((λ + backlog /
    /// drain_time) x S))`.
    Workers {
        /// λ, events per second (smoothed).
        arrival_rate: f64,
        /// S, the mean handler time per event (smoothed).
        service_time: Duration,
        /// `target_utilisation`.
        target: f64,
        /// `ceil(λS / target)`.
        for_load: usize,
        /// `target_wait` (zero: none).
        target_wait: Duration,
        /// The fewest workers whose p99 wait in M/M/c is within `target_wait` (0
        /// without a wait target).
        for_wait: usize,
        /// Events waiting: buffered plus waiting outside the buffer.
        backlog: f64,
        /// `drain_time`.
        drain_time: Duration,
        /// Workers that, fully busy, keep up and clear the backlog within the drain
        /// time (0 without a backlog).
        for_drain: usize,
        /// When the decision used the count for the load moved by some standard errors
        /// of the estimate instead of the count above: the errors (`-1.0`: a fresh
        /// estimate lands one error low; `0.5`: a refinement down stays half an error
        /// high), the relative error, and that count.
        shifted: Option<(f64, f64, usize)>,
    },
    /// A buffer's capacity: `ceil(λ x target_latency / target_saturation)`.
    Capacity {
        /// λ, events per second (smoothed).
        arrival_rate: f64,
        /// `target_latency`.
        latency: Duration,
        /// `target_saturation`.
        target: f64,
        /// The capacity, before the buffer's range.
        capacity: usize,
        /// When the decision used the capacity for λ moved by some standard errors
        /// instead: the errors (`-1.0`: a fresh estimate lands one error low), λ's
        /// relative error, and that capacity.
        shifted: Option<(f64, f64, usize)>,
    },
}

impl Sizing {
    /// The count or capacity the model recommends (before ranges and limits).
    pub fn recommended(&self) -> usize {
        match self {
            Sizing::Workers {
                for_load,
                for_wait,
                for_drain,
                ..
            } => (*for_load).max(*for_wait).max(*for_drain),
            Sizing::Capacity { capacity, .. } => *capacity,
        }
    }
}

impl fmt::Display for Sizing {
    /// `λ 300/s x S 20.0ms = load 6.00, target 0.70 -> 9 workers`, with
    /// ` (p99 wait <= 50.0ms: 4 workers)` when the wait target needs more and
    /// ` (backlog 1800 drains in 5s: 14 workers)` when draining needs more still;
    /// `λ 300/s x latency 1s / target 0.70 -> capacity 429`. The load (or λ) has as many
    /// decimals as it takes for the count to follow from the figures as printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sizing::Workers {
                arrival_rate,
                service_time,
                target,
                for_load,
                target_wait,
                for_wait,
                backlog,
                drain_time,
                for_drain,
                shifted,
            } => {
                let target_text = exact(*target, 2);
                let t: f64 = target_text.parse().unwrap_or(*target);
                let load = arrival_rate * service_time.as_secs_f64();
                let load_text = consistent(load, 2, |l| count(l / t) == *for_load);
                let plural = |n: usize| if n == 1 { "worker" } else { "workers" };
                write!(
                    f,
                    "λ {}/s x S {} = load {load_text}, target {target_text} -> {for_load} {}",
                    rate(*arrival_rate),
                    Millis(*service_time),
                    plural(*for_load)
                )?;
                if for_wait > for_load {
                    write!(
                        f,
                        " (p99 wait <= {}: {for_wait} {})",
                        Millis(*target_wait),
                        plural(*for_wait)
                    )?;
                }
                if *for_drain > (*for_load).max(*for_wait) {
                    write!(
                        f,
                        " (backlog {backlog:.0} drains in {}: {for_drain} {})",
                        Secs(*drain_time),
                        plural(*for_drain)
                    )?;
                }
                if let Some((z, error, count)) = shifted {
                    write!(
                        f,
                        " (load uncertain by ±{:.1}%; {:.1} error {}: {count} {})",
                        error * 100.0,
                        z.abs(),
                        if *z < 0.0 { "below" } else { "above" },
                        plural(*count)
                    )?;
                }
                Ok(())
            }
            Sizing::Capacity {
                arrival_rate,
                latency,
                target,
                capacity,
                shifted,
            } => {
                let target_text = exact(*target, 2);
                let t: f64 = target_text.parse().unwrap_or(*target);
                let l = latency.as_secs_f64();
                let decimals = rate_decimals(*arrival_rate);
                let rate_text =
                    consistent(*arrival_rate, decimals, |r| count(r * l / t) == *capacity);
                write!(
                    f,
                    "λ {rate_text}/s x latency {} / target {target_text} -> capacity {capacity}",
                    Secs(*latency)
                )?;
                if let Some((z, error, shifted)) = shifted {
                    write!(
                        f,
                        " (λ uncertain by ±{:.1}%; {:.1} error {}: capacity {shifted})",
                        error * 100.0,
                        z.abs(),
                        if *z < 0.0 { "below" } else { "above" },
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// A rate with 0, 1 or 2 decimals by size.
fn rate(value: f64) -> String {
    format!("{value:.*}", rate_decimals(value))
}

fn rate_decimals(value: f64) -> usize {
    if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    }
}

/// A service time in milliseconds below a second (`20.0ms`), else seconds.
struct Millis(Duration);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs_f64();
        if secs >= 1.0 {
            write!(f, "{secs:.2}s")
        } else if secs >= 0.001 {
            write!(f, "{:.1}ms", secs * 1e3)
        } else {
            write!(f, "{:.1}µs", secs * 1e6)
        }
    }
}

/// `ceil` with the model's float slack.
fn count(x: f64) -> usize {
    super::model::ceil(x)
}

/// `value` with at least `decimals` decimals, more (up to 6) until the text reads back
/// as the value.
fn exact(value: f64, decimals: usize) -> String {
    consistent(value, decimals, |v| {
        (v - value).abs() <= value.abs() * 1e-12
    })
}

/// `value` with at least `decimals` decimals, more (up to 6) until `holds` is true of
/// the value as printed (the last try if it never is).
fn consistent(value: f64, decimals: usize, holds: impl Fn(f64) -> bool) -> String {
    let mut text = format!("{value:.decimals$}");
    for d in decimals..=6 {
        text = format!("{value:.d$}");
        if text.parse::<f64>().is_ok_and(&holds) {
            break;
        }
    }
    text
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
        from: OverflowPolicy,
        /// The mode to set.
        to: OverflowPolicy,
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

    /// The knob's value before and after, as text (for structured logs): capacities and
    /// worker counts as numbers, rates as `12.5/s` or `unlimited`, modes by name.
    ///
    /// ```
    /// use pipeline_controller::policy::Change;
    ///
    /// let change = Change::SetPublishRate { from: None, to: Some(80.0) };
    /// assert_eq!(change.values(), ("unlimited".to_owned(), "80.0/s".to_owned()));
    /// ```
    pub fn values(&self) -> (String, String) {
        match self {
            Change::ResizeBuffer { from, to, .. } | Change::ResizePool { from, to, .. } => {
                (from.to_string(), to.to_string())
            }
            Change::SetPublishRate { from, to } => (Rate(*from).to_string(), Rate(*to).to_string()),
            Change::SetOverflow { from, to, .. } => (from.to_string(), to.to_string()),
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

/// Why an action or a transition happened: the rule, how the queueing model sized the
/// knob (for rules that use it), and the readings that crossed their thresholds (the
/// first one is the trigger; any further ones are the conditions that chose this rule
/// over another).
///
/// # Examples
///
/// ```
/// use pipeline_controller::policy::{Condition, Reading, Reason, Rule, Threshold};
///
/// let reason = Reason {
///     rule: Rule::GrowBuffer,
///     conditions: vec![Condition::above(
///         Reading::Saturation { buffer: "orders".into() },
///         0.92,
///         Threshold::TargetSaturation,
///         0.7,
///     )],
///     sizing: None,
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
    /// How the queueing model sized the knob, for rules that use it.
    pub sizing: Option<Sizing>,
}

impl fmt::Display for Reason {
    /// `<rule>: <sizing> and <condition> and <condition>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.rule)?;
        write_reason(f, self, None)
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
    /// `reading value > threshold threshold_value`, not held.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_controller::policy::{Condition, Reading, Threshold};
    /// use std::time::Duration;
    ///
    /// let c = Condition::below(
    ///     Reading::Utilisation { pool: "orders".into() },
    ///     0.12,
    ///     Threshold::LowUtilisation,
    ///     0.3,
    /// )
    /// .held_for(Duration::from_secs(30));
    /// assert_eq!(c.to_string(), "pool orders utilisation 0.12 < low 0.30 for 30s");
    /// ```
    pub fn above(reading: Reading, value: f64, threshold: Threshold, threshold_value: f64) -> Self {
        Condition::compare(
            reading,
            value,
            Comparison::Above,
            threshold,
            threshold_value,
        )
    }

    /// `reading value >= threshold threshold_value`, not held.
    pub fn at_or_above(
        reading: Reading,
        value: f64,
        threshold: Threshold,
        threshold_value: f64,
    ) -> Self {
        Condition::compare(
            reading,
            value,
            Comparison::AtOrAbove,
            threshold,
            threshold_value,
        )
    }

    /// `reading value < threshold threshold_value`, not held.
    pub fn below(reading: Reading, value: f64, threshold: Threshold, threshold_value: f64) -> Self {
        Condition::compare(
            reading,
            value,
            Comparison::Below,
            threshold,
            threshold_value,
        )
    }

    /// `reading value <= threshold threshold_value`, not held.
    pub fn at_or_below(
        reading: Reading,
        value: f64,
        threshold: Threshold,
        threshold_value: f64,
    ) -> Self {
        Condition::compare(
            reading,
            value,
            Comparison::AtOrBelow,
            threshold,
            threshold_value,
        )
    }

    /// A condition with any comparison, not held.
    pub fn compare(
        reading: Reading,
        value: f64,
        comparison: Comparison,
        threshold: Threshold,
        threshold_value: f64,
    ) -> Self {
        Condition {
            reading,
            value,
            comparison,
            threshold,
            threshold_value,
            held_for: None,
        }
    }

    /// The same condition, held for `held`.
    #[must_use]
    pub fn held_for(mut self, held: Duration) -> Self {
        self.held_for = Some(held);
        self
    }

    fn write(&self, f: &mut fmt::Formatter<'_>, own: Option<&str>) -> fmt::Result {
        self.reading.write(f, own)?;
        let (value, threshold) = self.texts();
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

    /// The value and the threshold as text, with more decimals when the reading's
    /// usual number would make the comparison false as printed (never
    /// "0.30 < low 0.30").
    fn texts(&self) -> (String, String) {
        let holds = |a: f64, b: f64| match self.comparison {
            Comparison::Above => a > b,
            Comparison::AtOrAbove => a >= b,
            Comparison::Below => a < b,
            Comparison::AtOrBelow => a <= b,
        };
        let usual = (
            self.reading.format(self.value, 0),
            self.reading.format(self.threshold_value, 0),
        );
        if !holds(self.value, self.threshold_value) {
            return usual;
        }
        for extra in 0..=6 {
            let (a, b) = (
                self.reading.format(self.value, extra),
                self.reading.format(self.threshold_value, extra),
            );
            if let (Some(x), Some(y)) = (number(&a), number(&b)) {
                if holds(x, y) {
                    return (a, b);
                }
            } else {
                return usual;
            }
        }
        usual
    }
}

/// The number at the start of a formatted value (`"24.1/s"` -> 24.1).
fn number(text: &str) -> Option<f64> {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(text.len());
    text[..end].parse().ok()
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
    /// The highest recommendation of the model over the stabilisation window for a
    /// pool's workers, at least the current one.
    RecommendedWorkers {
        /// The pool.
        pool: String,
    },
    /// The highest recommendation over the stabilisation window for a buffer's
    /// capacity, at least the current one.
    RecommendedCapacity {
        /// The buffer.
        buffer: String,
    },
    /// Cores the workers would use all busy: each worker counts as the share of a core
    /// its pool's handler uses (measured), or `1 / workers_per_core` (not measured).
    WorkerCores,
    /// Events per second reaching a stage: λ, less what the publish-rate limit holds
    /// back.
    Arrivals {
        /// The pool.
        pool: String,
    },
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
            Reading::RecommendedWorkers { pool } => ("recommendation", Some(pool), "pool"),
            Reading::RecommendedCapacity { buffer } => ("recommendation", Some(buffer), "buffer"),
            Reading::WorkerCores => ("worker cores", None, ""),
            Reading::Arrivals { pool } => ("arrivals", Some(pool), "pool"),
        };
        match name {
            Some(name) if Some(name.as_str()) != own => write!(f, "{kind} {name} {what}"),
            _ => f.write_str(what),
        }
    }

    /// A value of this reading as text: shares with two decimals, counts whole, rates
    /// with one decimal and `/s`, pressure with one decimal and `%`; `extra` more
    /// decimals (for values whose comparison the usual ones would hide).
    fn format(&self, value: f64, extra: usize) -> String {
        match self {
            Reading::Capacity { .. }
            | Reading::Backlog { .. }
            | Reading::RecommendedWorkers { .. }
            | Reading::RecommendedCapacity { .. }
                if value.fract() == 0.0 =>
            {
                format!("{value:.0}")
            }
            Reading::Workers if value.fract() == 0.0 => format!("{value:.0}"),
            Reading::Capacity { .. }
            | Reading::Backlog { .. }
            | Reading::RecommendedWorkers { .. }
            | Reading::RecommendedCapacity { .. } => format!("{value:.*}", extra),
            Reading::Demand | Reading::Arrivals { .. } => format!("{value:.*}/s", 1 + extra),
            Reading::Pressure => format!("{value:.*}%", 1 + extra),
            _ => format!("{value:.*}", 2 + extra),
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
    /// The pool's current worker count.
    Workers,
    /// The buffer's current capacity.
    CurrentCapacity,
    /// Events per second the pool's workers take when all busy (`workers / S`).
    ServiceRate,
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
            | Threshold::PublishRate
            | Threshold::Workers
            | Threshold::CurrentCapacity
            | Threshold::ServiceRate => return None,
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
            Threshold::Workers => "workers",
            Threshold::CurrentCapacity => "capacity",
            Threshold::ServiceRate => "service rate",
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
    /// A buffer is above its target saturation and its growth fits: grow it. With the
    /// queueing model: the capacity for λ is clearly above the current one (grow to
    /// it), or the buffer has stayed saturated while its stage cannot keep up (grow by
    /// `growth_factor`).
    GrowBuffer,
    /// A buffer is above its target saturation and cannot grow (at its max, over the
    /// budget, or memory above caution): cut the publish rate by `rate_decrease_factor`.
    Throttle,
    /// A pool is busy above target, its backlog is not shrinking, errors are low, memory
    /// and CPU allow: add workers. With the queueing model: even the low end of the
    /// estimate's band needs more workers than the pool has; go to the model's count.
    ScaleUp,
    /// At the CPU cap, a pool with work waiting has no worker: move one to it from the
    /// least utilised pool that can spare one.
    Rebalance,
    /// A buffer stayed below its low saturation for the stabilisation window: shrink it.
    /// With the queueing model: every recommendation over the window was below the
    /// capacity; shrink to the highest.
    ShrinkBuffer,
    /// A pool stayed below its low utilisation for the stabilisation window: remove a
    /// worker. With the queueing model: every recommendation over the window was below
    /// the count; go down to the highest.
    ScaleDown,
    /// Within a few decisions of a scale-up sized by the model, the count follows the
    /// model's count as the readings after a step firm up the estimate, either way.
    Refine,
    /// Pressure has been gone for the stabilisation window: raise the publish rate by a
    /// step (at most halfway to a recent ceiling), or lift it once publishers offer
    /// clearly less than it.
    RaiseRate,
}

impl Rule {
    /// Every rule, in priority order (to register its metrics before it first acts).
    pub const ALL: [Rule; 17] = [
        Rule::EnterDefensive,
        Rule::LeaveDefensive,
        Rule::DefensiveShrink,
        Rule::DefensiveThrottle,
        Rule::DefensiveDrop,
        Rule::DefensiveScaleDown,
        Rule::RestoreOverflow,
        Rule::OverBudget,
        Rule::CpuCap,
        Rule::GrowBuffer,
        Rule::Throttle,
        Rule::ScaleUp,
        Rule::Rebalance,
        Rule::ShrinkBuffer,
        Rule::ScaleDown,
        Rule::Refine,
        Rule::RaiseRate,
    ];

    /// The rule's name in snake case, the `rule` label of the controller's metrics
    /// (Prometheus label values by convention): `grow_buffer`, `scale_up`, ...
    ///
    /// ```
    /// use pipeline_controller::policy::Rule;
    ///
    /// assert_eq!(Rule::GrowBuffer.label(), "grow_buffer");
    /// assert_eq!(Rule::DefensiveScaleDown.label(), "defensive_scale_down");
    /// ```
    pub fn label(self) -> &'static str {
        match self {
            Rule::EnterDefensive => "enter_defensive",
            Rule::LeaveDefensive => "leave_defensive",
            Rule::DefensiveShrink => "defensive_shrink",
            Rule::DefensiveThrottle => "defensive_throttle",
            Rule::DefensiveDrop => "defensive_drop",
            Rule::DefensiveScaleDown => "defensive_scale_down",
            Rule::RestoreOverflow => "restore_overflow",
            Rule::OverBudget => "over_budget",
            Rule::CpuCap => "cpu_cap",
            Rule::GrowBuffer => "grow_buffer",
            Rule::Throttle => "throttle",
            Rule::ScaleUp => "scale_up",
            Rule::Rebalance => "rebalance",
            Rule::ShrinkBuffer => "shrink_buffer",
            Rule::ScaleDown => "scale_down",
            Rule::Refine => "refine",
            Rule::RaiseRate => "raise_rate",
        }
    }

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
            Rule::Refine => "refine",
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
