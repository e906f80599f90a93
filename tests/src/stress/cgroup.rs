//! A child memory cgroup under this process's own cgroup, for memory-limited runs.
//!
//! Created, limited, read and removed through `cgroups-rs`, on cgroup v1 (the `memory`
//! hierarchy) or v2 (unified), whichever `/sys/fs/cgroup` is. The group is created as
//! a child of the cgroup this process is in (never at a hierarchy root), the workload
//! runs in a child process that joins it, the kernel's verdict is read after the child
//! ends, and the group is removed on drop.
//!
//! On v2 the memory controller must already be delegated to this process's cgroup
//! (`memory` in its `cgroup.subtree_control`): `cgroups-rs` writes `+memory` into the
//! `cgroup.subtree_control` of every ancestor while creating a group, and checking first
//! makes those writes no-ops, so nothing above this process's cgroup changes.

use super::report::KernelVerdict;
use cgroups_rs::fs::cgroup::get_cgroups_relative_paths;
use cgroups_rs::fs::hierarchies::{self, UNIFIED_MOUNTPOINT, V1, V2};
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::{Cgroup, Controller, Controllers, Hierarchy};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Env var telling the re-executed child which `cgroup.procs` to join.
pub const JOIN_ENV: &str = "PIPELINE_STRESS_CGROUP_PROCS";
/// `1` turns a missing or unwritable cgroup into a failure.
pub const REQUIRE_ENV: &str = "PIPELINE_REQUIRE_CGROUP";

/// How long [`Drop`] keeps trying to remove the group (the kernel may still be tearing
/// down an OOM-killed child).
const REMOVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A memory cgroup made for one run; removed on drop.
#[derive(Debug)]
pub struct MemoryCgroup {
    cgroup: Cgroup,
    /// This process's own cgroup, where a process still inside at drop is moved.
    parent: Cgroup,
    dir: PathBuf,
    v2: bool,
}

/// A cgroups-rs error as one line: its kind, then its cause's message (its `Display`
/// shows the cause's `Debug` form).
fn why(e: &cgroups_rs::fs::error::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{}: {cause}", e.kind()),
        None => e.kind().to_string(),
    }
}

/// One memory-controller cgroup at `path` (relative to the hierarchy's mount point).
fn memory_cgroup(v2: bool, path: &Path) -> Cgroup {
    let hierarchy: Box<dyn Hierarchy> = if v2 {
        Box::new(V2::new())
    } else {
        Box::new(V1::new())
    };
    Cgroup::load_with_specified_controllers(hierarchy, path, vec![Controllers::Mem.to_string()])
}

impl MemoryCgroup {
    /// Creates `<own cgroup>/<name>` with `limit` bytes and no swap beyond it.
    ///
    /// # Errors
    ///
    /// A message saying why when there is no memory controller, this process sits at
    /// the root of its hierarchy, the controller is not delegated (v2), or the group
    /// cannot be created or limited (not root, read-only mount).
    pub fn create(name: &str, limit: u64) -> Result<Self, String> {
        let v2 = hierarchies::is_cgroup2_unified_mode();
        let own_paths = get_cgroups_relative_paths()
            .map_err(|e| format!("cannot read /proc/self/cgroup: {}", why(&e)))?;
        // Where the hierarchy is mounted, which part of it the mount shows, and which
        // /proc/self/cgroup line names this process's cgroup in it.
        let (mount_point, mount_root, key) = if v2 {
            (PathBuf::from(UNIFIED_MOUNTPOINT), PathBuf::from("/"), "")
        } else {
            let (point, root) = V1::new().get_mount_point(Controllers::Mem).ok_or(
                "no memory controller: no v1 hierarchy has it and /sys/fs/cgroup is not v2",
            )?;
            (point, root, "memory")
        };
        let own = own_paths.get(key).ok_or_else(|| {
            format!(
                "/proc/self/cgroup has no {} line",
                if v2 { "v2 (0::)" } else { "memory" }
            )
        })?;
        if own == "/" {
            return Err(format!(
                "refusing to create {name} at the root of the hierarchy at {}: this \
                 process's own cgroup is the root",
                mount_point.display()
            ));
        }
        // Containers often mount only their own subtree: strip what the mount hides.
        let relative = Path::new(own).strip_prefix(&mount_root).map_err(|_| {
            format!(
                "own memory cgroup {own} is outside the mounted subtree {}",
                mount_root.display()
            )
        })?;
        let own_dir = mount_point.join(relative);
        if v2 {
            let delegated = std::fs::read_to_string(own_dir.join("cgroup.subtree_control"))
                .unwrap_or_default()
                .split_whitespace()
                .any(|c| c == "memory");
            if !delegated {
                return Err(format!(
                    "the memory controller is not enabled in {}/cgroup.subtree_control (v2 \
                     allows it only in a cgroup without processes; this harness does not \
                     change cgroups above its own)",
                    own_dir.display()
                ));
            }
        }
        let path = relative.join(name);
        let cgroup = memory_cgroup(v2, &path);
        let dir = cgroup
            .controller_of::<MemController>()
            .map(|m| m.path().to_owned())
            .ok_or_else(|| format!("no memory controller for {}", own_dir.display()))?;
        if dir.exists() {
            return Err(format!("{} already exists", dir.display()));
        }
        cgroup
            .create()
            .map_err(|e| format!("cannot create {}: {}", dir.display(), why(&e)))?;
        // From here on the guard removes the group whatever happens.
        let group = MemoryCgroup {
            cgroup,
            parent: memory_cgroup(v2, relative),
            dir,
            v2,
        };
        let memory = group.memory()?;
        let bytes = i64::try_from(limit).map_err(|_| format!("limit {limit} too large"))?;
        memory.set_limit(bytes).map_err(|e| {
            format!(
                "cannot set the limit of {}: {}",
                group.dir.display(),
                why(&e)
            )
        })?;
        // No swap beyond the limit, where the kernel accounts swap (best effort).
        if v2 {
            let _ = memory.set_memswap_limit(0);
        } else {
            let _ = memory.set_swappiness(0);
            let _ = memory.set_memswap_limit(bytes);
        }
        Ok(group)
    }

    fn memory(&self) -> Result<&MemController, String> {
        self.cgroup
            .controller_of()
            .ok_or_else(|| format!("{}: no memory controller", self.dir.display()))
    }

    /// The `cgroup.procs` file a child writes its pid to.
    pub fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The kernel's verdict so far: v1 `memory.limit_in_bytes`,
    /// `memory.max_usage_in_bytes`, `memory.oom_control`'s `oom_kill` and the larger of
    /// `memory.failcnt` and `memory.memsw.failcnt`; v2 `memory.max`, `memory.peak` and
    /// `memory.events`' `oom_kill` and `max`. What cannot be read counts as 0.
    pub fn verdict(&self, child_status: String) -> KernelVerdict {
        let Ok(memory) = self.memory() else {
            return KernelVerdict {
                version: if self.v2 { "v2" } else { "v1" }.into(),
                child_status,
                ..KernelVerdict::default()
            };
        };
        let stat = memory.memory_stat();
        let limit_bytes = u64::try_from(stat.limit_in_bytes).unwrap_or(0);
        if self.v2 {
            // cgroups-rs reads memory.max and memory.peak, not memory.events.
            let events = std::fs::File::open(self.dir.join("memory.events"))
                .ok()
                .and_then(|f| cgroups_rs::fs::flat_keyed_to_hashmap(f).ok())
                .unwrap_or_default();
            let event = |key: &str| {
                events
                    .get(key)
                    .map_or(0, |&v| u64::try_from(v).unwrap_or(0))
            };
            KernelVerdict {
                version: "v2".into(),
                limit_bytes,
                peak_bytes: stat.max_usage_in_bytes,
                oom_kills: event("oom_kill"),
                limit_hits: event("max"),
                child_status,
            }
        } else {
            KernelVerdict {
                version: "v1".into(),
                limit_bytes,
                peak_bytes: stat.max_usage_in_bytes,
                oom_kills: stat.oom_control.oom_kill,
                limit_hits: stat.fail_cnt.max(memory.memswap().fail_cnt),
                child_status,
            }
        }
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // Normally empty: the child has been waited for. A process still inside (a run
        // cut short) would keep the directory busy, so it goes back to our own cgroup.
        for pid in self.cgroup.procs() {
            if let Err(e) = self.parent.add_task_by_tgid(pid) {
                eprintln!(
                    "warning: cannot move pid {} out of {}: {}",
                    pid.pid,
                    self.dir.display(),
                    why(&e)
                );
            }
        }
        let deadline = Instant::now() + REMOVE_TIMEOUT;
        loop {
            let removed = self.cgroup.delete();
            if removed.is_ok() && !self.dir.exists() {
                return;
            }
            if Instant::now() >= deadline {
                let cause = removed
                    .err()
                    .map_or(String::new(), |e| format!(": {}", why(&e)));
                eprintln!(
                    "warning: could not remove cgroup {}{cause}",
                    self.dir.display()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// In the re-executed child: joins the cgroup named by [`JOIN_ENV`], if set.
///
/// A plain write of this process's pid to the group's `cgroup.procs` (what
/// `cgroups-rs`' `add_task_by_tgid` does), done by the child itself before it
/// allocates anything, so no allocation escapes the limit.
pub fn join_if_child() -> Result<bool, String> {
    let Ok(procs) = std::env::var(JOIN_ENV) else {
        return Ok(false);
    };
    std::fs::write(&procs, std::process::id().to_string())
        .map_err(|e| format!("join {procs}: {e}"))?;
    Ok(true)
}
