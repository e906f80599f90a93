//! The override variables: a person's word beats detection, so a wrong value must fail
//! loudly instead of silently falling back to detection.

use super::LimitsError;

/// Memory limit override, in bytes (`536870912`, `512MiB`, `2 GiB`).
pub const MEMORY_LIMIT_ENV: &str = "PIPELINE_MEMORY_LIMIT_BYTES";
/// CPU limit override, in cores (`0.5`, `2`).
pub const CPU_LIMIT_ENV: &str = "PIPELINE_CPU_LIMIT";

/// Both overrides, parsed once when a reader is built (a process's environment does not
/// change under it).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Overrides {
    pub(crate) memory_bytes: Option<u64>,
    pub(crate) cpu_cores: Option<f64>,
}

impl Overrides {
    pub(crate) fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, LimitsError> {
        Ok(Overrides {
            memory_bytes: env(MEMORY_LIMIT_ENV)
                .map(|v| parse_memory(&v))
                .transpose()?,
            cpu_cores: env(CPU_LIMIT_ENV).map(|v| parse_cpu(&v)).transpose()?,
        })
    }
}

fn invalid(name: &'static str, value: &str, reason: &str) -> LimitsError {
    LimitsError::InvalidEnv {
        name,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

fn parse_memory(value: &str) -> Result<u64, LimitsError> {
    let reason = "expected a positive byte count, optionally with KiB, MiB or GiB (e.g. 512MiB)";
    let text = value.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let multiplier: u64 = match unit.trim() {
        "" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(invalid(MEMORY_LIMIT_ENV, value, reason)),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .filter(|&bytes| bytes > 0)
        .ok_or_else(|| invalid(MEMORY_LIMIT_ENV, value, reason))
}

fn parse_cpu(value: &str) -> Result<f64, LimitsError> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|cores| cores.is_finite() && *cores > 0.0)
        .ok_or_else(|| {
            invalid(
                CPU_LIMIT_ENV,
                value,
                "expected a positive number of cores (e.g. 0.5 or 2)",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_values() {
        assert_eq!(parse_memory("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_memory("64KiB").unwrap(), 64 << 10);
        assert_eq!(parse_memory(" 512 MiB ").unwrap(), 512 << 20);
        assert_eq!(parse_memory("2GiB").unwrap(), 2 << 30);
        for bad in [
            "",
            "0",
            "-1",
            "1.5GiB",
            "12MB",
            "lots",
            "99999999999999999999GiB",
        ] {
            let err = parse_memory(bad).unwrap_err();
            assert!(err.to_string().contains(MEMORY_LIMIT_ENV), "{err}");
        }
    }

    #[test]
    fn cpu_values() {
        assert_eq!(parse_cpu("0.5").unwrap(), 0.5);
        assert_eq!(parse_cpu(" 2 ").unwrap(), 2.0);
        for bad in ["", "0", "-1", "NaN", "inf", "two"] {
            let err = parse_cpu(bad).unwrap_err();
            assert!(err.to_string().contains(CPU_LIMIT_ENV), "{err}");
        }
    }

    #[test]
    fn unset_variables_are_no_override() {
        assert_eq!(Overrides::from_env(|_| None).unwrap(), Overrides::default());
    }
}
