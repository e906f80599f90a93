//! `pipeline-stress`: runs a stress scenario (or the embedded default), shows the
//! controller adapt live, checks the scenario's expectations and writes a report.
//!
//! `pipeline-stress --help` lists the options. Exit code: 0 when every expectation
//! holds, 1 when one fails, 2 on usage errors. With `--serve ADDR` it serves the
//! control plane and a live dashboard instead, holding the load until stopped.

use clap::Parser;
use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use pipeline_tests::stress::cgroup::{self, MemoryCgroup};
use pipeline_tests::stress::report::default_report_dir;
use pipeline_tests::stress::run::STATUS_LEGEND;
use pipeline_tests::stress::serve::{ServeConfig, ServeError, serve};
use pipeline_tests::stress::{
    RunControl, RunOptions, RunResult, Scenario, evaluate, parse_bytes, run, write_report,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

/// Runs a stress scenario against a self-tuning pipeline and checks its bounds.
///
/// A workload with real payloads loads the pipeline while the controller grows and
/// shrinks its buffers and workers; a status line each second and every decision with
/// its reason are printed live. The run ends with a pass/fail table of the scenario's
/// bounds and a report folder (timeline.json/.csv, summary.json, SVG charts).
#[derive(Debug, Parser)]
#[command(
    name = "pipeline-stress",
    after_help = "Exit code: 0 when every bound holds, 1 when one fails, 2 on usage errors.\n\
                  Scenarios: tests/scenarios/*.yaml; without one, the embedded default \
                  (tests/scenarios/default.yaml)."
)]
struct Args {
    /// Scenario file (YAML). Without one, the embedded default scenario runs. Edit its
    /// patterns' `rate:` while it runs and the load follows.
    #[arg(value_name = "SCENARIO.yaml")]
    file: Option<PathBuf>,
    /// Compress time by the scenario's `quick` factor (5 unless it says otherwise):
    /// the duration, load shapes and controller windows; overrides --compress.
    #[arg(long)]
    quick: bool,
    /// Compress time by F (> 1 shortens): the duration, load shapes and controller
    /// windows, not the expectations' bounds.
    #[arg(long, value_name = "F", default_value_t = 1.0)]
    compress: f64,
    /// Run inside a real memory cgroup with this limit (e.g. 256MiB, 1GiB; needs root
    /// and a writable cgroup mount, else a loud SKIP and a run without it).
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes)]
    memory_limit: Option<u64>,
    /// Run the baseline: fixed buffers and workers, no rate limit, no controller.
    #[arg(long)]
    no_controller: bool,
    /// Write the report to DIR (default: TARGET/stress-report/SCENARIO, where TARGET
    /// is $CARGO_TARGET_DIR if set, else the workspace's target folder).
    #[arg(long, visible_alias = "report", value_name = "DIR")]
    out: Option<PathBuf>,
    /// Do not watch the scenario file for edits.
    #[arg(long)]
    no_watch: bool,
    /// Print no status lines or decisions while running, only the header and the
    /// final table.
    #[arg(long)]
    quiet: bool,
    /// Serve the control plane and a live dashboard on ADDR (e.g. 127.0.0.1:8080; port
    /// 0 picks a free one) and keep going after the scenario's duration with the load
    /// in force then, until Ctrl-C. The page shows rates, buffers, workers, memory,
    /// the mode and every decision, with a rate slider, the controller switch and a
    /// form for live parameters; POST /api/workload {"rate": R} sets the rate. No
    /// report is written and no bound checked.
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["memory_limit", "child_result"])]
    serve: Option<SocketAddr>,
    /// With --serve: require `Authorization: Bearer TOKEN` on every /api route
    /// (needed for an address other than loopback).
    #[arg(long, value_name = "TOKEN", requires = "serve")]
    token: Option<String>,
    /// Internal: the workload child of a cgroup run writes its result here.
    #[arg(long, value_name = "PATH", hide = true)]
    child_result: Option<PathBuf>,
}

impl Args {
    /// The arguments the cgroup run's child gets: the same run, told where to write.
    fn child_args(&self, result: &std::path::Path) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        if let Some(file) = &self.file {
            args.push(file.into());
        }
        for (on, flag) in [
            (self.quick, "--quick"),
            (self.no_controller, "--no-controller"),
            (self.no_watch, "--no-watch"),
            (self.quiet, "--quiet"),
        ] {
            if on {
                args.push(flag.into());
            }
        }
        args.extend(["--compress".into(), self.compress.to_string().into()]);
        if let Some(limit) = self.memory_limit {
            args.extend(["--memory-limit".into(), limit.to_string().into()]);
        }
        args.extend(["--child-result".into(), result.into()]);
        args
    }
}

fn load(a: &Args) -> Result<Scenario, String> {
    let mut s = match &a.file {
        Some(p) => Scenario::load(p).map_err(|e| e.to_string())?,
        None => Scenario::default_scenario(),
    };
    let factor = if a.quick { s.quick } else { a.compress };
    s.compress(factor);
    if let Some(l) = a.memory_limit {
        s.memory_limit = Some(l);
        s.cgroup = true;
    }
    if a.no_controller {
        s.controller = false;
    }
    Ok(s)
}

fn main() -> ExitCode {
    // Usage errors exit 2, --help and --version 0.
    let a = Args::parse();
    let scenario = match load(&a) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // The re-executed child inside the memory cgroup.
    if let Some(out) = &a.child_result {
        if let Err(e) = cgroup::join_if_child() {
            eprintln!("error: {e}");
            return ExitCode::from(3);
        }
        return match run_here(&a, &scenario, true) {
            Ok(r) => {
                let _ = std::fs::write(out, serde_json::to_vec(&r).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(3)
            }
        };
    }
    let report_dir = a
        .out
        .clone()
        .unwrap_or_else(|| default_report_dir(&scenario.name, scenario.controller));
    println!(
        "pipeline-stress: scenario {:?}, {:.0} s{}{}, controller {}{}",
        scenario.name,
        scenario.duration.as_secs_f64(),
        match if a.quick { scenario.quick } else { a.compress } {
            f if f > 1.0 => format!(" (time compressed {f}x)"),
            _ => String::new(),
        },
        if a.serve.is_some() {
            " then held until stopped"
        } else {
            ""
        },
        if scenario.controller {
            "on"
        } else {
            "OFF (baseline)"
        },
        scenario
            .memory_limit
            .map_or(String::new(), |l| format!(", memory limit {} MiB", l >> 20))
    );
    if !scenario.description.is_empty() {
        println!("  {}", scenario.description);
    }
    print!("{}", settings_header(&scenario));
    if !a.quiet {
        println!("{STATUS_LEGEND}");
    }
    if let Some(addr) = a.serve {
        return serve_here(&a, scenario, addr);
    }
    let (result, kernel) = if scenario.cgroup {
        let limit = scenario.memory_limit.expect("checked");
        match MemoryCgroup::create(&format!("pipeline-stress-{}", std::process::id()), limit) {
            Ok(group) => {
                println!(
                    "memory cgroup {} with a limit of {} MiB; running the workload in a child inside it",
                    group.dir().display(),
                    limit >> 20
                );
                let _ = std::fs::create_dir_all(&report_dir);
                let out = report_dir.join("child-result.json");
                let _ = std::fs::remove_file(&out);
                let exe = std::env::current_exe().expect("own executable");
                let args = a.child_args(&out);
                let status = std::process::Command::new(exe)
                    .args(&args)
                    .env(cgroup::JOIN_ENV, group.procs())
                    .status();
                let status_text = match status {
                    Ok(s) => {
                        use std::os::unix::process::ExitStatusExt;
                        match (s.code(), s.signal()) {
                            (_, Some(9)) => "killed by signal 9 (SIGKILL, OOM killer)".to_string(),
                            (_, Some(sig)) => format!("killed by signal {sig}"),
                            (Some(c), _) => format!("exit {c}"),
                            _ => "unknown".into(),
                        }
                    }
                    Err(e) => format!("could not start: {e}"),
                };
                std::thread::sleep(Duration::from_millis(200));
                let verdict = group.verdict(status_text);
                drop(group);
                let result: Option<RunResult> = std::fs::read(&out)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok());
                (result, Some(verdict))
            }
            Err(e) => {
                eprintln!(
                    "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
                );
                eprintln!("!!! SKIP: no writable memory cgroup ({e})");
                eprintln!("!!! running WITHOUT a kernel memory limit; the controller still works");
                eprintln!("!!! against the scenario's limit of {} MiB", limit >> 20);
                eprintln!(
                    "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
                );
                if std::env::var(cgroup::REQUIRE_ENV).is_ok_and(|v| v == "1") {
                    eprintln!("{}=1: a missing cgroup is a failure", cgroup::REQUIRE_ENV);
                    return ExitCode::FAILURE;
                }
                match run_here(&a, &scenario, false) {
                    Ok(r) => (Some(r), None),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
    } else {
        match run_here(&a, &scenario, false) {
            Ok(r) => (Some(r), None),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    let summary = evaluate(
        result.as_ref(),
        kernel.as_ref(),
        &scenario.expect,
        &scenario.name,
        scenario.controller,
    );
    print!("{}", summary.table());
    match write_report(&report_dir, result.as_ref(), &summary) {
        Ok(()) => println!(
            "report: {}",
            std::path::absolute(&report_dir)
                .unwrap_or(report_dir.clone())
                .display()
        ),
        Err(e) => eprintln!(
            "could not write the report to {}: {e}",
            report_dir.display()
        ),
    }
    if summary.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The controller and policy settings that differ from the library's defaults, one a
/// line, for the run's header.
fn settings_header(scenario: &Scenario) -> String {
    let differ = scenario.settings_differing_from_defaults();
    if differ.is_empty() {
        return "settings: the library's defaults\n".into();
    }
    let width = differ.iter().map(|d| d.field.len()).max().unwrap_or(0);
    let mut out = String::from("settings that differ from the library's defaults:\n");
    for d in differ {
        out.push_str(&format!(
            "  {:<width$}  {} (default {})\n",
            d.field, d.value, d.default
        ));
    }
    out
}

/// Runs in this process; with a scenario file, hot-reloads its patterns on edits.
fn run_here(a: &Args, scenario: &Scenario, in_cgroup: bool) -> Result<RunResult, String> {
    let (tx, rx) = mpsc::channel();
    let _watcher = watch_scenario(a, scenario, rx)?;
    let options = RunOptions {
        verbose: !a.quiet,
        in_cgroup,
        ..RunOptions::default()
    };
    run(scenario, &options, Some(tx)).map_err(|e| e.to_string())
}

/// `--serve`: the run behind the control plane and the dashboard until Ctrl-C (or
/// SIGTERM); with a scenario file, its edits are applied live too.
fn serve_here(a: &Args, scenario: Scenario, addr: SocketAddr) -> ExitCode {
    if scenario.cgroup {
        println!(
            "note: --serve runs in this process, without a memory cgroup; the controller works \
             against the scenario's limit of {} MiB",
            scenario.memory_limit.unwrap_or(0) >> 20
        );
    }
    let (tx, rx) = mpsc::channel();
    let _watcher = match watch_scenario(a, &scenario, rx) {
        Ok(watcher) => watcher,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut config = ServeConfig::new(addr).verbose(!a.quiet);
    if let Some(token) = &a.token {
        config = config.token(token.clone());
    }
    let served = match serve(scenario, config) {
        Ok(served) => served,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            return match e {
                ServeError::Exposed { .. } => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            };
        }
    };
    let _ = tx.send(served.control().clone());
    let signals = StopSignals::install();
    println!(
        "dashboard: {}  (API: {}api/status, {}api/workload, ...; Ctrl-C stops)",
        served.url(),
        served.url(),
        served.url()
    );
    match signals {
        Ok(signals) => signals.wait(),
        Err(e) => eprintln!("cannot wait for Ctrl-C ({e}); stopping now"),
    }
    println!("stopping: draining the pipeline (at most 5 s)");
    match served.stop() {
        Ok(r) => {
            println!(
                "stopped after {:.0} s: {} offered, {} published, {} handled, {} dropped, {} left, {} decisions",
                r.duration_s,
                r.offered,
                r.published,
                r.handled,
                r.dropped,
                r.left,
                r.decisions.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C (SIGINT) and SIGTERM, caught from the moment this is made: made before the
/// dashboard's address is printed, so a signal sent as soon as it is read stops the
/// run cleanly instead of killing the process.
struct StopSignals {
    runtime: tokio::runtime::Runtime,
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> std::io::Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (interrupt, terminate) = {
            let _context = runtime.enter();
            (
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
            )
        };
        Ok(StopSignals {
            runtime,
            interrupt,
            terminate,
        })
    }

    /// Blocks until one of them arrives.
    fn wait(mut self) {
        self.runtime.block_on(async {
            tokio::select! {
                _ = self.interrupt.recv() => {}
                _ = self.terminate.recv() => {}
            }
        });
    }
}

/// An error and its causes, `outer: cause: root`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

type ScenarioWatcher = notify_debouncer_full::Debouncer<
    notify::RecommendedWatcher,
    notify_debouncer_full::RecommendedCache,
>;

/// With a scenario file (and without --no-watch), watches it and applies its patterns
/// to the run whose control arrives on `controls`; the watch lasts while the returned
/// watcher lives.
fn watch_scenario(
    a: &Args,
    scenario: &Scenario,
    controls: mpsc::Receiver<RunControl>,
) -> Result<Option<ScenarioWatcher>, String> {
    let rx = controls;
    let mut _watcher = None;
    if let (Some(file), true) = (&a.file, !a.no_watch) {
        let file = std::fs::canonicalize(file).map_err(|e| e.to_string())?;
        let dir = file
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| ".".into());
        let (etx, erx) = mpsc::channel::<()>();
        let mut debouncer = new_debouncer(
            Duration::from_millis(300),
            None,
            move |res: DebounceEventResult| {
                if let Ok(events) = res
                    && events
                        .iter()
                        .any(|e| e.paths.iter().any(|p| p.file_name() == file.file_name()))
                {
                    let _ = etx.send(());
                }
            },
        )
        .map_err(|e| e.to_string())?;
        debouncer
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|e| e.to_string())?;
        _watcher = Some(debouncer);
        let path = a.file.clone().expect("some");
        let compress = if a.quick { scenario.quick } else { a.compress };
        std::thread::spawn(move || {
            let Ok(control) = rx.recv() else { return };
            while erx.recv().is_ok() {
                match Scenario::load(&path) {
                    Ok(mut s) => {
                        s.compress(compress);
                        control.update(&s.patterns);
                        let rates: Vec<String> = s
                            .patterns
                            .iter()
                            .map(|p| format!("{}={}/s", p.topic, p.rate))
                            .collect();
                        println!(
                            "  reload   {}: patterns updated live ({})",
                            path.display(),
                            rates.join(", ")
                        );
                    }
                    Err(e) => println!("  reload   {}: ignored, {e}", path.display()),
                }
            }
        });
    }
    Ok(_watcher)
}
