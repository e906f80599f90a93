//! What a pool measures: busy time over a sliding window, processing latency, counts.

use hdrhistogram::Histogram;
use std::sync::Arc;
use std::time::Duration;

/// The utilisation window: 10 buckets of 500 ms, so "the last 5 seconds".
const BUCKETS: usize = 10;
const BUCKET_NANOS: u64 = 500_000_000;
/// Latencies are recorded in microseconds, up to an hour, to 2 significant digits.
const LATENCY_MAX_MICROS: u64 = 3_600_000_000;

/// A snapshot of a [`WorkerPool`](super::WorkerPool)'s gauges and counters.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PoolStats {
    /// The pool's name.
    pub name: Arc<str>,
    /// Workers taking events: the target of the latest resize, less any that exited
    /// because the subscription was closed.
    pub workers: usize,
    /// Workers told to stop that are still finishing an event.
    pub retiring: usize,
    /// The lowest worker count a resize may set.
    pub min_workers: usize,
    /// The highest worker count a resize may set.
    pub max_workers: usize,
    /// Share of the workers' time spent in the handler over the last 5 seconds, between
    /// 0 and 1. Each worker's time counts from its start (or the window's) to its exit
    /// (or now), so it reads right just after the pool grew or shrank.
    pub utilisation: f64,
    /// Events the handler processed successfully.
    pub processed: u64,
    /// Events for which the handler returned an error.
    pub failed: u64,
    /// Events during which the handler panicked. The worker that caught the panic keeps
    /// going (a caught panic leaves its thread healthy), so no worker is replaced.
    pub panics: u64,
    /// Events handed to the dead-letter hook (failed and panicked ones, when a hook is
    /// set).
    pub dead_letters: u64,
    /// Times the dead-letter hook itself panicked (caught and logged).
    pub dead_letter_panics: u64,
    /// Events waiting in the pool's subscription.
    pub queued: usize,
    /// Handler time per event, over every event since the pool started.
    pub latency: Latency,
    /// Handler wall time summed over every event since the pool started (processed,
    /// failed or panicked): with the count of finished events, the exact mean service
    /// time over any span between two stats.
    pub busy_time: Duration,
    /// Handler CPU time (the worker thread's CPU clock; for async workers, summed over
    /// the handler future's polls) over the sampled events: one in 8 per worker. The
    /// controller's CPU per event is `cpu.time / cpu.events` over a span; zero where
    /// the OS gives no thread CPU clock.
    pub cpu: CpuSample,
}

/// Handler CPU time over a sample of events (see [`PoolStats::cpu`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CpuSample {
    /// Events measured.
    pub events: u64,
    /// CPU time they took together.
    pub time: Duration,
}

impl CpuSample {
    /// Mean CPU time per event, `None` before the first sample.
    ///
    /// ```
    /// use pipeline_core::pool::CpuSample;
    ///
    /// assert_eq!(CpuSample::default().per_event(), None);
    /// ```
    pub fn per_event(&self) -> Option<Duration> {
        (self.events > 0).then(|| self.time / u32::try_from(self.events).unwrap_or(u32::MAX))
    }
}

/// Percentiles of a duration, such as handler time per event (to 2 significant digits,
/// microsecond resolution); all zero before the first sample. Made by a
/// [`LatencyRecorder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Latency {
    /// Events measured.
    pub count: u64,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest.
    pub max: Duration,
}

/// Durations recorded into a histogram (microsecond resolution, 2 significant digits,
/// up to an hour) and read back as [`Latency`] percentiles: what each pool worker keeps,
/// public so that other stages (the adapters' sinks, your own) report latency the same
/// way.
///
/// # Examples
///
/// ```
/// use pipeline_core::pool::LatencyRecorder;
/// use std::time::Duration;
///
/// let mut recorder = LatencyRecorder::new();
/// for ms in [1, 2, 3, 4, 100] {
///     recorder.record(Duration::from_millis(ms));
/// }
/// let latency = recorder.latency();
/// assert_eq!(latency.count, 5);
/// // Two significant digits: within 1% of the recorded values.
/// assert!(latency.p50 >= Duration::from_millis(3) && latency.p50 < Duration::from_micros(3030));
/// assert!(latency.max >= Duration::from_millis(100) && latency.p90 <= latency.max);
/// ```
#[derive(Debug, Clone)]
pub struct LatencyRecorder {
    histogram: Histogram<u64>,
}

impl LatencyRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        LatencyRecorder {
            histogram: Histogram::new_with_bounds(1, LATENCY_MAX_MICROS, 2)
                .expect("valid histogram bounds"),
        }
    }

    /// Records one duration (below a microsecond counts as one; above an hour as an
    /// hour).
    pub fn record(&mut self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(micros.max(1));
    }

    /// Adds what `other` recorded.
    pub fn merge(&mut self, other: &LatencyRecorder) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
    }

    /// The percentiles so far; all zero before the first record.
    pub fn latency(&self) -> Latency {
        let h = &self.histogram;
        if h.is_empty() {
            return Latency::default();
        }
        let at = |q| Duration::from_micros(h.value_at_quantile(q));
        Latency {
            count: h.len(),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: Duration::from_micros(h.max()),
        }
    }
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self::new()
    }
}

/// What one worker records per event; merged into the pool's record when it exits.
#[derive(Clone)]
pub(crate) struct WorkerRecord {
    window: BusyWindow,
    /// The time exited workers were alive, per bucket: the capacity they offered.
    alive: BusyWindow,
    latency: LatencyRecorder,
    /// Handler wall time over every event.
    busy: Duration,
    /// Handler CPU time over the sampled events.
    cpu: CpuSample,
}

impl WorkerRecord {
    pub(crate) fn new() -> Self {
        WorkerRecord {
            window: BusyWindow::default(),
            alive: BusyWindow::default(),
            latency: LatencyRecorder::new(),
            busy: Duration::ZERO,
            cpu: CpuSample::default(),
        }
    }

    /// One event handled from `start` for `elapsed` (nanoseconds since the pool's
    /// epoch), with its CPU time if it was sampled.
    pub(crate) fn record(&mut self, start: u64, elapsed: Duration, cpu: Option<Duration>) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.window.add(start, start.saturating_add(nanos));
        self.latency.record(elapsed);
        self.busy += elapsed;
        if let Some(cpu) = cpu {
            self.cpu.events += 1;
            self.cpu.time += cpu;
        }
    }

    /// The worker lived from `start` to `end` (nanoseconds since the pool's epoch).
    pub(crate) fn lived(&mut self, start: u64, end: u64) {
        self.alive.add(start, end);
    }

    pub(crate) fn merge(&mut self, other: &WorkerRecord) {
        self.window.merge(&other.window);
        self.alive.merge(&other.alive);
        self.latency.merge(&other.latency);
        self.busy += other.busy;
        self.cpu.events += other.cpu.events;
        self.cpu.time += other.cpu.time;
    }

    /// Busy nanoseconds inside the window ending at `now`.
    pub(crate) fn busy_in_window(&self, now: u64) -> u64 {
        self.window.sum(now)
    }

    /// Nanoseconds that the exited workers recorded here were alive inside the window
    /// ending at `now`.
    pub(crate) fn alive_in_window(&self, now: u64) -> u64 {
        self.alive.sum(now)
    }

    pub(crate) fn latency(&self) -> Latency {
        self.latency.latency()
    }

    /// Handler wall time over every event recorded here.
    pub(crate) fn busy(&self) -> Duration {
        self.busy
    }

    /// Handler CPU time over the sampled events recorded here.
    pub(crate) fn cpu(&self) -> CpuSample {
        self.cpu
    }
}

/// The start of the utilisation window that ends at `now` (nanoseconds since epoch):
/// the current, partial bucket and the `BUCKETS - 1` before it.
pub(crate) fn window_start(now: u64) -> u64 {
    (now / BUCKET_NANOS).saturating_sub(BUCKETS as u64 - 1) * BUCKET_NANOS
}

/// Busy nanoseconds per 500 ms bucket, for the last `BUCKETS` buckets.
#[derive(Default, Clone)]
struct BusyWindow {
    /// Which bucket (time / BUCKET_NANOS) each slot holds.
    bucket: [u64; BUCKETS],
    busy: [u64; BUCKETS],
}

impl BusyWindow {
    /// Adds the busy interval `[start, end)`, split over the buckets it spans.
    fn add(&mut self, start: u64, end: u64) {
        // Only the last BUCKETS buckets of a long interval can still be in a window.
        let first =
            (start / BUCKET_NANOS).max((end / BUCKET_NANOS).saturating_sub(BUCKETS as u64 - 1));
        for b in first..=end / BUCKET_NANOS {
            let from = start.max(b * BUCKET_NANOS);
            let to = end.min((b + 1) * BUCKET_NANOS);
            if to > from {
                self.add_to(b, to - from);
            }
        }
    }

    fn add_to(&mut self, bucket: u64, nanos: u64) {
        let slot = (bucket % BUCKETS as u64) as usize;
        if self.bucket[slot] != bucket {
            if self.bucket[slot] > bucket {
                return; // older than what the slot holds: outside any future window
            }
            self.bucket[slot] = bucket;
            self.busy[slot] = 0;
        }
        self.busy[slot] += nanos;
    }

    fn merge(&mut self, other: &BusyWindow) {
        for slot in 0..BUCKETS {
            if other.busy[slot] > 0 {
                self.add_to(other.bucket[slot], other.busy[slot]);
            }
        }
    }

    fn sum(&self, now: u64) -> u64 {
        let newest = now / BUCKET_NANOS;
        let oldest = window_start(now) / BUCKET_NANOS;
        (0..BUCKETS)
            .filter(|&slot| (oldest..=newest).contains(&self.bucket[slot]))
            .map(|slot| self.busy[slot])
            .sum()
    }
}

#[cfg(all(test, not(pipeline_loom)))]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn interval_split_over_buckets() {
        let mut w = BusyWindow::default();
        w.add(400 * MS, 1_100 * MS); // 100 ms in bucket 0, 500 in 1, 100 in 2
        assert_eq!(w.sum(1_200 * MS), 700 * MS);
        // At 5.2 s the window is buckets 1..=10: bucket 0 has left it.
        assert_eq!(w.sum(5_200 * MS), 600 * MS);
        assert_eq!(w.sum(60_000 * MS), 0);
    }

    #[test]
    fn long_interval_keeps_only_the_window() {
        let mut w = BusyWindow::default();
        w.add(0, 20_000 * MS);
        // Buckets 31..=39 (15.5 s to 20 s) are all that is kept.
        assert_eq!(w.sum(19_999 * MS), 4_500 * MS);
    }

    #[test]
    fn merge_adds_matching_buckets() {
        let mut a = BusyWindow::default();
        let mut b = BusyWindow::default();
        a.add(0, 100 * MS);
        b.add(50 * MS, 150 * MS);
        a.merge(&b);
        assert_eq!(a.sum(200 * MS), 200 * MS);
    }

    #[test]
    fn latency_percentiles() {
        let mut r = WorkerRecord::new();
        for ms in 1..=100 {
            r.record(0, Duration::from_millis(ms), None);
        }
        let l = r.latency();
        assert_eq!(l.count, 100);
        assert!((49..=51).contains(&l.p50.as_millis()), "{l:?}");
        assert!((98..=100).contains(&l.p99.as_millis()), "{l:?}");
        assert_eq!(l.max.as_millis(), 100);
    }
}
