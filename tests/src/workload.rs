//! The workload generator: event arrivals from rates that can change while it runs.
//!
//! A [`Workload`] holds several [`Pattern`]s, each with its own topic, rate shape,
//! arrival process and event-size distribution. It is a pure state machine over
//! elapsed time: [`Workload::due`] returns every arrival up to a given instant, drawn
//! from the rates in force *now* (nothing is scheduled ahead), so [`Workload::set_rate`]
//! takes effect from the next arrival on. The harness drives it with the real clock,
//! tests with made-up instants.
//!
//! ```
//! use pipeline_tests::workload::{Pattern, Process, Shape, SizeDist, Workload};
//! use std::time::Duration;
//!
//! let mut load = Workload::new(
//!     vec![Pattern::new("orders", 100.0).process(Process::Even).size(SizeDist::Fixed(256))],
//!     7,
//! );
//! assert_eq!(load.due(Duration::from_secs(1)).len(), 100);
//! load.set_rate("orders", 1000.0).unwrap();
//! assert_eq!(load.due(Duration::from_secs(2)).len(), 1000);
//! ```

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use std::f64::consts::TAU;
use std::time::Duration;

/// How a pattern's rate varies over time, as a factor of its base rate.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Shape {
    /// The base rate, always.
    Constant,
    /// From `from` x base to `to` x base, linearly over `over`, then stays at `to`.
    Ramp {
        /// Factor at the start.
        from: f64,
        /// Factor at the end and after.
        to: f64,
        /// Length of the ramp.
        #[serde(with = "humantime_serde")]
        over: Duration,
    },
    /// Base rate until `at`, then `factor` x base.
    Step {
        /// When the step happens.
        #[serde(with = "humantime_serde")]
        at: Duration,
        /// Factor after the step.
        factor: f64,
    },
    /// `factor` x base from `at` for `length`, base rate otherwise.
    Burst {
        /// Start of the burst.
        #[serde(with = "humantime_serde")]
        at: Duration,
        /// How long it lasts.
        #[serde(with = "humantime_serde")]
        length: Duration,
        /// Factor during the burst.
        factor: f64,
    },
    /// `1 + amplitude * sin(2 pi t / period)`, never below zero.
    Sine {
        /// Relative amplitude.
        amplitude: f64,
        /// Period of one cycle.
        #[serde(with = "humantime_serde")]
        period: Duration,
    },
}

impl Shape {
    /// The factor applied to the base rate at `t` since the start.
    pub fn factor(&self, t: Duration) -> f64 {
        let secs = t.as_secs_f64();
        match *self {
            Shape::Constant => 1.0,
            Shape::Ramp { from, to, over } => {
                let progress = if over.is_zero() {
                    1.0
                } else {
                    (secs / over.as_secs_f64()).min(1.0)
                };
                from + (to - from) * progress
            }
            Shape::Step { at, factor } => {
                if t >= at {
                    factor
                } else {
                    1.0
                }
            }
            Shape::Burst { at, length, factor } => {
                if t >= at && t < at + length {
                    factor
                } else {
                    1.0
                }
            }
            Shape::Sine { amplitude, period } => {
                let phase = if period.is_zero() {
                    0.0
                } else {
                    TAU * secs / period.as_secs_f64()
                };
                (1.0 + amplitude * phase.sin()).max(0.0)
            }
        }
    }
}

/// When arrivals happen, given the rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Process {
    /// Evenly spaced: exactly `rate` arrivals per second.
    Even,
    /// A Poisson process: exponential gaps with mean `1 / rate`.
    #[default]
    Poisson,
}

/// Sizes of the generated events, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SizeDist {
    /// Always this many bytes.
    Fixed(usize),
    /// Uniform between `min` and `max`, inclusive.
    Uniform {
        /// Smallest size.
        min: usize,
        /// Largest size.
        max: usize,
    },
    /// Exponential with this mean, at least 1 byte.
    Exponential {
        /// Mean size.
        mean: f64,
    },
}

impl SizeDist {
    fn sample(&self, rng: &mut StdRng) -> usize {
        match *self {
            SizeDist::Fixed(n) => n,
            SizeDist::Uniform { min, max } => rng.random_range(min..=max.max(min)),
            SizeDist::Exponential { mean } => {
                let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
                ((-u.ln() * mean).round() as usize).max(1)
            }
        }
    }
}

/// One stream of events to one topic.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pattern {
    /// Name and topic of the events.
    pub topic: String,
    /// Base rate in events per second; the shape scales it.
    pub rate: f64,
    /// How the rate varies.
    #[serde(default = "constant")]
    pub shape: Shape,
    /// How arrivals are spaced.
    #[serde(default)]
    pub process: Process,
    /// Event sizes.
    #[serde(default = "default_size")]
    pub size: SizeDist,
}

fn constant() -> Shape {
    Shape::Constant
}

fn default_size() -> SizeDist {
    SizeDist::Fixed(256)
}

impl Pattern {
    /// A constant Poisson stream of 256-byte events to `topic` at `rate` per second.
    pub fn new(topic: impl Into<String>, rate: f64) -> Self {
        Pattern {
            topic: topic.into(),
            rate,
            shape: Shape::Constant,
            process: Process::Poisson,
            size: default_size(),
        }
    }

    /// Sets the shape.
    #[must_use]
    pub fn shape(mut self, shape: Shape) -> Self {
        self.shape = shape;
        self
    }

    /// Sets the arrival process.
    #[must_use]
    pub fn process(mut self, process: Process) -> Self {
        self.process = process;
        self
    }

    /// Sets the size distribution.
    #[must_use]
    pub fn size(mut self, size: SizeDist) -> Self {
        self.size = size;
        self
    }

    /// The rate in force at `t`, in events per second.
    pub fn rate_at(&self, t: Duration) -> f64 {
        (self.rate * self.shape.factor(t)).max(0.0)
    }
}

/// One generated event: which pattern, when it was due, how big.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrival {
    /// Index of the pattern in the workload.
    pub pattern: usize,
    /// When it was due, since the start.
    pub at: Duration,
    /// Its size in bytes.
    pub size: usize,
}

/// A pattern with the time of its next arrival.
#[derive(Debug)]
struct Stream {
    pattern: Pattern,
    next: Option<Duration>,
}

/// Several patterns, generated together from one seeded random source.
#[derive(Debug)]
pub struct Workload {
    streams: Vec<Stream>,
    rng: StdRng,
    /// Where generation has got to.
    now: Duration,
}

/// A rate change named a pattern the workload does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no pattern with topic {0:?} in the workload")]
pub struct UnknownPattern(pub String);

impl Workload {
    /// A workload of `patterns`, its randomness drawn from `seed`.
    pub fn new(patterns: Vec<Pattern>, seed: u64) -> Self {
        let streams = patterns
            .into_iter()
            .map(|pattern| Stream {
                pattern,
                next: None,
            })
            .collect();
        Workload {
            streams,
            rng: StdRng::seed_from_u64(seed),
            now: Duration::ZERO,
        }
    }

    /// The patterns, in order.
    pub fn patterns(&self) -> impl Iterator<Item = &Pattern> {
        self.streams.iter().map(|s| &s.pattern)
    }

    /// Sets the base rate of the pattern with this topic, from the next arrival on.
    ///
    /// # Errors
    ///
    /// [`UnknownPattern`] when no pattern has this topic.
    pub fn set_rate(&mut self, topic: &str, events_per_sec: f64) -> Result<(), UnknownPattern> {
        let stream = self
            .streams
            .iter_mut()
            .find(|s| s.pattern.topic == topic)
            .ok_or_else(|| UnknownPattern(topic.to_owned()))?;
        stream.pattern.rate = events_per_sec.max(0.0);
        // Redraw the pending arrival from the new rate: a slow rate's far-off arrival
        // must not delay a faster one.
        stream.next = None;
        Ok(())
    }

    /// Replaces every pattern whose topic matches one in `patterns` (rate, shape,
    /// process and size), as a reloaded scenario file does; others are kept.
    pub fn update(&mut self, patterns: &[Pattern]) {
        for new in patterns {
            if let Some(stream) = self
                .streams
                .iter_mut()
                .find(|s| s.pattern.topic == new.topic)
                && stream.pattern != *new
            {
                stream.pattern = new.clone();
                stream.next = None;
            }
        }
    }

    /// Every arrival due after the previous call and up to `until` (since the start),
    /// in time order.
    pub fn due(&mut self, until: Duration) -> Vec<Arrival> {
        let mut out = Vec::new();
        let from = self.now;
        for (index, stream) in self.streams.iter_mut().enumerate() {
            loop {
                let next = match stream.next {
                    Some(next) => next,
                    None => match next_arrival(&stream.pattern, from, &mut self.rng) {
                        Some(next) => next,
                        None => break,
                    },
                };
                if next > until {
                    stream.next = Some(next);
                    break;
                }
                out.push(Arrival {
                    pattern: index,
                    at: next,
                    size: stream.pattern.size.sample(&mut self.rng),
                });
                stream.next = next_arrival(&stream.pattern, next, &mut self.rng);
                if stream.next.is_none() {
                    break;
                }
            }
        }
        self.now = until.max(from);
        out.sort_by_key(|a| a.at);
        out
    }
}

/// The arrival after `after`, drawn at the rate in force then; `None` while the rate
/// is zero for the next second (the caller asks again later).
fn next_arrival(pattern: &Pattern, after: Duration, rng: &mut StdRng) -> Option<Duration> {
    let mut t = after;
    // Skip stretches of zero rate a tenth of a second at a time, at most one second.
    for _ in 0..10 {
        let rate = pattern.rate_at(t);
        if rate > 0.0 {
            let gap = match pattern.process {
                Process::Even => 1.0 / rate,
                Process::Poisson => {
                    let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
                    -u.ln() / rate
                }
            };
            return Some(t + Duration::from_secs_f64(gap));
        }
        t += Duration::from_millis(100);
    }
    None
}
