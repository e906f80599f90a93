//! Counters and gauges of one resizable channel.

use std::time::Duration;

/// A snapshot of a channel's counters and gauges, from
/// [`Sender::stats`](super::Sender::stats) or [`Receiver::stats`](super::Receiver::stats).
///
/// Counters are read one after another without stopping senders or receivers, so
/// under load they describe slightly different instants; each one is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ChannelStats {
    /// Values buffered now, over every generation not yet drained.
    pub len: usize,
    /// The capacity set by the latest resize.
    pub capacity: usize,
    /// The most values seen buffered at once since creation. Sampled, to keep sends
    /// cheap: exact whenever a send found the channel full, otherwise measured on the
    /// first and then every 32nd send of each thread and at every `stats()` call (and
    /// kept: it never goes backwards).
    pub high_water_mark: usize,
    /// Values accepted by `send`/`try_send`/`send_timeout`. Counted where each send
    /// happens (per thread, no locked instruction), so it never goes backwards from
    /// one snapshot to the next.
    pub sent: u64,
    /// Values handed to receivers; never goes backwards either. A snapshot taken
    /// while values move may count a receive before the send that fed it, so
    /// `received` can briefly exceed `sent`.
    pub received: u64,
    /// Send attempts that found the channel full (a blocking send counts once).
    pub full_events: u64,
    /// Total time senders spent asleep waiting for room (a short spin before sleeping
    /// is not counted).
    pub blocked_time: Duration,
    /// Senders (threads and tasks) waiting for room now: each holds one value that
    /// is demand the buffer has not taken yet.
    pub waiting_senders: usize,
    /// Resizes that changed the capacity.
    pub resizes: u64,
}

impl ChannelStats {
    /// `len / capacity`, between 0 and 1 (a channel in the middle of a shrink can
    /// briefly read above 1).
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_core::channel::bounded;
    ///
    /// let (tx, _rx) = bounded(4);
    /// tx.send(()).unwrap();
    /// assert_eq!(tx.stats().saturation(), 0.25);
    /// ```
    pub fn saturation(&self) -> f64 {
        if self.capacity == 0 {
            0.0
        } else {
            self.len as f64 / self.capacity as f64
        }
    }
}
