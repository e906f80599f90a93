//! The control plane over loopback (feature `http`): every endpoint against a running
//! pipeline served by itself (`PipelineBuilder::control_plane`) on 127.0.0.1, with a
//! small blocking HTTP/1.1 client. Each wait is bounded; nothing asserts on speed.
#![cfg(feature = "http")]

use pipeline_controller::config::{PipelineConfig, RangeConfig, StageConfig};
use pipeline_controller::control::Entry;
use pipeline_controller::control_plane::ControlPlaneConfig;
use pipeline_controller::core::bus::SubscriptionConfig;
use pipeline_controller::limits::{CpuLimit, LimitSource, Limits, MemoryLimit};
use pipeline_controller::policy::MemoryObservation;
use pipeline_controller::{Pipeline, Stage};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const GIB: u64 = 1 << 30;
#[path = "common/http_client.rs"]
mod http_client;
use http_client::{get, request, send};

const WAIT: Duration = Duration::from_secs(20);

fn limits() -> Limits {
    Limits {
        memory: MemoryLimit {
            bytes: Some(GIB),
            source: LimitSource::EnvOverride,
        },
        cpu: CpuLimit {
            cores: Some(4.0),
            source: LimitSource::EnvOverride,
        },
    }
}

/// A running pipeline of one stage `work`, ticking every 20 ms, whose memory reading
/// is `memory` (bytes of a 1 GiB limit): above 0.9 GiB the controller goes defensive,
/// a decision made at once whatever the machine's speed.
fn pipeline(plane: ControlPlaneConfig, memory: Arc<AtomicU64>) -> Pipeline<u64> {
    let mut config = PipelineConfig::default();
    config.controller.interval = Duration::from_millis(20);
    config.stages.insert(
        "work".into(),
        StageConfig {
            buffer: RangeConfig {
                initial: 128,
                min: 64,
                max: 4096,
            },
            workers: RangeConfig {
                initial: 1,
                min: 1,
                max: 4,
            },
            ..StageConfig::default()
        },
    );
    let pipeline = Pipeline::<u64>::builder()
        .stage(Stage::new(SubscriptionConfig::new("work")).handler(|_| Ok(())))
        .limits(limits())
        .memory_probe(move |_now: Instant| MemoryObservation {
            used_bytes: memory.load(Ordering::Relaxed),
            limit_bytes: Some(GIB),
            psi_some_avg10: None,
        })
        .config(config)
        .control_plane(plane)
        .build()
        .unwrap();
    pipeline.start().unwrap();
    pipeline
}

fn calm() -> Arc<AtomicU64> {
    Arc::new(AtomicU64::new(GIB / 10))
}

fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn status_has_every_contract_field() {
    let pipeline = pipeline(ControlPlaneConfig::new(), calm());
    let addr = pipeline.control_plane_addr().unwrap();
    assert!(addr.ip().is_loopback(), "binds loopback by default");
    until("a tick", || {
        pipeline.handle().controller_state().ticks() > 0
    });
    let reply = get(addr, "/api/status");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let status = reply.json();
    assert_eq!(status["mode"], "normal");
    assert_eq!(status["controller_enabled"], true);
    assert!(status.get("publish_rate_limit").is_some());
    assert_eq!(status["memory"]["used_bytes"], GIB / 10);
    assert_eq!(status["memory"]["limit_bytes"], GIB);
    let stage = &status["stages"][0];
    assert_eq!(stage["name"], "work");
    for field in [
        "workers",
        "min_workers",
        "max_workers",
        "capacity",
        "min_capacity",
        "max_capacity",
        "len",
        "processed",
        "failed",
        "utilisation",
    ] {
        assert!(stage[field].is_number(), "{field} in {stage}");
    }
    assert_eq!(stage["workers"], 1);
    assert_eq!(stage["capacity"], 128);
    // The configured ranges, not the pool's and buffer's hard ones.
    assert_eq!(
        (stage["min_workers"].as_u64(), stage["max_workers"].as_u64()),
        (Some(1), Some(4))
    );
    assert_eq!(
        (
            stage["min_capacity"].as_u64(),
            stage["max_capacity"].as_u64()
        ),
        (Some(64), Some(4096))
    );
    // Errors are JSON with a message.
    let missing = get(addr, "/api/nothing");
    assert_eq!(missing.status, 404);
    assert!(missing.json()["message"].is_string());
    let wrong = request(addr, "DELETE", "/api/status", &[], None);
    assert_eq!(wrong.status, 405);
    assert!(wrong.json()["message"].is_string());
    // No CORS unless configured.
    let cross = request(
        addr,
        "GET",
        "/api/status",
        &[("Origin", "https://elsewhere.example")],
        None,
    );
    assert!(
        !cross
            .head
            .to_ascii_lowercase()
            .contains("access-control-allow-origin")
    );
    pipeline.shutdown(Duration::from_secs(5));
}

#[test]
fn decisions_carry_sequence_numbers_and_since_filters_them() {
    let memory = calm();
    let pipeline = pipeline(ControlPlaneConfig::new(), memory.clone());
    let addr = pipeline.control_plane_addr().unwrap();
    memory.store(GIB * 97 / 100, Ordering::Relaxed);
    until("the mode change", || {
        pipeline
            .decisions()
            .iter()
            .any(|r| matches!(r.entry, Entry::Mode(_)))
    });
    let all = get(addr, "/api/decisions").json();
    let list = all["decisions"].as_array().unwrap();
    assert!(!list.is_empty());
    assert_eq!(list[0]["seq"], 1);
    assert!(
        list.iter()
            .any(|d| d["kind"] == "mode" && d["to"] == "defensive"),
        "{all}"
    );
    let last = all["last_seq"].as_u64().unwrap();
    let newer = get(addr, &format!("/api/decisions?since={last}")).json();
    assert!(
        newer["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["seq"].as_u64().unwrap() > last)
    );
    assert_eq!(get(addr, "/api/decisions?since=x").status, 400);
    pipeline.shutdown(Duration::from_secs(5));
}

/// Reads the event stream until it has seen every text in `wanted`, bounded; calls
/// `on_open` once the first event has arrived (the stream is then subscribed).
fn read_events(addr: SocketAddr, path: &str, wanted: &[&str], on_open: impl FnOnce()) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let deadline = Instant::now() + WAIT;
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let mut on_open = Some(on_open);
    while !wanted.iter().all(|w| seen.contains(w)) {
        assert!(Instant::now() < deadline, "events missing from: {seen}");
        match stream.read(&mut buf) {
            Ok(0) => panic!("stream ended: {seen}"),
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(_) => {} // a read timeout: look again
        }
        if seen.contains("event: ")
            && let Some(open) = on_open.take()
        {
            open();
        }
    }
    seen
}

#[test]
fn the_event_stream_sends_status_and_decision_events() {
    let memory = calm();
    let pipeline = pipeline(ControlPlaneConfig::new(), memory.clone());
    let addr = pipeline.control_plane_addr().unwrap();
    // Live: once the stream is open, memory goes critical and the controller decides
    // (a mode change) while it listens.
    let seen = read_events(
        addr,
        "/api/events",
        &["event: status\n", "event: decision\n", "\"kind\":\"mode\""],
        || memory.store(GIB * 97 / 100, Ordering::Relaxed),
    );
    assert!(seen.contains("text/event-stream"), "{seen}");
    assert!(seen.contains("\"controller_enabled\":true"), "{seen}");
    assert!(seen.contains("\"kind\":\"mode\""), "{seen}");
    // Replayed: `since=0` sends the decisions already made.
    let replay = read_events(
        addr,
        "/api/events?since=0",
        &["event: decision\n", "event: status\n", "id: 1\n"],
        || {},
    );
    assert!(replay.contains("id: 1\n"), "{replay}");
    pipeline.shutdown(Duration::from_secs(5));
}

#[test]
fn config_get_patch_validates_every_path_and_refuses_critical_ones() {
    let pipeline = pipeline(ControlPlaneConfig::new(), calm());
    let addr = pipeline.control_plane_addr().unwrap();
    let before = get(addr, "/api/config").json();
    assert_eq!(before["version"], 0);
    assert_eq!(before["config"]["stages"]["work"]["workers"]["max"], 4);

    // Valid: two paths applied together, one new version.
    let ok = send(
        addr,
        "PATCH",
        "/api/config",
        r#"{"stages.work.workers.max": 3, "policy.cooldown": "5s"}"#,
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    let ok = ok.json();
    assert_eq!(ok["version"], 1);
    let paths: Vec<&str> = ok["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["policy.cooldown", "stages.work.workers.max"]);
    let after = get(addr, "/api/config").json();
    assert_eq!(after["version"], 1);
    assert_eq!(after["config"]["stages"]["work"]["workers"]["max"], 3);
    assert_eq!(
        pipeline.config().unwrap().current().policy.cooldown,
        Duration::from_secs(5)
    );

    // Invalid: every bad path named, nothing applied.
    let bad = send(
        addr,
        "PATCH",
        "/api/config",
        r#"{"policy.nope": 1, "policy.memory_critical": "high", "policy.cooldown": "1s"}"#,
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    let errors = bad.json()["errors"].clone();
    let named: Vec<&str> = errors
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(named, ["policy.memory_critical", "policy.nope"], "{errors}");
    assert!(errors[0]["message"].is_string());
    // A rule broken: the model's path is named.
    let rule = send(
        addr,
        "PATCH",
        "/api/config",
        r#"{"stages.work.workers.min": 9}"#,
    );
    assert_eq!(rule.status, 400, "{}", rule.body);
    assert!(rule.body.contains("stages.work.workers"), "{}", rule.body);
    assert_eq!(get(addr, "/api/config").json()["version"], 1);

    // Critical: 409, named.
    let critical = send(
        addr,
        "PATCH",
        "/api/config",
        r#"{"stages.work.droppable": true}"#,
    );
    assert_eq!(critical.status, 409, "{}", critical.body);
    assert_eq!(critical.json()["critical"][0], "stages.work.droppable");
    assert!(critical.json()["message"].is_string());

    // Not an object, empty.
    assert_eq!(send(addr, "PATCH", "/api/config", "[1]").status, 400);
    assert_eq!(send(addr, "PATCH", "/api/config", "{}").status, 400);
    pipeline.shutdown(Duration::from_secs(5));
}

#[test]
fn rollback_restores_an_earlier_version_as_a_change_of_its_own() {
    let pipeline = pipeline(ControlPlaneConfig::new(), calm());
    let addr = pipeline.control_plane_addr().unwrap();
    assert_eq!(
        send(addr, "PATCH", "/api/config", r#"{"policy.cooldown": "5s"}"#).status,
        200
    );
    assert_eq!(
        send(addr, "PATCH", "/api/config", r#"{"policy.cooldown": "7s"}"#).status,
        200
    );
    let history = get(addr, "/api/config/history").json();
    assert_eq!(history["versions"], serde_json::json!([0, 1, 2]));
    assert_eq!(history["changes"][0]["new"], "7s");

    let back = send(addr, "POST", "/api/config/rollback", r#"{"version": 1}"#);
    assert_eq!(back.status, 200, "{}", back.body);
    let back = back.json();
    assert_eq!(
        (back["version"].as_u64(), back["restored"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(
        pipeline.config().unwrap().current().policy.cooldown,
        Duration::from_secs(5)
    );
    let history = get(addr, "/api/config/history").json();
    assert_eq!(history["changes"][0]["path"], "policy.cooldown");
    assert_eq!(
        (
            history["changes"][0]["old"].as_str(),
            history["changes"][0]["new"].as_str()
        ),
        (Some("7s"), Some("5s"))
    );
    assert_eq!(history["versions"], serde_json::json!([0, 1, 2, 3]));

    let unknown = send(addr, "POST", "/api/config/rollback", r#"{"version": 99}"#);
    assert_eq!(unknown.status, 404);
    assert!(unknown.json()["message"].as_str().unwrap().contains("99"));
    pipeline.shutdown(Duration::from_secs(5));
}

#[test]
fn the_switch_stops_decisions_and_turning_it_back_on_resumes_them() {
    let memory = calm();
    let pipeline = pipeline(ControlPlaneConfig::new(), memory.clone());
    let addr = pipeline.control_plane_addr().unwrap();
    let off = send(addr, "POST", "/api/controller", r#"{"enabled": false}"#);
    assert_eq!(off.status, 200, "{}", off.body);
    assert_eq!(off.json()["enabled"], false);
    assert!(!pipeline.controller_enabled());
    assert_eq!(get(addr, "/api/status").json()["controller_enabled"], false);

    // Off, memory goes critical: ticks go on, no decision is made, no knob moves.
    // A tick already running when the switch flipped may still finish deciding: wait
    // for one that started after it.
    let state = pipeline.handle().controller_state().clone();
    let ticks = state.ticks();
    until("a tick after the switch", || state.ticks() >= ticks + 2);
    let ticks = state.ticks();
    let decisions = pipeline.decision_log().total();
    let capacity = get(addr, "/api/status").json()["stages"][0]["capacity"].clone();
    memory.store(GIB * 97 / 100, Ordering::Relaxed);
    until("five ticks while off", || state.ticks() >= ticks + 5);
    assert_eq!(pipeline.decision_log().total(), decisions);
    let status = get(addr, "/api/status").json();
    assert_eq!(status["mode"], "normal");
    assert_eq!(status["stages"][0]["capacity"], capacity);
    assert_eq!(status["publish_rate_limit"], Value::Null);

    // On again: the critical memory is acted on.
    let on = send(addr, "POST", "/api/controller", r#"{"enabled": true}"#);
    assert_eq!(on.json()["enabled"], true);
    until("a decision once on", || {
        pipeline.decision_log().total() > decisions
    });
    assert_eq!(get(addr, "/api/controller").json()["enabled"], true);
    pipeline.shutdown(Duration::from_secs(5));
}

#[test]
fn the_token_protects_every_endpoint() {
    let pipeline = pipeline(ControlPlaneConfig::new().token("s3cret"), calm());
    let addr = pipeline.control_plane_addr().unwrap();
    for (method, path, body) in [
        ("GET", "/api/status", None),
        ("GET", "/api/decisions", None),
        ("GET", "/api/events", None),
        ("GET", "/api/config", None),
        ("GET", "/api/config/history", None),
        ("PATCH", "/api/config", Some(r#"{"policy.cooldown": "5s"}"#)),
        ("POST", "/api/config/rollback", Some(r#"{"version": 0}"#)),
        ("POST", "/api/controller", Some(r#"{"enabled": false}"#)),
    ] {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("s3cret"),
            Some("Bearer s3cre"),
        ] {
            let headers: Vec<(&str, &str)> =
                auth.map(|a| ("Authorization", a)).into_iter().collect();
            let reply = request(addr, method, path, &headers, body);
            assert_eq!(reply.status, 401, "{method} {path} with {auth:?}");
            assert!(reply.json()["message"].is_string());
            assert!(
                reply.head.contains("www-authenticate: Bearer")
                    || reply.head.contains("WWW-Authenticate: Bearer")
            );
        }
    }
    assert_eq!(pipeline.config().unwrap().version(), 0, "nothing changed");
    assert!(pipeline.controller_enabled());
    let ok = request(
        addr,
        "GET",
        "/api/status",
        &[("Authorization", "Bearer s3cret")],
        None,
    );
    assert_eq!(ok.status, 200);
    let ok = request(
        addr,
        "POST",
        "/api/controller",
        &[("Authorization", "Bearer s3cret")],
        Some(r#"{"enabled": false}"#),
    );
    assert_eq!(ok.status, 200);
    assert!(!pipeline.controller_enabled());
    pipeline.shutdown(Duration::from_secs(5));
}

#[test]
fn public_reads_leave_gets_open_and_writes_closed() {
    let pipeline = pipeline(
        ControlPlaneConfig::new().token("s3cret").public_reads(true),
        calm(),
    );
    let addr = pipeline.control_plane_addr().unwrap();
    assert_eq!(get(addr, "/api/status").status, 200);
    assert_eq!(
        send(addr, "POST", "/api/controller", r#"{"enabled": false}"#).status,
        401
    );
    assert!(pipeline.controller_enabled());
    pipeline.shutdown(Duration::from_secs(5));
}

#[test]
fn oversized_and_malformed_bodies_get_json_errors() {
    let pipeline = pipeline(ControlPlaneConfig::new().body_limit(1024), calm());
    let addr = pipeline.control_plane_addr().unwrap();
    let huge = format!(r#"{{"policy.cooldown": "{}"}}"#, "x".repeat(4096));
    let reply = send(addr, "PATCH", "/api/config", &huge);
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert!(reply.json()["message"].is_string());

    for (path, body, status) in [
        ("/api/config", "{not json", 400),
        ("/api/controller", r#"{"enabled": "yes"}"#, 422),
        ("/api/controller", r#"{"enabled": true, "extra": 1}"#, 422),
        ("/api/config/rollback", r#"{}"#, 422),
    ] {
        let method = if path == "/api/config" {
            "PATCH"
        } else {
            "POST"
        };
        let reply = send(addr, method, path, body);
        assert_eq!(reply.status, status, "{path} {body}: {}", reply.body);
        assert!(reply.json()["message"].is_string(), "{}", reply.body);
    }
    let plain = request(
        addr,
        "POST",
        "/api/controller",
        &[("Content-Type", "text/plain")],
        Some(r#"{"enabled": false}"#),
    );
    assert_eq!(plain.status, 415);
    assert!(plain.json()["message"].is_string());
    assert!(pipeline.controller_enabled());
    assert_eq!(pipeline.config().unwrap().version(), 0);
    pipeline.shutdown(Duration::from_secs(5));
}

#[test]
fn cors_answers_only_configured_origins() {
    let pipeline = pipeline(
        ControlPlaneConfig::new().allow_origin("https://ops.example"),
        calm(),
    );
    let addr = pipeline.control_plane_addr().unwrap();
    let preflight = request(
        addr,
        "OPTIONS",
        "/api/controller",
        &[
            ("Origin", "https://ops.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        None,
    );
    assert_eq!(preflight.status, 204);
    assert!(
        preflight
            .head
            .to_ascii_lowercase()
            .contains("access-control-allow-origin: https://ops.example")
    );
    let other = request(
        addr,
        "GET",
        "/api/status",
        &[("Origin", "https://evil.example")],
        None,
    );
    assert_eq!(other.status, 200);
    assert!(
        !other
            .head
            .to_ascii_lowercase()
            .contains("access-control-allow-origin")
    );
    pipeline.shutdown(Duration::from_secs(5));
}

#[test]
fn a_router_mounted_elsewhere_guards_extra_routes_and_works_without_controller_or_config() {
    use pipeline_controller::control_plane::ControlPlane;
    let pipeline = Pipeline::<u64>::builder()
        .stage(Stage::new(SubscriptionConfig::new("plain")).handler(|_| Ok(())))
        .limits(limits())
        .controller(false)
        .interval(Duration::from_millis(20))
        .build()
        .unwrap();
    pipeline.start().unwrap();
    let plane = ControlPlane::new(pipeline.handle(), ControlPlaneConfig::new().token("t0k"));
    let extra = axum::Router::new().route("/extra", axum::routing::get(|| async { "extra" }));
    let app = plane.router_with(extra);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        axum::serve(listener, app).await.unwrap();
    });
    let auth = [("Authorization", "Bearer t0k")];

    // The extra route is behind the same token.
    assert_eq!(get(addr, "/extra").status, 401);
    let extra = request(addr, "GET", "/extra", &auth, None);
    assert_eq!((extra.status, extra.body.as_str()), (200, "extra"));

    // No controller: reported off, no memory reading, the switch refuses.
    let status = request(addr, "GET", "/api/status", &auth, None).json();
    assert_eq!(status["controller_enabled"], false);
    assert_eq!(status["memory"]["used_bytes"], Value::Null);
    let switch = request(
        addr,
        "POST",
        "/api/controller",
        &auth,
        Some(r#"{"enabled": true}"#),
    );
    assert_eq!(switch.status, 409);
    // No live configuration: 404 with a message.
    let config = request(addr, "GET", "/api/config", &auth, None);
    assert_eq!(config.status, 404);
    assert!(config.json()["message"].is_string());
    drop(runtime);
    pipeline.shutdown(Duration::from_secs(5));
}
