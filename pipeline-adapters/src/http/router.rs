//! [`HttpIngest`] and [`router`]: the ingest routes, to mount in an axum app.

use super::error::HttpSourceError;
use super::ingest::{HttpCounters, Ingest, routes, stateless_routes};
use super::source::{HttpSourceConfig, HttpSourceStats};
use axum::Router;
use pipeline_core::bus::Publisher;
use pipeline_core::envelope::Envelope;
use std::sync::Arc;

/// The ingest routes (`POST /events`, `GET /healthz`, `GET /metrics`) as a value a
/// service mounts in its own axum app, with their counters and a stop switch; from
/// [`HttpIngest::new`].
///
/// Cloning it is cheap: clones share the routes' state and counters. See the
/// [module docs](super) for the protocol and for what protects the server when the
/// routes are mounted (the host app's server, not this type, bounds connections and
/// header reads).
///
/// # Examples
///
/// Mounted under `/ingest` beside the service's own route, served by `axum::serve`:
///
/// ```
/// use axum::Router;
/// use axum::routing::get;
/// use pipeline_adapters::http::{HttpIngest, HttpSourceConfig};
/// use pipeline_core::bus::{Bus, SubscriptionConfig};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = Bus::new();
/// let events = bus.subscribe(SubscriptionConfig::new("events"))?;
/// let ingest = HttpIngest::new(HttpSourceConfig::new().name("ingest"), bus.publisher())?;
/// let app = Router::new()
///     .route("/", get(|| async { "my service" }))
///     .nest("/ingest", ingest.router());
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let addr = listener.local_addr()?;
/// let server = tokio::spawn(async move { axum::serve(listener, app).await });
///
/// // A blocking client, off the runtime's threads.
/// let status = tokio::task::spawn_blocking(move || {
///     ureq::post(&format!("http://{addr}/ingest/events"))
///         .send(r#"{"topic":"a","payload":1}"#)
///         .map(|response| response.status().as_u16())
/// })
/// .await??;
/// assert_eq!(status, 202);
/// assert_eq!(events.len(), 1);
/// assert_eq!(ingest.stats().accepted, 1);
/// server.abort();
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct HttpIngest {
    ingest: Arc<Ingest>,
}

impl HttpIngest {
    /// The routes over `publisher`, set up by `config`.
    ///
    /// Only the settings the routes use apply: `name`, `max_body_bytes`,
    /// `bearer_token`, `body_read_timeout`, `full_retry_after`, `publish_wait` and
    /// `metrics`. The server settings (`addr`, `max_connections`, `worker_threads`,
    /// `header_read_timeout`, `shutdown_timeout`) are checked but belong to
    /// [`HttpSource`](super::HttpSource); a mounted router runs on the host app's
    /// server and its runtime.
    ///
    /// # Errors
    ///
    /// [`HttpSourceError::InvalidConfig`] naming a setting that breaks its rule.
    pub fn new(
        config: HttpSourceConfig,
        publisher: Publisher<Envelope>,
    ) -> Result<HttpIngest, HttpSourceError> {
        config.validate()?;
        let counters = Arc::new(HttpCounters::new(&config.name));
        Ok(HttpIngest {
            ingest: Arc::new(Ingest::new(&config, publisher, counters)),
        })
    }

    /// An axum [`Router`] with the three routes, to `merge` into an app or `nest`
    /// under a prefix. Each call builds a new router over the same state.
    ///
    /// The handlers use tokio's timers (`body_read_timeout`, `publish_wait`): serve
    /// the router on a tokio runtime with time enabled (`#[tokio::main]` does). An app
    /// with a state of its own calls its `with_state` before merging this router.
    pub fn router(&self) -> Router {
        routes(stateless_routes(), self.ingest.clone(), None)
    }

    /// Responses by status, and the common source counters.
    pub fn stats(&self) -> HttpSourceStats {
        self.ingest.counters().stats()
    }

    /// Marks the routes as stopping: `GET /healthz` answers `503 {"status":"stopping"}`
    /// from now on, so a load balancer stops sending traffic before the host app shuts
    /// its server down. `POST /events` keeps working until then. Idempotent.
    pub fn stop(&self) {
        self.ingest.stop();
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn is_stopping(&self) -> bool {
        self.ingest.is_stopping()
    }

    pub(crate) fn shared(&self) -> &Arc<Ingest> {
        &self.ingest
    }
}

impl std::fmt::Debug for HttpIngest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpIngest")
            .field("stopping", &self.is_stopping())
            .finish_non_exhaustive()
    }
}

/// The ingest routes (`POST /events`, `GET /healthz`, `GET /metrics`) over
/// `publisher`, as an axum [`Router`] to merge into a service's app; the short form of
/// [`HttpIngest::new`] + [`HttpIngest::router`] for a service that needs neither the
/// counters nor the stop switch.
///
/// Ingest never blocks a runtime thread: it awaits
/// [`Publisher::publish_async`] for at most `publish_wait` per request, then answers
/// `503`/`429` with `Retry-After` (see the [module docs](super)).
///
/// # Panics
///
/// If `config` breaks one of its rules (an empty name or token, a zero body limit or
/// timeout), like axum's own route builders on a bad path. Use [`HttpIngest::new`] to
/// get the error as a value.
///
/// # Examples
///
/// ```
/// use axum::Router;
/// use axum::routing::get;
/// use pipeline_adapters::http::{HttpSourceConfig, router};
/// use pipeline_core::bus::Bus;
/// use pipeline_core::envelope::Envelope;
///
/// let bus: Bus<Envelope> = Bus::new();
/// let app: Router = Router::new()
///     .route("/hello", get(|| async { "hello" }))
///     .merge(router(HttpSourceConfig::new(), bus.publisher()));
/// # let _ = app;
/// ```
pub fn router(config: HttpSourceConfig, publisher: Publisher<Envelope>) -> Router {
    match HttpIngest::new(config, publisher) {
        Ok(ingest) => ingest.router(),
        Err(error) => panic!("pipeline_adapters::http::router: {error}"),
    }
}
