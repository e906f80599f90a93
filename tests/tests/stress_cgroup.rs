//! The memory-cgroup runner for real: a child cgroup of this process's own cgroup is
//! created with a limit (through cgroups-rs), removed afterwards, and the kernel's
//! verdict (peak, OOM kills) is read.
//!
//! Needs root and a writable memory cgroup; without them the tests print SKIP and
//! pass, unless `PIPELINE_REQUIRE_CGROUP=1`.

use pipeline_tests::stress::cgroup::{MemoryCgroup, REQUIRE_ENV};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_pipeline-stress");

fn group(name: &str, limit: u64) -> Option<MemoryCgroup> {
    match MemoryCgroup::create(name, limit) {
        Ok(g) => Some(g),
        Err(e) => {
            assert!(
                std::env::var(REQUIRE_ENV).as_deref() != Ok("1"),
                "{REQUIRE_ENV}=1 but no cgroup: {e}"
            );
            eprintln!("SKIP: no writable memory cgroup: {e}");
            None
        }
    }
}

#[test]
fn the_cgroup_is_created_under_our_own_and_removed() {
    let Some(g) = group(&format!("stress-test-{}", std::process::id()), 64 << 20) else {
        return;
    };
    let dir = g.dir().to_owned();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let parent = dir.parent().unwrap().display().to_string();
    assert!(
        own.lines()
            .any(|l| !l.ends_with(":/") && parent.ends_with(l.rsplit(':').next().unwrap())),
        "{parent} vs {own}"
    );
    let v = g.verdict("n/a".into());
    assert_eq!(v.limit_bytes, 64 << 20);
    assert_eq!(v.oom_kills, 0);
    drop(g);
    assert!(!dir.exists());
}

#[test]
fn the_verdict_reads_the_kernels_peak_for_a_child_inside() {
    let Some(g) = group(&format!("stress-peak-{}", std::process::id()), 64 << 20) else {
        return;
    };
    // The shell joins the group, then dd holds a 16 MiB block in memory while copying.
    let status = Command::new("sh")
        .arg("-c")
        .arg(r#"echo $$ > "$0" && exec dd if=/dev/zero of=/dev/null bs=16M count=4 status=none"#)
        .arg(g.procs())
        .status()
        .unwrap();
    assert!(status.success(), "{status}");
    let v = g.verdict("exit 0".into());
    assert!(v.version == "v1" || v.version == "v2", "{v:?}");
    assert_eq!(v.limit_bytes, 64 << 20, "{v:?}");
    assert!((16 << 20..64 << 20).contains(&v.peak_bytes), "{v:?}");
    assert_eq!((v.oom_kills, v.limit_hits), (0, 0), "{v:?}");
    let dir = g.dir().to_owned();
    drop(g);
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn a_baseline_run_over_the_limit_is_oom_killed_and_reported() {
    if group(&format!("stress-probe-{}", std::process::id()), 64 << 20).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("oom.yaml");
    // 20 000 events/s of 1 KiB fill 64 MiB in about 3 s and the kernel kills the run
    // then; the long duration only leaves a slow or busy machine time to get there.
    std::fs::write(
        &file,
        r#"
name: oom
duration: 60s
controller: false
memory_limit: 64MiB
cgroup: true
stages:
  - { name: s, topic: t, capacity: 1000000, min_capacity: 16, max_capacity: 1000000, workers: [1, 1, 1], cost: { kind: fixed, time: 5ms } }
patterns:
  - { topic: t, rate: 20000, process: even, size: { fixed: 1024 } }
expect:
  max_oom_kills: 0
"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg(&file)
        .args(["--quiet", "--no-watch", "--report"])
        .arg(dir.path().join("report"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("killed by signal 9"), "{stdout}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report/summary.json")).unwrap())
            .unwrap();
    let oom = summary["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "OOM kills (kernel)")
        .unwrap();
    assert_eq!(oom["actual"], 1.0, "{summary}");
    // The cgroup is gone.
    let line = stdout
        .lines()
        .find(|l| l.starts_with("memory cgroup "))
        .unwrap();
    let path = line.split_whitespace().nth(2).unwrap();
    assert!(!std::path::Path::new(path).exists(), "{path} left behind");
}
