//! The end-of-run summary against the expectations, and the report folder: the
//! timeline as JSON and CSV, and SVG charts (plotters) with the decisions marked.

use super::run::{RunResult, Sample};
use super::scenario::Expectations;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

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

/// One checked bound.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    /// What is bounded.
    pub name: String,
    /// The bound, as text.
    pub bound: String,
    /// The measured value, as text.
    pub actual: String,
    /// Whether it held.
    pub pass: bool,
}

/// The verdict of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// Controller on or off.
    pub controller: bool,
    /// The checks.
    pub checks: Vec<Check>,
    /// Whether the bounds were expected to be violated (baseline).
    pub violations_expected: bool,
    /// The overall verdict.
    pub pass: bool,
    /// Facts shown next to the checks.
    pub facts: Vec<(String, String)>,
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
    let mut add = |name: &str, bound: String, actual: String, pass: bool| {
        checks.push(Check {
            name: name.into(),
            bound,
            actual,
            pass,
        })
    };
    let missing = "no result (child killed)".to_string();
    if let Some(b) = expect.max_loss {
        match result {
            Some(r) => add(
                "loss",
                format!("<= {:.2}%", b * 100.0),
                format!("{:.3}%", r.loss() * 100.0),
                r.loss() <= b,
            ),
            None => add(
                "loss",
                format!("<= {:.2}%", b * 100.0),
                missing.clone(),
                false,
            ),
        }
    }
    if let Some(b) = expect.max_peak_memory_share {
        let share = match (kernel, result) {
            (Some(k), r) if k.limit_bytes > 0 => {
                let own = r.map_or(0.0, |r| {
                    r.peak_memory_bytes as f64 / r.memory_limit.max(1) as f64
                });
                Some((k.peak_bytes as f64 / k.limit_bytes as f64).max(own))
            }
            (_, Some(r)) => Some(r.peak_memory_bytes as f64 / r.memory_limit.max(1) as f64),
            _ => None,
        };
        match share {
            Some(s) => add(
                "peak memory share",
                format!("<= {:.0}%", b * 100.0),
                format!("{:.1}%", s * 100.0),
                s <= b,
            ),
            None => add(
                "peak memory share",
                format!("<= {:.0}%", b * 100.0),
                missing.clone(),
                false,
            ),
        }
    }
    if let Some(b) = expect.max_p99_latency {
        match result {
            Some(r) => add(
                "p99 latency",
                format!("<= {:?}", b),
                format!("{:.3} s", r.p99_s),
                r.p99_s <= b.as_secs_f64(),
            ),
            None => add("p99 latency", format!("<= {:?}", b), missing.clone(), false),
        }
    }
    if let Some(b) = expect.max_settling_time {
        match result {
            Some(r) => add(
                "settling time",
                format!("<= {:?}", b),
                format!("{:.2} s", r.settling_s),
                r.settling_s <= b.as_secs_f64(),
            ),
            None => add(
                "settling time",
                format!("<= {:?}", b),
                missing.clone(),
                false,
            ),
        }
    }
    if let Some(b) = expect.max_reversals {
        match result {
            Some(r) => add(
                "reversals",
                format!("<= {b}"),
                r.reversals.to_string(),
                r.reversals <= b,
            ),
            None => add("reversals", format!("<= {b}"), missing.clone(), false),
        }
    }
    if let Some(b) = expect.min_decisions {
        match result {
            Some(r) => add(
                "decisions",
                format!(">= {b}"),
                r.decisions.len().to_string(),
                r.decisions.len() as u64 >= b,
            ),
            None => add("decisions", format!(">= {b}"), missing.clone(), false),
        }
    }
    if let Some(b) = expect.max_oom_kills {
        match kernel {
            Some(k) => add(
                "OOM kills (kernel)",
                format!("<= {b}"),
                k.oom_kills.to_string(),
                k.oom_kills <= b,
            ),
            None => add(
                "OOM kills (kernel)",
                format!("<= {b}"),
                "no cgroup".into(),
                true,
            ),
        }
    }
    let all = checks.iter().all(|c| c.pass);
    let pass = if expect.violations_expected {
        !all
    } else {
        all
    };
    let mut facts = Vec::new();
    if let Some(r) = result {
        facts.push((
            "offered / published / handled".into(),
            format!("{} / {} / {}", r.offered, r.published, r.handled),
        ));
        facts.push((
            "dropped / left in buffers after the drain deadline".into(),
            format!("{} / {}", r.dropped, r.left),
        ));
        facts.push((
            "unserved (publisher held back)".into(),
            format!(
                "{} ({:.1}% of offered)",
                r.unpublished,
                r.unserved() * 100.0
            ),
        ));
        facts.push((
            "p50 / p99 latency".into(),
            format!("{:.3} s / {:.3} s", r.p50_s, r.p99_s),
        ));
        facts.push((
            "peak RSS / limit".into(),
            format!("{} / {}", mib(r.peak_memory_bytes), mib(r.memory_limit)),
        ));
        facts.push(("decisions".into(), r.decisions.len().to_string()));
    }
    if let Some(k) = kernel {
        facts.push((
            format!("kernel ({}) peak / limit", k.version),
            format!("{} / {}", mib(k.peak_bytes), mib(k.limit_bytes)),
        ));
        facts.push((
            "kernel OOM kills / limit hits".into(),
            format!("{} / {}", k.oom_kills, k.limit_hits),
        ));
        facts.push(("child".into(), k.child_status.clone()));
    }
    Summary {
        scenario: scenario.into(),
        controller,
        checks,
        violations_expected: expect.violations_expected,
        pass,
        facts,
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
                c.bound,
                c.actual,
                if c.pass { "pass" } else { "FAIL" }
            );
        }
        for (k, v) in &self.facts {
            let _ = writeln!(out, "  {k}: {v}");
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
    let marks: Vec<f64> = r.decisions.iter().map(|d| d.t).collect();
    let f = |g: fn(&Sample) -> f64| r.timeline.iter().map(|s| (s.t, g(s))).collect::<Vec<_>>();
    let charts: Vec<Chart<'_>> = vec![
        (
            "rate",
            "Offered and published rate (events/s)",
            vec![
                ("offered", f(|s| s.offered_rate)),
                ("published", f(|s| s.publish_rate)),
                ("rate limit", f(|s| s.rate_limit.unwrap_or(0.0))),
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

/// File name, title, named series of `(t, value)` points.
type Chart<'a> = (&'a str, &'a str, Vec<(&'a str, Vec<(f64, f64)>)>);

/// The series' colours, in order (matplotlib's first four); orange marks decisions.
const SERIES_COLORS: [RGBColor; 4] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
];
const DECISION_COLOR: RGBColor = RGBColor(0xff, 0x7f, 0x0e);
/// Width and height of a chart, pixels.
const CHART_SIZE: (u32, u32) = (960, 360);
/// Height of the title and legend rows above the plot, pixels.
const HEADER_HEIGHT: u32 = 58;

/// One line chart as standalone SVG, drawn with plotters: a title, a legend row naming
/// each series next to its colour, the series against time (seconds, from 0 to
/// `x_max` or the last point), and each decision as a thin orange vertical line.
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
    series: &[(&str, Vec<(f64, f64)>)],
    marks: &[f64],
    x_max: f64,
) -> std::io::Result<String> {
    let mut svg = String::new();
    draw_chart(&mut svg, title, series, marks, x_max)
        .map_err(|e| std::io::Error::other(format!("chart {title:?}: {e}")))?;
    Ok(svg)
}

fn draw_chart(
    svg: &mut String,
    title: &str,
    series: &[(&str, Vec<(f64, f64)>)],
    marks: &[f64],
    x_max: f64,
) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    let x_max = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .fold(x_max, f64::max)
        .max(1e-9);
    let y_max = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
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
        .map(|(i, (name, _))| (name.to_string(), color(i).stroke_width(2), false))
        .chain((!marks.is_empty()).then(|| {
            let text = format!("decisions ({})", marks.len());
            (text, DECISION_COLOR.stroke_width(2), true)
        }));
    for (text, style, vertical) in entries {
        let swatch = if vertical {
            vec![(x + 11, y - 7), (x + 11, y + 7)]
        } else {
            vec![(x, y), (x + 22, y)]
        };
        header.draw(&PathElement::new(swatch, style))?;
        let width = header.estimate_text_size(&text, &label)?.0 as i32;
        header.draw(&Text::new(text, (x + 28, y), label.clone()))?;
        x += 28 + width + 28;
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
    chart.draw_series(marks.iter().map(|&t| {
        PathElement::new(
            vec![(t, 0.0), (t, y_max)],
            DECISION_COLOR.mix(0.45).stroke_width(1),
        )
    }))?;
    for (i, (_, points)) in series.iter().enumerate() {
        chart.draw_series(LineSeries::new(
            points.iter().copied(),
            color(i).stroke_width(2),
        ))?;
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
