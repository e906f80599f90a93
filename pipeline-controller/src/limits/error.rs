//! The one error type for reading limits and sensor files.

use std::io;
use std::path::{Path, PathBuf};

/// Why limits or a sensor reading could not be read.
///
/// Missing optional files are not errors (a missing `memory.max` means "no limit at this
/// level"); this error means a file exists but could not be read, a file holds something
/// the kernel would never write, or an override variable holds something unparsable.
///
/// # Examples
///
/// ```
/// use pipeline_controller::limits::{Limits, LimitsError};
///
/// let env = |name: &str| (name == "PIPELINE_CPU_LIMIT").then(|| "two".to_string());
/// let err = Limits::detect_at(std::path::Path::new("/nonexistent"), env).unwrap_err();
/// assert!(matches!(err, LimitsError::InvalidEnv { name: "PIPELINE_CPU_LIMIT", .. }));
/// assert!(err.to_string().contains("PIPELINE_CPU_LIMIT=\"two\""));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LimitsError {
    /// A file exists but reading it failed (permissions, I/O error).
    #[error("cannot read {}", path.display())]
    Read {
        /// The file, including the root path it was read under.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A file holds something the kernel does not write there.
    #[error("malformed {}: {reason}", path.display())]
    Malformed {
        /// The file, including the root path it was read under.
        path: PathBuf,
        /// What was expected and what was found.
        reason: String,
    },
    /// An override variable is set to a value that cannot be parsed.
    #[error("invalid {name}={value:?}: {reason}")]
    InvalidEnv {
        /// The variable's name.
        name: &'static str,
        /// The value it holds.
        value: String,
        /// What was expected.
        reason: String,
    },
}

impl LimitsError {
    /// The file the error is about, if it is about a file.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_controller::limits::LimitsError;
    /// use std::path::{Path, PathBuf};
    ///
    /// let err = LimitsError::Malformed {
    ///     path: PathBuf::from("/sys/fs/cgroup/memory.max"),
    ///     reason: "expected a byte count".into(),
    /// };
    /// assert_eq!(err.path(), Some(Path::new("/sys/fs/cgroup/memory.max")));
    /// ```
    pub fn path(&self) -> Option<&Path> {
        match self {
            LimitsError::Read { path, .. } | LimitsError::Malformed { path, .. } => Some(path),
            LimitsError::InvalidEnv { .. } => None,
        }
    }

    pub(crate) fn malformed(path: &Path, reason: impl Into<String>) -> Self {
        LimitsError::Malformed {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}
