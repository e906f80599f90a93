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
//! # Refused input
//!
//! Input a source refuses before it becomes an event is counted once, by reason, in
//! [`SourceStats::rejected`] and `pipeline_source_rejected_total{source, reason}`
//! (each reason a source can give is registered at 0). Only input that does not decode
//! is *malformed* ([`SourceStats::malformed`], `pipeline_source_malformed_total`):
//! a wrong token or a body that is too big is refused, not malformed.
//!
//! | `reason` | what was refused | sources |
//! | --- | --- | --- |
//! | `malformed` | a line or body that does not decode (bad JSON or NDJSON, an event breaking the shape) | HTTP (`400`), TCP, file |
//! | `empty` | a request without a single event | HTTP (`400`) |
//! | `too_large` | a line over `max_line_bytes`, a body over `max_body_bytes` | HTTP (`413`), TCP, file |
//! | `unauthorized` | a missing or wrong bearer token | HTTP (`401`) |
//! | `timeout` | a body slower than `body_read_timeout` | HTTP (`408`) |
//! | `unsupported_media_type` | a content type other than JSON or NDJSON | HTTP (`415`) |
//! | `read_error` | a body that could not be read (broken connection or chunked encoding) | HTTP (`400`) |
//!
//! Connections a source refuses (over a per-peer cap) or closes (deadlines) are not
//! input and are counted by the source itself: `tcp_stats()`, `http_stats()`.
//!
//! # Shutdown
//!
//! [`Source::stop`] returns at once; [`Source::join`] waits with a deadline. A pool
//! downstream should be shut down after its sources are joined, so it drains what they
//! published last.

mod error;

cfg_adapters! {
    pub(crate) mod counters;

    pub(crate) use counters::SourceCounters;
}

// The NATS source refuses nothing: what the bus does not take stays in the stream.
#[cfg(any(feature = "http", feature = "tcp", feature = "file"))]
pub(crate) use counters::Reject;

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
    /// Input refused before it became an event, for any reason: malformed, too large,
    /// unauthorized... (one per line, body or request; see [Refused input](self#refused-input)).
    pub rejected: u64,
    /// Of `rejected`, the input that did not decode (bad JSON or NDJSON, an event
    /// breaking the shape), and only that.
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
