//! HTTP ingest -> a stage (a bus subscription and a worker pool) -> NATS JetStream.
//!
//! ```text
//! nats-server -js -a 127.0.0.1 -p 4222 -sd /tmp/nats-store &
//! cargo run -p pipeline-adapters --example http_to_nats --features full
//! ```
//!
//! Environment (all optional): `NATS_URL` (default `nats://127.0.0.1:4222`),
//! `HTTP_ADDR` (default `127.0.0.1:8080`), `DEMO_SECONDS` (default 10).
//!
//! The example serves `POST /events` and, so there is something to watch, also drives
//! itself: a client thread posts NDJSON batches at a rate that rises past what the
//! stage may take, so the bus's publish-rate limit answers some of them with 429. Every
//! second it prints what the source, the bus, the stage's pool and the sink did. At the
//! end it shuts down in order (source, then the pool draining into NATS) and reports
//! how many messages the stream holds.
//!
//! The self-tuning controller (`pipeline-controller`) is not wired in here. Once it is,
//! it replaces the fixed knobs below: it reads the same numbers this example prints
//! (bus snapshot, pool utilisation, sink latency and error ratio), resizes the stage's
//! buffer and worker pool, and moves the publish-rate limit, instead of the constant
//! `RATE_LIMIT` and `WORKERS`.

use pipeline_adapters::http::{HttpSource, HttpSourceConfig};
use pipeline_adapters::nats::{NatsSink, NatsSinkConfig};
use pipeline_adapters::sink::{Sink, SinkPool};
use pipeline_adapters::source::Source;
use pipeline_core::bus::{Bus, SubscriptionConfig};
use pipeline_core::envelope::Envelope;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Events per second the bus admits (the controller will move this).
const RATE_LIMIT: f64 = 1_000.0;
/// Workers publishing to NATS (the controller will move this within 1..=8).
const WORKERS: usize = 2;
const STREAM: &str = "PIPELINE_DEMO";

fn main() {
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let http_addr = std::env::var("HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let seconds: u64 = std::env::var("DEMO_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);

    let sink = match NatsSink::connect(
        NatsSinkConfig::new(&nats_url)
            .name("to-nats")
            .create_stream(STREAM, vec!["demo.>".into()])
            .subject_prefix("demo.")
            .connect_timeout(Duration::from_secs(3))
            .dead_letter(|undelivered| eprintln!("DEAD LETTER: {undelivered}")),
    ) {
        Ok(sink) => sink,
        Err(error) => {
            let cause = std::error::Error::source(&error)
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            eprintln!("cannot reach NATS JetStream at {nats_url}: {error}{cause}");
            eprintln!("start one with: nats-server -js -a 127.0.0.1 -p 4222 -sd /tmp/nats-store");
            eprintln!("(or set NATS_URL); Debian/Ubuntu: apt-get install nats-server");
            std::process::exit(1);
        }
    };

    let bus: Bus<Envelope> = Bus::builder()
        .publish_burst(200)
        .build()
        .expect("valid bus settings");
    bus.set_publish_rate(Some(RATE_LIMIT))
        .expect("a valid rate");
    let stage = bus
        .subscribe(
            SubscriptionConfig::new("to-nats")
                .capacity(1024)
                .min_capacity(64)
                .max_capacity(16_384)
                .event_size(Envelope::size),
        )
        .expect("a valid subscription");
    let pool = SinkPool::builder(sink)
        .workers(WORKERS)
        .min_workers(1)
        .max_workers(8)
        .spawn(stage)
        .expect("the stage's pool starts");

    let addr = http_addr.parse().expect("HTTP_ADDR is host:port");
    let mut source = match HttpSource::spawn(HttpSourceConfig::new().addr(addr), bus.publisher()) {
        Ok(source) => source,
        Err(error) => {
            eprintln!("cannot serve HTTP on {http_addr}: {error} (set HTTP_ADDR)");
            std::process::exit(1);
        }
    };
    let url = format!("http://{}/events", source.local_addr());
    println!("serving POST {url} -> stage (bus + {WORKERS} workers) -> {nats_url} stream {STREAM}");
    println!(
        "try: curl -X POST -H 'Content-Type: application/x-ndjson' --data-binary $'{{\"topic\":\"hello\",\"payload\":1}}\\n' {url}"
    );

    // A client that speeds up: 1, 2, 3... batches of 50 events per 100 ms.
    let running = Arc::new(AtomicBool::new(true));
    let (sent, limited) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let client = {
        let (running, sent, limited, url) =
            (running.clone(), sent.clone(), limited.clone(), url.clone());
        std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .new_agent();
            let started = Instant::now();
            let mut n = 0u64;
            while running.load(Ordering::Relaxed) {
                let batches = 1 + started.elapsed().as_secs();
                for _ in 0..batches {
                    let body: String = (0..50)
                        .map(|i| {
                            n += 1;
                            format!("{{\"topic\":\"orders.created\",\"key\":\"c{}\",\"payload\":{{\"n\":{n}}}}}\n", i % 7)
                        })
                        .collect();
                    match agent
                        .post(&url)
                        .header("Content-Type", "application/x-ndjson")
                        .send(body)
                    {
                        Ok(response) if response.status() == 429 => {
                            limited.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(error) => eprintln!("client: {error}"),
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    for second in 1..=seconds {
        std::thread::sleep(Duration::from_secs(1));
        let http = source.http_stats();
        let snapshot = bus.snapshot();
        let stage = snapshot
            .subscription("to-nats")
            .expect("the stage's subscription");
        let workers = pool.pool().stats();
        let sink = pool.stats();
        println!(
            "[{second:>2}s] http: {} requests ({} x 429), {} events in | bus: {} published, {} rate-limited | \
             stage: {}/{} buffered, {} workers at {:.0}% | nats: {} stored, {} retries, p90 {:?}",
            sent.load(Ordering::Relaxed),
            limited.load(Ordering::Relaxed),
            http.source.published,
            snapshot.published,
            snapshot.rate_limited,
            stage.len,
            stage.capacity,
            workers.workers,
            workers.utilisation * 100.0,
            sink.delivered,
            sink.retries,
            sink.latency.p90,
        );
    }

    running.store(false, Ordering::Relaxed);
    let _ = client.join();
    // Shut down in order: stop taking requests, then drain the stage into NATS.
    if let Err(error) = source.shutdown(Duration::from_secs(5)) {
        eprintln!("http source: {error}");
    }
    let report = pool.shutdown(Duration::from_secs(30));
    let sink = report.sink.stats();
    println!(
        "done: {} events accepted over HTTP, {} stored in NATS, {} undelivered, {} left in the stage",
        source.stats().published,
        sink.delivered,
        sink.undelivered,
        report.drain.left
    );
}
