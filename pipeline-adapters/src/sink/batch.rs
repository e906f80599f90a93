//! A batching sink's batch from open to done: [`Batcher`], the open batch the pool's
//! workers fill together, and [`deliver_batch`], which delivers a closed one and gives
//! up on what it could not deliver, a panic included.

use super::traits::{Message, Undelivered};
use super::{DeadLetters, SinkCounters};
use pipeline_core::envelope::Envelope;
use pipeline_core::pool::panic_message;
use std::error::Error;
use std::panic::{AssertUnwindSafe, catch_unwind};
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

/// Delivers one closed batch, counted in flight meanwhile, and hands what it could not
/// deliver to the dead-letter route.
///
/// `deliver` makes the attempts on `pending`: it removes what it delivered (counting
/// it), counts each attempt in `attempts`, and returns the last error if anything is
/// left. A panic inside it is caught and logged: what `pending` still holds is given up
/// with the panic's message as the error, so a bug in a client library loses no event
/// silently and the pool's worker goes on. (Events of the attempt the panic cut short
/// may have reached the endpoint: at least once, as after a timeout.) `event_of` turns
/// an item of `pending` back into its event.
pub(crate) fn deliver_batch<T>(
    sink: &str,
    counters: &SinkCounters,
    dead: &DeadLetters,
    mut pending: Vec<T>,
    event_of: fn(T) -> Envelope,
    deliver: impl FnOnce(&mut Vec<T>, &mut u32) -> Option<Box<dyn Error + Send + Sync>>,
) {
    let mut attempts = 0;
    let outcome = {
        let _in_flight = counters.begin();
        catch_unwind(AssertUnwindSafe(|| deliver(&mut pending, &mut attempts)))
    };
    let error = match outcome {
        Ok(None) => {
            debug_assert!(pending.is_empty(), "a delivered batch has nothing left");
            return;
        }
        Ok(Some(error)) => error,
        Err(payload) => {
            let panic = panic_message(payload.as_ref());
            tracing::error!(sink, %panic, events = pending.len(), "sink: batch delivery panicked");
            Box::new(Message(format!("delivery panicked: {panic}")))
        }
    };
    if pending.is_empty() {
        return;
    }
    counters.failed(pending.len() as u64);
    let events = pending.into_iter().map(event_of).collect();
    dead.send(Undelivered::new(sink, events, error, attempts));
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

    fn counted_sink() -> (
        SinkCounters,
        DeadLetters,
        std::sync::Arc<Mutex<Vec<Undelivered>>>,
    ) {
        let letters = std::sync::Arc::new(Mutex::new(Vec::new()));
        let hook = {
            let letters = letters.clone();
            std::sync::Arc::new(move |u: Undelivered| letters.lock().unwrap().push(u))
        };
        (
            SinkCounters::new("t"),
            DeadLetters::new(Some(hook)),
            letters,
        )
    }

    fn events(n: usize) -> Vec<Envelope> {
        (0..n).map(|i| Envelope::new("t", i.to_string())).collect()
    }

    /// A panic in the middle of a delivery gives up what was not delivered, with the
    /// panic's message, and leaves nothing in flight; the caller goes on.
    #[test]
    fn a_panicking_delivery_dead_letters_what_is_left() {
        let (counters, dead, letters) = counted_sink();
        deliver_batch(
            "t",
            &counters,
            &dead,
            events(5),
            |e| e,
            |pending, attempts| {
                *attempts += 1;
                pending.drain(..2); // two delivered before the panic
                assert_eq!(counters.stats().in_flight, 1);
                panic!("client bug");
            },
        );
        let stats = counters.stats();
        assert_eq!(
            (stats.in_flight, stats.undelivered, stats.batches_failed),
            (0, 3, 1)
        );
        let letters = letters.lock().unwrap();
        assert_eq!(letters.len(), 1);
        let topics: Vec<_> = letters[0]
            .events
            .iter()
            .map(|e| e.payload().to_vec())
            .collect();
        assert_eq!(topics, [b"2".to_vec(), b"3".to_vec(), b"4".to_vec()]);
        assert_eq!(letters[0].attempts, 1);
        assert_eq!(
            letters[0].error.to_string(),
            "delivery panicked: client bug"
        );
    }

    #[test]
    fn a_failed_delivery_dead_letters_the_rest_with_its_error() {
        let (counters, dead, letters) = counted_sink();
        deliver_batch(
            "t",
            &counters,
            &dead,
            events(3),
            |e| e,
            |pending, attempts| {
                *attempts = 2;
                pending.truncate(1);
                Some("refused".into())
            },
        );
        let letters = letters.lock().unwrap();
        assert_eq!((letters[0].events.len(), letters[0].attempts), (1, 2));
        assert_eq!(letters[0].error.to_string(), "refused");
        assert_eq!(counters.stats().in_flight, 0);
    }

    #[test]
    fn a_delivered_batch_gives_nothing_up() {
        let (counters, dead, letters) = counted_sink();
        deliver_batch(
            "t",
            &counters,
            &dead,
            events(3),
            |e| e,
            |pending, attempts| {
                *attempts = 1;
                pending.clear();
                None
            },
        );
        assert!(letters.lock().unwrap().is_empty());
        assert_eq!(counters.stats().batches_failed, 0);
    }
}
