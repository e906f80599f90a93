//! The memory sensor: working set, pressure, growth and time to the limit.

use std::time::{Duration, Instant};

use super::psi::{Pressure, PressureSource, parse_pressure};
use crate::limits::{CgroupVersion, LimitsError, LimitsReader, MemoryLimit, parse_u64, stat_value};

/// Where [`MemoryReading::working_set_bytes`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MemoryUsageSource {
    /// The cgroup's usage minus its inactive file cache (`memory.current` and
    /// `inactive_file` on v2, `memory.usage_in_bytes` and `total_inactive_file` on v1).
    Cgroup(CgroupVersion),
    /// This process's resident set (`/proc/self/statm`, else sysinfo): no memory cgroup.
    ProcessRss,
}

/// One memory reading. Values, not live handles: the policy compares readings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryReading {
    /// The instant passed to [`MemorySensor::read`].
    pub at: Instant,
    /// Memory the kernel cannot simply drop: usage minus inactive file cache, the number
    /// the kubelet evicts on and close to what the OOM killer sees.
    pub working_set_bytes: u64,
    /// Usage before subtracting the inactive file cache.
    pub usage_bytes: u64,
    /// Where the usage came from.
    pub usage_source: MemoryUsageSource,
    /// The memory limit now (re-read on every reading: containers can be resized).
    pub limit: MemoryLimit,
    /// Memory pressure, where the kernel reports it.
    pub pressure: Option<Pressure>,
    /// Change of the working set since the previous reading, bytes per second (negative
    /// when shrinking); `None` on the first reading or when no time passed.
    pub growth_bytes_per_sec: Option<f64>,
    /// Time until the working set reaches the limit at the current growth rate; zero when
    /// at or over it already; `None` without a limit or without growth.
    pub time_to_limit: Option<Duration>,
}

impl MemoryReading {
    /// The working set as a fraction of the limit (1.0 = at the limit), `None` without a
    /// known limit.
    ///
    /// # Examples
    ///
    /// See [`MemorySensor`].
    pub fn used_fraction(&self) -> Option<f64> {
        self.limit
            .bytes
            .filter(|&limit| limit > 0)
            .map(|limit| self.working_set_bytes as f64 / limit as f64)
    }
}

/// Reads memory in use, pressure and growth. Keeps the cgroup directories found by its
/// [`LimitsReader`] and the previous reading (for the growth rate); the caller passes the
/// time, so tests use any instants they like.
///
/// # Examples
///
/// A cgroup v2 fixture with a 100 MiB limit whose working set grows by 10 MiB in one
/// second:
///
/// ```
/// use pipeline_controller::limits::LimitsReader;
/// use pipeline_controller::sensor::MemorySensor;
/// use std::time::{Duration, Instant};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let root = tempfile::tempdir()?;
/// let write = |path: &str, text: &str| -> std::io::Result<()> {
///     let path = root.path().join(path);
///     std::fs::create_dir_all(path.parent().unwrap())?;
///     std::fs::write(path, text)
/// };
/// const MIB: u64 = 1 << 20;
/// write("proc/self/cgroup", "0::/app\n")?;
/// write("proc/self/mountinfo", "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")?;
/// write("sys/fs/cgroup/cgroup.controllers", "memory\n")?;
/// write("sys/fs/cgroup/app/memory.max", &(100 * MIB).to_string())?;
/// write("sys/fs/cgroup/app/memory.current", &(50 * MIB).to_string())?;
/// write("sys/fs/cgroup/app/memory.stat", &format!("anon 1\ninactive_file {}\n", 10 * MIB))?;
///
/// let mut sensor = MemorySensor::new(LimitsReader::at(root.path(), |_| None)?);
/// let start = Instant::now();
/// let first = sensor.read(start)?;
/// assert_eq!(first.working_set_bytes, 40 * MIB); // 50 MiB used, 10 MiB inactive cache
/// assert_eq!(first.used_fraction(), Some(0.4));
/// assert_eq!(first.growth_bytes_per_sec, None);
///
/// write("sys/fs/cgroup/app/memory.current", &(60 * MIB).to_string())?;
/// let second = sensor.read(start + Duration::from_secs(1))?;
/// assert_eq!(second.growth_bytes_per_sec, Some((10 * MIB) as f64));
/// assert_eq!(second.time_to_limit, Some(Duration::from_secs(5))); // 50 MiB left
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MemorySensor {
    limits: LimitsReader,
    previous: Option<(Instant, u64)>,
}

impl MemorySensor {
    /// A sensor over the cgroups that `limits` found.
    ///
    /// # Examples
    ///
    /// See [`MemorySensor`].
    pub fn new(limits: LimitsReader) -> MemorySensor {
        MemorySensor {
            limits,
            previous: None,
        }
    }

    /// Reads usage, limit and pressure now; `now` is the reading's timestamp and the
    /// basis of the growth rate.
    ///
    /// # Errors
    ///
    /// [`LimitsError::Read`] or [`LimitsError::Malformed`] when a file exists but cannot
    /// be read or parsed. Missing files fall back (no cgroup usage: process RSS; no
    /// pressure file: `pressure` is `None`).
    ///
    /// # Examples
    ///
    /// See [`MemorySensor`].
    pub fn read(&mut self, now: Instant) -> Result<MemoryReading, LimitsError> {
        let limit = self.limits.memory_limit()?;
        let (usage_bytes, working_set_bytes, usage_source) = match self.cgroup_usage()? {
            Some(usage) => usage,
            None => {
                let rss = self.process_rss()?;
                (rss, rss, MemoryUsageSource::ProcessRss)
            }
        };
        let pressure = self.pressure()?;

        let growth_bytes_per_sec = self.previous.and_then(|(at, previous)| {
            let elapsed = now.checked_duration_since(at)?.as_secs_f64();
            (elapsed > 0.0).then(|| (working_set_bytes as f64 - previous as f64) / elapsed)
        });
        self.previous = Some((now, working_set_bytes));

        Ok(MemoryReading {
            at: now,
            working_set_bytes,
            usage_bytes,
            usage_source,
            limit,
            pressure,
            growth_bytes_per_sec,
            time_to_limit: time_to_limit(working_set_bytes, limit.bytes, growth_bytes_per_sec),
        })
    }

    /// (usage, working set, source) from the memory cgroup, `None` without one.
    fn cgroup_usage(&self) -> Result<Option<(u64, u64, MemoryUsageSource)>, LimitsError> {
        let Some(dir) = &self.limits.cgroups().memory else {
            return Ok(None);
        };
        let fs = self.limits.fs();
        let (usage_file, inactive_key) = match dir.version {
            CgroupVersion::V2 => ("memory.current", "inactive_file"),
            // v1's `total_` keys include descendants, as `usage_in_bytes` does.
            CgroupVersion::V1 => ("memory.usage_in_bytes", "total_inactive_file"),
        };
        let usage_path = dir.file(usage_file);
        let Some(text) = fs.read_optional(&usage_path)? else {
            return Ok(None);
        };
        let usage = parse_u64(&usage_path, &text)?;
        let stat_path = dir.file("memory.stat");
        let inactive = match fs.read_optional(&stat_path)? {
            Some(text) => stat_value(&stat_path, &text, inactive_key)?.unwrap_or(0),
            None => 0,
        };
        Ok(Some((
            usage,
            usage.saturating_sub(inactive),
            MemoryUsageSource::Cgroup(dir.version),
        )))
    }

    fn process_rss(&self) -> Result<u64, LimitsError> {
        let fs = self.limits.fs();
        let path = fs.path("/proc/self/statm");
        if let Some(text) = fs.read_optional(&path)? {
            // statm: size resident shared text lib data dt, in pages.
            let resident = text.split_whitespace().nth(1).unwrap_or("");
            let pages = parse_u64(&path, resident).map_err(|_| {
                LimitsError::malformed(
                    &path,
                    format!(
                        "expected \"<size> <resident> ...\" in pages, found {:?}",
                        text.trim()
                    ),
                )
            })?;
            return Ok(pages.saturating_mul(page_size()));
        }
        Ok(sysinfo_rss().unwrap_or(0))
    }

    fn pressure(&self) -> Result<Option<Pressure>, LimitsError> {
        let fs = self.limits.fs();
        let cgroup_file = self
            .limits
            .cgroups()
            .memory
            .as_ref()
            .filter(|dir| dir.version == CgroupVersion::V2)
            .map(|dir| (dir.file("memory.pressure"), PressureSource::Cgroup));
        let system_file = (fs.path("/proc/pressure/memory"), PressureSource::System);
        for (path, source) in cgroup_file.into_iter().chain([system_file]) {
            if let Some(text) = fs.read_optional(&path)? {
                let (some, full) = parse_pressure(&path, &text)?;
                return Ok(Some(Pressure { some, full, source }));
            }
        }
        Ok(None)
    }
}

fn time_to_limit(working_set: u64, limit: Option<u64>, growth: Option<f64>) -> Option<Duration> {
    let limit = limit?;
    if working_set >= limit {
        return Some(Duration::ZERO);
    }
    let growth = growth.filter(|&g| g > 0.0)?;
    Duration::try_from_secs_f64((limit - working_set) as f64 / growth).ok()
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

fn sysinfo_rss() -> Option<u64> {
    use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};
    let pid = sysinfo::get_current_pid().ok()?;
    let mut system = System::new().ok()?;
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        false,
        ProcessRefreshKind::nothing().with_memory(),
    );
    system.process(pid).map(|process| process.memory())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_to_limit_cases() {
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(time_to_limit(40, Some(100), Some(10.0)), secs(6));
        assert_eq!(time_to_limit(100, Some(100), None), secs(0));
        assert_eq!(time_to_limit(120, Some(100), Some(-5.0)), secs(0));
        assert_eq!(time_to_limit(40, Some(100), Some(0.0)), None);
        assert_eq!(time_to_limit(40, Some(100), Some(-1.0)), None);
        assert_eq!(time_to_limit(40, None, Some(10.0)), None);
        assert_eq!(time_to_limit(40, Some(100), None), None);
    }
}
