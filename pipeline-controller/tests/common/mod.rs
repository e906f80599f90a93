//! Fixture trees: a temporary directory laid out like `/` of a machine or container, with
//! only the proc and cgroup files a test needs.

#![allow(dead_code)] // each test file uses a different part of the helper

use std::path::Path;

use pipeline_controller::limits::{Limits, LimitsError, LimitsReader};

/// The v1 "unlimited" value: i64::MAX rounded down to a 4 KiB page.
pub const V1_UNLIMITED: &str = "9223372036854771712";
pub const MIB: u64 = 1 << 20;

pub struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    pub fn new() -> Tree {
        Tree {
            dir: tempfile::tempdir().expect("create a temporary directory"),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `text` at `path` (relative to the root), creating parent directories.
    pub fn write(&self, path: &str, text: &str) -> &Tree {
        let path = self.dir.path().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().expect("a file path has a parent"))
            .expect("create fixture directories");
        std::fs::write(&path, text).expect("write fixture file");
        self
    }

    /// Limits with no override variables.
    pub fn limits(&self) -> Result<Limits, LimitsError> {
        Limits::detect_at(self.root(), |_| None)
    }

    /// Limits with the given override variables.
    pub fn limits_with_env(&self, vars: &[(&str, &str)]) -> Result<Limits, LimitsError> {
        Limits::detect_at(self.root(), |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        })
    }

    pub fn reader(&self) -> LimitsReader {
        LimitsReader::at(self.root(), |_| None).expect("fixture reader")
    }

    /// A pure cgroup v2 machine: the unified hierarchy at /sys/fs/cgroup, the process in
    /// `cgroup`, `controllers` enabled at the mount root.
    pub fn v2(cgroup: &str, controllers: &str) -> Tree {
        let tree = Tree::new();
        tree.write("proc/self/cgroup", &format!("0::{cgroup}\n"))
            .write(
                "proc/self/mountinfo",
                "22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw\n\
                 30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n",
            )
            .write("sys/fs/cgroup/cgroup.controllers", &format!("{controllers}\n"));
        tree
    }

    /// A pure cgroup v1 machine: memory, cpu+cpuacct (one co-mounted hierarchy) and cpuset
    /// at their usual mount points, the process in `cgroup` in each.
    pub fn v1(cgroup: &str) -> Tree {
        let tree = Tree::new();
        tree.write(
            "proc/self/cgroup",
            &format!(
                "12:pids:{cgroup}\n5:memory:{cgroup}\n4:cpu,cpuacct:{cgroup}\n3:cpuset:{cgroup}\n1:name=systemd:{cgroup}\n"
            ),
        )
        .write(
            "proc/self/mountinfo",
            "22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw\n\
             25 22 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755\n\
             26 25 0:23 / /sys/fs/cgroup/systemd rw,nosuid shared:10 - cgroup cgroup rw,xattr,name=systemd\n\
             30 25 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory\n\
             31 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,cpu,cpuacct\n\
             32 25 0:29 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,cpuset\n\
             33 25 0:30 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,pids\n",
        );
        tree
    }

    /// A hybrid machine shaped like the one this project is developed on: v1 controllers
    /// each on their own mount, the process in `memory_cgroup` for memory and `/` for the
    /// rest, and a v2 unified mount at /sys/fs/cgroup/unified with `v2_controllers`.
    pub fn hybrid(memory_cgroup: &str, v2_controllers: &str) -> Tree {
        let tree = Tree::new();
        tree.write(
            "proc/self/cgroup",
            &format!("9:name=systemd:/\n4:memory:{memory_cgroup}\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n"),
        )
        .write(
            "proc/self/mountinfo",
            "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
             32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
             33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n\
             34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n\
             35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
             40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n\
             41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n",
        )
        .write("sys/fs/cgroup/unified/cgroup.controllers", &format!("{v2_controllers}\n"));
        tree
    }
}

/// The host's values as sysinfo reports them, for asserting the host fallback.
pub fn host_memory_bytes() -> u64 {
    let mut system = sysinfo::System::new().expect("sysinfo");
    system.refresh_memory_specifics(sysinfo::MemoryRefreshKind::nothing().with_ram());
    system.total_memory()
}

pub fn host_cpus() -> f64 {
    let mut system = sysinfo::System::new().expect("sysinfo");
    system.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
    system.cpus().len() as f64
}
