//! Sources and sinks that connect a `pipeline-core` bus to the world: HTTP ingest and
//! an HTTP emitter, TCP NDJSON, files and stdin/stdout, NATS JetStream, and a
//! Prometheus exporter, each behind its own cargo feature.
//!
//! ```text
//!  HttpSource ─┐                                                 ┌─ HttpSink
//!  TcpSource  ─┤ Publisher ──> Bus ──> Subscription ──> SinkPool ├─ TcpSink
//!  FileSource ─┤ (try_publish,                        (WorkerPool) ├─ FileSink
//!  NatsSource ─┘  publish_async)                                 └─ NatsSink
//! ```
//!
//! This crate depends on `pipeline-core` only, never on the controller: a source is a
//! [`Source`](source::Source) handle (stats, stop, join), a sink is a
//! [`Sink`](sink::Sink) run by a [`SinkPool`](sink::SinkPool): a pipeline stage whose
//! buffer (its subscription) and worker pool are the knobs a controller turns. The pool
//! is shared ([`SinkPool::pool`](sink::SinkPool::pool) hands out its `Arc`), so
//! `pipeline-controller`'s `ControlLoop` takes it as an `Arc<dyn PoolActuator>` like
//! any stage's. An async service mounts the HTTP ingest routes in its own axum app
//! (`http::router`).
//!
//! # Features
//!
//! | feature | what |
//! | --- | --- |
//! | (none) | the [`source`] and [`sink`] traits, [`SinkPool`](sink::SinkPool), [`RetryPolicy`](sink::RetryPolicy) |
//! | `json` | the JSON event shape and NDJSON (module `json`) |
//! | `http` | `http::router` / `http::HttpIngest` (axum routes to mount), `http::HttpSource` (the same on its own server) and `http::HttpSink` (ureq) |
//! | `http-tls` | HTTPS endpoints for `http::HttpSink` |
//! | `tcp` | `tcp::TcpSource` and `tcp::TcpSink` |
//! | `file` | `file::FileSource` (`tail -F`, or a reader such as stdin) and `file::FileSink` (file, stdout) |
//! | `nats` | `nats::NatsSource` (durable pull consumer) and `nats::NatsSink` |
//! | `prometheus` | `prometheus::PrometheusExporter` and `prometheus::MetricsEndpoint` |
//! | `full` | all of the above |
//!
//! # Hello, pipeline
//!
//! A sink that needs no feature, fed by hand (see each module for its adapters):
//!
//! ```
//! use pipeline_adapters::sink::{Sink, SinkPool, SinkStats, Undelivered};
//! use pipeline_core::bus::{Bus, SubscriptionConfig};
//! use pipeline_core::envelope::Envelope;
//! use pipeline_core::pool::HandlerError;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::time::Duration;
//!
//! #[derive(Default)]
//! struct CountBytes(AtomicU64);
//!
//! impl Sink for CountBytes {
//!     fn name(&self) -> &str { "bytes" }
//!     fn handle(&self, event: Envelope) -> Result<(), HandlerError> {
//!         self.0.fetch_add(event.payload().len() as u64, Ordering::Relaxed);
//!         Ok(())
//!     }
//!     fn stats(&self) -> SinkStats { SinkStats::default() }
//!     fn dead_letter(&self, _: Undelivered) {}
//! }
//!
//! let bus = Bus::new();
//! let pool = SinkPool::builder(CountBytes::default())
//!     .spawn(bus.subscribe(SubscriptionConfig::new("bytes")).unwrap())
//!     .unwrap();
//! bus.publisher().publish(Envelope::new("t", "12345")).unwrap();
//! let report = pool.shutdown(Duration::from_secs(5));
//! assert_eq!(report.sink.0.load(Ordering::Relaxed), 5);
//! ```
//!
//! # Back pressure
//!
//! No adapter buffers without bound: sources wait for room without blocking a runtime
//! thread (HTTP: `publish_async` for at most `publish_wait`, then the client is told
//! 429/503; NATS: `publish_async`, while the messages stay in the stream) or block
//! their own thread (TCP, files: the peer is slowed), and sinks hold at most one open
//! batch plus one batch per worker. See [`source`] and [`sink`].
//!
//! # Shutdown
//!
//! Stop and join the sources first ([`Source::shutdown`](source::Source::shutdown)),
//! then stop the control loop if one drives the pools, then shut the sink pools down
//! ([`SinkPool::shutdown`](sink::SinkPool::shutdown)), so they drain what the sources
//! published last. A sink pool drains through its shared handle, so a controller that
//! still holds it does not stop the drain.
#![warn(missing_docs)]
// docs.rs (and `--cfg docsrs` builds) mark what needs a feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

/// Items only the adapters use, the machinery their sources and sinks share
/// (counters, dead letters, the common sink settings): compiled with at least one of
/// the features `http`, `tcp`, `file`, `nats`, so a build without them has the traits
/// and the sink pool only, and nothing unused.
macro_rules! cfg_adapters {
    ($($item:item)*) => {
        $(
            #[cfg(any(feature = "http", feature = "tcp", feature = "file", feature = "nats"))]
            $item
        )*
    };
}

pub mod sink;
pub mod source;
pub(crate) mod util;

#[cfg(feature = "json")]
#[cfg_attr(docsrs, doc(cfg(feature = "json")))]
pub mod json;

#[cfg(any(feature = "http", feature = "nats"))]
pub(crate) mod runtime;

#[cfg(feature = "file")]
#[cfg_attr(docsrs, doc(cfg(feature = "file")))]
pub mod file;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub mod nats;
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub mod prometheus;
#[cfg(feature = "tcp")]
#[cfg_attr(docsrs, doc(cfg(feature = "tcp")))]
pub mod tcp;
