//! [`SinkStats`] and [`Latency`].

/// Counters a sink keeps; from [`Sink::stats`](super::Sink::stats).
///
/// An *attempt* is one request (HTTP), one publish round (NATS) or one write (TCP,
/// file). See the [module docs](super#telling-slow-from-erroring) for how a controller
/// reads them.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct SinkStats {
    /// Events delivered.
    pub delivered: u64,
    /// Events handed to the dead-letter hook.
    pub undelivered: u64,
    /// Batches delivered (a sink that does not batch counts each event as a batch).
    pub batches_ok: u64,
    /// Batches given up on.
    pub batches_failed: u64,
    /// Delivery attempts.
    pub attempts: u64,
    /// Attempts that failed (retried or not).
    pub attempt_errors: u64,
    /// Attempts that were retries.
    pub retries: u64,
    /// Batches being delivered now.
    pub in_flight: u64,
    /// Events waiting in an open batch now.
    pub buffered: u64,
    /// Time per attempt, over every attempt since the sink started.
    pub latency: Latency,
}

impl SinkStats {
    /// `attempt_errors / attempts`, 0 before the first attempt.
    pub fn error_ratio(&self) -> f64 {
        if self.attempts == 0 {
            0.0
        } else {
            self.attempt_errors as f64 / self.attempts as f64
        }
    }
}

/// Percentiles of a duration, as the pools report them: the same type.
pub use pipeline_core::pool::Latency;
