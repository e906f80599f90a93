//! A loom model of the configuration swap. Run with
//! `RUSTFLAGS="--cfg pipeline_loom" cargo test -p pipeline-controller --release --test loom_config`.
//!
//! Under this cfg the handle's cell is a loom mutex instead of arc-swap (loom cannot see
//! inside arc-swap), and its writer lock and version counter are loom types; everything
//! else is the production `ConfigHandle`.
#![cfg(pipeline_loom)]

use loom::thread;
use pipeline_controller::config::{ConfigHandle, PipelineConfig};
use std::time::Duration;

fn config(interval_ms: u64, cooldown_s: u64) -> PipelineConfig {
    let mut config = PipelineConfig::default();
    config.controller.interval = Duration::from_millis(interval_ms);
    config.policy.cooldown = Duration::from_secs(cooldown_s);
    config
}

/// A reader racing a writer sees the old configuration or the new one, whole, never a
/// mix; and once it sees the new version it loads the new configuration (the version
/// moves only after the swap), which is what the control loop relies on.
#[test]
fn reader_never_sees_a_torn_or_stale_config() {
    loom::model(|| {
        let old = config(1000, 30);
        let new = config(250, 5);
        let handle = ConfigHandle::new(old.clone()).unwrap();
        let writer = {
            let handle = handle.clone();
            let new = new.clone();
            thread::spawn(move || {
                handle.apply(new).unwrap();
            })
        };
        let version = handle.version();
        let seen = handle.current();
        assert!(*seen == old || *seen == new, "torn configuration");
        if version == 1 {
            assert_eq!(
                *seen, new,
                "saw the new version but loaded the old configuration"
            );
        }
        writer.join().unwrap();
        assert_eq!((handle.version(), &*handle.current()), (1, &new));
    });
}

/// Two writers: both changes are applied, one after the other, and the version counts
/// both.
#[test]
fn concurrent_writers_are_serialised() {
    loom::model(|| {
        let handle = ConfigHandle::new(config(1000, 30)).unwrap();
        let a = {
            let handle = handle.clone();
            thread::spawn(move || {
                handle.update("policy.cooldown", "10s").unwrap();
            })
        };
        handle.update("controller.interval", "500ms").unwrap();
        a.join().unwrap();
        let current = handle.current();
        assert_eq!(handle.version(), 2);
        assert_eq!(current.policy.cooldown, Duration::from_secs(10));
        assert_eq!(current.controller.interval, Duration::from_millis(500));
    });
}

/// The control plane's PATCH (`update_values`, several paths at once) racing another
/// writer (a file reload, an `update`): both land, neither overwrites the other with a
/// stale copy of the configuration.
#[test]
fn an_update_of_several_paths_keeps_a_concurrent_change() {
    loom::model(|| {
        let handle = ConfigHandle::new(config(1000, 30)).unwrap();
        let patch = {
            let handle = handle.clone();
            thread::spawn(move || {
                handle
                    .update_values([
                        ("policy.target_utilisation", 0.25),
                        ("policy.low_utilisation", 0.2),
                    ])
                    .unwrap();
            })
        };
        handle.update("controller.interval", "500ms").unwrap();
        patch.join().unwrap();
        let current = handle.current();
        assert_eq!(handle.version(), 2);
        assert_eq!(current.controller.interval, Duration::from_millis(500));
        assert_eq!(
            (
                current.policy.target_utilisation,
                current.policy.low_utilisation
            ),
            (0.25, 0.2)
        );
    });
}
