//! How much memory and CPU this process may use, and who said so.
//!
//! [`Limits::detect`] answers once; a [`LimitsReader`] finds the process's cgroup
//! directories once and re-reads only the limit files on each
//! [`read`](LimitsReader::read), so a container resized while the process runs is
//! noticed. The sensors in [`crate::sensor`] are built on a reader.
//!
//! ```
//! use pipeline_controller::limits::Limits;
//!
//! let limits = Limits::detect()?;
//! println!("{limits}"); // e.g. "memory 512.0 MiB (cgroup v2), cpu 2.00 cores (cgroup v2)"
//! # Ok::<(), pipeline_controller::limits::LimitsError>(())
//! ```
//!
//! # Where the numbers come from, in order
//!
//! 1. **Override variables** win when set: [`MEMORY_LIMIT_ENV`]
//!    (`PIPELINE_MEMORY_LIMIT_BYTES`, bytes, optionally `KiB`/`MiB`/`GiB`) and
//!    [`CPU_LIMIT_ENV`] (`PIPELINE_CPU_LIMIT`, cores). A value that does not parse is a
//!    [`LimitsError::InvalidEnv`], never ignored.
//! 2. **The process's own cgroup**, found through `/proc/self/cgroup` and
//!    `/proc/self/mountinfo` (the mount's root is stripped from the cgroup path, so
//!    containers that mount only their own subtree work). Each controller is read where
//!    it is mounted: v1 hierarchies first, else the v2 mount if its `cgroup.controllers`
//!    lists the controller; hybrid hosts mix both.
//!    - memory: the lowest `memory.max` (v2) or `memory.limit_in_bytes` (v1, together with
//!      `hierarchical_memory_limit` from `memory.stat`) from the process's cgroup up to
//!      the mount root. `max`, `-1` and values from 2^62 up (v1's page-rounded
//!      `i64::MAX`) mean no limit.
//!    - CPU: the lowest quota/period (`cpu.max`, or `cpu.cfs_quota_us` /
//!      `cpu.cfs_period_us` with `-1` for none) on the same path, bounded by the CPU count
//!      of the affinity mask (on the real root `/`) or of the cpuset files (fixture roots);
//!      the smaller wins and the [`LimitSource`] says which.
//! 3. **The host**: total memory and logical CPUs through `sysinfo`.
//!
//! All files are read under a root path, `/` for [`Limits::detect`] and any directory for
//! [`Limits::detect_at`], so the rules are tested against fixture trees. Missing files
//! are normal (they mean "no limit here"); a file that exists but holds nonsense is a
//! [`LimitsError::Malformed`] naming the file.
//!
//! `docs/operations.md` describes the same rules for people running the pipeline in
//! containers.

mod cgroup;
mod detect;
mod env;
mod error;
mod reader;

pub use cgroup::CgroupVersion;
pub use detect::{CpuLimit, LimitSource, Limits, LimitsReader, MemoryLimit};
pub use env::{CPU_LIMIT_ENV, MEMORY_LIMIT_ENV};
pub use error::LimitsError;
pub(crate) use reader::{parse_u64, stat_value};
