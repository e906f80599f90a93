//! Load: 32 client threads against the HTTP source over loopback, with a slow stage
//! (a publish-rate limit far below the offered load). 429s with `Retry-After` must
//! appear, every event must be accounted for, and the process's memory must stay
//! bounded.
//!
//! Nothing here depends on the machine's speed: the bus runs on a manual clock, so
//! the rate limiter admits exactly its burst while the clock stands still, and exactly
//! `rate x advance` more after the test moves it. The clients send a fixed number of
//! requests (no deadline), and every assertion is on counts. Prints the throughput and
//! the 429 share for information only.

mod common;

use pipeline_adapters::http::{HttpSource, HttpSourceConfig};
use pipeline_adapters::source::Source;
use pipeline_core::bus::{Bus, SubscriptionConfig};
use pipeline_core::clock::ManualClock;
use pipeline_core::envelope::Envelope;
use pipeline_core::pool::WorkerPool;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const CLIENTS: usize = 32;
const REQUESTS_PER_CLIENT: usize = 20;
const EVENTS_PER_REQUEST: usize = 10;
/// The slow stage: what the bus admits per second of (manual) clock time.
const RATE: f64 = 100.0;
/// The limiter's bucket: what it admits at once.
const BURST: u32 = 256;
/// How far the test moves the clock between the two rounds: `RATE x ADVANCE` tokens.
const ADVANCE: Duration = Duration::from_secs(1);
const REFILL: u64 = 100;

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    accepted_202: AtomicU64,
    limited_429: AtomicU64,
    full_503: AtomicU64,
    other: AtomicU64,
    events_accepted: AtomicU64,
    /// 429s whose body or `Retry-After` was not what the refusal must say.
    bad_429: AtomicU64,
}

impl Tally {
    fn get(&self, counter: impl Fn(&Tally) -> &AtomicU64) -> u64 {
        counter(self).load(Ordering::Relaxed)
    }
}

/// `CLIENTS` threads, each POSTing `REQUESTS_PER_CLIENT` NDJSON bodies of
/// `EVENTS_PER_REQUEST` events, all at once; returns what they were told.
fn round(url: &str, body: &Arc<String>) -> Tally {
    let tally = Arc::new(Tally::default());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (url, body, tally) = (url.to_owned(), body.clone(), tally.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    // Only a bound for a hung server, not a performance requirement.
                    .timeout_global(Some(Duration::from_secs(60)))
                    .build()
                    .new_agent();
                for _ in 0..REQUESTS_PER_CLIENT {
                    let mut response = agent
                        .post(&url)
                        .header("Content-Type", "application/x-ndjson")
                        .send(body.as_str())
                        .expect("the server answers every request");
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let text = response.body_mut().read_to_string().unwrap();
                    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
                    let accepted = json["accepted"].as_u64().unwrap();
                    tally.requests.fetch_add(1, Ordering::Relaxed);
                    tally.events_accepted.fetch_add(accepted, Ordering::Relaxed);
                    let counter = match status {
                        202 => &tally.accepted_202,
                        429 => {
                            // The clock stands still during a round: the next token is
                            // exactly one interval (10 ms) away, rounded up to 1 s.
                            let well_formed = retry_after.as_deref() == Some("1")
                                && json["rejected_from"].as_u64() == Some(accepted)
                                && json["total"].as_u64() == Some(EVENTS_PER_REQUEST as u64);
                            if !well_formed {
                                eprintln!("unexpected 429: Retry-After {retry_after:?}, {json}");
                                tally.bad_429.fetch_add(1, Ordering::Relaxed);
                            }
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
    Arc::into_inner(tally).expect("the clients are gone")
}

fn check_round(name: &str, tally: &Tally, expected_events: u64, elapsed: Duration) {
    let requests = tally.get(|t| &t.requests);
    let events = tally.get(|t| &t.events_accepted);
    let limited = tally.get(|t| &t.limited_429);
    eprintln!(
        "http load, {name}: {CLIENTS} clients, {requests} requests in {:.2} s = {:.0} requests/s; \
         {events} events accepted (limit: burst {BURST}, {RATE}/s of manual clock); \
         202: {}, 429: {limited} ({:.1}%), 503: {}, other: {}",
        elapsed.as_secs_f64(),
        requests as f64 / elapsed.as_secs_f64(),
        tally.get(|t| &t.accepted_202),
        100.0 * limited as f64 / requests as f64,
        tally.get(|t| &t.full_503),
        tally.get(|t| &t.other),
    );
    assert_eq!(
        requests,
        (CLIENTS * REQUESTS_PER_CLIENT) as u64,
        "{name}: every request was answered"
    );
    // The limiter admits exactly what its tokens allow; the rest are 429s.
    assert_eq!(events, expected_events, "{name}: events let in");
    assert!(limited > 0, "{name}: a slow stage must produce 429s");
    assert_eq!(
        tally.get(|t| &t.bad_429),
        0,
        "{name}: every 429 has Retry-After: 1 and an exact partial count"
    );
    // A request gets a 202 only with all its events in.
    assert!(
        tally.get(|t| &t.accepted_202) <= expected_events / EVENTS_PER_REQUEST as u64,
        "{name}: more 202s than the tokens allow"
    );
    assert_eq!(
        tally.get(|t| &t.accepted_202) + limited,
        requests,
        "{name}: only 202s and 429s (the buffer never fills)"
    );
}

#[test]
fn many_clients_under_a_slow_stage_get_429s_and_memory_stays_bounded() {
    let rss_before = common::vm_rss_kib();
    let clock = ManualClock::new();
    let bus: Bus<Envelope> = Bus::builder()
        .clock(clock.clone())
        .publish_burst(BURST)
        .build()
        .unwrap();
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
            .worker_threads(2)
            // Refuse at once, as before `publish_wait` existed: a request that waited
            // for a token would sleep on the bus's manual clock, which advances it (a
            // manual clock's sleeps move it), so the waiters would mint their own
            // tokens and the counts below would depend on how many waited at once.
            // With no wait the clock stands still and the counts stay exact.
            .publish_wait(Duration::ZERO),
        bus.publisher(),
    )
    .unwrap();
    let url = format!("http://{}/events", source.local_addr());
    let body: String = (0..EVENTS_PER_REQUEST)
        .map(|i| format!("{{\"topic\":\"load\",\"key\":\"k{i}\",\"payload\":{{\"i\":{i},\"pad\":\"{}\"}}}}\n", "x".repeat(100)))
        .collect();
    let body = Arc::new(body);

    // Round 1, the clock standing still: exactly the burst gets in, whatever the
    // interleaving of the clients.
    let started = Instant::now();
    let first = round(&url, &body);
    check_round("round 1", &first, u64::from(BURST), started.elapsed());

    // Round 2, after one second of clock time: exactly RATE x 1 s more.
    assert_eq!(
        (RATE * ADVANCE.as_secs_f64()) as u64,
        REFILL,
        "constants agree"
    );
    clock.advance(ADVANCE);
    let started = Instant::now();
    let second = round(&url, &body);
    check_round("round 2", &second, REFILL, started.elapsed());
    let rss_after = common::vm_rss_kib();

    // Every event the clients were told was accepted is in the pipeline, no more.
    let events = first.get(|t| &t.events_accepted) + second.get(|t| &t.events_accepted);
    let requests = first.get(|t| &t.requests) + second.get(|t| &t.requests);
    let stats = source.stats();
    assert_eq!(stats.published, events);
    assert_eq!(stats.received, requests * EVENTS_PER_REQUEST as u64);
    assert_eq!(
        stats.not_published,
        stats.received - events,
        "the rest was refused, not lost"
    );
    source.shutdown(Duration::from_secs(30)).unwrap();
    let report = pool.shutdown(Duration::from_secs(30));
    assert_eq!(report.left, 0);
    assert_eq!(processed.load(Ordering::Relaxed), events);
    // Memory: requests, bodies and the bus buffer are bounded; a generous bound.
    let grown_kib = rss_after.saturating_sub(rss_before);
    eprintln!("VmRSS {rss_before} -> {rss_after} KiB");
    assert!(grown_kib < 256 * 1024, "VmRSS grew by {grown_kib} KiB");
}
