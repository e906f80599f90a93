//! One seam for time: a [`Clock`] trait with a real [`SystemClock`] and a
//! [`ManualClock`] that tests advance by hand.
//!
//! The bus reads time only through its clock (the publish-rate limiter and signal
//! timestamps), so rate limiting can be tested in simulated time, exactly:
//!
//! ```
//! use pipeline_core::clock::{Clock, ManualClock};
//! use std::time::Duration;
//!
//! let clock = ManualClock::new();
//! let start = clock.now();
//! clock.advance(Duration::from_millis(250));
//! clock.sleep(Duration::from_millis(750)); // a manual clock's sleep advances it
//! assert_eq!(clock.now() - start, Duration::from_secs(1));
//! ```

use std::fmt;
// std, not `crate::sync`: time is no part of a protocol loom checks, and std types
// keep clocks usable outside a loom model.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A source of monotonic time, and a way to wait on it.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current instant. Never goes backwards.
    fn now(&self) -> Instant;

    /// Waits until `duration` has passed on this clock.
    fn sleep(&self, duration: Duration);
}

/// The real clock: [`Instant::now`] and [`std::thread::sleep`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// A clock that moves only when told to: by [`advance`](ManualClock::advance), or by
/// [`sleep`](Clock::sleep), which advances it by the time slept and returns at once.
///
/// Clones share one time line. It is made for single-threaded simulated-time tests:
/// two threads sleeping on it at once each advance it, so time moves by the sum.
#[derive(Debug, Clone)]
pub struct ManualClock {
    start: Instant,
    /// Nanoseconds since `start`.
    elapsed: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at an arbitrary instant, the same for all its clones.
    pub fn new() -> Self {
        ManualClock {
            start: Instant::now(),
            elapsed: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Moves the clock forward by `duration`.
    ///
    /// # Panics
    ///
    /// If the clock would pass about 584 years after its start.
    pub fn advance(&self, duration: Duration) {
        let nanos = u64::try_from(duration.as_nanos()).expect("ManualClock advanced too far");
        self.elapsed.fetch_add(nanos, Ordering::SeqCst);
    }

    /// Time advanced since the clock was made.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.elapsed.load(Ordering::SeqCst))
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + self.elapsed()
    }

    fn sleep(&self, duration: Duration) {
        self.advance(duration);
    }
}
