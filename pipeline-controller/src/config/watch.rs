//! Hot reload: watch a configuration file and apply it when its content changes.
//!
//! The watcher never trusts an event's file name. A Kubernetes ConfigMap volume shows
//! the file as `pipeline.yaml -> ..data/pipeline.yaml` and updates it by renaming a new
//! `..data` symlink over the old one: no event ever names `pipeline.yaml`. So any event
//! in the watched directories makes the watcher read the file through its symlinks and
//! compare a hash of the bytes with the last ones it saw; only different bytes are
//! reloaded.

use super::file::{CONFIG_PATH_ENV, ConfigLoadError};
use super::handle::{ChangeRecord, ConfigHandle, ConfigUpdateError};
use super::model::PipelineConfig;
use notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use std::hash::{DefaultHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The default debounce of [`ConfigHandle::watch`]: the file is looked at once its
/// directory has been quiet for this long, so edits closer together than this make one
/// reload.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(500);

/// Why a file cannot be watched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// The path has no parent directory or no file name.
    #[error("{}: not a file path", .0.display())]
    NotAFile(PathBuf),
    /// The OS watcher could not start.
    #[error("cannot watch {}", path.display())]
    Notify {
        /// The directory watched.
        path: PathBuf,
        /// What notify said.
        #[source]
        source: notify::Error,
    },
    /// [`ConfigHandle::watch_env`] found the variable unset or empty.
    #[error(
        "{variable} is not set: set it to the configuration file's path (.toml, .yaml or .yml)"
    )]
    EnvNotSet {
        /// The variable, [`CONFIG_PATH_ENV`].
        variable: &'static str,
    },
}

type OsDebouncer = Debouncer<RecommendedWatcher, RecommendedCache>;

/// The OS watches: the path's own directory, and the directory of the file it resolves
/// to when that is another one (a symlink to a file elsewhere, edited in place there).
struct Watches {
    debouncer: Option<OsDebouncer>,
    /// The path's own directory, canonical.
    dir: PathBuf,
    /// The resolved file's directory, when it is not `dir`.
    target_dir: Option<PathBuf>,
}

/// A running hot reload; dropping it stops watching.
///
/// The directory of the file is watched, not the file: after any change in it (and, if
/// the path is a symlink, in the directory of the file it points to) has been quiet for
/// the debounce, the watcher reads the file through its symlinks and reloads it only if
/// the bytes differ from the last ones it saw (a 64-bit hash). So:
///
/// - a Kubernetes ConfigMap update (the kubelet renames a new `..data` symlink over the
///   old one), an editor's write-to-temp-and-rename, an in-place edit, a delete and a
///   re-create are each seen, once;
/// - a touch, the same bytes saved again, or another file changing in the directory
///   make no reload and no event;
/// - a file that cannot be read, or whose content is invalid, is reported once (until
///   it changes again), and the configuration in force stays.
///
/// A reload goes through the same path as [`ConfigHandle::reload_from`]: substitution,
/// parsing, validation, then all or nothing. Its result reaches the handle's
/// subscribers as a [`ConfigEvent`](super::ConfigEvent) with source `File(path)`, is
/// logged under the `tracing` target `pipeline::config`, and is counted in
/// `pipeline_config_reloads_total{outcome="ok"|"failed"}`. The watcher keeps watching
/// whatever the file does.
///
/// The file's content when watching starts is the baseline; it is not applied (the
/// configuration in force is whatever the handle holds).
pub struct ConfigWatcher {
    enabled: Arc<AtomicBool>,
    checks: Arc<AtomicU64>,
    path: PathBuf,
    watches: Arc<Mutex<Watches>>,
    reloader: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for ConfigWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigWatcher")
            .field("path", &self.path)
            .field("enabled", &self.is_enabled())
            .field("checks", &self.checks())
            .finish_non_exhaustive()
    }
}

impl ConfigWatcher {
    /// Turns reloading on or off; off, changes are ignored (not queued). A change made
    /// while off is picked up by the first check after it is turned on again.
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Release);
        tracing::info!(target: "pipeline::config", path = %self.path.display(), enabled, "hot reload toggled");
    }

    /// Whether changes to the file are reloaded.
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// The file watched, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many times the file has been read and compared after a change in a watched
    /// directory (one per debounced burst of changes). A check that finds the bytes
    /// unchanged makes no reload. A check is counted after its reload, if any, has been
    /// reported to subscribers, so a test can wait for this to move and then look at
    /// the events.
    pub fn checks(&self) -> u64 {
        self.checks.load(Ordering::Acquire)
    }
}

/// What the last check found at the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// The bytes' length and hash.
    Content(usize, u64),
    /// The file could not be read (missing, a dangling symlink, no permission).
    Unreadable(std::io::ErrorKind),
}

impl Seen {
    fn of(read: &std::io::Result<Vec<u8>>) -> Seen {
        match read {
            Ok(bytes) => {
                let mut hasher = DefaultHasher::new();
                hasher.write(bytes);
                Seen::Content(bytes.len(), hasher.finish())
            }
            Err(error) => Seen::Unreadable(error.kind()),
        }
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "file-config")))]
impl ConfigHandle {
    /// Reloads `path` whenever its content changes, after `debounce` of quiet (see
    /// [`ConfigWatcher`]). The path's directory is watched, not the file, so
    /// rename-saves, deletes, re-creates and Kubernetes ConfigMap updates (a swapped
    /// `..data` symlink) are seen; if the path is a symlink to a file in another
    /// directory, that directory is watched too (followed when the link changes).
    ///
    /// # Errors
    ///
    /// [`WatchError`] if the path has no parent or the OS watcher cannot start.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_controller::config::{ConfigHandle, PipelineConfig};
    /// use std::time::Duration;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("pipeline.toml");
    /// std::fs::write(&path, "[policy]\ncooldown = \"30s\"\n")?;
    /// let handle = ConfigHandle::new(PipelineConfig::from_path(&path)?)?;
    /// let events = handle.subscribe();
    /// let watcher = handle.watch(&path, Duration::from_millis(100))?;
    ///
    /// std::fs::write(&path, "[policy]\ncooldown = \"10s\"\n")?;
    /// let event = events.recv_timeout(Duration::from_secs(10))?;
    /// assert!(event.is_applied());
    /// assert_eq!(handle.current().policy.cooldown, Duration::from_secs(10));
    /// drop(watcher);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn watch(
        &self,
        path: impl AsRef<Path>,
        debounce: Duration,
    ) -> Result<ConfigWatcher, WatchError> {
        let path = path.as_ref().to_owned();
        if path.file_name().is_none() {
            return Err(WatchError::NotAFile(path));
        }
        let dir = match path.parent() {
            Some(p) if p.as_os_str().is_empty() => PathBuf::from("."),
            Some(p) => p.to_owned(),
            None => return Err(WatchError::NotAFile(path)),
        };
        let notify_error = |source| WatchError::Notify {
            path: dir.clone(),
            source,
        };
        let canonical_dir = std::fs::canonicalize(&dir)
            .map_err(|source| notify_error(notify::Error::io(source)))?;
        let watches = Arc::new(Mutex::new(Watches {
            debouncer: None,
            dir: canonical_dir,
            target_dir: None,
        }));
        let enabled = Arc::new(AtomicBool::new(true));
        let checks = Arc::new(AtomicU64::new(0));
        let baseline = Seen::of(&std::fs::read(&path));
        let (ping_tx, ping_rx) = crossbeam_channel::unbounded::<()>();
        let reloader = {
            let handle = self.clone();
            let file = path.clone();
            let enabled = enabled.clone();
            let checks = checks.clone();
            let watches = watches.clone();
            std::thread::Builder::new()
                .name("pipeline-config-watch".into())
                .spawn(move || {
                    let mut seen = baseline;
                    while ping_rx.recv().is_ok() {
                        // The OS events of one save (or one kubelet update) can arrive
                        // as several batches: wait for `debounce` without one.
                        loop {
                            match ping_rx.recv_timeout(debounce) {
                                Ok(()) => continue,
                                Err(crossbeam_channel::RecvTimeoutError::Timeout) => break,
                                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                                    return;
                                }
                            }
                        }
                        if enabled.load(Ordering::Acquire) {
                            // Follow first, read second: an edit after the read is then
                            // seen by the new watch.
                            follow(&watches, &file);
                            check(&handle, &file, &mut seen);
                            checks.fetch_add(1, Ordering::AcqRel);
                        }
                    }
                })
                .map_err(|source| notify_error(notify::Error::io(source)))?
        };
        // notify-debouncer-full merges the OS events (renames, creates and removes) of
        // short intervals; the reload thread waits out longer bursts.
        let merge = (debounce / 4).max(Duration::from_millis(10));
        let on = enabled.clone();
        let mut debouncer = new_debouncer(merge, None, move |result: DebounceEventResult| {
            let events = match result {
                Ok(events) => events,
                Err(errors) => {
                    for error in errors {
                        tracing::warn!(target: "pipeline::config", %error, "file watcher error");
                    }
                    return;
                }
            };
            // Any event is a candidate, whatever it names; reading the file (ours
            // included) only makes access events.
            if events.iter().any(|e| !e.kind.is_access()) && on.load(Ordering::Acquire) {
                let _ = ping_tx.send(());
            }
        })
        .map_err(notify_error)?;
        debouncer
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(notify_error)?;
        watches.lock().unwrap_or_else(|p| p.into_inner()).debouncer = Some(debouncer);
        follow(&watches, &path);
        Ok(ConfigWatcher {
            enabled,
            checks,
            path,
            watches,
            reloader: Some(reloader),
        })
    }

    /// As [`watch`](Self::watch), for the file named by the `PIPELINE_CONFIG`
    /// environment variable ([`CONFIG_PATH_ENV`]), the file
    /// [`PipelineConfig::from_env`] reads.
    ///
    /// # Errors
    ///
    /// [`WatchError::EnvNotSet`] if the variable is unset or empty, otherwise as
    /// [`watch`](Self::watch).
    pub fn watch_env(&self, debounce: Duration) -> Result<ConfigWatcher, WatchError> {
        let path = PipelineConfig::path_from_env().map_err(|_| WatchError::EnvNotSet {
            variable: CONFIG_PATH_ENV,
        })?;
        self.watch(path, debounce)
    }
}

/// Watches the directory of the file `path` resolves to, if it is not the path's own
/// directory, and stops watching the one watched before. Errors are logged and the
/// next check tries again.
fn follow(watches: &Mutex<Watches>, path: &Path) {
    let target_dir = std::fs::canonicalize(path)
        .ok()
        .and_then(|file| file.parent().map(Path::to_path_buf));
    let mut guard = watches.lock().unwrap_or_else(|p| p.into_inner());
    let w = &mut *guard;
    let target_dir = target_dir.filter(|t| *t != w.dir);
    if target_dir == w.target_dir {
        return;
    }
    let Some(debouncer) = w.debouncer.as_mut() else {
        return;
    };
    if let Some(old) = w.target_dir.take() {
        // Fails when the directory is gone (a replaced ConfigMap version): nothing to do.
        let _ = debouncer.unwatch(&old);
    }
    if let Some(new) = target_dir {
        match debouncer.watch(&new, RecursiveMode::NonRecursive) {
            Ok(()) => {
                tracing::debug!(target: "pipeline::config", path = %path.display(), dir = %new.display(), "watching the configuration's target directory");
                w.target_dir = Some(new);
            }
            Err(error) => {
                tracing::warn!(target: "pipeline::config", path = %path.display(), dir = %new.display(), %error, "cannot watch the configuration's target directory; in-place edits there are not seen");
            }
        }
    }
}

/// Reads the file through its symlinks and reloads it if its bytes (or the reason it
/// cannot be read) differ from what the last check saw.
fn check(handle: &ConfigHandle, file: &Path, seen: &mut Seen) {
    let read = std::fs::read(file);
    let now = Seen::of(&read);
    if now == *seen {
        tracing::debug!(target: "pipeline::config", path = %file.display(), "configuration file unchanged; not reloaded");
        return;
    }
    *seen = now;
    let parsed = match read {
        Ok(bytes) => PipelineConfig::parse_bytes(file, bytes),
        Err(source) => Err(ConfigLoadError::Io {
            path: file.to_owned(),
            source,
        }),
    };
    report(file, handle.reload_parsed(file, parsed));
}

fn report(file: &Path, result: Result<Vec<ChangeRecord>, ConfigUpdateError>) {
    match result {
        Ok(changes) => {
            metrics::counter!("pipeline_config_reloads_total", "outcome" => "ok").increment(1);
            tracing::info!(target: "pipeline::config", path = %file.display(), changes = changes.len(), "configuration reloaded");
        }
        Err(error) => {
            metrics::counter!("pipeline_config_reloads_total", "outcome" => "failed").increment(1);
            tracing::warn!(target: "pipeline::config", path = %file.display(), %error, "configuration reload failed; the old configuration stays");
        }
    }
}

impl Drop for ConfigWatcher {
    fn drop(&mut self) {
        // Stopping the debouncer drops its event handler and so the ping sender, which
        // ends the reload thread. Taken out of the lock before it is dropped.
        let debouncer = self
            .watches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .debouncer
            .take();
        drop(debouncer);
        if let Some(thread) = self.reloader.take() {
            let _ = thread.join();
        }
    }
}
