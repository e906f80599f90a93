//! Configuration files: TOML and YAML, `${VAR}` substitution, the `PIPELINE_CONFIG`
//! variable (feature `file-config`).

use super::model::{ConfigErrors, PipelineConfig};
use super::substitute::{SubstitutionErrors, substitute_env};
use std::fmt;
use std::path::{Path, PathBuf};

/// The environment variable that names the configuration file:
/// [`PipelineConfig::from_env`] and [`ConfigHandle::watch_env`](super::ConfigHandle::watch_env)
/// read it.
pub const CONFIG_PATH_ENV: &str = "PIPELINE_CONFIG";

/// The file formats a configuration can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// TOML (`.toml`).
    Toml,
    /// YAML (`.yaml`, `.yml`).
    Yaml,
}

impl Format {
    /// The format a path's extension names, if any.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "toml" => Some(Format::Toml),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Toml => "TOML",
            Format::Yaml => "YAML",
        })
    }
}

/// Why a configuration could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigLoadError {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The extension is neither `.toml`, `.yaml` nor `.yml`.
    #[error("{}: unknown configuration format (use .toml, .yaml or .yml)", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The text is not valid TOML/YAML, or does not fit the model (an unknown field, a
    /// wrong type, a malformed duration). Serde stops at the first such problem.
    #[error("{format} error at line {line}, column {column}: {message}")]
    Syntax {
        /// The format being read.
        format: Format,
        /// 1-based line of the problem (0 when the parser gave no position).
        line: usize,
        /// 1-based column of the problem (0 when the parser gave no position).
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// The configuration parsed but breaks rules.
    #[error(transparent)]
    Invalid(#[from] ConfigErrors),
    /// A `${VAR}` in the file could not be replaced (an unset variable without a
    /// default, or a malformed reference); every such reference is listed with its line.
    #[error("{}: {errors}", path.display())]
    Substitution {
        /// The file.
        path: PathBuf,
        /// Every reference that could not be replaced.
        errors: SubstitutionErrors,
    },
    /// [`PipelineConfig::from_env`] found the variable unset or empty.
    #[error(
        "{variable} is not set: set it to the configuration file's path (.toml, .yaml or .yml)"
    )]
    EnvNotSet {
        /// The variable, [`CONFIG_PATH_ENV`].
        variable: &'static str,
    },
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

#[cfg_attr(docsrs, doc(cfg(feature = "file-config")))]
impl PipelineConfig {
    /// Parses TOML and validates the result.
    ///
    /// The text is parsed as given: `${VAR}` is replaced only in files
    /// ([`from_path`](Self::from_path)), since text may come from anywhere (a request
    /// body must not read the server's environment). Call
    /// [`super::substitute_env`] first to substitute here too.
    ///
    /// # Errors
    ///
    /// [`ConfigLoadError::Syntax`] with line and column, or
    /// [`ConfigLoadError::Invalid`] with every broken rule.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigLoadError> {
        let config = Self::parse(text, Format::Toml)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses without validating (syntax, unknown fields and types only).
    pub(crate) fn parse(text: &str, format: Format) -> Result<Self, ConfigLoadError> {
        match format {
            Format::Toml => Self::parse_toml(text),
            Format::Yaml => Self::parse_yaml(text),
        }
    }

    fn parse_toml(text: &str) -> Result<Self, ConfigLoadError> {
        toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((0, 0), |s| line_column(text, s.start));
            ConfigLoadError::Syntax {
                format: Format::Toml,
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })
    }

    /// Parses YAML and validates the result.
    ///
    /// # Errors
    ///
    /// As [`from_toml_str`](Self::from_toml_str).
    pub fn from_yaml_str(text: &str) -> Result<Self, ConfigLoadError> {
        let config = Self::parse(text, Format::Yaml)?;
        config.validate()?;
        Ok(config)
    }

    fn parse_yaml(text: &str) -> Result<Self, ConfigLoadError> {
        // An empty document is an empty mapping: every default.
        if text.trim().is_empty() {
            Ok(PipelineConfig::default())
        } else {
            serde_saphyr::from_str(text).map_err(|e| {
                let (line, column) = e
                    .location()
                    .map_or((0, 0), |l| (l.line() as usize, l.column() as usize));
                ConfigLoadError::Syntax {
                    format: Format::Yaml,
                    line,
                    column,
                    message: e.to_string(),
                }
            })
        }
    }

    /// Parses text in `format` and validates the result.
    ///
    /// # Errors
    ///
    /// As [`from_toml_str`](Self::from_toml_str).
    pub fn from_str_as(text: &str, format: Format) -> Result<Self, ConfigLoadError> {
        match format {
            Format::Toml => Self::from_toml_str(text),
            Format::Yaml => Self::from_yaml_str(text),
        }
    }

    /// Reads a file, TOML or YAML by its extension, replaces `${VAR}` and
    /// `${VAR:-default}` with environment variables (see [`substitute`](fn@super::substitute)
    /// for the rules), and validates the result.
    ///
    /// Line numbers in errors are the file's; a column on a line with a substitution is
    /// one of the substituted text.
    ///
    /// # Errors
    ///
    /// [`ConfigLoadError::Io`], [`ConfigLoadError::UnknownFormat`],
    /// [`ConfigLoadError::Substitution`], or as [`from_toml_str`](Self::from_toml_str).
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_controller::config::PipelineConfig;
    /// use std::time::Duration;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("pipeline.yaml");
    /// std::fs::write(&path, "policy:\n  cooldown: ${PIPELINE_DOC_COOLDOWN_UNSET:-15s}\n")?;
    /// let config = PipelineConfig::from_path(&path)?;
    /// assert_eq!(config.policy.cooldown, Duration::from_secs(15));
    ///
    /// std::fs::write(&path, "policy:\n  cooldown: ${PIPELINE_DOC_COOLDOWN_UNSET}\n")?;
    /// let error = PipelineConfig::from_path(&path).unwrap_err();
    /// assert!(error.to_string().ends_with(
    ///     "pipeline.yaml: 1 substitution error(s): line 2, column 13: environment variable \
    ///      PIPELINE_DOC_COOLDOWN_UNSET is not set and ${PIPELINE_DOC_COOLDOWN_UNSET} has no \
    ///      default (set it, or write ${PIPELINE_DOC_COOLDOWN_UNSET:-default})"
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, ConfigLoadError> {
        let config = Self::parse_path(path.as_ref())?;
        config.validate()?;
        Ok(config)
    }

    /// The path in the `PIPELINE_CONFIG` environment variable ([`CONFIG_PATH_ENV`]).
    ///
    /// # Errors
    ///
    /// [`ConfigLoadError::EnvNotSet`] if it is unset or empty.
    pub fn path_from_env() -> Result<PathBuf, ConfigLoadError> {
        match std::env::var_os(CONFIG_PATH_ENV) {
            Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
            _ => Err(ConfigLoadError::EnvNotSet {
                variable: CONFIG_PATH_ENV,
            }),
        }
    }

    /// Reads the file that the `PIPELINE_CONFIG` environment variable names, as
    /// [`from_path`](Self::from_path) does: the way to point a container at a mounted
    /// ConfigMap (`PIPELINE_CONFIG=/etc/pipeline/pipeline.yaml`). Watch the same file
    /// with [`ConfigHandle::watch_env`](super::ConfigHandle::watch_env).
    ///
    /// # Errors
    ///
    /// [`ConfigLoadError::EnvNotSet`] if the variable is unset or empty, otherwise as
    /// [`from_path`](Self::from_path).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use pipeline_controller::config::{ConfigHandle, DEFAULT_DEBOUNCE, PipelineConfig};
    ///
    /// // PIPELINE_CONFIG=/etc/pipeline/pipeline.yaml
    /// let handle = ConfigHandle::new(PipelineConfig::from_env()?)?;
    /// let watcher = handle.watch_env(DEFAULT_DEBOUNCE)?;
    /// # drop(watcher);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_env() -> Result<Self, ConfigLoadError> {
        Self::from_path(Self::path_from_env()?)
    }

    /// Reads and parses a file without validating it.
    pub(crate) fn parse_path(path: &Path) -> Result<Self, ConfigLoadError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigLoadError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse_bytes(path, bytes)
    }

    /// Parses the bytes read from `path` (format by its extension, then substitution)
    /// without validating.
    pub(crate) fn parse_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self, ConfigLoadError> {
        let format = Format::from_path(path).ok_or_else(|| ConfigLoadError::UnknownFormat {
            path: path.to_owned(),
        })?;
        let text = String::from_utf8(bytes).map_err(|_| ConfigLoadError::Io {
            path: path.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "stream did not contain valid UTF-8",
            ),
        })?;
        let text = substitute_env(&text).map_err(|errors| ConfigLoadError::Substitution {
            path: path.to_owned(),
            errors,
        })?;
        Self::parse(&text, format)
    }

    /// The configuration as TOML.
    ///
    /// # Panics
    ///
    /// Never for this model (every field is representable in TOML).
    pub fn to_toml_string(&self) -> String {
        toml::to_string(self).expect("the configuration model is representable in TOML")
    }

    /// The configuration as YAML.
    ///
    /// # Panics
    ///
    /// Never for this model (every field is representable in YAML).
    pub fn to_yaml_string(&self) -> String {
        serde_saphyr::to_string(self).expect("the configuration model is representable in YAML")
    }
}
