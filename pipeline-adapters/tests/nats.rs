//! NATS JetStream against a real `nats-server -js` on a free loopback port with a
//! temporary store. Without `nats-server` on PATH each test prints a loud SKIP (a
//! failure when `PIPELINE_REQUIRE_NATS=1`).

mod common;

use common::{NatsServer, nats_available, wait_until};
use pipeline_adapters::nats::{
    DELIVERED_HEADER, FailurePolicy, NatsAcker, NatsSink, NatsSinkConfig, NatsSource,
    NatsSourceConfig, SEQUENCE_HEADER,
};
use pipeline_adapters::sink::{RetryPolicy, Sink, SinkPool};
use pipeline_adapters::source::Source;
use pipeline_core::bus::{Bus, SubscriptionConfig};
use pipeline_core::envelope::Envelope;
use pipeline_core::pool::{HandlerError, WorkerPool};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const STREAM: &str = "EVENTS";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// (num_ack_pending, num_pending) of the durable consumer, from the server.
fn consumer_state(url: &str, durable: &str) -> (usize, u64) {
    runtime().block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
            .get_stream(STREAM)
            .await
            .unwrap()
            .get_consumer(durable)
            .await
            .unwrap();
        let info = consumer.info().await.unwrap();
        (info.num_ack_pending, info.num_pending)
    })
}

fn stream_messages(url: &str) -> u64 {
    runtime().block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.get_stream(STREAM)
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .messages
    })
}

/// Publishes `n` events (payload = their number) through a NatsSink, creating the
/// stream; returns when all are acked by the server.
fn fill_stream(url: &str, n: u64) {
    let sink = NatsSink::connect(
        NatsSinkConfig::new(url)
            .create_stream(STREAM, vec!["events.>".into()])
            .subject_prefix("events."),
    )
    .unwrap();
    let bus = Bus::new();
    let pool = SinkPool::builder(sink)
        .pool(WorkerPool::builder("fill").workers(2))
        .spawn(bus.subscribe(SubscriptionConfig::new("fill")).unwrap())
        .unwrap();
    for i in 0..n {
        bus.publisher()
            .publish(Envelope::new("orders", i.to_string()))
            .unwrap();
    }
    let report = pool.shutdown(Duration::from_secs(30));
    assert_eq!(report.sink.stats().delivered, n);
}

fn seq_of(event: &Envelope) -> u64 {
    event.header(SEQUENCE_HEADER).unwrap().parse().unwrap()
}

fn source_config(url: &str, durable: &str) -> NatsSourceConfig {
    NatsSourceConfig::new(url, STREAM, durable).topic_prefix("events.")
}

/// A bus, a source on it, and a pool whose handler goes through the acker.
struct Consumer {
    source: NatsSource,
    pool: WorkerPool<Envelope>,
    acker: NatsAcker,
}

fn consumer<H>(
    config: NatsSourceConfig,
    capacity: usize,
    workers: usize,
    make_handler: impl FnOnce(NatsAcker) -> H,
) -> Consumer
where
    H: Fn(Envelope) -> Result<(), HandlerError> + Send + Sync + 'static,
{
    let bus = Bus::new();
    let sub = bus
        .subscribe(SubscriptionConfig::new("stage").capacity(capacity))
        .unwrap();
    let source = NatsSource::spawn(config, bus.publisher()).unwrap();
    let acker = source.acker();
    let pool = WorkerPool::builder("stage")
        .workers(workers)
        .handler(make_handler(acker.clone()))
        .spawn(sub)
        .unwrap();
    Consumer {
        source,
        pool,
        acker,
    }
}

#[test]
fn at_least_once_across_a_crash_mid_batch() {
    if !nats_available("at_least_once_across_a_crash_mid_batch") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path());
    let url = server.url();
    const N: u64 = 100;
    const ACKED_BEFORE_CRASH: u64 = 30;
    fill_stream(&url, N);

    // Acks per stream sequence, across both consumers; what each one saw.
    let acks: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
    let seen_first: Arc<Mutex<Vec<u64>>> = Arc::default();
    let config = source_config(&url, "workers")
        .ack_wait(Duration::from_secs(1))
        .max_batch(10)
        .max_in_flight(20);

    // The first instance acks 30 events, then "crashes" before acking the rest of
    // what it holds: it stops acking, and is dropped without any nak.
    let (acks1, seen1) = (acks.clone(), seen_first.clone());
    let first = consumer(config.clone(), 64, 1, |acker| {
        move |event: Envelope| {
            let seq = seq_of(&event);
            let mut seen = seen1.lock().unwrap();
            seen.push(seq);
            if seen.len() as u64 <= ACKED_BEFORE_CRASH {
                acker.ack(&event).map_err(HandlerError::new)?;
                *acks1.lock().unwrap().entry(seq).or_default() += 1;
            }
            Ok(())
        }
    });
    wait_until(
        "the first instance to hold unacked events",
        Duration::from_secs(10),
        || seen_first.lock().unwrap().len() as u64 > ACKED_BEFORE_CRASH + 5,
    );
    let Consumer {
        source,
        pool,
        acker,
    } = first;
    drop(source); // like a crash: no nak; the server redelivers after ack_wait
    drop(pool);
    drop(acker);
    let (ack_pending, _) = consumer_state(&url, "workers");
    assert!(
        ack_pending > 0,
        "the crashed instance left messages unacked"
    );

    // A second instance with the same durable name finishes the work.
    let redelivered = Arc::new(AtomicU64::new(0));
    let (acks2, again) = (acks.clone(), redelivered.clone());
    let mut second = consumer(config, 64, 2, |acker| {
        move |event: Envelope| {
            if event.header(DELIVERED_HEADER) != Some("1") {
                again.fetch_add(1, Ordering::Relaxed);
            }
            let seq = seq_of(&event);
            acker.ack(&event).map_err(HandlerError::new)?;
            *acks2.lock().unwrap().entry(seq).or_default() += 1;
            Ok(())
        }
    });
    wait_until("every message to be acked", Duration::from_secs(30), || {
        acks.lock().unwrap().len() as u64 == N
    });
    wait_until(
        "the server to count no pending acks",
        Duration::from_secs(10),
        || consumer_state(&url, "workers") == (0, 0),
    );
    let acks = acks.lock().unwrap();
    assert!(
        acks.values().all(|&n| n == 1),
        "every message acked exactly once: {acks:?}"
    );
    assert_eq!(acks.keys().copied().min(), Some(1));
    assert_eq!(acks.keys().copied().max(), Some(N));
    assert!(
        redelivered.load(Ordering::Relaxed) > 0,
        "what the first held came back"
    );
    second.source.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!(second.pool.shutdown(Duration::from_secs(10)).left, 0);
    assert_eq!(second.acker.pending(), 0);
}

#[test]
fn two_instances_share_one_durable_consumer() {
    if !nats_available("two_instances_share_one_durable_consumer") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path());
    let url = server.url();
    const N: u64 = 300;
    fill_stream(&url, N);
    let handled: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
    let config = source_config(&url, "group").max_batch(10).max_in_flight(20);
    // Until both instances have received a message, each gives back (naks) what it
    // gets: the first to start cannot take the whole stream before the second has
    // connected, however slowly the machine starts it. (Holding on to its messages
    // instead would stall both: max_in_flight is also the consumer's max_ack_pending.)
    let started: Arc<[AtomicBool; 2]> = Arc::default();
    let instance = |index: usize, handled: Arc<Mutex<HashMap<u64, u32>>>| {
        let count = Arc::new(AtomicU64::new(0));
        let mine = count.clone();
        let started = started.clone();
        let work = move |event: Envelope| {
            started[index].store(true, Ordering::SeqCst);
            if !started.iter().all(|s| s.load(Ordering::SeqCst)) {
                std::thread::sleep(Duration::from_millis(5));
                return Err(HandlerError::new("the other instance has no message yet"));
            }
            std::thread::sleep(Duration::from_millis(1));
            *handled.lock().unwrap().entry(seq_of(&event)).or_default() += 1;
            mine.fetch_add(1, Ordering::Relaxed);
            Ok(())
        };
        let c = consumer(config.clone(), 32, 1, |acker| {
            acker.handler(work, FailurePolicy::Nak)
        });
        (c, count)
    };
    let (mut a, count_a) = instance(0, handled.clone());
    let (mut b, count_b) = instance(1, handled.clone());
    wait_until(
        "all messages handled and acked",
        Duration::from_secs(30),
        || a.source.nats_stats().acked + b.source.nats_stats().acked == N,
    );
    wait_until(
        "the server to count no pending",
        Duration::from_secs(10),
        || consumer_state(&url, "group") == (0, 0),
    );
    let handled = handled.lock().unwrap();
    assert_eq!(handled.len() as u64, N);
    assert!(
        handled.values().all(|&n| n == 1),
        "each message handled once across both"
    );
    let (na, nb) = (
        count_a.load(Ordering::Relaxed),
        count_b.load(Ordering::Relaxed),
    );
    eprintln!("two instances: {na} + {nb} = {}", na + nb);
    assert_eq!(na + nb, N);
    assert!(na > 0 && nb > 0, "both instances took part ({na}, {nb})");
    for c in [&mut a, &mut b] {
        c.source.shutdown(Duration::from_secs(10)).unwrap();
    }
}

#[test]
fn back_pressure_shrinks_the_fetch_and_messages_wait_in_the_stream() {
    if !nats_available("back_pressure_shrinks_the_fetch_and_messages_wait_in_the_stream") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path());
    let url = server.url();
    const N: u64 = 200;
    fill_stream(&url, N);
    // A slow stage behind a buffer of 4: the bus says Full most of the time. The stage
    // also stops at its 100th event until the test has looked: then at most 99 are
    // acked and at most 64 more delivered, so at least 37 of the 200 are still in the
    // stream however fast or slow the machine is.
    const HOLD_AT: u64 = 100;
    let config = source_config(&url, "slow").max_batch(32).max_in_flight(64);
    let gate = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicU64::new(0));
    let slow = {
        let (gate, seen) = (gate.clone(), seen.clone());
        move |_e: Envelope| {
            if seen.fetch_add(1, Ordering::SeqCst) + 1 >= HOLD_AT {
                let give_up = Instant::now() + Duration::from_secs(60);
                while !gate.load(Ordering::SeqCst) && Instant::now() < give_up {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            std::thread::sleep(Duration::from_millis(3));
            Ok(())
        }
    };
    let mut c = consumer(config, 4, 1, |acker| {
        acker.handler(slow, FailurePolicy::Nak)
    });
    wait_until(
        "the source to meet back pressure",
        Duration::from_secs(30),
        || c.source.nats_stats().pressured_fetches >= 2,
    );
    let during = c.source.nats_stats();
    let (_, waiting_in_stream) = consumer_state(&url, "slow");
    assert!(
        waiting_in_stream > 0,
        "messages wait in the stream, not in memory"
    );
    assert!(during.source.in_flight <= 64);
    gate.store(true, Ordering::SeqCst);
    wait_until("everything acked", Duration::from_secs(30), || {
        c.source.nats_stats().acked == N
    });
    let stats = c.source.nats_stats();
    eprintln!(
        "back pressure: {} fetches, min fetch {} (max 32), {} pressured, {} Full",
        stats.fetches, stats.min_fetch_size, stats.pressured_fetches, stats.source.full
    );
    assert!(stats.min_fetch_size < 32, "the fetch shrank: {stats:?}");
    assert!(stats.source.full > 0);
    assert_eq!((stats.nacked, stats.expired, stats.ack_errors), (0, 0, 0));
    c.source.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!(consumer_state(&url, "slow"), (0, 0));
}

/// Issue 14, adapters: the source used to retry a full subscription in a 1-50 ms
/// back-off loop, counting a refusal at every try. It now waits with
/// `publish_async`, woken when the stage takes an event: one refusal per message
/// however long it waits, and a stop during the wait naks that message.
#[test]
fn the_source_waits_for_room_with_a_wake_up_and_a_stop_naks_the_waiting_message() {
    if !nats_available(
        "the_source_waits_for_room_with_a_wake_up_and_a_stop_naks_the_waiting_message",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path());
    let url = server.url();
    fill_stream(&url, 5);
    let bus = Bus::new();
    // No worker: the test is the stage, one event of room at a time.
    let stage = bus
        .subscribe(SubscriptionConfig::new("stage").capacity(1))
        .unwrap();
    let mut source =
        NatsSource::spawn(source_config(&url, "waiting").max_batch(4), bus.publisher()).unwrap();
    let acker = source.acker();
    wait_until(
        "the second message to wait for room",
        Duration::from_secs(30),
        || source.nats_stats().source.full == 1,
    );
    // Long enough for the old loop to have retried (and counted) several times over.
    std::thread::sleep(Duration::from_millis(200));
    let stats = source.nats_stats();
    assert_eq!(
        (stats.source.published, stats.source.full),
        (1, 1),
        "one refusal, no retries"
    );
    // Taking the first event makes room: the waiting publish is woken and completes,
    // and the third message waits in turn.
    let first = stage.recv().unwrap();
    assert_eq!(seq_of(&first), 1);
    acker.ack(&first).unwrap();
    wait_until("the third message to wait", Duration::from_secs(30), || {
        let stats = source.nats_stats();
        stats.source.published == 2 && stats.source.full == 2
    });
    let second = stage.recv().unwrap();
    assert_eq!(seq_of(&second), 2);
    acker.ack(&second).unwrap();
    // (The third is now in the buffer and the fourth waits.)
    wait_until(
        "the fourth message to wait",
        Duration::from_secs(30),
        || source.nats_stats().source.full == 3,
    );
    source.shutdown(Duration::from_secs(10)).unwrap();
    let stats = source.nats_stats();
    assert_eq!(stats.source.published, 3);
    assert_eq!(stats.nacked, 1, "the waiting message is nacked at stop");
    assert_eq!(stats.source.not_published, 1);
    assert_eq!(stats.acked, 2);
    let third = stage.try_recv().unwrap();
    assert_eq!(seq_of(&third), 3);
    assert!(
        stage.try_recv().is_err(),
        "the nacked message never reached the bus"
    );
}

#[test]
fn the_sink_retries_through_a_server_restart_and_loses_nothing() {
    if !nats_available("the_sink_retries_through_a_server_restart_and_loses_nothing") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut server = NatsServer::start(dir.path());
    let url = server.url();
    let dead = Arc::new(AtomicU64::new(0));
    let counted = dead.clone();
    let sink = NatsSink::connect(
        NatsSinkConfig::new(&url)
            .create_stream(STREAM, vec!["events.>".into()])
            .subject_prefix("events.")
            .max_batch(16)
            .ack_timeout(Duration::from_millis(500))
            .retry(
                RetryPolicy::new()
                    .max_attempts(30)
                    .initial_backoff(Duration::from_millis(50))
                    .max_backoff(Duration::from_millis(500)),
            )
            .dead_letter(move |u| {
                counted.fetch_add(u.events.len() as u64, Ordering::Relaxed);
            }),
    )
    .unwrap();
    let bus = Bus::new();
    let pool = SinkPool::builder(sink)
        .pool(WorkerPool::builder("out").workers(2))
        .spawn(
            bus.subscribe(SubscriptionConfig::new("out").capacity(100_000))
                .unwrap(),
        )
        .unwrap();
    let publisher = bus.publisher();
    let publish = |range: std::ops::Range<u64>| {
        for i in range {
            publisher
                .publish(Envelope::new("orders", i.to_string()))
                .unwrap();
            std::thread::sleep(Duration::from_micros(500));
        }
    };
    publish(0..200);
    wait_until(
        "the first 200 to be stored",
        Duration::from_secs(10),
        || pool.stats().delivered == 200,
    );
    server.stop();
    publish(200..400); // the server is down: these are retried
    wait_until(
        "publishes to fail while the server is down",
        Duration::from_secs(10),
        || pool.stats().attempt_errors > 0,
    );
    server.start_again(); // same port, same store
    publish(400..600);
    let report = pool.shutdown(Duration::from_secs(60));
    let stats = report.sink.stats();
    eprintln!(
        "server restart: delivered {}, attempts {}, errors {}, retries {}, undelivered {}",
        stats.delivered, stats.attempts, stats.attempt_errors, stats.retries, stats.undelivered
    );
    assert_eq!(report.drain.left, 0);
    assert_eq!(dead.load(Ordering::Relaxed), 0, "nothing dead-lettered");
    assert!(stats.retries > 0, "the outage was retried through");
    assert_eq!(stats.delivered, 600);
    assert_eq!(
        stream_messages(&url),
        600,
        "nothing lost, nothing duplicated"
    );
}

/// Issue 17: a server outage was survived without loss or duplication, but nothing
/// was logged and no metric moved. Each client now reports its connection state and
/// counts the loss and the reconnection (and logs both at warn).
#[test]
fn a_server_outage_is_counted_as_a_disconnect_and_a_reconnect() {
    if !nats_available("a_server_outage_is_counted_as_a_disconnect_and_a_reconnect") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut server = NatsServer::start(dir.path());
    let url = server.url();
    // A recorder of this test's own (on this thread, while the adapters register
    // their metrics), to read the metrics back.
    #[cfg(feature = "prometheus")]
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let connect = || {
        let sink = NatsSink::connect(
            NatsSinkConfig::new(&url)
                .name("out")
                .create_stream(STREAM, vec!["events.>".into()])
                .subject_prefix("events."),
        )
        .unwrap();
        let bus = Bus::new();
        let source =
            NatsSource::spawn(source_config(&url, "outage").name("in"), bus.publisher()).unwrap();
        (sink, source, bus)
    };
    #[cfg(feature = "prometheus")]
    let (sink, mut source, _bus) = metrics::with_local_recorder(&recorder, connect);
    #[cfg(not(feature = "prometheus"))]
    let (sink, mut source, _bus) = connect();
    let states = || {
        let (sink, source) = (sink.connection_stats(), source.nats_stats().connection);
        (
            (sink.connected, sink.disconnects, sink.reconnects),
            (source.connected, source.disconnects, source.reconnects),
        )
    };
    wait_until("both to be connected", Duration::from_secs(10), || {
        states() == ((true, 0, 0), (true, 0, 0))
    });
    server.stop();
    wait_until(
        "both to see the server gone",
        Duration::from_secs(30),
        || states() == ((false, 1, 0), (false, 1, 0)),
    );
    server.start_again(); // same port, same store
    wait_until("both to reconnect", Duration::from_secs(60), || {
        states() == ((true, 1, 1), (true, 1, 1))
    });
    #[cfg(feature = "prometheus")]
    {
        let text = recorder.handle().render();
        for expected in [
            "pipeline_nats_sink_connected{sink=\"out\"} 1",
            "pipeline_nats_sink_disconnects_total{sink=\"out\"} 1",
            "pipeline_nats_sink_reconnects_total{sink=\"out\"} 1",
            "pipeline_nats_source_connected{source=\"in\"} 1",
            "pipeline_nats_source_disconnects_total{source=\"in\"} 1",
            "pipeline_nats_source_reconnects_total{source=\"in\"} 1",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }
    source.shutdown(Duration::from_secs(10)).unwrap();
}

#[test]
fn connecting_to_nothing_fails_clearly() {
    let port = common::free_port();
    let error = NatsSink::connect(
        NatsSinkConfig::new(format!("nats://127.0.0.1:{port}"))
            .connect_timeout(Duration::from_secs(2)),
    )
    .unwrap_err();
    assert!(error.to_string().contains("could not connect"), "{error}");
    let bus = Bus::new();
    let error = NatsSource::spawn(
        NatsSourceConfig::new(format!("nats://127.0.0.1:{port}"), STREAM, "x")
            .connect_timeout(Duration::from_secs(2)),
        bus.publisher(),
    )
    .unwrap_err();
    assert!(error.to_string().contains("could not connect"), "{error}");
    let invalid = NatsSource::spawn(
        NatsSourceConfig::new("nats://x", STREAM, "x").max_batch(0),
        bus.publisher(),
    )
    .unwrap_err();
    assert!(invalid.to_string().contains("max_batch"), "{invalid}");
}
