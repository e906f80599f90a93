//! HTTP ingest ([`HttpSource`]) and an HTTP emitter ([`HttpSink`]) (feature `http`).
//!
//! # The ingest protocol
//!
//! `POST /events` with the [JSON event shape](crate::json): one object or an array of
//! them (`Content-Type: application/json`, or none), or NDJSON, one per line
//! (`Content-Type: application/x-ndjson`).
//!
//! | status | when | body |
//! | --- | --- | --- |
//! | `202` | every event was published | `{"accepted": n}` |
//! | `400` | malformed JSON/NDJSON, an event breaking the shape | `{"error", "line", "column"}` |
//! | `401` | a bearer token is configured and the request's is missing or wrong | `{"error"}` |
//! | `408` | the body took longer than `body_read_timeout` | `{"error"}` |
//! | `413` | the body is larger than `max_body_bytes` (default 1 MiB) | `{"error"}` |
//! | `415` | another content type | `{"error"}` |
//! | `429` + `Retry-After` | the bus's publish-rate limit refused event `k` | `{"accepted": k, "rejected_from": k, "total", "error"}` |
//! | `503` + `Retry-After` | a `Block` subscription was full at event `k` | as for `429` |
//! | `503` | the bus is closed | as for `429` |
//!
//! **What "accepted" means.** `202` means every event of the request is in the bus: in
//! the buffer of every subscription whose filter matched it (or counted as unmatched).
//! It is not yet processed, and the bus is in memory: a crash loses it. For delivery
//! that survives a crash, put NATS JetStream in front ([`crate::nats`]).
//!
//! **Partial batches.** A body is decoded whole before anything is published, so a
//! `400` publishes nothing. Events are then published in order with `try_publish`; the
//! first refusal stops the request, and the answer says exactly how far it got: events
//! `0..k` are in the bus, `k..total` are not. A client retries with the events from
//! `rejected_from` on, after `Retry-After` seconds (rounded up from the bus's exact
//! wait).
//!
//! `GET /healthz` answers `200 {"status":"ok"}`, or `503 {"status":"stopping"}` once
//! the source was told to stop. `GET /metrics` serves the Prometheus text format when
//! the `prometheus` feature is on and [`HttpSourceConfig::metrics`] was set, `404`
//! otherwise. Neither checks the bearer token.
//!
//! # Back pressure
//!
//! The source never blocks its runtime on the bus: a rate limit becomes `429`, a full
//! subscription `503`, both with `Retry-After`, and the events stay with the client.
//! What it holds itself is bounded: at most `max_connections` requests, each body at
//! most `max_body_bytes`.
//!
//! # The emitter
//!
//! [`HttpSink`] POSTs batches of events as NDJSON to an endpoint, retrying 408, 429,
//! 5xx and connection errors with backoff, and runs in a
//! [`SinkPool`](crate::sink::SinkPool): its worker count is the number of requests in
//! flight. See [`HttpSinkConfig`].

mod error;
mod ingest;
mod serve;
mod sink;
mod source;

pub use error::{HttpAttemptError, HttpSinkError, HttpSourceError};
pub use sink::{HttpSink, HttpSinkConfig};
pub use source::{HttpSource, HttpSourceConfig, HttpSourceStats};
