//! The demo explains itself (issue 17): each test pins one finding of running
//! `pipeline-stress` as a newcomer would.
//!
//! - the status line wrapped in a 160-column terminal (164 columns), and decision lines
//!   carried two timestamps;
//! - `--help` exited 2 with a one-line usage;
//! - the report went to `./target/stress-report` even with `CARGO_TARGET_DIR` set;
//! - `summary.json` held numbers as text (`"52484 / 52484 / 52484"`);
//! - chart markers had no labels, and an absent rate limit was drawn as a line at 0;
//! - the README said the demo shrinks back, but nothing checked that it did;
//! - the header did not say which settings differ from the library's defaults.

use pipeline_controller::control::{DecisionRecord, Entry};
use pipeline_controller::policy::{
    Action, Change, Comparison, Condition, Hold, HoldCause, Mode, PolicyConfig, Reading, Reason,
    Rule, Threshold, Transition,
};
use pipeline_tests::stress::report::{Mark, cargo_target_dir, svg_chart};
use pipeline_tests::stress::run::{
    DecisionLine, STATUS_WIDTH, Sample, compact, decision_text, status_line,
};
use pipeline_tests::stress::scenario::differences;
use pipeline_tests::stress::{Expectations, Scenario, evaluate, write_report};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pipeline-stress");

fn sample(t: f64, big: bool) -> Sample {
    let n = |small: u64| if big { 987_654_321_012 } else { small };
    Sample {
        t,
        offered_rate: n(3000) as f64,
        publish_rate: n(3014) as f64,
        rate_limit: big.then_some(123_456_789.0),
        buffer_len: n(173),
        buffer_capacity: n(3953),
        workers: if big { 99 } else { 5 },
        memory_bytes: n(7 << 20),
        memory_limit: if big { 1 } else { 256 << 20 },
        dropped: n(0),
        backlog: n(0),
        max_saturation: 0.04,
        mode: if big { "throttled" } else { "normal" }.into(),
    }
}

/// Regression: the status line was 164 columns and wrapped in a 160-column terminal.
#[test]
fn the_status_line_fits_in_100_columns() {
    assert_eq!(STATUS_WIDTH, 100);
    for s in [
        sample(0.3, false),
        sample(25.3, false),
        sample(9999.9, false),
        sample(9999.9, true),
    ] {
        let line = status_line(&s);
        assert!(
            line.chars().count() <= STATUS_WIDTH,
            "{} columns: {line:?}",
            line.chars().count()
        );
    }
    let line = status_line(&sample(25.3, false));
    assert_eq!(
        line,
        "  25.3s  in 3000/s  out 3014/s  lim none  buf  173/3953  wrk  5  mem   3%  drop    0  normal"
    );
    // Every count and rate in at most four columns.
    for (v, text) in [
        (0.0, "0"),
        (9999.0, "9999"),
        (10_000.0, "10k"),
        (65_536.0, "65k"),
        (999_999.0, "999k"),
        (1_234_567.0, "1.2M"),
        (98_765_432.0, "98M"),
        (5e9, "5G"),
        (5e15, "999G"),
        (-3.0, "0"),
    ] {
        assert_eq!(compact(v), text, "{v}");
    }
}

fn record(entry: Entry, since_start: f64) -> DecisionRecord {
    DecisionRecord {
        at: Instant::now(),
        since_start: Duration::from_secs_f64(since_start),
        mode: Mode::Normal,
        entry,
    }
}

fn grow(from: usize, to: usize) -> Entry {
    Entry::Action {
        action: Action {
            change: Change::ResizeBuffer {
                name: "orders".into(),
                from,
                to,
            },
            reason: Reason {
                rule: Rule::GrowBuffer,
                conditions: vec![Condition {
                    reading: Reading::Saturation {
                        buffer: "orders".into(),
                    },
                    value: 0.92,
                    comparison: Comparison::Above,
                    threshold: Threshold::TargetSaturation,
                    threshold_value: 0.7,
                    held_for: None,
                }],
                sizing: None,
            },
        },
        outcome: Ok(to.to_string()),
    }
}

/// Regression: a decision line printed the run's time and the log's (`decision 28.0s
/// [normal] [    27.9s] ...`).
#[test]
fn a_decision_line_has_one_timestamp() {
    let line = DecisionLine::new(&record(grow(64, 96), 27.9), 28.04);
    let text = decision_text(&line);
    assert_eq!(
        text,
        "  28.0s  decision: buffer orders: saturation 0.92 > target 0.70, grow 64 -> 96"
    );
    assert!(!text.contains("27.9"), "{text}");
    // The structured fields the charts label markers with.
    assert_eq!(line.kind, "action");
    assert_eq!(line.rule.as_deref(), Some("grow-buffer"));
    assert_eq!(line.knob.as_deref(), Some("buffer orders"));
    assert_eq!(line.direction.as_deref(), Some("up"));
    assert_eq!(line.value.as_deref(), Some("96"));
    assert!(line.is_change());
    assert_eq!(line.label(false), "grow-buffer \u{2192} 96");
    assert_eq!(line.label(true), "grow-buffer orders \u{2192} 96");

    let hold = record(
        Entry::Hold(Hold {
            change: Change::ResizePool {
                name: "orders".into(),
                from: 5,
                to: 1,
            },
            rule: Rule::ScaleDown,
            cause: HoldCause::Window {
                left: Duration::from_secs(2),
            },
            new: true,
        }),
        30.0,
    );
    let line = DecisionLine::new(&hold, 30.0);
    assert_eq!(
        decision_text(&line),
        "  30.0s  held: pool orders: scale down 5 -> 1 held by the stabilisation window, 2s left"
    );
    assert_eq!(line.direction.as_deref(), Some("down"));
    assert!(!line.is_change(), "a hold changes nothing: no chart marker");

    let mode = record(
        Entry::Mode(Transition {
            from: Mode::Normal,
            to: Mode::Defensive,
            reason: Reason {
                rule: Rule::EnterDefensive,
                conditions: Vec::new(),
                sizing: None,
            },
        }),
        31.0,
    );
    let line = DecisionLine::new(&mode, 31.0);
    assert!(line.is_change());
    assert_eq!(line.label(false), "mode defensive");
}

/// Regression: `--help` exited 2 with a one-line usage.
#[test]
fn help_describes_every_option_and_exits_0() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{help}");
    for option in [
        "--quick",
        "--compress <F>",
        "--memory-limit <SIZE>",
        "--no-controller",
        "--out <DIR>",
        "--no-watch",
        "--quiet",
        "--serve <ADDR>",
        "--token <TOKEN>",
        "-h, --help",
    ] {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(option))
            .unwrap_or_else(|| panic!("no {option} in\n{help}"));
        // A description follows the option, on its line (-h) or the next (--help).
        let at = help.lines().position(|l| l == line).unwrap();
        let rest = line.trim_start()[option.len()..].trim();
        let description = if rest.is_empty() {
            help.lines().nth(at + 1).unwrap_or_default().trim()
        } else {
            rest
        };
        assert!(description.len() > 10, "{option} undescribed in\n{help}");
    }
    // The positional scenario, the alias the CI script used, and the exit codes.
    assert!(help.contains("[SCENARIO.yaml]"), "{help}");
    assert!(help.contains("[alias: --report]"), "{help}");
    assert!(help.contains("Exit code"), "{help}");
    assert!(
        !help.contains("child-result"),
        "internal option shown: {help}"
    );

    let out = Command::new(BIN).arg("-h").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    // A usage error still exits 2, with the usage.
    let out = Command::new(BIN).arg("--no-such-option").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage: pipeline-stress"));
    let out = Command::new(BIN)
        .args(["--memory-limit", "256 furlongs"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

const TINY: &str = r#"
name: NAME
duration: 1s
interval: 100ms
memory_limit: 256MiB
stages:
  - { name: s, topic: t, capacity: 32, min_capacity: 16, max_capacity: 1024, workers: [1, 1, 2], cost: { kind: fixed, time: 1ms } }
patterns:
  - { topic: t, rate: 100, size: { fixed: 256 } }
expect:
  max_loss: 0.0
"#;

/// Runs the binary on a one-second scenario named `name` from `cwd`, with
/// `CARGO_TARGET_DIR` set to `target` or unset; returns the path it printed.
fn run_tiny(cwd: &Path, name: &str, target: Option<&Path>, extra: &[&str]) -> PathBuf {
    let file = cwd.join(format!("{name}.yaml"));
    std::fs::write(&file, TINY.replace("NAME", name)).unwrap();
    let mut command = Command::new(BIN);
    command
        .current_dir(cwd)
        .arg(&file)
        .args(["--quiet", "--no-watch"])
        .args(extra);
    match target {
        Some(t) => command.env("CARGO_TARGET_DIR", t),
        None => command.env_remove("CARGO_TARGET_DIR"),
    };
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    // The path is printed last.
    let last = stdout.lines().last().unwrap_or_default();
    let path = last
        .strip_prefix("report: ")
        .unwrap_or_else(|| panic!("no report path at the end: {stdout}"));
    let path = PathBuf::from(path);
    assert!(path.is_absolute(), "{last}");
    assert!(path.join("summary.json").is_file(), "{stdout}");
    path
}

/// Regression: the report went to `./target/stress-report/...` even when
/// `CARGO_TARGET_DIR` was set.
#[test]
fn the_report_goes_under_the_cargo_target_dir() {
    let cwd = tempfile::tempdir().unwrap();
    let target = tempfile::tempdir().unwrap();
    // CARGO_TARGET_DIR set: under it.
    let path = run_tiny(cwd.path(), "tiny_env", Some(target.path()), &[]);
    assert_eq!(
        path,
        target.path().join("stress-report/tiny_env"),
        "CARGO_TARGET_DIR not followed"
    );
    // --out wins; the old spelling --report too.
    let out = cwd.path().join("elsewhere");
    let path = run_tiny(
        cwd.path(),
        "tiny_out",
        Some(target.path()),
        &["--out", out.to_str().unwrap()],
    );
    assert_eq!(path, out);
    let report = cwd.path().join("old-spelling");
    let path = run_tiny(
        cwd.path(),
        "tiny_report",
        Some(target.path()),
        &["--report", report.to_str().unwrap()],
    );
    assert_eq!(path, report);
    // No run wrote to ./target of its working directory.
    assert!(!cwd.path().join("target").exists());

    // Unset: the workspace's target folder, wherever the binary runs from.
    let workspace_target = cargo_target_dir(None);
    assert_eq!(
        workspace_target,
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .join("target")
    );
    let name = format!("tiny_unset_{}", std::process::id());
    let path = run_tiny(cwd.path(), &name, None, &[]);
    let expected = workspace_target.join("stress-report").join(&name);
    let _ = std::fs::remove_dir_all(&expected);
    assert_eq!(path, expected);
    assert!(!cwd.path().join("target").exists());
    // Empty counts as unset, as for cargo.
    assert_eq!(cargo_target_dir(Some("".as_ref())), workspace_target);
}

/// Regression: `summary.json` held numbers as text (`"52484 / 52484 / 52484"`).
#[test]
fn summary_json_holds_numbers_as_numbers() {
    let s = Scenario::from_yaml(&TINY.replace("NAME", "tiny"), "x").unwrap();
    let r = pipeline_tests::stress::run(&s, &Default::default(), None).unwrap();
    let expect = Expectations {
        max_loss: Some(0.0),
        max_p99_latency: Some(Duration::from_secs(5)),
        min_decisions: Some(0),
        max_final_workers: Some(2),
        max_oom_kills: Some(0),
        ..Expectations::default()
    };
    let summary = evaluate(Some(&r), None, &expect, "tiny", true);
    let dir = tempfile::tempdir().unwrap();
    write_report(dir.path(), Some(&r), &summary).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("summary.json")).unwrap()).unwrap();
    let events = &json["events"];
    for field in [
        "offered",
        "published",
        "handled",
        "failed",
        "dropped",
        "left",
        "unpublished",
    ] {
        assert!(events[field].is_u64(), "events.{field}: {json}");
    }
    assert_eq!(events["published"].as_u64(), Some(r.published));
    assert_eq!(events["handled"].as_u64(), Some(r.handled));
    assert!(json["latency"]["p99_s"].is_f64(), "{json}");
    assert!(json["memory"]["peak_rss_bytes"].is_u64(), "{json}");
    assert!(json["decisions"].is_u64(), "{json}");
    assert!(json["end"]["workers"].is_u64(), "{json}");
    assert!(json["end"]["buffer_capacity"].is_u64(), "{json}");
    assert!(json["duration_s"].is_f64(), "{json}");
    for check in json["checks"].as_array().unwrap() {
        assert!(check["bound"].is_f64(), "{check}");
        assert!(check["op"] == "<=" || check["op"] == ">=", "{check}");
        if check["name"] == "OOM kills (kernel)" {
            // No cgroup: no value, and a note saying why.
            assert!(check["actual"].is_null(), "{check}");
            assert_eq!(check["note"], "no cgroup");
        } else {
            assert!(check["actual"].is_f64(), "{check}");
        }
    }
    // Nothing in the file is a number written as text.
    fn no_numeric_text(v: &serde_json::Value, path: &str) {
        match v {
            serde_json::Value::String(s) => assert!(
                s.parse::<f64>().is_err() && !s.contains(" / "),
                "{path} = {s:?}: a number as text"
            ),
            serde_json::Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    no_numeric_text(v, &format!("{path}[{i}]"));
                }
            }
            serde_json::Value::Object(o) => {
                for (k, v) in o {
                    no_numeric_text(v, &format!("{path}.{k}"));
                }
            }
            _ => {}
        }
    }
    no_numeric_text(&json, "summary");
    // The table still reads as before.
    let table = summary.table();
    assert!(table.contains("loss"), "{table}");
    assert!(
        table.contains(&format!(
            "offered / published / handled: {} / {} / {}",
            r.offered, r.published, r.handled
        )),
        "{table}"
    );
    assert!(table.contains("final workers"), "{table}");
    assert!(table.contains("at the end"), "{table}");
}

fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            Some(
                t.split_once('>')?
                    .1
                    .split_once("</text>")?
                    .0
                    .trim()
                    .to_owned(),
            )
        })
        .collect()
}

/// `points` counts of the polylines with more than two points (the series' lines).
fn lines(svg: &str) -> Vec<usize> {
    svg.split("<polyline")
        .skip(1)
        .map(|p| {
            p.split("points=\"")
                .nth(1)
                .and_then(|v| v.split('"').next())
                .unwrap_or("")
                .split_whitespace()
                .count()
        })
        .filter(|&n| n > 2)
        .collect()
}

/// Regression: chart markers had no labels, and an absent rate limit was drawn as a
/// line at 0.
#[test]
fn chart_markers_are_labelled_and_absent_values_are_not_drawn() {
    let t: Vec<f64> = (0..40).map(|i| i as f64).collect();
    let offered: Vec<(f64, Option<f64>)> = t.iter().map(|&t| (t, Some(300.0))).collect();
    let no_limit: Vec<(f64, Option<f64>)> = t.iter().map(|&t| (t, None)).collect();
    let marks = [
        Mark {
            t: 10.2,
            label: "scale-up \u{2192} 5".into(),
        },
        // At the same instant: shares the first one's label.
        Mark {
            t: 10.25,
            label: "grow-buffer \u{2192} 3953".into(),
        },
        Mark {
            t: 28.0,
            label: "shrink-buffer \u{2192} 426".into(),
        },
    ];
    let svg = svg_chart(
        "default - rate",
        &[("offered", offered.clone()), ("rate limit", no_limit)],
        &marks,
        40.0,
    )
    .unwrap();
    let texts = svg_texts(&svg);
    assert!(
        texts.contains(&"scale-up \u{2192} 5, grow-buffer \u{2192} 3953".to_string()),
        "{texts:?}"
    );
    assert!(
        texts.contains(&"shrink-buffer \u{2192} 426".to_string()),
        "{texts:?}"
    );
    assert!(texts.contains(&"decisions (3)".to_string()), "{texts:?}");
    // Labels run along their markers.
    assert_eq!(svg.matches("rotate(90").count(), 2, "{svg}");
    // The absent limit: named as absent, not drawn.
    assert!(texts.contains(&"rate limit: none".to_string()), "{texts:?}");
    assert_eq!(lines(&svg), [40], "only the offered rate is a line");

    // A limit set for part of the run: drawn where set, a gap elsewhere.
    let partial: Vec<(f64, Option<f64>)> = t
        .iter()
        .map(|&t| (t, (10.0..20.0).contains(&t).then_some(250.0)))
        .collect();
    let svg = svg_chart(
        "x",
        &[("offered", offered), ("rate limit", partial)],
        &[],
        40.0,
    )
    .unwrap();
    assert_eq!(lines(&svg), [40, 10]);
    assert!(svg_texts(&svg).contains(&"rate limit".to_string()));

    // Many markers close together: one label, the rest counted.
    let crowd: Vec<Mark> = (0..5)
        .map(|i| Mark {
            t: 20.0 + i as f64 * 0.01,
            label: format!("throttle \u{2192} {}/s", 100 - i),
        })
        .collect();
    let svg = svg_chart("x", &[], &crowd, 40.0).unwrap();
    assert!(
        svg_texts(&svg)
            .contains(&"throttle \u{2192} 100/s, throttle \u{2192} 99/s, +3 more".to_string()),
        "{:?}",
        svg_texts(&svg)
    );
}

/// Regression: the README says the demo gives the buffer and workers back after the
/// burst, but at the end of a run they were still 187 and 4 and nothing checked it.
/// The default scenario now checks its end state, and its run outlasts the burst by
/// enough stabilisation windows for two shrink steps.
#[test]
fn the_default_scenario_checks_that_it_shrinks_back() {
    let s = Scenario::default_scenario();
    assert!(
        s.expect.max_final_capacity.is_some() && s.expect.max_final_workers.is_some(),
        "the default scenario does not check its end state"
    );
    let burst_end = s
        .patterns
        .iter()
        .filter_map(|p| match p.shape {
            pipeline_tests::workload::Shape::Burst { at, length, .. } => Some(at + length),
            _ => None,
        })
        .max()
        .expect("the default scenario has a burst");
    let policy = s.policy_config();
    // Each step down waits for the stabilisation window (the first also for the
    // burst's readings to leave it); allow three steps and a tick.
    let needed = burst_end + policy.stabilisation_window * 3 + s.interval;
    assert!(
        s.duration >= needed,
        "{:?} run, burst ends at {burst_end:?}, window {:?}: shrinking needs until {needed:?}",
        s.duration,
        policy.stabilisation_window
    );
    // The same holds in the quick profile (windows compress with the run).
    let mut quick = s.clone();
    quick.compress(quick.quick);
    let q = quick.policy_config();
    let burst_end = burst_end.div_f64(s.quick);
    assert!(quick.duration >= burst_end + q.stabilisation_window * 3 + quick.interval);
}

/// Regression: the demo ran with tuned settings (3 s windows, 4 workers per core) and
/// did not say so.
#[test]
fn the_header_lists_every_setting_that_differs_from_the_defaults() {
    let s = Scenario::default_scenario();
    let differ = s.settings_differing_from_defaults();
    let find = |field: &str| {
        differ
            .iter()
            .find(|d| d.field == field)
            .unwrap_or_else(|| panic!("{field} missing: {differ:?}"))
    };
    let window = find("policy.stabilisation_window");
    assert_eq!(
        (window.value.as_str(), window.default.as_str()),
        ("3s", "30s")
    );
    assert_eq!(find("policy.workers_per_core").value, "4.0");
    assert_eq!(find("controller.interval").value, "250ms");
    // Nothing that equals its default is listed.
    let defaults = serde_json::to_value(PolicyConfig::default()).unwrap();
    for d in &differ {
        if let Some(field) = d.field.strip_prefix("policy.") {
            assert_ne!(
                defaults[field].to_string().trim_matches('"'),
                d.value,
                "{d:?}"
            );
        }
    }
    // Generic: any field of the policy, including one the scenario files cannot set.
    let mut out = Vec::new();
    differences(
        "policy",
        &defaults,
        &serde_json::to_value(PolicyConfig::default().growth_factor(2.0)).unwrap(),
        &mut out,
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].field, "policy.growth_factor");
    assert_eq!(out[0].value, "2.0");
    // The binary prints them.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tuned.yaml");
    std::fs::write(
        &file,
        TINY.replace("NAME", "tuned").replace(
            "interval: 100ms",
            "interval: 100ms\npolicy: { cooldown: 2s }",
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg(&file)
        .args(["--quiet", "--no-watch", "--out"])
        .arg(dir.path().join("report"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("settings that differ from the library's defaults:"),
        "{stdout}"
    );
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("policy.cooldown"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.ends_with("2s (default 30s)"), "{line}");
    assert!(!stdout.contains("policy.stabilisation_window"), "{stdout}");
}
