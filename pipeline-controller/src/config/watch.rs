//! Hot reload: watch a configuration file and apply it when it changes.

use super::handle::ConfigHandle;
use notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The default debounce of [`ConfigHandle::watch`]: the file is reloaded once it has
/// not changed for this long, so edits closer together than this make one reload.
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
}

/// A running hot reload; dropping it stops watching.
///
/// Every debounced change to the file (an edit, an editor's rename-save, a delete, a
/// re-create) reloads it through [`ConfigHandle::reload_from`]: the result reaches the
/// handle's subscribers as a [`ConfigEvent`](super::ConfigEvent) with source
/// `File(path)`, is logged under the `tracing` target `pipeline::config`, and is
/// counted in `pipeline_config_reloads_total{outcome="ok"|"failed"}`. A bad or missing
/// file keeps the configuration in force, and the watcher keeps watching.
pub struct ConfigWatcher {
    enabled: Arc<AtomicBool>,
    path: PathBuf,
    debouncer: Option<Debouncer<RecommendedWatcher, RecommendedCache>>,
    reloader: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for ConfigWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigWatcher")
            .field("path", &self.path)
            .field("enabled", &self.is_enabled())
            .finish_non_exhaustive()
    }
}

impl ConfigWatcher {
    /// Turns reloading on or off; off, changes to the file are ignored (not queued).
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Release);
        tracing::info!(target: "pipeline::config", path = %self.path.display(), enabled, "hot reload toggled");
    }

    /// Whether changes to the file are reloaded.
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// The file watched.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl ConfigHandle {
    /// Reloads `path` whenever it changes, after `debounce` of quiet (see
    /// [`ConfigWatcher`]). The parent directory is watched, so rename-saves, deletes
    /// and re-creates are seen. The file is not read now: the configuration in force is
    /// whatever the handle holds.
    ///
    /// # Errors
    ///
    /// [`WatchError`] if the path has no parent or the OS watcher cannot start.
    pub fn watch(
        &self,
        path: impl AsRef<Path>,
        debounce: Duration,
    ) -> Result<ConfigWatcher, WatchError> {
        let path = path.as_ref().to_owned();
        let name = path
            .file_name()
            .ok_or_else(|| WatchError::NotAFile(path.clone()))?
            .to_owned();
        let dir = match path.parent() {
            Some(p) if p.as_os_str().is_empty() => PathBuf::from("."),
            Some(p) => p.to_owned(),
            None => return Err(WatchError::NotAFile(path)),
        };
        let enabled = Arc::new(AtomicBool::new(true));
        let handle = self.clone();
        let file = path.clone();
        let on = enabled.clone();
        let (ping_tx, ping_rx) = crossbeam_channel::unbounded::<()>();
        // notify-debouncer-full merges the OS events (renames, creates and removes) of
        // short intervals; bursts longer than that still arrive as several batches, so
        // the reload thread waits for `debounce` without a batch before reading the file.
        let merge = (debounce / 4).max(Duration::from_millis(10));
        let reload_enabled = enabled.clone();
        let reloader = std::thread::Builder::new()
            .name("pipeline-config-watch".into())
            .spawn(move || {
                while ping_rx.recv().is_ok() {
                    loop {
                        match ping_rx.recv_timeout(debounce) {
                            Ok(()) => continue,
                            Err(crossbeam_channel::RecvTimeoutError::Timeout) => break,
                            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                        }
                    }
                    if reload_enabled.load(Ordering::Acquire) {
                        reload(&handle, &file);
                    }
                }
            })
            .map_err(|source| WatchError::Notify {
                path: dir.clone(),
                source: notify::Error::io(source),
            })?;
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
            let touched = events.iter().any(|e| {
                !e.kind.is_access()
                    && e.paths
                        .iter()
                        .any(|p| p.file_name() == Some(name.as_os_str()))
            });
            if touched && on.load(Ordering::Acquire) {
                // The reload thread waits for the file to be quiet.
                let _ = ping_tx.send(());
            }
        })
        .map_err(|source| WatchError::Notify {
            path: dir.clone(),
            source,
        })?;
        debouncer
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|source| WatchError::Notify {
                path: dir.clone(),
                source,
            })?;
        Ok(ConfigWatcher {
            enabled,
            path,
            debouncer: Some(debouncer),
            reloader: Some(reloader),
        })
    }
}

fn reload(handle: &ConfigHandle, file: &Path) {
    match handle.reload_from(file) {
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
        // Stopping the debouncer drops its sender, which ends the reload thread.
        drop(self.debouncer.take());
        if let Some(thread) = self.reloader.take() {
            let _ = thread.join();
        }
    }
}
