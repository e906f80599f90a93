//! The end-of-run summary against the expectations, and the report folder: the
//! timeline as JSON and CSV, and SVG charts (plotters) with the decisions marked.

use super::run::{RunResult, Sample};
use super::scenario::Expectations;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What the kernel said about a cgroup run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KernelVerdict {
    /// `v1` or `v2`.
    pub version: String,
    /// The cgroup's limit, bytes.
    pub limit_bytes: u64,
    /// Peak usage the kernel recorded, bytes.
    pub peak_bytes: u64,
    /// OOM kills in the cgroup.
    pub oom_kills: u64,
    /// Times usage hit the limit (v1 `memory.failcnt` or `memory.memsw.failcnt`,
    /// v2 `max` events).
    pub limit_hits: u64,
    /// How the child ended (`exit 0`, `killed by signal 9`).
    pub child_status: String,
}

/// One checked bound, in numbers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    /// What is bounded (`loss`, `p99 latency`, ...).
    pub name: String,
    /// `<=` (a most) or `>=` (a least).
    pub op: String,
    /// The bound, in `unit`.
    pub bound: f64,
    /// The measured value, in `unit`; `None` when there is none (see `note`).
    pub actual: Option<f64>,
    /// `share` (0 to 1), `seconds` or `count`.
    pub unit: String,
    /// Why there is no measured value (`no result (child killed)`, `no cgroup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Whether it held.
    pub pass: bool,
}

impl Check {
    fn new(name: &str, op: &str, bound: f64, unit: &str) -> Self {
        Check {
            name: name.into(),
            op: op.into(),
            bound,
            actual: None,
            unit: unit.into(),
            note: None,
            pass: false,
        }
    }

    /// Checks `actual` against the bound.
    fn measured(mut self, actual: f64) -> Self {
        self.pass = match self.op.as_str() {
            ">=" => actual >= self.bound,
            _ => actual <= self.bound,
        };
        self.actual = Some(actual);
        self
    }

    /// No value: `pass` says whether that counts as holding.
    fn missing(mut self, note: &str, pass: bool) -> Self {
        self.note = Some(note.into());
        self.pass = pass;
        self
    }

    /// The bound as the table shows it (`<= 0.00%`, `<= 5 s`, `>= 3`).
    pub fn bound_text(&self) -> String {
        format!("{} {}", self.op, self.format(self.bound, false))
    }

    /// The measured value as the table shows it.
    pub fn actual_text(&self) -> String {
        match (self.actual, &self.note) {
            (Some(v), _) => self.format(v, true),
            (None, Some(note)) => note.clone(),
            (None, None) => "-".into(),
        }
    }

    fn format(&self, v: f64, precise: bool) -> String {
        match (self.unit.as_str(), precise) {
            ("share", false) if self.name == "loss" => format!("{:.2}%", v * 100.0),
            ("share", false) => format!("{:.0}%", v * 100.0),
            ("share", true) if self.name == "loss" => format!("{:.3}%", v * 100.0),
            ("share", true) => format!("{:.1}%", v * 100.0),
            ("seconds", false) => format!("{} s", fmt_bound_secs(v)),
            ("seconds", true) if self.name == "settling time" => format!("{v:.2} s"),
            ("seconds", true) => format!("{v:.3} s"),
            _ => format!("{v:.0}"),
        }
    }
}

/// A bound in seconds without trailing zeros: `5`, `0.5`, `0.000001`.
fn fmt_bound_secs(v: f64) -> String {
    let s = format!("{v:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// What happened to the events of a run, counted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Events {
    /// Arrivals the workload generated.
    pub offered: u64,
    /// Events the bus accepted.
    pub published: u64,
    /// Events the handlers took (ok or failed).
    pub handled: u64,
    /// Handler failures among them.
    pub failed: u64,
    /// Events dropped by buffers.
    pub dropped: u64,
    /// Events still buffered when the drain deadline passed.
    pub left: u64,
    /// Arrivals never published (the publisher was held back until the end).
    pub unpublished: u64,
}

/// End-to-end latency quantiles, from the scheduled arrival.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    /// Median, seconds.
    pub p50_s: f64,
    /// 99th percentile, seconds.
    pub p99_s: f64,
    /// 99th percentile of the arrivals within the scenario's `latency_window`
    /// (after a start or a step has settled), seconds; null without one.
    pub p99_window_s: Option<f64>,
}

/// The process's memory against the limit.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Memory {
    /// Peak resident set size the run sampled, bytes.
    pub peak_rss_bytes: u64,
    /// The limit the controller worked against, bytes.
    pub limit_bytes: u64,
}

/// The knobs at the end of the load phase (the last timeline sample).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EndState {
    /// Seconds since the start.
    pub t_s: f64,
    /// Buffered events, all stages.
    pub buffer_len: u64,
    /// Buffer capacity, all stages.
    pub buffer_capacity: u64,
    /// Workers, all stages.
    pub workers: u64,
    /// The controller's mode.
    pub mode: String,
}

/// The verdict of a run, every figure a number (`summary.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// Controller on or off.
    pub controller: bool,
    /// The overall verdict.
    pub pass: bool,
    /// Whether the bounds were expected to be violated (baseline).
    pub violations_expected: bool,
    /// The checks.
    pub checks: Vec<Check>,
    /// Length of the load phase, seconds (none without a result).
    pub duration_s: Option<f64>,
    /// What happened to the events.
    pub events: Option<Events>,
    /// Latency quantiles.
    pub latency: Option<Latency>,
    /// Memory against the limit.
    pub memory: Option<Memory>,
    /// Decision log records (actions, mode changes, holds, refusals).
    pub decisions: Option<u64>,
    /// Those that changed a knob or the mode: the charts' markers.
    pub changes: Option<u64>,
    /// The knobs at the end of the run.
    pub end: Option<EndState>,
    /// What the kernel said, for a run in a memory cgroup.
    pub kernel: Option<KernelVerdict>,
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / 1048576.0)
}

/// Checks `result` (and the kernel's verdict, if any) against `expect`.
pub fn evaluate(
    result: Option<&RunResult>,
    kernel: Option<&KernelVerdict>,
    expect: &Expectations,
    scenario: &str,
    controller: bool,
) -> Summary {
    let mut checks = Vec::new();
    let killed = "no result (child killed)";
    let mut add = |check: Check, value: Option<f64>| {
        checks.push(match value {
            Some(v) => check.measured(v),
            None => check.missing(killed, false),
        })
    };
    let r = result;
    if let Some(b) = expect.max_loss {
        add(Check::new("loss", "<=", b, "share"), r.map(|r| r.loss()));
    }
    if let Some(b) = expect.max_peak_memory_share {
        let own = r.map(|r| r.peak_memory_bytes as f64 / r.memory_limit.max(1) as f64);
        // The kernel's peak counts, and so does ours if it is higher.
        let share = match kernel {
            Some(k) if k.limit_bytes > 0 => {
                Some((k.peak_bytes as f64 / k.limit_bytes as f64).max(own.unwrap_or(0.0)))
            }
            _ => own,
        };
        add(Check::new("peak memory share", "<=", b, "share"), share);
    }
    if let Some(b) = expect.max_p99_latency {
        add(
            Check::new("p99 latency", "<=", b.as_secs_f64(), "seconds"),
            r.map(|r| r.p99_s),
        );
    }
    if let Some(b) = expect.max_settling_time {
        add(
            Check::new("settling time", "<=", b.as_secs_f64(), "seconds"),
            r.map(|r| r.settling_s),
        );
    }
    if let Some(b) = expect.max_reversals {
        add(
            Check::new("reversals", "<=", b as f64, "count"),
            r.map(|r| r.reversals as f64),
        );
    }
    if let Some(b) = expect.min_decisions {
        add(
            Check::new("decisions", ">=", b as f64, "count"),
            r.map(|r| r.decisions.len() as f64),
        );
    }
    let last = r.and_then(|r| r.timeline.last());
    if let Some(b) = expect.max_final_capacity {
        add(
            Check::new("final buffer capacity", "<=", b as f64, "count"),
            last.map(|s| s.buffer_capacity as f64),
        );
    }
    if let Some(b) = expect.max_final_workers {
        add(
            Check::new("final workers", "<=", b as f64, "count"),
            last.map(|s| s.workers as f64),
        );
    }
    if let Some(b) = expect.max_oom_kills {
        let check = Check::new("OOM kills (kernel)", "<=", b as f64, "count");
        checks.push(match kernel {
            Some(k) => check.measured(k.oom_kills as f64),
            None => check.missing("no cgroup", true),
        });
    }
    let all = checks.iter().all(|c| c.pass);
    let pass = if expect.violations_expected {
        !all
    } else {
        all
    };
    Summary {
        scenario: scenario.into(),
        controller,
        pass,
        violations_expected: expect.violations_expected,
        checks,
        duration_s: result.map(|r| r.duration_s),
        events: result.map(|r| Events {
            offered: r.offered,
            published: r.published,
            handled: r.handled,
            failed: r.failed,
            dropped: r.dropped,
            left: r.left,
            unpublished: r.unpublished,
        }),
        latency: result.map(|r| Latency {
            p50_s: r.p50_s,
            p99_s: r.p99_s,
            p99_window_s: r.p99_window_s,
        }),
        memory: result.map(|r| Memory {
            peak_rss_bytes: r.peak_memory_bytes,
            limit_bytes: r.memory_limit,
        }),
        decisions: result.map(|r| r.decisions.len() as u64),
        changes: result.map(|r| r.decisions.iter().filter(|d| d.is_change()).count() as u64),
        end: result.and_then(|r| r.timeline.last()).map(|s| EndState {
            t_s: s.t,
            buffer_len: s.buffer_len,
            buffer_capacity: s.buffer_capacity,
            workers: s.workers,
            mode: s.mode.clone(),
        }),
        kernel: kernel.cloned(),
    }
}

impl Summary {
    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n== {} (controller {}) ==",
            self.scenario,
            if self.controller { "on" } else { "off" }
        );
        let _ = writeln!(
            out,
            "{:<22} {:>14} {:>26}  result",
            "bound", "expected", "actual"
        );
        for c in &self.checks {
            let _ = writeln!(
                out,
                "{:<22} {:>14} {:>26}  {}",
                c.name,
                c.bound_text(),
                c.actual_text(),
                if c.pass { "pass" } else { "FAIL" }
            );
        }
        if let Some(e) = &self.events {
            let _ = writeln!(
                out,
                "  offered / published / handled: {} / {} / {}",
                e.offered, e.published, e.handled
            );
            let _ = writeln!(
                out,
                "  dropped / left in buffers after the drain deadline: {} / {}",
                e.dropped, e.left
            );
            let unserved = if e.offered == 0 {
                0.0
            } else {
                e.unpublished as f64 / e.offered as f64
            };
            let _ = writeln!(
                out,
                "  unserved (publisher held back): {} ({:.1}% of offered)",
                e.unpublished,
                unserved * 100.0
            );
        }
        if let Some(l) = &self.latency {
            let _ = writeln!(
                out,
                "  p50 / p99 latency: {:.3} s / {:.3} s",
                l.p50_s, l.p99_s
            );
            if let Some(p99) = l.p99_window_s {
                let _ = writeln!(out, "  p99 latency within the latency window: {p99:.3} s");
            }
        }
        if let Some(m) = &self.memory {
            let _ = writeln!(
                out,
                "  peak RSS / limit: {} / {}",
                mib(m.peak_rss_bytes),
                mib(m.limit_bytes)
            );
        }
        if let Some(d) = self.decisions {
            let _ = writeln!(
                out,
                "  decisions: {d} ({} changed a knob or the mode, the rest held or refused)",
                self.changes.unwrap_or(0)
            );
        }
        if let Some(e) = &self.end {
            let _ = writeln!(
                out,
                "  at the end ({:.1} s): buffer {}/{}, workers {}, mode {}",
                e.t_s, e.buffer_len, e.buffer_capacity, e.workers, e.mode
            );
        }
        if let Some(k) = &self.kernel {
            let _ = writeln!(
                out,
                "  kernel ({}) peak / limit: {} / {}",
                k.version,
                mib(k.peak_bytes),
                mib(k.limit_bytes)
            );
            let _ = writeln!(
                out,
                "  kernel OOM kills / limit hits: {} / {}",
                k.oom_kills, k.limit_hits
            );
            let _ = writeln!(out, "  child: {}", k.child_status);
        }
        if self.violations_expected {
            let _ = writeln!(
                out,
                "  (baseline: the run passes when at least one bound is violated)"
            );
        }
        let _ = writeln!(out, "VERDICT: {}", if self.pass { "PASS" } else { "FAIL" });
        out
    }
}

/// The environment variable that moves cargo's target directory.
pub const TARGET_DIR_ENV: &str = "CARGO_TARGET_DIR";

/// The cargo target directory reports go under: `target_dir_env` (the value of
/// `CARGO_TARGET_DIR`; relative to the current directory, as cargo takes it) when set
/// and not empty, else the workspace's `target` folder.
///
/// # Examples
///
/// ```
/// use pipeline_tests::stress::report::cargo_target_dir;
/// use std::path::{Path, PathBuf};
///
/// assert_eq!(cargo_target_dir(Some("/tmp/t".as_ref())), Path::new("/tmp/t"));
/// assert!(cargo_target_dir(None).ends_with("target"));
/// ```
pub fn cargo_target_dir(target_dir_env: Option<&std::ffi::OsStr>) -> PathBuf {
    match target_dir_env {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap_or(Path::new(env!("CARGO_MANIFEST_DIR")))
            .join("target"),
    }
}

/// Where a run's report goes without `--out`: `<target>/stress-report/<scenario>`, with
/// `-off` appended for a run without the controller; `<target>` is
/// [`cargo_target_dir`] of this process's `CARGO_TARGET_DIR`.
pub fn default_report_dir(scenario: &str, controller: bool) -> PathBuf {
    let env = std::env::var_os(TARGET_DIR_ENV);
    cargo_target_dir(env.as_deref())
        .join("stress-report")
        .join(format!(
            "{scenario}{}",
            if controller { "" } else { "-off" }
        ))
}

/// Writes `timeline.json`, `timeline.csv`, `summary.json` and the SVG charts.
pub fn write_report(
    dir: &Path,
    result: Option<&RunResult>,
    summary: &Summary,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(summary)?,
    )?;
    let Some(r) = result else { return Ok(()) };
    std::fs::write(dir.join("timeline.json"), serde_json::to_string_pretty(r)?)?;
    let mut csv = String::from(
        "t,offered_rate,publish_rate,rate_limit,buffer_len,buffer_capacity,workers,memory_bytes,memory_limit,dropped,backlog,max_saturation,mode\n",
    );
    for s in &r.timeline {
        let _ = writeln!(
            csv,
            "{:.3},{:.1},{:.1},{},{},{},{},{},{},{},{},{:.3},{}",
            s.t,
            s.offered_rate,
            s.publish_rate,
            s.rate_limit.map_or(String::new(), |v| format!("{v:.1}")),
            s.buffer_len,
            s.buffer_capacity,
            s.workers,
            s.memory_bytes,
            s.memory_limit,
            s.dropped,
            s.backlog,
            s.max_saturation,
            s.mode
        );
    }
    std::fs::write(dir.join("timeline.csv"), csv)?;
    let several_stages = {
        let mut knobs: Vec<&str> = r
            .decisions
            .iter()
            .filter_map(|d| d.knob.as_deref()?.split_once(' ').map(|k| k.1))
            .collect();
        knobs.sort_unstable();
        knobs.dedup();
        knobs.len() > 1
    };
    let marks: Vec<Mark> = r
        .decisions
        .iter()
        .filter(|d| d.is_change())
        .map(|d| Mark {
            t: d.t,
            label: d.label(several_stages),
        })
        .collect();
    let f = |g: fn(&Sample) -> f64| {
        r.timeline
            .iter()
            .map(|s| (s.t, Some(g(s))))
            .collect::<Vec<_>>()
    };
    let charts: Vec<Chart<'_>> = vec![
        (
            "rate",
            "Offered and published rate (events/s)",
            vec![
                ("offered", f(|s| s.offered_rate)),
                ("published", f(|s| s.publish_rate)),
                (
                    "rate limit",
                    r.timeline.iter().map(|s| (s.t, s.rate_limit)).collect(),
                ),
            ],
        ),
        (
            "buffer",
            "Buffer length and capacity (events)",
            vec![
                ("length", f(|s| s.buffer_len as f64)),
                ("capacity", f(|s| s.buffer_capacity as f64)),
            ],
        ),
        (
            "workers",
            "Workers",
            vec![("workers", f(|s| s.workers as f64))],
        ),
        (
            "memory",
            "Memory against the limit (MiB)",
            vec![
                ("used", f(|s| s.memory_bytes as f64 / 1048576.0)),
                ("limit", f(|s| s.memory_limit as f64 / 1048576.0)),
            ],
        ),
        (
            "publish",
            "Publish rate (events/s) and publisher backlog",
            vec![
                ("published", f(|s| s.publish_rate)),
                ("backlog", f(|s| s.backlog as f64)),
            ],
        ),
        (
            "drops",
            "Dropped events (cumulative)",
            vec![("dropped", f(|s| s.dropped as f64))],
        ),
    ];
    for (file, title, series) in charts {
        std::fs::write(
            dir.join(format!("{file}.svg")),
            svg_chart(
                &format!("{} - {}", r.scenario, title),
                &series,
                &marks,
                r.duration_s,
            )?,
        )?;
    }
    Ok(())
}

/// A decision marked on a chart: a vertical line at `t` (seconds) with `label` beside
/// it.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    /// Seconds since the start.
    pub t: f64,
    /// What the decision did (`grow-buffer → 3953`, `mode defensive`).
    pub label: String,
}

/// A chart's series: a name and `(t, value)` points, `None` where the value is absent
/// (no rate limit set): the line has a gap there.
pub type Series<'a> = (&'a str, Vec<(f64, Option<f64>)>);

/// File name, title, series.
type Chart<'a> = (&'a str, &'a str, Vec<Series<'a>>);

/// The series' colours, in order (matplotlib's first four); orange marks decisions.
const SERIES_COLORS: [RGBColor; 4] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
];
const DECISION_COLOR: RGBColor = RGBColor(0xff, 0x7f, 0x0e);
/// The decision labels' colour: the markers' orange, darkened to read as text.
const DECISION_TEXT_COLOR: RGBColor = RGBColor(0xa8, 0x4f, 0x00);
/// Width and height of a chart, pixels.
const CHART_SIZE: (u32, u32) = (960, 360);
/// Height of the title and legend rows above the plot, pixels.
const HEADER_HEIGHT: u32 = 58;
/// The decision labels' font size (plotters' units: 13 gives 10.5 px).
const LABEL_FONT: f64 = 13.0;
/// Markers closer than this (pixels) share one label.
const LABEL_SPACING: i32 = 14;
/// Most labels one group of close markers lists before `+N more`.
const LABELS_PER_GROUP: usize = 2;

/// One line chart as standalone SVG, drawn with plotters: a title, a legend row naming
/// each series next to its colour, the series against time (seconds, from 0 to
/// `x_max` or the last point), and each decision as a thin orange vertical line with
/// its label written along it (markers closer than a label's height share one label).
/// A series with no value at all is named in the legend as `<name>: none` and not
/// drawn; one with gaps is drawn as separate lines.
///
/// No font is loaded: plotters' SVG backend writes text as SVG `<text>` in
/// `sans-serif` for the viewer to render, and without its `ttf`/`ab_glyph` features
/// plotters lays text out from an estimated glyph width.
///
/// # Errors
///
/// What plotters reports (in practice never: it draws into a `String`).
pub fn svg_chart(
    title: &str,
    series: &[Series<'_>],
    marks: &[Mark],
    x_max: f64,
) -> std::io::Result<String> {
    let mut svg = String::new();
    draw_chart(&mut svg, title, series, marks, x_max)
        .map_err(|e| std::io::Error::other(format!("chart {title:?}: {e}")))?;
    Ok(svg)
}

/// The runs of consecutive present values of a series.
fn segments(points: &[(f64, Option<f64>)]) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut current = Vec::new();
    for &(t, v) in points {
        match v {
            Some(v) => current.push((t, v)),
            None if !current.is_empty() => out.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Groups marks (sorted by time) whose pixel positions are closer than
/// [`LABEL_SPACING`]; each group is labelled once, at its first mark.
fn label_groups(marks: &[Mark], px: impl Fn(f64) -> i32) -> Vec<(f64, String)> {
    let mut sorted: Vec<&Mark> = marks.iter().collect();
    sorted.sort_by(|a, b| a.t.total_cmp(&b.t));
    let mut groups: Vec<(f64, i32, Vec<&str>)> = Vec::new();
    for m in sorted {
        let x = px(m.t);
        match groups.last_mut() {
            Some((_, last_x, labels)) if x - *last_x < LABEL_SPACING => {
                labels.push(&m.label);
                *last_x = x;
            }
            _ => groups.push((m.t, x, vec![&m.label])),
        }
    }
    groups
        .into_iter()
        .map(|(t, _, labels)| {
            let mut text = labels
                .iter()
                .take(LABELS_PER_GROUP)
                .copied()
                .collect::<Vec<_>>()
                .join(", ");
            if labels.len() > LABELS_PER_GROUP {
                text.push_str(&format!(", +{} more", labels.len() - LABELS_PER_GROUP));
            }
            (t, text)
        })
        .collect()
}

fn draw_chart(
    svg: &mut String,
    title: &str,
    series: &[Series<'_>],
    marks: &[Mark],
    x_max: f64,
) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    let x_max = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .fold(x_max, f64::max)
        .max(1e-9);
    let y_max = series
        .iter()
        .flat_map(|s| s.1.iter().filter_map(|p| p.1))
        .fold(0.0, f64::max);
    let y_max = if y_max <= 0.0 { 1.0 } else { y_max * 1.1 };
    let color = |i: usize| SERIES_COLORS[i % SERIES_COLORS.len()];
    // Plotters writes `font-size` as size / 1.24: 22 gives a 17.7 px title.
    let font = |size: f64| TextStyle::from(("sans-serif", size).into_font()).color(&BLACK);

    let root = SVGBackend::with_string(svg, CHART_SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let (header, body) = root.split_vertically(HEADER_HEIGHT);
    header.draw(&Text::new(
        title.to_owned(),
        (CHART_SIZE.0 as i32 / 2, 8),
        font(22.0).pos(Pos::new(HPos::Center, VPos::Top)),
    ))?;
    // The legend: a row under the title, so it never covers the data.
    let label = font(17.0).pos(Pos::new(HPos::Left, VPos::Center));
    let (mut x, y) = (80, 44);
    let entries = series
        .iter()
        .enumerate()
        .map(|(i, (name, points))| {
            if points.iter().any(|p| p.1.is_some()) {
                (name.to_string(), Some((color(i).stroke_width(2), false)))
            } else {
                (format!("{name}: none"), None)
            }
        })
        .chain((!marks.is_empty()).then(|| {
            let text = format!("decisions ({})", marks.len());
            (text, Some((DECISION_COLOR.stroke_width(2), true)))
        }));
    for (text, swatch) in entries {
        let mut text_x = x;
        if let Some((style, vertical)) = swatch {
            let points = if vertical {
                vec![(x + 11, y - 7), (x + 11, y + 7)]
            } else {
                vec![(x, y), (x + 22, y)]
            };
            header.draw(&PathElement::new(points, style))?;
            text_x += 28;
        }
        let width = header.estimate_text_size(&text, &label)?.0 as i32;
        header.draw(&Text::new(text, (text_x, y), label.clone()))?;
        x = text_x + width + 28;
    }

    let mut chart = ChartBuilder::on(&body)
        .margin_left(10)
        .margin_right(24)
        .margin_bottom(6)
        .x_label_area_size(34)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(0xe4, 0xe4, 0xe4))
        .x_labels(9)
        .y_labels(5)
        .label_style(font(16.0))
        .x_label_formatter(&|t| fmt_secs(*t))
        .y_label_formatter(&|v| fmt_num(*v))
        .draw()?;
    chart.draw_series(marks.iter().map(|m| {
        PathElement::new(
            vec![(m.t, 0.0), (m.t, y_max)],
            DECISION_COLOR.mix(0.45).stroke_width(1),
        )
    }))?;
    // The labels: along each marker, reading downwards from the top of the plot, on
    // the marker's right; under the series, so no data is hidden.
    let label_style = TextStyle::from(
        ("sans-serif", LABEL_FONT)
            .into_font()
            .transform(FontTransform::Rotate90),
    )
    .color(&DECISION_TEXT_COLOR)
    .pos(Pos::new(HPos::Left, VPos::Bottom));
    let (top, bottom) = (
        chart.backend_coord(&(0.0, y_max)).1,
        chart.backend_coord(&(0.0, 0.0)).1,
    );
    // Characters that fit along the plot's height (a glyph is ~0.55 em wide).
    let fits = (((bottom - top - 8).max(0) as f64) / (LABEL_FONT / 1.24 * 0.55)) as usize;
    for (t, text) in label_groups(marks, |t| chart.backend_coord(&(t, 0.0)).0) {
        let text = if text.chars().count() > fits {
            let mut cut: String = text.chars().take(fits.saturating_sub(1)).collect();
            cut.push('\u{2026}');
            cut
        } else {
            text
        };
        chart
            .plotting_area()
            .draw(&(EmptyElement::at((t, y_max)) + Text::new(text, (3, 4), label_style.clone())))?;
    }
    for (i, (_, points)) in series.iter().enumerate() {
        for segment in segments(points) {
            chart.draw_series(LineSeries::new(segment, color(i).stroke_width(2)))?;
        }
    }
    root.present()
}

/// A time-axis label: whole seconds, or tenths when the ticks are closer.
fn fmt_secs(t: f64) -> String {
    let tenths = (t * 10.0).round();
    if tenths % 10.0 == 0.0 {
        format!("{:.0} s", tenths / 10.0)
    } else {
        format!("{:.1} s", tenths / 10.0)
    }
}

fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else {
        // 0.50 -> 0.5, 2.00 -> 2
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}
