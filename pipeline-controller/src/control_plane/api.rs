//! The router, its security layers and its handlers.

use super::ControlPlaneConfig;
use crate::config::{
    ChangeOutcome, ChangeRecord, ChangeSource, ConfigHandle, ConfigUpdateError, PipelineConfig,
    from_tree, node_at, to_tree,
};
use crate::control::{DecisionRecord, Entry};
use crate::pipeline::PipelineHandle;
use axum::Json;
use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How many earlier configuration versions are kept for rollback.
pub const KEPT_VERSIONS: usize = 64;

/// The control plane over one pipeline: build it, then take its
/// [`router`](Self::router) (or [`router_with`](Self::router_with) to add routes of
/// your own under the same security layers) and mount it on any axum server.
///
/// It remembers every configuration version applied while it exists (the latest
/// [`KEPT_VERSIONS`]), so `POST /api/config/rollback` can restore one.
#[derive(Clone, Debug)]
pub struct ControlPlane {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pipeline: PipelineHandle,
    config: ControlPlaneConfig,
    versions: Option<Arc<Versions>>,
    /// Serialises this API's configuration writers (read-modify-apply).
    writing: tokio::sync::Mutex<()>,
}

/// The configuration versions kept for rollback, and the handle they come from.
#[derive(Debug)]
struct Versions {
    handle: ConfigHandle,
    kept: Mutex<BTreeMap<u64, Arc<PipelineConfig>>>,
}

impl Versions {
    /// Keeps the version in force (called from `ConfigHandle::on_change`, where the
    /// handle's writer lock makes version and configuration agree).
    fn remember(&self) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.insert(self.handle.version(), self.handle.current());
        while kept.len() > KEPT_VERSIONS {
            kept.pop_first();
        }
    }

    fn get(&self, version: u64) -> Option<Arc<PipelineConfig>> {
        self.kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&version)
            .cloned()
    }

    fn list(&self) -> Vec<u64> {
        self.kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect()
    }
}

impl ControlPlane {
    /// The control plane over `pipeline`, secured as `config` says (its address is
    /// only used by [`ControlPlaneServer`](super::ControlPlaneServer)).
    pub fn new(pipeline: PipelineHandle, config: ControlPlaneConfig) -> Self {
        let versions = pipeline.config().map(|handle| {
            let versions = Arc::new(Versions {
                handle: handle.clone(),
                kept: Mutex::new(BTreeMap::new()),
            });
            versions.remember();
            // Weak: the handle keeps the callback, which must not keep the handle alive
            // (a cycle) nor this control plane.
            let weak: Weak<Versions> = Arc::downgrade(&versions);
            handle.on_change(move |event| {
                if let (true, Some(versions)) = (event.is_applied(), weak.upgrade()) {
                    versions.remember();
                }
            });
            versions
        });
        ControlPlane {
            inner: Arc::new(Inner {
                pipeline,
                config,
                versions,
                writing: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The pipeline it serves.
    pub fn pipeline(&self) -> &PipelineHandle {
        &self.inner.pipeline
    }

    /// Every endpoint, with the security layers: the token check, the body limit,
    /// CORS (only for configured origins) and JSON errors for unknown routes and
    /// methods.
    pub fn router(&self) -> Router {
        self.router_with(Router::new())
    }

    /// [`router`](Self::router) with `extra` routes merged in before the security
    /// layers, so they need the same token and keep the same limits (a dashboard page,
    /// a workload endpoint). `extra` must not use the control plane's paths.
    pub fn router_with(&self, extra: Router) -> Router {
        let state = self.clone();
        let api = Router::new()
            .route("/api/status", get(status))
            .route("/api/decisions", get(decisions))
            .route("/api/events", get(events))
            .route("/api/config", get(config_get).patch(config_patch))
            .route("/api/config/history", get(config_history))
            .route("/api/config/rollback", post(config_rollback))
            .route("/api/controller", get(controller_get).post(controller_post))
            .with_state(state.clone());
        api.merge(extra)
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(DefaultBodyLimit::max(self.inner.config.body_limit))
            .layer(middleware::from_fn_with_state(state.clone(), authorise))
            .layer(middleware::from_fn_with_state(state, cors))
    }
}

/// An error answer: a status and a JSON body with at least `message`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: json!({ "message": message.into() }),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        ApiError::new(rejection.status(), rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::new(rejection.status(), rejection.body_text())
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here")
}

/// Compares without an early exit, so the time taken says nothing about the token.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for (i, b) in expected.iter().enumerate() {
        diff |= usize::from(given.get(i).copied().unwrap_or(0) ^ b);
    }
    diff == 0
}

async fn authorise(State(plane): State<ControlPlane>, request: Request, next: Next) -> Response {
    let config = &plane.inner.config;
    let Some(token) = &config.token else {
        return next.run(request).await;
    };
    let read = matches!(*request.method(), Method::GET | Method::HEAD);
    if read && config.public_reads {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if same_secret(given.as_bytes(), token.as_bytes()) => next.run(request).await,
        _ => {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "a bearer token is required (Authorization: Bearer <token>)",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

async fn cors(State(plane): State<ControlPlane>, request: Request, next: Next) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .filter(|o| {
            plane
                .inner
                .config
                .allowed_origins
                .iter()
                .any(|a| a.as_bytes() == o.as_bytes())
        })
        .cloned();
    let Some(origin) = origin else {
        // Not configured for this origin: no CORS header, so browsers refuse the
        // answer to a page from elsewhere.
        return next.run(request).await;
    };
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, PATCH"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        response
    } else {
        next.run(request).await
    };
    let headers: &mut HeaderMap = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    response
}

async fn status(State(plane): State<ControlPlane>) -> Response {
    Json(plane.inner.pipeline.status()).into_response()
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Since {
    since: Option<u64>,
}

/// One decision record as JSON: its sequence number, when, the mode after it, what
/// kind of entry, the one-line text, and the fields of its kind.
fn decision_json(seq: u64, record: &DecisionRecord) -> Value {
    let mut value = json!({
        "seq": seq,
        "since_start_secs": record.since_start.as_secs_f64(),
        "mode": record.mode.as_str(),
        "text": record.to_string(),
    });
    let fields = match &record.entry {
        Entry::Action { action, outcome } => {
            let (from, to) = action.change.values();
            json!({
                "kind": "action",
                "rule": action.reason.rule.label(),
                "knob": action.change.knob().to_string(),
                "from": from,
                "to": to,
                "reason": action.reason.to_string(),
                "applied": outcome.is_ok(),
                "error": outcome.as_ref().err(),
            })
        }
        Entry::Mode(transition) => json!({
            "kind": "mode",
            "from": transition.from.as_str(),
            "to": transition.to.as_str(),
            "reason": transition.reason.to_string(),
        }),
        Entry::Hold(hold) => {
            let (from, to) = hold.change.values();
            json!({
                "kind": "hold",
                "rule": hold.rule.label(),
                "knob": hold.change.knob().to_string(),
                "from": from,
                "to": to,
                "cause": hold.cause.as_str(),
            })
        }
    };
    if let (Value::Object(value), Value::Object(fields)) = (&mut value, fields) {
        value.extend(fields);
    }
    value
}

async fn decisions(
    State(plane): State<ControlPlane>,
    query: Result<Query<Since>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(Since { since }) = query?;
    let log = plane.inner.pipeline.decision_log();
    let records = log.records_since(since.unwrap_or(0));
    let list: Vec<Value> = records.iter().map(|(n, r)| decision_json(*n, r)).collect();
    Ok(Json(json!({ "last_seq": log.total(), "decisions": list })).into_response())
}

/// The event stream's state between events.
struct Stream {
    plane: ControlPlane,
    ticks: u64,
    seq: u64,
    queue: VecDeque<Event>,
    first: bool,
}

fn sse_event(name: &str, data: &Value) -> Event {
    Event::default().event(name).data(data.to_string())
}

async fn events(
    State(plane): State<ControlPlane>,
    query: Result<Query<Since>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(Since { since }) = query?;
    let pipeline = &plane.inner.pipeline;
    let log = pipeline.decision_log();
    let start = Stream {
        ticks: pipeline.controller_state().ticks(),
        // Without `since`, only decisions made from now on.
        seq: since.unwrap_or_else(|| log.total()),
        queue: VecDeque::new(),
        first: true,
        plane: plane.clone(),
    };
    let stream = futures_util::stream::unfold(start, |mut s| async move {
        loop {
            if let Some(event) = s.queue.pop_front() {
                return Some((Ok::<Event, Infallible>(event), s));
            }
            let pipeline = &s.plane.inner.pipeline;
            if s.first {
                s.first = false;
            } else {
                // A status every tick; without ticks (no controller), every interval.
                let heartbeat = pipeline
                    .interval()
                    .clamp(Duration::from_millis(50), Duration::from_secs(10));
                let state = pipeline.controller_state();
                tokio::select! {
                    ticks = state.next_tick(s.ticks) => s.ticks = ticks,
                    () = tokio::time::sleep(heartbeat * 2) => {}
                }
            }
            for (seq, record) in pipeline.decision_log().records_since(s.seq) {
                s.queue.push_back(
                    sse_event("decision", &decision_json(seq, &record)).id(seq.to_string()),
                );
                s.seq = seq;
            }
            let status = serde_json::to_value(pipeline.status()).unwrap_or(Value::Null);
            s.queue.push_back(sse_event("status", &status));
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn live_config(plane: &ControlPlane) -> Result<&ConfigHandle, ApiError> {
    plane.inner.pipeline.config().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "this pipeline has no live configuration (built without PipelineBuilder::config)",
        )
    })
}

async fn config_get(State(plane): State<ControlPlane>) -> Result<Response, ApiError> {
    let handle = live_config(&plane)?;
    // Read together: the version first, so a change in between shows as a newer
    // configuration under an older version at worst, never the reverse.
    let version = handle.version();
    let config = serde_json::to_value(&*handle.current())
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(json!({ "version": version, "config": config })).into_response())
}

fn unix_secs(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn change_json(change: &ChangeRecord) -> Value {
    let (outcome, reason) = match &change.outcome {
        ChangeOutcome::Applied => ("applied", None),
        ChangeOutcome::Rejected(why) => ("rejected", Some(why.as_str())),
    };
    let source = match &change.source {
        ChangeSource::Api => "api".to_owned(),
        other => other.to_string(),
    };
    json!({
        "path": change.parameter,
        "old": change.old,
        "new": change.new,
        "at_unix_secs": unix_secs(change.at),
        "source": source,
        "outcome": outcome,
        "reason": reason,
    })
}

/// A JSON value as the TOML value the configuration model reads.
fn path_errors(errors: Vec<(String, String)>) -> ApiError {
    let list: Vec<Value> = errors
        .into_iter()
        .map(|(path, message)| json!({ "path": path, "message": message }))
        .collect();
    let message = format!("{} invalid parameter(s); nothing was changed", list.len());
    ApiError {
        status: StatusCode::BAD_REQUEST,
        body: json!({ "message": message, "errors": list }),
    }
}

/// `apply`'s refusal as an answer: 400 naming each path, or 409 for critical ones.
fn refusal(error: ConfigUpdateError) -> ApiError {
    match error {
        ConfigUpdateError::Invalid(errors) => path_errors(
            errors
                .errors()
                .iter()
                .map(|e| (e.path.clone(), format!("{} (got {})", e.rule, e.value)))
                .collect(),
        ),
        ConfigUpdateError::Critical(paths) => ApiError {
            status: StatusCode::CONFLICT,
            body: json!({
                "message": format!("critical parameter(s) {}: changing them needs a restart", paths.join(", ")),
                "critical": paths,
            }),
        },
        other => ApiError::new(StatusCode::BAD_REQUEST, other.to_string()),
    }
}

async fn config_patch(
    State(plane): State<ControlPlane>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let handle = live_config(&plane)?;
    let Value::Object(patch) = body else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object of dotted paths to values",
        ));
    };
    if patch.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "no parameter given"));
    }
    // Each path alone on the configuration in force, to name every path whose value
    // does not fit (not only the first); then all of them together, on the
    // configuration in force at that moment (`update_values` reads, modifies and
    // applies under the handle's writer lock, so a file reload in between is kept).
    let base = to_tree(&*handle.current())
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut values = Vec::new();
    let mut errors = Vec::new();
    for (path, value) in &patch {
        let checked = (|| {
            if value.is_null() {
                return Err("null is not a value".to_owned());
            }
            let mut alone = base.clone();
            *node_at(&mut alone, path).map_err(str::to_owned)? =
                to_tree(value).map_err(|e| e.message().trim().to_owned())?;
            from_tree::<PipelineConfig>(alone).map_err(|e| e.message().trim().to_owned())?;
            Ok(())
        })();
        match checked {
            Ok(()) => values.push((path.as_str(), value)),
            Err(message) => errors.push((path.clone(), message)),
        }
    }
    if !errors.is_empty() {
        return Err(path_errors(errors));
    }
    let changes = handle.update_values(values).map_err(refusal)?;
    let list: Vec<Value> = changes.iter().map(change_json).collect();
    Ok(Json(json!({ "version": handle.version(), "changes": list })).into_response())
}

async fn config_history(State(plane): State<ControlPlane>) -> Result<Response, ApiError> {
    let handle = live_config(&plane)?;
    let changes: Vec<Value> = handle.history().iter().map(change_json).collect();
    let versions = plane
        .inner
        .versions
        .as_ref()
        .map(|v| v.list())
        .unwrap_or_default();
    Ok(Json(json!({
        "version": handle.version(),
        "versions": versions,
        "changes": changes,
    }))
    .into_response())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Rollback {
    version: u64,
}

async fn config_rollback(
    State(plane): State<ControlPlane>,
    body: Result<Json<Rollback>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(Rollback { version }) = body?;
    let handle = live_config(&plane)?;
    let _writing = plane.inner.writing.lock().await;
    let target = plane
        .inner
        .versions
        .as_ref()
        .and_then(|v| v.get(version))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("version {version} is not kept (see GET /api/config/history)"),
            )
        })?;
    let changes = handle.apply((*target).clone()).map_err(refusal)?;
    let list: Vec<Value> = changes.iter().map(change_json).collect();
    Ok(Json(json!({
        "version": handle.version(),
        "restored": version,
        "changes": list,
    }))
    .into_response())
}

async fn controller_get(State(plane): State<ControlPlane>) -> Response {
    Json(json!({ "enabled": plane.inner.pipeline.controller_enabled() })).into_response()
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Switch {
    enabled: bool,
}

async fn controller_post(
    State(plane): State<ControlPlane>,
    body: Result<Json<Switch>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(Switch { enabled }) = body?;
    let pipeline = &plane.inner.pipeline;
    if !pipeline.has_controller() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "this pipeline was built without a controller",
        ));
    }
    pipeline.set_controller_enabled(enabled);
    Ok(Json(json!({ "enabled": pipeline.controller_enabled() })).into_response())
}
