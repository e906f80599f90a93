//! Limits detection inside real cgroups made for the test.
//!
//! Each test creates a cgroup v1 child of the test process's OWN cgroup (never elsewhere
//! in the hierarchy), sets a limit with `cgroups-rs`, and re-runs this test binary as a
//! child process that joins the cgroup (it writes its own pid to `cgroup.procs`), calls
//! `Limits::detect()` and prints one line the parent parses. The cgroup is removed
//! afterwards, also when an assertion fails (a Drop guard moves any process left back to
//! the parent and removes the directory).
//!
//! Needs root and a writable cgroup v1 hierarchy for the controller. Without them the
//! test prints `SKIP: ...` to stderr and passes, unless `PIPELINE_REQUIRE_CGROUP=1`, in
//! which case it fails. Hosts with the controller on cgroup v2 are skipped: a child of a
//! v2 cgroup that holds processes cannot get a controller the parent does not delegate,
//! and delegating it would mean changing `cgroup.subtree_control` above this process.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use cgroups_rs::fs::cgroup::get_cgroups_relative_paths;
use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::hierarchies::V1;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::{Cgroup, Controllers};
use pipeline_controller::limits::{CPU_LIMIT_ENV, Limits, MEMORY_LIMIT_ENV};

/// Set in the child: the `cgroup.procs` file it must join before detecting.
const JOIN_ENV: &str = "PIPELINE_CGROUP_TEST_JOIN";
/// `1` turns a skip into a failure (CI machines that are known to allow cgroups).
const REQUIRE_ENV: &str = "PIPELINE_REQUIRE_CGROUP";
const LINE_PREFIX: &str = "PIPELINE_LIMITS";
const MIB: u64 = 1 << 20;

#[test]
fn real_memory_cgroup_limit_is_detected() {
    if act_as_child() {
        return;
    }
    let Some(group) = TestCgroup::create(Controllers::Mem, |cgroup| {
        let memory: &MemController = cgroup.controller_of().ok_or("no memory controller")?;
        memory
            .set_limit(64 * MIB as i64)
            .map_err(|e| format!("set memory.limit_in_bytes: {e}"))
    }) else {
        return;
    };
    let detected = group.detect_in_child("real_memory_cgroup_limit_is_detected");
    eprintln!("child in {}: {detected:?}", group.dir.display());
    assert_eq!(detected.memory_bytes.as_deref(), Some("67108864"));
    assert_eq!(detected.memory_source, "cgroup v1");

    let dir = group.dir.clone();
    drop(group);
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

#[test]
fn real_cpu_cgroup_quota_is_detected() {
    if act_as_child() {
        return;
    }
    let Some(group) = TestCgroup::create(Controllers::Cpu, |cgroup| {
        let cpu: &CpuController = cgroup.controller_of().ok_or("no cpu controller")?;
        cpu.set_cfs_period(100_000)
            .and_then(|()| cpu.set_cfs_quota(50_000))
            .map_err(|e| format!("set cpu.cfs_quota_us: {e}"))
    }) else {
        return;
    };
    let detected = group.detect_in_child("real_cpu_cgroup_quota_is_detected");
    eprintln!("child in {}: {detected:?}", group.dir.display());
    assert_eq!(detected.cpu_cores.as_deref(), Some("0.5"));
    assert_eq!(detected.cpu_source, "cgroup v1");

    let dir = group.dir.clone();
    drop(group);
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

/// In the child process: join the cgroup, detect, print the result. Returns false in the
/// parent (the variable is not set there).
fn act_as_child() -> bool {
    let Some(procs) = std::env::var_os(JOIN_ENV) else {
        return false;
    };
    std::fs::write(&procs, std::process::id().to_string())
        .unwrap_or_else(|e| panic!("child: join {}: {e}", Path::new(&procs).display()));
    eprintln!(
        "child /proc/self/cgroup:\n{}",
        std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default()
    );
    let limits = Limits::detect().expect("child: Limits::detect()");
    let show = |v: Option<String>| v.unwrap_or_else(|| "none".into());
    println!(
        "{LINE_PREFIX}\tmemory_bytes={}\tmemory_source={}\tcpu_cores={}\tcpu_source={}",
        show(limits.memory.bytes.map(|b| b.to_string())),
        limits.memory.source,
        show(limits.cpu.cores.map(|c| c.to_string())),
        limits.cpu.source,
    );
    true
}

/// What the child printed.
#[derive(Debug)]
struct Detected {
    memory_bytes: Option<String>,
    memory_source: String,
    cpu_cores: Option<String>,
    cpu_source: String,
}

/// A cgroup made for one test; removed on drop.
struct TestCgroup {
    cgroup: Cgroup,
    /// The cgroup's directory.
    dir: PathBuf,
}

impl TestCgroup {
    /// Creates `<own cgroup>/pipeline-limits-test-<pid>-<controller>` in the controller's
    /// v1 hierarchy and applies `configure`. `None` (after a SKIP line) when this machine
    /// does not allow it.
    fn create(
        controller: Controllers,
        configure: impl FnOnce(&Cgroup) -> Result<(), String>,
    ) -> Option<TestCgroup> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return unavailable("not running as root");
        }
        let name = controller.to_string();
        let Some((mount_point, mount_root)) = V1::new().get_mount_point(controller) else {
            return unavailable(&format!(
                "no cgroup v1 hierarchy with the {name} controller (cgroup v2 or none); \
                 this test only creates v1 child cgroups"
            ));
        };
        let own = match get_cgroups_relative_paths() {
            Ok(paths) => paths.get(&name).cloned(),
            Err(e) => return unavailable(&format!("cannot read /proc/self/cgroup: {e}")),
        };
        let Some(own) = own else {
            return unavailable(&format!("/proc/self/cgroup has no {name} line"));
        };
        // Own path relative to what the mount shows; cgroups-rs joins it to the mount point.
        let Ok(relative) = Path::new(&own).strip_prefix(&mount_root) else {
            return unavailable(&format!(
                "own {name} cgroup {own} is outside the mounted subtree {}",
                mount_root.display()
            ));
        };
        let path = relative.join(format!(
            "pipeline-limits-test-{}-{name}",
            std::process::id()
        ));
        let dir = mount_point.join(&path);
        let cgroup = match Cgroup::new_with_specified_controllers(
            Box::new(V1::new()),
            &path,
            Some(vec![name.clone()]),
        ) {
            Ok(cgroup) => cgroup,
            Err(e) => {
                return unavailable(&format!("cannot create {}: {e}", dir.display()));
            }
        };
        // From here on the guard removes the cgroup whatever happens.
        let group = TestCgroup { cgroup, dir };
        if let Err(e) = configure(&group.cgroup) {
            return unavailable(&format!("cannot configure {}: {e}", group.dir.display()));
        }
        eprintln!("created {}", group.dir.display());
        Some(group)
    }

    /// Runs `test_name` of this binary as a child that joins this cgroup and detects.
    fn detect_in_child(&self, test_name: &str) -> Detected {
        let exe = std::env::current_exe().expect("current_exe");
        let output = Command::new(exe)
            .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
            .env(JOIN_ENV, self.dir.join("cgroup.procs"))
            .env_remove(MEMORY_LIMIT_ENV)
            .env_remove(CPU_LIMIT_ENV)
            .env_remove(REQUIRE_ENV)
            .output()
            .expect("spawn the child test process");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "child failed ({}):\n{stdout}\n{stderr}",
            output.status
        );
        let line = stdout
            .lines()
            // libtest may have printed "test <name> ... " on the same line first.
            .find_map(|line| line.split_once(LINE_PREFIX).map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("no {LINE_PREFIX} line from the child:\n{stdout}\n{stderr}"));
        let field = |key: &str| {
            line.split('\t')
                .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("no {key} in {line:?}"))
                .to_string()
        };
        let optional = |v: String| (v != "none").then_some(v);
        Detected {
            memory_bytes: optional(field("memory_bytes")),
            memory_source: field("memory_source"),
            cpu_cores: optional(field("cpu_cores")),
            cpu_source: field("cpu_source"),
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // The child has exited by now unless the test failed midway; move whatever is
        // left to the parent cgroup, or the directory cannot be removed.
        let parent = self.dir.parent().expect("a child cgroup has a parent");
        let procs = std::fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.split_whitespace() {
            if let Err(e) = std::fs::write(parent.join("cgroup.procs"), pid) {
                eprintln!(
                    "warning: cannot move pid {pid} out of {}: {e}",
                    self.dir.display()
                );
            }
        }
        if let Err(e) = self.cgroup.delete() {
            eprintln!("warning: cannot remove {}: {e}", self.dir.display());
        }
    }
}

/// Skips loudly, or fails when the environment requires real cgroups.
fn unavailable<T>(reason: &str) -> Option<T> {
    if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
        panic!("{REQUIRE_ENV}=1 but the real cgroup test cannot run: {reason}");
    }
    // Straight to the process's stderr: libtest captures `eprintln!` of passing tests,
    // and a skip must be seen.
    let message = format!("\n*** SKIP: real cgroup test not run: {reason} ***\n");
    let _ = std::io::stderr().lock().write_all(message.as_bytes());
    None
}
