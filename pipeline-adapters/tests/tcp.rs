//! TCP NDJSON source and sink over real sockets.

mod common;

use common::{any_port, closed_by_server, wait_until};
use pipeline_adapters::json::{LineFormat, OutputFormat};
use pipeline_adapters::sink::{RetryPolicy, SinkPool, Undelivered};
use pipeline_adapters::source::Source;
use pipeline_adapters::tcp::{TcpSink, TcpSinkConfig, TcpSource, TcpSourceConfig};
use pipeline_core::bus::{Bus, SubscriptionConfig};
use pipeline_core::envelope::Envelope;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

#[test]
fn lines_become_events_and_bad_lines_are_skipped_and_counted() {
    let bus = Bus::new();
    let sub = bus.subscribe(SubscriptionConfig::new("in")).unwrap();
    let config = TcpSourceConfig::new().addr(any_port()).max_line_bytes(64);
    let mut source = TcpSource::spawn(config, bus.publisher()).unwrap();
    let mut client = TcpStream::connect(source.local_addr()).unwrap();
    let oversized = format!(
        "{{\"topic\":\"big\",\"payload_text\":\"{}\"}}\n",
        "x".repeat(100_000)
    );
    client
        .write_all(b"{\"topic\":\"a\",\"payload\":1}\r\n")
        .unwrap();
    client.write_all(oversized.as_bytes()).unwrap();
    client
        .write_all(b"not json\n\n{\"topic\":\"b\",\"payload\":2}\n")
        .unwrap();
    client.write_all(b"{\"topic\":\"c\"}").unwrap(); // no newline: ends with the connection
    drop(client);
    let topics: Vec<String> = (0..3)
        .map(|_| {
            sub.recv_timeout(Duration::from_secs(5))
                .unwrap()
                .topic()
                .to_owned()
        })
        .collect();
    assert_eq!(topics, ["a", "b", "c"]);
    wait_until("the connection to end", Duration::from_secs(5), || {
        source.stats().connections == 0
    });
    let stats = source.tcp_stats();
    assert_eq!(
        (
            stats.oversized,
            stats.source.malformed,
            stats.source.published
        ),
        (1, 2, 3)
    );
    assert_eq!(stats.accepted, 1);
    source.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn raw_lines_on_a_topic() {
    let bus = Bus::new();
    let sub = bus.subscribe(SubscriptionConfig::new("in")).unwrap();
    let config = TcpSourceConfig::new()
        .addr(any_port())
        .format(LineFormat::raw("syslog"));
    let mut source = TcpSource::spawn(config, bus.publisher()).unwrap();
    let mut client = TcpStream::connect(source.local_addr()).unwrap();
    client.write_all(b"<13>hello\nworld\n").unwrap();
    let a = sub.recv_timeout(Duration::from_secs(5)).unwrap();
    let b = sub.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(
        (a.topic(), a.payload().as_ref(), b.payload().as_ref()),
        ("syslog", &b"<13>hello"[..], &b"world"[..])
    );
    source.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_silent_client_is_closed_by_the_read_timeout_and_extra_connections_are_refused() {
    let bus = Bus::new();
    let _sub = bus.subscribe(SubscriptionConfig::new("in")).unwrap();
    // The slow connection must still be open when the extra one arrives: the read
    // timeout leaves a loaded machine two seconds for that, not a race of 200 ms.
    let config = TcpSourceConfig::new()
        .addr(any_port())
        .read_timeout(Duration::from_secs(2))
        .max_connections(1);
    let mut source = TcpSource::spawn(config, bus.publisher()).unwrap();
    let mut slow = TcpStream::connect(source.local_addr()).unwrap();
    slow.write_all(b"{\"topic\":").unwrap(); // half a line, then nothing
    wait_until(
        "the slow connection to be served",
        Duration::from_secs(5),
        || source.stats().connections == 1,
    );
    // The limit is 1: a second client is accepted and closed at once. (The clients'
    // own read timeouts only bound a server that never closes.)
    let mut extra = TcpStream::connect(source.local_addr()).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let read = extra.read(&mut [0u8; 1]);
    assert!(closed_by_server(&read), "extra not closed: {read:?}");
    // The slow one is closed by the read timeout.
    slow.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let started = Instant::now();
    let read = slow.read(&mut [0u8; 1]);
    assert!(closed_by_server(&read), "slow not closed: {read:?}");
    eprintln!("the silent client was closed after {:?}", started.elapsed());
    wait_until(
        "the timeout to be counted and the connection gone",
        Duration::from_secs(30),
        || {
            let stats = source.tcp_stats();
            stats.timed_out == 1 && stats.source.connections == 0
        },
    );
    let stats = source.tcp_stats();
    assert_eq!(
        (
            stats.refused,
            stats.source.published,
            stats.source.connections
        ),
        (1, 0, 0)
    );
    source.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_full_bus_slows_the_sender_instead_of_buffering() {
    let bus = Bus::new();
    let sub = bus
        .subscribe(SubscriptionConfig::new("in").capacity(4))
        .unwrap();
    let mut source =
        TcpSource::spawn(TcpSourceConfig::new().addr(any_port()), bus.publisher()).unwrap();
    let mut client = TcpStream::connect(source.local_addr()).unwrap();
    for i in 0..10 {
        client
            .write_all(format!("{{\"topic\":\"t\",\"payload\":{i}}}\n").as_bytes())
            .unwrap();
    }
    wait_until(
        "the source to wait on the full buffer",
        Duration::from_secs(5),
        || source.stats().in_flight == 1,
    );
    let stats = source.stats();
    assert_eq!((stats.published, stats.full), (4, 1));
    // Draining lets everything through, in order.
    let got: Vec<String> = (0..10)
        .map(|_| {
            String::from_utf8(
                sub.recv_timeout(Duration::from_secs(5))
                    .unwrap()
                    .payload()
                    .to_vec(),
            )
            .unwrap()
        })
        .collect();
    assert_eq!(got, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    // Stop while a connection waits on the bus: the event in hand is not published.
    for _ in 0..5 {
        client.write_all(b"{\"topic\":\"t\"}\n").unwrap();
    }
    wait_until("the source to wait again", Duration::from_secs(5), || {
        source.stats().in_flight == 1
    });
    source.shutdown(Duration::from_secs(5)).unwrap();
    assert_eq!(source.stats().not_published, 1);
}

#[test]
fn the_sink_writes_lines_reconnects_and_dead_letters_when_the_server_is_gone() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let (dead_tx, dead) = mpsc::channel::<Undelivered>();
    let dead_tx = Mutex::new(dead_tx);
    let sink = TcpSink::new(
        TcpSinkConfig::new(addr)
            .format(OutputFormat::Payload)
            .retry(
                RetryPolicy::new()
                    .max_attempts(3)
                    .initial_backoff(Duration::from_millis(5))
                    .max_backoff(Duration::from_millis(20)),
            )
            .dead_letter(move |u| dead_tx.lock().unwrap().send(u).unwrap()),
    )
    .unwrap();
    let bus = Bus::new();
    let pool = SinkPool::builder(sink)
        .spawn(bus.subscribe(SubscriptionConfig::new("out")).unwrap())
        .unwrap();
    let publisher = bus.publisher();
    publisher.publish(Envelope::new("t", "one")).unwrap();
    publisher.publish(Envelope::new("t", "two")).unwrap();
    let (connection, _) = server.accept().unwrap();
    connection
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(connection);
    let mut lines = String::new();
    reader.read_line(&mut lines).unwrap();
    reader.read_line(&mut lines).unwrap();
    assert_eq!(lines, "one\ntwo\n");
    // The server closes the connection: the sink notices and reconnects.
    drop(reader);
    publisher.publish(Envelope::new("t", "three")).unwrap();
    let (connection, _) = server.accept().unwrap();
    connection
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut line = String::new();
    BufReader::new(connection).read_line(&mut line).unwrap();
    assert_eq!(line, "three\n");
    // The server goes away for good: retried, then dead-lettered.
    drop(server);
    publisher.publish(Envelope::new("t", "four")).unwrap();
    let undelivered = dead
        .recv_timeout(Duration::from_secs(10))
        .expect("nobody listens: a dead letter");
    assert_eq!(undelivered.events[0].payload().as_ref(), b"four");
    let stats = pool.stats();
    assert_eq!((stats.delivered, stats.undelivered), (3, 1));
    assert!(stats.retries >= 1);
    pool.shutdown(Duration::from_secs(5));
}
