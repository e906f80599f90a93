//! The [`Source`] trait: a running adapter that reads events from the outside and
//! publishes them on a bus.
//!
//! Every source in this crate is started by its own `spawn(config, publisher)` and
//! returns a handle that implements [`Source`]: the handle owns the source's threads
//! (or its tokio runtime), so a library user does not need to be async.
//!
//! ```text
//! let source = TcpSource::spawn(config, bus.publisher())?;  // running now
//! ...
//! source.stop();                                           // stop taking input, at once
//! source.join(Duration::from_secs(5))?;                    // wait for the threads
//! ```
//!
//! # Back pressure
//!
//! A source never buffers without bound on its own side. What it does when the bus
//! pushes back depends on whether its peer can wait:
//!
//! | source | on `Full` / `Backoff` from the bus |
//! | --- | --- |
//! | HTTP | waits with `publish_async` for at most `publish_wait`, then answers `503` / `429` with `Retry-After` (never blocks the runtime) |
//! | TCP, file, stdin | stops reading (the socket's window or the file holds the rest) |
//! | NATS | waits with `publish_async` (a waker, no polling) and leaves messages in the stream: smaller fetches, fewer in flight |
//!
//! # Shutdown
//!
//! [`Source::stop`] returns at once; [`Source::join`] waits with a deadline. A pool
//! downstream should be shut down after its sources are joined, so it drains what they
//! published last.

pub(crate) mod counters;
mod error;

pub(crate) use counters::SourceCounters;
pub use error::JoinError;

use std::time::Duration;

/// A running source: reads events from the outside and publishes them on a bus.
///
/// Implemented by the handles the sources' `spawn` functions return; object safe, so a
/// service may keep `Vec<Box<dyn Source>>` and stop them together.
pub trait Source: Send {
    /// The source's name, as used in logs and in the `source` metrics label.
    fn name(&self) -> &str;

    /// The source's counters so far.
    fn stats(&self) -> SourceStats;

    /// Asks the source to stop taking input; returns at once. Idempotent.
    fn stop(&self);

    /// Waits until the source's threads have finished, at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`JoinError::Timeout`] if it is still running (call again to keep waiting),
    /// [`JoinError::Panicked`] if one of its threads panicked.
    fn join(&mut self, timeout: Duration) -> Result<(), JoinError>;

    /// [`stop`](Self::stop), then [`join`](Self::join) with `timeout`.
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join).
    fn shutdown(&mut self, timeout: Duration) -> Result<(), JoinError> {
        self.stop();
        self.join(timeout)
    }
}

/// Counters every source keeps; from [`Source::stats`].
///
/// Counters only grow (except the gauges `in_flight` and `connections`).
/// `backoff + full` per second is the pressure the bus puts on the source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourceStats {
    /// Events decoded from the input.
    pub received: u64,
    /// Events the bus accepted.
    pub published: u64,
    /// Input refused before it became an event: malformed JSON, oversized lines or
    /// bodies, wrong tokens (one per line, body or request).
    pub malformed: u64,
    /// Publishes refused by the bus's rate limit (`PublishError::Backoff`).
    pub backoff: u64,
    /// Publishes refused because a `Block` subscription was full (`PublishError::Full`).
    pub full: u64,
    /// Events received but never published (the peer was told, or they stay in their
    /// origin: an HTTP client got 429/503, a NATS message was left in the stream).
    pub not_published: u64,
    /// Events the source holds now: read but not yet published, and for NATS published
    /// but not yet acknowledged.
    pub in_flight: u64,
    /// Open connections now (HTTP, TCP).
    pub connections: u64,
}
