//! `${VAR}` and `${VAR:-default}` in configuration files, replaced before parsing.

use std::fmt;

/// One reference that could not be replaced, with its 1-based line and column (in
/// characters) in the file as written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubstitutionError {
    /// `${NAME}` without a default, and `NAME` is not set.
    Unset {
        /// The variable.
        variable: String,
        /// Where the reference starts.
        line: usize,
        /// Where the reference starts.
        column: usize,
    },
    /// The variable's value is not UTF-8.
    NotUnicode {
        /// The variable.
        variable: String,
        /// Where the reference starts.
        line: usize,
        /// Where the reference starts.
        column: usize,
    },
    /// The variable's value contains a line break, which could add keys to the file
    /// and would move every line after it.
    LineBreak {
        /// The variable.
        variable: String,
        /// Where the reference starts.
        line: usize,
        /// Where the reference starts.
        column: usize,
    },
    /// `${` not followed by `NAME}` or `NAME:-default}` on the same line.
    Malformed {
        /// The reference as written, up to its `}` or the end of the line.
        text: String,
        /// Where the reference starts.
        line: usize,
        /// Where the reference starts.
        column: usize,
    },
}

impl SubstitutionError {
    /// The 1-based line of the reference.
    pub fn line(&self) -> usize {
        match self {
            SubstitutionError::Unset { line, .. }
            | SubstitutionError::NotUnicode { line, .. }
            | SubstitutionError::LineBreak { line, .. }
            | SubstitutionError::Malformed { line, .. } => *line,
        }
    }

    /// The variable named, if the reference is well formed.
    pub fn variable(&self) -> Option<&str> {
        match self {
            SubstitutionError::Unset { variable, .. }
            | SubstitutionError::NotUnicode { variable, .. }
            | SubstitutionError::LineBreak { variable, .. } => Some(variable),
            SubstitutionError::Malformed { .. } => None,
        }
    }
}

impl fmt::Display for SubstitutionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubstitutionError::Unset {
                variable,
                line,
                column,
            } => write!(
                f,
                "line {line}, column {column}: environment variable {variable} is not set and \
                 ${{{variable}}} has no default (set it, or write ${{{variable}:-default}})"
            ),
            SubstitutionError::NotUnicode {
                variable,
                line,
                column,
            } => write!(
                f,
                "line {line}, column {column}: environment variable {variable} is not valid UTF-8"
            ),
            SubstitutionError::LineBreak {
                variable,
                line,
                column,
            } => write!(
                f,
                "line {line}, column {column}: environment variable {variable} contains a line \
                 break (a substituted value must stay on its line)"
            ),
            SubstitutionError::Malformed { text, line, column } => write!(
                f,
                "line {line}, column {column}: {text:?} is not a substitution (write ${{NAME}} or \
                 ${{NAME:-default}}, NAME of ASCII letters, digits and '_', and $$ for a literal $)"
            ),
        }
    }
}

/// Every reference of a file that could not be replaced, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubstitutionErrors(pub Vec<SubstitutionError>);

impl SubstitutionErrors {
    /// The problems, one per reference.
    pub fn errors(&self) -> &[SubstitutionError] {
        &self.0
    }
}

impl fmt::Display for SubstitutionErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} substitution error(s): ", self.0.len())?;
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SubstitutionErrors {}

/// What a variable lookup found.
pub(crate) enum Lookup {
    Set(String),
    Unset,
    NotUnicode,
}

/// Replaces `${NAME}` and `${NAME:-default}` in `text` with the values `lookup` gives,
/// the way configuration files are read ([`PipelineConfig::from_path`]; see
/// [`substitute_env`] for the process environment).
///
/// The rules:
///
/// - `${NAME}` is the variable's value; unset, it is an error (an empty value is
///   substituted as empty). `NAME` is ASCII letters, digits and `_`, not starting with
///   a digit.
/// - `${NAME:-default}` is the value, or `default` when the variable is unset or
///   empty. The default is the text up to the first `}`, taken literally.
/// - `$$` is a literal `$`; any other `$` (`$HOME`, `5$`) is kept as written.
/// - Lines whose first non-blank character is `#` (whole-line comments in TOML and
///   YAML) are kept as written.
/// - The text replaced is pasted as written, before the file is parsed, so numbers,
///   durations and flags can come from variables (`max = ${MAX_WORKERS:-8}`); quote
///   the reference where the value must be a string. A value containing a line break is
///   an error, so a variable cannot add keys and line numbers stay those of the file.
///
/// # Errors
///
/// [`SubstitutionErrors`] with every reference that could not be replaced.
///
/// # Examples
///
/// ```
/// use pipeline_controller::config::{SubstitutionError, substitute};
///
/// let lookup = |name: &str| (name == "COOLDOWN").then(|| "10s".to_owned());
/// let text = "cooldown = \"${COOLDOWN}\"\nmax = ${MAX:-8}\nprice = \"$$5\"\n";
/// assert_eq!(
///     substitute(text, lookup)?,
///     "cooldown = \"10s\"\nmax = 8\nprice = \"$5\"\n"
/// );
///
/// let errors = substitute("[policy]\ncooldown = \"${UNSET}\"\n", lookup).unwrap_err();
/// assert_eq!(
///     errors.errors()[0],
///     SubstitutionError::Unset { variable: "UNSET".into(), line: 2, column: 13 }
/// );
/// assert_eq!(
///     errors.to_string(),
///     "1 substitution error(s): line 2, column 13: environment variable UNSET is not set \
///      and ${UNSET} has no default (set it, or write ${UNSET:-default})"
/// );
/// # Ok::<(), pipeline_controller::config::SubstitutionErrors>(())
/// ```
///
/// [`PipelineConfig::from_path`]: super::PipelineConfig::from_path
pub fn substitute(
    text: &str,
    mut lookup: impl FnMut(&str) -> Option<String>,
) -> Result<String, SubstitutionErrors> {
    substitute_with(text, |name| match lookup(name) {
        Some(value) => Lookup::Set(value),
        None => Lookup::Unset,
    })
}

/// [`substitute`] with the process environment: what the file loaders do.
///
/// # Errors
///
/// As [`substitute`]; a value that is not UTF-8 is an error too.
pub fn substitute_env(text: &str) -> Result<String, SubstitutionErrors> {
    substitute_with(text, |name| match std::env::var(name) {
        Ok(value) => Lookup::Set(value),
        Err(std::env::VarError::NotPresent) => Lookup::Unset,
        Err(std::env::VarError::NotUnicode(_)) => Lookup::NotUnicode,
    })
}

pub(crate) fn substitute_with(
    text: &str,
    mut lookup: impl FnMut(&str) -> Lookup,
) -> Result<String, SubstitutionErrors> {
    // Most files have no `$` at all.
    if !text.contains('$') {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    for (index, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        substitute_line(line, index + 1, &mut lookup, &mut out, &mut errors);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(SubstitutionErrors(errors))
    }
}

fn substitute_line(
    line: &str,
    number: usize,
    lookup: &mut impl FnMut(&str) -> Lookup,
    out: &mut String,
    errors: &mut Vec<SubstitutionError>,
) {
    let column = |at: usize| line[..at].chars().count() + 1;
    let mut rest = 0;
    while let Some(found) = line[rest..].find('$') {
        let at = rest + found;
        out.push_str(&line[rest..at]);
        let after = &line[at + 1..];
        if after.starts_with('$') {
            out.push('$');
            rest = at + 2;
            continue;
        }
        if !after.starts_with('{') {
            out.push('$');
            rest = at + 1;
            continue;
        }
        // `${...}`: up to the first `}` on this line.
        let body_start = at + 2;
        let Some(close) = line[body_start..].find('}') else {
            let text = line[at..].trim_end_matches(['\n', '\r']).to_owned();
            errors.push(SubstitutionError::Malformed {
                text,
                line: number,
                column: column(at),
            });
            return;
        };
        let body = &line[body_start..body_start + close];
        rest = body_start + close + 1;
        let (name, default) = match body.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (body, None),
        };
        if !is_name(name) {
            errors.push(SubstitutionError::Malformed {
                text: line[at..rest].to_owned(),
                line: number,
                column: column(at),
            });
            continue;
        }
        let value = match (lookup(name), default) {
            (Lookup::Set(value), Some(default)) if value.is_empty() => default.to_owned(),
            (Lookup::Set(value), _) => value,
            (Lookup::Unset, Some(default)) => default.to_owned(),
            (Lookup::Unset, None) => {
                errors.push(SubstitutionError::Unset {
                    variable: name.to_owned(),
                    line: number,
                    column: column(at),
                });
                continue;
            }
            (Lookup::NotUnicode, _) => {
                errors.push(SubstitutionError::NotUnicode {
                    variable: name.to_owned(),
                    line: number,
                    column: column(at),
                });
                continue;
            }
        };
        if value.contains(['\n', '\r']) {
            errors.push(SubstitutionError::LineBreak {
                variable: name.to_owned(),
                line: number,
                column: column(at),
            });
            continue;
        }
        out.push_str(&value);
    }
    out.push_str(&line[rest..]);
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
