//! The routes of the HTTP source: `POST /events`, `GET /healthz`, `GET /metrics`.

use super::source::{HttpSourceConfig, HttpSourceStats};
use crate::json::{DecodeError, decode_body, decode_ndjson};
use crate::source::counters::Counted;
use crate::source::{Reject, SourceCounters};
use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use pipeline_core::bus::{PublishError, Publisher};
use pipeline_core::envelope::Envelope;
use serde_json::json;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing::Instrument;

/// The reasons the routes refuse a request for.
const REJECTS: [Reject; 7] = [
    Reject::Malformed,
    Reject::Empty,
    Reject::TooLarge,
    Reject::Unauthorized,
    Reject::Timeout,
    Reject::UnsupportedMediaType,
    Reject::ReadError,
];

/// Responses by status, beside the common source counters.
pub(crate) struct HttpCounters {
    pub(crate) source: SourceCounters,
    requests: Counted,
    accepted: Counted,
    bad_request: Counted,
    unauthorized: Counted,
    timed_out: Counted,
    too_large: Counted,
    unsupported: Counted,
    rate_limited: Counted,
    unavailable: Counted,
    waited: Counted,
    pub(crate) connections_accepted: Counted,
    pub(crate) connections_refused: Counted,
    pub(crate) limit_reached: Counted,
}

impl HttpCounters {
    pub(crate) fn new(source: &str) -> Self {
        let status = |code: &'static str| {
            Counted::labelled(
                "pipeline_http_source_responses_total",
                source,
                "status",
                code,
            )
        };
        let connections = |outcome: &'static str| {
            Counted::labelled(
                "pipeline_http_source_connections_total",
                source,
                "outcome",
                outcome,
            )
        };
        describe_metrics();
        HttpCounters {
            source: SourceCounters::new(source, &REJECTS),
            requests: Counted::labelled(
                "pipeline_http_source_requests_total",
                source,
                "path",
                "/events",
            ),
            accepted: status("202"),
            bad_request: status("400"),
            unauthorized: status("401"),
            timed_out: status("408"),
            too_large: status("413"),
            unsupported: status("415"),
            rate_limited: status("429"),
            unavailable: status("503"),
            waited: Counted::new("pipeline_http_source_publish_waits_total", source),
            connections_accepted: connections("accepted"),
            connections_refused: connections("refused"),
            limit_reached: Counted::new("pipeline_http_source_limit_reached_total", source),
        }
    }

    pub(crate) fn stats(&self) -> HttpSourceStats {
        HttpSourceStats {
            source: self.source.stats(),
            requests: self.requests.get(),
            accepted: self.accepted.get(),
            bad_request: self.bad_request.get(),
            unauthorized: self.unauthorized.get(),
            timed_out: self.timed_out.get(),
            too_large: self.too_large.get(),
            unsupported: self.unsupported.get(),
            rate_limited: self.rate_limited.get(),
            unavailable: self.unavailable.get(),
            publish_waits: self.waited.get(),
            connections_accepted: self.connections_accepted.get(),
            connections_refused: self.connections_refused.get(),
            limit_reached: self.limit_reached.get(),
        }
    }

    /// A request refused for `reason`: counted, and logged at debug.
    fn reject(&self, reason: Reject) {
        self.count_reject(reason);
        tracing::debug!(
            reason = reason.label(),
            "http source: request rejected ({})",
            reason.label()
        );
    }

    /// A request refused for `reason`, counted by reason and by the status it gets.
    fn count_reject(&self, reason: Reject) {
        self.source.rejects.add(reason);
        let status = match reason {
            Reject::Malformed | Reject::Empty | Reject::ReadError => &self.bad_request,
            Reject::TooLarge => &self.too_large,
            Reject::Unauthorized => &self.unauthorized,
            Reject::Timeout => &self.timed_out,
            Reject::UnsupportedMediaType => &self.unsupported,
        };
        status.add(1);
    }
}

fn describe_metrics() {
    use metrics::describe_counter;
    describe_counter!(
        "pipeline_http_source_requests_total",
        "Requests to the HTTP source's POST /events."
    );
    describe_counter!(
        "pipeline_http_source_responses_total",
        "Answers to POST /events, by status."
    );
    describe_counter!(
        "pipeline_http_source_publish_waits_total",
        "Events the bus first refused and then took within the request's publish_wait."
    );
    describe_counter!(
        "pipeline_http_source_connections_total",
        "Connections to the standalone HTTP source, by outcome: accepted, refused (over the per-client cap)."
    );
    describe_counter!(
        "pipeline_http_source_limit_reached_total",
        "Times every standalone HTTP source connection slot was taken, so new connections waited in the listen backlog."
    );
}

/// What the routes share.
pub(crate) struct Ingest {
    name: Arc<str>,
    publisher: Publisher<Envelope>,
    token: Option<Vec<u8>>,
    max_body: usize,
    body_timeout: Duration,
    full_retry_after: Duration,
    publish_wait: Duration,
    pub(crate) stopping: AtomicBool,
    counters: Arc<HttpCounters>,
    #[cfg(feature = "prometheus")]
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl Ingest {
    pub(crate) fn new(
        config: &HttpSourceConfig,
        publisher: Publisher<Envelope>,
        counters: Arc<HttpCounters>,
    ) -> Self {
        Ingest {
            name: config.name.clone(),
            publisher,
            token: config.bearer_token.as_ref().map(|t| t.as_bytes().to_vec()),
            max_body: config.max_body_bytes,
            body_timeout: config.body_read_timeout,
            full_retry_after: config.full_retry_after,
            publish_wait: config.publish_wait,
            stopping: AtomicBool::new(false),
            counters,
            #[cfg(feature = "prometheus")]
            metrics: config.metrics.clone(),
        }
    }
}

impl Ingest {
    pub(crate) fn counters(&self) -> &HttpCounters {
        &self.counters
    }

    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
}

/// What a handler is given: the routes' state, and the client's address when the
/// server that runs them knows it.
#[derive(Clone)]
pub(crate) struct Conn {
    ingest: Arc<Ingest>,
    /// Set by the standalone server per connection; a host app's server may give it
    /// as `ConnectInfo<SocketAddr>` instead.
    peer: Option<SocketAddr>,
}

/// The three routes, waiting for their state.
pub(crate) fn stateless_routes() -> Router<Conn> {
    Router::new()
        .route("/events", post(events))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}

/// The three routes over `ingest`, for a client at `peer` (when known).
pub(crate) fn routes(
    routes: Router<Conn>,
    ingest: Arc<Ingest>,
    peer: Option<SocketAddr>,
) -> Router {
    routes.with_state(Conn { ingest, peer })
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn with_retry_after(mut response: Response, after: Duration) -> Response {
    // Whole seconds, rounded up, at least 1: "retry now" would only bounce again.
    let seconds = after.as_nanos().div_ceil(1_000_000_000).max(1);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds as u64));
    response
}

/// Compares without an early exit, so the time taken says nothing about the token.
fn same_token(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

enum Format {
    Json,
    Ndjson,
}

fn format_of(headers: &HeaderMap) -> Option<Format> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Some(Format::Json);
    };
    let value = value.to_str().ok()?;
    let mime = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" | "" => Some(Format::Json),
        "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/x-jsonlines" => Some(Format::Ndjson),
        _ => None,
    }
}

enum BodyError {
    TooLarge,
    Read,
}

/// Reads at most `max` bytes of `body`.
async fn read_body(mut body: Body, max: usize) -> Result<Bytes, BodyError> {
    let mut data: Vec<u8> = Vec::new();
    let mut first: Option<Bytes> = None;
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let Ok(chunk) = frame.map_err(|_| BodyError::Read)?.into_data() else {
            continue; // trailers
        };
        let held = first.as_ref().map_or(0, Bytes::len) + data.len();
        if held + chunk.len() > max {
            return Err(BodyError::TooLarge);
        }
        match &first {
            // Most bodies arrive as one chunk: keep it without copying.
            None if data.is_empty() => first = Some(chunk),
            _ => {
                if let Some(first) = first.take() {
                    data.extend_from_slice(&first);
                }
                data.extend_from_slice(&chunk);
            }
        }
    }
    Ok(first.unwrap_or_else(|| Bytes::from(data)))
}

/// Reads and discards up to `max` more bytes, so a client that is still sending gets
/// to read the answer instead of a reset; gives up after a second.
async fn discard_body(mut body: Body, max: usize) {
    let drain = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) =
            std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            seen += frame.data_ref().map_or(0, Bytes::len);
            if seen > max {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

fn too_large(ingest: &Ingest) -> Response {
    ingest.counters.reject(Reject::TooLarge);
    let mut response = json_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        json!({ "error": format!("the body is larger than {} bytes", ingest.max_body) }),
    );
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn bad_request(ingest: &Ingest, error: &DecodeError) -> Response {
    ingest.counters.count_reject(Reject::Malformed);
    tracing::debug!(reason = "malformed", %error, "http source: request rejected (malformed)");
    json_response(
        StatusCode::BAD_REQUEST,
        json!({
            "error": error.message(),
            "line": error.line(),
            "column": error.column(),
        }),
    )
}

fn no_events(ingest: &Ingest) -> Response {
    ingest.counters.reject(Reject::Empty);
    json_response(
        StatusCode::BAD_REQUEST,
        json!({ "error": "no events in the body" }),
    )
}

/// Whether the client asked to be told to go on before it sends the body.
fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

async fn events(State(conn): State<Conn>, request: Request) -> Response {
    // The peer: from the standalone server, or from a host app served with
    // `into_make_service_with_connect_info::<SocketAddr>()`.
    let peer = conn.peer.or_else(|| {
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0)
    });
    let span = tracing::info_span!(
        "http_request",
        source = %conn.ingest.name,
        peer = tracing::field::Empty,
    );
    if let Some(peer) = peer {
        span.record("peer", tracing::field::display(peer));
    }
    let (parts, body) = request.into_parts();
    handle_events(&conn.ingest, &parts.headers, body)
        .instrument(span)
        .await
}

async fn handle_events(ingest: &Ingest, headers: &HeaderMap, body: Body) -> Response {
    let counters = &ingest.counters;
    counters.requests.add(1);
    if let Some(expected) = &ingest.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        if !given.is_some_and(|given| same_token(given, expected)) {
            counters.reject(Reject::Unauthorized);
            let mut response = json_response(
                StatusCode::UNAUTHORIZED,
                json!({ "error": "missing or wrong bearer token" }),
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    let Some(format) = format_of(headers) else {
        counters.reject(Reject::UnsupportedMediaType);
        return json_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json!({ "error": "send application/json or application/x-ndjson" }),
        );
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > ingest.max_body as u64) {
        // Reading the body is what makes the server send `100 Continue`: a client
        // that waits for it is answered at once and sends nothing. Another is still
        // sending; read a little of it so it gets to read the answer.
        if !expects_continue(headers) {
            discard_body(body, ingest.max_body).await;
        }
        return too_large(ingest);
    }
    let bytes =
        match tokio::time::timeout(ingest.body_timeout, read_body(body, ingest.max_body)).await {
            Err(_elapsed) => {
                counters.reject(Reject::Timeout);
                return json_response(
                    StatusCode::REQUEST_TIMEOUT,
                    json!({ "error": "the body took too long to arrive" }),
                );
            }
            Ok(Err(BodyError::TooLarge)) => return too_large(ingest),
            Ok(Err(BodyError::Read)) => {
                counters.reject(Reject::ReadError);
                return json_response(
                    StatusCode::BAD_REQUEST,
                    json!({ "error": "the body could not be read" }),
                );
            }
            Ok(Ok(bytes)) => bytes,
        };
    // One rule for every format: a request carries at least one event.
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return no_events(ingest);
    }
    let decoded = match format {
        Format::Json => decode_body(&bytes),
        Format::Ndjson => decode_ndjson(&bytes),
    };
    drop(bytes);
    let events = match decoded {
        Ok(events) if events.is_empty() => return no_events(ingest),
        Ok(events) => events,
        Err(error) => return bad_request(ingest, &error),
    };
    publish_all(ingest, events).await
}

/// Why an event was not published.
enum Refusal {
    /// The rate limit: `429` with this wait.
    RateLimited(Duration),
    /// A `Block` subscription stayed full: `503` with `full_retry_after`.
    Full,
    /// The bus is closed: `503`.
    Closed,
}

/// Publishes in order, stopping at the first refusal, and says exactly how far it got.
///
/// Each event is tried first (`try_publish`, no waiting). One the bus refuses may
/// wait with `publish_async` (a waker, no blocked thread) while the request's
/// `publish_wait` budget lasts: for room in a full subscription, or for a rate-limit
/// token the bus says is free within the budget. A wait that runs out drops the
/// publish future, which hands nothing to the bus when the event had reached no
/// subscription yet; one that had reached one of several matching `Block`
/// subscriptions (`PublishFuture::is_committed`) is completed by the bus and counted
/// as accepted. Either way the count the client is told is exact.
async fn publish_all(ingest: &Ingest, events: Vec<Envelope>) -> Response {
    let counters = &ingest.counters;
    let total = events.len();
    counters.source.received.add(total as u64);
    // One budget for the whole request, however many of its events wait.
    let mut deadline: Option<tokio::time::Instant> = None;
    for (accepted, event) in events.into_iter().enumerate() {
        let (event, refusal) = match ingest.publisher.try_publish(event) {
            Ok(()) => continue,
            Err(PublishError::Full { event, .. }) => {
                counters.source.full.add(1);
                (event, Refusal::Full)
            }
            Err(PublishError::Backoff { event, retry_after }) => {
                counters.source.backoff.add(1);
                (event, Refusal::RateLimited(retry_after))
            }
            // `Closed` (a try never times out).
            Err(_) => return refuse(ingest, accepted, total, Refusal::Closed),
        };
        let deadline =
            *deadline.get_or_insert_with(|| tokio::time::Instant::now() + ingest.publish_wait);
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let worth_waiting = match refusal {
            Refusal::RateLimited(retry_after) => !left.is_zero() && retry_after <= left,
            _ => !left.is_zero(),
        };
        if !worth_waiting {
            return refuse(ingest, accepted, total, refusal);
        }
        let waited_from = tokio::time::Instant::now();
        let mut publish = ingest.publisher.publish_async(event);
        match tokio::time::timeout(left, &mut publish).await {
            Ok(Ok(())) => counters.waited.add(1),
            Ok(Err(_closed)) => return refuse(ingest, accepted, total, Refusal::Closed),
            Err(_elapsed) => {
                // Committed: the event reached a subscription and the bus completes
                // the publish after the drop (it is never partial), so it counts as
                // accepted and the refusal starts at the next event.
                let in_bus = publish.is_committed();
                drop(publish);
                let refusal = match refusal {
                    Refusal::RateLimited(retry_after) => {
                        Refusal::RateLimited(retry_after.saturating_sub(waited_from.elapsed()))
                    }
                    other => other,
                };
                if in_bus && accepted + 1 == total {
                    // It was the last one: everything is in the bus.
                    break;
                }
                let accepted = if in_bus { accepted + 1 } else { accepted };
                return refuse(ingest, accepted, total, refusal);
            }
        }
    }
    counters.source.published.add(total as u64);
    counters.accepted.add(1);
    json_response(StatusCode::ACCEPTED, json!({ "accepted": total }))
}

/// The answer when event `accepted` of `total` was refused: events before it are in the
/// bus, it and the rest are not.
fn refuse(ingest: &Ingest, accepted: usize, total: usize, refusal: Refusal) -> Response {
    let counters = &ingest.counters;
    counters.source.published.add(accepted as u64);
    counters.source.not_published.add((total - accepted) as u64);
    let body = |what: &str| {
        json!({
            "accepted": accepted,
            "rejected_from": accepted,
            "total": total,
            "error": what,
        })
    };
    match refusal {
        Refusal::RateLimited(retry_after) => {
            counters.rate_limited.add(1);
            let response = json_response(
                StatusCode::TOO_MANY_REQUESTS,
                body("the publish rate limit is reached"),
            );
            with_retry_after(response, retry_after)
        }
        Refusal::Full => {
            counters.unavailable.add(1);
            let response = json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                body("a subscription is full"),
            );
            with_retry_after(response, ingest.full_retry_after)
        }
        Refusal::Closed => {
            counters.unavailable.add(1);
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                body("the pipeline is shutting down"),
            )
        }
    }
}

async fn healthz(State(conn): State<Conn>) -> Response {
    if conn.ingest.is_stopping() {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "stopping" }),
        )
    } else {
        json_response(StatusCode::OK, json!({ "status": "ok" }))
    }
}

#[cfg(feature = "prometheus")]
async fn metrics(State(conn): State<Conn>) -> Response {
    match &conn.ingest.metrics {
        Some(handle) => {
            let mut response = (StatusCode::OK, handle.render()).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        }
        None => no_metrics(),
    }
}

#[cfg(not(feature = "prometheus"))]
async fn metrics(State(_conn): State<Conn>) -> Response {
    no_metrics()
}

fn no_metrics() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        json!({ "error": "no metrics: build with the prometheus feature and set HttpSourceConfig::metrics" }),
    )
}
