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

    pub(crate) fn linger(&self) -> Duration {
        self.linger
    }

    /// Adds `event`; returns the batch to send now if this closed it.
    pub(crate) fn push(&self, event: Envelope, buffered: &AtomicU64) -> Option<Vec<Envelope>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.bytes += event.size();
        open.events.push(event);
        open.since.get_or_insert_with(Instant::now);
        if open.events.len() >= self.max_events || open.bytes >= self.max_bytes {
            buffered.store(0, Ordering::Relaxed);
            Some(take(&mut open))
        } else {
            buffered.store(open.events.len() as u64, Ordering::Relaxed);
            None
        }
    }

    /// The open batch if its linger has passed, or with `force` if it holds anything.
    pub(crate) fn take_due(&self, force: bool, buffered: &AtomicU64) -> Option<Vec<Envelope>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let since = open.since?;
        if force || since.elapsed() >= self.linger {
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
