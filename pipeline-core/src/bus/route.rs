//! One subscription as the bus sees it: its channel's sending end, its filter, its
//! policy and flags, and the edge detection that raises signals.

use super::config::Filter;
use super::error::BusError;
use super::snapshot::SubscriptionSnapshot;
use crate::channel::{ChannelStats, Receiver, Sender, TrySendError};
use crate::overflow::OverflowPolicy;
use crate::range::Bounds;
use crate::signal::{SaturationThresholds, SignalKind, SignalSender};
use crate::sync::{
    Mutex,
    atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering},
    lock,
};
use crossbeam_utils::CachePadded;
// std's `Arc`, not `crate::sync`'s: subscriptions hold a `Weak` to the bus, and no loom
// model depends on the bus's reference counts.
use std::sync::Arc;

/// What every subscription of one bus shares.
pub(crate) struct BusCommon {
    /// The bus's name: the `pipeline` label of every series of the bus, its
    /// subscriptions and the pools on them.
    pub(crate) name: Arc<str>,
    pub(crate) signals: SignalSender,
    pub(crate) thresholds: SaturationThresholds,
}

// The subscription's state word: the overflow policy in the low bits, then the flags
// whose edges raise signals. One word, so a delivery reads the policy and the flags
// with one load.
const POLICY_MASK: u32 = 0b11;
const SATURATED: u32 = 1 << 2;
const BACK_PRESSURE: u32 = 1 << 3;
const DROPPING: u32 = 1 << 4;
const EPISODE: u32 = SATURATED | BACK_PRESSURE | DROPPING;

/// A threshold crossing found by a length sample.
#[derive(Clone, Copy)]
pub(crate) enum Edge {
    /// Saturation crossed up.
    Saturated,
    /// The length fell to the low threshold: the episode (saturation, back pressure,
    /// drops) ends.
    EpisodeEnded,
}

/// What [`Route::try_deliver_plain`] did.
pub(crate) enum Plain<E> {
    /// Delivered.
    Done,
    /// Delivered, and the length crossed a saturation edge: the caller raises it with
    /// [`SubShared::raise_edge`] once it has left its read of the route list (raising
    /// runs the user's logging and metrics back ends).
    Edge(Arc<SubShared>, Edge, usize),
    /// The buffer is full (counted); the event is handed back for the waiting path.
    Full(E),
    /// For the general path (a dropping policy, or the subscription is gone); nothing
    /// was counted.
    Elsewhere(E),
}

/// The type-independent half of a subscription, shared by its [`Route`], its
/// `Subscription` handle and snapshots.
pub(crate) struct SubShared {
    pub(crate) id: u64,
    pub(crate) name: Arc<str>,
    pub(crate) droppable: bool,
    /// Whether `bytes_in` is kept (a custom event-size function was given).
    sized: bool,
    default_event_bytes: usize,
    state: AtomicU32,
    /// The capacity and what follows from it, set together under `control`.
    levels: Levels,
    /// Written per event by publishers when a custom event-size function is given:
    /// on its own cache line, away from the read-mostly fields above.
    bytes_in: CachePadded<AtomicU64>,
    dropped_newest: AtomicU64,
    dropped_oldest: AtomicU64,
    try_publish_waits: AtomicU64,
    /// Serialises resizes, range changes and policy switches of this subscription, and
    /// holds the range a resize clamps into (read under it, so a snapshot never sees
    /// half of a range change).
    pub(crate) control: Mutex<Bounds>,
    common: Arc<BusCommon>,
    metrics: SubMetrics,
}

/// The capacity and the lengths derived from it, so the data path compares integers.
/// A reader may see a mix of two settings for an instant after a resize; the next
/// sample sees the new one, and the state flags keep each edge single.
struct Levels {
    /// The channel's capacity, mirrored here: the channel's own getter takes a lock.
    capacity: AtomicUsize,
    /// [`SaturationThresholds::high_len`] of `capacity`.
    high_len: AtomicUsize,
    /// [`SaturationThresholds::low_len`] of `capacity`.
    low_len: AtomicUsize,
    /// Saturation is sampled on one delivery (and, during an episode, one receive) in
    /// `stride_mask + 1`, per thread.
    stride_mask: AtomicU64,
}

impl Levels {
    fn new(capacity: usize, thresholds: &SaturationThresholds) -> Self {
        let levels = Levels {
            capacity: AtomicUsize::new(0),
            high_len: AtomicUsize::new(0),
            low_len: AtomicUsize::new(0),
            stride_mask: AtomicU64::new(0),
        };
        levels.set(capacity, thresholds);
        levels
    }

    fn set(&self, capacity: usize, thresholds: &SaturationThresholds) {
        self.capacity.store(capacity, Ordering::Relaxed);
        self.high_len
            .store(thresholds.high_len(capacity), Ordering::Relaxed);
        self.low_len
            .store(thresholds.low_len(capacity), Ordering::Relaxed);
        self.stride_mask
            .store(stride_mask(capacity), Ordering::Relaxed);
    }
}

struct SubMetrics {
    dropped_newest: metrics::Counter,
    dropped_oldest: metrics::Counter,
    delivered: metrics::Counter,
    received: metrics::Counter,
    len: metrics::Gauge,
    capacity: metrics::Gauge,
    bytes: metrics::Gauge,
    saturation: metrics::Gauge,
}

impl SubMetrics {
    fn new(name: &str, pipeline: &str) -> Self {
        let labels = || {
            [
                ("pipeline", pipeline.to_owned()),
                ("subscription", name.to_owned()),
            ]
        };
        let dropped = |policy: OverflowPolicy| {
            let [pipeline, subscription] = labels();
            metrics::counter!(
                "pipeline_subscription_dropped_total",
                &[
                    pipeline,
                    subscription,
                    ("policy", policy.as_str().to_owned())
                ]
            )
        };
        SubMetrics {
            dropped_newest: dropped(OverflowPolicy::DropNewest),
            dropped_oldest: dropped(OverflowPolicy::DropOldest),
            delivered: metrics::counter!("pipeline_subscription_delivered_total", &labels()),
            received: metrics::counter!("pipeline_subscription_received_total", &labels()),
            len: metrics::gauge!("pipeline_subscription_buffered_events", &labels()),
            capacity: metrics::gauge!("pipeline_subscription_capacity_events", &labels()),
            bytes: metrics::gauge!("pipeline_subscription_buffered_bytes", &labels()),
            saturation: metrics::gauge!("pipeline_subscription_saturation_ratio", &labels()),
        }
    }
}

/// Everything [`SubShared::new`] needs, named.
pub(crate) struct SubSpec {
    pub(crate) id: u64,
    pub(crate) name: Arc<str>,
    pub(crate) capacity: usize,
    pub(crate) range: Bounds,
    pub(crate) policy: OverflowPolicy,
    pub(crate) droppable: bool,
    pub(crate) sized: bool,
    pub(crate) default_event_bytes: usize,
}

fn stride_mask(capacity: usize) -> u64 {
    // Check every `stride` events, the power of two at or below capacity/16 (at most
    // 64): a threshold crossing is seen within ~6% of capacity, and a busy buffer is
    // not measured per event.
    let stride = 1u64 << (capacity / 16).clamp(1, 64).ilog2();
    stride - 1
}

impl SubShared {
    pub(crate) fn new(spec: SubSpec, common: Arc<BusCommon>) -> Self {
        SubShared {
            id: spec.id,
            metrics: SubMetrics::new(&spec.name, &common.name),
            name: spec.name,
            droppable: spec.droppable,
            sized: spec.sized,
            default_event_bytes: spec.default_event_bytes,
            state: AtomicU32::new(spec.policy.to_bits()),
            levels: Levels::new(spec.capacity, &common.thresholds),
            bytes_in: CachePadded::default(),
            dropped_newest: AtomicU64::new(0),
            dropped_oldest: AtomicU64::new(0),
            try_publish_waits: AtomicU64::new(0),
            control: Mutex::new(spec.range),
            common,
        }
    }

    #[inline]
    /// The bus's name (the `pipeline` label).
    pub(crate) fn pipeline(&self) -> &Arc<str> {
        &self.common.name
    }

    #[inline]
    pub(crate) fn policy(&self) -> OverflowPolicy {
        OverflowPolicy::from_bits(self.state.load(Ordering::Relaxed) & POLICY_MASK)
    }

    /// Switches the policy, keeping the flags; returns the previous one.
    pub(crate) fn set_policy(&self, policy: OverflowPolicy) -> OverflowPolicy {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            let next = (state & !POLICY_MASK) | policy.to_bits();
            match self
                .state
                .compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return OverflowPolicy::from_bits(state & POLICY_MASK),
                Err(current) => state = current,
            }
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.levels.capacity.load(Ordering::Relaxed)
    }

    /// Records a new capacity (the caller holds `control` and has resized the channel).
    pub(crate) fn set_capacity(&self, capacity: usize) {
        self.levels.set(capacity, &self.common.thresholds);
    }

    /// How often a delivery samples the length: one publish in `mask + 1` of each
    /// publishing thread has the channel return it (see `Sender::try_send_sampled`).
    #[inline]
    pub(crate) fn send_sample_mask(&self) -> u64 {
        self.levels.stride_mask.load(Ordering::Relaxed)
    }

    /// How often a receive samples the length: only an open episode (saturated, back
    /// pressure, dropping) can end on a receive, so a quiet subscription samples
    /// never and pays one load.
    #[inline]
    pub(crate) fn recv_sample_mask(&self) -> Option<u64> {
        (self.state.load(Ordering::Relaxed) & EPISODE != 0).then(|| self.send_sample_mask())
    }

    /// Raises the edges that `len` implies: saturation up, or the end of an episode.
    /// Inline: a sample that crosses nothing costs three loads and two compares.
    #[inline]
    pub(crate) fn check_saturation(&self, len: usize) {
        if let Some(edge) = self.edge(len) {
            self.raise_edge(edge, len);
        }
    }

    /// The edge `len` crosses, if any: saturation up, or the end of an episode.
    #[inline]
    pub(crate) fn edge(&self, len: usize) -> Option<Edge> {
        let levels = &self.levels;
        let state = self.state.load(Ordering::Relaxed);
        if state & SATURATED == 0 && len >= levels.high_len.load(Ordering::Relaxed) {
            Some(Edge::Saturated)
        } else if state & EPISODE != 0 && len <= levels.low_len.load(Ordering::Relaxed) {
            Some(Edge::EpisodeEnded)
        } else {
            None
        }
    }

    /// Sets or clears the flags of `edge` and raises its signals (which runs the
    /// user's logging and metrics back ends).
    #[cold]
    pub(crate) fn raise_edge(&self, edge: Edge, len: usize) {
        match edge {
            Edge::Saturated => self.enter(SATURATED, len, self.capacity(), None),
            Edge::EpisodeEnded => self.end_episode(len, self.capacity()),
        }
    }

    /// Whether the buffer may be full: a saturation or back-pressure episode is open.
    /// One load: a publish uses it to pick the subscriptions worth checking for room
    /// (a buffer that filled since its last length sample is missed).
    #[inline]
    pub(crate) fn may_be_full(&self) -> bool {
        self.state.load(Ordering::Relaxed) & (SATURATED | BACK_PRESSURE) != 0
    }

    /// A publisher found this `Block` subscription full.
    pub(crate) fn found_full(&self) {
        if self.state.load(Ordering::Relaxed) & (SATURATED | BACK_PRESSURE)
            != (SATURATED | BACK_PRESSURE)
        {
            let capacity = self.capacity();
            self.enter(SATURATED | BACK_PRESSURE, capacity, capacity, None);
        }
    }

    /// An event was dropped by `policy`.
    pub(crate) fn dropped(&self, policy: OverflowPolicy) {
        match policy {
            OverflowPolicy::DropOldest => {
                self.dropped_oldest.fetch_add(1, Ordering::Relaxed);
                self.metrics.dropped_oldest.increment(1);
            }
            _ => {
                self.dropped_newest.fetch_add(1, Ordering::Relaxed);
                self.metrics.dropped_newest.increment(1);
            }
        }
        if self.state.load(Ordering::Relaxed) & (SATURATED | DROPPING) != (SATURATED | DROPPING) {
            let capacity = self.capacity();
            self.enter(SATURATED | DROPPING, capacity, capacity, Some(policy));
        }
    }

    /// Sets `flags`, raising a signal for each one that was not set.
    #[cold]
    fn enter(&self, flags: u32, len: usize, capacity: usize, policy: Option<OverflowPolicy>) {
        let before = self.state.fetch_or(flags, Ordering::AcqRel);
        let new = flags & !before;
        let signals = &self.common.signals;
        if new & SATURATED != 0 {
            signals.raise(&self.name, SignalKind::SaturationHigh { len, capacity });
        }
        if new & BACK_PRESSURE != 0 {
            signals.raise(&self.name, SignalKind::BackPressureStarted);
        }
        if new & DROPPING != 0 {
            let policy = policy.unwrap_or(OverflowPolicy::DropNewest);
            signals.raise(&self.name, SignalKind::DropsStarted { policy });
        }
    }

    /// Clears every episode flag, raising the matching end signals.
    #[cold]
    fn end_episode(&self, len: usize, capacity: usize) {
        let before = self.state.fetch_and(!EPISODE, Ordering::AcqRel);
        let signals = &self.common.signals;
        if before & SATURATED != 0 {
            signals.raise(&self.name, SignalKind::SaturationLow { len, capacity });
        }
        if before & BACK_PRESSURE != 0 {
            signals.raise(&self.name, SignalKind::BackPressureStopped);
        }
        if before & DROPPING != 0 {
            let dropped_total = self.dropped_newest.load(Ordering::Relaxed)
                + self.dropped_oldest.load(Ordering::Relaxed);
            signals.raise(&self.name, SignalKind::DropsStopped { dropped_total });
        }
    }

    #[inline]
    pub(crate) fn add_bytes(&self, bytes: usize) {
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn count_try_publish_wait(&self) {
        self.try_publish_waits.fetch_add(1, Ordering::Relaxed);
    }

    /// Gauges and counters, from the channel's stats and this subscription's own.
    pub(crate) fn snapshot(&self, channel: ChannelStats) -> SubscriptionSnapshot {
        let state = self.state.load(Ordering::Relaxed);
        let dropped_oldest = self.dropped_oldest.load(Ordering::Relaxed);
        let avg_event_bytes = if self.sized && channel.sent > 0 {
            self.bytes_in.load(Ordering::Relaxed) / channel.sent
        } else {
            self.default_event_bytes as u64
        };
        let capacity = self.capacity();
        let range = *lock(&self.control);
        let snapshot = SubscriptionSnapshot {
            name: self.name.clone(),
            len: channel.len,
            capacity,
            min_capacity: range.min,
            max_capacity: range.max,
            saturation: if capacity == 0 {
                0.0
            } else {
                channel.len as f64 / capacity as f64
            },
            high_water_mark: channel.high_water_mark,
            delivered: channel.sent,
            // The channel counts DropOldest's evictions as receives.
            received: channel.received.saturating_sub(dropped_oldest),
            dropped_newest: self.dropped_newest.load(Ordering::Relaxed),
            dropped_oldest,
            full_events: channel.full_events,
            blocked_time: channel.blocked_time,
            waiting_publishers: channel.waiting_senders,
            try_publish_waits: self.try_publish_waits.load(Ordering::Relaxed),
            resizes: channel.resizes,
            avg_event_bytes,
            bytes_buffered: avg_event_bytes * channel.len as u64,
            overflow: OverflowPolicy::from_bits(state & POLICY_MASK),
            droppable: self.droppable,
            saturated: state & SATURATED != 0,
            back_pressure: state & BACK_PRESSURE != 0,
            dropping: state & DROPPING != 0,
        };
        let m = &self.metrics;
        m.delivered.absolute(snapshot.delivered);
        m.received.absolute(snapshot.received);
        m.len.set(snapshot.len as f64);
        m.capacity.set(snapshot.capacity as f64);
        m.bytes.set(snapshot.bytes_buffered as f64);
        m.saturation.set(snapshot.saturation);
        snapshot
    }
}

/// The bus's handle on one subscription: where and whether to deliver.
pub(crate) struct Route<E> {
    pub(crate) shared: Arc<SubShared>,
    filter: Option<Filter<E>>,
    pub(crate) tx: Sender<E>,
    /// A receiver for DropOldest's evictions. Taken out when the subscription is
    /// removed, so the subscription's own receiver is the last one and dropping it
    /// wakes publishers blocked on its buffer.
    evict: Mutex<Option<Receiver<E>>>,
    event_size: Option<fn(&E) -> usize>,
}

impl<E> Route<E> {
    pub(crate) fn new(
        shared: Arc<SubShared>,
        filter: Option<Filter<E>>,
        tx: Sender<E>,
        evict: Receiver<E>,
        event_size: Option<fn(&E) -> usize>,
    ) -> Self {
        Route {
            shared,
            filter,
            tx,
            evict: Mutex::new(Some(evict)),
            event_size,
        }
    }

    /// No filter and no event-size function: delivering runs none of the user's code.
    pub(crate) fn is_plain(&self) -> bool {
        self.filter.is_none() && self.event_size.is_none()
    }

    /// Sets the capacity to `applied` (already within the range) and returns it. The
    /// caller holds `shared.control`; `requested` is what was asked, for the log.
    pub(crate) fn resize_locked(
        &self,
        applied: usize,
        requested: usize,
    ) -> Result<usize, BusError> {
        let shared = &self.shared;
        let before = shared.capacity();
        if applied == before {
            return Ok(applied);
        }
        self.tx
            .resize(applied)
            .map_err(|_| BusError::UnknownSubscription(shared.name.to_string()))?;
        shared.set_capacity(applied);
        tracing::info!(
            subscription = %shared.name,
            from = before,
            to = applied,
            requested,
            "bus: subscription resized"
        );
        // A bigger buffer may end a saturation episode (or a smaller one start one).
        shared.check_saturation(self.tx.len());
        Ok(applied)
    }

    /// The whole of a publish to a plain `Block` route that finds room: no user code
    /// runs while `self` is borrowed (the caller reads it under a sticky hazard, see
    /// `HazardCell::read_sticky`). A saturation edge comes back with its own reference
    /// to the shared half, for the caller to raise after the read (logging and
    /// metrics back ends are user code), and a gone subscription hands the event back
    /// for the caller to drop later. `tick` is as for [`try_send`](Self::try_send).
    #[inline(always)]
    pub(crate) fn try_deliver_plain(&self, event: E, tick: u64) -> Plain<E> {
        if self.shared.policy() != OverflowPolicy::Block {
            return Plain::Elsewhere(event);
        }
        let sample = tick & self.shared.send_sample_mask() == 0;
        match self.tx.try_send_sampled(event, sample) {
            Ok(None) => Plain::Done,
            Ok(Some(len)) => match self.shared.edge(len) {
                Some(edge) => Plain::Edge(Arc::clone(&self.shared), edge, len),
                None => Plain::Done,
            },
            Err(TrySendError::Full(event)) => Plain::Full(event),
            Err(TrySendError::Disconnected(event)) => Plain::Elsewhere(event),
        }
    }

    #[inline]
    pub(crate) fn matches(&self, event: &E) -> bool {
        self.filter.as_ref().is_none_or(|filter| filter(event))
    }

    /// The subscription is being removed: closes its channel to every publisher (one
    /// still holding this route, even idle, cannot keep the subscriber waiting for a
    /// disconnect) and forgets the eviction receiver.
    pub(crate) fn detach(&self) {
        self.tx.close_all();
        drop(lock(&self.evict).take());
    }

    #[inline]
    pub(crate) fn size_of(&self, event: &E) -> Option<usize> {
        self.event_size.map(|size| size(event))
    }

    /// Bookkeeping after the channel accepted an event of `size` bytes; `len` is the
    /// length the send sampled, if it did.
    #[inline(always)]
    pub(crate) fn delivered(&self, size: Option<usize>, len: Option<usize>) {
        if let Some(bytes) = size {
            self.shared.add_bytes(bytes);
        }
        if let Some(len) = len {
            self.shared.check_saturation(len);
        }
    }

    /// One send that never waits: `Err` hands the event back when the buffer is full.
    /// A subscription that is gone counts as delivered: the event is no longer its.
    ///
    /// `tick` is the publishing thread's publish count, this publish included: the
    /// length is sampled when it is 0 under the subscription's sample mask.
    #[inline(always)]
    pub(crate) fn try_send(&self, event: E, tick: u64) -> Result<(), E> {
        let size = self.size_of(&event);
        let sample = tick & self.shared.send_sample_mask() == 0;
        match self.tx.try_send_sampled(event, sample) {
            Ok(len) => {
                self.delivered(size, len);
                Ok(())
            }
            Err(TrySendError::Full(event)) => Err(event),
            Err(TrySendError::Disconnected(_)) => Ok(()),
        }
    }

    /// Waits for room, as long as it takes (the buffer was found full). The length is
    /// checked after every such wait: the buffer was full, so an edge is near.
    pub(crate) fn send(&self, event: E) {
        let size = self.size_of(&event);
        if self.tx.send(event).is_ok() {
            self.delivered(size, Some(self.tx.len()));
        }
    }

    /// Waits at most `timeout` for room; `Err` hands the event back.
    pub(crate) fn send_timeout(&self, event: E, timeout: std::time::Duration) -> Result<(), E> {
        use crate::channel::SendTimeoutError;
        let size = self.size_of(&event);
        match self.tx.send_timeout(event, timeout) {
            Ok(()) => {
                self.delivered(size, Some(self.tx.len()));
                Ok(())
            }
            Err(SendTimeoutError::Timeout(event)) => Err(event),
            Err(SendTimeoutError::Disconnected(_)) => Ok(()),
        }
    }

    /// Takes the oldest buffered event out (for DropOldest) and drops it, outside the
    /// lock (an event's destructor may be slow): `Some(true)` if there was one, `None`
    /// once the subscription is removed.
    pub(crate) fn evict_oldest(&self) -> Option<bool> {
        let evicted = lock(&self.evict).as_ref()?.try_recv();
        Some(evicted.is_ok())
    }
}
