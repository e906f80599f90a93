//! The policy's thresholds, factors, windows and cooldowns.

use std::fmt;
use std::time::Duration;

/// Every number the policy decides with. `Default` holds the defaults of seed 003 and
/// issue 5; each field's doc gives its unit, default and range, and `docs/controller.md`
/// names the scenario that backs it.
///
/// Build one by changing the defaults with the setters, then let
/// [`HysteresisPolicy::new`](super::HysteresisPolicy::new) (or
/// [`validate`](PolicyConfig::validate)) check it.
///
/// # Examples
///
/// ```
/// use pipeline_controller::policy::{HysteresisPolicy, PolicyConfig};
/// use std::time::Duration;
///
/// let config = PolicyConfig::default()
///     .cooldown(Duration::from_secs(10))
///     .workers_per_core(4.0); // I/O-bound handlers: four workers per core
/// let policy = HysteresisPolicy::new(config)?;
/// assert_eq!(policy.config().cooldown, Duration::from_secs(10));
///
/// let err = PolicyConfig::default().defensive_exit(0.95).validate().unwrap_err();
/// assert_eq!(err.field(), "defensive_exit");
/// assert_eq!(err.to_string(), "defensive_exit = 0.95: must be below memory_critical (0.9)");
/// # Ok::<(), pipeline_controller::policy::PolicyConfigError>(())
/// ```
///
/// In a configuration file it is the `policy` section (see [`crate::config`]); durations
/// are written as human strings (`"500ms"`, `"30s"`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Memory share of the limit at or above which the policy turns `Defensive`.
    /// Default 0.90; range (0, 1].
    pub memory_critical: f64,
    /// PSI "some" avg10 (percent) at or above which the policy turns `Defensive`, even
    /// below `memory_critical` (the kernel is already reclaiming hard).
    /// Default 20.0; range (0, 100].
    pub psi_critical: f64,
    /// Memory share below which `Defensive` may end. Default 0.78; range (0,
    /// `memory_critical`).
    pub defensive_exit: f64,
    /// PSI "some" avg10 (percent) below which `Defensive` may end. Default 10.0; range
    /// (0, `psi_critical`).
    pub psi_exit: f64,
    /// How long memory and PSI must stay below their exit levels before `Defensive`
    /// ends. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub defensive_exit_hold: Duration,
    /// Memory share at or above which buffers stop growing (a saturated buffer throttles
    /// publishers instead), workers are not added and the rate is not raised.
    /// Default 0.75; range (0, `memory_critical`).
    pub memory_caution: f64,
    /// Saturation above which a buffer grows (or, when it cannot, publishers are
    /// throttled). Default 0.7; range (`low_saturation`, 1].
    pub target_saturation: f64,
    /// Saturation below which a buffer counts as under-used; one that stays under-used
    /// for `stabilisation_window` shrinks. Default 0.3; range (0, `relief_saturation`).
    pub low_saturation: f64,
    /// Every buffer must stay below this saturation (with memory below caution and PSI
    /// below `psi_exit`) for `stabilisation_window` before the rate is raised: the gap
    /// to `target_saturation` keeps a raise from re-saturating at once.
    /// Default 0.5; range (`low_saturation`, `target_saturation`].
    pub relief_saturation: f64,
    /// Capacity multiplier of one growth step. Default 1.5; range (1,
    /// `target_saturation / low_saturation`], so a grown buffer is not under-used.
    pub growth_factor: f64,
    /// Capacity multiplier of one shrink step. Default 0.75; range
    /// [`low_saturation / target_saturation`, 1), so a shrunk buffer is not saturated.
    pub shrink_factor: f64,
    /// Capacity multiplier of one defensive shrink step (once per tick while memory is
    /// critical, never below the buffer's minimum). Default 0.5; range (0, 1).
    pub defensive_shrink_factor: f64,
    /// Share of the memory limit all buffers together may hold when full (the sum of
    /// `capacity * bytes_per_event`). Default 0.5; range (0, 1].
    pub buffer_budget: f64,
    /// Smallest capacity change made, as a share of the capacity (and at least one
    /// slot), unless the change reaches the buffer's min or max; also the smallest raise
    /// toward a rate ceiling, as a share of the rate. Default 0.1; range [0, 1).
    pub resize_tolerance: f64,
    /// Rate multiplier of one throttle step. Default 0.8; range (0, 1).
    pub rate_decrease_factor: f64,
    /// Rate multiplier of one defensive throttle step (once per tick while memory is
    /// critical). Default 0.5; range (0, 1).
    pub defensive_rate_factor: f64,
    /// The lowest publish rate set, events per second. Default 10.0; range (0, inf).
    pub min_publish_rate: f64,
    /// One raise step as a share of the demand when throttling began. Default 0.1;
    /// range (0, 1].
    pub rate_increase_step: f64,
    /// How long a rate the policy had to cut (the buffers saturated at it) stays a
    /// ceiling: raises go at most halfway to it, and stop when the gap is below
    /// `resize_tolerance` of the rate. Afterwards (or once the rate is lifted) full steps
    /// probe again, in case the consumers got faster. Default 300 s (slow-consumer
    /// scenario: without it the rate saws between the sustainable rate and a step
    /// above it).
    #[serde(with = "humantime_serde")]
    pub rate_ceiling_hold: Duration,
    /// The utilisation pools are sized for. With the queueing model (λ and S measured)
    /// a pool gets the smallest count `c` with `λS / c <= target_utilisation`; before
    /// that, utilisation above it adds workers. Default 0.7; range
    /// (`low_utilisation`, 1].
    pub target_utilisation: f64,
    /// Before the model has readings: utilisation below which a pool counts as idle;
    /// one idle for `stabilisation_window` loses a worker. Default 0.3; range (0,
    /// `target_utilisation`).
    pub low_utilisation: f64,
    /// Error rate at or above which workers are not added (failing is not being busy).
    /// Default 0.05; range [0, 1].
    pub max_error_rate: f64,
    /// Workers allowed per core of the CPU limit, across all pools, for pools whose CPU
    /// time per event is not measured: 1.0 for CPU-bound handlers, more for I/O-bound
    /// ones. A pool whose CPU time per event is measured counts each worker as the share
    /// of a core it uses when busy (`cpu_per_event / service_time`) instead, so
    /// sleeping handlers may run many more workers than cores. Default 1.0; range (0,
    /// inf).
    pub workers_per_core: f64,
    /// Before the model has readings: most workers one scale-up adds (the model reaches
    /// its count in one decision). Default 4; range [1, inf).
    pub max_scale_up_step: usize,
    /// Before the model has readings: workers one scale-down removes (the model goes to
    /// its count in one decision). Default 1; range [1, inf).
    pub scale_down_step: usize,
    /// How long a buffer must stay under-used, a pool idle, or pressure gone, before
    /// the buffer shrinks, the pool loses workers or the rate is raised; the window
    /// restarts when the knob changes. Buffers and pools go down to the highest
    /// recommendation over the window, as in the Kubernetes HPA. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub stabilisation_window: Duration,
    /// Least time between two changes of one knob in one direction by the rules that
    /// move by steps and wait for the effect: saturation growth, throttling, raises,
    /// and scale-up before the model has readings. Defensive and limit rules ignore it,
    /// and so do growth and scale-up sized by the model, whose band is their hysteresis.
    /// Default 30 s.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// The time within which a backlog (buffered events plus demand waiting outside the
    /// buffer) should be cleared: the model adds the workers that, fully busy, keep up
    /// with arrivals and clear it in this time. Default 5 s; range (0, inf).
    #[serde(with = "humantime_serde")]
    pub drain_time: Duration,
    /// The buffer's share of queueing latency: the model sizes a buffer so that at
    /// `target_saturation` it holds this long of arrivals (`capacity = λ x
    /// target_latency / target_saturation`). Default 1 s; range (0, inf).
    #[serde(with = "humantime_serde")]
    pub target_latency: Duration,
    /// A target for the p99 time an event waits for a worker: the model then sizes a
    /// pool with at least the fewest workers whose p99 wait in M/M/c (Erlang C) is
    /// within it, on top of `target_utilisation`. Utilisation alone holds the wait at
    /// a few service times; a wait target asks for less at low loads (at load 2 with
    /// S = 20 ms, 3 workers wait up to 76 ms at p99, 4 up to 29 ms). Default 0: none.
    #[serde(with = "humantime_serde")]
    pub target_wait: Duration,
    /// Time constant of the model's smoothing of λ, S and CPU per event readings:
    /// noise shrinks by about `sqrt(interval / (2 x model_smoothing))`; level shifts
    /// (a reading 6 standard deviations away, or two 3 away) are taken at once.
    /// Default 20 s; 0 uses each reading as it is.
    #[serde(with = "humantime_serde")]
    pub model_smoothing: Duration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            memory_critical: 0.90,
            psi_critical: 20.0,
            defensive_exit: 0.78,
            psi_exit: 10.0,
            defensive_exit_hold: Duration::from_secs(10),
            memory_caution: 0.75,
            target_saturation: 0.7,
            low_saturation: 0.3,
            relief_saturation: 0.5,
            growth_factor: 1.5,
            shrink_factor: 0.75,
            defensive_shrink_factor: 0.5,
            buffer_budget: 0.5,
            resize_tolerance: 0.1,
            rate_decrease_factor: 0.8,
            defensive_rate_factor: 0.5,
            min_publish_rate: 10.0,
            rate_increase_step: 0.1,
            rate_ceiling_hold: Duration::from_secs(300),
            target_utilisation: 0.7,
            low_utilisation: 0.3,
            max_error_rate: 0.05,
            workers_per_core: 1.0,
            max_scale_up_step: 4,
            scale_down_step: 1,
            stabilisation_window: Duration::from_secs(30),
            cooldown: Duration::from_secs(30),
            drain_time: Duration::from_secs(5),
            target_latency: Duration::from_secs(1),
            target_wait: Duration::ZERO,
            model_smoothing: Duration::from_secs(20),
        }
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $field:ident: $ty:ty;)*) => {
        impl PolicyConfig {
            $(
                $(#[$doc])*
                #[must_use]
                pub fn $field(mut self, value: $ty) -> Self {
                    self.$field = value;
                    self
                }
            )*
        }
    };
}

setters! {
    /// Sets [`memory_critical`](PolicyConfig::memory_critical).
    memory_critical: f64;
    /// Sets [`psi_critical`](PolicyConfig::psi_critical).
    psi_critical: f64;
    /// Sets [`defensive_exit`](PolicyConfig::defensive_exit).
    defensive_exit: f64;
    /// Sets [`psi_exit`](PolicyConfig::psi_exit).
    psi_exit: f64;
    /// Sets [`defensive_exit_hold`](PolicyConfig::defensive_exit_hold).
    defensive_exit_hold: Duration;
    /// Sets [`memory_caution`](PolicyConfig::memory_caution).
    memory_caution: f64;
    /// Sets [`target_saturation`](PolicyConfig::target_saturation).
    target_saturation: f64;
    /// Sets [`low_saturation`](PolicyConfig::low_saturation).
    low_saturation: f64;
    /// Sets [`relief_saturation`](PolicyConfig::relief_saturation).
    relief_saturation: f64;
    /// Sets [`growth_factor`](PolicyConfig::growth_factor).
    growth_factor: f64;
    /// Sets [`shrink_factor`](PolicyConfig::shrink_factor).
    shrink_factor: f64;
    /// Sets [`defensive_shrink_factor`](PolicyConfig::defensive_shrink_factor).
    defensive_shrink_factor: f64;
    /// Sets [`buffer_budget`](PolicyConfig::buffer_budget).
    buffer_budget: f64;
    /// Sets [`resize_tolerance`](PolicyConfig::resize_tolerance).
    resize_tolerance: f64;
    /// Sets [`rate_decrease_factor`](PolicyConfig::rate_decrease_factor).
    rate_decrease_factor: f64;
    /// Sets [`defensive_rate_factor`](PolicyConfig::defensive_rate_factor).
    defensive_rate_factor: f64;
    /// Sets [`min_publish_rate`](PolicyConfig::min_publish_rate).
    min_publish_rate: f64;
    /// Sets [`rate_increase_step`](PolicyConfig::rate_increase_step).
    rate_increase_step: f64;
    /// Sets [`rate_ceiling_hold`](PolicyConfig::rate_ceiling_hold).
    rate_ceiling_hold: Duration;
    /// Sets [`target_utilisation`](PolicyConfig::target_utilisation).
    target_utilisation: f64;
    /// Sets [`low_utilisation`](PolicyConfig::low_utilisation).
    low_utilisation: f64;
    /// Sets [`max_error_rate`](PolicyConfig::max_error_rate).
    max_error_rate: f64;
    /// Sets [`workers_per_core`](PolicyConfig::workers_per_core).
    workers_per_core: f64;
    /// Sets [`max_scale_up_step`](PolicyConfig::max_scale_up_step).
    max_scale_up_step: usize;
    /// Sets [`scale_down_step`](PolicyConfig::scale_down_step).
    scale_down_step: usize;
    /// Sets [`stabilisation_window`](PolicyConfig::stabilisation_window).
    stabilisation_window: Duration;
    /// Sets [`cooldown`](PolicyConfig::cooldown).
    cooldown: Duration;
    /// Sets [`drain_time`](PolicyConfig::drain_time).
    drain_time: Duration;
    /// Sets [`target_latency`](PolicyConfig::target_latency).
    target_latency: Duration;
    /// Sets [`target_wait`](PolicyConfig::target_wait).
    target_wait: Duration;
    /// Sets [`model_smoothing`](PolicyConfig::model_smoothing).
    model_smoothing: Duration;
}

impl PolicyConfig {
    /// Checks every field's range and the relations between fields.
    ///
    /// # Errors
    ///
    /// The first field that breaks a rule, as a [`PolicyConfigError`] naming the field,
    /// its value and the rule.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_controller::policy::PolicyConfig;
    ///
    /// assert!(PolicyConfig::default().validate().is_ok());
    /// let err = PolicyConfig::default().growth_factor(3.0).validate().unwrap_err();
    /// assert_eq!(err.field(), "growth_factor");
    /// assert_eq!(err.rule(), "must be at most target_saturation / low_saturation (2.33)");
    /// ```
    pub fn validate(&self) -> Result<(), PolicyConfigError> {
        match self.problems().into_iter().next() {
            Some(first) => Err(first),
            None => Ok(()),
        }
    }

    /// Every rule this configuration breaks, in the order [`validate`](Self::validate)
    /// checks them (its error is the first of these); empty when it is valid.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_controller::policy::PolicyConfig;
    ///
    /// let bad = PolicyConfig::default().growth_factor(0.5).max_error_rate(2.0);
    /// let fields: Vec<_> = bad.problems().iter().map(|e| e.field()).collect();
    /// assert_eq!(fields, ["growth_factor", "max_error_rate"]);
    /// ```
    pub fn problems(&self) -> Vec<PolicyConfigError> {
        RANGES
            .iter()
            .filter_map(|&(field, range)| {
                let value = self.value(field);
                let rule = Range::parse(range).broken_by(value, |name| self.value(name))?;
                Some(PolicyConfigError {
                    field,
                    value: value.to_string(),
                    rule,
                })
            })
            .collect()
    }

    /// A numeric field by name (durations in seconds), for [`RANGES`].
    fn value(&self, field: &str) -> f64 {
        let c = self;
        match field {
            "memory_critical" => c.memory_critical,
            "psi_critical" => c.psi_critical,
            "defensive_exit" => c.defensive_exit,
            "psi_exit" => c.psi_exit,
            "defensive_exit_hold" => c.defensive_exit_hold.as_secs_f64(),
            "memory_caution" => c.memory_caution,
            "target_saturation" => c.target_saturation,
            "low_saturation" => c.low_saturation,
            "relief_saturation" => c.relief_saturation,
            "growth_factor" => c.growth_factor,
            "shrink_factor" => c.shrink_factor,
            "defensive_shrink_factor" => c.defensive_shrink_factor,
            "buffer_budget" => c.buffer_budget,
            "resize_tolerance" => c.resize_tolerance,
            "rate_decrease_factor" => c.rate_decrease_factor,
            "defensive_rate_factor" => c.defensive_rate_factor,
            "min_publish_rate" => c.min_publish_rate,
            "rate_increase_step" => c.rate_increase_step,
            "rate_ceiling_hold" => c.rate_ceiling_hold.as_secs_f64(),
            "target_utilisation" => c.target_utilisation,
            "low_utilisation" => c.low_utilisation,
            "max_error_rate" => c.max_error_rate,
            "workers_per_core" => c.workers_per_core,
            "max_scale_up_step" => c.max_scale_up_step as f64,
            "scale_down_step" => c.scale_down_step as f64,
            "stabilisation_window" => c.stabilisation_window.as_secs_f64(),
            "cooldown" => c.cooldown.as_secs_f64(),
            "drain_time" => c.drain_time.as_secs_f64(),
            "target_latency" => c.target_latency.as_secs_f64(),
            "target_wait" => c.target_wait.as_secs_f64(),
            "model_smoothing" => c.model_smoothing.as_secs_f64(),
            other => unreachable!("RANGES names a field PolicyConfig lacks: {other}"),
        }
    }
}

/// Every field's valid range, stated once: [`PolicyConfig::problems`] checks a
/// configuration against these, and the configuration's parameter table
/// (`config::PARAMETERS`, `docs/configuration.md`) prints them. A bound is a number,
/// `inf`, another field, or a ratio of two fields; each relation between two fields is
/// stated on one of them only, so one mistake is one error. In checking order.
pub(crate) const RANGES: &[(&str, &str)] = &[
    ("memory_critical", "(0, 1]"),
    ("psi_critical", "(0, 100]"),
    ("defensive_exit", "(0, memory_critical)"),
    ("psi_exit", "(0, psi_critical)"),
    ("defensive_exit_hold", ">= 0"),
    ("memory_caution", "(0, memory_critical)"),
    ("target_saturation", "(0, 1]"),
    ("low_saturation", "(0, relief_saturation)"),
    // A grown buffer must not count as under-used, nor a shrunk one as saturated, or
    // the two rules would undo each other under constant load.
    ("relief_saturation", "(0, target_saturation]"),
    ("growth_factor", "(1, target_saturation / low_saturation]"),
    ("shrink_factor", "[low_saturation / target_saturation, 1)"),
    ("defensive_shrink_factor", "(0, 1)"),
    ("buffer_budget", "(0, 1]"),
    ("resize_tolerance", "[0, 1)"),
    ("rate_decrease_factor", "(0, 1)"),
    ("defensive_rate_factor", "(0, 1)"),
    ("min_publish_rate", "(0, inf)"),
    ("rate_increase_step", "(0, 1]"),
    ("rate_ceiling_hold", ">= 0"),
    ("target_utilisation", "(0, 1]"),
    ("low_utilisation", "(0, target_utilisation)"),
    ("max_error_rate", "[0, 1]"),
    ("workers_per_core", "(0, inf)"),
    ("max_scale_up_step", "[1, inf)"),
    ("scale_down_step", "[1, inf)"),
    ("stabilisation_window", ">= 0"),
    ("cooldown", ">= 0"),
    ("drain_time", "> 0"),
    ("target_latency", "> 0"),
    ("target_wait", ">= 0"),
    ("model_smoothing", ">= 0"),
];

/// The range of `field` in [`RANGES`]; a compile error where used in a constant for a
/// field that has none.
pub(crate) const fn range_of(field: &str) -> &'static str {
    let mut i = 0;
    while i < RANGES.len() {
        if str_eq(RANGES[i].0, field) {
            return RANGES[i].1;
        }
        i += 1;
    }
    panic!("a PolicyConfig field without a range in RANGES")
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// One bound of a range.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Bound {
    Number(f64),
    Field(&'static str),
    Ratio(&'static str, &'static str),
}

impl Bound {
    fn parse(text: &'static str) -> Bound {
        let text = text.trim();
        if let Ok(number) = text.parse::<f64>() {
            return Bound::Number(number);
        }
        match text.split_once(" / ") {
            Some((a, b)) => Bound::Ratio(a, b),
            None => Bound::Field(text),
        }
    }

    fn value(self, field: impl Fn(&str) -> f64) -> f64 {
        match self {
            Bound::Number(n) => n,
            Bound::Field(name) => field(name),
            Bound::Ratio(a, b) => field(a) / field(b),
        }
    }

    /// As an error names it: `1`, `memory_critical (0.9)`, `a / b (2.33)`.
    fn describe(self, value: f64) -> String {
        match self {
            Bound::Number(n) => n.to_string(),
            Bound::Field(name) => format!("{name} ({value})"),
            Bound::Ratio(a, b) => format!("{a} / {b} ({value:.2})"),
        }
    }
}

/// A parsed entry of [`RANGES`]: `(a, b]`-style intervals, or `> a` / `>= a`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Range {
    /// The lower bound and whether it is included.
    lower: (Bound, bool),
    /// The upper bound and whether it is included; `None`: unbounded.
    upper: Option<(Bound, bool)>,
    text: &'static str,
}

impl Range {
    fn parse(text: &'static str) -> Range {
        if let Some(lower) = text.strip_prefix(">= ") {
            return Range {
                lower: (Bound::parse(lower), true),
                upper: None,
                text,
            };
        }
        if let Some(lower) = text.strip_prefix("> ") {
            return Range {
                lower: (Bound::parse(lower), false),
                upper: None,
                text,
            };
        }
        let inner = &text[1..text.len() - 1];
        let (lower, upper) = inner.split_once(", ").expect("a range is `(a, b)`");
        let upper = (upper != "inf").then(|| (Bound::parse(upper), text.ends_with(']')));
        Range {
            lower: (Bound::parse(lower), text.starts_with('[')),
            upper,
            text,
        }
    }

    /// The rule `value` breaks, in words, or `None` when it is within the range.
    /// `field` reads the other fields the bounds name.
    fn broken_by(&self, value: f64, field: impl Fn(&str) -> f64 + Copy) -> Option<String> {
        let (lower, lower_in) = self.lower;
        let low = lower.value(field);
        let lower_ok = if lower_in { value >= low } else { value > low };
        let upper_ok = self.upper.is_none_or(|(upper, upper_in)| {
            let high = upper.value(field);
            if upper_in {
                value <= high
            } else {
                value < high
            }
        });
        let unbounded_ok = self.upper.is_some() || value.is_finite() || self.text.starts_with('>');
        if lower_ok && upper_ok && unbounded_ok {
            return None;
        }
        let numbers = |b: Bound| matches!(b, Bound::Number(_));
        Some(match self.upper {
            // Both ends numbers: the interval itself.
            Some((upper, _)) if numbers(lower) && numbers(upper) => {
                format!("must be in {}", self.text)
            }
            // `(a, inf)`: NaN and infinity are out too.
            None if !self.text.starts_with('>') && !lower_in => {
                format!("must be a finite number above {}", lower.describe(low))
            }
            Some((upper, upper_in)) if lower_ok => {
                let word = if upper_in { "at most" } else { "below" };
                format!("must be {word} {}", upper.describe(upper.value(field)))
            }
            _ => {
                let word = if lower_in { "at least" } else { "above" };
                format!("must be {word} {}", lower.describe(low))
            }
        })
    }
}

/// A [`PolicyConfig`] field out of its range, or out of order with another field.
///
/// # Examples
///
/// ```
/// use pipeline_controller::policy::PolicyConfig;
///
/// let err = PolicyConfig::default().memory_caution(0.95).validate().unwrap_err();
/// assert_eq!(err.field(), "memory_caution");
/// assert_eq!(err.value(), "0.95");
/// assert_eq!(err.rule(), "must be below memory_critical (0.9)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfigError {
    field: &'static str,
    value: String,
    rule: String,
}

impl PolicyConfigError {
    /// The field's name, as in [`PolicyConfig`].
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// The field's value, as text.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The rule it breaks.
    pub fn rule(&self) -> &str {
        &self.rule
    }
}

impl fmt::Display for PolicyConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}: {}", self.field, self.value, self.rule)
    }
}

impl std::error::Error for PolicyConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_every_field_once_and_name_only_fields() {
        let json = serde_json::to_value(PolicyConfig::default()).expect("serialisable");
        let fields: Vec<&String> = json.as_object().expect("an object").keys().collect();
        let mut named: Vec<&str> = RANGES.iter().map(|(field, _)| *field).collect();
        named.sort_unstable();
        let mut sorted: Vec<&str> = fields.iter().map(|f| f.as_str()).collect();
        sorted.sort_unstable();
        assert_eq!(named, sorted, "one range per PolicyConfig field");
        let config = PolicyConfig::default();
        for (field, text) in RANGES {
            let range = Range::parse(text);
            let mut bounds = vec![range.lower.0];
            bounds.extend(range.upper.map(|(b, _)| b));
            for bound in bounds {
                let names = match bound {
                    Bound::Number(n) => {
                        assert!(n.is_finite(), "{field}: {text}");
                        vec![]
                    }
                    Bound::Field(a) => vec![a],
                    Bound::Ratio(a, b) => vec![a, b],
                };
                for name in names {
                    assert!(sorted.contains(&name), "{field}: {text} names {name}");
                }
            }
            // The defaults are within every range.
            assert_eq!(
                range.broken_by(config.value(field), |f| config.value(f)),
                None,
                "{field}"
            );
        }
    }

    #[test]
    fn ranges_parse_with_their_inclusive_ends() {
        let r = Range::parse("[low_saturation / target_saturation, 1)");
        assert_eq!(
            r.lower,
            (Bound::Ratio("low_saturation", "target_saturation"), true)
        );
        assert_eq!(r.upper, Some((Bound::Number(1.0), false)));
        let r = Range::parse("> 0");
        assert_eq!((r.lower, r.upper), ((Bound::Number(0.0), false), None));
        let r = Range::parse("(0, inf)");
        assert_eq!(r.upper, None);
        let none = |_: &str| f64::NAN;
        assert_eq!(
            r.broken_by(f64::INFINITY, none).as_deref(),
            Some("must be a finite number above 0")
        );
        assert_eq!(r.broken_by(1e9, none), None);
        assert_eq!(Range::parse(">= 0").broken_by(0.0, none), None);
        assert_eq!(
            Range::parse("[1, inf)").broken_by(0.0, none).as_deref(),
            Some("must be at least 1")
        );
    }
}
