//! What the policy sees: plain values the control loop fills from the bus snapshot, the
//! pools' stats and the sensors. Nothing here refers to `pipeline-core`'s machinery
//! (only to its [`OverflowPolicy`] value), so the policy runs on numbers a test writes
//! by hand.

use pipeline_core::bus::OverflowPolicy;
use std::time::Duration;

/// One tick's view of the pipeline: every buffer, every pool, memory, CPU and the
/// publish rate. Built by the control loop (or by hand in tests) and passed to
/// [`HysteresisPolicy::decide`](super::HysteresisPolicy::decide).
///
/// Names identify buffers and pools across ticks, so they must be unique within their
/// list; the policy keeps per-name state (cooldowns, windows, the previous backlog).
///
/// # Examples
///
/// ```
/// use pipeline_controller::policy::{BufferObservation, Observation, PoolObservation};
///
/// const MIB: u64 = 1 << 20;
/// let obs = Observation::new()
///     .buffer(BufferObservation::new("orders", 64, 8, 1024).len(60).bytes_per_event(512.0))
///     .pool(PoolObservation::new("orders", 2, 1, 8).utilisation(0.9).backlog(60))
///     .memory(300 * MIB, Some(512 * MIB))
///     .cpu_limit(Some(4.0))
///     .observed_publish_rate(Some(1200.0));
/// assert_eq!(obs.buffers[0].saturation(), 60.0 / 64.0);
/// assert_eq!(obs.memory.share(), Some(300.0 / 512.0));
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observation {
    /// Every subscription's buffer, in subscription order.
    pub buffers: Vec<BufferObservation>,
    /// Every worker pool.
    pub pools: Vec<PoolObservation>,
    /// Memory in use, its limit and pressure.
    pub memory: MemoryObservation,
    /// The CPU limit in cores (`None`: unknown, no cap on workers).
    pub cpu_limit_cores: Option<f64>,
    /// The publish-rate limit in force, events per second (`None`: unlimited).
    pub publish_rate: Option<f64>,
    /// Events per second publishers offered since the previous observation: those
    /// published plus those refused or delayed by the rate limit. This is the demand a
    /// throttle starts from and the rate at which it is lifted again. `None` when not
    /// measured (then a throttle starts from the limit in force only).
    pub observed_publish_rate: Option<f64>,
}

impl Observation {
    /// An empty observation: no buffers, no pools, no memory limit, no CPU limit, no
    /// publish-rate limit. Add parts with the setters.
    pub fn new() -> Observation {
        Observation::default()
    }

    /// Adds a buffer.
    #[must_use]
    pub fn buffer(mut self, buffer: BufferObservation) -> Observation {
        self.buffers.push(buffer);
        self
    }

    /// Adds a pool.
    #[must_use]
    pub fn pool(mut self, pool: PoolObservation) -> Observation {
        self.pools.push(pool);
        self
    }

    /// Sets memory in use and its limit, in bytes.
    #[must_use]
    pub fn memory(mut self, used_bytes: u64, limit_bytes: Option<u64>) -> Observation {
        self.memory.used_bytes = used_bytes;
        self.memory.limit_bytes = limit_bytes;
        self
    }

    /// Sets memory pressure: PSI "some" average over 10 s, in percent.
    #[must_use]
    pub fn psi(mut self, some_avg10: Option<f64>) -> Observation {
        self.memory.psi_some_avg10 = some_avg10;
        self
    }

    /// Sets the CPU limit, in cores.
    #[must_use]
    pub fn cpu_limit(mut self, cores: Option<f64>) -> Observation {
        self.cpu_limit_cores = cores;
        self
    }

    /// Sets the publish-rate limit in force, events per second.
    #[must_use]
    pub fn publish_rate(mut self, rate: Option<f64>) -> Observation {
        self.publish_rate = rate;
        self
    }

    /// Sets the rate publishers offered, events per second.
    #[must_use]
    pub fn observed_publish_rate(mut self, rate: Option<f64>) -> Observation {
        self.observed_publish_rate = rate;
        self
    }

    /// Workers across all pools.
    pub fn total_workers(&self) -> usize {
        self.pools.iter().map(|p| p.workers).sum()
    }

    /// Bytes all buffers would hold when full: the sum of `capacity * bytes_per_event`.
    /// This is what the memory budget counts.
    pub fn buffer_bytes(&self) -> f64 {
        self.buffers
            .iter()
            .map(BufferObservation::bytes_at_capacity)
            .sum()
    }
}

/// Memory in use, its limit and pressure, from the memory sensor.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MemoryObservation {
    /// The working set, bytes.
    pub used_bytes: u64,
    /// The memory limit, bytes (`None`: unknown; only pressure can then make the policy
    /// defensive, and buffers have no memory budget).
    pub limit_bytes: Option<u64>,
    /// PSI "some" average over 10 s, percent (0-100), where the kernel reports it.
    pub psi_some_avg10: Option<f64>,
}

impl MemoryObservation {
    /// Memory in use as a share of the limit (1.0 = at the limit), `None` without a
    /// known, non-zero limit.
    ///
    /// ```
    /// use pipeline_controller::policy::MemoryObservation;
    ///
    /// let memory = MemoryObservation { used_bytes: 90, limit_bytes: Some(100), psi_some_avg10: None };
    /// assert_eq!(memory.share(), Some(0.9));
    /// ```
    pub fn share(&self) -> Option<f64> {
        self.limit_bytes
            .filter(|&limit| limit > 0)
            .map(|limit| self.used_bytes as f64 / limit as f64)
    }
}

/// One subscription's buffer.
///
/// # Examples
///
/// ```
/// use pipeline_controller::policy::BufferObservation;
/// use std::time::Duration;
///
/// let buffer = BufferObservation::new("audit", 100, 8, 1000).len(35);
/// assert_eq!(buffer.saturation(), 0.35);
/// // Publishers waited for room since the last tick: it was full, whatever len says now.
/// assert_eq!(buffer.blocked(Duration::from_millis(20)).saturation(), 1.0);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct BufferObservation {
    /// The subscription's name.
    pub name: String,
    /// Events buffered now.
    pub len: usize,
    /// The capacity in force.
    pub capacity: usize,
    /// The lowest capacity the policy may set.
    pub min: usize,
    /// The highest capacity the policy may set.
    pub max: usize,
    /// Average bytes per event, by the subscription's event-size function.
    pub bytes_per_event: f64,
    /// Whether the subscription may be switched to dropping.
    pub droppable: bool,
    /// The overflow mode in force.
    pub overflow: OverflowPolicy,
    /// Events dropped since the previous observation.
    pub drops: u64,
    /// Time publishers spent waiting for room since the previous observation.
    pub blocked: Duration,
}

impl BufferObservation {
    /// A lossless (`Block`), empty buffer of `capacity` within `[min, max]`, one byte per
    /// event.
    pub fn new(name: impl Into<String>, capacity: usize, min: usize, max: usize) -> Self {
        BufferObservation {
            name: name.into(),
            len: 0,
            capacity,
            min,
            max,
            bytes_per_event: 1.0,
            droppable: false,
            overflow: OverflowPolicy::Block,
            drops: 0,
            blocked: Duration::ZERO,
        }
    }

    /// Sets the events buffered now.
    #[must_use]
    pub fn len(mut self, len: usize) -> Self {
        self.len = len;
        self
    }

    /// Sets the average bytes per event.
    #[must_use]
    pub fn bytes_per_event(mut self, bytes: f64) -> Self {
        self.bytes_per_event = bytes;
        self
    }

    /// Sets whether the buffer may be switched to dropping.
    #[must_use]
    pub fn droppable(mut self, droppable: bool) -> Self {
        self.droppable = droppable;
        self
    }

    /// Sets the overflow mode in force.
    #[must_use]
    pub fn overflow(mut self, overflow: OverflowPolicy) -> Self {
        self.overflow = overflow;
        self
    }

    /// Sets the events dropped since the previous observation.
    #[must_use]
    pub fn drops(mut self, drops: u64) -> Self {
        self.drops = drops;
        self
    }

    /// Sets the time publishers waited for room since the previous observation.
    #[must_use]
    pub fn blocked(mut self, blocked: Duration) -> Self {
        self.blocked = blocked;
        self
    }

    /// Whether the buffer was full at some point since the previous observation:
    /// publishers waited, or events were dropped.
    pub fn was_full(&self) -> bool {
        self.drops > 0 || !self.blocked.is_zero()
    }

    /// How full the buffer is: 1.0 when it [was full](Self::was_full) since the previous
    /// observation (a sample of `len` can miss a buffer that filled and drained between
    /// ticks), else `len / capacity` (above 1.0 while a shrink settles; 1.0 for a zero
    /// capacity).
    pub fn saturation(&self) -> f64 {
        if self.was_full() || self.capacity == 0 {
            1.0
        } else {
            self.len as f64 / self.capacity as f64
        }
    }

    /// Bytes the buffer holds when full: `capacity * bytes_per_event`.
    pub fn bytes_at_capacity(&self) -> f64 {
        self.capacity as f64 * self.bytes_per_event
    }
}

/// One worker pool, and the stage it drains (a pool and a buffer with the same name are
/// one stage).
///
/// The readings `arrival_rate`, `service_time`, `cpu_per_event` and `waiting` feed the
/// queueing model that sizes the pool and its buffer; all are optional. Before λ and S
/// have been observed (a cold start, or a test that leaves them out) the pool is sized
/// from its utilisation instead.
///
/// # Examples
///
/// ```
/// use pipeline_controller::policy::PoolObservation;
/// use std::time::Duration;
///
/// let pool = PoolObservation::new("orders", 4, 1, 16).utilisation(0.85).backlog(120);
/// assert_eq!((pool.workers, pool.backlog), (4, 120));
///
/// // 300 events/s offered, 20 ms each: a load of 6 busy workers.
/// let pool = pool
///     .arrival_rate(300.0)
///     .service_time(Duration::from_millis(20))
///     .cpu_per_event(None)
///     .waiting(0.0);
/// assert_eq!(pool.arrival_rate, Some(300.0));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PoolObservation {
    /// The pool's name.
    pub name: String,
    /// Workers taking events.
    pub workers: usize,
    /// The lowest worker count the policy may set.
    pub min: usize,
    /// The highest worker count the policy may set.
    pub max: usize,
    /// Share of the workers' time spent in the handler, 0 to 1.
    pub utilisation: f64,
    /// Share of events whose handler failed since the previous observation, 0 to 1.
    pub error_rate: f64,
    /// Events waiting in the pool's subscription. Without a model (below) the policy
    /// compares it with the previous tick's to tell whether the pool is catching up;
    /// with one, it is part of the backlog the drain term clears.
    pub backlog: usize,
    /// λ: events per second offered to the stage since the previous observation: those
    /// its subscription took in, plus publishes refused or dropped on the way (`None`:
    /// not measured). With [`service_time`](Self::service_time) it sizes the pool by
    /// the queueing model; alone, the buffer.
    pub arrival_rate: Option<f64>,
    /// S: mean handler time per event, wall clock, over the latest readings (`None`:
    /// not measured, for example no event finished yet).
    pub service_time: Option<Duration>,
    /// CPU time per event spent in the handler (`None`: not measured). With the service
    /// time it tells how much of a core a busy worker uses, which sets the CPU cap.
    pub cpu_per_event: Option<Duration>,
    /// Demand waiting outside the buffer, events: for example publishers blocked on a
    /// full buffer, on average since the previous observation. Counted in the backlog
    /// the drain term clears. Default 0.
    pub waiting: f64,
}

impl PoolObservation {
    /// An idle pool of `workers` within `[min, max]`: no utilisation, no errors, no
    /// backlog.
    pub fn new(name: impl Into<String>, workers: usize, min: usize, max: usize) -> Self {
        PoolObservation {
            name: name.into(),
            workers,
            min,
            max,
            utilisation: 0.0,
            error_rate: 0.0,
            backlog: 0,
            arrival_rate: None,
            service_time: None,
            cpu_per_event: None,
            waiting: 0.0,
        }
    }

    /// Sets the utilisation, 0 to 1.
    #[must_use]
    pub fn utilisation(mut self, utilisation: f64) -> Self {
        self.utilisation = utilisation;
        self
    }

    /// Sets the error rate, 0 to 1.
    #[must_use]
    pub fn error_rate(mut self, error_rate: f64) -> Self {
        self.error_rate = error_rate;
        self
    }

    /// Sets the backlog, events.
    #[must_use]
    pub fn backlog(mut self, backlog: usize) -> Self {
        self.backlog = backlog;
        self
    }

    /// Sets λ, the events per second offered to the stage (`None`: not measured).
    #[must_use]
    pub fn arrival_rate(mut self, rate: impl Into<Option<f64>>) -> Self {
        self.arrival_rate = rate.into();
        self
    }

    /// Sets S, the mean handler time per event (`None`: not measured).
    #[must_use]
    pub fn service_time(mut self, time: impl Into<Option<Duration>>) -> Self {
        self.service_time = time.into();
        self
    }

    /// Sets the CPU time per event (`None`: not measured).
    #[must_use]
    pub fn cpu_per_event(mut self, time: impl Into<Option<Duration>>) -> Self {
        self.cpu_per_event = time.into();
        self
    }

    /// Sets the demand waiting outside the buffer, events.
    #[must_use]
    pub fn waiting(mut self, events: f64) -> Self {
        self.waiting = events;
        self
    }
}
