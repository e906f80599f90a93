//! [`SourceCounters`]: the atomics behind [`SourceStats`] and the metrics beside them.

use super::SourceStats;
use std::sync::atomic::{AtomicU64, Ordering};

/// One counter both as an atomic (for `stats()`) and as a `metrics` handle.
pub(crate) struct Counted {
    value: AtomicU64,
    metric: metrics::Counter,
}

impl Counted {
    pub(crate) fn new(name: &'static str, source: &str) -> Self {
        Counted {
            value: AtomicU64::new(0),
            metric: metrics::counter!(name, "source" => source.to_owned()),
        }
    }

    /// A counter with one more label beside `source`.
    pub(crate) fn labelled(
        name: &'static str,
        source: &str,
        key: &'static str,
        value: &'static str,
    ) -> Self {
        Counted {
            value: AtomicU64::new(0),
            metric: metrics::counter!(name, "source" => source.to_owned(), key => value),
        }
    }

    pub(crate) fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
        self.metric.increment(n);
    }

    pub(crate) fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// A gauge both as an atomic and as a `metrics` handle.
pub(crate) struct Gauged {
    value: AtomicU64,
    metric: metrics::Gauge,
}

impl Gauged {
    fn new(name: &'static str, source: &str) -> Self {
        Gauged {
            value: AtomicU64::new(0),
            metric: metrics::gauge!(name, "source" => source.to_owned()),
        }
    }

    #[cfg_attr(
        not(any(feature = "http", feature = "tcp", feature = "file")),
        allow(dead_code)
    )]
    pub(crate) fn inc(&self) {
        self.value.fetch_add(1, Ordering::Relaxed);
        self.metric.increment(1.0);
    }

    #[cfg_attr(
        not(any(feature = "http", feature = "tcp", feature = "file")),
        allow(dead_code)
    )]
    pub(crate) fn dec(&self) {
        self.value.fetch_sub(1, Ordering::Relaxed);
        self.metric.decrement(1.0);
    }

    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn set(&self, value: u64) {
        self.value.store(value, Ordering::Relaxed);
        self.metric.set(value as f64);
    }

    pub(crate) fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// A gauge with the `source` label.
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
pub(crate) fn gauge(name: &'static str, source: &str) -> Gauged {
    Gauged::new(name, source)
}

/// Why a source refused input before it became an event: the `reason` label of
/// `pipeline_source_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// Only the HTTP source gives every reason.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) enum Reject {
    /// Input that does not decode: bad JSON or NDJSON, an event breaking the shape.
    /// The only reason that also counts in `pipeline_source_malformed_total`.
    Malformed,
    /// A request without a single event (HTTP `400`).
    Empty,
    /// A line over `max_line_bytes` or a body over `max_body_bytes` (HTTP `413`).
    TooLarge,
    /// A missing or wrong bearer token (HTTP `401`).
    Unauthorized,
    /// A body slower than `body_read_timeout` (HTTP `408`).
    Timeout,
    /// A content type other than JSON or NDJSON (HTTP `415`).
    UnsupportedMediaType,
    /// A body that could not be read: the client broke the connection or the chunked
    /// encoding (HTTP `400`).
    ReadError,
}

impl Reject {
    const COUNT: usize = 7;

    /// The `reason` label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Reject::Malformed => "malformed",
            Reject::Empty => "empty",
            Reject::TooLarge => "too_large",
            Reject::Unauthorized => "unauthorized",
            Reject::Timeout => "timeout",
            Reject::UnsupportedMediaType => "unsupported_media_type",
            Reject::ReadError => "read_error",
        }
    }
}

/// Refused input by reason: `pipeline_source_rejected_total{source, reason}`, and
/// `pipeline_source_malformed_total{source}` for [`Reject::Malformed`] alone.
pub(crate) struct Rejects {
    /// One series per reason the source can give, registered at 0.
    by_reason: [Option<Counted>; Reject::COUNT],
    malformed: metrics::Counter,
    total: AtomicU64,
}

impl Rejects {
    fn new(source: &str, reasons: &[Reject]) -> Self {
        let mut by_reason: [Option<Counted>; Reject::COUNT] = Default::default();
        for &reason in reasons {
            by_reason[reason as usize] = Some(Counted::labelled(
                "pipeline_source_rejected_total",
                source,
                "reason",
                reason.label(),
            ));
        }
        Rejects {
            by_reason,
            malformed: metrics::counter!("pipeline_source_malformed_total", "source" => source.to_owned()),
            total: AtomicU64::new(0),
        }
    }

    /// One piece of input (a line, a body, a request) refused for `reason`.
    #[cfg_attr(
        not(any(feature = "http", feature = "tcp", feature = "file")),
        allow(dead_code)
    )]
    pub(crate) fn add(&self, reason: Reject) {
        self.total.fetch_add(1, Ordering::Relaxed);
        match &self.by_reason[reason as usize] {
            Some(counted) => counted.add(1),
            None => debug_assert!(false, "{reason:?} was not declared by the source"),
        }
        if reason == Reject::Malformed {
            self.malformed.increment(1);
        }
    }

    /// Refused for `reason` so far.
    pub(crate) fn get(&self, reason: Reject) -> u64 {
        self.by_reason[reason as usize]
            .as_ref()
            .map_or(0, Counted::get)
    }

    fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// The counters every source keeps.
pub(crate) struct SourceCounters {
    pub(crate) received: Counted,
    pub(crate) published: Counted,
    pub(crate) rejects: Rejects,
    pub(crate) backoff: Counted,
    pub(crate) full: Counted,
    pub(crate) not_published: Counted,
    pub(crate) in_flight: Gauged,
    pub(crate) connections: Gauged,
}

impl SourceCounters {
    /// The counters of `source`, which refuses input for these `reasons` (each gets
    /// its `pipeline_source_rejected_total` series, at 0 until the first).
    pub(crate) fn new(source: &str, reasons: &[Reject]) -> Self {
        describe_metrics();
        SourceCounters {
            received: Counted::new("pipeline_source_received_events_total", source),
            published: Counted::new("pipeline_source_published_events_total", source),
            rejects: Rejects::new(source, reasons),
            backoff: Counted::new("pipeline_source_backoff_total", source),
            full: Counted::new("pipeline_source_full_total", source),
            not_published: Counted::new("pipeline_source_not_published_events_total", source),
            in_flight: Gauged::new("pipeline_source_in_flight_events", source),
            connections: Gauged::new("pipeline_source_connections", source),
        }
    }

    pub(crate) fn stats(&self) -> SourceStats {
        SourceStats {
            received: self.received.get(),
            published: self.published.get(),
            rejected: self.rejects.total(),
            malformed: self.rejects.get(Reject::Malformed),
            backoff: self.backoff.get(),
            full: self.full.get(),
            not_published: self.not_published.get(),
            in_flight: self.in_flight.get(),
            connections: self.connections.get(),
        }
    }
}

#[cfg(any(feature = "tcp", feature = "file"))]
mod blocking {
    use super::SourceCounters;
    use crate::util::StopSignal;
    use pipeline_core::bus::{PublishError, Publisher};
    use pipeline_core::envelope::Envelope;
    use std::time::Duration;

    /// How long one wait for the bus lasts before the stop flag is looked at again.
    const WAIT_SLICE: Duration = Duration::from_millis(100);

    impl SourceCounters {
        /// Publishes from a thread that may wait (TCP, files): tries without waiting
        /// first, to count the pressure, then waits in slices so a stop request is
        /// seen. Returns `false` when the event was not published (stopped, or the bus
        /// closed); it is counted in `not_published`.
        pub(crate) fn publish_blocking(
            &self,
            publisher: &Publisher<Envelope>,
            event: Envelope,
            stop: &StopSignal,
        ) -> bool {
            let mut event = match publisher.try_publish(event) {
                Ok(()) => {
                    self.published.add(1);
                    return true;
                }
                Err(PublishError::Full { event, .. }) => {
                    self.full.add(1);
                    event
                }
                Err(PublishError::Backoff { event, .. }) => {
                    self.backoff.add(1);
                    event
                }
                Err(PublishError::Closed(_)) => {
                    self.not_published.add(1);
                    return false;
                }
                Err(other) => other.into_inner(),
            };
            self.in_flight.inc();
            let published = loop {
                if stop.is_stopped() {
                    break false;
                }
                match publisher.publish_timeout(event, WAIT_SLICE) {
                    Ok(()) => break true,
                    Err(PublishError::Closed(_)) => break false,
                    Err(other) => event = other.into_inner(),
                }
            };
            self.in_flight.dec();
            if published {
                self.published.add(1);
            } else {
                self.not_published.add(1);
            }
            published
        }
    }
}

/// `# HELP` texts for the sources' metric families, given to the recorder installed
/// now (a recorder installed later does not get them: install it first).
fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(
        "pipeline_source_received_events_total",
        "Events a source decoded from its input."
    );
    describe_counter!(
        "pipeline_source_published_events_total",
        "Events a source's bus accepted."
    );
    describe_counter!(
        "pipeline_source_rejected_total",
        "Input a source refused before it became an event, by reason."
    );
    describe_counter!(
        "pipeline_source_malformed_total",
        "Input a source refused because it did not decode (reason=\"malformed\" only)."
    );
    describe_counter!(
        "pipeline_source_backoff_total",
        "Publishes refused by the bus's rate limit."
    );
    describe_counter!(
        "pipeline_source_full_total",
        "Publishes refused because a Block subscription was full."
    );
    describe_counter!(
        "pipeline_source_not_published_events_total",
        "Events a source received but never published (the peer was told, or they stayed in their origin)."
    );
    describe_gauge!(
        "pipeline_source_in_flight_events",
        "Events a source holds now: read and not yet published (NATS: not yet acknowledged)."
    );
    describe_gauge!(
        "pipeline_source_connections",
        "Connections a source has open now."
    );
}
