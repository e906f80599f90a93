//! Sources and sinks that connect a `pipeline-core` bus to the world: HTTP ingest and
//! an HTTP emitter pool, TCP NDJSON, files and stdin/stdout, NATS JetStream, and a
//! Prometheus exporter, each behind its own cargo feature.
//!
//! This crate depends on `pipeline-core` only, never on the controller.
