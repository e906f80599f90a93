//! Putting the sources together: env override, then the cgroup (lowest on the path,
//! bounded by the cpuset or affinity mask for CPU), then the host.

use std::fmt;
use std::path::Path;

use super::LimitsError;
use super::cgroup::{CgroupDir, CgroupVersion, ProcessCgroups};
use super::env::Overrides;
use super::reader::{
    RootFs, UNLIMITED_THRESHOLD, parse_cpu_list, parse_memory_limit, parse_u64, stat_value,
};

/// Where a limit came from.
///
/// # Examples
///
/// ```
/// use pipeline_controller::limits::{CgroupVersion, LimitSource};
///
/// assert_eq!(LimitSource::Cgroup(CgroupVersion::V2).to_string(), "cgroup v2");
/// assert_eq!(LimitSource::Host.to_string(), "host");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LimitSource {
    /// A cgroup limit file (`memory.max`, `cpu.max`, `memory.limit_in_bytes`, ...): the
    /// lowest on the path from the process's cgroup to the mount root.
    Cgroup(CgroupVersion),
    /// `PIPELINE_MEMORY_LIMIT_BYTES` or `PIPELINE_CPU_LIMIT`.
    EnvOverride,
    /// The cgroup's CPU list (`cpuset.cpus.effective`, `cpuset.cpus`), fewer CPUs than the
    /// quota allows. Read on fixture roots; on the real root the affinity mask covers it.
    Cpuset,
    /// The scheduler affinity mask of this process (`sched_getaffinity`), fewer CPUs than
    /// the quota allows or the host has.
    Affinity,
    /// No container limit: the host's total memory or logical CPU count.
    Host,
}

impl fmt::Display for LimitSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitSource::Cgroup(version) => version.fmt(f),
            LimitSource::EnvOverride => f.write_str("env override"),
            LimitSource::Cpuset => f.write_str("cpuset"),
            LimitSource::Affinity => f.write_str("affinity mask"),
            LimitSource::Host => f.write_str("host"),
        }
    }
}

/// The memory the process may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimit {
    /// Bytes; `None` only when no source knows (the host's size could not be read).
    pub bytes: Option<u64>,
    /// Where `bytes` came from.
    pub source: LimitSource,
}

/// The CPU the process may use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuLimit {
    /// Cores, fractional for a quota (`50000 100000` is 0.5); `None` only when no source
    /// knows.
    pub cores: Option<f64>,
    /// Where `cores` came from.
    pub source: LimitSource,
}

/// The memory and CPU limits of this process, each with its source.
///
/// # Examples
///
/// On a fixture tree shaped like a cgroup v2 container with a 256 MiB limit and half a
/// core:
///
/// ```
/// use pipeline_controller::limits::{CgroupVersion, LimitSource, Limits};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let root = tempfile::tempdir()?;
/// let write = |path: &str, text: &str| -> std::io::Result<()> {
///     let path = root.path().join(path);
///     std::fs::create_dir_all(path.parent().unwrap())?;
///     std::fs::write(path, text)
/// };
/// write("proc/self/cgroup", "0::/app\n")?;
/// write("proc/self/mountinfo", "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")?;
/// write("sys/fs/cgroup/cgroup.controllers", "cpu memory\n")?;
/// write("sys/fs/cgroup/app/memory.max", "268435456\n")?;
/// write("sys/fs/cgroup/app/cpu.max", "50000 100000\n")?;
///
/// let limits = Limits::detect_at(root.path(), |_| None)?;
/// assert_eq!(limits.memory.bytes, Some(256 << 20));
/// assert_eq!(limits.memory.source, LimitSource::Cgroup(CgroupVersion::V2));
/// assert_eq!(limits.cpu.cores, Some(0.5));
/// assert_eq!(limits.to_string(), "memory 256.0 MiB (cgroup v2), cpu 0.50 cores (cgroup v2)");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// The memory limit.
    pub memory: MemoryLimit,
    /// The CPU limit.
    pub cpu: CpuLimit,
}

impl Limits {
    /// Detects this process's limits on this machine: the real root `/`, the process's
    /// environment for overrides, and its affinity mask.
    ///
    /// # Errors
    ///
    /// [`LimitsError::InvalidEnv`] when an override variable is set but unparsable;
    /// [`LimitsError::Read`] or [`LimitsError::Malformed`] when a cgroup or proc file
    /// exists but cannot be read or parsed.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_controller::limits::Limits;
    ///
    /// let limits = Limits::detect()?;
    /// println!("{limits}");
    /// # Ok::<(), pipeline_controller::limits::LimitsError>(())
    /// ```
    pub fn detect() -> Result<Limits, LimitsError> {
        LimitsReader::new()?.read()
    }

    /// Detects limits from the tree under `root`, with override variables looked up
    /// through `env` (pass `|_| None` for none, or a map lookup in tests).
    ///
    /// The affinity mask is consulted only when `root` is `/`; other roots use the
    /// cpuset files of the tree. The host fallback always describes this machine.
    ///
    /// # Errors
    ///
    /// As [`Limits::detect`].
    ///
    /// # Examples
    ///
    /// An override wins over whatever the tree says:
    ///
    /// ```
    /// use pipeline_controller::limits::{LimitSource, Limits};
    ///
    /// let env = |name: &str| (name == "PIPELINE_MEMORY_LIMIT_BYTES").then(|| "512MiB".to_string());
    /// let limits = Limits::detect_at(std::path::Path::new("/nonexistent"), env)?;
    /// assert_eq!(limits.memory.bytes, Some(512 << 20));
    /// assert_eq!(limits.memory.source, LimitSource::EnvOverride);
    /// assert_eq!(limits.cpu.source, LimitSource::Host);
    /// # Ok::<(), pipeline_controller::limits::LimitsError>(())
    /// ```
    pub fn detect_at(
        root: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Limits, LimitsError> {
        LimitsReader::at(root, env)?.read()
    }
}

impl fmt::Display for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.memory.bytes {
            Some(bytes) => write!(f, "memory {}", format_bytes(bytes))?,
            None => f.write_str("memory unknown")?,
        }
        write!(f, " ({}), ", self.memory.source)?;
        match self.cpu.cores {
            Some(cores) => write!(f, "cpu {cores:.2} cores")?,
            None => f.write_str("cpu unknown")?,
        }
        write!(f, " ({})", self.cpu.source)
    }
}

fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Reads limits repeatedly: the cgroup directories are found once, each
/// [`read`](LimitsReader::read) re-reads only the limit files, so a limit changed while
/// the process runs (a resized container) is seen at the next read.
///
/// # Examples
///
/// ```
/// use pipeline_controller::limits::LimitsReader;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let root = tempfile::tempdir()?;
/// let write = |path: &str, text: &str| -> std::io::Result<()> {
///     let path = root.path().join(path);
///     std::fs::create_dir_all(path.parent().unwrap())?;
///     std::fs::write(path, text)
/// };
/// write("proc/self/cgroup", "0::/app\n")?;
/// write("proc/self/mountinfo", "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")?;
/// write("sys/fs/cgroup/cgroup.controllers", "memory\n")?;
/// write("sys/fs/cgroup/app/memory.max", "268435456\n")?;
///
/// let reader = LimitsReader::at(root.path(), |_| None)?;
/// assert_eq!(reader.memory_limit()?.bytes, Some(256 << 20));
///
/// write("sys/fs/cgroup/app/memory.max", "134217728\n")?; // the container was resized
/// assert_eq!(reader.memory_limit()?.bytes, Some(128 << 20));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct LimitsReader {
    fs: RootFs,
    cgroups: ProcessCgroups,
    overrides: Overrides,
    host: Host,
}

/// What the host has, read once through sysinfo.
#[derive(Debug, Clone, Copy, Default)]
struct Host {
    memory_bytes: Option<u64>,
    cpus: Option<u32>,
}

impl Host {
    fn read() -> Host {
        use sysinfo::{CpuRefreshKind, MemoryRefreshKind, System};
        let Ok(mut system) = System::new() else {
            return Host::default();
        };
        system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        system.refresh_cpu_list(CpuRefreshKind::nothing());
        Host {
            memory_bytes: Some(system.total_memory()).filter(|&bytes| bytes > 0),
            cpus: u32::try_from(system.cpus().len()).ok().filter(|&n| n > 0),
        }
    }
}

impl LimitsReader {
    /// A reader over this machine: root `/`, the process's environment, the affinity mask.
    ///
    /// # Errors
    ///
    /// [`LimitsError::InvalidEnv`] for an unparsable override; [`LimitsError::Read`] or
    /// [`LimitsError::Malformed`] when `/proc/self/cgroup` or `/proc/self/mountinfo`
    /// cannot be read or parsed.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_controller::limits::LimitsReader;
    ///
    /// let reader = LimitsReader::new()?;
    /// println!("{}", reader.read()?);
    /// # Ok::<(), pipeline_controller::limits::LimitsError>(())
    /// ```
    pub fn new() -> Result<LimitsReader, LimitsError> {
        LimitsReader::at(Path::new("/"), |name| {
            std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
        })
    }

    /// A reader over the tree under `root`, with overrides looked up through `env`
    /// (called once per variable, now).
    ///
    /// # Errors
    ///
    /// As [`LimitsReader::new`].
    ///
    /// # Examples
    ///
    /// An empty tree has no cgroups, so the host's values are used:
    ///
    /// ```
    /// use pipeline_controller::limits::{LimitSource, LimitsReader};
    ///
    /// let root = tempfile::tempdir().unwrap();
    /// let limits = LimitsReader::at(root.path(), |_| None)?.read()?;
    /// assert_eq!(limits.memory.source, LimitSource::Host);
    /// assert_eq!(limits.cpu.source, LimitSource::Host);
    /// # Ok::<(), pipeline_controller::limits::LimitsError>(())
    /// ```
    pub fn at(
        root: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<LimitsReader, LimitsError> {
        let overrides = Overrides::from_env(env)?;
        let fs = RootFs::new(root);
        let cgroups = ProcessCgroups::discover(&fs)?;
        Ok(LimitsReader {
            fs,
            cgroups,
            overrides,
            host: Host::read(),
        })
    }

    /// The root path this reader reads under.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_controller::limits::LimitsReader;
    /// use std::path::Path;
    ///
    /// let reader = LimitsReader::at(Path::new("/nonexistent"), |_| None)?;
    /// assert_eq!(reader.root(), Path::new("/nonexistent"));
    /// # Ok::<(), pipeline_controller::limits::LimitsError>(())
    /// ```
    pub fn root(&self) -> &Path {
        self.fs.root()
    }

    /// Reads both limits now.
    ///
    /// # Errors
    ///
    /// [`LimitsError::Read`] or [`LimitsError::Malformed`] when a limit file exists but
    /// cannot be read or parsed.
    ///
    /// # Examples
    ///
    /// See [`LimitsReader`].
    pub fn read(&self) -> Result<Limits, LimitsError> {
        Ok(Limits {
            memory: self.memory_limit()?,
            cpu: self.cpu_limit()?,
        })
    }

    /// Reads the memory limit now: the override, else the lowest cgroup limit on the
    /// path to the mount root (v1: also `hierarchical_memory_limit`), else the host's
    /// total memory.
    ///
    /// # Errors
    ///
    /// As [`LimitsReader::read`].
    ///
    /// # Examples
    ///
    /// See [`LimitsReader`].
    pub fn memory_limit(&self) -> Result<MemoryLimit, LimitsError> {
        if let Some(bytes) = self.overrides.memory_bytes {
            return Ok(MemoryLimit {
                bytes: Some(bytes),
                source: LimitSource::EnvOverride,
            });
        }
        if let Some(dir) = &self.cgroups.memory
            && let Some(bytes) = self.cgroup_memory_limit(dir)?
        {
            return Ok(MemoryLimit {
                bytes: Some(bytes),
                source: LimitSource::Cgroup(dir.version),
            });
        }
        Ok(MemoryLimit {
            bytes: self.host.memory_bytes,
            source: LimitSource::Host,
        })
    }

    /// Reads the CPU limit now: the override, else the lower of the cgroup quota (lowest
    /// on the path) and the CPU count of the cpuset (fixture roots) or affinity mask
    /// (real root), else the host's logical CPU count.
    ///
    /// # Errors
    ///
    /// As [`LimitsReader::read`].
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_controller::limits::{LimitSource, LimitsReader};
    ///
    /// let env = |name: &str| (name == "PIPELINE_CPU_LIMIT").then(|| "1.5".to_string());
    /// let reader = LimitsReader::at(std::path::Path::new("/nonexistent"), env)?;
    /// let cpu = reader.cpu_limit()?;
    /// assert_eq!((cpu.cores, cpu.source), (Some(1.5), LimitSource::EnvOverride));
    /// # Ok::<(), pipeline_controller::limits::LimitsError>(())
    /// ```
    pub fn cpu_limit(&self) -> Result<CpuLimit, LimitsError> {
        if let Some(cores) = self.overrides.cpu_cores {
            return Ok(CpuLimit {
                cores: Some(cores),
                source: LimitSource::EnvOverride,
            });
        }
        let quota = match &self.cgroups.cpu {
            Some(dir) => self
                .cgroup_cpu_quota(dir)?
                .map(|cores| (cores, LimitSource::Cgroup(dir.version))),
            None => None,
        };
        let cpu_set = if self.fs.is_real_root() {
            affinity_cpus().map(|n| (f64::from(n), LimitSource::Affinity))
        } else {
            self.cpuset_cpus()?
                .map(|n| (f64::from(n), LimitSource::Cpuset))
        };
        let host = self.host.cpus.map(|n| (f64::from(n), LimitSource::Host));
        let (cores, source) = match (quota, cpu_set) {
            // Ties go to the quota: it is the limit someone set on purpose.
            (Some(quota), Some(set)) => Some(if set.0 < quota.0 { set } else { quota }),
            (Some(quota), None) => Some(quota),
            // A CPU set covering the whole host limits nothing: report the host.
            (None, Some(set)) => match host {
                Some(host) if set.0 >= host.0 => Some(host),
                _ => Some(set),
            },
            (None, None) => host,
        }
        .map_or((None, LimitSource::Host), |(cores, source)| {
            (Some(cores), source)
        });
        Ok(CpuLimit { cores, source })
    }

    /// The resolved cgroup directories, for the sensors.
    pub(crate) fn cgroups(&self) -> &ProcessCgroups {
        &self.cgroups
    }

    /// The file reader, for the sensors.
    pub(crate) fn fs(&self) -> &RootFs {
        &self.fs
    }

    fn cgroup_memory_limit(&self, dir: &CgroupDir) -> Result<Option<u64>, LimitsError> {
        let file = match dir.version {
            CgroupVersion::V1 => "memory.limit_in_bytes",
            CgroupVersion::V2 => "memory.max",
        };
        let mut lowest = None;
        for level in dir.path_to_mount() {
            let path = level.join(file);
            if let Some(text) = self.fs.read_optional(&path)? {
                lowest = lower(lowest, parse_memory_limit(&path, &text)?);
            }
        }
        // v1 folds in the limits of ancestors the mount may hide (a container sees only
        // its own subtree).
        if dir.version == CgroupVersion::V1 {
            let path = dir.file("memory.stat");
            if let Some(text) = self.fs.read_optional(&path)? {
                let hierarchical = stat_value(&path, &text, "hierarchical_memory_limit")?;
                lowest = lower(
                    lowest,
                    hierarchical.filter(|&bytes| bytes < UNLIMITED_THRESHOLD),
                );
            }
        }
        Ok(lowest)
    }

    fn cgroup_cpu_quota(&self, dir: &CgroupDir) -> Result<Option<f64>, LimitsError> {
        let mut lowest: Option<f64> = None;
        for level in dir.path_to_mount() {
            let cores = match dir.version {
                CgroupVersion::V2 => self.v2_quota(level)?,
                CgroupVersion::V1 => self.v1_quota(level)?,
            };
            if let Some(cores) = cores {
                lowest = Some(lowest.map_or(cores, |l| l.min(cores)));
            }
        }
        Ok(lowest)
    }

    /// `cpu.max`: `max 100000` (no limit) or `50000 100000` (quota and period, µs).
    fn v2_quota(&self, level: &Path) -> Result<Option<f64>, LimitsError> {
        let path = level.join("cpu.max");
        let Some(text) = self.fs.read_optional(&path)? else {
            return Ok(None);
        };
        let fields: Vec<&str> = text.split_whitespace().collect();
        let bad = || {
            LimitsError::malformed(
                &path,
                format!(
                    "expected \"max <period>\" or \"<quota> <period>\" with positive integers, found {:?}",
                    text.trim()
                ),
            )
        };
        let [quota, period] = fields[..] else {
            return Err(bad());
        };
        let period: u64 = period.parse().ok().filter(|&p| p > 0).ok_or_else(bad)?;
        if quota == "max" {
            return Ok(None);
        }
        let quota: u64 = quota.parse().ok().filter(|&q| q > 0).ok_or_else(bad)?;
        Ok(Some(quota as f64 / period as f64))
    }

    /// `cpu.cfs_quota_us` (`-1` for none) over `cpu.cfs_period_us`.
    fn v1_quota(&self, level: &Path) -> Result<Option<f64>, LimitsError> {
        let quota_path = level.join("cpu.cfs_quota_us");
        let Some(text) = self.fs.read_optional(&quota_path)? else {
            return Ok(None);
        };
        let quota: i64 = text.trim().parse().map_err(|_| {
            LimitsError::malformed(
                &quota_path,
                format!(
                    "expected an integer (-1 for no quota), found {:?}",
                    text.trim()
                ),
            )
        })?;
        if quota == -1 {
            return Ok(None);
        }
        if quota <= 0 {
            return Err(LimitsError::malformed(
                &quota_path,
                format!("expected a positive quota or -1, found {quota}"),
            ));
        }
        let period_path = level.join("cpu.cfs_period_us");
        let period = match self.fs.read_optional(&period_path)? {
            Some(text) => parse_u64(&period_path, &text)?,
            None => {
                return Err(LimitsError::malformed(
                    &period_path,
                    "missing, but cpu.cfs_quota_us beside it sets a quota",
                ));
            }
        };
        if period == 0 {
            return Err(LimitsError::malformed(&period_path, "period is 0"));
        }
        Ok(Some(quota as f64 / period as f64))
    }

    /// The CPU count of the nearest cpuset on the path (each level's effective set is
    /// already bounded by its parents).
    fn cpuset_cpus(&self) -> Result<Option<u32>, LimitsError> {
        let Some(dir) = &self.cgroups.cpuset else {
            return Ok(None);
        };
        let files: &[&str] = match dir.version {
            CgroupVersion::V2 => &["cpuset.cpus.effective"],
            CgroupVersion::V1 => &["cpuset.effective_cpus", "cpuset.cpus"],
        };
        for level in dir.path_to_mount() {
            for file in files {
                let path = level.join(file);
                if let Some(text) = self.fs.read_optional(&path)? {
                    // An empty list means "not configured here", not "no CPUs".
                    let count = parse_cpu_list(&path, &text)?;
                    if count > 0 {
                        return Ok(Some(count));
                    }
                }
            }
        }
        Ok(None)
    }
}

fn lower(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// CPUs in this process's affinity mask.
#[cfg(target_os = "linux")]
fn affinity_cpus() -> Option<u32> {
    // SAFETY: cpu_set_t is plain bits (all-zero is the empty set) and the kernel writes at
    // most the size we pass.
    let count = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        libc::CPU_COUNT(&set)
    };
    u32::try_from(count).ok().filter(|&n| n > 0)
}

#[cfg(not(target_os = "linux"))]
fn affinity_cpus() -> Option<u32> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_formatted_in_binary_units() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(64 << 20), "64.0 MiB");
        assert_eq!(format_bytes(3 << 29), "1.5 GiB");
    }

    #[test]
    fn lower_ignores_missing_values() {
        assert_eq!(lower(None, None), None);
        assert_eq!(lower(Some(3), None), Some(3));
        assert_eq!(lower(None, Some(2)), Some(2));
        assert_eq!(lower(Some(3), Some(2)), Some(2));
    }
}
