//! HTTP ingest -> a stage (a bus subscription and a sink pool) -> NATS JetStream, tuned
//! live by the controller.
//!
//! ```text
//! nats-server -js -a 127.0.0.1 -p 4222 -sd /tmp/nats-store &
//! cargo run -p pipeline-adapters --example http_to_nats --features full
//! ```
//!
//! Environment (all optional): `NATS_URL` (default `nats://127.0.0.1:4222`),
//! `HTTP_ADDR` (default `127.0.0.1:8080`), `DEMO_SECONDS` (default 20).
//!
//! The example serves `POST /events` and, so there is something to watch, also drives
//! itself: a client thread posts NDJSON batches at a rate that rises every second.
//!
//! The controller (`pipeline-controller`'s `ControlLoop`) runs the stage: it reads the
//! bus snapshot, the stage pool's stats and the container's memory, and turns three
//! knobs: the stage's buffer (its subscription's capacity, within 64..=16 384), the
//! stage's worker count (concurrent NATS deliveries, within 1..=8: the sink pool's
//! worker pool is handed to it as an `Arc<dyn PoolActuator>`) and the bus's
//! publish-rate limit. The limit starts at `START_RATE`, below what the client soon
//! offers. The HTTP source holds a request whose next token is due within its
//! `publish_wait` (250 ms) until it is, and answers `429` beyond that, so this
//! sequential client is slowed to the limit (mostly by waits, `429`s only for long
//! ones); the controller raises the limit toward the demand while the buffer stays
//! relieved, grows the buffer ahead of the arrival rate, adds workers when they are
//! busy and the backlog does not shrink, and cuts the limit again when the buffer
//! saturates faster than the workers drain it. Every decision is printed as it is
//! made, with its reason.
//!
//! Every second the example prints what the source, the bus, the stage and the sink
//! did. The stage's utilisation is its workers' busy share: the time they spend in the
//! sink, which under traffic is the time spent delivering batches and awaiting
//! JetStream's acks (the worker whose event closes a batch sends it; see
//! `pipeline_adapters::sink`), so it moves with what the stage delivers: batches per
//! second times the time each takes to be acknowledged. On a local server one worker
//! delivers a few thousand events per second while mostly idle, so the controller
//! keeps one; against a remote server (acks slower by the round trip) the same load
//! keeps the workers busy and the controller adds some.
//!
//! At the end it shuts down in order: the client, the HTTP source, the controller,
//! then the pool, draining into NATS, and reports how many messages the stream holds.

use pipeline_adapters::http::{HttpSource, HttpSourceConfig};
use pipeline_adapters::nats::{NatsSink, NatsSinkConfig};
use pipeline_adapters::sink::{Sink, SinkPool};
use pipeline_adapters::source::Source;
use pipeline_controller::actuator::{BusActuator, PoolActuator};
use pipeline_controller::control::{ControlLoop, DecisionLog};
use pipeline_controller::limits::{Limits, LimitsReader};
use pipeline_controller::policy::{HysteresisPolicy, PolicyConfig};
use pipeline_controller::sensor::MemorySensor;
use pipeline_core::bus::{Bus, SubscriptionConfig};
use pipeline_core::clock::SystemClock;
use pipeline_core::envelope::Envelope;
use pipeline_core::pool::WorkerPool;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Events per second the bus admits at first; the controller moves it from there.
const START_RATE: f64 = 1_000.0;
/// The stage's name: its subscription (the buffer) and its worker pool.
const STAGE: &str = "to-nats";
const STREAM: &str = "PIPELINE_DEMO";

fn main() {
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let http_addr = std::env::var("HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let seconds: u64 = std::env::var("DEMO_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);

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
    bus.set_publish_rate(Some(START_RATE))
        .expect("a valid rate");
    let stage = bus
        .subscribe(
            SubscriptionConfig::new(STAGE)
                .capacity(256)
                .min_capacity(64)
                .max_capacity(16_384)
                .event_size(Envelope::size),
        )
        .expect("a valid subscription");
    let pool = SinkPool::builder(sink)
        .pool(
            WorkerPool::builder(STAGE) // the stage's name: its buffer's and its pool's
                .workers(1)
                .min_workers(1)
                .max_workers(8),
        )
        .spawn(stage)
        .expect("the stage's pool starts");

    // The controller: the bus and the sink pool's worker pool are its knobs.
    let limits = Limits::detect().unwrap_or_else(|error| {
        eprintln!("cannot read this machine's limits: {error}");
        std::process::exit(1);
    });
    let memory = MemorySensor::new(LimitsReader::new().unwrap_or_else(|error| {
        eprintln!("cannot read this machine's memory: {error}");
        std::process::exit(1);
    }));
    // Short windows, so a demo of a few seconds shows decisions (the defaults, 30 s,
    // suit a service); the NATS sink waits on I/O, so allow several workers per core.
    let policy = HysteresisPolicy::new(
        PolicyConfig::default()
            .stabilisation_window(Duration::from_secs(2))
            .cooldown(Duration::from_secs(1))
            .workers_per_core(4.0),
    )
    .expect("a valid policy");
    let log = Arc::new(DecisionLog::new(256));
    let controller = ControlLoop::new(
        policy,
        Arc::new(bus.clone()) as Arc<dyn BusActuator>,
        vec![pool.pool().clone() as Arc<dyn PoolActuator>],
        Box::new(memory),
        limits.cpu.cores,
        Arc::new(SystemClock),
        log.clone(),
    )
    .spawn(Duration::from_millis(500), Some(bus.signals()));
    println!("limits: {limits}");

    let addr = http_addr.parse().expect("HTTP_ADDR is host:port");
    let mut source = match HttpSource::spawn(HttpSourceConfig::new().addr(addr), bus.publisher()) {
        Ok(source) => source,
        Err(error) => {
            eprintln!("cannot serve HTTP on {http_addr}: {error} (set HTTP_ADDR)");
            std::process::exit(1);
        }
    };
    let url = format!("http://{}/events", source.local_addr());
    println!(
        "serving POST {url} -> stage {STAGE} (bus buffer + sink pool, tuned by the controller) -> {nats_url} stream {STREAM}"
    );
    println!(
        "try: curl -X POST -H 'Content-Type: application/x-ndjson' --data-binary $'{{\"topic\":\"hello\",\"payload\":1}}\\n' {url}"
    );

    // A client that speeds up: 1, 2, 3... batches of 50 events per 100 ms.
    let running = Arc::new(AtomicBool::new(true));
    let tally = Arc::new(Tally::default());
    let client = {
        let (running, tally, url) = (running.clone(), tally.clone(), url.clone());
        std::thread::spawn(move || drive(&url, &running, &tally))
    };

    let mut decisions_seen = 0;
    let mut delivered_before = 0;
    for second in 1..=seconds {
        std::thread::sleep(Duration::from_secs(1));
        // Each decision once, as it is made, with its reason.
        let total = log.total();
        let records = log.records();
        let new = usize::try_from(total - decisions_seen).unwrap_or(usize::MAX);
        for record in records.iter().skip(records.len().saturating_sub(new)) {
            println!("  controller: {record}");
        }
        decisions_seen = total;

        let http = source.http_stats();
        let snapshot = bus.snapshot();
        let stage = snapshot
            .subscription(STAGE)
            .expect("the stage's subscription");
        let workers = pool.pool().stats();
        let sink = pool.stats();
        let rate = snapshot
            .publish_rate
            .map_or_else(|| "unlimited".to_owned(), |r| format!("{r:.0}/s"));
        println!(
            "[{second:>2}s] http: {} requests ({} x 429, {} x 503), {} events in | bus: limit {rate}, {} published | \
             stage: {}/{} buffered, {} workers at {:.0}% busy | nats: {} stored (+{}/s), {} batches in flight, p90 {:?}",
            tally.requests.load(Ordering::Relaxed),
            tally.limited.load(Ordering::Relaxed),
            tally.unavailable.load(Ordering::Relaxed),
            http.source.published,
            snapshot.published,
            stage.len,
            stage.capacity,
            workers.workers,
            workers.utilisation * 100.0,
            sink.delivered,
            sink.delivered - delivered_before,
            sink.in_flight,
            sink.latency.p90,
        );
        delivered_before = sink.delivered;
    }

    running.store(false, Ordering::Relaxed);
    let _ = client.join();
    // Shut down in order: stop taking requests, stop the controller (it holds the
    // pool), then drain the stage into NATS.
    if let Err(error) = source.shutdown(Duration::from_secs(5)) {
        eprintln!("http source: {error}");
    }
    drop(controller.stop());
    let report = pool.shutdown(Duration::from_secs(30));
    let sink = report.sink.stats();
    println!(
        "done: {} events accepted over HTTP, {} stored in NATS, {} undelivered, {} left in the stage; \
         the controller made {} decisions",
        source.stats().published,
        sink.delivered,
        sink.undelivered,
        report.drain.left,
        log.total(),
    );
}

/// What the client was told.
#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    limited: AtomicU64,
    unavailable: AtomicU64,
}

/// Posts 1 batch of 50 events per 100 ms in the first second, 2 in the second, and so
/// on, until `running` turns false.
fn drive(url: &str, running: &AtomicBool, tally: &Tally) {
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
                    format!(
                        "{{\"topic\":\"orders.created\",\"key\":\"c{}\",\"payload\":{{\"n\":{n}}}}}\n",
                        i % 7
                    )
                })
                .collect();
            match agent
                .post(url)
                .header("Content-Type", "application/x-ndjson")
                .send(body)
            {
                Ok(response) if response.status() == 429 => {
                    tally.limited.fetch_add(1, Ordering::Relaxed);
                }
                Ok(response) if response.status() == 503 => {
                    tally.unavailable.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(error) => eprintln!("client: {error}"),
            }
            tally.requests.fetch_add(1, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
