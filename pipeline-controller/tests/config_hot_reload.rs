//! Hot reload with real files in a temp dir: edits, atomic rename-saves, bursts of
//! saves, invalid files, deletes and re-creates, critical changes, disable/enable,
//! touches and editors' temporary files (ConfigMap volumes: `config_configmap.rs`).
//! Every wait is bounded and awaits an event (a reload event, or the watcher's check
//! count moving); only the "disabled" check waits out a fixed quiet period.

use pipeline_controller::config::{
    ChangeOutcome, ChangeSource, ConfigEvent, ConfigHandle, ConfigWatcher, PipelineConfig,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

const DEBOUNCE: Duration = Duration::from_millis(200);
const WAIT: Duration = Duration::from_secs(10);

const BASE: &str = "[policy]\ncooldown = \"30s\"\n\n[stages.enrich]\nbuffer = { initial = 256, min = 64, max = 4096 }\n";

fn with_cooldown(cooldown: &str) -> String {
    BASE.replace("\"30s\"", &format!("\"{cooldown}\""))
}

struct Rig {
    debounce: Duration,
    _dir: tempfile::TempDir,
    path: PathBuf,
    handle: ConfigHandle,
    events: crossbeam_channel::Receiver<ConfigEvent>,
    watcher: ConfigWatcher,
}

fn rig(name: &str) -> Rig {
    rig_with(name, BASE)
}

fn rig_with(name: &str, text: &str) -> Rig {
    rig_debounced(name, text, DEBOUNCE)
}

fn rig_debounced(name: &str, text: &str, debounce: Duration) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let handle = ConfigHandle::new(PipelineConfig::from_path(&path).unwrap()).unwrap();
    let events = handle.subscribe();
    let watcher = handle.watch(&path, debounce).unwrap();
    Rig {
        debounce,
        _dir: dir,
        path,
        handle,
        events,
        watcher,
    }
}

impl Rig {
    fn next(&self) -> ConfigEvent {
        self.events
            .recv_timeout(WAIT)
            .expect("a reload event within 10 s")
    }

    /// The next event that changed something or failed (an editor's save can make a
    /// first reload see the old content, which changes nothing).
    fn next_effective(&self) -> ConfigEvent {
        loop {
            let event = self.next();
            if !event.is_applied() || !event.changes.is_empty() {
                return event;
            }
        }
    }

    /// Waits until the watcher has looked at the file after a change in its directory
    /// more than `before` times (a check that finds the content unchanged makes no
    /// reload); panics after the watchdog.
    fn wait_for_check(&self, before: u64) {
        let deadline = Instant::now() + WAIT;
        while self.watcher.checks() <= before {
            assert!(
                Instant::now() < deadline,
                "a check within 10 s (the watchdog)"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Asserts that no reload event is waiting (call after `wait_for_check`: a check
    /// sends its event before it is counted).
    fn no_event(&self) {
        if let Ok(event) = self.events.try_recv() {
            panic!("expected no reload, got {event}");
        }
    }

    fn quiet(&self) {
        if let Ok(event) = self.events.recv_timeout(self.debounce * 5) {
            panic!("expected no reload, got {event}");
        }
    }

    fn cooldown(&self) -> Duration {
        self.handle.current().policy.cooldown
    }
}

fn atomic_save(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn an_edit_is_applied_and_reported() {
    let rig = rig("pipeline.toml");
    std::fs::write(&rig.path, with_cooldown("10s")).unwrap();
    let event = rig.next_effective();
    assert!(event.is_applied(), "{event}");
    assert_eq!(event.source, ChangeSource::File(rig.path.clone()));
    assert_eq!(event.changes.len(), 1);
    assert_eq!(event.changes[0].parameter, "policy.cooldown");
    assert_eq!(event.changes[0].old.as_deref(), Some("30s"));
    assert_eq!(event.changes[0].new.as_deref(), Some("10s"));
    assert_eq!(rig.cooldown(), Duration::from_secs(10));
    assert_eq!(rig.handle.history()[0].parameter, "policy.cooldown");
}

#[test]
fn an_atomic_rename_save_is_seen_in_yaml_too() {
    let yaml = "policy:\n  cooldown: 30s\nstages:\n  enrich:\n    buffer: { initial: 256, min: 64, max: 4096 }\n";
    let rig = rig_with("pipeline.yaml", yaml);
    atomic_save(&rig.path, &yaml.replace("30s", "12s"));
    let event = rig.next_effective();
    assert!(event.is_applied(), "{event}");
    assert_eq!(rig.cooldown(), Duration::from_secs(12));
    // And again: the watch survives the file being replaced.
    atomic_save(&rig.path, &yaml.replace("30s", "13s"));
    assert!(rig.next_effective().is_applied());
    assert_eq!(rig.cooldown(), Duration::from_secs(13));
}

#[test]
fn rapid_saves_make_one_reload_after_the_debounce() {
    // A long debounce, so a busy machine cannot stretch the burst past it.
    let rig = rig_debounced("pipeline.toml", BASE, Duration::from_secs(1));
    for secs in 1..=5 {
        std::fs::write(&rig.path, with_cooldown(&format!("{secs}s"))).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let event = rig.next();
    assert!(event.is_applied(), "{event}");
    assert_eq!(event.changes.len(), 1);
    assert_eq!(event.changes[0].new.as_deref(), Some("5s"));
    rig.quiet();
    assert_eq!(rig.cooldown(), Duration::from_secs(5));
}

#[test]
fn an_invalid_file_keeps_the_old_config_and_the_watcher() {
    let rig = rig("pipeline.toml");
    std::fs::write(
        &rig.path,
        with_cooldown("10s").replace("[policy]\n", "[policy]\ngrowth_factor = 9.0\n"),
    )
    .unwrap();
    let event = rig.next_effective();
    let reasons = event.result.clone().unwrap_err();
    assert_eq!(
        reasons,
        ["policy.growth_factor (9) must be at most target_saturation / low_saturation (2.33)"]
    );
    assert_eq!(rig.cooldown(), Duration::from_secs(30));
    // Both asked-for changes are in the history, refused.
    let refused: Vec<_> = rig
        .handle
        .history()
        .into_iter()
        .map(|c| (c.parameter, c.outcome))
        .collect();
    let why = || {
        ChangeOutcome::Rejected(
            "1 configuration error(s): policy.growth_factor (9) must be at most \
         target_saturation / low_saturation (2.33)"
                .into(),
        )
    };
    assert_eq!(
        refused,
        [
            ("policy.growth_factor".to_owned(), why()),
            ("policy.cooldown".to_owned(), why()),
        ]
    );

    // Half-written: a syntax error with its position.
    std::fs::write(&rig.path, "[policy]\ncooldown = \"10").unwrap();
    let event = rig.next_effective();
    let reasons = event.result.unwrap_err();
    assert!(
        reasons[0].starts_with("TOML error at line 2"),
        "{reasons:?}"
    );
    assert_eq!(rig.cooldown(), Duration::from_secs(30));

    std::fs::write(&rig.path, with_cooldown("11s")).unwrap();
    assert!(rig.next_effective().is_applied());
    assert_eq!(rig.cooldown(), Duration::from_secs(11));
}

#[test]
fn a_deleted_file_keeps_the_config_and_a_recreated_one_is_applied() {
    let rig = rig("pipeline.toml");
    std::fs::remove_file(&rig.path).unwrap();
    let event = rig.next_effective();
    let reasons = event.result.unwrap_err();
    assert!(reasons[0].starts_with("cannot read"), "{reasons:?}");
    assert_eq!(rig.cooldown(), Duration::from_secs(30));
    std::fs::write(&rig.path, with_cooldown("9s")).unwrap();
    let event = rig.next_effective();
    assert!(event.is_applied(), "{event}");
    assert_eq!(rig.cooldown(), Duration::from_secs(9));
}

#[test]
fn a_file_with_a_critical_change_is_refused_whole() {
    let rig = rig("pipeline.toml");
    let text = format!("{}\n[stages.extra]\n", with_cooldown("5s"));
    std::fs::write(&rig.path, text).unwrap();
    let event = rig.next_effective();
    assert_eq!(
        event.result,
        Err(vec![
            "critical parameter(s) stages.extra: changing them needs a restart".to_owned()
        ])
    );
    assert_eq!(
        rig.cooldown(),
        Duration::from_secs(30),
        "not even the cooldown"
    );
}

#[test]
fn reload_can_be_disabled_and_enabled() {
    let rig = rig("pipeline.toml");
    assert!(rig.watcher.is_enabled());
    rig.watcher.set_enabled(false);
    std::fs::write(&rig.path, with_cooldown("3s")).unwrap();
    rig.quiet();
    assert_eq!(rig.cooldown(), Duration::from_secs(30));
    rig.watcher.set_enabled(true);
    std::fs::write(&rig.path, with_cooldown("4s")).unwrap();
    assert!(rig.next_effective().is_applied());
    assert_eq!(rig.cooldown(), Duration::from_secs(4));
    // Other files in the directory do not trigger reloads.
    std::fs::write(rig.path.with_file_name("other.toml"), "x").unwrap();
    rig.quiet();
}

/// What `touch` does to an existing file: open it for writing and set its times.
fn touch(path: &Path) {
    std::fs::File::options()
        .append(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now())
        .unwrap();
}

// Issue 17: the watcher reloads when the file's content changes, not when an event
// names it; a touch (or the same bytes saved again) is no reload and no new version.
#[test]
fn a_touch_or_the_same_bytes_saved_again_make_no_reload() {
    let rig = rig("pipeline.toml");
    let checks = rig.watcher.checks();
    touch(&rig.path);
    rig.wait_for_check(checks);
    rig.no_event();
    assert_eq!(rig.handle.version(), 0);

    let checks = rig.watcher.checks();
    atomic_save(&rig.path, BASE);
    rig.wait_for_check(checks);
    rig.no_event();
    assert_eq!(rig.handle.version(), 0);

    std::fs::write(&rig.path, with_cooldown("10s")).unwrap();
    let event = rig.next();
    assert!(event.is_applied(), "{event}");
    assert_eq!(event.changes.len(), 1, "{event}");
    assert_eq!(rig.handle.version(), 1);
}

// Any event in the directory makes the watcher look (so a ConfigMap's `..data` swap is
// seen); an editor's temporary file beside the configuration must then not make a
// reload of its own: the save is one reload.
#[test]
fn an_editors_temp_file_and_rename_make_exactly_one_reload() {
    let yaml = "policy:\n  cooldown: 30s\nstages:\n  enrich:\n    buffer: { initial: 256, min: 64, max: 4096 }\n";
    let rig = rig_with("pipeline.yaml", yaml);
    let tmp = rig.path.with_file_name(".pipeline.yaml.swp");
    let checks = rig.watcher.checks();
    std::fs::write(&tmp, yaml.replace("30s", "12s")).unwrap();
    rig.wait_for_check(checks);
    rig.no_event();

    std::fs::rename(&tmp, &rig.path).unwrap();
    let event = rig.next();
    assert!(event.is_applied(), "{event}");
    assert_eq!(event.changes.len(), 1, "{event}");
    assert_eq!(event.changes[0].new.as_deref(), Some("12s"));
    assert_eq!(rig.handle.version(), 1);

    // The next event is the next save's, with nothing in between.
    std::fs::write(&rig.path, yaml.replace("30s", "13s")).unwrap();
    let event = rig.next();
    assert_eq!(event.changes[0].new.as_deref(), Some("13s"), "{event}");
    assert_eq!(rig.handle.version(), 2);
}
