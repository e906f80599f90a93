//! `pipeline-stress`: runs a stress scenario (or the embedded default), shows the
//! controller adapt live, checks the scenario's expectations and writes a report.
//!
//! ```text
//! pipeline-stress [SCENARIO.yaml] [--quick] [--compress F] [--memory-limit 256MiB]
//!                 [--no-controller] [--report DIR] [--no-watch] [--quiet]
//! ```
//!
//! Exit code: 0 when every expectation holds, 1 when one fails, 2 on usage errors.

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use pipeline_tests::stress::cgroup::{self, MemoryCgroup};
use pipeline_tests::stress::{
    RunOptions, RunResult, Scenario, evaluate, parse_bytes, run, write_report,
};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

const USAGE: &str = "usage: pipeline-stress [SCENARIO.yaml] [--quick] [--compress F] [--memory-limit SIZE] [--no-controller] [--report DIR] [--no-watch] [--quiet]";

#[derive(Default)]
struct Args {
    file: Option<PathBuf>,
    compress: f64,
    quick: bool,
    memory_limit: Option<u64>,
    no_controller: bool,
    report: Option<PathBuf>,
    watch: bool,
    quiet: bool,
    child_result: Option<PathBuf>,
    raw: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        compress: 1.0,
        watch: true,
        ..Args::default()
    };
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut it = raw.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--quick" => a.quick = true,
            "--compress" => {
                a.compress = value("--compress")?
                    .parse()
                    .map_err(|_| "--compress: a number")?
            }
            "--memory-limit" => a.memory_limit = Some(parse_bytes(&value("--memory-limit")?)?),
            "--no-controller" => a.no_controller = true,
            "--report" => a.report = Some(value("--report")?.into()),
            "--no-watch" => a.watch = false,
            "--quiet" => a.quiet = true,
            "--child-result" => a.child_result = Some(value("--child-result")?.into()),
            "-h" | "--help" => return Err(USAGE.into()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}\n{USAGE}")),
            s => a.file = Some(s.into()),
        }
    }
    a.raw = raw;
    Ok(a)
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
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
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
    let report_dir = a.report.clone().unwrap_or_else(|| {
        PathBuf::from("target/stress-report").join(format!(
            "{}{}",
            scenario.name,
            if scenario.controller { "" } else { "-off" }
        ))
    });
    println!(
        "pipeline-stress: scenario {:?} ({}), {:.0} s, controller {}{}",
        scenario.name,
        scenario.description,
        scenario.duration.as_secs_f64(),
        if scenario.controller {
            "on"
        } else {
            "OFF (baseline)"
        },
        scenario
            .memory_limit
            .map_or(String::new(), |l| format!(", memory limit {} MiB", l >> 20))
    );
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
                let mut args = a.raw.clone();
                args.extend(["--child-result".into(), out.display().to_string()]);
                if scenario.cgroup && a.memory_limit.is_none() {
                    // The file asked for the cgroup; the child reads the same file.
                }
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
        Ok(()) => println!("report: {}", report_dir.display()),
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

/// Runs in this process; with a scenario file, hot-reloads its patterns on edits.
fn run_here(a: &Args, scenario: &Scenario, in_cgroup: bool) -> Result<RunResult, String> {
    let (tx, rx) = mpsc::channel();
    let mut _watcher = None;
    if let (Some(file), true) = (&a.file, a.watch) {
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
            let control: pipeline_tests::stress::RunControl = control;
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
    let options = RunOptions {
        verbose: !a.quiet,
        in_cgroup,
    };
    run(scenario, &options, Some(tx)).map_err(|e| e.to_string())
}
