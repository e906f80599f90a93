//! Hot reload, end to end: a pipeline runs from a config file in a temp dir while the
//! file is edited three times (a valid change, an invalid one, a critical one); each
//! reload event is printed with what the controller did about it.
//!
//! `cargo run -p pipeline-controller --example hot_reload` (finishes in a few seconds).

use pipeline_controller::config::{ConfigEvent, PipelineConfig};
use pipeline_controller::pipeline::{Pipeline, Stage};
use pipeline_controller::policy::MemoryObservation;
use pipeline_core::bus::SubscriptionConfig;
use std::time::{Duration, Instant};

const CONFIG: &str = r#"[controller]
interval = "100ms"

[policy]
cooldown = "30s"

[stages.enrich]
buffer = { initial = 512, min = 64, max = 4096 }
workers = { initial = 2, min = 1, max = 4 }
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile_dir()?;
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, CONFIG)?;

    let pipeline = Pipeline::<u64>::builder()
        .stage(Stage::new(SubscriptionConfig::new("enrich")).handler(|_| Ok(())))
        .memory_probe(|_now| MemoryObservation {
            used_bytes: 100 << 20,
            limit_bytes: Some(1 << 30),
            psi_some_avg10: None,
        })
        .config(PipelineConfig::from_path(&path)?)
        .build()?;
    pipeline.start()?;
    let handle = pipeline.config().expect("built with a configuration");
    let events = handle.subscribe();
    let watcher = handle.watch(&path, Duration::from_millis(300))?;
    println!("running with {}", path.display());
    print_state(&pipeline);

    let edits = [
        (
            "valid: a shorter cooldown and a smaller buffer range",
            CONFIG.replace("\"30s\"", "\"5s\"").replace(
                "initial = 512, min = 64, max = 4096",
                "initial = 128, min = 64, max = 128",
            ),
        ),
        (
            "invalid: max below min",
            CONFIG.replace("max = 4096", "max = 8"),
        ),
        (
            "critical: a new stage",
            format!("{CONFIG}\n[stages.audit]\n"),
        ),
    ];
    for (what, text) in edits {
        println!("\n== editing the file ({what})");
        // An editor's atomic save: write a temp file, rename it over the config.
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &path)?;
        let event = next_event(&events)?;
        println!("reload event: {event}");
        // Give the controller a tick or two to act on it.
        std::thread::sleep(Duration::from_millis(300));
        print_state(&pipeline);
    }

    println!("\n== history (newest first)");
    for change in handle.history() {
        println!(
            "{} {} -> {} ({}, {:?})",
            change.parameter,
            change.old.as_deref().unwrap_or("-"),
            change.new.as_deref().unwrap_or("-"),
            change.source,
            change.outcome
        );
    }
    drop(watcher);
    let report = pipeline.shutdown(Duration::from_secs(5));
    println!("\nshut down, {} events left", report.left());
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn next_event(
    events: &crossbeam_channel::Receiver<ConfigEvent>,
) -> Result<ConfigEvent, Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = events.recv_timeout(left)?;
        // A save can be seen before its content; skip reloads that changed nothing.
        if !event.is_applied() || !event.changes.is_empty() {
            return Ok(event);
        }
    }
}

fn print_state(pipeline: &Pipeline<u64>) {
    let config = pipeline
        .config()
        .expect("built with a configuration")
        .current();
    let snapshot = pipeline.bus().snapshot();
    let enrich = snapshot.subscription("enrich").expect("the stage exists");
    println!(
        "  config: cooldown {:?}, enrich buffer range [{}, {}]; bus: enrich capacity {}",
        config.policy.cooldown,
        config.stages["enrich"].buffer.min,
        config.stages["enrich"].buffer.max,
        enrich.capacity
    );
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("pipeline-hot-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
