//! The one place that reads files: everything is read under a root path, so tests point
//! the whole library at a fixture tree, and parse errors name the file.

use std::io;
use std::path::{Component, Path, PathBuf};

use super::LimitsError;

/// Values at or above this are "no limit": cgroup v1 reports an unlimited memory cgroup as
/// `i64::MAX` rounded down to a page (9223372036854771712), and no machine has 4 EiB.
pub(crate) const UNLIMITED_THRESHOLD: u64 = 1 << 62;

/// Reads files under a root directory (`/` in production, a fixture tree in tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RootFs {
    root: PathBuf,
}

impl RootFs {
    pub(crate) fn new(root: &Path) -> Self {
        RootFs {
            root: root.to_path_buf(),
        }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// True when this reads the real machine, where process-wide facts (the affinity
    /// mask) describe the same process the files do.
    pub(crate) fn is_real_root(&self) -> bool {
        self.root == Path::new("/")
    }

    /// Maps an absolute path as the kernel names it (`/sys/fs/cgroup/...`) under the root.
    /// Only normal components are kept, so `..` in a file cannot escape the root.
    pub(crate) fn path(&self, absolute: impl AsRef<Path>) -> PathBuf {
        let mut out = self.root.clone();
        for component in absolute.as_ref().components() {
            if let Component::Normal(part) = component {
                out.push(part);
            }
        }
        out
    }

    /// Reads a whole file; `Ok(None)` when it does not exist (or the kernel does not
    /// support it), because optional files are the normal case across kernels and layouts.
    pub(crate) fn read_optional(&self, path: &Path) -> Result<Option<String>, LimitsError> {
        match std::fs::read(path) {
            Ok(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| LimitsError::malformed(path, "not valid UTF-8")),
            Err(err) if is_absent(&err) => Ok(None),
            Err(source) => Err(LimitsError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}

fn is_absent(err: &io::Error) -> bool {
    // ENOTDIR: a path component is a file (fixture or odd mount); EOPNOTSUPP: the kernel
    // has the file but the feature is off (PSI files with `psi=0`).
    matches!(
        err.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    ) || err.raw_os_error() == Some(libc::EOPNOTSUPP)
}

/// A single integer, e.g. `memory.current` or `cpu.cfs_period_us`.
pub(crate) fn parse_u64(path: &Path, text: &str) -> Result<u64, LimitsError> {
    let value = text.trim();
    value
        .parse()
        .map_err(|_| LimitsError::malformed(path, format!("expected an integer, found {value:?}")))
}

/// A memory limit as cgroups write it: `max` (v2), a byte count, or `-1` (v1 "unlimited"
/// as some kernels print it). `None` means no limit.
pub(crate) fn parse_memory_limit(path: &Path, text: &str) -> Result<Option<u64>, LimitsError> {
    let value = text.trim();
    if value == "max" || value == "-1" {
        return Ok(None);
    }
    let bytes: u64 = value.parse().map_err(|_| {
        LimitsError::malformed(
            path,
            format!("expected a byte count or \"max\", found {value:?}"),
        )
    })?;
    Ok((bytes < UNLIMITED_THRESHOLD).then_some(bytes))
}

/// One `key value` line of a flat-keyed file (`memory.stat`, `cpu.stat`). `Ok(None)` when
/// the key is absent; an error when present with a non-integer value.
pub(crate) fn stat_value(path: &Path, text: &str, key: &str) -> Result<Option<u64>, LimitsError> {
    for (number, line) in text.lines().enumerate() {
        let mut fields = line.split_whitespace();
        if fields.next() != Some(key) {
            continue;
        }
        let value = fields.next().unwrap_or("");
        return value.parse().map(Some).map_err(|_| {
            LimitsError::malformed(
                path,
                format!(
                    "line {}: expected \"{key} <integer>\", found {line:?}",
                    number + 1
                ),
            )
        });
    }
    Ok(None)
}

/// Counts the CPUs in a kernel CPU list such as `0-3,8,10-11`. An empty list counts 0.
pub(crate) fn parse_cpu_list(path: &Path, text: &str) -> Result<u32, LimitsError> {
    let list = text.trim();
    let bad = || {
        LimitsError::malformed(
            path,
            format!("expected a CPU list like \"0-3,8\", found {list:?}"),
        )
    };
    let mut count = 0u32;
    for range in list.split(',').filter(|r| !r.is_empty()) {
        let (first, last) = match range.split_once('-') {
            Some((a, b)) => (a.parse::<u32>(), b.parse::<u32>()),
            None => (range.parse::<u32>(), range.parse::<u32>()),
        };
        let (first, last) = (first.map_err(|_| bad())?, last.map_err(|_| bad())?);
        if last < first {
            return Err(bad());
        }
        count = count.saturating_add(last - first + 1);
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("/f")
    }

    #[test]
    fn memory_limit_values() {
        assert_eq!(parse_memory_limit(p(), "max\n").unwrap(), None);
        assert_eq!(parse_memory_limit(p(), "-1\n").unwrap(), None);
        assert_eq!(
            parse_memory_limit(p(), "9223372036854771712\n").unwrap(),
            None
        );
        assert_eq!(
            parse_memory_limit(p(), "67108864\n").unwrap(),
            Some(67108864)
        );
        let err = parse_memory_limit(p(), "lots\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed /f: expected a byte count or \"max\", found \"lots\""
        );
    }

    #[test]
    fn stat_values() {
        let text = "anon 10\ninactive_file 20\ntotal_inactive_file 30\n";
        assert_eq!(stat_value(p(), text, "inactive_file").unwrap(), Some(20));
        assert_eq!(
            stat_value(p(), text, "total_inactive_file").unwrap(),
            Some(30)
        );
        assert_eq!(stat_value(p(), text, "missing").unwrap(), None);
        let err = stat_value(p(), "anon 10\ninactive_file x\n", "inactive_file").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list(p(), "0-3,8\n").unwrap(), 5);
        assert_eq!(parse_cpu_list(p(), "0\n").unwrap(), 1);
        assert_eq!(parse_cpu_list(p(), "0-1,4-5,7\n").unwrap(), 5);
        assert_eq!(parse_cpu_list(p(), "\n").unwrap(), 0);
        for bad in ["3-1", "a", "0-", "1,,x"] {
            assert!(parse_cpu_list(p(), bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_stay_under_the_root() {
        let fs = RootFs::new(Path::new("/fixture"));
        assert_eq!(
            fs.path("/sys/fs/cgroup"),
            Path::new("/fixture/sys/fs/cgroup")
        );
        assert_eq!(fs.path("/../../etc"), Path::new("/fixture/etc"));
        assert!(!fs.is_real_root());
        assert!(RootFs::new(Path::new("/")).is_real_root());
    }
}
