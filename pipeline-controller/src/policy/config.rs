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
    /// Time constant of the model's smoothing of λ, S and CPU per event readings:
    /// noise shrinks by about `sqrt(interval / (2 x model_smoothing))`; level shifts
    /// (a reading 6 standard deviations away, or two 3 away) are taken at once.
    /// Default 10 s; 0 uses each reading as it is.
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
        let c = self;
        let found = std::cell::RefCell::new(Vec::new());
        let check = |ok: bool, field: &'static str, value: f64, rule: String| {
            if !ok {
                found.borrow_mut().push(PolicyConfigError {
                    field,
                    value: value.to_string(),
                    rule,
                });
            }
        };
        let share = |field: &'static str, value: f64| {
            check(
                value > 0.0 && value <= 1.0,
                field,
                value,
                "must be in (0, 1]".into(),
            )
        };
        let factor_below_one = |field: &'static str, value: f64| {
            check(
                value > 0.0 && value < 1.0,
                field,
                value,
                "must be in (0, 1)".into(),
            )
        };
        let below = |field: &'static str, value: f64, other: &str, limit: f64| {
            check(
                value < limit,
                field,
                value,
                format!("must be below {other} ({limit})"),
            )
        };

        share("memory_critical", c.memory_critical);
        check(
            c.psi_critical > 0.0 && c.psi_critical <= 100.0,
            "psi_critical",
            c.psi_critical,
            "must be in (0, 100]".into(),
        );
        share("defensive_exit", c.defensive_exit);
        below(
            "defensive_exit",
            c.defensive_exit,
            "memory_critical",
            c.memory_critical,
        );
        check(
            c.psi_exit > 0.0,
            "psi_exit",
            c.psi_exit,
            "must be above 0".into(),
        );
        below("psi_exit", c.psi_exit, "psi_critical", c.psi_critical);
        share("memory_caution", c.memory_caution);
        below(
            "memory_caution",
            c.memory_caution,
            "memory_critical",
            c.memory_critical,
        );
        share("target_saturation", c.target_saturation);
        share("low_saturation", c.low_saturation);
        share("relief_saturation", c.relief_saturation);
        below(
            "low_saturation",
            c.low_saturation,
            "relief_saturation",
            c.relief_saturation,
        );
        check(
            c.relief_saturation <= c.target_saturation,
            "relief_saturation",
            c.relief_saturation,
            format!(
                "must be at most target_saturation ({})",
                c.target_saturation
            ),
        );
        // A grown buffer must not count as under-used, nor a shrunk one as saturated, or
        // the two rules would undo each other under constant load.
        let max_growth = c.target_saturation / c.low_saturation;
        check(
            c.growth_factor > 1.0 && c.growth_factor.is_finite(),
            "growth_factor",
            c.growth_factor,
            "must be above 1".into(),
        );
        check(
            c.growth_factor <= max_growth,
            "growth_factor",
            c.growth_factor,
            format!("must be at most target_saturation / low_saturation ({max_growth:.2})"),
        );
        factor_below_one("shrink_factor", c.shrink_factor);
        let min_shrink = c.low_saturation / c.target_saturation;
        check(
            c.shrink_factor >= min_shrink,
            "shrink_factor",
            c.shrink_factor,
            format!("must be at least low_saturation / target_saturation ({min_shrink:.2})"),
        );
        factor_below_one("defensive_shrink_factor", c.defensive_shrink_factor);
        share("buffer_budget", c.buffer_budget);
        check(
            (0.0..1.0).contains(&c.resize_tolerance),
            "resize_tolerance",
            c.resize_tolerance,
            "must be in [0, 1)".into(),
        );
        factor_below_one("rate_decrease_factor", c.rate_decrease_factor);
        factor_below_one("defensive_rate_factor", c.defensive_rate_factor);
        check(
            c.min_publish_rate > 0.0 && c.min_publish_rate.is_finite(),
            "min_publish_rate",
            c.min_publish_rate,
            "must be a finite number above 0".into(),
        );
        share("rate_increase_step", c.rate_increase_step);
        share("target_utilisation", c.target_utilisation);
        share("low_utilisation", c.low_utilisation);
        below(
            "low_utilisation",
            c.low_utilisation,
            "target_utilisation",
            c.target_utilisation,
        );
        check(
            (0.0..=1.0).contains(&c.max_error_rate),
            "max_error_rate",
            c.max_error_rate,
            "must be in [0, 1]".into(),
        );
        check(
            c.workers_per_core > 0.0 && c.workers_per_core.is_finite(),
            "workers_per_core",
            c.workers_per_core,
            "must be a finite number above 0".into(),
        );
        check(
            c.max_scale_up_step >= 1,
            "max_scale_up_step",
            c.max_scale_up_step as f64,
            "must be at least 1".into(),
        );
        check(
            c.scale_down_step >= 1,
            "scale_down_step",
            c.scale_down_step as f64,
            "must be at least 1".into(),
        );
        check(
            !c.drain_time.is_zero(),
            "drain_time",
            c.drain_time.as_secs_f64(),
            "must be above 0".into(),
        );
        check(
            !c.target_latency.is_zero(),
            "target_latency",
            c.target_latency.as_secs_f64(),
            "must be above 0".into(),
        );
        found.into_inner()
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
