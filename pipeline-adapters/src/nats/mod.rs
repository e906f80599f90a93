//! NATS JetStream (feature `nats`): [`NatsSource`], a durable pull consumer that
//! publishes each message onto the bus and has it acknowledged only after the stage
//! handled it, and [`NatsSink`], which publishes with the server's acks awaited.
//!
//! # At least once, end to end
//!
//! ```text
//!  stream ──fetch──> NatsSource ─publish_async─> Bus ──> Subscription ──> WorkerPool
//!    ^                   │ (ack id in a header,                            │ handler
//!    │                   │  message kept in a side map)                    v
//!    └──────────── ack / nak / term  <──────────── NatsAcker::handler(...) ┘
//! ```
//!
//! The source fetches a batch, and publishes each message as an [`Envelope`](pipeline_core::envelope::Envelope)
//! whose [`ACK_ID_HEADER`] names the message in the source's side map (with
//! [`SEQUENCE_HEADER`] and [`DELIVERED_HEADER`] for the handler's information). The
//! stage wraps its handler with [`NatsAcker::handler`]: it acknowledges the message
//! after the handler returned `Ok` (waiting for the server's confirmation), naks or
//! terminates it after an `Err` ([`FailurePolicy`]), and naks it after a panic.
//!
//! So a message is acknowledged only once it was processed. If the process dies, or
//! the handler never finishes, the server redelivers every unacknowledged message after
//! the consumer's `ack_wait` (to this instance or another): **at least once**. A
//! handler may see a message twice (after a crash between processing and the ack, or a
//! lost ack): make it idempotent, e.g. keyed by [`SEQUENCE_HEADER`].
//!
//! Route each source's events to exactly one acking stage: a second subscription that
//! also acks would find the message gone ([`AckError::Unknown`]); one that never acks
//! leaves it to expire and be redelivered.
//!
//! # N instances, one stream
//!
//! Run the same service N times with the same stream and durable name: the instances
//! share one durable consumer, and JetStream hands each message to one of them (a
//! consumer group). Scale out by starting instances; each pulls what it has room for.
//! When one crashes, its unacknowledged messages go to the others after `ack_wait`;
//! everything it acknowledged stays done.
//!
//! # Back pressure
//!
//! The source only fetches what it has room for: at most `max_in_flight` messages
//! delivered and unacknowledged, and at most the current batch size per fetch. When the
//! bus pushes back (`Full`, or `Backoff` from its rate limit) the source waits with
//! [`Publisher::publish_async`](pipeline_core::bus::Publisher::publish_async): its task
//! sleeps until the subscription has room (woken by the receiver that makes it, or by
//! a resize that grows the buffer) and the rate limit has a token, with no polling and
//! no thread blocked. It then halves its next fetch, down to `min_batch`; clean fetches
//! grow it back by a quarter of `max_batch`. So under pressure messages wait durably in
//! the stream, not in memory: what the source holds is at most one fetch plus what the
//! stage has not acknowledged. A message is acknowledged by the stage, after the bus
//! took it and the handler succeeded, never by the source.
//!
//! # Stopping
//!
//! [`Source::stop`](crate::source::Source::stop) stops fetching; a message it was
//! waiting to publish is nacked (redelivered at once): the wait is dropped, and a
//! dropped `publish_async` hands nothing to the bus, so the message is neither on the
//! bus nor lost. (If the source's events match several `Block` subscriptions, which
//! the rule above advises against, a publish that had already reached one of them is
//! completed by the bus: the message is then nacked *and* handled, a duplicate that
//! at-least-once allows; its ack finds it gone, [`AckError::Unknown`].) Events
//! already on the bus can still be acknowledged through the acker. Dropping a source
//! without stopping it behaves like a crash: nothing is nacked, the server redelivers
//! after `ack_wait`.
//!
//! The acker blocks its thread on the source's runtime: call it from worker threads,
//! not from inside an async runtime.
//!
//! # The sink
//!
//! [`NatsSink`] publishes batches, awaits every ack, retries the unacknowledged ones
//! with backoff (same message ids, so JetStream drops duplicates), and hands what still
//! fails to the dead-letter hook. A server restart costs retries, not messages.
//!
//! # Outages
//!
//! Source and sink each hold one client, which reconnects by itself, forever, after
//! the server goes away. Each loss and each reconnection is logged at warn (with the
//! source's or sink's name and the URL), and counted: [`NatsConnectionStats`]
//! (`nats_stats().connection` for the source, [`NatsSink::connection_stats`] for the
//! sink) and the metrics below. During an outage the source's fetches fail
//! (`fetch_errors`, logged at warn) and the sink's publishes are retried.
//!
//! | metric | kind | labels |
//! | --- | --- | --- |
//! | `pipeline_nats_source_connected`, `pipeline_nats_sink_connected` | gauge: 1 connected, 0 not | `source` / `sink` |
//! | `pipeline_nats_source_disconnects_total`, `pipeline_nats_sink_disconnects_total` | counter | `source` / `sink` |
//! | `pipeline_nats_source_reconnects_total`, `pipeline_nats_sink_reconnects_total` | counter (the first connection is not one) | `source` / `sink` |
//!
//! The source's fetch loop runs in a `nats_source` span with the fields `source` and
//! `url` (its peer).

mod ack;
mod connection;
mod convert;
mod error;
mod sink;
mod source;

pub use ack::{FailurePolicy, NatsAcker};
pub use connection::NatsConnectionStats;
pub use error::{AckError, NatsError};
pub use sink::{NatsSink, NatsSinkConfig};
pub use source::{NatsSource, NatsSourceConfig, NatsSourceStats};

use std::time::Duration;

/// The header carrying an event's ack id (the key of its message in the source's
/// side map).
pub const ACK_ID_HEADER: &str = "nats-ack-id";
/// The header carrying the message's stream sequence number: unique per message in
/// the stream, the same on redelivery (a deduplication key).
pub const SEQUENCE_HEADER: &str = "nats-stream-seq";
/// The header carrying how many times the message was delivered (1 the first time).
pub const DELIVERED_HEADER: &str = "nats-delivered";
/// The NATS header that carries an envelope's key.
pub const KEY_HEADER: &str = "Pipeline-Key";
/// The NATS header that carries an envelope's timestamp (ms since the Unix epoch).
pub const TIMESTAMP_HEADER: &str = "Pipeline-Timestamp-Ms";

/// Connects with a bounded first attempt, then reconnects forever on its own; the
/// client's events go to `watch` (state, counters, warn lines).
async fn connect(
    url: &str,
    name: &str,
    timeout: Duration,
    watch: std::sync::Arc<connection::ConnectionWatch>,
) -> Result<async_nats::Client, NatsError> {
    let options = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(timeout)
        .max_reconnects(None)
        .event_callback(move |event| {
            let watch = watch.clone();
            async move { watch.on_event(event) }
        });
    tokio::time::timeout(timeout, options.connect(url))
        .await
        .unwrap_or_else(|_| {
            Err(async_nats::ConnectError::new(
                async_nats::ConnectErrorKind::TimedOut,
            ))
        })
        .map_err(|source| NatsError::Connect {
            url: url.to_owned(),
            source,
        })
}
