//! Prometheus text exposition (feature `prometheus`): [`PrometheusExporter`] installs
//! `metrics-exporter-prometheus` as the process's `metrics` recorder, without its HTTP
//! listener or runtime, and renders on demand; serve it from the HTTP source's
//! `/metrics` ([`HttpSourceConfig::metrics`](crate::http::HttpSourceConfig::metrics),
//! with feature `http`) or from a tiny standalone [`MetricsEndpoint`].
//!
//! ```
//! use pipeline_adapters::prometheus::{MetricsEndpoint, PrometheusExporter};
//! use std::io::{Read, Write};
//!
//! let exporter = PrometheusExporter::install().unwrap(); // once per process
//! metrics::counter!("pipeline_example_total").increment(3);
//!
//! let endpoint = MetricsEndpoint::spawn("127.0.0.1:0".parse().unwrap(), exporter.handle()).unwrap();
//! let mut client = std::net::TcpStream::connect(endpoint.local_addr()).unwrap();
//! client.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
//! let mut answer = String::new();
//! client.read_to_string(&mut answer).unwrap();
//! assert!(answer.starts_with("HTTP/1.1 200 OK"));
//! assert!(answer.contains("pipeline_example_total 3"));
//! ```
//!
//! # Metric names
//!
//! Every name is `pipeline_<component>_<measure>`, with its unit last. From
//! `pipeline-core` (see its `bus` and `pool` docs):
//!
//! | name | kind | labels |
//! | --- | --- | --- |
//! | `pipeline_bus_published_total` | counter | |
//! | `pipeline_bus_unmatched_total` | counter | |
//! | `pipeline_bus_rejected_full_total` | counter | |
//! | `pipeline_bus_rate_limited_total` | counter | |
//! | `pipeline_bus_publish_rate_limit_per_second` | gauge | |
//! | `pipeline_bus_subscriptions` | gauge | |
//! | `pipeline_bus_signals_skipped_total` | counter | |
//! | `pipeline_subscription_delivered_total` | counter | `subscription` |
//! | `pipeline_subscription_received_total` | counter | `subscription` |
//! | `pipeline_subscription_dropped_total` | counter | `subscription`, `policy` |
//! | `pipeline_subscription_buffered_events` | gauge | `subscription` |
//! | `pipeline_subscription_capacity_events` | gauge | `subscription` |
//! | `pipeline_subscription_buffered_bytes` | gauge | `subscription` |
//! | `pipeline_subscription_saturation_ratio` | gauge | `subscription` |
//! | `pipeline_pool_workers` | gauge | `pool` |
//! | `pipeline_pool_utilisation_ratio` | gauge | `pool` |
//! | `pipeline_pool_processed_total` | counter | `pool` |
//! | `pipeline_pool_failed_total` | counter | `pool` |
//! | `pipeline_pool_panics_total` | counter | `pool` |
//! | `pipeline_pool_dead_letters_total` | counter | `pool` |
//! | `pipeline_pool_processing_seconds` | histogram (summary) | `pool` |
//!
//! The bus's counters are brought up to date on each `Bus::snapshot`: a service should
//! take snapshots periodically (the controller does).
//!
//! From this crate:
//!
//! | name | kind | labels |
//! | --- | --- | --- |
//! | `pipeline_source_received_events_total` | counter | `source` |
//! | `pipeline_source_published_events_total` | counter | `source` |
//! | `pipeline_source_rejected_total` | counter | `source`, `reason` (`malformed`, `empty`, `too_large`, `unauthorized`, `timeout`, `unsupported_media_type`, `read_error`; each a source can give, from 0) |
//! | `pipeline_source_malformed_total` | counter: `reason="malformed"` alone | `source` |
//! | `pipeline_source_backoff_total` | counter | `source` |
//! | `pipeline_source_full_total` | counter | `source` |
//! | `pipeline_source_not_published_events_total` | counter | `source` |
//! | `pipeline_source_in_flight_events` | gauge | `source` |
//! | `pipeline_source_connections` | gauge | `source` |
//! | `pipeline_http_source_requests_total` | counter | `source`, `path` |
//! | `pipeline_http_source_responses_total` | counter | `source`, `status` |
//! | `pipeline_http_source_publish_waits_total` | counter | `source` |
//! | `pipeline_http_source_connections_total` | counter | `source`, `outcome` (`accepted`, `refused`) |
//! | `pipeline_http_source_limit_reached_total` | counter | `source` |
//! | `pipeline_tcp_source_connections_total` | counter | `source`, `outcome` (`accepted`, `refused`, `timed_out`, `line_timed_out`) |
//! | `pipeline_tcp_source_limit_reached_total` | counter | `source` |
//! | `pipeline_file_source_reopens_total` | counter | `source`, `reason` (`rotation`, `truncation`) |
//! | `pipeline_nats_source_fetch_batch_messages` | gauge | `source` |
//! | `pipeline_nats_source_acks_total` | counter | `source`, `kind` (`ack`, `nak`, `term`, `expired`, `error`) |
//! | `pipeline_nats_source_connected` | gauge (1 connected, 0 not) | `source` |
//! | `pipeline_nats_source_disconnects_total` | counter | `source` |
//! | `pipeline_nats_source_reconnects_total` | counter | `source` |
//! | `pipeline_nats_sink_connected` | gauge (1 connected, 0 not) | `sink` |
//! | `pipeline_nats_sink_disconnects_total` | counter | `sink` |
//! | `pipeline_nats_sink_reconnects_total` | counter | `sink` |
//! | `pipeline_sink_delivered_events_total` | counter | `sink` |
//! | `pipeline_sink_undelivered_events_total` | counter | `sink` |
//! | `pipeline_sink_batches_total` | counter | `sink`, `outcome` (`ok`, `failed`) |
//! | `pipeline_sink_attempts_total` | counter | `sink` |
//! | `pipeline_sink_attempt_errors_total` | counter | `sink` |
//! | `pipeline_sink_retries_total` | counter | `sink` |
//! | `pipeline_sink_in_flight_batches` | gauge | `sink` |
//! | `pipeline_sink_attempt_seconds` | histogram (summary) | `sink` |
//!
//! Metrics handles are registered when a component is built, and the adapters' families
//! get their `# HELP` text then: build the exporter first, then the bus, pools, sources
//! and sinks.

mod endpoint;
mod exporter;

pub use endpoint::MetricsEndpoint;
pub use exporter::{PrometheusError, PrometheusExporter};
pub use metrics_exporter_prometheus::PrometheusHandle;
