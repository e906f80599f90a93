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
use std::time::Duration;

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
    // The oversized line is refused as too large, not as malformed.
    let stats = source.tcp_stats();
    assert_eq!(
        (
            stats.oversized,
            stats.source.malformed,
            stats.source.rejected,
            stats.source.published
        ),
        (1, 1, 2, 3)
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
fn a_silent_client_is_closed_by_the_idle_timeout() {
    let bus = Bus::new();
    let _sub = bus.subscribe(SubscriptionConfig::new("in")).unwrap();
    let config = TcpSourceConfig::new()
        .addr(any_port())
        .idle_timeout(Duration::from_millis(300));
    let mut source = TcpSource::spawn(config, bus.publisher()).unwrap();
    let mut silent = TcpStream::connect(source.local_addr()).unwrap();
    // Closed by the server (the client's own read timeout only bounds a server that
    // never closes it).
    silent
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let read = silent.read(&mut [0u8; 1]);
    assert!(closed_by_server(&read), "not closed: {read:?}");
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
        (stats.line_timed_out, stats.refused, stats.source.published),
        (0, 0, 0)
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

/// Issue 17: a client sending one byte at a time held its slot for ever, because the
/// read timeout restarted on every read. A whole line now has a deadline.
#[test]
fn a_trickling_client_is_closed_by_the_line_deadline() {
    let bus = Bus::new();
    let _sub = bus.subscribe(SubscriptionConfig::new("in")).unwrap();
    // The idle timeout is long: only the line's deadline can close the client.
    let config = TcpSourceConfig::new()
        .addr(any_port())
        .idle_timeout(Duration::from_secs(600))
        .line_timeout(Duration::from_millis(300));
    let mut source = TcpSource::spawn(config, bus.publisher()).unwrap();
    let mut client = TcpStream::connect(source.local_addr()).unwrap();
    // One byte of a line that never ends, then a pause (the client's read timeout),
    // over and over: far more bytes than the deadline lets through. The count of
    // rounds only bounds a server that never closes.
    client
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut closed = false;
    for _ in 0..400 {
        if client.write_all(b"x").is_err() {
            closed = true;
            break;
        }
        let read = client.read(&mut [0u8; 1]);
        if closed_by_server(&read) {
            closed = true;
            break;
        }
    }
    assert!(closed, "the trickling client was never closed");
    wait_until("the connection to be gone", Duration::from_secs(30), || {
        source.stats().connections == 0
    });
    let stats = source.tcp_stats();
    assert_eq!(
        (
            stats.line_timed_out,
            stats.timed_out,
            stats.source.published
        ),
        (1, 0, 0)
    );
    source.shutdown(Duration::from_secs(5)).unwrap();
}

/// Issue 17: with every slot taken, a real sender was accepted and closed at once, and
/// its line was lost without a word (the protocol is one-way). It now waits in the
/// listen backlog until a slot frees, and its line is published.
#[test]
fn a_sender_arriving_when_every_slot_is_taken_waits_and_is_served() {
    let bus = Bus::new();
    let sub = bus.subscribe(SubscriptionConfig::new("in")).unwrap();
    let config = TcpSourceConfig::new()
        .addr(any_port())
        .idle_timeout(Duration::from_millis(300))
        .max_connections(1);
    let mut source = TcpSource::spawn(config, bus.publisher()).unwrap();
    let _holder = TcpStream::connect(source.local_addr()).unwrap();
    wait_until("the holder to be served", Duration::from_secs(10), || {
        source.stats().connections == 1
    });
    let mut sender = TcpStream::connect(source.local_addr()).unwrap();
    sender
        .write_all(b"{\"topic\":\"late\",\"payload\":1}\n")
        .unwrap();
    drop(sender);
    let event = sub
        .recv_timeout(Duration::from_secs(30))
        .expect("the late sender's line is published");
    assert_eq!(event.topic(), "late");
    // Nothing refused; the full house was counted (again after the sender took the
    // slot, if the loop looked before it left); the holder timed out.
    wait_until("the publish to be counted", Duration::from_secs(10), || {
        source.stats().published == 1
    });
    let stats = source.tcp_stats();
    assert_eq!(
        (stats.refused, stats.timed_out, stats.source.published),
        (0, 1, 1)
    );
    assert!(stats.limit_reached >= 1, "{stats:?}");
    source.shutdown(Duration::from_secs(5)).unwrap();
}

/// Issue 17: one peer could take every slot. A connection beyond its cap is refused
/// and counted, while another peer is served.
#[test]
fn one_peer_cannot_take_every_slot() {
    let bus = Bus::new();
    let sub = bus.subscribe(SubscriptionConfig::new("in")).unwrap();
    let config = TcpSourceConfig::new()
        .addr(any_port())
        .max_connections(4)
        .max_connections_per_peer(1);
    let mut source = TcpSource::spawn(config, bus.publisher()).unwrap();
    let addr = source.local_addr();
    let _first = TcpStream::connect(addr).unwrap();
    wait_until("the first to be served", Duration::from_secs(10), || {
        source.stats().connections == 1
    });
    let mut second = TcpStream::connect(addr).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let _ = second.write_all(b"{\"topic\":\"same-peer\"}\n");
    let read = second.read(&mut [0u8; 1]);
    assert!(closed_by_server(&read), "not refused: {read:?}");
    let mut other = common::connect_from("127.0.0.2".parse().unwrap(), addr).unwrap();
    other.write_all(b"{\"topic\":\"other-peer\"}\n").unwrap();
    let event = sub.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(event.topic(), "other-peer");
    assert!(
        sub.try_recv().is_err(),
        "the refused line was not published"
    );
    wait_until("the publish to be counted", Duration::from_secs(10), || {
        source.stats().published == 1
    });
    let stats = source.tcp_stats();
    assert_eq!((stats.refused, stats.source.published), (1, 1));
    source.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn by_default_a_peer_gets_a_quarter_of_the_slots() {
    let bus = Bus::new();
    let _sub = bus.subscribe(SubscriptionConfig::new("in")).unwrap();
    let config = TcpSourceConfig::new().addr(any_port()).max_connections(8);
    let mut source = TcpSource::spawn(config, bus.publisher()).unwrap();
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(source.local_addr()).unwrap())
        .collect();
    wait_until("two to be served", Duration::from_secs(10), || {
        source.stats().connections == 2
    });
    let mut third = TcpStream::connect(source.local_addr()).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let read = third.read(&mut [0u8; 1]);
    assert!(closed_by_server(&read), "not refused: {read:?}");
    assert_eq!(source.tcp_stats().refused, 1);
    drop(held);
    source.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn settings_that_break_a_rule_are_named() {
    let bus = Bus::new();
    for (config, field) in [
        (
            TcpSourceConfig::new().idle_timeout(Duration::ZERO),
            "idle_timeout",
        ),
        (
            TcpSourceConfig::new().line_timeout(Duration::ZERO),
            "line_timeout",
        ),
        (
            TcpSourceConfig::new().max_connections_per_peer(0),
            "max_connections_per_peer",
        ),
    ] {
        let error = TcpSource::spawn(config.addr(any_port()), bus.publisher()).unwrap_err();
        assert!(error.to_string().contains(field), "{error}");
    }
}
