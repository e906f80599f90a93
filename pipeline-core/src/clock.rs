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
//!
//! Async code waits with [`Clock::sleep_async`], which never blocks a thread: on the
//! system clock it is a runtime-agnostic timer (it works under tokio and any other
//! executor), and on a manual clock it advances the clock and completes at once, as
//! the blocking `sleep` does, so simulated-time tests of async code stay exact:
//!
//! ```
//! use pipeline_core::clock::{Clock, ManualClock};
//! use std::time::Duration;
//! # use futures::executor::block_on;
//!
//! let clock = ManualClock::new();
//! block_on(clock.sleep_async(Duration::from_millis(40)));
//! assert_eq!(clock.elapsed(), Duration::from_millis(40));
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
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

    /// A future that completes once `duration` has passed on this clock, for async
    /// code: waiting on it blocks no thread.
    ///
    /// The default is a runtime-agnostic timer (the `futures-timer` crate: one global
    /// timer thread for the whole process, started on first use), so it works under
    /// tokio, async-std or a plain `block_on` alike. It may complete a little after
    /// `duration` (timer granularity), never before it on the real clock. A clock with
    /// its own notion of time (a simulated one) overrides it, as [`ManualClock`] does.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_core::clock::{Clock, SystemClock};
    /// use std::time::{Duration, Instant};
    /// # use futures::executor::block_on;
    ///
    /// let start = Instant::now();
    /// block_on(SystemClock.sleep_async(Duration::from_millis(5)));
    /// assert!(start.elapsed() >= Duration::from_millis(5));
    /// ```
    fn sleep_async(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(futures_timer::Delay::new(duration))
    }
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
/// [`sleep`](Clock::sleep), which advances it by the time slept and returns at once
/// (and [`sleep_async`](Clock::sleep_async), which advances it and completes at once).
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

    /// Advances the clock by `duration` when called, like [`sleep`](Clock::sleep), and
    /// returns a future that is already complete.
    fn sleep_async(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        self.advance(duration);
        Box::pin(std::future::ready(()))
    }
}
