//! HTTP ingest ([`HttpSource`], or the same routes mounted in an app with [`router`](fn@router) /
//! [`HttpIngest`]) and an HTTP emitter ([`HttpSink`]) (feature `http`).
//!
//! # Two ways to serve ingest
//!
//! - **A service with an axum app** mounts the routes: [`router`](fn@router) returns an
//!   [`axum::Router`] to `merge` into the app (or `nest` under a prefix);
//!   [`HttpIngest::new`] does the same and keeps the counters and a stop switch for
//!   `/healthz`. The routes run on the app's server and runtime.
//! - **Anything else** calls [`HttpSource::spawn`]: its own tokio runtime, listener and
//!   limits, serving the same routes, so the caller need not be async.
//!
//! ```
//! use axum::Router;
//! use axum::routing::get;
//! use pipeline_adapters::http::{HttpIngest, HttpSourceConfig};
//! use pipeline_core::bus::{Bus, SubscriptionConfig};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = Bus::new();
//! let _events = bus.subscribe(SubscriptionConfig::new("events").capacity(1024))?;
//! let ingest = HttpIngest::new(
//!     HttpSourceConfig::new()
//!         .max_body_bytes(256 * 1024)
//!         .publish_wait(Duration::from_millis(100)),
//!     bus.publisher(),
//! )?;
//! let app = Router::new()
//!     .route("/", get(|| async { "my service" }))
//!     .merge(ingest.router()); // POST /events, GET /healthz, GET /metrics
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let shutdown = {
//!     let ingest = ingest.clone();
//!     async move {
//!         // A service awaits its stop signal here (`tokio::signal`); this example
//!         // stops at once. /healthz turns 503 first, then the server drains.
//!         ingest.stop();
//!     }
//! };
//! axum::serve(listener, app)
//!     .with_graceful_shutdown(shutdown)
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! An app with a state of its own calls its `with_state` before merging. If the app
//! has its own `/healthz` or `/metrics`, nest the ingest routes under a prefix
//! (`.nest("/ingest", ingest.router())`): axum refuses overlapping routes.
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
//! | `400` | a body without a single event, in any format (empty, blank lines, `[]`) | `{"error": "no events in the body"}` |
//! | `400` | a body that could not be read (broken connection or chunked encoding) | `{"error"}` |
//! | `401` | a bearer token is configured and the request's is missing or wrong | `{"error"}` |
//! | `408` | the body took longer than `body_read_timeout` | `{"error"}` |
//! | `413` | the body is larger than `max_body_bytes` (default 1 MiB); with `Expect: 100-continue` and a larger `Content-Length`, at once, without `100 Continue` | `{"error"}` |
//! | `415` | another content type | `{"error"}` |
//! | `429` + `Retry-After` | the bus's publish-rate limit refused event `k`, and its next token was not free within `publish_wait` | `{"accepted": k, "rejected_from": k, "total", "error"}` |
//! | `503` + `Retry-After` | a `Block` subscription was full at event `k`, and stayed full for `publish_wait` | as for `429` |
//! | `503` | the bus is closed | as for `429` |
//! | `503` + `Retry-After: 1` | (standalone server) the client already holds `max_connections_per_peer` connections: answered before its request is read, and closed | `{"error"}` |
//!
//! Every `400` to `415` is counted once by reason (`SourceStats::rejected`,
//! `pipeline_source_rejected_total{reason}`: `malformed`, `empty`, `read_error`,
//! `unauthorized`, `timeout`, `too_large`, `unsupported_media_type`); only the first
//! row's is malformed input (`SourceStats::malformed`). See
//! [Refused input](crate::source#refused-input).
//!
//! **What "accepted" means.** `202` means every event of the request is in the bus: in
//! the buffer of every subscription whose filter matched it (or counted as unmatched).
//! It is not yet processed, and the bus is in memory: a crash loses it. For delivery
//! that survives a crash, put NATS JetStream in front ([`crate::nats`]).
//!
//! **Partial batches.** A body is decoded whole before anything is published, so a
//! `400` publishes nothing. Events are then published in order; the first refusal
//! stops the request, and the answer says exactly how far it got: events `0..k` are in
//! the bus, `k..total` are not. A client retries with the events from `rejected_from`
//! on, after `Retry-After` seconds (for `429`, rounded up from the bus's exact wait;
//! for `503`, `full_retry_after`).
//!
//! `GET /healthz` answers `200 {"status":"ok"}`, or `503 {"status":"stopping"}` once
//! the source was told to stop. `GET /metrics` serves the Prometheus text format when
//! the `prometheus` feature is on and [`HttpSourceConfig::metrics`] was set, `404`
//! otherwise. Neither checks the bearer token.
//!
//! # Back pressure: how waits become `503` and `429`
//!
//! Ingest never blocks a runtime thread on the bus. Each event is first offered with
//! `try_publish`, which never waits. If the bus refuses it, the request may wait, for
//! at most [`publish_wait`](HttpSourceConfig::publish_wait) in all (default 250 ms;
//! zero: never), by awaiting [`Publisher::publish_async`](pipeline_core::bus::Publisher::publish_async)
//! under a `tokio::time::timeout`. That future sleeps on a waker: woken when a worker
//! takes an event (or the controller grows the buffer), and when the rate limiter has a
//! token, so a waiting request costs a parked task, not a thread.
//!
//! | the bus says | the request | then, if the wait runs out |
//! | --- | --- | --- |
//! | a `Block` subscription is full | waits what is left of `publish_wait` | `503` + `Retry-After: full_retry_after` |
//! | rate limit, next token within what is left | waits for it | `429` + `Retry-After` (the rest of the bus's wait) |
//! | rate limit, next token later | answers at once | (`429` + `Retry-After` from the bus's exact wait) |
//! | closed | answers at once | (`503`) |
//!
//! A wait that runs out drops the publish future, which by its contract hands nothing
//! to the bus, so `accepted`/`rejected_from` stay exact. With *several* matching
//! `Block` subscriptions the event may already be in one of them when the wait runs
//! out (another publisher filled the next between the bus's look and its delivery);
//! the bus then completes the publish after the drop (it is never partial), and the
//! answer counts that event as accepted (`PublishFuture::is_committed`), so a retry
//! from `rejected_from` duplicates nothing. Short waits absorb bursts the
//! workers clear in a moment (a refusal costs the client at least a second, the
//! smallest `Retry-After`); long stalls still reach the client as `503`/`429` within
//! `publish_wait`, and the events stay with it.
//!
//! # What protects the server
//!
//! | threat | [`HttpSource`] (own server) | routes mounted in an app |
//! | --- | --- | --- |
//! | too many connections | `max_connections`; more wait in the listen backlog (counted in `limit_reached`, logged at warn) | the app's server: add a limit (e.g. tower's `ConcurrencyLimitLayer`) |
//! | one client holding many connections (idle or slow) | `max_connections_per_peer` (default a quarter of `max_connections`): more from that address get `503` at once and are closed (`connections_refused`, logged at warn with the peer) | the app's server, or the proxy in front |
//! | slow or silent headers, idle keep-alive connections | `header_read_timeout` | the app's server |
//! | big bodies | `max_body_bytes` (`413`), read in chunks, never buffered past it; `Expect: 100-continue` over the limit is refused before the body is sent | the same (the routes read the body themselves) |
//! | slow bodies | `body_read_timeout` (`408`) | the same |
//! | a stalled pipeline | `publish_wait`, then `503`/`429` | the same |
//! | unauthenticated writers | `bearer_token` (`401`) on `POST /events` | the same |
//!
//! So with the standalone server, idle connections from one client take at most its
//! per-client share of the slots (and each at most `header_read_timeout`): the other
//! clients are served at once. Many clients idling at once can still fill
//! `max_connections`; they are disconnected after `header_read_timeout`, and new
//! connections wait in the backlog meanwhile. Behind a proxy, every request comes
//! from the proxy's address: raise `max_connections_per_peer` there, and cap per client
//! at the proxy.
//!
//! What the routes hold is bounded per request: one body of at most `max_body_bytes`
//! (about twice that while decoded), waiting at most `publish_wait`. Under the
//! standalone server that is at most `max_connections` requests; mounted, bound the
//! app's concurrency the same way, or memory grows with the number of clients.
//!
//! # Logs
//!
//! Each `POST /events` runs in an `http_request` span with the fields `source` (the
//! source's name) and `peer` (the client's address: the standalone server always
//! knows it; a host app gives it by serving with
//! `into_make_service_with_connect_info::<SocketAddr>()`, else it is empty).
//! Refused requests are logged inside it at debug, with their `reason`.
//!
//! # The emitter
//!
//! [`HttpSink`] POSTs batches of events as NDJSON to an endpoint, retrying 408, 429,
//! 5xx and connection errors with backoff, and runs in a
//! [`SinkPool`](crate::sink::SinkPool): its worker count is the number of requests in
//! flight. See [`HttpSinkConfig`].

mod error;
mod ingest;
mod router;
mod serve;
mod sink;
mod source;

pub use error::{HttpAttemptError, HttpSinkError, HttpSourceError};
pub use router::{HttpIngest, router};
pub use sink::{HttpSink, HttpSinkConfig};
pub use source::{HttpSource, HttpSourceConfig, HttpSourceStats};
