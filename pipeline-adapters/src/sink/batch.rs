//! [`Batcher`]: the open batch a batching sink's workers fill together.

use pipeline_core::envelope::Envelope;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Open {
    events: Vec<Envelope>,
    bytes: usize,
    /// When the first event of the open batch arrived.
    since: Option<Instant>,
}

/// One open batch, closed when it holds `max_events` events or `max_bytes` bytes (by
/// [`Envelope::size`]), or when its linger has passed. Whoever closes it sends it, so
/// the batcher itself never holds more than one batch.
///
/// A batch whose linger has passed is closed by the next event pushed, so under
/// traffic the pool's workers send every batch and their busy time (the pool's
/// utilisation, what the controller reads) is the time spent delivering. The flush
/// thread only sends a batch no event came to close for another half linger: the
/// tail of a burst. So a batch waits at most about twice its linger.
pub(crate) struct Batcher {
    open: Mutex<Open>,
    max_events: usize,
    max_bytes: usize,
    linger: Duration,
}

impl Batcher {
    pub(crate) fn new(max_events: usize, max_bytes: usize, linger: Duration) -> Self {
        Batcher {
            open: Mutex::new(Open {
                events: Vec::with_capacity(max_events.min(1024)),
                bytes: 0,
                since: None,
            }),
            max_events,
            max_bytes,
            linger,
        }
    }

    /// How often the flush thread should look: every half linger (at least 1 ms).
    pub(crate) fn flush_interval(&self) -> Duration {
        (self.linger / 2).max(Duration::from_millis(1))
    }

    /// Adds `event`; returns the batch to send now if this closed it: it is full, or
    /// its linger has passed.
    pub(crate) fn push(&self, event: Envelope, buffered: &AtomicU64) -> Option<Vec<Envelope>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.bytes += event.size();
        open.events.push(event);
        let since = *open.since.get_or_insert_with(Instant::now);
        if open.events.len() >= self.max_events
            || open.bytes >= self.max_bytes
            || since.elapsed() >= self.linger
        {
            buffered.store(0, Ordering::Relaxed);
            Some(take(&mut open))
        } else {
            buffered.store(open.events.len() as u64, Ordering::Relaxed);
            None
        }
    }

    /// For the flush thread: the open batch if its linger and half a linger more have
    /// passed (no event came to close it), or with `force` if it holds anything.
    pub(crate) fn take_due(&self, force: bool, buffered: &AtomicU64) -> Option<Vec<Envelope>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let since = open.since?;
        if force || since.elapsed() >= self.linger + self.linger / 2 {
            buffered.store(0, Ordering::Relaxed);
            Some(take(&mut open))
        } else {
            None
        }
    }
}

fn take(open: &mut Open) -> Vec<Envelope> {
    open.bytes = 0;
    open.since = None;
    let capacity = open.events.capacity();
    std::mem::replace(&mut open.events, Vec::with_capacity(capacity))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(batch: Option<Vec<Envelope>>) -> Option<Vec<String>> {
        batch.map(|b| b.iter().map(|e| e.topic().to_owned()).collect())
    }

    /// Under traffic the worker whose event arrives after the linger sends the batch,
    /// so delivery time is the pool's busy time; the flush thread is left the tails.
    #[test]
    fn an_event_after_the_linger_closes_the_batch() {
        let buffered = AtomicU64::new(0);
        let batcher = Batcher::new(100, usize::MAX, Duration::ZERO);
        assert_eq!(
            topics(batcher.push(Envelope::new("a", "1"), &buffered)),
            Some(vec!["a".to_owned()])
        );
        assert_eq!(topics(batcher.take_due(false, &buffered)), None);
    }

    #[test]
    fn within_the_linger_a_batch_closes_when_full_or_forced() {
        let buffered = AtomicU64::new(0);
        let batcher = Batcher::new(2, usize::MAX, Duration::from_secs(3600));
        assert_eq!(
            topics(batcher.push(Envelope::new("a", "1"), &buffered)),
            None
        );
        assert_eq!(buffered.load(Ordering::Relaxed), 1);
        assert_eq!(topics(batcher.take_due(false, &buffered)), None);
        assert_eq!(
            topics(batcher.push(Envelope::new("b", "2"), &buffered)),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(
            topics(batcher.push(Envelope::new("c", "3"), &buffered)),
            None
        );
        assert_eq!(
            topics(batcher.take_due(true, &buffered)),
            Some(vec!["c".to_owned()])
        );
        assert_eq!(buffered.load(Ordering::Relaxed), 0);
        assert_eq!(topics(batcher.take_due(true, &buffered)), None);
    }
}
