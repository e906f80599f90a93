//! The HTTP source against a real client (ureq) over 127.0.0.1: every documented status.

mod common;

use common::{any_port, closed_by_server, wait_until};
use pipeline_adapters::http::{HttpSource, HttpSourceConfig};
use pipeline_adapters::source::Source;
use pipeline_core::bus::{Bus, SubscriptionConfig};
use pipeline_core::clock::ManualClock;
use pipeline_core::envelope::Envelope;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

struct Served {
    bus: Bus<Envelope>,
    source: HttpSource,
    url: String,
}

fn serve(config: HttpSourceConfig) -> Served {
    let bus = Bus::new();
    let source = HttpSource::spawn(config.addr(any_port()), bus.publisher()).unwrap();
    let url = format!("http://{}", source.local_addr());
    Served { bus, source, url }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent()
}

/// POSTs and returns (status, Retry-After, JSON body).
fn post(
    url: &str,
    content_type: &str,
    body: &[u8],
    token: Option<&str>,
) -> (u16, Option<String>, Value) {
    let mut request = agent()
        .post(format!("{url}/events"))
        .header("Content-Type", content_type);
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let mut response = request.send(body).unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.body_mut().read_to_string().unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (response.status().as_u16(), retry_after, json)
}

#[test]
fn accepts_a_single_object_an_array_and_ndjson() {
    let s = serve(HttpSourceConfig::new());
    let sub = s.bus.subscribe(SubscriptionConfig::new("all")).unwrap();
    let (status, _, body) = post(
        &s.url,
        "application/json",
        br#"{"topic":"one","key":"k","headers":{"h":"v"},"payload":{"n":1}}"#,
        None,
    );
    assert_eq!((status, &body), (202, &serde_json::json!({"accepted": 1})));
    let (status, _, body) = post(
        &s.url,
        "application/json",
        br#"[{"topic":"a"},{"topic":"b","payload_text":"x"}]"#,
        None,
    );
    assert_eq!((status, body["accepted"].as_u64()), (202, Some(2)));
    let (status, _, body) = post(
        &s.url,
        "application/x-ndjson",
        b"{\"topic\":\"c\",\"payload\":[1]}\n\n{\"topic\":\"d\"}\n",
        None,
    );
    assert_eq!((status, body["accepted"].as_u64()), (202, Some(2)));

    let got: Vec<Envelope> = sub.try_iter().collect();
    let topics: Vec<&str> = got.iter().map(Envelope::topic).collect();
    assert_eq!(topics, ["one", "a", "b", "c", "d"]);
    assert_eq!((got[0].key(), got[0].header("h")), (Some("k"), Some("v")));
    assert_eq!(got[0].payload().as_ref(), br#"{"n":1}"#);
    assert_eq!(got[2].payload().as_ref(), b"x");
    let stats = s.source.http_stats();
    assert_eq!(
        (
            stats.accepted,
            stats.source.published,
            stats.source.received
        ),
        (3, 5, 5)
    );
}

#[test]
fn malformed_input_is_400_naming_the_line_and_publishes_nothing() {
    let s = serve(HttpSourceConfig::new());
    let sub = s.bus.subscribe(SubscriptionConfig::new("all")).unwrap();
    let ndjson = b"{\"topic\":\"a\"}\n{\"topic\":\"b\"}\n{\"topic\": nope}\n{\"topic\":\"d\"}\n";
    let (status, _, body) = post(&s.url, "application/x-ndjson", ndjson, None);
    assert_eq!(status, 400);
    assert_eq!(body["line"], 3, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("expected"),
        "{body}"
    );

    let json = b"[\n  {\"topic\": \"a\"},\n  {\"topic\": \"b\",,}\n]";
    let (status, _, body) = post(&s.url, "application/json", json, None);
    assert_eq!((status, body["line"].as_u64()), (400, Some(3)), "{body}");

    let (status, _, body) = post(&s.url, "application/json", br#"{"payload":1}"#, None);
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("topic"), "{body}");
    let (status, _, _) = post(&s.url, "application/json", b"", None);
    assert_eq!(status, 400);
    let (status, _, _) = post(&s.url, "text/plain", b"{}", None);
    assert_eq!(status, 415);

    assert_eq!(sub.len(), 0, "a 400 publishes nothing");
    // The empty body and the 415 are refused, not malformed.
    let stats = s.source.http_stats();
    assert_eq!(
        (
            stats.bad_request,
            stats.unsupported,
            stats.source.malformed,
            stats.source.rejected
        ),
        (4, 1, 3, 5)
    );
    // Still serving.
    assert_eq!(
        post(&s.url, "application/json", br#"{"topic":"ok"}"#, None).0,
        202
    );
}

#[test]
fn bodies_over_the_limit_are_413_and_the_limit_itself_passes() {
    let s = serve(HttpSourceConfig::new().max_body_bytes(1024));
    let _sub = s.bus.subscribe(SubscriptionConfig::new("all")).unwrap();
    let fits = format!(
        "{{\"topic\":\"t\",\"payload_text\":\"{}\"}}",
        "x".repeat(1024 - 31)
    );
    assert_eq!(fits.len(), 1024);
    assert_eq!(
        post(&s.url, "application/json", fits.as_bytes(), None).0,
        202
    );
    let over = format!(
        "{{\"topic\":\"t\",\"payload_text\":\"{}\"}}",
        "x".repeat(1024 - 30)
    );
    let (status, _, body) = post(&s.url, "application/json", over.as_bytes(), None);
    assert_eq!(status, 413, "{body}");

    // The default limit is 1 MiB.
    let big = serve(HttpSourceConfig::new());
    let _sub = big.bus.subscribe(SubscriptionConfig::new("all")).unwrap();
    let body = vec![b' '; 1024 * 1024 + 1];
    assert_eq!(post(&big.url, "application/json", &body, None).0, 413);

    // A chunked body (no Content-Length) is cut off as it streams.
    let mut stream = TcpStream::connect(s.source.local_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    // The server may answer and close while the body is still being written: the
    // client's later writes then fail (broken pipe) and the reset that follows may
    // discard the answer before it is read. What does reach the client must be the
    // 413, and the server must count the body as too large either way.
    let sent = (|| -> std::io::Result<()> {
        for _ in 0..3 {
            stream.write_all(b"200\r\n")?;
            stream.write_all(&[b' '; 0x200])?;
            stream.write_all(b"\r\n")?;
        }
        stream.write_all(b"0\r\n\r\n")
    })();
    let mut answer = String::new();
    let read = stream.read_to_string(&mut answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 413"),
        "{answer}"
    );
    if sent.is_ok() && read.is_ok() {
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    }
    wait_until(
        "the chunked body counted as too large",
        Duration::from_secs(30),
        || s.source.http_stats().too_large == 2,
    );
}

#[test]
fn a_wrong_or_missing_token_is_401() {
    let s = serve(HttpSourceConfig::new().bearer_token("s3cret"));
    let sub = s.bus.subscribe(SubscriptionConfig::new("all")).unwrap();
    let event = br#"{"topic":"t"}"#;
    assert_eq!(post(&s.url, "application/json", event, None).0, 401);
    assert_eq!(
        post(&s.url, "application/json", event, Some("s3cre")).0,
        401
    );
    assert_eq!(
        post(&s.url, "application/json", event, Some("s3cretX")).0,
        401
    );
    assert_eq!(
        post(&s.url, "application/json", event, Some("s3cret")).0,
        202
    );
    assert_eq!(sub.len(), 1);
    assert_eq!(s.source.http_stats().unauthorized, 3);
    // Health stays open.
    assert_eq!(
        agent()
            .get(format!("{}/healthz", s.url))
            .call()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn the_rate_limit_is_429_with_retry_after_and_an_exact_partial_count() {
    // A manual clock: no token comes back while the request is served, however slow
    // the machine, and the wait the limiter reports is exact.
    let bus = Bus::builder()
        .clock(ManualClock::new())
        .publish_burst(8)
        .build()
        .unwrap();
    let source =
        HttpSource::spawn(HttpSourceConfig::new().addr(any_port()), bus.publisher()).unwrap();
    let url = format!("http://{}", source.local_addr());
    let s = Served { bus, source, url };
    let sub = s.bus.subscribe(SubscriptionConfig::new("all")).unwrap();
    s.bus.set_publish_rate(Some(0.5)).unwrap(); // one token per 2 s, burst 8
    let batch: String = (0..10)
        .map(|i| format!("{{\"topic\":\"t\",\"payload\":{i}}}\n"))
        .collect();
    let (status, retry_after, body) = post(&s.url, "application/x-ndjson", batch.as_bytes(), None);
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["accepted"], 8);
    assert_eq!(body["rejected_from"], 8);
    assert_eq!(body["total"], 10);
    // The ninth token is exactly 2 s away.
    assert_eq!(retry_after.as_deref(), Some("2"));
    // Exactly the first 8 are in, in order.
    let payloads: Vec<String> = sub
        .try_iter()
        .map(|e| String::from_utf8(e.payload().to_vec()).unwrap())
        .collect();
    assert_eq!(payloads, (0..8).map(|i| i.to_string()).collect::<Vec<_>>());
    let stats = s.source.http_stats();
    assert_eq!(
        (
            stats.rate_limited,
            stats.source.backoff,
            stats.source.not_published
        ),
        (1, 1, 2)
    );
}

#[test]
fn a_full_block_subscription_is_503_with_retry_after() {
    let s = serve(HttpSourceConfig::new().full_retry_after(Duration::from_millis(1500)));
    let sub = s
        .bus
        .subscribe(SubscriptionConfig::new("small").capacity(2))
        .unwrap();
    let batch = b"{\"topic\":\"a\"}\n{\"topic\":\"b\"}\n{\"topic\":\"c\"}\n";
    let (status, retry_after, body) = post(&s.url, "application/x-ndjson", batch, None);
    assert_eq!(status, 503);
    assert_eq!(retry_after.as_deref(), Some("2")); // 1.5 s rounded up
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected_from"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(sub.len(), 2);
    // Once there is room, the client's retry from `rejected_from` completes the batch.
    sub.recv().unwrap();
    sub.recv().unwrap();
    let (status, _, _) = post(&s.url, "application/x-ndjson", b"{\"topic\":\"c\"}\n", None);
    assert_eq!(status, 202);
    assert_eq!(s.source.http_stats().source.full, 1);
}

#[test]
fn healthz_and_stop() {
    let mut s = serve(HttpSourceConfig::new());
    let mut response = agent().get(format!("{}/healthz", s.url)).call().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.body_mut().read_to_string().unwrap(),
        r#"{"status":"ok"}"#
    );
    assert_eq!(
        agent()
            .get(format!("{}/nowhere", s.url))
            .call()
            .unwrap()
            .status(),
        404
    );
    // Without the prometheus feature (or a handle) /metrics is 404.
    assert_eq!(
        agent()
            .get(format!("{}/metrics", s.url))
            .call()
            .unwrap()
            .status(),
        404
    );
    let addr = s.source.local_addr();
    s.source.shutdown(Duration::from_secs(10)).unwrap();
    assert!(
        TcpStream::connect(addr).is_err(),
        "the listener is closed after join"
    );
}

/// The header timeout of the tests below. The client writes its request right after
/// connecting; this leaves a loaded machine a whole second between the two calls.
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);

#[test]
fn a_slow_body_is_408_and_a_silent_client_is_disconnected() {
    let s = serve(
        HttpSourceConfig::new()
            .body_read_timeout(Duration::from_millis(300))
            .header_read_timeout(HEADER_TIMEOUT),
    );
    let _sub = s.bus.subscribe(SubscriptionConfig::new("all")).unwrap();
    // Headers promise 100 bytes; 10 arrive, then nothing.
    let mut slow = TcpStream::connect(s.source.local_addr()).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"topic\":")
        .unwrap();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // Half a request line, then silence: the header timeout closes the connection.
    // (The client's own read timeout only bounds a server that never closes it.)
    let mut silent = TcpStream::connect(s.source.local_addr()).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    silent.write_all(b"POST /eve").unwrap();
    let mut rest = Vec::new();
    let read = silent.read_to_end(&mut rest).map(|_| 0);
    assert!(
        closed_by_server(&read),
        "not closed by the server: {read:?}"
    );
    assert!(!String::from_utf8_lossy(&rest).contains("202"));
    wait_until("both connections to close", Duration::from_secs(30), || {
        s.source.stats().connections == 0
    });
    assert_eq!(s.source.http_stats().timed_out, 1);
    // And the server still serves.
    assert_eq!(
        post(&s.url, "application/json", br#"{"topic":"t"}"#, None).0,
        202
    );
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let s = serve(HttpSourceConfig::new().header_read_timeout(HEADER_TIMEOUT));
    let mut stream = TcpStream::connect(s.source.local_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Then nothing: the server closes the connection (read returns 0 or a reset)
    // before the client's own read timeout, which only bounds a server that never does.
    let started = std::time::Instant::now();
    let read = stream.read(&mut buf);
    assert!(
        closed_by_server(&read),
        "not closed by the server after {:?}: {read:?}",
        started.elapsed()
    );
    eprintln!("closed after {:?}", started.elapsed());
    wait_until("the connection to be gone", Duration::from_secs(30), || {
        s.source.stats().connections == 0
    });
}

/// Issue 17: 300 idle connections made a real request wait 9 s. One client now gets a
/// quarter of the connections (by default); beyond that its connections are answered
/// `503` and closed at once, and another client is served while the idle ones stay.
#[test]
fn one_client_cannot_take_every_connection() {
    let s = serve(
        HttpSourceConfig::new()
            .max_connections(4)
            .header_read_timeout(Duration::from_secs(120)),
    );
    let sub = s.bus.subscribe(SubscriptionConfig::new("all")).unwrap();
    let addr = s.source.local_addr();
    let mut idle: Vec<TcpStream> = Vec::new();
    for _ in 0..4 {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        idle.push(stream);
    }
    // The first holds its slot; the other three are over the per-client cap.
    let answers: Vec<String> = idle[1..].iter_mut().map(common::read_response).collect();
    for answer in &answers {
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    }
    let mut other = common::connect_from("127.0.0.2".parse().unwrap(), addr).unwrap();
    other
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    other
        .write_all(b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"topic\":\"t\"}")
        .unwrap();
    let answer = common::read_response(&mut other);
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert_eq!(sub.len(), 1);
    let stats = s.source.http_stats();
    assert_eq!(
        (stats.connections_refused, stats.connections_accepted),
        (3, 2)
    );
    // The idle one still holds its slot: the server answered without waiting for it.
    idle[0].set_nonblocking(true).unwrap();
    let read = idle[0].read(&mut [0u8; 1]);
    assert!(
        matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "{read:?}"
    );
}

/// Issue 17: `Expect: 100-continue` with a `Content-Length` over the limit got
/// `100 Continue` (and then the client sent the body for nothing). It gets `413` at once.
#[test]
fn expect_continue_over_the_limit_is_413_at_once() {
    let s = serve(HttpSourceConfig::new().max_body_bytes(1024));
    let mut stream = TcpStream::connect(s.source.local_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let answer = common::read_response(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(s.source.http_stats().too_large, 1);
    // Within the limit, the client is told to go on.
    let mut stream = TcpStream::connect(s.source.local_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 13\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let answer = common::read_response(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 100"), "{answer}");
}

/// Issue 17: an empty NDJSON body got `202 {"accepted":0}` while an empty JSON body
/// got `400`. A body without events is `400` in every format.
#[test]
fn a_body_without_events_is_400_in_every_format() {
    let s = serve(HttpSourceConfig::new());
    let _sub = s.bus.subscribe(SubscriptionConfig::new("all")).unwrap();
    for (content_type, body) in [
        ("application/json", &b""[..]),
        ("application/json", b"  \n"),
        ("application/json", b"[]"),
        ("application/x-ndjson", b""),
        ("application/x-ndjson", b"\n\n"),
    ] {
        let (status, _, answer) = post(&s.url, content_type, body, None);
        assert_eq!(status, 400, "{content_type} {body:?}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains("no events"),
            "{answer}"
        );
    }
    let stats = s.source.http_stats();
    assert_eq!((stats.bad_request, stats.accepted), (5, 0));
}

/// Issue 17: `pipeline_source_malformed_total` also counted 401, 408, 413 and 415
/// answers. Only input that does not decode is malformed.
#[test]
fn only_undecodable_input_counts_as_malformed() {
    let s = serve(
        HttpSourceConfig::new()
            .bearer_token("s3cret")
            .max_body_bytes(64)
            .body_read_timeout(Duration::from_millis(200)),
    );
    let _sub = s.bus.subscribe(SubscriptionConfig::new("all")).unwrap();
    let event = br#"{"topic":"t"}"#;
    assert_eq!(post(&s.url, "application/json", event, None).0, 401);
    assert_eq!(post(&s.url, "text/plain", event, Some("s3cret")).0, 415);
    assert_eq!(
        post(&s.url, "application/json", &[b' '; 100], Some("s3cret")).0,
        413
    );
    let mut slow = TcpStream::connect(s.source.local_addr()).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    slow.write_all(b"POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nContent-Length: 50\r\n\r\n{")
        .unwrap();
    let answer = common::read_response(&mut slow);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(s.source.stats().malformed, 0, "none of those was malformed");
    assert_eq!(
        post(&s.url, "application/json", b"{nope", Some("s3cret")).0,
        400
    );
    let stats = s.source.http_stats();
    assert_eq!((stats.source.malformed, stats.source.rejected), (1, 5));
    assert_eq!(
        (
            stats.unauthorized,
            stats.unsupported,
            stats.too_large,
            stats.timed_out,
            stats.bad_request
        ),
        (1, 1, 1, 1, 1)
    );
}

#[test]
fn a_zero_per_client_cap_is_refused_by_name() {
    let bus = Bus::new();
    let error = HttpSource::spawn(
        HttpSourceConfig::new()
            .addr(any_port())
            .max_connections_per_peer(0),
        bus.publisher(),
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("max_connections_per_peer"),
        "{error}"
    );
}
