//! A child memory cgroup under this process's own cgroup, for memory-limited runs.
//!
//! Goes straight through cgroupfs (v1 `memory` controller or v2 unified). The group is
//! created as a child of the cgroup this process is in (never at a hierarchy root),
//! the workload runs in a child process that joins it, the kernel's verdict is read
//! after the child ends, and the group is removed on drop.

use super::report::KernelVerdict;
use std::path::{Path, PathBuf};

/// Env var telling the re-executed child which `cgroup.procs` to join.
pub const JOIN_ENV: &str = "PIPELINE_STRESS_CGROUP_PROCS";
/// `1` turns a missing or unwritable cgroup into a failure.
pub const REQUIRE_ENV: &str = "PIPELINE_REQUIRE_CGROUP";

/// A memory cgroup made for one run; removed on drop.
#[derive(Debug)]
pub struct MemoryCgroup {
    dir: PathBuf,
    v2: bool,
}

fn own_path(controller_line: impl Fn(&str) -> Option<String>) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(controller_line)
}

impl MemoryCgroup {
    /// Creates `<own cgroup>/<name>` with `limit` bytes and no swap beyond it.
    pub fn create(name: &str, limit: u64) -> Result<Self, String> {
        let v1_root = Path::new("/sys/fs/cgroup/memory");
        let (dir, v2) = if v1_root.join("memory.limit_in_bytes").exists() {
            let own = own_path(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
                ctrls
                    .split(',')
                    .any(|c| c == "memory")
                    .then(|| path.to_owned())
            })
            .ok_or("no memory line in /proc/self/cgroup")?;
            (v1_root.join(own.trim_start_matches('/')).join(name), false)
        } else if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            let own = own_path(|l| l.strip_prefix("0::").map(str::to_owned))
                .ok_or("no v2 line in /proc/self/cgroup")?;
            (
                Path::new("/sys/fs/cgroup")
                    .join(own.trim_start_matches('/'))
                    .join(name),
                true,
            )
        } else {
            return Err("no cgroup memory controller mounted".into());
        };
        if dir
            .parent()
            .is_some_and(|p| p == v1_root || p == Path::new("/sys/fs/cgroup"))
        {
            return Err(format!(
                "refusing to create {} at the root of a hierarchy",
                dir.display()
            ));
        }
        std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let group = MemoryCgroup { dir, v2 };
        let w = |file: &str, value: String| {
            std::fs::write(group.dir.join(file), &value)
                .map_err(|e| format!("write {value} to {}/{file}: {e}", group.dir.display()))
        };
        if v2 {
            w("memory.max", limit.to_string())?;
            let _ = w("memory.swap.max", "0".into());
        } else {
            w("memory.limit_in_bytes", limit.to_string())?;
            let _ = w("memory.swappiness", "0".into());
            let _ = w("memory.memsw.limit_in_bytes", limit.to_string());
        }
        Ok(group)
    }

    /// The `cgroup.procs` file a child writes its pid to.
    pub fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).unwrap_or_default()
    }

    fn key(&self, file: &str, key: &str) -> u64 {
        self.read(file)
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0)
    }

    /// The kernel's verdict so far.
    pub fn verdict(&self, child_status: String) -> KernelVerdict {
        let num = |f: &str| self.read(f).trim().parse::<u64>().unwrap_or(0);
        if self.v2 {
            KernelVerdict {
                version: "v2".into(),
                limit_bytes: num("memory.max"),
                peak_bytes: num("memory.peak"),
                oom_kills: self.key("memory.events", "oom_kill "),
                limit_hits: self.key("memory.events", "max "),
                child_status,
            }
        } else {
            KernelVerdict {
                version: "v1".into(),
                limit_bytes: num("memory.limit_in_bytes"),
                peak_bytes: num("memory.max_usage_in_bytes"),
                oom_kills: self.key("memory.oom_control", "oom_kill "),
                limit_hits: num("memory.failcnt").max(num("memory.memsw.failcnt")),
                child_status,
            }
        }
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        eprintln!("warning: could not remove cgroup {}", self.dir.display());
    }
}

/// In the re-executed child: joins the cgroup named by [`JOIN_ENV`], if set.
pub fn join_if_child() -> Result<bool, String> {
    let Ok(procs) = std::env::var(JOIN_ENV) else {
        return Ok(false);
    };
    std::fs::write(&procs, std::process::id().to_string())
        .map_err(|e| format!("join {procs}: {e}"))?;
    Ok(true)
}
