//! `pipeline-stress --serve`: the workload endpoint over loopback, and the dashboard in
//! a real headless Chromium.
//!
//! Every server binds 127.0.0.1 on a free port and is stopped by its test. Waits poll
//! with generous deadlines; nothing asserts on speed: the offered-rate check compares
//! the rate measured by the run's own counters before and after a change, as a ratio.
//!
//! The browser test needs Chromium (`apt-get install chromium`); without it the test
//! prints a loud `SKIP` and passes, unless `PIPELINE_REQUIRE_BROWSER=1`, which turns
//! the skip into a failure (CI sets it).

use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};
use pipeline_tests::stress::Scenario;
use pipeline_tests::stress::report::{TARGET_DIR_ENV, cargo_target_dir};
use pipeline_tests::stress::serve::{MAX_RATE, ServeConfig, ServeError, Served, serve};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long any one wait may take before the test fails: far beyond what a slow,
/// shared machine needs.
const WAIT: Duration = Duration::from_secs(120);

/// A cheap workload for the API tests: evenly spaced arrivals, a handler that does
/// nothing, a buffer large enough that the publisher never waits, so the offered load
/// is exactly what the workload generates.
fn api_scenario(rate: f64) -> Scenario {
    let yaml = format!(
        "
name: dashboard_api
description: even arrivals, a free handler
duration: 10s
interval: 250ms
memory_limit: 1GiB
stages:
  - name: work
    topic: t
    capacity: 16384
    min_capacity: 1024
    max_capacity: 65536
    workers: [2, 1, 4]
    cost: {{ kind: fixed, time: 0ms }}
patterns:
  - {{ topic: t, rate: {rate}, process: even, size: {{ fixed: 64 }} }}
expect: {{}}
"
    );
    Scenario::from_yaml(&yaml, "dashboard_api").unwrap()
}

fn start(scenario: Scenario, config: ServeConfig) -> Served {
    serve(scenario, config).unwrap_or_else(|e| panic!("serve: {e}"))
}

fn loopback() -> ServeConfig {
    ServeConfig::new("127.0.0.1:0".parse().unwrap())
}

#[path = "../../pipeline-controller/tests/common/http_client.rs"]
mod http_client;
use http_client::{Reply, get, request, send};

fn post(addr: SocketAddr, path: &str, body: &str) -> Reply {
    send(addr, "POST", path, body)
}

fn workload(addr: SocketAddr) -> Value {
    let reply = get(addr, "/api/workload");
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

/// Polls `check` every 50 ms until it gives a value, for at most [`WAIT`].
fn until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The offered rate as the run measures it: arrivals counted by the run between two
/// readings of `GET /api/workload`, over the run's own clock, waiting until at least
/// `events` arrived so one late wake-up of the generator weighs little.
fn measured_offered_rate(addr: SocketAddr, events: u64) -> f64 {
    let first = workload(addr);
    let (t0, n0) = (
        first["since_start_secs"].as_f64().unwrap(),
        first["offered_total"].as_u64().unwrap(),
    );
    until("arrivals to count", || {
        let now = workload(addr);
        let (t1, n1) = (
            now["since_start_secs"].as_f64().unwrap(),
            now["offered_total"].as_u64().unwrap(),
        );
        (n1 - n0 >= events).then(|| (n1 - n0) as f64 / (t1 - t0))
    })
}

#[test]
fn a_posted_rate_changes_the_offered_load() {
    let served = start(api_scenario(100.0), loopback());
    let addr = served.local_addr();
    assert!(addr.ip().is_loopback());

    let before = workload(addr);
    assert_eq!(before["rate"], 100.0, "{before}");
    assert_eq!(before["patterns"][0]["topic"], "t", "{before}");
    assert_eq!(before["max_rate"], MAX_RATE, "{before}");
    let slow = measured_offered_rate(addr, 200);

    let reply = post(addr, "/api/workload", r#"{"rate": 1000}"#);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["rate"], 1000.0, "{}", reply.body);
    let after = workload(addr);
    assert_eq!(after["rate"], 1000.0, "GET shows the new rate: {after}");
    assert_eq!(after["patterns"][0]["rate"], 1000.0, "{after}");
    assert_eq!(after["offered_rate"], 1000.0, "a constant shape: {after}");
    let fast = measured_offered_rate(addr, 2000);

    // Set 10x: measured, the ratio is 10 up to the generator's wake-ups and the
    // clock readings' distance from them; the bounds only exclude "no change".
    let ratio = fast / slow;
    assert!(
        (3.0..30.0).contains(&ratio),
        "offered {slow:.1}/s before, {fast:.1}/s after: ratio {ratio:.2}, expected about 10"
    );

    // Back down, with the topic named: the run follows again.
    let reply = post(addr, "/api/workload", r#"{"rate": 100, "topic": "t"}"#);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let slow_again = measured_offered_rate(addr, 200);
    let ratio = fast / slow_again;
    assert!(
        (3.0..30.0).contains(&ratio),
        "offered {fast:.1}/s, then {slow_again:.1}/s: ratio {ratio:.2}, expected about 10"
    );

    // The run's other counters: nothing published that was not offered, nothing
    // handled that was not published.
    let now = workload(addr);
    let offered = now["offered_total"].as_u64().unwrap();
    let published = now["published_total"].as_u64().unwrap();
    let handled = now["handled_total"].as_u64().unwrap();
    assert!(handled <= published && published <= offered, "{now}");
    let result = served.stop().unwrap();
    assert!(
        result.offered >= offered,
        "the run counted the same arrivals"
    );
    assert_eq!(result.dropped, 0);
}

#[test]
fn bad_workload_bodies_are_refused_with_a_json_error_naming_the_problem() {
    let served = start(api_scenario(50.0), loopback());
    let addr = served.local_addr();
    let oversized = format!(r#"{{"rate": 5, "pad": "{}"}}"#, "x".repeat(100 * 1024));
    // (body, content type, status, the path named or a word of the message)
    let cases: [(&str, &str, u16, &str); 11] = [
        (r#"{"rate": -1}"#, "application/json", 422, "rate"),
        (r#"{"rate": "fast"}"#, "application/json", 422, "rate"),
        (r#"{"rate": true}"#, "application/json", 422, "rate"),
        (r#"{"rate": null}"#, "application/json", 422, "rate"),
        (r#"{"rate": 1e12}"#, "application/json", 422, "rate"),
        (r#"{}"#, "application/json", 422, "rate"),
        (
            r#"{"rate": 5, "speed": 2}"#,
            "application/json",
            422,
            "speed",
        ),
        (
            r#"{"rate": 5, "topic": "nope"}"#,
            "application/json",
            422,
            "topic",
        ),
        (r#"[5]"#, "application/json", 422, "JSON object"),
        (r#"{"rate": "#, "application/json", 400, "EOF"),
        (r#"{"rate": 5}"#, "text/plain", 415, "Content-Type"),
    ];
    for (body, content_type, status, named) in cases {
        let reply = request(
            addr,
            "POST",
            "/api/workload",
            &[("Content-Type", content_type)],
            Some(body),
        );
        assert_eq!(reply.status, status, "{body}: {}", reply.body);
        assert!(
            reply.head.to_ascii_lowercase().contains("application/json"),
            "{body}: JSON error expected, got {}",
            reply.head
        );
        let json = reply.json();
        let message = json["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{body}: a message: {json}");
        let paths: Vec<&str> = json["errors"]
            .as_array()
            .map(|e| e.iter().filter_map(|e| e["path"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            paths.contains(&named) || message.contains(named),
            "{body}: the error names {named:?}: {json}"
        );
    }
    let reply = post(addr, "/api/workload", &oversized);
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert!(!reply.json()["message"].as_str().unwrap().is_empty());
    // None of them changed anything.
    assert_eq!(workload(addr)["rate"], 50.0);
    // A bad history query is a JSON error too.
    let reply = get(addr, "/api/workload/history?since=soon");
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.json()["message"].is_string());
    served.stop().unwrap();
}

#[test]
fn the_token_guards_the_workload_routes_too() {
    let served = start(api_scenario(50.0), loopback().token("s3cret"));
    let addr = served.local_addr();
    let bearer = [("Authorization", "Bearer s3cret")];
    let wrong = [("Authorization", "Bearer guess")];
    for (method, path, body) in [
        ("GET", "/api/workload", None),
        ("GET", "/api/workload/history", None),
        ("POST", "/api/workload", Some(r#"{"rate": 500}"#)),
        ("GET", "/api/status", None),
    ] {
        for headers in [&[][..], &wrong[..]] {
            let reply = request(addr, method, path, headers, body);
            assert_eq!(reply.status, 401, "{method} {path}: {}", reply.body);
            assert!(reply.json()["message"].is_string());
        }
    }
    let reply = request(addr, "GET", "/api/workload", &bearer, None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json()["rate"],
        50.0,
        "the refused POST changed nothing"
    );
    let reply = request(
        addr,
        "POST",
        "/api/workload",
        &bearer,
        Some(r#"{"rate": 70}"#),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = request(addr, "GET", "/api/workload", &bearer, None);
    assert_eq!(reply.json()["rate"], 70.0);
    // The page is static and public: it asks for the token itself.
    let page = get(addr, "/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("dashboard.js"), "{}", page.body);
    served.stop().unwrap();
}

#[test]
fn an_exposed_address_needs_a_token() {
    let config = ServeConfig::new("0.0.0.0:0".parse().unwrap());
    match serve(api_scenario(10.0), config) {
        Err(ServeError::Exposed { addr }) => assert!(addr.ip().is_unspecified()),
        other => panic!("expected ServeError::Exposed, got {other:?}"),
    }
}

#[test]
fn the_page_and_its_assets_are_served() {
    let served = start(api_scenario(10.0), loopback());
    let addr = served.local_addr();
    for (path, content_type, needle) in [
        ("/", "text/html", "id=\"workers\""),
        ("/dashboard.js", "text/javascript", "/api/workload"),
        ("/dashboard.css", "text/css", ".tiles"),
        (
            "/dashboard/parameters.json",
            "application/json",
            "policy.cooldown",
        ),
    ] {
        let reply = get(addr, path);
        assert_eq!(reply.status, 200, "{path}");
        assert!(
            reply.head.to_ascii_lowercase().contains(content_type),
            "{path}: {}",
            reply.head
        );
        assert!(reply.body.contains(needle), "{path}");
    }
    // Nothing on the page comes from elsewhere.
    let page = get(addr, "/").body + &get(addr, "/dashboard.js").body;
    assert!(!page.contains("http://") && !page.contains("https://"));
    // The history fills, one sample a second, with every stage.
    let samples = until("two history samples", || {
        let h = get(addr, "/api/workload/history").json();
        let samples = h["samples"].as_array().cloned().unwrap_or_default();
        (samples.len() >= 2).then_some(samples)
    });
    assert_eq!(samples[0]["stages"].as_array().unwrap().len(), 1);
    let last = samples.last().unwrap()["t"].as_f64().unwrap();
    let newer = get(addr, &format!("/api/workload/history?since={last}")).json();
    assert!(
        newer["samples"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["t"].as_f64().unwrap() > last)
    );
    served.stop().unwrap();
}

/// The binary's `--serve`: prints the dashboard's address, serves until SIGINT (what
/// Ctrl-C sends), then stops cleanly with a one-line summary; an exposed address
/// without a token is a usage error.
#[test]
fn the_binary_serves_until_interrupted() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    const BIN: &str = env!("CARGO_BIN_EXE_pipeline-stress");

    let refused = Command::new(BIN)
        .args(["--serve", "0.0.0.0:0", "--quiet"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("needs a token"), "{stderr}");

    /// Kills the child if the test fails before it ends.
    struct Reaper(std::process::Child);
    impl Drop for Reaper {
        fn drop(&mut self) {
            if self.0.try_wait().ok().flatten().is_none() {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
    }
    let mut child = Reaper(
        Command::new(BIN)
            .args(["--serve", "127.0.0.1:0", "--quiet"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = std::io::BufReader::new(child.0.stdout.take().unwrap()).lines();
    let addr: SocketAddr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| {
            line.strip_prefix("dashboard: http://")
                .and_then(|rest| rest.split('/').next())
                .and_then(|addr| addr.parse().ok())
        })
        .expect("the dashboard's address on stdout");
    assert!(addr.ip().is_loopback());
    let w = workload(addr);
    assert_eq!(w["scenario"], "default", "{w}");
    assert_eq!(get(addr, "/").status, 200);
    // SAFETY: kill only sends a signal to the child this test started.
    let sent = unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(sent, 0);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status}: {rest:?}");
    assert!(
        rest.iter().any(|l| l.starts_with("stopped after")),
        "{rest:?}"
    );
}

// ---- the browser ---------------------------------------------------------------------

/// `PIPELINE_REQUIRE_BROWSER=1` turns a missing Chromium into a failure.
const REQUIRE_ENV: &str = "PIPELINE_REQUIRE_BROWSER";

/// Chromium's path: `CHROME` if set, else `chromium`, `chromium-browser` or
/// `google-chrome` on the `PATH`.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROME").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| {
            ["chromium", "chromium-browser", "google-chrome"].map(|name| dir.join(name))
        })
        .find(|candidate| candidate.is_file())
}

/// Chromium's path, or `None` after a loud SKIP (a panic with
/// `PIPELINE_REQUIRE_BROWSER=1`).
fn chromium_or_skip() -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        let required = std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1");
        assert!(
            !required,
            "{REQUIRE_ENV}=1 but Chromium is not on PATH (apt-get install chromium)"
        );
        eprintln!(
            "\n==================== SKIP: the dashboard's browser test did not run: no \
             chromium on PATH (apt-get install chromium; {REQUIRE_ENV}=1 makes this a \
             failure) ====================\n"
        );
    }
    found
}

/// A stage whose handler sleeps 200 ms per event: at 2 events/s one worker is 40%
/// busy, and at the slider's top (20/s, ten times the scenario's rate) the load is 4
/// workers' worth, so the model must add workers whatever the machine's speed (a slow
/// machine only makes the sleeps longer). `workers_per_core` lifts the CPU cap the
/// controller applies before it has measured how little CPU a sleep costs.
const BROWSER_SCENARIO: &str = "
name: dashboard_browser
description: 2 events/s into a handler that sleeps 200 ms; move the slider
duration: 10s
interval: 250ms
memory_limit: 1GiB
policy:
  stabilisation_window: 3s
  cooldown: 1s
  workers_per_core: 8
stages:
  - name: work
    topic: jobs
    capacity: 64
    min_capacity: 32
    max_capacity: 8192
    workers: [1, 1, 16]
    cost: { kind: fixed, time: 200ms }
patterns:
  - { topic: jobs, rate: 2, process: even, size: { fixed: 256 } }
expect: {}
";

/// Evaluates `expression` in the page and returns its value as a string ("" for
/// undefined or null).
fn eval(tab: &Tab, expression: &str) -> String {
    let result = tab
        .evaluate(expression, false)
        .unwrap_or_else(|e| panic!("{expression}: {e}"));
    match result.value {
        Some(Value::String(s)) => s,
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn screenshot_path() -> PathBuf {
    let env = std::env::var_os(TARGET_DIR_ENV);
    cargo_target_dir(env.as_deref())
        .join("dashboard")
        .join("dashboard.png")
}

/// A headless Chromium with its profile and its singleton socket (under TMPDIR) in a
/// directory removed when the returned guard drops (after the browser).
fn launch(chromium: PathBuf) -> (Browser, tempfile::TempDir) {
    let scratch = tempfile::tempdir().unwrap();
    let options = LaunchOptions::default_builder()
        .path(Some(chromium))
        // As root (CI, containers) Chromium refuses to start with its sandbox.
        .sandbox(false)
        .window_size(Some((1400, 1500)))
        .idle_browser_timeout(WAIT)
        .user_data_dir(Some(scratch.path().join("profile")))
        .process_envs(Some(
            [("TMPDIR".to_owned(), scratch.path().display().to_string())].into(),
        ))
        .build()
        .unwrap();
    // headless_chrome gives Chromium 30 s to start; a loaded machine gets three tries.
    let mut tries = 0;
    loop {
        tries += 1;
        match Browser::new(options.clone()) {
            Ok(browser) => return (browser, scratch),
            Err(e) if tries < 3 => eprintln!("starting Chromium failed ({e}); again"),
            Err(e) => panic!("starting Chromium failed {tries} times, last: {e}"),
        }
    }
}

#[test]
fn the_dashboard_in_a_real_browser() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let scenario = Scenario::from_yaml(BROWSER_SCENARIO, "dashboard_browser").unwrap();
    let served = start(scenario, loopback());
    let addr = served.local_addr();

    let (browser, scratch) = launch(chromium);
    let tab = browser.new_tab().unwrap();
    tab.set_default_timeout(WAIT);
    tab.navigate_to(&served.url()).unwrap();
    tab.wait_until_navigated().unwrap();

    // The page built its controls from GET /api/workload and shows the workers from
    // the event stream.
    let slider = tab.wait_for_element("#rate-0").unwrap();
    assert_eq!(eval(&tab, "document.getElementById('rate-0').max"), "20");
    let initial: u64 = until("the workers figure", || {
        eval(&tab, "document.getElementById('workers').textContent")
            .trim()
            .parse()
            .ok()
    });
    assert_eq!(initial, 1, "one worker is enough for 2 events/s");

    // Move the slider as a user does: click it (the thumb jumps there), then End (to
    // the top). The browser fires the input and change events; the page posts the rate.
    slider.click().unwrap();
    tab.press_key("End").unwrap();
    until("the page to post the slider's rate", || {
        (workload(addr)["rate"] == 20.0).then_some(())
    });
    until("the page to show the new rate", || {
        (eval(&tab, "document.getElementById('rate-0').dataset.rate") == "20").then_some(())
    });

    // The controller adds workers, and the page shows it.
    let workers: u64 = until("the workers figure to grow", || {
        eval(&tab, "document.getElementById('workers').textContent")
            .trim()
            .parse()
            .ok()
            .filter(|&n: &u64| n > initial)
    });
    assert!(workers > initial);

    // A bad live parameter: the server's error appears next to its field, and nothing
    // changes.
    let version = get(addr, "/api/config").json()["version"].clone();
    let field = "cfg-stages_work_workers_max";
    tab.wait_for_element(&format!("#{field}")).unwrap();
    eval(
        &tab,
        &format!("document.getElementById('{field}').value = '0'"),
    );
    tab.find_element("#config-apply").unwrap().click().unwrap();
    let message = until("the error next to workers.max", || {
        let text = eval(
            &tab,
            &format!("document.getElementById('{field}-error').textContent"),
        );
        (!text.is_empty()).then_some(text)
    });
    assert!(message.contains("workers.min"), "{message}");
    assert_eq!(get(addr, "/api/config").json()["version"], version);

    // Decisions are listed, newest first, with the scale-up among them.
    let decisions = eval(&tab, "document.getElementById('decisions').innerText");
    assert!(decisions.contains("pool work"), "{decisions}");

    // The page ran without a script error.
    assert_eq!(eval(&tab, "JSON.stringify(window.dashboardErrors)"), "[]");

    let png = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .unwrap();
    let path = screenshot_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, png).unwrap();
    eprintln!(
        "dashboard: workers {initial} -> {workers} after the slider moved; screenshot {}",
        path.display()
    );
    drop(tab);
    drop(browser);
    served.stop().unwrap();
    drop(scratch);
}

/// With a token, the page asks for it, then works: the event stream (read with the
/// token in a header) fills the workers figure and the live parameters load.
#[test]
fn the_dashboard_asks_for_the_token() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let scenario = Scenario::from_yaml(BROWSER_SCENARIO, "dashboard_browser").unwrap();
    let served = start(scenario, loopback().token("s3cret"));
    let (browser, scratch) = launch(chromium);
    let tab = browser.new_tab().unwrap();
    tab.set_default_timeout(WAIT);
    tab.navigate_to(&served.url()).unwrap();
    tab.wait_until_navigated().unwrap();
    until("the token form", || {
        (eval(&tab, "String(document.getElementById('auth').hidden)") == "false").then_some(())
    });
    assert_eq!(
        eval(&tab, "document.getElementById('workers').textContent").trim(),
        "\u{2013}",
        "nothing is shown without the token"
    );
    tab.find_element("#token")
        .unwrap()
        .type_into("s3cret")
        .unwrap();
    tab.press_key("Enter").unwrap();
    let workers: u64 = until("the workers figure", || {
        eval(&tab, "document.getElementById('workers').textContent")
            .trim()
            .parse()
            .ok()
    });
    assert!(workers >= 1);
    tab.wait_for_element("#cfg-stages_work_workers_max")
        .unwrap();
    assert_eq!(
        eval(&tab, "document.getElementById('connection').textContent"),
        "live"
    );
    assert_eq!(eval(&tab, "JSON.stringify(window.dashboardErrors)"), "[]");
    drop(tab);
    drop(browser);
    served.stop().unwrap();
    drop(scratch);
}
