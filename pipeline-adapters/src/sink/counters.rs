//! [`SinkCounters`]: the atomics behind [`SinkStats`] and the metrics beside them.

use super::stats::SinkStats;
use pipeline_core::pool::LatencyRecorder;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The atomics behind [`SinkStats`], and the `metrics` handles beside them.
pub(crate) struct SinkCounters {
    delivered: AtomicU64,
    undelivered: AtomicU64,
    batches_ok: AtomicU64,
    batches_failed: AtomicU64,
    attempts: AtomicU64,
    attempt_errors: AtomicU64,
    retries: AtomicU64,
    in_flight: AtomicU64,
    pub(crate) buffered: AtomicU64,
    latency: Mutex<LatencyRecorder>,
    metrics: SinkMetrics,
}

#[cfg_attr(
    not(any(feature = "http", feature = "tcp", feature = "nats")),
    allow(dead_code)
)]
struct SinkMetrics {
    delivered: metrics::Counter,
    undelivered: metrics::Counter,
    batches_ok: metrics::Counter,
    batches_failed: metrics::Counter,
    attempts: metrics::Counter,
    attempt_errors: metrics::Counter,
    retries: metrics::Counter,
    in_flight: metrics::Gauge,
    attempt_seconds: metrics::Histogram,
}

/// `# HELP` texts for the sinks' metric families, given to the recorder installed now.
fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "pipeline_sink_delivered_events_total",
        "Events a sink delivered."
    );
    describe_counter!(
        "pipeline_sink_undelivered_events_total",
        "Events a sink handed to its dead-letter hook."
    );
    describe_counter!(
        "pipeline_sink_batches_total",
        "Batches a sink delivered (ok) or gave up on (failed)."
    );
    describe_counter!(
        "pipeline_sink_attempts_total",
        "Delivery attempts (requests, publish rounds, writes)."
    );
    describe_counter!(
        "pipeline_sink_attempt_errors_total",
        "Delivery attempts that failed, retried or not."
    );
    describe_counter!(
        "pipeline_sink_retries_total",
        "Delivery attempts that were retries."
    );
    describe_gauge!(
        "pipeline_sink_in_flight_batches",
        "Batches a sink is delivering now."
    );
    describe_histogram!(
        "pipeline_sink_attempt_seconds",
        metrics::Unit::Seconds,
        "Time per delivery attempt."
    );
}

/// What one attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    Ok,
    Failed,
}

impl SinkCounters {
    pub(crate) fn new(sink: &str) -> Self {
        describe_metrics();
        let label = || sink.to_owned();
        SinkCounters {
            delivered: AtomicU64::new(0),
            undelivered: AtomicU64::new(0),
            batches_ok: AtomicU64::new(0),
            batches_failed: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            attempt_errors: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            buffered: AtomicU64::new(0),
            latency: Mutex::new(LatencyRecorder::new()),
            metrics: SinkMetrics {
                delivered: metrics::counter!("pipeline_sink_delivered_events_total", "sink" => label()),
                undelivered: metrics::counter!("pipeline_sink_undelivered_events_total", "sink" => label()),
                batches_ok: metrics::counter!("pipeline_sink_batches_total", "sink" => label(), "outcome" => "ok"),
                batches_failed: metrics::counter!("pipeline_sink_batches_total", "sink" => label(), "outcome" => "failed"),
                attempts: metrics::counter!("pipeline_sink_attempts_total", "sink" => label()),
                attempt_errors: metrics::counter!("pipeline_sink_attempt_errors_total", "sink" => label()),
                retries: metrics::counter!("pipeline_sink_retries_total", "sink" => label()),
                in_flight: metrics::gauge!("pipeline_sink_in_flight_batches", "sink" => label()),
                attempt_seconds: metrics::histogram!("pipeline_sink_attempt_seconds", "sink" => label()),
            },
        }
    }

    /// A batch starts being delivered: counted in flight until the guard is dropped,
    /// also by a panic unwinding through the delivery.
    #[cfg_attr(
        not(any(feature = "http", feature = "tcp", feature = "nats")),
        allow(dead_code)
    )]
    pub(crate) fn begin(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.metrics.in_flight.increment(1.0);
        InFlight(self)
    }

    /// One attempt took `elapsed`; `retry` when it was not the first.
    pub(crate) fn attempt(&self, elapsed: Duration, outcome: Attempt, retry: bool) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        self.metrics.attempts.increment(1);
        if retry {
            self.retries.fetch_add(1, Ordering::Relaxed);
            self.metrics.retries.increment(1);
        }
        if outcome == Attempt::Failed {
            self.attempt_errors.fetch_add(1, Ordering::Relaxed);
            self.metrics.attempt_errors.increment(1);
        }
        self.metrics.attempt_seconds.record(elapsed.as_secs_f64());
        self.latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(elapsed);
    }

    pub(crate) fn delivered(&self, events: u64) {
        self.delivered.fetch_add(events, Ordering::Relaxed);
        self.metrics.delivered.increment(events);
        self.batches_ok.fetch_add(1, Ordering::Relaxed);
        self.metrics.batches_ok.increment(1);
    }

    pub(crate) fn failed(&self, events: u64) {
        self.undelivered.fetch_add(events, Ordering::Relaxed);
        self.metrics.undelivered.increment(events);
        self.batches_failed.fetch_add(1, Ordering::Relaxed);
        self.metrics.batches_failed.increment(1);
    }

    pub(crate) fn stats(&self) -> SinkStats {
        let latency = self
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .latency();
        SinkStats {
            delivered: self.delivered.load(Ordering::Relaxed),
            undelivered: self.undelivered.load(Ordering::Relaxed),
            batches_ok: self.batches_ok.load(Ordering::Relaxed),
            batches_failed: self.batches_failed.load(Ordering::Relaxed),
            attempts: self.attempts.load(Ordering::Relaxed),
            attempt_errors: self.attempt_errors.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            buffered: self.buffered.load(Ordering::Relaxed),
            latency,
        }
    }
}

/// A batch in flight (from [`SinkCounters::begin`]); dropping it ends the batch
/// (delivered or given up).
#[cfg_attr(
    not(any(feature = "http", feature = "tcp", feature = "nats")),
    allow(dead_code)
)]
pub(crate) struct InFlight<'a>(&'a SinkCounters);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.metrics.in_flight.decrement(1.0);
    }
}
