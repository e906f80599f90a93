//! Hot reload of a configuration reached through symlinks: a Kubernetes ConfigMap
//! volume, updated the way the kubelet does it, and a symlink to a file in another
//! directory, edited in place.
//!
//! Regression tests for issue 17 ("Hot reload misses ConfigMap updates"): the watcher
//! ignored every event whose file name was not the configuration's, and the kubelet
//! never touches that name (`pipeline.yaml -> ..data/pipeline.yaml` stays as it is;
//! only `..data` is swapped), so an update left the configuration at version 0.
//!
//! Every wait awaits an event with a generous watchdog; no assertion depends on timing.

use pipeline_controller::config::{
    ChangeSource, ConfigEvent, ConfigHandle, ConfigWatcher, PipelineConfig,
};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

const DEBOUNCE: Duration = Duration::from_millis(200);
const WAIT: Duration = Duration::from_secs(10);

const YAML: &str = "policy:\n  cooldown: 30s\nstages:\n  enrich:\n    buffer: { initial: 256, min: 64, max: 4096 }\n";

fn with_cooldown(cooldown: &str) -> String {
    YAML.replace("30s", cooldown)
}

/// A directory laid out as the kubelet lays out a ConfigMap volume
/// (`pkg/volume/util/atomic_writer.go`):
///
/// ```text
/// ..2026_12_04_10_00_00.1/pipeline.yaml   the data, one directory per version
/// ..data -> ..2026_12_04_10_00_00.1       the version in force
/// pipeline.yaml -> ..data/pipeline.yaml   what the pod reads; never changes
/// ```
struct ConfigMapVolume {
    dir: tempfile::TempDir,
    version: u32,
}

impl ConfigMapVolume {
    fn new(text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut volume = ConfigMapVolume { dir, version: 0 };
        let first = volume.write_version(text);
        symlink(&first, volume.root().join("..data")).unwrap();
        symlink("..data/pipeline.yaml", volume.path()).unwrap();
        volume
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The path the pod is given.
    fn path(&self) -> PathBuf {
        self.root().join("pipeline.yaml")
    }

    fn version_dir(version: u32) -> String {
        format!("..2026_12_04_10_{:02}_00.{version}", version - 1)
    }

    fn write_version(&mut self, text: &str) -> String {
        self.version += 1;
        let name = Self::version_dir(self.version);
        std::fs::create_dir(self.root().join(&name)).unwrap();
        std::fs::write(self.root().join(&name).join("pipeline.yaml"), text).unwrap();
        name
    }

    /// An update, step by step as the kubelet does it: a new timestamped directory, a
    /// `..data_tmp` symlink to it renamed over `..data`, then the old directory removed.
    fn publish(&mut self, text: &str) {
        let old = Self::version_dir(self.version);
        let new = self.write_version(text);
        let tmp = self.root().join("..data_tmp");
        symlink(&new, &tmp).unwrap();
        std::fs::rename(&tmp, self.root().join("..data")).unwrap();
        std::fs::remove_dir_all(self.root().join(old)).unwrap();
    }
}

struct Rig {
    handle: ConfigHandle,
    events: crossbeam_channel::Receiver<ConfigEvent>,
    _watcher: ConfigWatcher,
}

fn rig(path: &Path) -> Rig {
    let handle = ConfigHandle::new(PipelineConfig::from_path(path).unwrap()).unwrap();
    let events = handle.subscribe();
    let watcher = handle.watch(path, DEBOUNCE).unwrap();
    Rig {
        handle,
        events,
        _watcher: watcher,
    }
}

impl Rig {
    /// The next reload event; panics after the watchdog (10 s) if none comes.
    fn next(&self) -> ConfigEvent {
        self.events
            .recv_timeout(WAIT)
            .expect("a reload event within 10 s (the watchdog)")
    }

    fn cooldown(&self) -> Duration {
        self.handle.current().policy.cooldown
    }
}

#[test]
fn a_configmap_update_swapping_the_data_symlink_is_applied() {
    let mut volume = ConfigMapVolume::new(YAML);
    let path = volume.path();
    let rig = rig(&path);
    assert_eq!(rig.handle.version(), 0);

    volume.publish(&with_cooldown("12s"));
    let event = rig.next();
    assert!(event.is_applied(), "{event}");
    assert_eq!(event.source, ChangeSource::File(path.clone()));
    assert_eq!(event.changes.len(), 1, "{event}");
    assert_eq!(event.changes[0].parameter, "policy.cooldown");
    assert_eq!(event.changes[0].new.as_deref(), Some("12s"));
    assert_eq!(rig.cooldown(), Duration::from_secs(12));
    assert_eq!(rig.handle.version(), 1);

    // The directory the first version lived in is gone; the watch goes on.
    volume.publish(&with_cooldown("13s"));
    let event = rig.next();
    assert!(event.is_applied(), "{event}");
    assert_eq!(event.changes[0].new.as_deref(), Some("13s"));
    assert_eq!(rig.cooldown(), Duration::from_secs(13));
    assert_eq!(rig.handle.version(), 2);
}

#[test]
fn an_invalid_configmap_update_keeps_the_old_config_and_the_next_good_one_is_applied() {
    let mut volume = ConfigMapVolume::new(YAML);
    let rig = rig(&volume.path());

    volume.publish(&with_cooldown("12s").replace("policy:\n", "policy:\n  growth_factor: 9.0\n"));
    let event = rig.next();
    assert_eq!(
        event.result,
        Err(vec![
            "policy.growth_factor (9) must be at most target_saturation / low_saturation (2.33)"
                .to_owned()
        ])
    );
    assert_eq!(rig.cooldown(), Duration::from_secs(30));
    assert_eq!(rig.handle.version(), 0);

    volume.publish(&with_cooldown("14s"));
    let event = rig.next();
    assert!(event.is_applied(), "{event}");
    assert_eq!(rig.cooldown(), Duration::from_secs(14));
    assert_eq!(rig.handle.version(), 1);
}

#[test]
fn an_in_place_edit_of_a_symlinked_file_in_another_directory_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["etc", "a", "b"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
    }
    let first = dir.path().join("a/pipeline.yaml");
    std::fs::write(&first, YAML).unwrap();
    let link = dir.path().join("etc/pipeline.yaml");
    symlink(&first, &link).unwrap();
    let rig = rig(&link);

    // Written where the file is, not where the link is.
    std::fs::write(&first, with_cooldown("12s")).unwrap();
    let event = rig.next();
    assert!(event.is_applied(), "{event}");
    assert_eq!(rig.cooldown(), Duration::from_secs(12));

    // The link now points elsewhere (replaced atomically): applied, and the new
    // target's directory is the one watched from now on.
    let second = dir.path().join("b/pipeline.yaml");
    std::fs::write(&second, with_cooldown("13s")).unwrap();
    let tmp = dir.path().join("etc/.pipeline.yaml.tmp");
    symlink(&second, &tmp).unwrap();
    std::fs::rename(&tmp, &link).unwrap();
    let event = rig.next();
    assert!(event.is_applied(), "{event}");
    assert_eq!(rig.cooldown(), Duration::from_secs(13));

    std::fs::write(&second, with_cooldown("14s")).unwrap();
    let event = rig.next();
    assert!(event.is_applied(), "{event}");
    assert_eq!(rig.cooldown(), Duration::from_secs(14));
}
