//! The queueing model: per-pool estimates of the arrival rate λ, the service time S and
//! the CPU time per event, smoothed over ticks, and the worker counts and buffer
//! capacities they call for (Little's law, M/M/c at a target utilisation).
//!
//! Readings are noisy (a one-second count of Poisson arrivals at 100/s varies by 10%),
//! so each quantity goes through an [`Estimate`]: an exponentially weighted mean whose
//! time constant is `PolicyConfig::model_smoothing`, started as a running mean so the
//! first readings count fully, with a level-shift detector so a real step (a 10x burst)
//! is taken at once instead of being smoothed over ten ticks. The estimate also knows
//! its own standard error, which gives the band the policy's hysteresis uses: a pool
//! grows only when even the low end of the band needs more workers.

use std::time::Duration;

use super::config::PolicyConfig;

/// A reading further than this many standard deviations from the mean is a level
/// shift, taken at once.
const SHIFT_NOW: f64 = 6.0;
/// `CONFIRM_READINGS` readings in a row further than this many standard deviations, on
/// the same side, are a level shift too (taken as their average).
const SHIFT_CONFIRM: f64 = 3.0;
/// Three: two in a row beyond 3 deviations happen about once in 500 000 readings of a
/// steady load, three about once in 400 million.
const CONFIRM_READINGS: u32 = 3;
/// The noise of one reading is taken to be at least this share of the mean, whatever
/// the readings so far say (a few equal readings must not make the band vanish).
const REL_FLOOR: f64 = 0.02;
/// Readings needed before their spread is trusted over the floor.
const SPREAD_AFTER: u32 = 3;
/// Width of the band, in standard errors: growth needs the low end,
/// `estimate x (1 - Z x error)`, to call for more.
pub(crate) const Z: f64 = 2.0;
/// The band for a growth that turns a knob back up after its last change was down:
/// a reversal needs stronger evidence than a further step.
pub(crate) const Z_REVERSE: f64 = 3.0;
/// λ readings since the last level shift before the estimate is firm: until then a
/// tick's recommendation for the way down is the low end of the band, so the noise of
/// the first readings after a step does not hold workers for a window.
pub(crate) const FIRM_READINGS: u32 = 8;
/// Decisions after a growth or scale-up by the model during which the knob follows the
/// model's value both ways, as the readings after a step firm the estimate up.
pub(crate) const REFINE_TICKS: u32 = FIRM_READINGS;
/// A dead band above the target utilisation, relative: growth needs the load to exceed
/// what the workers carry at target by this much (besides the band of the estimate),
/// so a load on the boundary between two counts does not add a worker on noise...
pub(crate) const DEAD_BAND: f64 = 0.03;
/// ...but never by more than half a worker, so large pools still reach c* ± 1.
const MAX_DEAD_WORKERS: f64 = 0.5;
/// The dead band below: the way down to a count keeps one more unless the load is this
/// much below what the count carries at target...
const DOWN_DEAD_BAND: f64 = 0.01;
/// ...at most a quarter of a worker (a small pool near its count must still go down).
const MAX_DOWN_DEAD_WORKERS: f64 = 0.25;
/// Busy workers of an I/O-bound handler count as at least this share of a core.
pub(crate) const MIN_CPU_SHARE: f64 = 0.01;
/// Float slack for `ceil` of computed counts (`6.3 / 0.7` is 9.000000000000002).
const EPS: f64 = 1e-9;

/// One quantity's readings, smoothed, with the standard error of the result.
#[derive(Debug, Clone, Default)]
pub(crate) struct Estimate {
    mean: f64,
    /// Exponentially weighted mean of squared deviations of readings from the mean.
    spread: f64,
    /// Sum of squared weights of the readings in the mean: the mean's variance is
    /// `spread x w2` (1 after one reading, 1/n for a running mean of n, `a / (2 - a)`
    /// for a long exponential average).
    w2: f64,
    /// Readings since the start or the last level shift.
    n: u32,
    /// Readings beyond `SHIFT_CONFIRM` in a row, on one side: how many, their sum, the
    /// side.
    pending: Option<(u32, f64, f64)>,
    /// The noise floor given with the latest reading.
    floor: f64,
    /// Level shifts so far (a new level restarts the estimate).
    shifts: u64,
}

impl Estimate {
    /// The smoothed value, once there is a reading.
    pub(crate) fn value(&self) -> Option<f64> {
        (self.n > 0).then_some(self.mean)
    }

    /// Level shifts so far: a different count means a different level.
    pub(crate) fn level(&self) -> u64 {
        self.shifts
    }

    /// Readings since the last level shift (0: none yet).
    pub(crate) fn readings(&self) -> u32 {
        self.n
    }

    /// The noise of one reading: the readings' spread, at least `floor`.
    fn reading_sd(&self, floor: f64) -> f64 {
        let spread = if self.n >= SPREAD_AFTER {
            self.spread.max(0.0).sqrt()
        } else {
            0.0
        };
        spread
            .max(floor)
            .max(self.floor)
            .max(REL_FLOOR * self.mean.abs())
    }

    /// The standard error of the value relative to it (0 for a zero value).
    pub(crate) fn relative_error(&self, floor: f64) -> f64 {
        if self.n == 0 || self.mean <= 0.0 {
            return 0.0;
        }
        self.reading_sd(floor) * self.w2.sqrt() / self.mean
    }

    /// Folds in one reading. `alpha` is the weight of a new reading; with `warm_up`, at
    /// least `1 / n` for the n-th reading since the start or the last shift (a running
    /// mean until the exponential average takes over). `floor` is the least noise a
    /// reading is assumed to have (for arrival counts, the Poisson noise). Negative or
    /// non-finite readings are ignored. Returns whether the reading started a new
    /// level (the first reading, or a level shift).
    pub(crate) fn update(&mut self, x: f64, alpha: f64, floor: f64, warm_up: bool) -> bool {
        self.update_with(x, alpha, floor, warm_up, true)
    }

    /// [`update`](Self::update); without `jump`, a reading far away does not start a
    /// new level at once but needs the confirmation of `CONFIRM_READINGS` in a row.
    pub(crate) fn update_with(
        &mut self,
        x: f64,
        alpha: f64,
        floor: f64,
        warm_up: bool,
        jump: bool,
    ) -> bool {
        if !x.is_finite() || x < 0.0 {
            return false;
        }
        self.floor = if floor.is_finite() {
            floor.max(0.0)
        } else {
            0.0
        };
        if self.n == 0 {
            self.restart(x, 1);
            return true;
        }
        let sd = self.reading_sd(floor);
        let d = x - self.mean;
        if jump && d.abs() > SHIFT_NOW * sd {
            self.restart(x, 1);
            return true;
        }
        if d.abs() > SHIFT_CONFIRM * sd {
            let (count, sum) = match self.pending {
                Some((count, sum, side)) if side == d.signum() => (count + 1, sum + x),
                _ => (1, x),
            };
            if count >= CONFIRM_READINGS {
                self.restart(sum / f64::from(count), count);
                return true;
            }
            self.pending = Some((count, sum, d.signum()));
            return false;
        }
        self.pending = None;
        self.n = self.n.saturating_add(1);
        let mut a = alpha.clamp(0.0, 1.0);
        if warm_up {
            a = a.max(1.0 / f64::from(self.n));
        }
        self.spread = (1.0 - a) * self.spread + a * d * d;
        self.mean += a * d;
        self.w2 = (1.0 - a) * (1.0 - a) * self.w2 + a * a;
        false
    }

    /// Starts over at `value`, as if it were the mean of `n` readings.
    fn restart(&mut self, value: f64, n: u32) {
        self.shifts = self.shifts.wrapping_add(1);
        self.mean = value;
        self.spread = 0.0;
        self.n = n;
        self.w2 = 1.0 / f64::from(n);
        self.pending = None;
    }
}

/// The weight of a new reading for an exponential average with time constant
/// `smoothing`, `dt` after the previous one (1 without smoothing).
pub(crate) fn alpha(dt: Duration, smoothing: Duration) -> f64 {
    if smoothing.is_zero() {
        return 1.0;
    }
    1.0 - (-dt.as_secs_f64() / smoothing.as_secs_f64()).exp()
}

/// A pool's estimates.
#[derive(Debug, Clone, Default)]
pub(crate) struct PoolModel {
    /// λ, events per second.
    pub(crate) arrival: Estimate,
    /// S, seconds.
    pub(crate) service: Estimate,
    /// CPU seconds per event.
    pub(crate) cpu: Estimate,
    /// Events behind the S and CPU estimates, each reading's discounted by
    /// `1 - alpha` per tick since: a reading's weight is its events over this.
    events: f64,
}

impl PoolModel {
    /// Folds in one observation's readings, `dt` after the previous one, from a pool of
    /// `workers`. The arrival reading counts what got into the buffer, not what was
    /// offered: while publishers wait for room (`censored`) it is a lower bound of the
    /// demand, so it may raise the estimate but not lower it; when room appears again
    /// (`flushed`: they waited at the previous tick, or the buffer was resized) they
    /// catch up all at once, so it may not start a new level at once.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn update(
        &mut self,
        arrival: Option<f64>,
        service: Option<Duration>,
        cpu: Option<Duration>,
        workers: usize,
        censored: bool,
        flushed: bool,
        dt: Duration,
        config: &PolicyConfig,
    ) {
        let a = alpha(dt, config.model_smoothing);
        let arrival = arrival.filter(|rate| {
            !censored
                || self
                    .arrival
                    .value()
                    .is_none_or(|estimate| *rate >= estimate)
        });
        if let Some(rate) = arrival {
            // A count over dt of Poisson arrivals at rate r has a standard deviation of
            // sqrt(r / dt) events per second.
            let floor = poisson_sd(self.arrival.value().unwrap_or(rate), dt);
            self.arrival.update_with(rate, a, floor, true, !flushed);
        }
        // S and CPU readings are means over the events that finished, so each weighs
        // by its events: a precision-weighted mean that forgets at the same pace as λ's
        // (after a step down, the few events of each tick barely move S; after a step
        // up, the many quickly outweigh the few before). Their noise is at least that
        // of a mean of exponential times, S / sqrt(events). Events finished are the
        // arrivals, at most what the workers take (`workers / S`).
        let secs = dt.as_secs_f64();
        let arrived = self.arrival.value().map_or(1.0, |rate| rate * secs);
        let taken = self
            .service
            .value()
            .or(service.map(|s| s.as_secs_f64()))
            .filter(|s| *s > 0.0)
            .map_or(f64::INFINITY, |s| workers as f64 * secs / s);
        let events = arrived.min(taken).max(1.0);
        if service.is_none() && cpu.is_none() {
            return;
        }
        self.events = (1.0 - a) * self.events + events;
        let weight = events / self.events;
        if let Some(s) = service {
            let s = s.as_secs_f64();
            let floor = self.service.value().unwrap_or(s) / events.sqrt();
            if self.service.update(s, weight, floor, false) {
                // A new level: the readings before it no longer count.
                self.events = events;
            }
        }
        if let Some(c) = cpu {
            let c = c.as_secs_f64();
            let floor = self.cpu.value().unwrap_or(c) / events.sqrt();
            self.cpu.update(c, weight, floor, false);
        }
    }
}

fn poisson_sd(rate: f64, dt: Duration) -> f64 {
    let dt = dt.as_secs_f64().max(1e-3);
    (rate.max(0.0) / dt).sqrt()
}

/// What the model says about one pool at one tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PoolView {
    /// λ, events per second.
    pub(crate) arrival: f64,
    /// S, seconds (0 when no event has been measured and none arrive).
    pub(crate) service: f64,
    /// Relative standard errors of λ and of the load λS.
    pub(crate) arrival_error: f64,
    pub(crate) load_error: f64,
    /// Events waiting: the buffer's backlog plus demand outside it.
    pub(crate) backlog: f64,
    /// Workers for the load at target (`ceil(λS / target)`).
    pub(crate) for_load: usize,
    /// Workers that, fully busy, clear the backlog within the drain time while keeping
    /// up with arrivals (`ceil((λ + backlog / drain_time) x S)`), 0 without a backlog.
    pub(crate) for_drain: usize,
    /// The fewest workers whose p99 wait in M/M/c is within `target_wait` (Erlang C);
    /// 0 without a wait target.
    pub(crate) for_wait: usize,
    /// The model's count at the low end of the estimate's band (`Z` errors down).
    pub(crate) low: usize,
    /// Whether λ has had `FIRM_READINGS` readings since its last level shift.
    pub(crate) firm: bool,
    /// The share of a core a busy worker uses (`cpu / S`), when both are measured.
    pub(crate) cpu_share: Option<f64>,
    target: f64,
    drain: f64,
    /// `target_wait` in seconds; 0: none.
    wait: f64,
}

impl PoolView {
    /// The model's count: `max(for_load, for_wait, for_drain)`.
    pub(crate) fn count(&self) -> usize {
        self.for_load.max(self.for_wait).max(self.for_drain)
    }

    /// Workers the load `load` (Erlangs) needs, as a real number for the comparisons
    /// with slack: `load / target`, or the wait target's count if that is more.
    fn for_load_of(&self, load: f64) -> f64 {
        let x = load / self.target;
        if self.wait > 0.0 {
            x.max(wait_count(load, self.service, self.wait) as f64)
        } else {
            x
        }
    }

    /// The model's count with λ and the load moved by `z` standard errors.
    pub(crate) fn count_at(&self, z: f64) -> usize {
        self.count_with(z, 0.0)
    }

    /// The model's count with λ and the load moved by `z` standard errors and the load
    /// then scaled by `1 + margin`.
    pub(crate) fn count_with(&self, z: f64, margin: f64) -> usize {
        let load = self.arrival * self.service * (1.0 + z * self.load_error).max(0.0);
        let arrival = self.arrival * (1.0 + z * self.arrival_error).max(0.0);
        ceil(self.for_load_of(load * (1.0 + margin))).max(self.drain_count(arrival))
    }

    /// Whether even the low end of the band, `z` errors down, needs more than `workers`
    /// beyond the dead band.
    pub(crate) fn needs_more(&self, z: f64, workers: usize) -> bool {
        let load = self.arrival * self.service * (1.0 - z * self.load_error).max(0.0);
        let arrival = self.arrival * (1.0 - z * self.arrival_error).max(0.0);
        let c = workers as f64;
        let margin = (DEAD_BAND * c).min(MAX_DEAD_WORKERS);
        self.for_load_of(load) > c + margin + EPS || self.drain_count(arrival) > workers
    }

    /// Workers that, fully busy, keep up with `arrival` and clear the backlog within
    /// the drain time; 0 without a backlog.
    fn drain_count(&self, arrival: f64) -> usize {
        if self.backlog <= 0.0 {
            0
        } else if self.drain <= 0.0 {
            usize::MAX
        } else {
            ceil((arrival + self.backlog / self.drain) * self.service)
        }
    }

    /// This tick's recommendation for the way down: once the estimate is firm, the
    /// count half an error above it, plus a small dead band (the way down needs to be
    /// sure fewer workers do); before, the low end of its band (the noise of the first
    /// readings after a step must not hold workers for a window).
    pub(crate) fn recommendation(&self) -> usize {
        if !self.firm {
            return self.low;
        }
        let x = self.for_load_of(self.arrival * self.service * (1.0 + 0.5 * self.load_error));
        let margin = (DOWN_DEAD_BAND * ceil(x) as f64).min(MAX_DOWN_DEAD_WORKERS);
        let arrival = self.arrival * (1.0 + 0.5 * self.arrival_error);
        ceil(x + margin).max(self.drain_count(arrival))
    }

    /// Events per second `workers` take when busy.
    pub(crate) fn service_rate(&self, workers: usize) -> f64 {
        if self.service > 0.0 {
            workers as f64 / self.service
        } else {
            f64::INFINITY
        }
    }
}

/// The view of a pool whose λ (and S, unless nothing arrives) have been measured.
pub(crate) fn pool_view(
    model: &PoolModel,
    backlog: f64,
    config: &PolicyConfig,
    dt: Duration,
) -> Option<PoolView> {
    let arrival = model.arrival.value()?;
    let service = match model.service.value() {
        Some(s) => s,
        // Nothing measured yet: fine while nothing arrives and nothing waits.
        None if arrival == 0.0 && backlog <= 0.0 => 0.0,
        None => return None,
    };
    let arrival_error = model.arrival.relative_error(poisson_sd(arrival, dt));
    let service_error = model.service.relative_error(0.0);
    let cpu_share = match (model.cpu.value(), service > 0.0) {
        (Some(cpu), true) => Some((cpu / service).clamp(MIN_CPU_SHARE, 1.0)),
        _ => None,
    };
    let mut view = PoolView {
        arrival,
        service,
        arrival_error,
        load_error: (arrival_error.powi(2) + service_error.powi(2)).sqrt(),
        backlog,
        for_load: 0,
        for_drain: 0,
        for_wait: 0,
        low: 0,
        firm: model.arrival.readings() >= FIRM_READINGS,
        cpu_share,
        target: config.target_utilisation,
        drain: config.drain_time.as_secs_f64(),
        wait: config.target_wait.as_secs_f64(),
    };
    view.for_load = ceil(arrival * service / view.target);
    if view.wait > 0.0 {
        view.for_wait = wait_count(arrival * service, service, view.wait);
    }
    view.for_drain = view.drain_count(arrival);
    view.low = view.count_at(-Z);
    Some(view)
}

/// The capacity for arrivals at `arrival`: a buffer at the target saturation holds
/// `target_latency` of them (`ceil(λ x latency / target_saturation)`).
pub(crate) fn capacity_for(arrival: f64, config: &PolicyConfig) -> usize {
    ceil(arrival * config.target_latency.as_secs_f64() / config.target_saturation)
}

/// The share of arrivals allowed to wait longer than `target_wait`: the target is a
/// p99.
const WAIT_TAIL: f64 = 0.01;

/// The fewest workers `c` for which an M/M/c queue (Poisson arrivals, exponential
/// service times of mean `service` seconds) with offered load `load = λS` Erlangs keeps
/// the p99 wait within `target` seconds: `P(W > t) = C(c, a) e^(-(c - a) t / S) <= 1%`,
/// with `C` the Erlang C probability of waiting at all. 0 without load.
///
/// Erlang B by its recursion `B(k) = a B(k-1) / (k + a B(k-1))` (stable for any
/// load), then `C = c B / (c - a (1 - B))`, walking `c` up from the first stable count.
pub(crate) fn wait_count(load: f64, service: f64, target: f64) -> usize {
    if !(load > 0.0 && service > 0.0) {
        return 0;
    }
    if !load.is_finite() {
        return usize::MAX;
    }
    let first = load.floor() as usize + 1;
    // A bound the walk cannot pass in practice (the wait's tail falls at least as fast
    // as e^(-(c - a) t / S)); it only keeps a nonsense reading from looping long.
    let last = first.saturating_add(100_000);
    let mut b = 1.0;
    for k in 1..first {
        b = load * b / (k as f64 + load * b);
    }
    for c in first..=last {
        b = load * b / (c as f64 + load * b);
        let servers = c as f64;
        let waits = servers * b / (servers - load * (1.0 - b));
        if waits * (-(servers - load) * target / service).exp() <= WAIT_TAIL {
            return c;
        }
    }
    last
}

/// `ceil` of a non-negative count, with float slack, saturating.
pub(crate) fn ceil(x: f64) -> usize {
    if !x.is_finite() {
        return if x > 0.0 { usize::MAX } else { 0 };
    }
    let c = (x - EPS).ceil();
    if c <= 0.0 {
        0
    } else if c >= usize::MAX as f64 {
        usize::MAX
    } else {
        c as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(e: &mut Estimate, x: f64) {
        e.update(x, 0.1, 0.0, true);
    }

    #[test]
    fn a_constant_reading_is_its_own_estimate() {
        let mut e = Estimate::default();
        for _ in 0..50 {
            step(&mut e, 300.0);
        }
        assert_eq!(e.value(), Some(300.0));
        // The floor keeps a band: 2% of the mean, shrunk by the averaging.
        let error = e.relative_error(0.0);
        assert!(error > 0.001 && error < 0.02, "{error}");
    }

    #[test]
    fn a_big_step_is_taken_at_once() {
        let mut e = Estimate::default();
        for _ in 0..20 {
            step(&mut e, 30.0);
        }
        step(&mut e, 300.0);
        assert_eq!(e.value(), Some(300.0));
        assert_eq!(e.readings(), 1);
    }

    #[test]
    fn a_moderate_step_needs_three_readings() {
        let mut e = Estimate::default();
        for _ in 0..20 {
            step(&mut e, 100.0);
        }
        // A 2% floor: 108 is 4 sd away, beyond the confirm level but not the shift one.
        step(&mut e, 108.0);
        step(&mut e, 110.0);
        assert_eq!(e.value(), Some(100.0), "two readings are not enough");
        step(&mut e, 109.0);
        assert_eq!(e.value(), Some(109.0));
        assert_eq!(e.readings(), 3);
        // A lone outlier is dropped.
        let mut e = Estimate::default();
        for _ in 0..20 {
            step(&mut e, 100.0);
        }
        step(&mut e, 108.0);
        step(&mut e, 100.0);
        assert_eq!(e.value(), Some(100.0));
    }

    #[test]
    fn readings_weigh_by_their_events() {
        let config = PolicyConfig::default();
        let second = Duration::from_secs(1);
        let ms = Duration::from_millis;
        // 30 events a second at 20 ms for a minute; then an 18 ms reading from 30 events
        // barely moves S, one from 300 events (the workers allow them) a third of the way.
        let warm = || {
            let mut m = PoolModel::default();
            for _ in 0..60 {
                m.update(
                    Some(30.0),
                    Some(ms(20)),
                    None,
                    4,
                    false,
                    false,
                    second,
                    &config,
                );
            }
            m
        };
        let mut few = warm();
        few.update(
            Some(30.0),
            Some(ms(18)),
            None,
            4,
            false,
            false,
            second,
            &config,
        );
        let mut many = warm();
        many.update(
            Some(300.0),
            Some(ms(18)),
            None,
            10,
            false,
            false,
            second,
            &config,
        );
        let (few, many) = (few.service.value().unwrap(), many.service.value().unwrap());
        assert!(few > 0.0198, "{few}");
        assert!(many < 0.0196 && many > 0.0185, "{many}");
    }

    /// Erlang C against figures worked by hand: M/M/3 at load 2 waits with
    /// probability 4/9, M/M/4 with 0.174; M/M/1 at load 0.5 with 0.5.
    #[test]
    fn wait_counts_follow_erlang_c() {
        // Load 2, S 20 ms: 3 workers' p99 wait is 76 ms, 4 workers' 29 ms.
        assert_eq!(wait_count(2.0, 0.02, 0.05), 4);
        assert_eq!(wait_count(2.0, 0.02, 0.1), 3);
        assert_eq!(wait_count(2.0, 0.02, 0.077), 3);
        assert_eq!(wait_count(2.0, 0.02, 0.075), 4);
        // M/M/1 at load 0.5, S 1 s: P(W > t) = 0.5 e^(-t / 2), p99 at 2 ln 50 = 7.82 s.
        assert_eq!(wait_count(0.5, 1.0, 7.9), 1);
        assert_eq!(wait_count(0.5, 1.0, 7.7), 2);
        // A wait of zero needs P(wait at all) <= 1%.
        let c = wait_count(12.0, 0.02, 0.0);
        assert!(c > 18 && c < 30, "{c}");
        assert_eq!(wait_count(0.0, 0.02, 0.05), 0);
        assert_eq!(wait_count(f64::INFINITY, 0.02, 0.05), usize::MAX);
        // Large loads stay exact and quick: within a few workers of the load.
        let c = wait_count(500.0, 0.02, 0.1);
        assert!(c > 500 && c < 520, "{c}");
    }

    /// P(W > t) in M/M/c from the textbook formula, summed in log space: a second
    /// method for the property below.
    fn tail(c: usize, load: f64, service: f64, t: f64) -> f64 {
        let term = |k: usize| k as f64 * load.ln() - (1..=k).map(|i| (i as f64).ln()).sum::<f64>();
        let top = term(c) + (c as f64 / (c as f64 - load)).ln();
        let max = (0..c).map(term).chain([top]).fold(f64::MIN, f64::max);
        let sum: f64 = (0..c).map(|k| (term(k) - max).exp()).sum::<f64>() + (top - max).exp();
        (top - max).exp() / sum * (-(c as f64 - load) * t / service).exp()
    }

    proptest::proptest! {
        /// `wait_count` is the fewest stable workers whose p99 wait is within the
        /// target, checked against the textbook formula.
        #[test]
        fn the_wait_count_is_the_fewest_that_meet_the_target(
            load in 0.01f64..60.0,
            service in 0.001f64..1.0,
            target in 0.0f64..2.0,
        ) {
            let c = wait_count(load, service, target);
            proptest::prop_assert!(c as f64 > load);
            proptest::prop_assert!(tail(c, load, service, target) <= WAIT_TAIL * (1.0 + 1e-9));
            if c > load.floor() as usize + 1 {
                proptest::prop_assert!(tail(c - 1, load, service, target) > WAIT_TAIL * (1.0 - 1e-9));
            }
        }
    }

    #[test]
    fn counts_round_up_with_slack() {
        assert_eq!(ceil(6.3 / 0.7), 9);
        assert_eq!(ceil(0.0), 0);
        assert_eq!(ceil(8.57), 9);
        assert_eq!(ceil(f64::INFINITY), usize::MAX);
    }
}
