//! Issue 14's reproduction, proved gone: an axum app on loopback whose ingest handler
//! publishes into a slow stage while 32 clients post at once. With the blocking
//! `publish`, the handlers held the runtime's threads and every health probe timed
//! out; with `publish_async` every probe answers. Probes are counted, not timed (the
//! read timeout is only a hang detector).
#![cfg(feature = "tokio")]

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use pipeline_controller::pipeline::{Pipeline, Stage};
use pipeline_core::bus::{Publisher, SubscriptionConfig};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const CLIENTS: u64 = 32;
const PER_CLIENT: u64 = 10;

/// `POST /events` with a decimal number as the body: published with `publish_async`.
async fn ingest(State(publisher): State<Publisher<u64>>, body: String) -> StatusCode {
    let Ok(n) = body.trim().parse::<u64>() else {
        return StatusCode::BAD_REQUEST;
    };
    match publisher.publish_async(n).await {
        Ok(()) => StatusCode::ACCEPTED,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// One HTTP/1.1 request on a fresh connection; the status code, or `None` when the
/// server did not answer within the hang detector's 30 s.
fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn health_probes_answer_while_32_clients_wait_for_a_slow_stage() {
    // A small service: two runtime threads, the stage's workers are tasks on them.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let handled = Arc::new(AtomicU64::new(0));
    let count = handled.clone();
    let pipeline = Pipeline::<u64>::builder()
        .single_stage(
            Stage::new(SubscriptionConfig::new("slow").capacity(4))
                .workers(1)
                .async_handler(move |_n: u64| {
                    let count = count.clone();
                    async move {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        count.fetch_add(1, Ordering::Relaxed);
                        Ok(())
                    }
                }),
        )
        .controller(false) // a fixed, small stage: back pressure is certain
        .runtime(runtime.handle().clone())
        .build()
        .unwrap();
    pipeline.start().unwrap();
    let app = Router::new()
        .route("/events", post(ingest))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(pipeline.publisher());
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move { axum::serve(listener, app).await });

    let done = Arc::new(AtomicBool::new(false));
    let probes = std::thread::spawn({
        let done = done.clone();
        move || {
            let (mut ok, mut failed) = (0u64, 0u64);
            // At least one probe, then as many as fit while the clients post.
            loop {
                match request(addr, "GET", "/healthz", "") {
                    Some(200) => ok += 1,
                    _ => failed += 1,
                }
                if done.load(Ordering::Acquire) {
                    break (ok, failed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            std::thread::spawn(move || {
                (0..PER_CLIENT)
                    .filter(|i| {
                        let n = client * PER_CLIENT + i;
                        request(addr, "POST", "/events", &n.to_string()) == Some(202)
                    })
                    .count() as u64
            })
        })
        .collect();
    let accepted: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    done.store(true, Ordering::Release);
    let (ok, failed) = probes.join().unwrap();

    let stats = pipeline.bus().snapshot();
    let slow = stats.subscription("slow").unwrap();
    let report = runtime.block_on(pipeline.shutdown_async(Duration::from_secs(60)));

    assert_eq!(accepted, CLIENTS * PER_CLIENT, "every post was accepted");
    assert!(
        slow.full_events > 0,
        "the stage's buffer was full at times, so publishers waited (back pressure)"
    );
    assert_eq!(
        failed, 0,
        "{failed} health probes failed or hung ({ok} answered)"
    );
    assert!(ok >= 1);
    assert_eq!(report.left(), 0);
    assert_eq!(handled.load(Ordering::Relaxed), CLIENTS * PER_CLIENT);
}
