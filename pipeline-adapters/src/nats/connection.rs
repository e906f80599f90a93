//! [`ConnectionWatch`]: the state of a NATS client's connection, from its events.

use async_nats::Event;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How a NATS source's or sink's connection to the server has fared; from
/// [`NatsSourceStats::connection`](super::NatsSourceStats::connection) and
/// [`NatsSink::connection_stats`](super::NatsSink::connection_stats).
///
/// The client reconnects by itself after a disconnection, forever, with a growing
/// delay; these say whether it is connected now and how often it had to reconnect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NatsConnectionStats {
    /// Connected to a server now.
    pub connected: bool,
    /// Connections lost (each logged at warn).
    pub disconnects: u64,
    /// Connections made again after one was lost (each logged at warn); the first
    /// connection is not counted.
    pub reconnects: u64,
}

/// Which adapter a connection belongs to: the metrics' name and label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Source,
    Sink,
}

/// Follows a client's [`Event`]s (its `event_callback`): a gauge of the connection
/// state and counters of disconnects and reconnects, as atomics and as metrics, and a
/// warn line for each change an operator should know about.
pub(crate) struct ConnectionWatch {
    role: Role,
    name: Arc<str>,
    url: String,
    connected: AtomicBool,
    /// Whether the first connection was made (its `Connected` is not a reconnect).
    connected_once: AtomicBool,
    disconnects: AtomicU64,
    reconnects: AtomicU64,
    connected_metric: metrics::Gauge,
    disconnects_metric: metrics::Counter,
    reconnects_metric: metrics::Counter,
}

impl ConnectionWatch {
    pub(crate) fn new(role: Role, name: &Arc<str>, url: &str) -> Arc<Self> {
        let label = name.to_string();
        let (connected_metric, disconnects_metric, reconnects_metric) = match role {
            Role::Source => (
                metrics::gauge!("pipeline_nats_source_connected", "source" => label.clone()),
                metrics::counter!("pipeline_nats_source_disconnects_total", "source" => label.clone()),
                metrics::counter!("pipeline_nats_source_reconnects_total", "source" => label),
            ),
            Role::Sink => (
                metrics::gauge!("pipeline_nats_sink_connected", "sink" => label.clone()),
                metrics::counter!("pipeline_nats_sink_disconnects_total", "sink" => label.clone()),
                metrics::counter!("pipeline_nats_sink_reconnects_total", "sink" => label),
            ),
        };
        describe_metrics();
        connected_metric.set(0.0);
        Arc::new(ConnectionWatch {
            role,
            name: name.clone(),
            url: url.to_owned(),
            connected: AtomicBool::new(false),
            connected_once: AtomicBool::new(false),
            disconnects: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            connected_metric,
            disconnects_metric,
            reconnects_metric,
        })
    }

    fn role(&self) -> &'static str {
        match self.role {
            Role::Source => "source",
            Role::Sink => "sink",
        }
    }

    pub(crate) fn stats(&self) -> NatsConnectionStats {
        NatsConnectionStats {
            connected: self.connected.load(Ordering::Relaxed),
            disconnects: self.disconnects.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
        }
    }

    fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
        self.connected_metric.set(if connected { 1.0 } else { 0.0 });
    }

    /// One event from the client, in the order the client saw them.
    pub(crate) fn on_event(&self, event: Event) {
        let (role, name, url) = (self.role(), &*self.name, &self.url);
        match event {
            Event::Connected => {
                self.set_connected(true);
                if self.connected_once.swap(true, Ordering::Relaxed) {
                    let reconnects = self.reconnects.fetch_add(1, Ordering::Relaxed) + 1;
                    self.reconnects_metric.increment(1);
                    tracing::warn!(
                        role,
                        name,
                        url,
                        reconnects,
                        "nats: reconnected to the server"
                    );
                } else {
                    tracing::info!(role, name, url, "nats: connected");
                }
            }
            Event::Disconnected => {
                self.set_connected(false);
                self.disconnects.fetch_add(1, Ordering::Relaxed);
                self.disconnects_metric.increment(1);
                tracing::warn!(
                    role,
                    name,
                    url,
                    "nats: disconnected from the server; reconnecting"
                );
            }
            Event::Closed => {
                self.set_connected(false);
                tracing::info!(role, name, url, "nats: connection closed");
            }
            Event::Draining => tracing::info!(role, name, url, "nats: draining"),
            Event::LameDuckMode => {
                tracing::warn!(
                    role,
                    name,
                    url,
                    "nats: the server is shutting down (lame duck mode)"
                );
            }
            Event::SlowConsumer(subscription) => {
                tracing::warn!(role, name, url, subscription, "nats: slow consumer");
            }
            Event::ServerError(error) => {
                tracing::warn!(role, name, url, %error, "nats: server error")
            }
            Event::ClientError(error) => {
                tracing::warn!(role, name, url, %error, "nats: client error")
            }
        }
    }
}

fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge};
    for (connected, disconnects, reconnects) in [
        (
            "pipeline_nats_source_connected",
            "pipeline_nats_source_disconnects_total",
            "pipeline_nats_source_reconnects_total",
        ),
        (
            "pipeline_nats_sink_connected",
            "pipeline_nats_sink_disconnects_total",
            "pipeline_nats_sink_reconnects_total",
        ),
    ] {
        describe_gauge!(
            connected,
            "1 while the NATS client is connected to a server, else 0."
        );
        describe_counter!(disconnects, "NATS connections lost.");
        describe_counter!(
            reconnects,
            "NATS connections made again after one was lost."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_connection_is_no_reconnect() {
        let watch = ConnectionWatch::new(Role::Sink, &Arc::from("s"), "nats://x");
        assert_eq!(watch.stats(), NatsConnectionStats::default());
        watch.on_event(Event::Connected);
        assert_eq!(
            watch.stats(),
            NatsConnectionStats {
                connected: true,
                disconnects: 0,
                reconnects: 0
            }
        );
        watch.on_event(Event::Disconnected);
        assert!(!watch.stats().connected);
        watch.on_event(Event::Connected);
        assert_eq!(
            watch.stats(),
            NatsConnectionStats {
                connected: true,
                disconnects: 1,
                reconnects: 1
            }
        );
        watch.on_event(Event::Closed);
        assert!(!watch.stats().connected);
    }
}
