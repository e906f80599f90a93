//! The HTTP emitter against a real server in the test (a std listener that answers
//! from a script): retries, then success; every attempt failing ends in the
//! dead-letter hook.

mod common;

use pipeline_adapters::http::{HttpAttemptError, HttpSink, HttpSinkConfig};
use pipeline_adapters::sink::{RetryPolicy, Sink, SinkPool, Undelivered};
use pipeline_core::bus::{Bus, SubscriptionConfig};
use pipeline_core::envelope::Envelope;
use pipeline_core::pool::WorkerPool;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the test server saw: one entry per request, its body's lines.
type Seen = Arc<Mutex<Vec<Vec<String>>>>;

/// A server answering request `i` with `statuses[i]` (the last one repeats).
fn script_server(statuses: Vec<u16>) -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    std::thread::spawn(move || {
        let mut served = 0usize;
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut reader = BufReader::new(stream);
            // Keep-alive: several requests per connection.
            loop {
                let mut length = None;
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse::<usize>().ok();
                    }
                }
                let mut body = vec![0; length.unwrap_or(0)];
                if reader.read_exact(&mut body).is_err() {
                    break;
                }
                let lines = String::from_utf8(body)
                    .unwrap()
                    .lines()
                    .map(str::to_owned)
                    .collect();
                record.lock().unwrap().push(lines);
                let status = statuses[served.min(statuses.len() - 1)];
                served += 1;
                let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\nok");
                if reader.get_mut().write_all(answer.as_bytes()).is_err() {
                    break;
                }
            }
        }
    });
    (addr, seen)
}

fn fast_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy::new()
        .max_attempts(attempts)
        .initial_backoff(Duration::from_millis(5))
        .max_backoff(Duration::from_millis(20))
}

#[test]
fn a_500_is_retried_then_the_batch_is_delivered() {
    let (addr, seen) = script_server(vec![500, 200]);
    let (dead_tx, dead) = mpsc::channel::<Undelivered>();
    let dead_tx = Mutex::new(dead_tx);
    let sink = HttpSink::new(
        HttpSinkConfig::new(format!("http://{addr}/ingest"))
            .max_batch_events(3)
            .linger(Duration::from_secs(60))
            .retry(fast_retry(3))
            .dead_letter(move |u| dead_tx.lock().unwrap().send(u).unwrap()),
    )
    .unwrap();
    let bus = Bus::new();
    let pool = SinkPool::builder(sink)
        .spawn(bus.subscribe(SubscriptionConfig::new("emit")).unwrap())
        .unwrap();
    for i in 0..3 {
        bus.publisher()
            .publish(Envelope::new("t", format!("{{\"n\":{i}}}")))
            .unwrap();
    }
    // `batches_ok` is counted just before `in_flight` goes back down: wait for both.
    common::wait_until("a delivered batch", Duration::from_secs(30), || {
        let stats = pool.stats();
        stats.batches_ok == 1 && stats.in_flight == 0
    });
    let stats = pool.stats();
    assert_eq!(
        (
            stats.delivered,
            stats.attempts,
            stats.retries,
            stats.attempt_errors
        ),
        (3, 2, 1, 1)
    );
    assert_eq!(stats.in_flight, 0);
    assert_eq!(stats.latency.count, 2, "one latency sample per attempt");
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "the same batch, twice");
    assert_eq!(requests[0], requests[1]);
    assert_eq!(requests[0].len(), 3);
    assert!(
        requests[0][2].starts_with("{\"topic\":\"t\"")
            && requests[0][2].ends_with("\"payload\":{\"n\":2}}")
    );
    assert!(dead.try_recv().is_err(), "nothing dead-lettered");
    let report = pool.shutdown(Duration::from_secs(5));
    assert_eq!(report.drain.left, 0);
}

#[test]
fn every_attempt_failing_sends_the_whole_batch_to_the_dead_letter_hook() {
    let (addr, seen) = script_server(vec![503]);
    let (dead_tx, dead) = mpsc::channel::<Undelivered>();
    let dead_tx = Mutex::new(dead_tx);
    let sink = HttpSink::new(
        HttpSinkConfig::new(format!("http://{addr}/ingest"))
            .max_batch_events(100)
            .linger(Duration::from_millis(20)) // a partial batch: sent by the flush thread
            .retry(fast_retry(4))
            .dead_letter(move |u| dead_tx.lock().unwrap().send(u).unwrap()),
    )
    .unwrap();
    let bus = Bus::new();
    let pool = SinkPool::builder(sink)
        .spawn(bus.subscribe(SubscriptionConfig::new("emit")).unwrap())
        .unwrap();
    for topic in ["a", "b"] {
        bus.publisher().publish(Envelope::new(topic, "1")).unwrap();
    }
    let undelivered = dead
        .recv_timeout(Duration::from_secs(10))
        .expect("a dead letter");
    let topics: Vec<&str> = undelivered.events.iter().map(Envelope::topic).collect();
    assert_eq!(topics, ["a", "b"]);
    assert_eq!(undelivered.attempts, 4);
    let error = undelivered
        .error
        .downcast_ref::<HttpAttemptError>()
        .expect("an HttpAttemptError");
    assert!(
        matches!(
            error,
            HttpAttemptError::Status {
                status: 503,
                retryable: true
            }
        ),
        "{error:?}"
    );
    assert_eq!(seen.lock().unwrap().len(), 4);
    let stats = pool.stats();
    assert_eq!(
        (stats.batches_failed, stats.undelivered, stats.delivered),
        (1, 2, 0)
    );
    assert_eq!(stats.error_ratio(), 1.0);
    pool.shutdown(Duration::from_secs(5));
}

#[test]
fn a_400_is_not_retried_and_a_dead_endpoint_is_retried_then_dead_lettered() {
    let (addr, seen) = script_server(vec![400]);
    let (dead_tx, dead) = mpsc::channel::<Undelivered>();
    let tx = Mutex::new(dead_tx.clone());
    let sink = HttpSink::new(
        HttpSinkConfig::new(format!("http://{addr}/"))
            .max_batch_events(1)
            .retry(fast_retry(5))
            .dead_letter(move |u| tx.lock().unwrap().send(u).unwrap()),
    )
    .unwrap();
    let bus = Bus::new();
    let pool = SinkPool::builder(sink)
        .spawn(bus.subscribe(SubscriptionConfig::new("emit")).unwrap())
        .unwrap();
    bus.publisher().publish(Envelope::new("t", "x")).unwrap();
    let undelivered = dead.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(undelivered.attempts, 1);
    assert_eq!(seen.lock().unwrap().len(), 1);
    pool.shutdown(Duration::from_secs(5));

    // Nobody listening: connection refused, retried, then dead-lettered.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let tx = Mutex::new(dead_tx);
    let sink = HttpSink::new(
        HttpSinkConfig::new(format!("http://{closed}/"))
            .max_batch_events(1)
            .retry(fast_retry(3))
            .dead_letter(move |u| tx.lock().unwrap().send(u).unwrap()),
    )
    .unwrap();
    let bus = Bus::new();
    let pool = SinkPool::builder(sink)
        .spawn(bus.subscribe(SubscriptionConfig::new("emit")).unwrap())
        .unwrap();
    bus.publisher().publish(Envelope::new("t", "x")).unwrap();
    let undelivered = dead.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(undelivered.attempts, 3);
    assert!(matches!(
        undelivered.error.downcast_ref::<HttpAttemptError>(),
        Some(HttpAttemptError::Transport(_))
    ));
    pool.shutdown(Duration::from_secs(5));
}

#[test]
fn the_pool_size_is_the_number_of_requests_in_flight() {
    // A server that holds each request until released, counting them.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (arrived_tx, arrived) = mpsc::channel::<()>();
    let release = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let gate = release.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let arrived_tx = arrived_tx.clone();
            let gate = gate.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let _ = arrived_tx.send(());
                let (lock, cvar) = &*gate;
                let mut open = lock.lock().unwrap();
                while !*open {
                    open = cvar.wait(open).unwrap();
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            });
        }
    });
    let sink =
        HttpSink::new(HttpSinkConfig::new(format!("http://{addr}/")).max_batch_events(1)).unwrap();
    let bus = Bus::new();
    let pool = SinkPool::builder(sink)
        .pool(WorkerPool::builder("emit").workers(1).max_workers(4))
        .spawn(bus.subscribe(SubscriptionConfig::new("emit")).unwrap())
        .unwrap();
    for _ in 0..8 {
        bus.publisher().publish(Envelope::new("t", "x")).unwrap();
    }
    arrived.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        arrived.recv_timeout(Duration::from_millis(200)).is_err(),
        "one worker: one request"
    );
    pool.pool().resize(3).unwrap();
    arrived.recv_timeout(Duration::from_secs(10)).unwrap();
    arrived.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(pool.stats().in_flight, 3);
    assert!(
        arrived.recv_timeout(Duration::from_millis(200)).is_err(),
        "three workers: three requests"
    );
    *release.0.lock().unwrap() = true;
    release.1.notify_all();
    let report = pool.shutdown(Duration::from_secs(10));
    assert_eq!(report.sink.stats().delivered, 8);
}
