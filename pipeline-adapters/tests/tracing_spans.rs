//! Issue 17: the adapters' logs say which source and which peer they are about. Each
//! TCP connection and each HTTP request runs in a span with `source` and `peer`
//! fields, and what is logged while serving it is inside that span.
//!
//! One test in its own binary: it installs a capturing subscriber for the process.

mod common;

use common::{any_port, wait_until};
use pipeline_adapters::http::{HttpSource, HttpSourceConfig};
use pipeline_adapters::source::Source;
use pipeline_adapters::tcp::{TcpSource, TcpSourceConfig};
use pipeline_core::bus::{Bus, SubscriptionConfig};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

#[derive(Debug, Clone)]
struct SpanRecord {
    name: &'static str,
    fields: HashMap<String, String>,
}

#[derive(Debug, Clone)]
struct EventRecord {
    fields: HashMap<String, String>,
    /// The spans entered on the thread when the event was logged, outermost first.
    spans: Vec<u64>,
}

#[derive(Default)]
struct Capture {
    next: AtomicU64,
    spans: Mutex<HashMap<u64, SpanRecord>>,
    events: Mutex<Vec<EventRecord>>,
}

thread_local! {
    static ENTERED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl Subscriber for &'static Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut fields = HashMap::new();
        span.record(&mut Fields(&mut fields));
        self.spans.lock().unwrap().insert(
            id,
            SpanRecord {
                name: span.metadata().name(),
                fields,
            },
        );
        Id::from_u64(id)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        if let Some(record) = self.spans.lock().unwrap().get_mut(&span.into_u64()) {
            values.record(&mut Fields(&mut record.fields));
        }
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        let spans = ENTERED.with(|entered| entered.borrow().clone());
        self.events
            .lock()
            .unwrap()
            .push(EventRecord { fields, spans });
    }
    fn enter(&self, span: &Id) {
        ENTERED.with(|entered| entered.borrow_mut().push(span.into_u64()));
    }
    fn exit(&self, span: &Id) {
        ENTERED.with(|entered| {
            let mut entered = entered.borrow_mut();
            if let Some(at) = entered.iter().rposition(|&id| id == span.into_u64()) {
                entered.remove(at);
            }
        });
    }
}

impl Capture {
    /// The spans called `name` whose `source` and `peer` fields are these.
    fn spans_named(&self, name: &str, source: &str, peer: &str) -> Vec<u64> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, span)| {
                span.name == name
                    && span.fields.get("source").map(String::as_str) == Some(source)
                    && span.fields.get("peer").map(String::as_str) == Some(peer)
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Whether an event whose message contains `text` was logged inside one of `spans`.
    fn logged_inside(&self, text: &str, spans: &[u64]) -> bool {
        self.events.lock().unwrap().iter().any(|event| {
            event
                .fields
                .get("message")
                .is_some_and(|message| message.contains(text))
                && event.spans.iter().any(|id| spans.contains(id))
        })
    }

    fn dump(&self) -> String {
        format!(
            "spans: {:#?}\nevents: {:#?}",
            self.spans.lock().unwrap(),
            self.events.lock().unwrap()
        )
    }
}

#[test]
fn tcp_connections_and_http_requests_log_inside_spans_naming_the_source_and_the_peer() {
    let capture: &'static Capture = Box::leak(Box::default());
    tracing::subscriber::set_global_default(capture).unwrap();
    let bus = Bus::new();
    let _sub = bus.subscribe(SubscriptionConfig::new("all")).unwrap();

    let mut tcp = TcpSource::spawn(
        TcpSourceConfig::new().name("tcp-in").addr(any_port()),
        bus.publisher(),
    )
    .unwrap();
    let mut client = TcpStream::connect(tcp.local_addr()).unwrap();
    let peer = client.local_addr().unwrap().to_string();
    client.write_all(b"not json\n").unwrap();
    wait_until("the line to be refused", Duration::from_secs(10), || {
        tcp.stats().malformed == 1
    });
    let spans = capture.spans_named("tcp_connection", "tcp-in", &peer);
    assert_eq!(spans.len(), 1, "{}", capture.dump());
    // The line is counted just before it is logged: wait for the log line too.
    let logged = std::time::Instant::now() + Duration::from_secs(10);
    while !capture.logged_inside("malformed", &spans) {
        assert!(
            std::time::Instant::now() < logged,
            "not logged in the span: {}",
            capture.dump()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(client);
    tcp.shutdown(Duration::from_secs(5)).unwrap();

    let mut http = HttpSource::spawn(
        HttpSourceConfig::new().name("http-in").addr(any_port()),
        bus.publisher(),
    )
    .unwrap();
    let mut client = TcpStream::connect(http.local_addr()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let peer = client.local_addr().unwrap().to_string();
    client
        .write_all(b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{nope")
        .unwrap();
    let answer = common::read_response(&mut client);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let spans = capture.spans_named("http_request", "http-in", &peer);
    assert_eq!(spans.len(), 1, "{}", capture.dump());
    assert!(
        capture.logged_inside("malformed", &spans),
        "{}",
        capture.dump()
    );
    http.shutdown(Duration::from_secs(5)).unwrap();
}
