//! `pipeline-stress --serve ADDR`: a run that holds its load, behind the control plane,
//! a workload endpoint and a live dashboard page.
//!
//! [`serve`] starts the scenario with [`RunOptions::hold`] (after its duration the load
//! in force then goes on until [`Served::stop`]) and a live configuration, and serves
//! on one HTTP port:
//!
//! - the control plane of `pipeline-controller` (`/api/status`, `/api/events`,
//!   `/api/config`, `/api/controller`, ...; see `docs/control-plane.md`);
//! - `GET /api/workload`: the offered load (each pattern's base rate and the rate its
//!   shape gives now) and the run's own counters (arrivals offered, events published,
//!   events handled, seconds since the start);
//! - `POST /api/workload` `{"rate": R}` (with `"topic"` when the workload has several
//!   patterns): sets a pattern's base rate live, through the same
//!   [`RunControl::set_rate`] a scenario's `rate_changes` use; `400`/`413`/`415`/`422`
//!   with a JSON body naming the problem otherwise;
//! - `GET /api/workload/history?since=T`: one sample a second (rates, buffers, workers
//!   per stage, memory, mode) for the last [`HISTORY_LEN`] seconds, so the charts are
//!   full the moment the page opens;
//! - `GET /` (with `/dashboard.js`, `/dashboard.css` and `/dashboard/parameters.json`):
//!   the dashboard page, embedded in the binary, no build step, nothing fetched from
//!   elsewhere.
//!
//! Every `/api` route, the workload ones included, is behind the control plane's
//! security layers: a bearer token when one is configured, the body limit, JSON
//! errors. The page and its script are static and served without the token (the page
//! asks for it and sends it with each API call). A non-loopback address is refused
//! without a token ([`ServeError::Exposed`]).
//!
//! ```no_run
//! use pipeline_tests::stress::Scenario;
//! use pipeline_tests::stress::serve::{ServeConfig, serve};
//!
//! let served = serve(
//!     Scenario::default_scenario(),
//!     ServeConfig::new("127.0.0.1:8080".parse()?),
//! )?;
//! println!("dashboard: {}", served.url());
//! // ... until told to stop:
//! let result = served.stop()?;
//! println!("{} events handled", result.handled);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use super::run::{RunControl, RunOptions, RunResult, rss_bytes, run};
use super::scenario::Scenario;
use crate::workload::Pattern;
use axum::Json;
use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use pipeline_controller::config::PARAMETERS;
use pipeline_controller::control_plane::{ControlPlane, ControlPlaneConfig};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

/// The dashboard page.
pub const INDEX_HTML: &str = include_str!("dashboard/index.html");
/// The dashboard's script (plain JavaScript, canvas charts, no library).
pub const DASHBOARD_JS: &str = include_str!("dashboard/dashboard.js");
/// The dashboard's style sheet.
pub const DASHBOARD_CSS: &str = include_str!("dashboard/dashboard.css");

/// The highest base rate `POST /api/workload` accepts, events per second. The
/// generator draws every due arrival at once while the publisher waits, so an
/// unbounded rate would be unbounded memory.
pub const MAX_RATE: f64 = 100_000.0;

/// Samples kept for `GET /api/workload/history`, one a second (ten minutes).
pub const HISTORY_LEN: usize = 600;

/// How a [`serve`] run is exposed.
///
/// ```
/// use pipeline_tests::stress::serve::ServeConfig;
///
/// let config = ServeConfig::new("127.0.0.1:0".parse()?).token("s3cret").verbose(false);
/// assert!(config.addr().ip().is_loopback());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ServeConfig {
    addr: SocketAddr,
    token: Option<String>,
    verbose: bool,
    sample_every: Duration,
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: never printed.
        f.debug_struct("ServeConfig")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "(set)"))
            .field("verbose", &self.verbose)
            .field("sample_every", &self.sample_every)
            .finish()
    }
}

impl ServeConfig {
    /// Serve on `addr` (port 0: a free port, see [`Served::local_addr`]), without a
    /// token, quietly, one history sample a second.
    pub fn new(addr: SocketAddr) -> Self {
        ServeConfig {
            addr,
            token: None,
            verbose: false,
            sample_every: Duration::from_secs(1),
        }
    }

    /// Requires `Authorization: Bearer <token>` on every `/api` route (the control
    /// plane's and the workload's). Needed for an address other than loopback.
    #[must_use]
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Prints the run's status line each second, its decisions, and each rate change
    /// made through the API (default false).
    #[must_use]
    pub fn verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }

    /// The address asked for.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Why [`serve`] or [`Served::stop`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The address is not loopback and no token was given: anyone who can reach it
    /// could change the pipeline's configuration and switch its controller off.
    #[error(
        "{addr} is not a loopback address: serving it needs a token (--token), or use 127.0.0.1"
    )]
    Exposed {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A thread or the server's runtime could not start.
    #[error("cannot start the server")]
    Start(#[source] std::io::Error),
    /// The run failed (it could not build its pipeline, or it panicked).
    #[error("the run failed: {message}")]
    Run {
        /// What the run said.
        message: String,
    },
}

/// A run being served; [`stop`](Self::stop) it to end the run and get its result.
/// Dropping it stops it too, without the result.
#[derive(Debug)]
pub struct Served {
    addr: SocketAddr,
    control: RunControl,
    run: Option<JoinHandle<Result<RunResult, String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl Served {
    /// The address it listens on (with the port the system chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The dashboard's address, `http://ADDR/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The run's control: rates, counters, the pipeline's handle.
    pub fn control(&self) -> &RunControl {
        &self.control
    }

    /// Stops serving (open connections, event streams included, are closed), ends the
    /// run, shuts its pipeline down (a 5 s drain) and returns what the run measured.
    ///
    /// # Errors
    ///
    /// [`ServeError::Run`] when the run panicked.
    pub fn stop(mut self) -> Result<RunResult, ServeError> {
        self.stop_server();
        self.control.stop();
        let run = self.run.take().expect("taken only here or in drop");
        match run.join() {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(message)) => Err(ServeError::Run { message }),
            Err(_) => Err(ServeError::Run {
                message: "the run's thread panicked".into(),
            }),
        }
    }

    fn stop_server(&mut self) {
        drop(self.stop.take());
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop_server();
        self.control.stop();
        if let Some(run) = self.run.take() {
            let _ = run.join();
        }
    }
}

/// Starts `scenario` holding its load, and serves the control plane, the workload
/// endpoint and the dashboard on `config`'s address until [`Served::stop`].
///
/// # Errors
///
/// [`ServeError::Exposed`] for a non-loopback address without a token (checked
/// first), [`ServeError::Bind`] when the address cannot be bound (checked before the
/// run starts), [`ServeError::Run`] when the run cannot build its pipeline,
/// [`ServeError::Start`] when a thread or the runtime cannot start.
pub fn serve(scenario: Scenario, config: ServeConfig) -> Result<Served, ServeError> {
    let addr = config.addr;
    if !addr.ip().is_loopback() && config.token.is_none() {
        return Err(ServeError::Exposed { addr });
    }
    let bind = |source| ServeError::Bind { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(bind)?;
    listener.set_nonblocking(true).map_err(bind)?;
    let local = listener.local_addr().map_err(bind)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Start)?;

    let options = RunOptions {
        verbose: config.verbose,
        in_cgroup: false,
        hold: true,
        live_config: true,
    };
    let (tx, rx) = mpsc::channel();
    let held = scenario.clone();
    let run_thread = std::thread::Builder::new()
        .name("stress-run".into())
        .spawn(move || run(&held, &options, Some(tx)).map_err(|e| e.to_string()))
        .map_err(ServeError::Start)?;
    let control = match rx.recv() {
        Ok(control) => control,
        // The run ended before handing out its control: it failed to start.
        Err(_) => {
            let message = match run_thread.join() {
                Ok(Err(message)) => message,
                Ok(Ok(_)) => "the run ended before it started".into(),
                Err(_) => "the run's thread panicked".into(),
            };
            return Err(ServeError::Run { message });
        }
    };

    let dashboard = Arc::new(Dashboard::new(&scenario, control.clone(), config.verbose));
    let mut plane_config = ControlPlaneConfig::new().addr(local);
    if let Some(token) = &config.token {
        plane_config = plane_config.token(token.clone());
    }
    let app = router(dashboard.clone(), plane_config);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sample_every = config.sample_every;
    let server = std::thread::Builder::new()
        .name("stress-serve".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(error) => {
                        eprintln!("pipeline-stress: cannot serve on {local}: {error}");
                        return;
                    }
                };
                tokio::spawn(sample(dashboard, sample_every));
                tokio::select! {
                    served = axum::serve(listener, app) => {
                        if let Err(error) = served {
                            eprintln!("pipeline-stress: the server stopped: {error}");
                        }
                    }
                    _ = stopped => {}
                }
            });
            // Dropping the runtime ends every connection, event streams included.
            drop(runtime);
        });
    let server = match server {
        Ok(server) => server,
        Err(error) => {
            control.stop();
            let _ = run_thread.join();
            return Err(ServeError::Start(error));
        }
    };
    Ok(Served {
        addr: local,
        control,
        run: Some(run_thread),
        stop: Some(stop),
        server: Some(server),
    })
}

/// The routes: the page (public, static) beside the control plane with the workload
/// routes merged under its security layers.
fn router(dashboard: Arc<Dashboard>, plane: ControlPlaneConfig) -> Router {
    let workload = Router::new()
        .route("/api/workload", get(workload_get).post(workload_post))
        .route("/api/workload/history", get(history_get))
        .with_state(dashboard.clone());
    let plane = ControlPlane::new(dashboard.control.pipeline().clone(), plane);
    Router::new()
        .route(
            "/",
            get(|| async { page("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/dashboard.js",
            get(|| async { page("text/javascript; charset=utf-8", DASHBOARD_JS) }),
        )
        .route(
            "/dashboard.css",
            get(|| async { page("text/css; charset=utf-8", DASHBOARD_CSS) }),
        )
        .route("/dashboard/parameters.json", get(parameters))
        .merge(plane.router_with(workload))
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The configuration parameters' units, ranges and critical flags, for the page's
/// form (the same table as `docs/configuration.md`).
async fn parameters() -> Json<Value> {
    let list: Vec<Value> = PARAMETERS
        .iter()
        .map(|p| {
            json!({
                "path": p.path,
                "unit": p.unit,
                "default": p.default,
                "range": p.range,
                "critical": p.critical,
            })
        })
        .collect();
    Json(Value::Array(list))
}

/// What the workload routes share: the run's control, the scenario's name and the
/// sampled history.
struct Dashboard {
    control: RunControl,
    scenario: String,
    description: String,
    /// Per pattern (in order): the top of the page's slider, ten times the scenario's
    /// base rate rounded up to a round number, within [`MAX_RATE`].
    slider_max: Vec<f64>,
    stages: Vec<String>,
    verbose: bool,
    history: Mutex<VecDeque<Point>>,
}

/// One history sample.
#[derive(Debug, Clone, Serialize)]
struct Point {
    /// Seconds since the run started.
    t: f64,
    /// Arrivals offered per second since the previous sample (measured).
    offered_rate: f64,
    /// The rate the workload's patterns give now, summed (set rate times shape).
    target_rate: f64,
    /// Events published per second since the previous sample.
    published_rate: f64,
    /// Events handled per second since the previous sample.
    handled_rate: f64,
    /// Per stage, in the order of `stages`.
    stages: Vec<StagePoint>,
    /// Memory in use, bytes: the controller's latest reading, else this process's
    /// resident set.
    memory_bytes: u64,
    /// The memory limit the controller works against, bytes.
    memory_limit: Option<u64>,
    /// The controller's mode.
    mode: &'static str,
    /// Whether the controller was on.
    controller_enabled: bool,
    /// The publish-rate limit in force.
    publish_rate_limit: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
struct StagePoint {
    len: usize,
    capacity: usize,
    workers: usize,
}

impl Dashboard {
    fn new(scenario: &Scenario, control: RunControl, verbose: bool) -> Self {
        Dashboard {
            scenario: scenario.name.clone(),
            description: scenario.description.clone(),
            slider_max: scenario
                .patterns
                .iter()
                .map(|p| slider_max(p.rate))
                .collect(),
            stages: scenario.stages.iter().map(|s| s.name.clone()).collect(),
            verbose,
            history: Mutex::new(VecDeque::with_capacity(HISTORY_LEN)),
            control,
        }
    }

    fn history(&self) -> std::sync::MutexGuard<'_, VecDeque<Point>> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The body of `GET /api/workload`.
    fn workload(&self) -> Value {
        let control = &self.control;
        let now = control.elapsed();
        let patterns = control.patterns();
        let list: Vec<Value> = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| {
                json!({
                    "topic": p.topic,
                    "rate": p.rate,
                    "offered_rate": p.rate_at(now),
                    "slider_max": self.slider_max.get(i).copied().unwrap_or(MAX_RATE),
                })
            })
            .collect();
        json!({
            "scenario": self.scenario,
            "description": self.description,
            "since_start_secs": now.as_secs_f64(),
            "rate": patterns.iter().map(|p| p.rate).sum::<f64>(),
            "offered_rate": patterns.iter().map(|p| p.rate_at(now)).sum::<f64>(),
            "max_rate": MAX_RATE,
            "patterns": list,
            "stages": self.stages,
            "offered_total": control.offered_total(),
            "published_total": control.published_total(),
            "handled_total": control.handled_total(),
        })
    }
}

/// Ten times `rate` rounded up to one significant digit (300 gives 3000, 25 gives
/// 300), at least 10, at most [`MAX_RATE`].
fn slider_max(rate: f64) -> f64 {
    let want = (rate * 10.0).max(10.0);
    let unit = 10f64.powf(want.log10().floor());
    ((want / unit).ceil() * unit).round().min(MAX_RATE)
}

/// Samples the run every `every` into the history, rates from counter differences.
async fn sample(dashboard: Arc<Dashboard>, every: Duration) {
    let control = &dashboard.control;
    let mut last = (
        control.elapsed(),
        control.offered_total(),
        control.published_total(),
        control.handled_total(),
    );
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let now = (
            control.elapsed(),
            control.offered_total(),
            control.published_total(),
            control.handled_total(),
        );
        let dt = now.0.saturating_sub(last.0).as_secs_f64().max(1e-3);
        let rate = |new: u64, old: u64| new.saturating_sub(old) as f64 / dt;
        let status = control.pipeline().status();
        let point = Point {
            t: now.0.as_secs_f64(),
            offered_rate: rate(now.1, last.1),
            target_rate: control.patterns().iter().map(|p| p.rate_at(now.0)).sum(),
            published_rate: rate(now.2, last.2),
            handled_rate: rate(now.3, last.3),
            stages: status
                .stages
                .iter()
                .map(|s| StagePoint {
                    len: s.len,
                    capacity: s.capacity,
                    workers: s.workers,
                })
                .collect(),
            memory_bytes: status.memory.used_bytes.unwrap_or_else(rss_bytes),
            memory_limit: status.memory.limit_bytes,
            mode: status.mode,
            controller_enabled: status.controller_enabled,
            publish_rate_limit: status.publish_rate_limit,
        };
        last = now;
        let mut history = dashboard.history();
        if history.len() == HISTORY_LEN {
            history.pop_front();
        }
        history.push_back(point);
    }
}

/// An error answer: a status and `{"message", "errors": [{"path", "message"}]}`.
fn error(status: StatusCode, message: impl Into<String>, errors: &[(String, String)]) -> Response {
    let errors: Vec<Value> = errors
        .iter()
        .map(|(path, message)| json!({ "path": path, "message": message }))
        .collect();
    (
        status,
        Json(json!({ "message": message.into(), "errors": errors })),
    )
        .into_response()
}

async fn workload_get(State(dashboard): State<Arc<Dashboard>>) -> Json<Value> {
    Json(dashboard.workload())
}

async fn workload_post(
    State(dashboard): State<Arc<Dashboard>>,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    // Malformed JSON 400, a body over the limit 413, not application/json 415.
    let body = match body {
        Ok(Json(body)) => body,
        Err(rejection) => return error(rejection.status(), rejection.body_text(), &[]),
    };
    let patterns = dashboard.control.patterns();
    let (topic, rate) = match rate_change(&body, &patterns) {
        Ok(change) => change,
        Err(errors) => {
            let message = match errors.as_slice() {
                [(path, message)] if path.is_empty() => message.clone(),
                _ => format!(
                    "{} problem(s) in the body; the rate was not changed",
                    errors.len()
                ),
            };
            return error(StatusCode::UNPROCESSABLE_ENTITY, message, &errors);
        }
    };
    if let Err(unknown) = dashboard.control.set_rate(&topic, rate) {
        // Checked above; a pattern cannot disappear.
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            unknown.to_string(),
            &[("topic".into(), unknown.to_string())],
        );
    }
    if dashboard.verbose {
        println!("  api      rate {topic}={rate}/s (POST /api/workload)");
    }
    Json(dashboard.workload()).into_response()
}

/// Reads `{"rate": R, "topic": T}` (`topic` optional with one pattern): the pattern's
/// topic and the new rate, or every problem as `(path, message)` (path `""` for the
/// body as a whole).
fn rate_change(body: &Value, patterns: &[Pattern]) -> Result<(String, f64), Vec<(String, String)>> {
    let Value::Object(fields) = body else {
        return Err(vec![(
            String::new(),
            format!(
                "the body must be a JSON object such as {{\"rate\": 500}}, got {}",
                kind(body)
            ),
        )]);
    };
    let mut errors = Vec::new();
    for name in fields.keys() {
        if name != "rate" && name != "topic" {
            errors.push((
                name.clone(),
                "unknown field: the body takes rate (events per second) and topic".into(),
            ));
        }
    }
    let rate = match fields.get("rate") {
        None => {
            errors.push((
                "rate".into(),
                "missing: the new base rate in events per second".into(),
            ));
            None
        }
        Some(Value::Number(n)) => match n.as_f64() {
            Some(r) if r < 0.0 => {
                errors.push(("rate".into(), format!("must be 0 or more, got {n}")));
                None
            }
            Some(r) if r > MAX_RATE => {
                errors.push((
                    "rate".into(),
                    format!("must be at most {MAX_RATE} events per second, got {n}"),
                ));
                None
            }
            Some(r) => Some(r),
            None => {
                errors.push(("rate".into(), format!("{n} is not a usable number")));
                None
            }
        },
        Some(other) => {
            errors.push((
                "rate".into(),
                format!("must be a number (events per second), got {}", kind(other)),
            ));
            None
        }
    };
    let names = || {
        patterns
            .iter()
            .map(|p| p.topic.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let topic = match fields.get("topic") {
        None if patterns.len() == 1 => Some(patterns[0].topic.clone()),
        None => {
            errors.push((
                "topic".into(),
                format!(
                    "missing: the workload has {} patterns ({}), name one",
                    patterns.len(),
                    names()
                ),
            ));
            None
        }
        Some(Value::String(topic)) if patterns.iter().any(|p| p.topic == *topic) => {
            Some(topic.clone())
        }
        Some(Value::String(topic)) => {
            errors.push((
                "topic".into(),
                format!("no pattern {topic:?} in the workload (it has: {})", names()),
            ));
            None
        }
        Some(other) => {
            errors.push((
                "topic".into(),
                format!("must be a string, got {}", kind(other)),
            ));
            None
        }
    };
    match (topic, rate) {
        (Some(topic), Some(rate)) if errors.is_empty() => Ok((topic, rate)),
        _ => Err(errors),
    }
}

/// A JSON value's kind and, when short, the value: `a string ("fast")`, `null`.
fn kind(value: &Value) -> String {
    let text = value.to_string();
    let shown = if text.len() <= 40 {
        format!(" ({text})")
    } else {
        String::new()
    };
    match value {
        Value::Null => "null".into(),
        Value::Bool(_) => format!("a boolean{shown}"),
        Value::Number(_) => format!("a number{shown}"),
        Value::String(_) => format!("a string{shown}"),
        Value::Array(_) => format!("an array{shown}"),
        Value::Object(_) => format!("an object{shown}"),
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Since {
    since: Option<f64>,
}

/// `GET /api/workload/history?since=T`: `{"stages": [...], "samples": [...]}`, the
/// kept samples taken after `T` seconds (all kept without `since`), oldest first.
async fn history_get(
    State(dashboard): State<Arc<Dashboard>>,
    query: Result<Query<Since>, QueryRejection>,
) -> Response {
    let since = match query {
        Ok(Query(Since { since })) => since.unwrap_or(f64::NEG_INFINITY),
        Err(rejection) => return error(rejection.status(), rejection.body_text(), &[]),
    };
    let samples: Vec<Point> = dashboard
        .history()
        .iter()
        .filter(|p| p.t > since)
        .cloned()
        .collect();
    Json(json!({ "stages": dashboard.stages, "samples": samples })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slider_tops_are_round() {
        assert_eq!(slider_max(300.0), 3000.0);
        assert_eq!(slider_max(25.0), 300.0);
        assert_eq!(slider_max(2.0), 20.0);
        assert_eq!(slider_max(0.0), 10.0);
        assert_eq!(slider_max(100.0), 1000.0);
        assert_eq!(slider_max(90_000.0), MAX_RATE);
    }

    #[test]
    fn rate_changes_name_every_problem() {
        let one = [Pattern::new("orders", 10.0)];
        let two = [Pattern::new("a", 1.0), Pattern::new("b", 2.0)];
        assert_eq!(
            rate_change(&json!({"rate": 50}), &one),
            Ok(("orders".into(), 50.0))
        );
        assert_eq!(
            rate_change(&json!({"rate": 0.5, "topic": "b"}), &two),
            Ok(("b".into(), 0.5))
        );
        let paths = |body: Value, patterns: &[Pattern]| -> Vec<String> {
            rate_change(&body, patterns)
                .unwrap_err()
                .into_iter()
                .map(|(p, _)| p)
                .collect()
        };
        assert_eq!(paths(json!({"rate": -1}), &one), ["rate"]);
        assert_eq!(paths(json!({"rate": "fast"}), &one), ["rate"]);
        assert_eq!(paths(json!({"rate": 1e9}), &one), ["rate"]);
        assert_eq!(paths(json!({}), &one), ["rate"]);
        assert_eq!(paths(json!({"rate": 1}), &two), ["topic"]);
        assert_eq!(
            paths(json!({"rate": null, "topic": 3, "speed": 1}), &two),
            ["speed", "rate", "topic"]
        );
        assert_eq!(paths(json!([1]), &one), [""]);
    }
}
