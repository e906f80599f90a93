//! A small axum service that uses the pipeline from async code: its ingest handler
//! publishes with `publish_async`, its stage runs an async handler as tokio tasks that
//! the controller adds and removes, `/metrics` serves Prometheus text, and Ctrl-C (or
//! the end of the built-in load) shuts everything down without blocking the runtime.
//!
//! ```text
//! cargo run -p pipeline-controller --example axum_service --features tokio
//! curl -X POST -H 'content-type: application/json' -d '{"id":1,"amount":250}' \
//!      http://127.0.0.1:3000/orders
//! curl http://127.0.0.1:3000/metrics
//! ```
//!
//! Environment (optional): `ADDR` (default `127.0.0.1:3000`); `LOAD_SECONDS`: post
//! orders to itself for that many seconds, print what happened, then shut down
//! (default 0: serve until Ctrl-C).
//!
//! **Never call the blocking `publish` on a runtime thread**: when the stage's buffer
//! is full it waits, and so does every task scheduled on that thread.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use pipeline_controller::pipeline::{Pipeline, Stage};
use pipeline_core::bus::{PublishError, Publisher, SubscriptionConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// One order, as posted. Not `Clone`: a one-stage pipeline never copies an event.
#[derive(Debug, serde::Deserialize)]
struct Order {
    id: u64,
    amount: u64,
}

#[derive(Clone)]
struct App {
    publisher: Publisher<Order>,
    metrics: PrometheusHandle,
}

/// How long a request may wait for room before the client is told to come back.
const PUBLISH_WAIT: Duration = Duration::from_secs(2);

/// `POST /orders`: 202 once the order is in the stage's buffer; 503 with `Retry-After`
/// when the buffer stayed full for `PUBLISH_WAIT` (the order stays with the client)
/// or the pipeline is shutting down.
async fn ingest(State(app): State<App>, Json(order): Json<Order>) -> Response {
    // Dropping the future on timeout hands nothing to the bus (one subscription: the
    // order is either in its buffer or still here).
    match tokio::time::timeout(PUBLISH_WAIT, app.publisher.publish_async(order)).await {
        Ok(Ok(())) => StatusCode::ACCEPTED.into_response(),
        Ok(Err(PublishError::Closed(_))) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        // Timed out waiting for room (or another refusal): come back in a second.
        Ok(Err(_)) | Err(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "1")]).into_response()
        }
    }
}

async fn render_metrics(State(app): State<App>) -> String {
    app.metrics.render()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let load_seconds: u64 = std::env::var("LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let metrics = PrometheusBuilder::new().install_recorder()?;

    // One stage whose handler waits on I/O (a sleep stands in for a database call):
    // tokio tasks, not threads, and the controller moves their number within 1..=32.
    let total = Arc::new(AtomicU64::new(0));
    let newest_id = Arc::new(AtomicU64::new(0));
    let (sum, newest_in) = (total.clone(), newest_id.clone());
    let pipeline = Pipeline::<Order>::builder()
        .name("orders") // the `pipeline` label of every series below /metrics
        .single_stage(
            Stage::new(
                SubscriptionConfig::new("orders")
                    .capacity(64)
                    .min_capacity(16)
                    .max_capacity(4096),
            )
            .workers(2)
            .min_workers(1)
            .max_workers(32)
            .async_handler(move |order: Order| {
                let (sum, newest) = (sum.clone(), newest_in.clone());
                async move {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    sum.fetch_add(order.amount, Ordering::Relaxed);
                    newest.fetch_max(order.id, Ordering::Relaxed);
                    Ok(())
                }
            }),
        )
        .build()?;
    pipeline.start()?; // the workers are tasks on this runtime

    let app = App {
        publisher: pipeline.publisher(),
        metrics,
    };
    let router = Router::new()
        .route("/orders", post(ingest))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(render_metrics))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{addr}");

    let stop = async move {
        if load_seconds == 0 {
            let _ = tokio::signal::ctrl_c().await;
        } else {
            self_load(&addr, load_seconds).await;
        }
    };
    axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await?;

    // Drains what is buffered (at most 10 s) without blocking a runtime thread.
    let report = pipeline.shutdown_async(Duration::from_secs(10)).await;
    println!(
        "shut down: {} orders processed, {} left, amount total {}, highest id {}",
        report.stages.iter().map(|s| s.processed).sum::<u64>(),
        report.left(),
        total.load(Ordering::Relaxed),
        newest_id.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Posts orders to the service from 16 tasks for `seconds`, then prints the answers.
async fn self_load(addr: &str, seconds: u64) {
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let until = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let mut clients = Vec::new();
    for client in 0..16u64 {
        let (addr, accepted, refused) = (addr.to_owned(), accepted.clone(), refused.clone());
        clients.push(tokio::spawn(async move {
            let mut id = client << 32;
            while tokio::time::Instant::now() < until {
                id += 1;
                let body = format!(r#"{{"id":{id},"amount":1}}"#);
                match post_json(&addr, "/orders", &body).await {
                    Some(202) => accepted.fetch_add(1, Ordering::Relaxed),
                    _ => refused.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for client in clients {
        let _ = client.await;
    }
    println!(
        "load: {} accepted, {} refused or failed",
        accepted.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    );
}

/// A minimal HTTP/1.1 POST over a fresh connection; the status code, if any.
async fn post_json(addr: &str, path: &str, body: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let head = std::str::from_utf8(&response).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}
