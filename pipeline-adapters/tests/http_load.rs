//! Load: 32 client threads against the HTTP source over loopback, with a slow stage
//! (a publish-rate limit below the offered load, a small Block buffer). Bounded in
//! requests and time. 429s must appear, every event must be accounted for, and the
//! process's memory must stay bounded. Prints the throughput and the 429 share.

mod common;

use pipeline_adapters::http::{HttpSource, HttpSourceConfig};
use pipeline_adapters::source::Source;
use pipeline_core::bus::{Bus, SubscriptionConfig};
use pipeline_core::envelope::Envelope;
use pipeline_core::pool::WorkerPool;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const CLIENTS: usize = 32;
const REQUESTS_PER_CLIENT: usize = 300;
const EVENTS_PER_REQUEST: usize = 10;
const TIME_LIMIT: Duration = Duration::from_secs(6);
/// The slow stage: what the bus admits per second, well below what 32 clients offer.
const RATE: f64 = 20_000.0;

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    accepted_202: AtomicU64,
    limited_429: AtomicU64,
    full_503: AtomicU64,
    other: AtomicU64,
    events_accepted: AtomicU64,
}

#[test]
fn many_clients_under_a_slow_stage_get_429s_and_memory_stays_bounded() {
    let rss_before = common::vm_rss_kib();
    let bus: Bus<Envelope> = Bus::builder().publish_burst(256).build().unwrap();
    bus.set_publish_rate(Some(RATE)).unwrap();
    let sub = bus
        .subscribe(
            SubscriptionConfig::new("stage")
                .capacity(4096)
                .event_size(Envelope::size),
        )
        .unwrap();
    let processed = Arc::new(AtomicU64::new(0));
    let counted = processed.clone();
    let pool = WorkerPool::builder("stage")
        .workers(2)
        .handler(move |_e: Envelope| {
            counted.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .spawn(sub)
        .unwrap();
    let mut source = HttpSource::spawn(
        HttpSourceConfig::new()
            .addr(common::any_port())
            .worker_threads(2),
        bus.publisher(),
    )
    .unwrap();
    let url = format!("http://{}/events", source.local_addr());
    let body: String = (0..EVENTS_PER_REQUEST)
        .map(|i| format!("{{\"topic\":\"load\",\"key\":\"k{i}\",\"payload\":{{\"i\":{i},\"pad\":\"{}\"}}}}\n", "x".repeat(100)))
        .collect();
    let body = Arc::new(body);
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let deadline = started + TIME_LIMIT;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (url, body, tally) = (url.clone(), body.clone(), tally.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(10)))
                    .build()
                    .new_agent();
                for _ in 0..REQUESTS_PER_CLIENT {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let mut response = agent
                        .post(&url)
                        .header("Content-Type", "application/x-ndjson")
                        .send(body.as_str())
                        .expect("the server answers every request");
                    let text = response.body_mut().read_to_string().unwrap();
                    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
                    tally.requests.fetch_add(1, Ordering::Relaxed);
                    tally
                        .events_accepted
                        .fetch_add(json["accepted"].as_u64().unwrap(), Ordering::Relaxed);
                    let counter = match response.status().as_u16() {
                        202 => &tally.accepted_202,
                        429 => {
                            assert!(response.headers().contains_key("retry-after"));
                            &tally.limited_429
                        }
                        503 => &tally.full_503,
                        _ => &tally.other,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let elapsed = started.elapsed();
    let rss_after = common::vm_rss_kib();

    let t = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let requests = t(&tally.requests);
    let events = t(&tally.events_accepted);
    let share_429 = t(&tally.limited_429) as f64 / requests as f64;
    eprintln!(
        "http load: {CLIENTS} clients, {requests} requests in {:.2} s = {:.0} requests/s, \
         {events} events accepted = {:.0} events/s (rate limit {RATE}/s); \
         202: {}, 429: {} ({:.1}%), 503: {}, other: {}; VmRSS {} -> {} KiB",
        elapsed.as_secs_f64(),
        requests as f64 / elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
        t(&tally.accepted_202),
        t(&tally.limited_429),
        share_429 * 100.0,
        t(&tally.full_503),
        t(&tally.other),
        rss_before,
        rss_after,
    );
    assert!(
        requests >= 500,
        "the test must actually load the server ({requests} requests)"
    );
    assert!(t(&tally.limited_429) > 0, "a slow stage must produce 429s");
    assert!(t(&tally.accepted_202) > 0);
    assert_eq!(t(&tally.other), 0);
    // Never more than the rate limit (plus the burst) got in.
    assert!(
        events as f64 <= RATE * elapsed.as_secs_f64() + 256.0 + 1.0,
        "{events} events in {elapsed:?} exceeds the rate limit"
    );
    // Every event the clients were told was accepted is in the pipeline, no more.
    let stats = source.stats();
    assert_eq!(stats.published, events);
    assert_eq!(stats.received, requests * EVENTS_PER_REQUEST as u64);
    source.shutdown(Duration::from_secs(10)).unwrap();
    let report = pool.shutdown(Duration::from_secs(30));
    assert_eq!(report.left, 0);
    assert_eq!(processed.load(Ordering::Relaxed), events);
    // Memory: requests, bodies and the bus buffer are bounded; a generous bound.
    let grown_kib = rss_after.saturating_sub(rss_before);
    assert!(grown_kib < 256 * 1024, "VmRSS grew by {grown_kib} KiB");
}
