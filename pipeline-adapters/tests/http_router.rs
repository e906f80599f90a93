//! The ingest routes mounted in an axum app of the test's own, served with
//! `axum::serve` on 127.0.0.1, and the waits of `publish_wait`: an event the bus
//! refuses waits (as a task, no thread blocked) and the answer stays exact.

mod common;

use axum::Router;
use axum::routing::get;
use common::wait_until;
use pipeline_adapters::http::{HttpIngest, HttpSourceConfig, router};
use pipeline_core::bus::{Bus, Subscription, SubscriptionConfig};
use pipeline_core::envelope::Envelope;
use pipeline_core::pool::WorkerPool;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A generous bound on every wait of these tests: a hang detector, not a requirement.
const WATCHDOG: Duration = Duration::from_secs(60);

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(WATCHDOG))
        .build()
        .new_agent()
}

/// POSTs NDJSON and returns (status, Retry-After, JSON body).
fn post(url: &str, body: &str) -> (u16, Option<String>, Value) {
    let mut response = agent()
        .post(url)
        .header("Content-Type", "application/x-ndjson")
        .send(body)
        .expect("an answer");
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.body_mut().read_to_string().unwrap();
    (
        response.status().as_u16(),
        retry_after,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

fn get_text(url: &str) -> (u16, String) {
    let mut response = agent().get(url).call().expect("an answer");
    let text = response.body_mut().read_to_string().unwrap();
    (response.status().as_u16(), text)
}

fn ndjson(events: usize) -> String {
    (0..events)
        .map(|i| format!("{{\"topic\":\"t\",\"payload\":{i}}}\n"))
        .collect()
}

/// An app of the test's own served by `axum::serve` on a runtime with `threads`
/// worker threads; dropped, it stops the runtime.
struct App {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl App {
    fn serve(app: Router, threads: usize) -> App {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move { axum::serve(listener, app).await });
        App {
            addr,
            runtime: Some(runtime),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn own_routes() -> Router {
    Router::new().route("/hello", get(|| async { "hello from the app" }))
}

#[test]
fn router_merged_into_an_app_serves_beside_the_apps_own_route() {
    let bus = Bus::new();
    let events = bus.subscribe(SubscriptionConfig::new("events")).unwrap();
    let app = App::serve(
        own_routes().merge(router(HttpSourceConfig::new(), bus.publisher())),
        2,
    );
    assert_eq!(
        get_text(&app.url("/hello")),
        (200, "hello from the app".to_owned())
    );
    let (status, _, body) = post(&app.url("/events"), &ndjson(3));
    assert_eq!((status, body["accepted"].as_u64()), (202, Some(3)));
    assert_eq!(events.len(), 3);
    assert_eq!(get_text(&app.url("/healthz")).0, 200);
    assert_eq!(get_text(&app.url("/nowhere")).0, 404);
}

#[test]
fn http_ingest_nested_under_a_prefix_counts_and_stops() {
    let bus = Bus::new();
    let events = bus.subscribe(SubscriptionConfig::new("events")).unwrap();
    let ingest = HttpIngest::new(
        HttpSourceConfig::new()
            .name("nested")
            .bearer_token("s3cret"),
        bus.publisher(),
    )
    .unwrap();
    let app = App::serve(own_routes().nest("/ingest", ingest.router()), 2);
    assert_eq!(get_text(&app.url("/hello")).0, 200);
    // The token is checked on the mounted route as on the standalone server.
    assert_eq!(post(&app.url("/ingest/events"), &ndjson(1)).0, 401);
    let response = agent()
        .post(app.url("/ingest/events"))
        .header("Authorization", "Bearer s3cret")
        .send(r#"[{"topic":"a"},{"topic":"b"}]"#)
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(events.len(), 2);
    let stats = ingest.stats();
    assert_eq!(
        (
            stats.requests,
            stats.accepted,
            stats.unauthorized,
            stats.source.published
        ),
        (2, 1, 1, 2)
    );
    assert_eq!(get_text(&app.url("/ingest/healthz")).0, 200);
    ingest.stop();
    assert!(ingest.is_stopping());
    assert_eq!(
        get_text(&app.url("/ingest/healthz")),
        (503, r#"{"status":"stopping"}"#.to_owned())
    );
}

#[test]
fn an_invalid_config_is_an_error_from_new_and_a_panic_from_router() {
    let bus: Bus<Envelope> = Bus::new();
    let error =
        HttpIngest::new(HttpSourceConfig::new().max_body_bytes(0), bus.publisher()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid `max_body_bytes`: must be at least 1"
    );
    let publisher = bus.publisher();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = router(HttpSourceConfig::new().name(""), publisher);
    }));
    assert!(panicked.is_err());
}

#[test]
fn a_full_subscription_waits_for_room_then_accepts_the_whole_batch() {
    let bus = Bus::new();
    let sub = bus
        .subscribe(SubscriptionConfig::new("small").capacity(2))
        .unwrap();
    let ingest = HttpIngest::new(
        HttpSourceConfig::new().publish_wait(WATCHDOG),
        bus.publisher(),
    )
    .unwrap();
    let app = App::serve(ingest.router(), 1);
    let url = app.url("/events");
    let client = std::thread::spawn(move || post(&url, &ndjson(3)));
    // The third event found the subscription full and waits (a task, no thread).
    wait_until("the request to wait", WATCHDOG, || {
        ingest.stats().source.full == 1
    });
    // The runtime's one thread still answers while the request waits.
    assert_eq!(get_text(&app.url("/healthz")).0, 200);
    assert_eq!(sub.recv().unwrap().payload().as_ref(), b"0");
    let (status, retry_after, body) = client.join().unwrap();
    assert_eq!((status, retry_after), (202, None));
    assert_eq!(body["accepted"], 3);
    let payloads: Vec<_> = sub.try_iter().map(|e| e.payload().clone()).collect();
    assert_eq!(payloads, ["1", "2"]);
    let stats = ingest.stats();
    assert_eq!(
        (
            stats.accepted,
            stats.publish_waits,
            stats.unavailable,
            stats.source.published
        ),
        (1, 1, 0, 3)
    );
}

#[test]
fn without_a_wait_a_full_subscription_is_503_at_once() {
    let bus = Bus::new();
    let sub = bus
        .subscribe(SubscriptionConfig::new("small").capacity(2))
        .unwrap();
    let ingest = HttpIngest::new(
        HttpSourceConfig::new().publish_wait(Duration::ZERO),
        bus.publisher(),
    )
    .unwrap();
    let app = App::serve(ingest.router(), 1);
    let (status, retry_after, body) = post(&app.url("/events"), &ndjson(3));
    assert_eq!((status, retry_after.as_deref()), (503, Some("1")));
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected_from"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(sub.len(), 2);
    let stats = ingest.stats();
    assert_eq!((stats.publish_waits, stats.source.not_published), (0, 1));
}

#[test]
fn a_rate_limit_token_due_within_the_wait_is_waited_for() {
    // The real clock: one token per second, a bucket of one. The second event's token
    // is about a second away, well within the wait.
    let bus = Bus::builder().publish_burst(1).build().unwrap();
    let sub = bus.subscribe(SubscriptionConfig::new("all")).unwrap();
    bus.set_publish_rate(Some(1.0)).unwrap();
    let ingest = HttpIngest::new(
        HttpSourceConfig::new().publish_wait(WATCHDOG),
        bus.publisher(),
    )
    .unwrap();
    let app = App::serve(ingest.router(), 1);
    let (status, _, body) = post(&app.url("/events"), &ndjson(2));
    assert_eq!((status, body["accepted"].as_u64()), (202, Some(2)));
    assert_eq!(sub.len(), 2);
    let stats = ingest.stats();
    assert_eq!((stats.rate_limited, stats.source.backoff), (0, 1));
    assert_eq!(stats.publish_waits, 1);
}

/// Issue 14, adapters: ingest used to be the only way in, and a blocking publish on a
/// runtime thread froze the service. Here 32 clients post to the mounted router while
/// the stage is stopped at a gate, so every request waits for room; the runtime has
/// two threads, and the app's own routes and the health probe keep answering
/// throughout. Counted, not timed: every probe is answered, every event gets in.
#[test]
fn probes_answer_while_32_clients_wait_on_a_stalled_stage() {
    const CLIENTS: usize = 32;
    const REQUESTS: usize = 3;
    const EVENTS: usize = 10;
    const PROBES: usize = 20;
    let bus = Bus::new();
    let sub = bus
        .subscribe(SubscriptionConfig::new("stage").capacity(4))
        .unwrap();
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let processed = Arc::new(AtomicU64::new(0));
    let pool = stage(sub, gate.clone(), processed.clone());
    let ingest = HttpIngest::new(
        HttpSourceConfig::new().publish_wait(WATCHDOG),
        bus.publisher(),
    )
    .unwrap();
    let app = App::serve(own_routes().merge(ingest.router()), 2);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let url = app.url("/events");
            std::thread::spawn(move || {
                (0..REQUESTS)
                    .map(|_| post(&url, &ndjson(EVENTS)).0)
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    // Every client has a request waiting for room (each waits once per request).
    wait_until("every client to wait", WATCHDOG, || {
        ingest.stats().source.full >= CLIENTS as u64
    });
    for _ in 0..PROBES {
        assert_eq!(get_text(&app.url("/healthz")).0, 200);
        assert_eq!(get_text(&app.url("/hello")).0, 200);
    }
    assert_eq!(
        ingest.stats().accepted,
        0,
        "the probes ran while every request waited"
    );
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    for client in clients {
        assert_eq!(client.join().unwrap(), vec![202; REQUESTS]);
    }
    let total = (CLIENTS * REQUESTS * EVENTS) as u64;
    let report = pool.shutdown(WATCHDOG);
    assert_eq!((report.processed, report.left), (total, 0));
    assert_eq!(processed.load(Ordering::Relaxed), total);
    let stats = ingest.stats();
    assert_eq!(
        (stats.accepted, stats.unavailable, stats.source.published),
        ((CLIENTS * REQUESTS) as u64, 0, total)
    );
}

/// One worker that holds its first event until the gate opens.
fn stage(
    sub: Subscription<Envelope>,
    gate: Arc<(Mutex<bool>, Condvar)>,
    processed: Arc<AtomicU64>,
) -> WorkerPool<Envelope> {
    WorkerPool::builder("stage")
        .workers(1)
        .handler(move |_event: Envelope| {
            let (open, opened) = &*gate;
            let guard = opened
                .wait_timeout_while(open.lock().unwrap(), WATCHDOG, |open| !*open)
                .unwrap()
                .0;
            assert!(*guard, "the gate was never opened");
            processed.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .spawn(sub)
        .unwrap()
}

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<HttpIngest>();
    send_sync::<Router>();
}
