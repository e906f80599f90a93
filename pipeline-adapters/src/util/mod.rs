//! Small internals every adapter shares: a stop signal that sleeps, a group of threads
//! joined with a deadline, a line reader with a length limit, and a log limiter.

pub(crate) mod stop;
#[cfg(any(feature = "tcp", feature = "file", feature = "prometheus"))]
pub(crate) mod threads;

#[cfg(any(feature = "tcp", feature = "file"))]
pub(crate) mod lines;
#[cfg(any(feature = "tcp", feature = "http"))]
pub(crate) mod log_limit;

#[cfg(any(feature = "tcp", feature = "http"))]
pub(crate) use log_limit::LogLimiter;
pub(crate) use stop::StopSignal;
#[cfg(any(feature = "tcp", feature = "file", feature = "prometheus"))]
pub(crate) use threads::ThreadGroup;

/// A short xorshift generator for retry jitter: no dependency, and jitter needs no
/// quality beyond "not in lockstep with the other workers".
#[derive(Debug)]
#[cfg_attr(
    not(any(feature = "http", feature = "tcp", feature = "nats")),
    allow(dead_code)
)]
pub(crate) struct Jitter(u64);

#[cfg_attr(
    not(any(feature = "http", feature = "tcp", feature = "nats")),
    allow(dead_code)
)]
impl Jitter {
    pub(crate) fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        // RandomState is seeded per process and per instance.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(std::process::id().into());
        Jitter(h.finish() | 1)
    }

    /// A number in `[0, 1)`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}
