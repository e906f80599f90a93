//! Finding the process's own cgroup directories: `/proc/self/cgroup` says which cgroup
//! the process is in per hierarchy, `/proc/self/mountinfo` says where each hierarchy is
//! mounted and which part of it the mount shows.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use super::LimitsError;
use super::reader::RootFs;

/// Which cgroup interface a value was read through.
///
/// # Examples
///
/// ```
/// use pipeline_controller::limits::CgroupVersion;
///
/// assert_eq!(CgroupVersion::V1.to_string(), "cgroup v1");
/// assert_eq!(CgroupVersion::V2.to_string(), "cgroup v2");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CgroupVersion {
    /// The legacy interface: one hierarchy per controller (`memory.limit_in_bytes`, ...).
    V1,
    /// The unified interface (`memory.max`, `cpu.max`, ...).
    V2,
}

impl fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CgroupVersion::V1 => "cgroup v1",
            CgroupVersion::V2 => "cgroup v2",
        })
    }
}

/// One controller's view of the process's cgroup: the directory of the process's own
/// cgroup and the directory the hierarchy is mounted at (both under the root path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgroupDir {
    pub(crate) version: CgroupVersion,
    pub(crate) dir: PathBuf,
    pub(crate) mount: PathBuf,
}

impl CgroupDir {
    /// The process's cgroup, then each parent up to and including the mount root: the
    /// directories whose limits bound the process (ancestors above the mount are not
    /// visible, which is why v1's `hierarchical_memory_limit` is read too).
    pub(crate) fn path_to_mount(&self) -> impl Iterator<Item = &Path> {
        self.dir
            .ancestors()
            .take_while(|dir| dir.starts_with(&self.mount))
    }

    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The cgroup directories of this process, resolved once; sensors keep them and re-read
/// only the files inside.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProcessCgroups {
    /// Where `memory` is (v1 hierarchy or v2 with the controller enabled).
    pub(crate) memory: Option<CgroupDir>,
    /// Where `cpu` is (quota).
    pub(crate) cpu: Option<CgroupDir>,
    /// Where CPU usage is counted: v1 `cpuacct`, else the v2 cgroup (`cpu.stat` exists in
    /// every v2 cgroup, with or without the cpu controller).
    pub(crate) cpu_usage: Option<CgroupDir>,
    /// Where `cpuset` is.
    pub(crate) cpuset: Option<CgroupDir>,
}

impl ProcessCgroups {
    /// Reads `/proc/self/cgroup` and `/proc/self/mountinfo` under the root. Either file
    /// missing means "no cgroups" (not Linux, or a fixture without them).
    pub(crate) fn discover(fs: &RootFs) -> Result<Self, LimitsError> {
        let cgroup_path = fs.path("/proc/self/cgroup");
        let mountinfo_path = fs.path("/proc/self/mountinfo");
        let (Some(cgroup_text), Some(mountinfo_text)) = (
            fs.read_optional(&cgroup_path)?,
            fs.read_optional(&mountinfo_path)?,
        ) else {
            return Ok(ProcessCgroups::default());
        };
        let memberships = parse_proc_cgroup(&cgroup_path, &cgroup_text)?;
        let mounts = parse_mountinfo(&mountinfo_path, &mountinfo_text)?;

        let unified = resolve_v2(fs, &memberships, &mounts);
        let v2_controllers = match &unified {
            Some(dir) => {
                let path = dir.mount.join("cgroup.controllers");
                fs.read_optional(&path)?.unwrap_or_default()
            }
            None => String::new(),
        };
        // A controller is bound to exactly one hierarchy: on hybrid hosts `memory` is a v1
        // mount while the unified mount lists other controllers (or none).
        let find = |controller: &str| {
            resolve_v1(fs, &memberships, &mounts, controller).or_else(|| {
                v2_controllers
                    .split_whitespace()
                    .any(|c| c == controller)
                    .then(|| unified.clone())
                    .flatten()
            })
        };
        Ok(ProcessCgroups {
            memory: find("memory"),
            cpu: find("cpu"),
            cpu_usage: resolve_v1(fs, &memberships, &mounts, "cpuacct").or(unified.clone()),
            cpuset: find("cpuset"),
        })
    }
}

/// One line of `/proc/self/cgroup`: `hierarchy-id:controller,list:/path`.
#[derive(Debug, PartialEq, Eq)]
struct Membership {
    hierarchy: u32,
    controllers: Vec<String>,
    path: String,
}

fn parse_proc_cgroup(file: &Path, text: &str) -> Result<Vec<Membership>, LimitsError> {
    let mut out = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        // The path itself may contain ':' (systemd slices), so split at most twice.
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(LimitsError::malformed(
                file,
                format!(
                    "line {}: expected \"id:controllers:path\", found {line:?}",
                    number + 1
                ),
            ));
        };
        let hierarchy = id.parse().map_err(|_| {
            LimitsError::malformed(
                file,
                format!(
                    "line {}: expected a hierarchy number, found {id:?}",
                    number + 1
                ),
            )
        })?;
        out.push(Membership {
            hierarchy,
            controllers: controllers
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect(),
            path: path.to_owned(),
        });
    }
    Ok(out)
}

/// The fields of a mountinfo line this module needs.
#[derive(Debug, PartialEq, Eq)]
struct Mount {
    /// Field 4: which directory of the filesystem is mounted (for cgroups: which cgroup
    /// appears at the mount point; `/` unless bind-mounted or namespaced).
    root: String,
    /// Field 5, as the process sees it.
    mount_point: String,
    fs_type: String,
    super_options: String,
}

fn parse_mountinfo(file: &Path, text: &str) -> Result<Vec<Mount>, LimitsError> {
    let mut out = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |what: &str| {
            LimitsError::malformed(file, format!("line {}: {what}, found {line:?}", number + 1))
        };
        // Optional fields (shared:N, master:N, ...) vary in number, so the fields after
        // them are found from the " - " separator rather than by position.
        let (before, after) = line
            .split_once(" - ")
            .ok_or_else(|| bad("expected a \" - \" separator"))?;
        let before: Vec<&str> = before.split_whitespace().collect();
        let after: Vec<&str> = after.split_whitespace().collect();
        if before.len() < 6 || after.len() < 2 {
            return Err(bad("expected at least 6 fields before \" - \" and 2 after"));
        }
        out.push(Mount {
            root: unescape(before[3]),
            mount_point: unescape(before[4]),
            fs_type: after[0].to_owned(),
            super_options: after.get(2).copied().unwrap_or("").to_owned(),
        });
    }
    Ok(out)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn resolve_v1(
    fs: &RootFs,
    memberships: &[Membership],
    mounts: &[Mount],
    controller: &str,
) -> Option<CgroupDir> {
    let membership = memberships
        .iter()
        .find(|m| m.hierarchy != 0 && m.controllers.iter().any(|c| c == controller))?;
    let candidates = mounts
        .iter()
        .filter(|m| m.fs_type == "cgroup" && m.super_options.split(',').any(|o| o == controller));
    resolve(fs, CgroupVersion::V1, &membership.path, candidates)
}

fn resolve_v2(fs: &RootFs, memberships: &[Membership], mounts: &[Mount]) -> Option<CgroupDir> {
    let membership = memberships
        .iter()
        .find(|m| m.hierarchy == 0 && m.controllers.is_empty())?;
    let candidates = mounts.iter().filter(|m| m.fs_type == "cgroup2");
    resolve(fs, CgroupVersion::V2, &membership.path, candidates)
}

/// Picks the mount that shows the process's cgroup and maps the cgroup path into it.
///
/// The cgroup path is relative to the hierarchy's real root, a mount shows the subtree at
/// its `root` field, so the mount's root is stripped from the cgroup path (a container
/// that bind-mounts its own cgroup at `/sys/fs/cgroup` sees `root=/docker/<id>` and path
/// `/docker/<id>`). When several mounts fit, the deepest root wins; when none does (the
/// process was moved outside the mounted subtree), the mount point itself is used, as
/// the container's own cgroup is the best guess left.
fn resolve<'a>(
    fs: &RootFs,
    version: CgroupVersion,
    cgroup_path: &str,
    candidates: impl Iterator<Item = &'a Mount>,
) -> Option<CgroupDir> {
    let mut fallback = None;
    let mut best: Option<(usize, &Mount, PathBuf)> = None;
    for mount in candidates {
        fallback.get_or_insert(mount);
        if let Some(relative) = strip_root(cgroup_path, &mount.root) {
            let depth = Path::new(&mount.root).components().count();
            if best.as_ref().is_none_or(|(d, _, _)| depth > *d) {
                best = Some((depth, mount, relative));
            }
        }
    }
    let (mount, relative) = match best {
        Some((_, mount, relative)) => (mount, relative),
        None => (fallback?, PathBuf::new()),
    };
    let mount_dir = fs.path(&mount.mount_point);
    // join("") would add a trailing slash.
    let dir = if relative.as_os_str().is_empty() {
        mount_dir.clone()
    } else {
        mount_dir.join(relative)
    };
    Some(CgroupDir {
        version,
        dir,
        mount: mount_dir,
    })
}

/// `cgroup_path` relative to `root`, or `None` when it is not inside it. Paths with `..`
/// are never inside anything (a cgroup namespace shows `/..` for cgroups outside it).
fn strip_root(cgroup_path: &str, root: &str) -> Option<PathBuf> {
    let normal = |p: &str| -> Option<Vec<String>> {
        Path::new(p)
            .components()
            .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
            .map(|c| match c {
                Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect()
    };
    let path = normal(cgroup_path)?;
    let root = normal(root)?;
    path.starts_with(&root)
        .then(|| path[root.len()..].iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_cgroup_lines() {
        let text = "4:memory:/process_api/abc\n2:cpu,cpuacct:/a:b\n1:name=systemd:/\n0::/\n";
        let parsed = parse_proc_cgroup(Path::new("/c"), text).unwrap();
        assert_eq!(parsed.len(), 4);
        assert_eq!(parsed[1].controllers, ["cpu", "cpuacct"]);
        assert_eq!(parsed[1].path, "/a:b");
        assert_eq!(parsed[3].hierarchy, 0);
        assert!(parsed[3].controllers.is_empty());

        let err = parse_proc_cgroup(Path::new("/c"), "0::/\nmemory\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(parse_proc_cgroup(Path::new("/c"), "x:memory:/\n").is_err());
    }

    #[test]
    fn mountinfo_with_optional_fields_and_escapes() {
        let text = "\
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:15 master:2 - cgroup cgroup rw,memory
41 31 0:38 /docker/abc /sys/fs/cgroup/my\\040dir rw - cgroup2 cgroup2 rw,nsdelegate
";
        let mounts = parse_mountinfo(Path::new("/m"), text).unwrap();
        assert_eq!(mounts[0].fs_type, "cgroup");
        assert_eq!(mounts[0].super_options, "rw,memory");
        assert_eq!(mounts[1].root, "/docker/abc");
        assert_eq!(mounts[1].mount_point, "/sys/fs/cgroup/my dir");
        assert_eq!(mounts[1].fs_type, "cgroup2");

        let err = parse_mountinfo(Path::new("/m"), "35 31 0:32 / /x rw cgroup\n").unwrap_err();
        assert!(err.to_string().contains("separator"), "{err}");
    }

    #[test]
    fn strip_root_cases() {
        assert_eq!(strip_root("/a/b", "/"), Some(PathBuf::from("a/b")));
        assert_eq!(
            strip_root("/docker/abc", "/docker/abc"),
            Some(PathBuf::new())
        );
        assert_eq!(
            strip_root("/docker/abc/x", "/docker/abc"),
            Some(PathBuf::from("x"))
        );
        assert_eq!(strip_root("/docker/abcd", "/docker/abc"), None);
        assert_eq!(strip_root("/../other", "/"), None);
    }

    #[test]
    fn path_to_mount_stops_at_the_mount() {
        let dir = CgroupDir {
            version: CgroupVersion::V2,
            dir: PathBuf::from("/r/sys/fs/cgroup/a/b"),
            mount: PathBuf::from("/r/sys/fs/cgroup"),
        };
        let walked: Vec<&Path> = dir.path_to_mount().collect();
        assert_eq!(
            walked,
            [
                Path::new("/r/sys/fs/cgroup/a/b"),
                Path::new("/r/sys/fs/cgroup/a"),
                Path::new("/r/sys/fs/cgroup"),
            ]
        );
    }
}
