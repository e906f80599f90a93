//! Sensors against fixture trees: the caller passes instants, files are rewritten between
//! readings to play the passage of time.

mod common;

use std::time::{Duration, Instant};

use common::{MIB, Tree, V1_UNLIMITED};
use pipeline_controller::limits::{CgroupVersion, LimitSource, LimitsError};
use pipeline_controller::sensor::{
    CpuReading, CpuSensor, CpuUsageSource, MemoryReading, MemorySensor, MemoryUsageSource,
    Pressure, PressureSource,
};

#[test]
fn public_types_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<MemorySensor>();
    assert_send_sync::<MemoryReading>();
    assert_send_sync::<CpuSensor>();
    assert_send_sync::<CpuReading>();
    assert_send_sync::<Pressure>();
}

const PSI_SAMPLE: &str = "some avg10=1.50 avg60=0.75 avg300=0.20 total=123456\n\
                          full avg10=0.50 avg60=0.25 avg300=0.05 total=65432\n";

// ---- working set ----

#[test]
fn v2_working_set_subtracts_inactive_file() {
    let tree = Tree::v2("/app", "memory");
    tree.write("sys/fs/cgroup/app/memory.max", &(200 * MIB).to_string())
        .write("sys/fs/cgroup/app/memory.current", &(120 * MIB).to_string())
        .write(
            "sys/fs/cgroup/app/memory.stat",
            &format!(
                "anon {}\nfile {}\nactive_file {}\ninactive_file {}\n",
                80 * MIB,
                40 * MIB,
                10 * MIB,
                30 * MIB
            ),
        );
    let reading = MemorySensor::new(tree.reader())
        .read(Instant::now())
        .unwrap();
    assert_eq!(reading.usage_bytes, 120 * MIB);
    assert_eq!(reading.working_set_bytes, 90 * MIB);
    assert_eq!(
        reading.usage_source,
        MemoryUsageSource::Cgroup(CgroupVersion::V2)
    );
    assert_eq!(reading.limit.bytes, Some(200 * MIB));
    assert_eq!(reading.used_fraction(), Some(0.45));
}

#[test]
fn v1_working_set_uses_total_inactive_file() {
    let tree = Tree::v1("/job");
    tree.write(
        "sys/fs/cgroup/memory/job/memory.usage_in_bytes",
        &(50 * MIB).to_string(),
    )
    .write(
        "sys/fs/cgroup/memory/job/memory.stat",
        // `inactive_file` is this cgroup only; `total_` includes children, like usage.
        &format!(
            "inactive_file {}\nhierarchical_memory_limit {V1_UNLIMITED}\ntotal_inactive_file {}\n",
            MIB,
            5 * MIB
        ),
    );
    let reading = MemorySensor::new(tree.reader())
        .read(Instant::now())
        .unwrap();
    assert_eq!(reading.working_set_bytes, 45 * MIB);
    assert_eq!(
        reading.usage_source,
        MemoryUsageSource::Cgroup(CgroupVersion::V1)
    );
}

#[test]
fn working_set_saturates_at_zero() {
    let tree = Tree::v2("/app", "memory");
    tree.write("sys/fs/cgroup/app/memory.current", "1000\n")
        .write("sys/fs/cgroup/app/memory.stat", "inactive_file 5000\n");
    let reading = MemorySensor::new(tree.reader())
        .read(Instant::now())
        .unwrap();
    assert_eq!(reading.working_set_bytes, 0);
}

#[test]
fn process_rss_without_a_memory_cgroup() {
    let tree = Tree::new();
    tree.write("proc/self/statm", "5000 1200 300 10 0 900 0\n");
    let reading = MemorySensor::new(tree.reader())
        .read(Instant::now())
        .unwrap();
    let page = page_size();
    assert_eq!(reading.working_set_bytes, 1200 * page);
    assert_eq!(reading.usage_source, MemoryUsageSource::ProcessRss);
    assert_eq!(reading.limit.source, LimitSource::Host);
}

#[test]
fn malformed_usage_names_the_file() {
    for (file, text) in [
        ("sys/fs/cgroup/app/memory.current", "many\n"),
        ("sys/fs/cgroup/app/memory.stat", "inactive_file -3\n"),
        ("sys/fs/cgroup/app/memory.pressure", "some avg10=x\n"),
    ] {
        let tree = Tree::v2("/app", "memory");
        tree.write("sys/fs/cgroup/app/memory.current", "1000\n")
            .write(file, text);
        let err = MemorySensor::new(tree.reader())
            .read(Instant::now())
            .unwrap_err();
        assert_eq!(err.path(), Some(tree.root().join(file).as_path()), "{err}");
        assert!(matches!(err, LimitsError::Malformed { .. }), "{err:?}");
    }
    let tree = Tree::new();
    tree.write("proc/self/statm", "5000\n");
    let err = MemorySensor::new(tree.reader())
        .read(Instant::now())
        .unwrap_err();
    assert!(err.to_string().contains("statm"), "{err}");
}

// ---- growth and time to limit ----

#[test]
fn growth_rate_and_time_to_limit_from_two_readings() {
    let tree = Tree::v1("/job");
    let usage = "sys/fs/cgroup/memory/job/memory.usage_in_bytes";
    tree.write(
        "sys/fs/cgroup/memory/job/memory.limit_in_bytes",
        &(100 * MIB).to_string(),
    )
    .write(usage, &(20 * MIB).to_string());
    let mut sensor = MemorySensor::new(tree.reader());
    let t0 = Instant::now();

    let first = sensor.read(t0).unwrap();
    assert_eq!(first.at, t0);
    assert_eq!(first.growth_bytes_per_sec, None);
    assert_eq!(first.time_to_limit, None);

    // +8 MiB in 2 s = 4 MiB/s; 72 MiB left = 18 s.
    tree.write(usage, &(28 * MIB).to_string());
    let second = sensor.read(t0 + Duration::from_secs(2)).unwrap();
    assert_eq!(second.growth_bytes_per_sec, Some((4 * MIB) as f64));
    assert_eq!(second.time_to_limit, Some(Duration::from_secs(18)));

    // Shrinking: negative growth, no time to limit.
    tree.write(usage, &(24 * MIB).to_string());
    let third = sensor.read(t0 + Duration::from_secs(4)).unwrap();
    assert_eq!(third.growth_bytes_per_sec, Some(-((2 * MIB) as f64)));
    assert_eq!(third.time_to_limit, None);

    // The same instant again: no rate rather than a division by zero.
    let fourth = sensor.read(t0 + Duration::from_secs(4)).unwrap();
    assert_eq!(fourth.growth_bytes_per_sec, None);

    // At the limit: zero time left whatever the rate.
    tree.write(usage, &(100 * MIB).to_string());
    let fifth = sensor.read(t0 + Duration::from_secs(5)).unwrap();
    assert_eq!(fifth.time_to_limit, Some(Duration::ZERO));
}

#[test]
fn reading_follows_a_changed_limit() {
    let tree = Tree::v2("/app", "memory");
    let limit = "sys/fs/cgroup/app/memory.max";
    tree.write(limit, &(100 * MIB).to_string())
        .write("sys/fs/cgroup/app/memory.current", &(50 * MIB).to_string());
    let mut sensor = MemorySensor::new(tree.reader());
    let t0 = Instant::now();
    assert_eq!(sensor.read(t0).unwrap().limit.bytes, Some(100 * MIB));

    tree.write(limit, &(60 * MIB).to_string());
    let reading = sensor.read(t0 + Duration::from_secs(1)).unwrap();
    assert_eq!(reading.limit.bytes, Some(60 * MIB));
    assert_eq!(reading.used_fraction(), Some(50.0 / 60.0));

    tree.write(limit, "max\n");
    let reading = sensor.read(t0 + Duration::from_secs(2)).unwrap();
    assert_eq!(reading.limit.source, LimitSource::Host);
}

// ---- pressure ----

#[test]
fn v2_pressure_comes_from_the_cgroup() {
    let tree = Tree::v2("/app", "memory");
    tree.write("sys/fs/cgroup/app/memory.current", "1000\n")
        .write("sys/fs/cgroup/app/memory.pressure", PSI_SAMPLE)
        .write(
            "proc/pressure/memory",
            "some avg10=99.00 avg60=99.00 avg300=99.00 total=1\n",
        );
    let reading = MemorySensor::new(tree.reader())
        .read(Instant::now())
        .unwrap();
    let pressure = reading.pressure.expect("pressure");
    assert_eq!(pressure.source, PressureSource::Cgroup);
    assert_eq!(
        (
            pressure.some.avg10,
            pressure.some.avg60,
            pressure.some.avg300
        ),
        (1.5, 0.75, 0.2)
    );
    assert_eq!(pressure.some.total, Duration::from_micros(123_456));
    let full = pressure.full.expect("full line");
    assert_eq!((full.avg10, full.avg60), (0.5, 0.25));
}

#[test]
fn v1_pressure_comes_from_proc() {
    let tree = Tree::v1("/job");
    tree.write("sys/fs/cgroup/memory/job/memory.usage_in_bytes", "1000\n")
        .write("proc/pressure/memory", PSI_SAMPLE);
    let reading = MemorySensor::new(tree.reader())
        .read(Instant::now())
        .unwrap();
    let pressure = reading.pressure.expect("pressure");
    assert_eq!(pressure.source, PressureSource::System);
    assert_eq!(pressure.some.avg10, 1.5);
}

#[test]
fn no_pressure_files_no_pressure() {
    let tree = Tree::v1("/job");
    tree.write("sys/fs/cgroup/memory/job/memory.usage_in_bytes", "1000\n");
    let reading = MemorySensor::new(tree.reader())
        .read(Instant::now())
        .unwrap();
    assert_eq!(reading.pressure, None);
}

// ---- CPU ----

#[test]
fn v1_cpu_share_from_two_readings() {
    let tree = Tree::v1("/job");
    let usage = "sys/fs/cgroup/cpu,cpuacct/job/cpuacct.usage";
    tree.write("sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_quota_us", "200000\n")
        .write(
            "sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_period_us",
            "100000\n",
        )
        .write(usage, "5000000000\n"); // 5 s, in nanoseconds
    let mut sensor = CpuSensor::new(tree.reader());
    let t0 = Instant::now();

    let first = sensor.read(t0).unwrap();
    assert_eq!(first.usage, Duration::from_secs(5));
    assert_eq!(
        first.usage_source,
        CpuUsageSource::Cgroup(CgroupVersion::V1)
    );
    assert_eq!(first.cores_used, None);
    assert_eq!(first.share_of_limit, None);
    assert_eq!(first.limit.cores, Some(2.0));

    // 3 s of CPU in 2 s of wall time: 1.5 cores of a 2-core limit.
    tree.write(usage, "8000000000\n");
    let second = sensor.read(t0 + Duration::from_secs(2)).unwrap();
    assert_eq!(second.cores_used, Some(1.5));
    assert_eq!(second.share_of_limit, Some(0.75));

    // A counter that went backwards (cgroup recreated) gives no rate, not a huge one.
    tree.write(usage, "1000\n");
    let third = sensor.read(t0 + Duration::from_secs(3)).unwrap();
    assert_eq!(third.cores_used, None);
}

#[test]
fn v2_cpu_share_uses_usage_usec() {
    let tree = Tree::v2("/app", "cpu");
    let stat = "sys/fs/cgroup/app/cpu.stat";
    tree.write("sys/fs/cgroup/app/cpu.max", "50000 100000\n")
        .write(stat, "usage_usec 100\nuser_usec 60\nsystem_usec 40\n");
    let mut sensor = CpuSensor::new(tree.reader());
    let t0 = Instant::now();
    sensor.read(t0).unwrap();
    tree.write(stat, "usage_usec 250100\nuser_usec 60\nsystem_usec 40\n");
    let reading = sensor.read(t0 + Duration::from_millis(500)).unwrap();
    assert_eq!(
        reading.usage_source,
        CpuUsageSource::Cgroup(CgroupVersion::V2)
    );
    assert_eq!(reading.cores_used, Some(0.5));
    assert_eq!(reading.share_of_limit, Some(1.0));
}

#[test]
fn v2_cpu_usage_without_the_cpu_controller() {
    // cpu.stat exists in every v2 cgroup; the limit then comes from elsewhere.
    let tree = Tree::v2("/app", "memory");
    tree.write("sys/fs/cgroup/app/cpu.stat", "usage_usec 42\n");
    let reading = CpuSensor::new(tree.reader()).read(Instant::now()).unwrap();
    assert_eq!(reading.usage, Duration::from_micros(42));
    assert_eq!(
        reading.usage_source,
        CpuUsageSource::Cgroup(CgroupVersion::V2)
    );
    assert_eq!(reading.limit.source, LimitSource::Host);
}

#[test]
fn process_cpu_time_without_cgroup_accounting() {
    let tree = Tree::new();
    let hz = clock_ticks();
    let stat = |utime: u64, stime: u64| {
        format!(
            "4242 (my (odd) name) R 1 4242 4242 0 -1 4194560 500 0 0 0 {utime} {stime} 0 0 20 0 3 0 100 0 0\n"
        )
    };
    tree.write("proc/self/stat", &stat(hz, hz));
    let mut sensor = CpuSensor::new(tree.reader());
    let t0 = Instant::now();
    let first = sensor.read(t0).unwrap();
    assert_eq!(first.usage, Duration::from_secs(2));
    assert_eq!(first.usage_source, CpuUsageSource::Process);

    tree.write("proc/self/stat", &stat(2 * hz, 2 * hz));
    let second = sensor.read(t0 + Duration::from_secs(4)).unwrap();
    assert_eq!(second.cores_used, Some(0.5));
    let host = common::host_cpus();
    assert_eq!(second.share_of_limit, Some(0.5 / host));
}

#[test]
fn malformed_cpu_usage_names_the_file() {
    let tree = Tree::v1("/job");
    tree.write("sys/fs/cgroup/cpu,cpuacct/job/cpuacct.usage", "soon\n");
    let err = CpuSensor::new(tree.reader())
        .read(Instant::now())
        .unwrap_err();
    assert_eq!(
        err.path(),
        Some(
            tree.root()
                .join("sys/fs/cgroup/cpu,cpuacct/job/cpuacct.usage")
                .as_path()
        )
    );
}

// ---- this machine ----

#[test]
fn sensors_on_this_machine() {
    let reader = pipeline_controller::limits::LimitsReader::new().unwrap();
    let mut memory = MemorySensor::new(reader.clone());
    let mut cpu = CpuSensor::new(reader);
    let t0 = Instant::now();
    let m0 = memory.read(t0).unwrap();
    cpu.read(t0).unwrap();

    // Burn 100 ms of this thread's CPU time (not of wall time: on a busy machine the
    // thread may get only a sliver of a wall-clock window), so there is something to
    // measure even at the clock-tick resolution of /proc/self/stat.
    let cpu0 = thread_cpu_time();
    let mut x = 0u64;
    while thread_cpu_time() - cpu0 < Duration::from_millis(100) {
        for _ in 0..10_000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    let t1 = Instant::now();
    let m1 = memory.read(t1).unwrap();
    let c1 = cpu.read(t1).unwrap();
    eprintln!(
        "memory: working set {} B of {:?} ({:?}, limit from {}), pressure {:?}, growth {:?} B/s",
        m1.working_set_bytes,
        m1.limit.bytes,
        m1.usage_source,
        m1.limit.source,
        m1.pressure,
        m1.growth_bytes_per_sec
    );
    eprintln!(
        "cpu: {:?} cores used ({:?}), share of {:?} cores ({}): {:?}",
        c1.cores_used, c1.usage_source, c1.limit.cores, c1.limit.source, c1.share_of_limit
    );
    assert!(m0.working_set_bytes > 0 && m1.working_set_bytes > 0);
    assert!(m1.growth_bytes_per_sec.is_some());
    assert!(c1.cores_used.is_some_and(|c| c > 0.0), "{c1:?}");
}

/// CPU time consumed by the calling thread.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid out-pointer; the thread CPU clock exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(rc, 0);
    Duration::new(
        u64::try_from(now.tv_sec).unwrap(),
        u32::try_from(now.tv_nsec).unwrap(),
    )
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap()
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap()
}
