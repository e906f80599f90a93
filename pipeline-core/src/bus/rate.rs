//! The publish-rate limiter: a token bucket kept as one timestamp (GCRA).
//!
//! A bucket of `burst` tokens refilled at `rate` per second is the same as the
//! generic cell-rate algorithm: keep the *theoretical arrival time* `tat` of the next
//! event; an event at `now` is admitted when `tat <= now + (burst - 1) * interval`, and
//! then `tat = max(tat, now) + interval`. One atomic word instead of a (tokens, time)
//! pair means admission is a single compare-and-swap, and the refusal's wait is exact:
//! `max(tat, now) - now - (burst - 1) * interval` nanoseconds.

use super::error::BusError;
use crate::clock::Clock;
use crate::sync::{
    Mutex,
    atomic::{AtomicU64, Ordering},
    lock,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) struct RateLimiter {
    /// Nanoseconds between tokens; 0 means no limit. The only word the unlimited fast
    /// path reads.
    interval: AtomicU64,
    /// Theoretical arrival time of the next event, nanoseconds since `epoch`.
    tat: AtomicU64,
    /// The configured rate as `f64` bits, so `rate()` returns exactly what was set.
    rate_bits: AtomicU64,
    burst: u64,
    epoch: Instant,
    clock: Arc<dyn Clock>,
    /// Serialises rate changes (never taken by publishers).
    changing: Mutex<()>,
}

impl RateLimiter {
    pub(crate) fn new(clock: Arc<dyn Clock>, burst: u32) -> Self {
        RateLimiter {
            interval: AtomicU64::new(0),
            tat: AtomicU64::new(0),
            rate_bits: AtomicU64::new(0),
            burst: u64::from(burst.max(1)),
            epoch: clock.now(),
            clock,
            changing: Mutex::new(()),
        }
    }

    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    fn now_nanos(&self) -> u64 {
        let since = self.clock.now().saturating_duration_since(self.epoch);
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Takes a token, or says exactly how long until one is free.
    #[inline]
    pub(crate) fn acquire(&self) -> Result<(), Duration> {
        let interval = self.interval.load(Ordering::Acquire);
        if interval == 0 {
            return Ok(());
        }
        self.acquire_limited(interval)
    }

    #[inline(never)]
    fn acquire_limited(&self, interval: u64) -> Result<(), Duration> {
        let now = self.now_nanos();
        let tolerance = interval.saturating_mul(self.burst - 1);
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let start = tat.max(now);
            let ahead = start - now;
            if ahead > tolerance {
                return Err(Duration::from_nanos(ahead - tolerance));
            }
            match self.tat.compare_exchange_weak(
                tat,
                start.saturating_add(interval),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(current) => tat = current,
            }
        }
    }

    /// Sets (or with `None` lifts) the limit, effective for the next token.
    ///
    /// The bucket's fill level carries over: a debt of `k` tokens at the old rate is a
    /// debt of `k` tokens at the new one, so slowing down bites at once and speeding
    /// up releases waiting publishers sooner. Going from no limit to a limit starts
    /// with a full bucket.
    pub(crate) fn set_rate(&self, rate: Option<f64>) -> Result<(), BusError> {
        let interval = match rate {
            None => 0,
            Some(r) if r.is_finite() && r > 0.0 => {
                // Saturating float-to-int cast; at least 1 ns so 0 keeps meaning "no limit".
                ((1e9 / r).round() as u64).max(1)
            }
            Some(r) => return Err(BusError::InvalidRate(r)),
        };
        let _changing = lock(&self.changing);
        let old = self.interval.load(Ordering::Acquire);
        if interval != 0 {
            let now = self.now_nanos();
            let tat = self.tat.load(Ordering::Acquire);
            let new_tat = if old == 0 {
                now
            } else {
                let debt = u128::from(tat.saturating_sub(now));
                let scaled = debt * u128::from(interval) / u128::from(old);
                now.saturating_add(u64::try_from(scaled).unwrap_or(u64::MAX))
            };
            self.tat.store(new_tat, Ordering::Release);
        }
        self.rate_bits
            .store(rate.unwrap_or(0.0).to_bits(), Ordering::Relaxed);
        self.interval.store(interval, Ordering::Release);
        Ok(())
    }

    pub(crate) fn rate(&self) -> Option<f64> {
        let _changing = lock(&self.changing);
        (self.interval.load(Ordering::Acquire) != 0)
            .then(|| f64::from_bits(self.rate_bits.load(Ordering::Relaxed)))
    }
}

#[cfg(all(test, not(pipeline_loom)))]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn burst_then_exact_spacing() {
        let clock = ManualClock::new();
        let limiter = RateLimiter::new(Arc::new(clock.clone()), 3);
        limiter.set_rate(Some(4.0)).unwrap(); // 250 ms per token
        for _ in 0..3 {
            assert_eq!(limiter.acquire(), Ok(()));
        }
        assert_eq!(limiter.acquire(), Err(Duration::from_millis(250)));
        clock.advance(Duration::from_millis(100));
        assert_eq!(limiter.acquire(), Err(Duration::from_millis(150)));
        clock.advance(Duration::from_millis(150));
        assert_eq!(limiter.acquire(), Ok(()));
        assert_eq!(limiter.acquire(), Err(Duration::from_millis(250)));
    }

    #[test]
    fn rate_change_keeps_the_debt_in_tokens() {
        let clock = ManualClock::new();
        let limiter = RateLimiter::new(Arc::new(clock.clone()), 1);
        limiter.set_rate(Some(1.0)).unwrap();
        assert_eq!(limiter.acquire(), Ok(()));
        assert_eq!(limiter.acquire(), Err(Duration::from_secs(1)));
        limiter.set_rate(Some(10.0)).unwrap(); // one token of debt: now 100 ms
        assert_eq!(limiter.acquire(), Err(Duration::from_millis(100)));
        limiter.set_rate(None).unwrap();
        assert_eq!(limiter.acquire(), Ok(()));
        assert_eq!(limiter.rate(), None);
    }

    #[test]
    fn invalid_rates_are_refused() {
        let limiter = RateLimiter::new(Arc::new(ManualClock::new()), 1);
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                limiter.set_rate(Some(bad)),
                Err(BusError::InvalidRate(_))
            ));
        }
        assert_eq!(limiter.rate(), None);
    }
}
