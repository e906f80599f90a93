//! `/metrics` on the HTTP source, and the standalone endpoint, with the prometheus
//! feature. One test: the recorder is installed once per process.

mod common;

use pipeline_adapters::http::{HttpSource, HttpSourceConfig};
use pipeline_adapters::prometheus::{MetricsEndpoint, PrometheusExporter};
use pipeline_adapters::source::Source;
use pipeline_core::bus::{Bus, SubscriptionConfig};
use pipeline_core::envelope::Envelope;
use pipeline_core::pool::WorkerPool;
use std::io::{Read, Write};
use std::time::Duration;

#[test]
fn metrics_are_served_by_the_source_and_the_standalone_endpoint() {
    let exporter = PrometheusExporter::install().unwrap();
    assert!(
        PrometheusExporter::install().is_err(),
        "one recorder per process"
    );
    let bus: Bus<Envelope> = Bus::new();
    let pool = WorkerPool::builder("stage")
        .handler(|_e: Envelope| Ok(()))
        .spawn(bus.subscribe(SubscriptionConfig::new("stage")).unwrap())
        .unwrap();
    let mut source = HttpSource::spawn(
        HttpSourceConfig::new()
            .addr(common::any_port())
            .metrics(exporter.handle()),
        bus.publisher(),
    )
    .unwrap();
    let url = format!("http://{}", source.local_addr());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let status = agent
        .post(format!("{url}/events"))
        .header("Content-Type", "application/x-ndjson")
        .send("{\"topic\":\"a\"}\n{\"topic\":\"b\"}\n")
        .unwrap()
        .status();
    assert_eq!(status, 202);
    assert_eq!(
        agent
            .post(format!("{url}/events"))
            .send("{")
            .unwrap()
            .status(),
        400
    );
    common::wait_until("the stage to process both", Duration::from_secs(5), || {
        pool.stats().processed == 2
    });
    bus.snapshot(); // brings the bus counters up to date

    let mut response = agent.get(format!("{url}/metrics")).call().unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.body_mut().read_to_string().unwrap();
    for expected in [
        "pipeline_bus_published_total{pipeline=\"default\"} 2",
        "pipeline_pool_processed_total{pipeline=\"default\",pool=\"stage\"} 2",
        "pipeline_source_published_events_total{source=\"http\"} 2",
        "pipeline_http_source_responses_total{source=\"http\",status=\"202\"} 1",
        "pipeline_http_source_responses_total{source=\"http\",status=\"400\"} 1",
        "pipeline_subscription_buffered_events{pipeline=\"default\",subscription=\"stage\"}",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }

    let endpoint = MetricsEndpoint::spawn(common::any_port(), exporter.handle()).unwrap();
    let mut client = std::net::TcpStream::connect(endpoint.local_addr()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200 OK")
            && answer.contains("pipeline_bus_published_total{pipeline=\"default\"} 2"),
        "{answer}"
    );
    let mut client = std::net::TcpStream::connect(endpoint.local_addr()).unwrap();
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    endpoint.shutdown(Duration::from_secs(5)).unwrap();

    source.shutdown(Duration::from_secs(5)).unwrap();
    assert_eq!(pool.shutdown(Duration::from_secs(5)).left, 0);
}

/// Issue 17: refusals are counted by reason, every reason the source can give is
/// there from the start (at 0), and only undecodable input is malformed.
#[test]
fn refusals_are_counted_by_reason_and_only_malformed_input_as_malformed() {
    // A recorder of this test's own, set while the source registers its metrics.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let bus: Bus<Envelope> = Bus::new();
    let _sub = bus.subscribe(SubscriptionConfig::new("all")).unwrap();
    let mut source = metrics::with_local_recorder(&recorder, || {
        HttpSource::spawn(
            HttpSourceConfig::new()
                .name("in")
                .addr(common::any_port())
                .bearer_token("s3cret"),
            bus.publisher(),
        )
        .unwrap()
    });
    let url = format!("http://{}/events", source.local_addr());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let post = |content_type: &str, token: &str, body: &str| {
        agent
            .post(&url)
            .header("Content-Type", content_type)
            .header("Authorization", format!("Bearer {token}"))
            .send(body)
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(post("application/json", "wrong", r#"{"topic":"t"}"#), 401);
    assert_eq!(post("text/plain", "s3cret", r#"{"topic":"t"}"#), 415);
    assert_eq!(post("application/x-ndjson", "s3cret", ""), 400);
    assert_eq!(post("application/json", "s3cret", "{nope"), 400);
    let text = recorder.handle().render();
    for expected in [
        "pipeline_source_rejected_total{source=\"in\",reason=\"unauthorized\"} 1",
        "pipeline_source_rejected_total{source=\"in\",reason=\"unsupported_media_type\"} 1",
        "pipeline_source_rejected_total{source=\"in\",reason=\"empty\"} 1",
        "pipeline_source_rejected_total{source=\"in\",reason=\"malformed\"} 1",
        "pipeline_source_rejected_total{source=\"in\",reason=\"too_large\"} 0",
        "pipeline_source_rejected_total{source=\"in\",reason=\"timeout\"} 0",
        "pipeline_source_malformed_total{source=\"in\"} 1",
        "# HELP pipeline_source_rejected_total",
        "# HELP pipeline_source_malformed_total",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    source.shutdown(Duration::from_secs(5)).unwrap();
}
