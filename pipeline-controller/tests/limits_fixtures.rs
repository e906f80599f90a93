//! Limits detection against fixture trees, one layout per test.

mod common;

use common::{MIB, Tree, V1_UNLIMITED, host_cpus, host_memory_bytes};
use pipeline_controller::limits::{
    CPU_LIMIT_ENV, CgroupVersion, LimitSource, Limits, LimitsError, LimitsReader, MEMORY_LIMIT_ENV,
};

const V1: LimitSource = LimitSource::Cgroup(CgroupVersion::V1);
const V2: LimitSource = LimitSource::Cgroup(CgroupVersion::V2);

fn mib(n: u64) -> String {
    (n * MIB).to_string()
}

#[test]
fn public_types_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Limits>();
    assert_send_sync::<LimitsReader>();
    assert_send_sync::<LimitsError>();
}

// ---- cgroup v2 ----

#[test]
fn v2_leaf_limit() {
    let tree = Tree::v2("/app.slice/app.service", "cpuset cpu io memory pids");
    tree.write("sys/fs/cgroup/app.slice/memory.max", "max\n")
        .write("sys/fs/cgroup/app.slice/app.service/memory.max", &mib(256));
    let limits = tree.limits().unwrap();
    assert_eq!(limits.memory.bytes, Some(256 * MIB));
    assert_eq!(limits.memory.source, V2);
}

#[test]
fn v2_parent_lower_than_leaf() {
    let tree = Tree::v2("/a/b", "memory");
    tree.write("sys/fs/cgroup/a/memory.max", &mib(128))
        .write("sys/fs/cgroup/a/b/memory.max", &mib(256));
    let limits = tree.limits().unwrap();
    assert_eq!(limits.memory.bytes, Some(128 * MIB));
    assert_eq!(limits.memory.source, V2);
}

#[test]
fn v2_max_everywhere_falls_back_to_the_host() {
    let tree = Tree::v2("/a/b", "cpu memory");
    for dir in ["a", "a/b"] {
        tree.write(&format!("sys/fs/cgroup/{dir}/memory.max"), "max\n")
            .write(&format!("sys/fs/cgroup/{dir}/cpu.max"), "max 100000\n");
    }
    let limits = tree.limits().unwrap();
    assert_eq!(limits.memory.source, LimitSource::Host);
    assert_eq!(limits.memory.bytes, Some(host_memory_bytes()));
    assert_eq!(limits.cpu.source, LimitSource::Host);
    assert_eq!(limits.cpu.cores, Some(host_cpus()));
}

#[test]
fn v2_cpu_max_quota() {
    let tree = Tree::v2("/app", "cpu");
    tree.write("sys/fs/cgroup/app/cpu.max", "150000 100000\n");
    let limits = tree.limits().unwrap();
    assert_eq!(limits.cpu.cores, Some(1.5));
    assert_eq!(limits.cpu.source, V2);
}

#[test]
fn v2_cpu_quota_lowest_on_the_path() {
    let tree = Tree::v2("/a/b", "cpu");
    tree.write("sys/fs/cgroup/a/cpu.max", "25000 50000\n")
        .write("sys/fs/cgroup/a/b/cpu.max", "max 100000\n");
    let limits = tree.limits().unwrap();
    assert_eq!(limits.cpu.cores, Some(0.5));
    assert_eq!(limits.cpu.source, V2);
}

#[test]
fn v2_controller_not_enabled_is_not_read() {
    // memory.max left over in a cgroup whose mount does not offer the memory controller
    // must not count.
    let tree = Tree::v2("/app", "cpu");
    tree.write("sys/fs/cgroup/app/memory.max", &mib(1));
    assert_eq!(tree.limits().unwrap().memory.source, LimitSource::Host);
}

// ---- cgroup v1 ----

#[test]
fn v1_limit() {
    let tree = Tree::v1("/job");
    tree.write("sys/fs/cgroup/memory/job/memory.limit_in_bytes", &mib(64))
        .write(
            "sys/fs/cgroup/memory/job/memory.stat",
            &format!("cache 0\nhierarchical_memory_limit {V1_UNLIMITED}\n"),
        )
        .write("sys/fs/cgroup/memory/memory.limit_in_bytes", V1_UNLIMITED);
    let limits = tree.limits().unwrap();
    assert_eq!(limits.memory.bytes, Some(64 * MIB));
    assert_eq!(limits.memory.source, V1);
}

#[test]
fn v1_hierarchical_limit_lower() {
    // An ancestor outside the visible tree set 32 MiB; only memory.stat shows it.
    let tree = Tree::v1("/job");
    tree.write(
        "sys/fs/cgroup/memory/job/memory.limit_in_bytes",
        V1_UNLIMITED,
    )
    .write(
        "sys/fs/cgroup/memory/job/memory.stat",
        &format!("cache 0\nhierarchical_memory_limit {}\n", 32 * MIB),
    );
    let limits = tree.limits().unwrap();
    assert_eq!(limits.memory.bytes, Some(32 * MIB));
    assert_eq!(limits.memory.source, V1);
}

#[test]
fn v1_parent_lower_than_leaf() {
    let tree = Tree::v1("/a/b");
    tree.write("sys/fs/cgroup/memory/a/memory.limit_in_bytes", &mib(100))
        .write("sys/fs/cgroup/memory/a/b/memory.limit_in_bytes", &mib(200));
    assert_eq!(tree.limits().unwrap().memory.bytes, Some(100 * MIB));
}

#[test]
fn v1_unlimited_sentinel_means_no_limit() {
    let tree = Tree::v1("/job");
    for dir in ["", "job/"] {
        tree.write(
            &format!("sys/fs/cgroup/memory/{dir}memory.limit_in_bytes"),
            V1_UNLIMITED,
        );
    }
    tree.write(
        "sys/fs/cgroup/memory/job/memory.stat",
        &format!("hierarchical_memory_limit {V1_UNLIMITED}\n"),
    );
    // Any value from 2^62 up is "unlimited" too (other page sizes round differently).
    tree.write(
        "sys/fs/cgroup/memory/memory.limit_in_bytes",
        "9223372036854710272",
    );
    let limits = tree.limits().unwrap();
    assert_eq!(limits.memory.source, LimitSource::Host);
    assert_eq!(limits.memory.bytes, Some(host_memory_bytes()));
}

#[test]
fn v1_quota() {
    let tree = Tree::v1("/job");
    tree.write("sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_quota_us", "250000\n")
        .write(
            "sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_period_us",
            "100000\n",
        );
    let limits = tree.limits().unwrap();
    assert_eq!(limits.cpu.cores, Some(2.5));
    assert_eq!(limits.cpu.source, V1);
}

#[test]
fn v1_quota_minus_one_means_no_quota() {
    let tree = Tree::v1("/job");
    for dir in ["", "job/"] {
        tree.write(
            &format!("sys/fs/cgroup/cpu,cpuacct/{dir}cpu.cfs_quota_us"),
            "-1\n",
        )
        .write(
            &format!("sys/fs/cgroup/cpu,cpuacct/{dir}cpu.cfs_period_us"),
            "100000\n",
        );
    }
    let limits = tree.limits().unwrap();
    assert_eq!(limits.cpu.source, LimitSource::Host);
    assert_eq!(limits.cpu.cores, Some(host_cpus()));
}

// ---- hybrid ----

#[test]
fn hybrid_like_this_machine() {
    let tree = Tree::hybrid("/process_api/16086661", "hugetlb");
    tree.write(
        "sys/fs/cgroup/memory/process_api/16086661/memory.limit_in_bytes",
        &mib(64),
    )
    .write(
        "sys/fs/cgroup/memory/process_api/memory.limit_in_bytes",
        V1_UNLIMITED,
    )
    .write("sys/fs/cgroup/cpu/cpu.cfs_quota_us", "50000\n")
    .write("sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n")
    // The unified mount does not have the memory or cpu controller: these must be
    // ignored even though the process's v2 cgroup is where they sit.
    .write("sys/fs/cgroup/unified/memory.max", "4096\n")
    .write("sys/fs/cgroup/unified/cpu.max", "1000 100000\n");
    let limits = tree.limits().unwrap();
    assert_eq!(limits.memory.bytes, Some(64 * MIB));
    assert_eq!(limits.memory.source, V1);
    assert_eq!(limits.cpu.cores, Some(0.5));
    assert_eq!(limits.cpu.source, V1);
}

#[test]
fn hybrid_with_memory_on_the_unified_mount() {
    // v1 has cpu, the unified mount has memory: each is read where it is mounted.
    let tree = Tree::new();
    tree.write("proc/self/cgroup", "2:cpu,cpuacct:/svc\n0::/svc\n")
        .write(
            "proc/self/mountinfo",
            "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
             32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
        )
        .write("sys/fs/cgroup/unified/cgroup.controllers", "memory\n")
        .write("sys/fs/cgroup/unified/svc/memory.max", &mib(300))
        .write("sys/fs/cgroup/cpu,cpuacct/svc/cpu.cfs_quota_us", "100000\n")
        .write(
            "sys/fs/cgroup/cpu,cpuacct/svc/cpu.cfs_period_us",
            "100000\n",
        );
    let limits = tree.limits().unwrap();
    assert_eq!(
        (limits.memory.bytes, limits.memory.source),
        (Some(300 * MIB), V2)
    );
    assert_eq!((limits.cpu.cores, limits.cpu.source), (Some(1.0), V1));
}

// ---- containers ----

#[test]
fn container_with_bind_mounted_cgroup_root() {
    // Docker without a cgroup namespace: /proc/self/cgroup shows the host path, the mount
    // shows only the container's subtree (mountinfo root = that path).
    let tree = Tree::new();
    tree.write(
        "proc/self/cgroup",
        "5:memory:/docker/0123abcd\n4:cpu,cpuacct:/docker/0123abcd\n",
    )
    .write(
        "proc/self/mountinfo",
        "610 605 0:27 /docker/0123abcd /sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime master:14 - cgroup cgroup rw,memory\n\
         611 605 0:28 /docker/0123abcd /sys/fs/cgroup/cpu,cpuacct ro,nosuid,nodev,noexec,relatime master:15 - cgroup cgroup rw,cpu,cpuacct\n",
    )
    .write("sys/fs/cgroup/memory/memory.limit_in_bytes", &mib(512))
    // The path the host would use does not exist inside the container; a trap in case
    // the mount root is not stripped.
    .write("sys/fs/cgroup/memory/docker/0123abcd/memory.limit_in_bytes", &mib(1))
    .write("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "150000\n")
    .write("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
    let limits = tree.limits().unwrap();
    assert_eq!(
        (limits.memory.bytes, limits.memory.source),
        (Some(512 * MIB), V1)
    );
    assert_eq!((limits.cpu.cores, limits.cpu.source), (Some(1.5), V1));
}

#[test]
fn container_with_relative_cgroup_path_under_the_mount_root() {
    // Kubernetes-style v2: the mount shows the pod's cgroup, the process is in a child
    // of it. The walk goes from the child up to the mount root and no further.
    let tree = Tree::new();
    tree.write("proc/self/cgroup", "0::/kubepods/pod42/ctr\n")
        .write(
            "proc/self/mountinfo",
            "1020 1010 0:26 /kubepods/pod42 /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime shared:3 master:7 - cgroup2 cgroup2 rw,nsdelegate\n",
        )
        .write("sys/fs/cgroup/cgroup.controllers", "cpu memory\n")
        .write("sys/fs/cgroup/memory.max", &mib(512))
        .write("sys/fs/cgroup/ctr/memory.max", &mib(1024))
        .write("sys/fs/cgroup/cpu.max", "max 100000\n")
        .write("sys/fs/cgroup/ctr/cpu.max", "200000 100000\n")
        // Outside the mount: must never be read.
        .write("sys/fs/memory.max", &mib(1));
    let limits = tree.limits().unwrap();
    assert_eq!(
        (limits.memory.bytes, limits.memory.source),
        (Some(512 * MIB), V2)
    );
    assert_eq!((limits.cpu.cores, limits.cpu.source), (Some(2.0), V2));
}

#[test]
fn cgroup_outside_the_mount_uses_the_mount_point() {
    // A cgroup namespace shows `/..` for a cgroup outside it; the mount is the
    // container's own cgroup, the best guess left.
    let tree = Tree::new();
    tree.write("proc/self/cgroup", "0::/../sibling\n")
        .write(
            "proc/self/mountinfo",
            "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
        )
        .write("sys/fs/cgroup/cgroup.controllers", "memory\n")
        .write("sys/fs/cgroup/memory.max", &mib(700));
    assert_eq!(tree.limits().unwrap().memory.bytes, Some(700 * MIB));
}

// ---- cpuset ----

#[test]
fn cpuset_narrower_than_quota() {
    let tree = Tree::v2("/app", "cpuset cpu memory");
    tree.write("sys/fs/cgroup/app/cpu.max", "400000 100000\n")
        .write("sys/fs/cgroup/app/cpuset.cpus.effective", "0-1\n");
    let limits = tree.limits().unwrap();
    assert_eq!(limits.cpu.cores, Some(2.0));
    assert_eq!(limits.cpu.source, LimitSource::Cpuset);
}

#[test]
fn quota_narrower_than_cpuset() {
    let tree = Tree::v1("/job");
    tree.write("sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_quota_us", "50000\n")
        .write(
            "sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_period_us",
            "100000\n",
        )
        .write("sys/fs/cgroup/cpuset/job/cpuset.cpus", "0-3,8\n");
    let limits = tree.limits().unwrap();
    assert_eq!((limits.cpu.cores, limits.cpu.source), (Some(0.5), V1));
}

#[test]
fn v1_cpuset_without_quota() {
    // An empty list in the leaf means "not set here"; the parent's list applies.
    // A one-CPU set limits nothing on a one-CPU host.
    let expected = if host_cpus() > 1.0 {
        LimitSource::Cpuset
    } else {
        LimitSource::Host
    };
    let tree = Tree::v1("/job");
    tree.write("sys/fs/cgroup/cpuset/job/cpuset.cpus", "\n")
        .write("sys/fs/cgroup/cpuset/cpuset.cpus", "0\n");
    let limits = tree.limits().unwrap();
    assert_eq!((limits.cpu.cores, limits.cpu.source), (Some(1.0), expected));
}

// ---- overrides ----

#[test]
fn env_override_wins() {
    let tree = Tree::v2("/app", "cpu memory");
    tree.write("sys/fs/cgroup/app/memory.max", &mib(64))
        .write("sys/fs/cgroup/app/cpu.max", "50000 100000\n");
    let limits = tree
        .limits_with_env(&[(MEMORY_LIMIT_ENV, "1GiB"), (CPU_LIMIT_ENV, "3")])
        .unwrap();
    assert_eq!(limits.memory.bytes, Some(1024 * MIB));
    assert_eq!(limits.memory.source, LimitSource::EnvOverride);
    assert_eq!(limits.cpu.cores, Some(3.0));
    assert_eq!(limits.cpu.source, LimitSource::EnvOverride);

    // One override leaves the other limit to detection.
    let limits = tree
        .limits_with_env(&[(MEMORY_LIMIT_ENV, "1048576")])
        .unwrap();
    assert_eq!(limits.memory.bytes, Some(MIB));
    assert_eq!((limits.cpu.cores, limits.cpu.source), (Some(0.5), V2));
}

#[test]
fn unparsable_env_override_names_the_variable_and_value() {
    let tree = Tree::v2("/app", "memory");
    for (name, value) in [
        (MEMORY_LIMIT_ENV, "lots"),
        (MEMORY_LIMIT_ENV, "12MB"),
        (MEMORY_LIMIT_ENV, ""),
        (CPU_LIMIT_ENV, "two"),
        (CPU_LIMIT_ENV, "-1"),
    ] {
        let err = tree.limits_with_env(&[(name, value)]).unwrap_err();
        match &err {
            LimitsError::InvalidEnv {
                name: got,
                value: got_value,
                ..
            } => {
                assert_eq!(*got, name);
                assert_eq!(got_value, value);
            }
            other => panic!("expected InvalidEnv for {name}={value:?}, got {other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains(&format!("{name}={value:?}")), "{message}");
    }
}

// ---- errors and missing files ----

enum Layout {
    V1,
    V2,
}

#[test]
fn malformed_files_give_an_error_naming_the_file() {
    let cases = [
        (
            Layout::V2,
            "sys/fs/cgroup/app/memory.max",
            "lots\n",
            "\"lots\"",
        ),
        (
            Layout::V2,
            "sys/fs/cgroup/app/cpu.max",
            "50000\n",
            "\"50000\"",
        ),
        (
            Layout::V2,
            "sys/fs/cgroup/app/cpu.max",
            "abc 100000\n",
            "\"abc 100000\"",
        ),
        (
            Layout::V2,
            "sys/fs/cgroup/app/cpu.max",
            "50000 0\n",
            "\"50000 0\"",
        ),
        (
            Layout::V1,
            "sys/fs/cgroup/memory/job/memory.limit_in_bytes",
            "12k\n",
            "\"12k\"",
        ),
        (
            Layout::V1,
            "sys/fs/cgroup/memory/job/memory.stat",
            "hierarchical_memory_limit x\n",
            "line 1",
        ),
        (
            Layout::V1,
            "sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_quota_us",
            "1.5\n",
            "\"1.5\"",
        ),
        (
            Layout::V1,
            "sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_quota_us",
            "50000\n",
            "cpu.cfs_period_us",
        ),
        (
            Layout::V1,
            "sys/fs/cgroup/cpuset/job/cpuset.cpus",
            "3-1\n",
            "\"3-1\"",
        ),
        (Layout::V1, "proc/self/cgroup", "memory\n", "line 1"),
        (
            Layout::V1,
            "proc/self/mountinfo",
            "30 25 0:27 / /sys/fs/cgroup/memory rw\n",
            "separator",
        ),
        (
            Layout::V2,
            "sys/fs/cgroup/app/memory.max",
            "\u{fffe}\u{0}\n",
            "\"\\u{fffe}\\0\"",
        ),
    ];
    for (layout, file, text, needle) in cases {
        let tree = match layout {
            Layout::V1 => Tree::v1("/job"),
            Layout::V2 => Tree::v2("/app", "cpu memory"),
        };
        tree.write(file, text);
        let err = tree.limits().expect_err(file);
        let message = err.to_string();
        // A quota without its period names the missing period file.
        let expected_file = match needle {
            "cpu.cfs_period_us" => file.replace("cpu.cfs_quota_us", "cpu.cfs_period_us"),
            _ => file.to_string(),
        };
        let expected_path = tree.root().join(expected_file);
        assert_eq!(err.path(), Some(expected_path.as_path()), "{message}");
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
        assert!(
            message.contains(&tree.root().display().to_string()),
            "{message}"
        );
    }
}

#[test]
fn non_utf8_file_is_an_error() {
    let tree = Tree::v2("/app", "memory");
    let path = tree.root().join("sys/fs/cgroup/app/memory.max");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, [0xff, 0xfe, b'\n']).unwrap();
    let err = tree.limits().unwrap_err();
    assert_eq!(err.path(), Some(path.as_path()));
    assert!(err.to_string().contains("UTF-8"), "{err}");
}

#[test]
fn unreadable_file_is_a_read_error() {
    // A directory where a file should be: reading fails with something other than
    // "not found", which must surface.
    let tree = Tree::v2("/app", "memory");
    std::fs::create_dir_all(tree.root().join("sys/fs/cgroup/app/memory.max")).unwrap();
    let err = tree.limits().unwrap_err();
    assert!(matches!(err, LimitsError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("memory.max"), "{err}");
}

#[test]
fn missing_files_are_not_errors() {
    // No proc files at all: no cgroups, the host's values.
    let empty = Tree::new();
    let limits = empty.limits().unwrap();
    assert_eq!(limits.memory.source, LimitSource::Host);
    assert_eq!(limits.cpu.source, LimitSource::Host);

    // cgroups found, but no limit files in them.
    let bare = Tree::v1("/job");
    let limits = bare.limits().unwrap();
    assert_eq!(limits.memory.source, LimitSource::Host);
    assert_eq!(limits.cpu.source, LimitSource::Host);
}

#[test]
fn a_reader_sees_limits_change() {
    let tree = Tree::v1("/job");
    tree.write("sys/fs/cgroup/memory/job/memory.limit_in_bytes", &mib(64));
    let reader = tree.reader();
    assert_eq!(reader.read().unwrap().memory.bytes, Some(64 * MIB));

    tree.write("sys/fs/cgroup/memory/job/memory.limit_in_bytes", &mib(96));
    assert_eq!(reader.read().unwrap().memory.bytes, Some(96 * MIB));

    tree.write(
        "sys/fs/cgroup/memory/job/memory.limit_in_bytes",
        V1_UNLIMITED,
    );
    assert_eq!(reader.read().unwrap().memory.source, LimitSource::Host);
}

// ---- this machine ----

#[test]
fn detect_on_this_machine() {
    let limits = Limits::detect().expect("detect() on this machine");
    let reader = LimitsReader::new().unwrap();
    eprintln!("this machine: {limits}");
    eprintln!("resolved: {reader:?}");
    assert!(limits.memory.bytes.is_some_and(|b| b > 0), "{limits:?}");
    assert!(limits.cpu.cores.is_some_and(|c| c > 0.0), "{limits:?}");
    // Without overrides, the sources are detection's.
    if std::env::var_os(MEMORY_LIMIT_ENV).is_none() {
        assert_ne!(limits.memory.source, LimitSource::EnvOverride);
    }
    if std::env::var_os(CPU_LIMIT_ENV).is_none() {
        assert_ne!(limits.cpu.source, LimitSource::EnvOverride);
        // The affinity mask bounds the result on the real root.
        let affinity = std::thread::available_parallelism().unwrap().get() as f64;
        assert!(limits.cpu.cores.unwrap() <= affinity, "{limits:?}");
    }
}
