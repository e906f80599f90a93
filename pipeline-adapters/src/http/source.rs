//! [`HttpSource`]: its config, its handle and its counters.

use super::error::HttpSourceError;
use super::router::HttpIngest;
use crate::source::{JoinError, Source, SourceStats};
use pipeline_core::bus::Publisher;
use pipeline_core::envelope::Envelope;
use pipeline_core::pool::panic_message;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How to run an [`HttpSource`], or the routes of an [`HttpIngest`] mounted in an app.
///
/// | setting | default | rule | used by |
/// | --- | --- | --- | --- |
/// | [`name`](Self::name) | `"http"` | not empty | routes |
/// | [`addr`](Self::addr) | `127.0.0.1:8080` (port 0: any free port) | | server |
/// | [`max_body_bytes`](Self::max_body_bytes) | 1 MiB | at least 1 | routes |
/// | [`bearer_token`](Self::bearer_token) | none (no check) | not empty | routes |
/// | [`max_connections`](Self::max_connections) | 256 | at least 1 | server |
/// | [`max_connections_per_peer`](Self::max_connections_per_peer) | a quarter of `max_connections` (at least 1) | at least 1 | server |
/// | [`worker_threads`](Self::worker_threads) | 2 | at least 1 | server |
/// | [`header_read_timeout`](Self::header_read_timeout) | 10 s | above zero | server |
/// | [`body_read_timeout`](Self::body_read_timeout) | 30 s | above zero | routes |
/// | [`full_retry_after`](Self::full_retry_after) | 1 s | above zero | routes |
/// | [`publish_wait`](Self::publish_wait) | 250 ms | (zero: never wait) | routes |
/// | [`shutdown_timeout`](Self::shutdown_timeout) | 5 s | | server |
///
/// "Server" settings apply to [`HttpSource::spawn`] only; routes mounted in an app
/// with [`HttpIngest`] or [`router`](fn@super::router) run on that app's server.
///
/// Memory held by requests is bounded by `max_connections * max_body_bytes` (about
/// twice that while a body is decoded): with the defaults, 256 MiB in the worst case;
/// lower either for a small container.
///
/// # Examples
///
/// ```
/// use pipeline_adapters::http::HttpSourceConfig;
/// use std::time::Duration;
///
/// let config = HttpSourceConfig::new()
///     .addr("127.0.0.1:0".parse().unwrap())
///     .max_body_bytes(256 * 1024)
///     .bearer_token("s3cret")
///     .max_connections(64)
///     .body_read_timeout(Duration::from_secs(5));
/// # let _ = config;
/// ```
#[derive(Clone)]
#[must_use]
pub struct HttpSourceConfig {
    pub(crate) name: Arc<str>,
    pub(crate) addr: SocketAddr,
    pub(crate) max_body_bytes: usize,
    pub(crate) bearer_token: Option<String>,
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_peer: Option<usize>,
    pub(crate) worker_threads: usize,
    pub(crate) header_read_timeout: Duration,
    pub(crate) body_read_timeout: Duration,
    pub(crate) full_retry_after: Duration,
    pub(crate) publish_wait: Duration,
    pub(crate) shutdown_timeout: Duration,
    #[cfg(feature = "prometheus")]
    pub(crate) metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl Default for HttpSourceConfig {
    fn default() -> Self {
        HttpSourceConfig {
            name: "http".into(),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            max_body_bytes: 1024 * 1024,
            bearer_token: None,
            max_connections: 256,
            max_connections_per_peer: None,
            worker_threads: 2,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            full_retry_after: Duration::from_secs(1),
            publish_wait: Duration::from_millis(250),
            shutdown_timeout: Duration::from_secs(5),
            #[cfg(feature = "prometheus")]
            metrics: None,
        }
    }
}

impl HttpSourceConfig {
    /// The defaults in the table above.
    pub fn new() -> Self {
        Self::default()
    }

    /// The name in logs, thread names and the `source` metrics label (default `"http"`).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The address to listen on (default `127.0.0.1:8080`). Bind another interface
    /// only behind a proxy or with a [`bearer_token`](Self::bearer_token).
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// The largest request body, in bytes (default 1 MiB); larger ones get `413`.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Require `Authorization: Bearer <token>` on `POST /events` (default: no check);
    /// a missing or wrong token gets `401`. `/healthz` and `/metrics` stay open.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer_token = Some(token.into());
        self
    }

    /// The most connections served at once (default 256). Further clients wait in the
    /// listen backlog until one closes; each time that starts is counted
    /// (`limit_reached`) and logged at warn (at most every 10 s).
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections;
        self
    }

    /// The most connections one client (IP address) may hold at once (default a
    /// quarter of `max_connections`, at least 1), so idle or slow connections from one
    /// client cannot make everyone else wait. One more from that client is answered
    /// `503` with `Retry-After: 1` and `Connection: close` at once, without reading
    /// its request, counted (`connections_refused`) and logged at warn with the peer
    /// (at most every 10 s).
    ///
    /// Behind a reverse proxy or a load balancer every request comes from the proxy's
    /// address: raise this (up to `max_connections`, which turns the cap off), or cap
    /// per client at the proxy.
    pub fn max_connections_per_peer(mut self, connections: usize) -> Self {
        self.max_connections_per_peer = Some(connections);
        self
    }

    /// The per-peer cap in force.
    pub(crate) fn per_peer(&self) -> usize {
        self.max_connections_per_peer
            .unwrap_or((self.max_connections / 4).max(1))
    }

    /// Threads of the source's tokio runtime (default 2).
    pub fn worker_threads(mut self, threads: usize) -> Self {
        self.worker_threads = threads;
        self
    }

    /// How long a client may take to send a request's headers (default 10 s); a
    /// slower one is disconnected. Also closes keep-alive connections idle that long.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// How long a client may take to send a request's body (default 30 s); a slower
    /// one gets `408`.
    pub fn body_read_timeout(mut self, timeout: Duration) -> Self {
        self.body_read_timeout = timeout;
        self
    }

    /// The `Retry-After` of a `503` for a full subscription (default 1 s; sent in
    /// whole seconds, rounded up).
    pub fn full_retry_after(mut self, after: Duration) -> Self {
        self.full_retry_after = after;
        self
    }

    /// How long one request may wait, in all, for the bus to take its events before
    /// it is answered `503` or `429` (default 250 ms; zero: never wait, answer at once).
    ///
    /// An event the bus refuses waits (with `publish_async`: a waker, no blocked
    /// thread) for room in a full `Block` subscription, or for a rate-limit token the
    /// bus says is free within what is left of the wait. A short wait absorbs a burst
    /// the workers clear in a moment, which is cheaper for everyone than a refusal
    /// whose `Retry-After` (whole seconds) sends the client away for at least 1 s; a
    /// waiting request holds its connection and its decoded body, so keep it well
    /// under the clients' own timeouts.
    pub fn publish_wait(mut self, wait: Duration) -> Self {
        self.publish_wait = wait;
        self
    }

    /// How long a stop waits for requests in progress to finish before closing their
    /// connections (default 5 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Serve `GET /metrics` from this Prometheus handle (feature `prometheus`; without
    /// one `/metrics` is `404`).
    #[cfg(feature = "prometheus")]
    #[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
    pub fn metrics(mut self, handle: metrics_exporter_prometheus::PrometheusHandle) -> Self {
        self.metrics = Some(handle);
        self
    }

    pub(crate) fn validate(&self) -> Result<(), HttpSourceError> {
        let invalid = |field, rule: &str| {
            Err(HttpSourceError::InvalidConfig {
                field,
                rule: rule.to_owned(),
            })
        };
        if self.name.is_empty() {
            return invalid("name", "must not be empty");
        }
        if self.max_body_bytes == 0 {
            return invalid("max_body_bytes", "must be at least 1");
        }
        if self.bearer_token.as_deref() == Some("") {
            return invalid("bearer_token", "must not be empty");
        }
        if self.max_connections == 0 {
            return invalid("max_connections", "must be at least 1");
        }
        if self.max_connections_per_peer == Some(0) {
            return invalid("max_connections_per_peer", "must be at least 1");
        }
        if self.worker_threads == 0 {
            return invalid("worker_threads", "must be at least 1");
        }
        for (field, value) in [
            ("header_read_timeout", self.header_read_timeout),
            ("body_read_timeout", self.body_read_timeout),
            ("full_retry_after", self.full_retry_after),
        ] {
            if value.is_zero() {
                return invalid(field, "must be above zero");
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for HttpSourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSourceConfig")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .field("max_body_bytes", &self.max_body_bytes)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_peer", &self.per_peer())
            .field("worker_threads", &self.worker_threads)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("full_retry_after", &self.full_retry_after)
            .field("publish_wait", &self.publish_wait)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish_non_exhaustive()
    }
}

/// Responses an [`HttpSource`] gave, by status, with the common [`SourceStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpSourceStats {
    /// The counters every source keeps.
    pub source: SourceStats,
    /// `POST /events` requests answered.
    pub requests: u64,
    /// `202`: every event of the request was published.
    pub accepted: u64,
    /// `400`: malformed JSON/NDJSON or an event that breaks the shape, a body without
    /// events, or a body that could not be read. (Only the first is in
    /// `source.malformed`; all are in `source.rejected`.)
    pub bad_request: u64,
    /// `401`: missing or wrong bearer token.
    pub unauthorized: u64,
    /// `408`: the body took longer than `body_read_timeout`.
    pub timed_out: u64,
    /// `413`: the body was larger than `max_body_bytes`.
    pub too_large: u64,
    /// `415`: a content type other than JSON or NDJSON.
    pub unsupported: u64,
    /// `429`: the bus's publish-rate limit refused an event.
    pub rate_limited: u64,
    /// `503`: a subscription stayed full for `publish_wait`, or the bus closed.
    pub unavailable: u64,
    /// Events the bus first refused (full, or rate-limited) and then took within the
    /// request's `publish_wait`.
    pub publish_waits: u64,
    /// Connections the standalone server accepted and served.
    pub connections_accepted: u64,
    /// Connections the standalone server refused with `503` because their client
    /// already held `max_connections_per_peer`.
    pub connections_refused: u64,
    /// Times every one of the standalone server's `max_connections` slots was taken,
    /// so new connections waited in the listen backlog.
    pub limit_reached: u64,
}

/// An HTTP ingest server publishing what clients `POST` to `/events`; from
/// [`HttpSource::spawn`]. See the [module docs](super) for the protocol.
///
/// It runs on its own tokio runtime (threads named after the source), so the caller
/// need not be async; it serves the same routes as [`HttpIngest::router`], which a
/// service that has an axum app mounts instead. [`stop`](Source::stop) stops accepting, lets requests in progress
/// finish for up to `shutdown_timeout`, then closes what is left; dropping the handle
/// without joining shuts the runtime down in the background.
pub struct HttpSource {
    name: Arc<str>,
    local_addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
    task: Option<tokio::task::JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
    done: mpsc::Receiver<()>,
    ingest: HttpIngest,
}

impl HttpSource {
    /// Binds `config.addr` and starts serving; events go to `publisher`.
    ///
    /// # Errors
    ///
    /// [`HttpSourceError::InvalidConfig`] naming a setting that breaks its rule,
    /// [`HttpSourceError::Bind`] if the address is taken or not allowed,
    /// [`HttpSourceError::Runtime`] if the runtime cannot start.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_adapters::http::{HttpSource, HttpSourceConfig};
    /// use pipeline_adapters::source::Source;
    /// use pipeline_core::bus::{Bus, SubscriptionConfig};
    /// use std::time::Duration;
    ///
    /// let bus = Bus::new();
    /// let events = bus.subscribe(SubscriptionConfig::new("events")).unwrap();
    /// let config = HttpSourceConfig::new().addr("127.0.0.1:0".parse().unwrap());
    /// let mut source = HttpSource::spawn(config, bus.publisher()).unwrap();
    ///
    /// let url = format!("http://{}/events", source.local_addr());
    /// let mut response = ureq::post(&url)
    ///     .header("Content-Type", "application/x-ndjson")
    ///     .send("{\"topic\":\"a\",\"payload\":1}\n{\"topic\":\"b\",\"payload\":2}\n")
    ///     .unwrap();
    /// assert_eq!(response.status(), 202);
    /// assert_eq!(response.body_mut().read_to_string().unwrap(), r#"{"accepted":2}"#);
    /// assert_eq!(events.len(), 2);
    ///
    /// source.shutdown(Duration::from_secs(5)).unwrap();
    /// ```
    pub fn spawn(
        config: HttpSourceConfig,
        publisher: Publisher<Envelope>,
    ) -> Result<HttpSource, HttpSourceError> {
        let ingest = HttpIngest::new(config.clone(), publisher)?;
        let listener =
            std::net::TcpListener::bind(config.addr).map_err(|source| HttpSourceError::Bind {
                addr: config.addr,
                source,
            })?;
        listener
            .set_nonblocking(true)
            .map_err(HttpSourceError::Runtime)?;
        let local_addr = listener.local_addr().map_err(HttpSourceError::Runtime)?;
        let runtime = crate::runtime::build(&config.name, config.worker_threads)
            .map_err(HttpSourceError::Runtime)?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(HttpSourceError::Runtime)?
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (done_tx, done) = mpsc::channel::<()>();
        let serve = super::serve::serve(listener, ingest.shared().clone(), config.clone(), stopped);
        let task = runtime.spawn(async move {
            let _done = done_tx;
            serve.await;
        });
        tracing::info!(source = %config.name, addr = %local_addr, "http source: listening");
        Ok(HttpSource {
            name: config.name,
            local_addr,
            runtime: Some(runtime),
            task: Some(task),
            stop,
            done,
            ingest,
        })
    }

    /// The address it listens on (with the real port when `addr` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Responses by status, and the common counters.
    pub fn http_stats(&self) -> HttpSourceStats {
        self.ingest.stats()
    }
}

impl Source for HttpSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn stats(&self) -> SourceStats {
        self.ingest.stats().source
    }

    fn stop(&self) {
        self.ingest.stop();
        self.stop.send_replace(true);
    }

    fn join(&mut self, timeout: Duration) -> Result<(), JoinError> {
        let Some(runtime) = self.runtime.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + timeout;
        if let Err(mpsc::RecvTimeoutError::Timeout) = self.done.recv_timeout(timeout) {
            self.runtime = Some(runtime);
            return Err(JoinError::Timeout(timeout));
        }
        let outcome = match self.task.take() {
            Some(task) => runtime.block_on(task),
            None => Ok(()),
        };
        runtime.shutdown_timeout(deadline.saturating_duration_since(Instant::now()));
        tracing::info!(source = %self.name, "http source: stopped");
        match outcome {
            Err(error) if error.is_panic() => Err(JoinError::Panicked(panic_message(
                error.into_panic().as_ref(),
            ))),
            _ => Ok(()),
        }
    }
}

impl Drop for HttpSource {
    fn drop(&mut self) {
        self.stop();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSource")
            .field("name", &self.name)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}
