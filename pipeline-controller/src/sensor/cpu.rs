//! The CPU sensor: CPU time used between two readings, as cores and as a share of the
//! CPU limit.

use std::time::{Duration, Instant};

use crate::limits::{CgroupVersion, CpuLimit, LimitsError, LimitsReader, parse_u64, stat_value};

/// Where [`CpuReading::usage`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CpuUsageSource {
    /// The cgroup's CPU time: `usage_usec` of `cpu.stat` (v2) or `cpuacct.usage` (v1,
    /// nanoseconds). Counts every process in the cgroup, as the quota does.
    Cgroup(CgroupVersion),
    /// This process's user + system time (`/proc/self/stat`, else `getrusage`).
    Process,
}

/// One CPU reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuReading {
    /// The instant passed to [`CpuSensor::read`].
    pub at: Instant,
    /// Cumulative CPU time of the source since it started counting.
    pub usage: Duration,
    /// Where `usage` came from.
    pub usage_source: CpuUsageSource,
    /// The CPU limit now (re-read on every reading).
    pub limit: CpuLimit,
    /// CPU time used per wall second since the previous reading (1.0 = one core busy);
    /// `None` on the first reading, when no time passed, when the source changed, or when
    /// the counter went backwards (a recreated cgroup).
    pub cores_used: Option<f64>,
    /// `cores_used` divided by the limit's cores (1.0 = using all it may), `None` when
    /// either is unknown.
    pub share_of_limit: Option<f64>,
}

/// Reads CPU time and turns two readings into a rate. The caller passes the time.
///
/// # Examples
///
/// A cgroup v2 fixture limited to 2 cores that used 0.5 s of CPU in one second:
///
/// ```
/// use pipeline_controller::limits::LimitsReader;
/// use pipeline_controller::sensor::CpuSensor;
/// use std::time::{Duration, Instant};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let root = tempfile::tempdir()?;
/// let write = |path: &str, text: &str| -> std::io::Result<()> {
///     let path = root.path().join(path);
///     std::fs::create_dir_all(path.parent().unwrap())?;
///     std::fs::write(path, text)
/// };
/// write("proc/self/cgroup", "0::/app\n")?;
/// write("proc/self/mountinfo", "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")?;
/// write("sys/fs/cgroup/cgroup.controllers", "cpu\n")?;
/// write("sys/fs/cgroup/app/cpu.max", "200000 100000\n")?;
/// write("sys/fs/cgroup/app/cpu.stat", "usage_usec 1000000\nuser_usec 800000\n")?;
///
/// let mut sensor = CpuSensor::new(LimitsReader::at(root.path(), |_| None)?);
/// let start = Instant::now();
/// assert_eq!(sensor.read(start)?.cores_used, None);
///
/// write("sys/fs/cgroup/app/cpu.stat", "usage_usec 1500000\nuser_usec 1200000\n")?;
/// let reading = sensor.read(start + Duration::from_secs(1))?;
/// assert_eq!(reading.usage, Duration::from_millis(1500));
/// assert_eq!(reading.cores_used, Some(0.5));
/// assert_eq!(reading.share_of_limit, Some(0.25));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CpuSensor {
    limits: LimitsReader,
    previous: Option<(Instant, Duration, CpuUsageSource)>,
}

impl CpuSensor {
    /// A sensor over the cgroups that `limits` found.
    ///
    /// # Examples
    ///
    /// See [`CpuSensor`].
    pub fn new(limits: LimitsReader) -> CpuSensor {
        CpuSensor {
            limits,
            previous: None,
        }
    }

    /// Reads CPU time and the limit now; `now` is the reading's timestamp.
    ///
    /// # Errors
    ///
    /// [`LimitsError::Read`] or [`LimitsError::Malformed`] when a file exists but cannot
    /// be read or parsed. Without cgroup accounting files the process's own CPU time is
    /// used.
    ///
    /// # Examples
    ///
    /// See [`CpuSensor`].
    pub fn read(&mut self, now: Instant) -> Result<CpuReading, LimitsError> {
        let limit = self.limits.cpu_limit()?;
        let (usage, usage_source) = match self.cgroup_usage()? {
            Some(usage) => usage,
            None => (self.process_usage()?, CpuUsageSource::Process),
        };
        let cores_used = self.previous.and_then(|(at, previous, source)| {
            let elapsed = now.checked_duration_since(at)?.as_secs_f64();
            let used = usage.checked_sub(previous)?.as_secs_f64();
            (source == usage_source && elapsed > 0.0).then(|| used / elapsed)
        });
        self.previous = Some((now, usage, usage_source));
        let share_of_limit = cores_used
            .zip(limit.cores.filter(|&cores| cores > 0.0))
            .map(|(used, cores)| used / cores);
        Ok(CpuReading {
            at: now,
            usage,
            usage_source,
            limit,
            cores_used,
            share_of_limit,
        })
    }

    fn cgroup_usage(&self) -> Result<Option<(Duration, CpuUsageSource)>, LimitsError> {
        let Some(dir) = &self.limits.cgroups().cpu_usage else {
            return Ok(None);
        };
        let fs = self.limits.fs();
        let usage = match dir.version {
            CgroupVersion::V2 => {
                let path = dir.file("cpu.stat");
                match fs.read_optional(&path)? {
                    Some(text) => {
                        stat_value(&path, &text, "usage_usec")?.map(Duration::from_micros)
                    }
                    None => None,
                }
            }
            CgroupVersion::V1 => {
                let path = dir.file("cpuacct.usage");
                match fs.read_optional(&path)? {
                    Some(text) => Some(Duration::from_nanos(parse_u64(&path, &text)?)),
                    None => None,
                }
            }
        };
        Ok(usage.map(|usage| (usage, CpuUsageSource::Cgroup(dir.version))))
    }

    fn process_usage(&self) -> Result<Duration, LimitsError> {
        let fs = self.limits.fs();
        let path = fs.path("/proc/self/stat");
        match fs.read_optional(&path)? {
            Some(text) => parse_proc_stat_cpu(&path, &text),
            None => Ok(rusage_cpu()),
        }
    }
}

/// utime + stime from `/proc/self/stat`. The command name (field 2) is in parentheses
/// and may hold spaces or parentheses itself, so fields are counted after the last `)`.
fn parse_proc_stat_cpu(path: &std::path::Path, text: &str) -> Result<Duration, LimitsError> {
    let bad = || {
        LimitsError::malformed(
            path,
            "expected \"pid (comm) state ...\" with utime and stime as fields 14 and 15",
        )
    };
    let (_, rest) = text.rsplit_once(')').ok_or_else(bad)?;
    // rest starts at field 3 (state): utime is field 14, stime field 15.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let (utime, stime) = ticks(11).zip(ticks(12)).ok_or_else(bad)?;
    let per_second = clock_ticks_per_second();
    let ticks = utime.saturating_add(stime);
    Ok(Duration::from_secs(ticks / per_second)
        + Duration::from_nanos((ticks % per_second) * 1_000_000_000 / per_second))
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

fn rusage_cpu() -> Duration {
    // SAFETY: rusage is plain data (all-zero is valid) that getrusage fills in.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return Duration::ZERO;
        }
        usage
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn proc_stat_with_awkward_command_names() {
        let hz = clock_ticks_per_second();
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
        let line = format!(
            "42 (a b) (c)) S 1 42 42 0 -1 4194560 100 0 0 0 {} {} 0 0 20 0 1 0",
            3 * hz,
            hz / 2
        );
        let used = parse_proc_stat_cpu(Path::new("/proc/self/stat"), &line).unwrap();
        assert_eq!(used, Duration::from_millis(3500));
    }

    #[test]
    fn proc_stat_malformed() {
        let err = parse_proc_stat_cpu(Path::new("/proc/self/stat"), "42 (x) S 1").unwrap_err();
        assert!(err.to_string().contains("/proc/self/stat"), "{err}");
    }

    #[test]
    fn rusage_counts_this_process() {
        // Burn a little CPU so the counter cannot stay at zero.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(rusage_cpu() > Duration::ZERO);
    }
}
