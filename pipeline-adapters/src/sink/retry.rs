//! [`RetryPolicy`]: bounded attempts with exponential backoff and jitter.

use crate::util::Jitter;
use std::time::Duration;

/// How a sink retries a failed delivery: at most [`max_attempts`](Self::max_attempts)
/// attempts in all, waiting between them an exponentially growing backoff with jitter.
///
/// | setting | default | rule |
/// | --- | --- | --- |
/// | [`max_attempts`](Self::max_attempts) | 5 | at least 1 (1 = no retry) |
/// | [`initial_backoff`](Self::initial_backoff) | 100 ms | |
/// | [`max_backoff`](Self::max_backoff) | 5 s | at least `initial_backoff` |
/// | [`multiplier`](Self::multiplier) | 2.0 | at least 1, finite |
///
/// The wait before retry `n` (1-based) is `b = min(max_backoff, initial_backoff *
/// multiplier^(n-1))`, then jittered uniformly into `[b/2, b]` ("equal jitter") so
/// workers that failed together do not retry together. With the defaults the waits are
/// about 100, 200, 400 and 800 ms: five attempts within about 1.5 s (plus the attempts'
/// own time).
///
/// # Examples
///
/// ```
/// use pipeline_adapters::sink::RetryPolicy;
/// use std::time::Duration;
///
/// let policy = RetryPolicy::new()
///     .max_attempts(3)
///     .initial_backoff(Duration::from_millis(10))
///     .max_backoff(Duration::from_millis(15));
/// assert!(policy.validate().is_ok());
/// assert_eq!(policy.backoff_ceiling(1), Duration::from_millis(10));
/// assert_eq!(policy.backoff_ceiling(2), Duration::from_millis(15)); // capped
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[must_use]
pub struct RetryPolicy {
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    multiplier: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            multiplier: 2.0,
        }
    }
}

impl RetryPolicy {
    /// The defaults in the table above.
    pub fn new() -> Self {
        Self::default()
    }

    /// Attempts in all, the first included (default 5).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// The backoff before the first retry (default 100 ms).
    pub fn initial_backoff(mut self, backoff: Duration) -> Self {
        self.initial_backoff = backoff;
        self
    }

    /// The longest backoff (default 5 s).
    pub fn max_backoff(mut self, backoff: Duration) -> Self {
        self.max_backoff = backoff;
        self
    }

    /// How much the backoff grows per retry (default 2.0).
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// Attempts in all.
    pub fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Checks the rules in the table above.
    ///
    /// # Errors
    ///
    /// [`RetryPolicyError`] naming the first setting that breaks its rule, and the rule.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_adapters::sink::RetryPolicy;
    ///
    /// let error = RetryPolicy::new().max_attempts(0).validate().unwrap_err();
    /// assert_eq!((error.field(), error.rule()), ("max_attempts", "must be at least 1"));
    /// assert_eq!(error.to_string(), "retry.max_attempts must be at least 1");
    /// ```
    pub fn validate(&self) -> Result<(), RetryPolicyError> {
        let invalid = |field, rule| Err(RetryPolicyError { field, rule });
        if self.max_attempts == 0 {
            return invalid("max_attempts", "must be at least 1");
        }
        if self.max_backoff < self.initial_backoff {
            return invalid("max_backoff", "must be at least retry.initial_backoff");
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return invalid("multiplier", "must be finite and at least 1");
        }
        Ok(())
    }

    /// The backoff before retry `retry` (1-based) before jitter.
    pub fn backoff_ceiling(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(64) as i32;
        let scaled = self.initial_backoff.as_secs_f64() * self.multiplier.powi(exponent);
        if scaled >= self.max_backoff.as_secs_f64() {
            self.max_backoff
        } else {
            Duration::from_secs_f64(scaled)
        }
    }

    #[cfg_attr(
        not(any(feature = "http", feature = "tcp", feature = "nats")),
        allow(dead_code)
    )]
    pub(crate) fn backoff(&self, retry: u32, jitter: &mut Jitter) -> Duration {
        let ceiling = self.backoff_ceiling(retry);
        ceiling / 2 + ceiling.mul_f64(0.5 * jitter.next_f64())
    }
}

/// A [`RetryPolicy`] setting that breaks its rule; from [`RetryPolicy::validate`].
///
/// Displays as `retry.<field> <rule>`, e.g. `retry.max_attempts must be at least 1`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("retry.{field} {rule}")]
pub struct RetryPolicyError {
    field: &'static str,
    rule: &'static str,
}

impl RetryPolicyError {
    /// The setting, named as its setter: `max_attempts`, `max_backoff` or
    /// `multiplier`.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// The rule it breaks, e.g. `must be at least 1`.
    pub fn rule(&self) -> &'static str {
        self.rule
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jittered_backoff_stays_between_half_and_ceiling() {
        let policy = RetryPolicy::new();
        let mut jitter = Jitter::new();
        for retry in 1..10 {
            let ceiling = policy.backoff_ceiling(retry);
            let b = policy.backoff(retry, &mut jitter);
            assert!(
                b >= ceiling / 2 && b <= ceiling,
                "{retry}: {b:?} vs {ceiling:?}"
            );
        }
        assert_eq!(policy.backoff_ceiling(30), Duration::from_secs(5));
    }

    #[test]
    fn invalid_settings_are_named() {
        let named = |policy: RetryPolicy| {
            let error = policy.validate().unwrap_err();
            (error.field(), error.to_string())
        };
        // The messages are the ones `validate` gave as strings before it had a type.
        assert_eq!(
            named(RetryPolicy::new().max_attempts(0)),
            (
                "max_attempts",
                "retry.max_attempts must be at least 1".into()
            )
        );
        assert_eq!(
            named(RetryPolicy::new().multiplier(0.5)),
            (
                "multiplier",
                "retry.multiplier must be finite and at least 1".into()
            )
        );
        assert_eq!(
            named(RetryPolicy::new().max_backoff(Duration::from_millis(1))),
            (
                "max_backoff",
                "retry.max_backoff must be at least retry.initial_backoff".into()
            )
        );
    }
}
