//! A small axum service that mounts the pipeline's HTTP ingest routes beside its own.
//!
//! ```text
//! cargo run -p pipeline-adapters --example axum_ingest --features http,prometheus
//! ```
//!
//! Environment (optional): `HTTP_ADDR` (default `127.0.0.1:8080`), `DEMO_SECONDS`
//! (default 5; the service stops after that, or on Ctrl-C).
//!
//! The app has a route of its own (`GET /`) and the ingest routes nested under
//! `/ingest` (`POST /ingest/events`, `GET /ingest/healthz`, and `GET /ingest/metrics`
//! with the `prometheus` feature). Ingest publishes with `publish_async` behind the
//! scenes: a request whose events find the stage full waits as a parked task (at most
//! `publish_wait`) and then gets `503`, so the runtime's threads keep serving every
//! other route however slow the stage is. To drive itself, the example posts a few
//! batches from a blocking client (on `spawn_blocking`, off the runtime's threads).
//!
//! Shutdown, in order: `/healthz` turns `503` (`HttpIngest::stop`), the server stops
//! taking requests and finishes those in progress (axum's graceful shutdown), then the
//! stage drains (its blocking `shutdown`, also on `spawn_blocking`).
//!
//! Never call the blocking `Publisher::publish` on a runtime thread: it parks the
//! thread until the stage has room. Use `publish_async` (or these routes).

use axum::Router;
use axum::routing::get;
use pipeline_adapters::http::{HttpIngest, HttpSourceConfig};
use pipeline_core::bus::{Bus, SubscriptionConfig};
use pipeline_core::envelope::Envelope;
use pipeline_core::pool::WorkerPool;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let seconds: u64 = std::env::var("DEMO_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);

    let config = HttpSourceConfig::new()
        .name("orders-ingest")
        .max_body_bytes(256 * 1024)
        .publish_wait(Duration::from_millis(100));
    // Installed before the bus and pools, so their metrics are recorded; kept alive to
    // the end (it owns the upkeep thread).
    #[cfg(feature = "prometheus")]
    let exporter = pipeline_adapters::prometheus::PrometheusExporter::install()?;
    #[cfg(feature = "prometheus")]
    let config = config.metrics(exporter.handle());

    // The pipeline: one stage, a worker pool on the "orders" subscription.
    let bus: Bus<Envelope> = Bus::new();
    let orders = bus.subscribe(
        SubscriptionConfig::new("orders")
            .capacity(256)
            .event_size(Envelope::size),
    )?;
    let handled = Arc::new(AtomicU64::new(0));
    let counted = handled.clone();
    let stage = WorkerPool::builder("orders")
        .workers(2)
        .handler(move |_order: Envelope| {
            std::thread::sleep(Duration::from_millis(1)); // the work
            counted.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .spawn(orders)?;

    // The service's app, with the ingest routes nested under /ingest.
    let ingest = HttpIngest::new(config, bus.publisher())?;
    let app = Router::new()
        .route("/", get(|| async { "orders service\n" }))
        .nest("/ingest", ingest.router());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    println!("serving http://{local}/ and http://{local}/ingest/events for {seconds} s");
    let shutdown = {
        let ingest = ingest.clone();
        async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = tokio::time::sleep(Duration::from_secs(seconds)) => {}
            }
            ingest.stop(); // /healthz says "stopping" from here on
        }
    };
    let server = tokio::spawn(async move {
        // With the connect info, the ingest's `http_request` spans name the client.
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
    });

    // Drive it: ten NDJSON batches of 100 orders from a blocking client.
    let url = format!("http://{local}/ingest/events");
    let statuses = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        (0..10)
            .map(|batch| {
                let body: String = (0..100)
                    .map(|i| format!("{{\"topic\":\"orders.created\",\"payload\":{{\"batch\":{batch},\"i\":{i}}}}}\n"))
                    .collect();
                agent
                    .post(&url)
                    .header("Content-Type", "application/x-ndjson")
                    .send(body)
                    .map_or(0, |response| response.status().as_u16())
            })
            .collect::<Vec<u16>>()
    })
    .await?;
    println!("the client got {statuses:?}");

    server.await??;
    let stats = ingest.stats();
    println!(
        "ingest: {} requests, {} accepted, {} x 503, {} x 429, {} events published ({} after a wait)",
        stats.requests,
        stats.accepted,
        stats.unavailable,
        stats.rate_limited,
        stats.source.published,
        stats.publish_waits,
    );
    // The stage's shutdown blocks while it drains: off the runtime's threads.
    let report =
        tokio::task::spawn_blocking(move || stage.shutdown(Duration::from_secs(10))).await?;
    println!(
        "stage: {} handled, {} left",
        handled.load(Ordering::Relaxed),
        report.left
    );
    Ok(())
}
