//! [`Sink`] and what it cannot deliver: [`Undelivered`].

use super::stats::SinkStats;
use pipeline_core::envelope::Envelope;
use pipeline_core::pool::HandlerError;
use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Something that delivers events to the outside, run by a [`SinkPool`](super::SinkPool).
///
/// [`handle`](Self::handle) is called from the pool's workers, on several threads at
/// once, once per event. A sink that batches adds the event to a batch there and
/// sends a full batch from the same call; [`flush`](Self::flush) sends batches whose
/// linger has passed.
pub trait Sink: Send + Sync + 'static {
    /// The sink's name, as used in logs and in the `sink` metrics label.
    fn name(&self) -> &str;

    /// Delivers `event` (or adds it to a batch that will be delivered or handed to
    /// [`dead_letter`](Self::dead_letter)).
    ///
    /// # Errors
    ///
    /// An error means this one event could not be delivered: the pool counts a
    /// failure and hands the event to [`dead_letter`](Self::dead_letter).
    fn handle(&self, event: Envelope) -> Result<(), HandlerError>;

    /// Sends batches whose linger has passed, or with `force` everything buffered.
    /// The default does nothing (a sink that does not buffer).
    fn flush(&self, force: bool) {
        let _ = force;
    }

    /// How often the pool's flush thread calls [`flush`](Self::flush); `None` (the
    /// default) starts no flush thread.
    fn flush_interval(&self) -> Option<Duration> {
        None
    }

    /// The sink's counters so far.
    fn stats(&self) -> SinkStats;

    /// Takes events the sink gave up on: to the sink's dead-letter hook, or counted and
    /// logged.
    fn dead_letter(&self, undelivered: Undelivered);
}

/// Where a sink sends what it cannot deliver.
pub type DeadLetterHook = Arc<dyn Fn(Undelivered) + Send + Sync>;

/// Events a sink gave up on, with the last error; handed to its dead-letter hook.
#[derive(Debug)]
#[non_exhaustive]
pub struct Undelivered {
    /// The sink's name.
    pub sink: Arc<str>,
    /// The events, in the order they were given to the sink.
    pub events: Vec<Envelope>,
    /// The last error.
    pub error: Box<dyn Error + Send + Sync>,
    /// Delivery attempts made (0 when the event was never tried, e.g. a panic while
    /// preparing it).
    pub attempts: u32,
}

impl Undelivered {
    /// Events that `sink` gave up on after `attempts` attempts, the last failing with
    /// `error`.
    pub fn new(
        sink: impl Into<Arc<str>>,
        events: Vec<Envelope>,
        error: impl Into<Box<dyn Error + Send + Sync>>,
        attempts: u32,
    ) -> Self {
        Undelivered {
            sink: sink.into(),
            events,
            error: error.into(),
            attempts,
        }
    }
}

impl fmt::Display for Undelivered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sink {}: {} events undelivered after {} attempts: {}",
            self.sink,
            self.events.len(),
            self.attempts,
            self.error
        )
    }
}

/// Lets a handler error be an `Undelivered`'s error.
#[derive(Debug)]
pub(crate) struct Message(pub(crate) String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for Message {}
