//! Pressure stall information: the share of wall time tasks waited for memory.

use std::path::Path;
use std::time::Duration;

use crate::limits::LimitsError;

/// One line of a PSI file: over the last 10, 60 and 300 seconds, the percentage of wall
/// time (0.0 to 100.0) in which tasks were stalled, and the total stall time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PressureAverages {
    /// Percentage of the last 10 s.
    pub avg10: f64,
    /// Percentage of the last 60 s.
    pub avg60: f64,
    /// Percentage of the last 300 s.
    pub avg300: f64,
    /// Total stall time since the counter started.
    pub total: Duration,
}

/// Memory pressure as the kernel reports it in `memory.pressure` or
/// `/proc/pressure/memory`.
///
/// `some` is time in which at least one task waited for memory (reclaim, refaults,
/// swap-in): the workload is slowed. `full` is time in which all non-idle tasks waited at
/// once: nothing useful ran, the stage just before the OOM killer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pressure {
    /// At least one task stalled.
    pub some: PressureAverages,
    /// All tasks stalled at once; older kernels omit this line.
    pub full: Option<PressureAverages>,
    /// Which file this came from.
    pub source: PressureSource,
}

/// Which pressure file a [`Pressure`] was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PressureSource {
    /// `memory.pressure` of the process's cgroup v2 (when the memory controller is v2, so
    /// pressure and limit describe the same cgroup).
    Cgroup,
    /// `/proc/pressure/memory`: the whole machine (cgroup v1 and hybrid hosts).
    System,
}

/// Parses a PSI file: a `some` line and an optional `full` line, each
/// `avg10=<pct> avg60=<pct> avg300=<pct> total=<µs>`.
pub(crate) fn parse_pressure(
    path: &Path,
    text: &str,
) -> Result<(PressureAverages, Option<PressureAverages>), LimitsError> {
    let mut some = None;
    let mut full = None;
    for (number, line) in text.lines().enumerate() {
        let mut fields = line.split_whitespace();
        let slot = match fields.next() {
            None => continue,
            Some("some") => &mut some,
            Some("full") => &mut full,
            Some(other) => {
                return Err(LimitsError::malformed(
                    path,
                    format!(
                        "line {}: expected \"some\" or \"full\", found {other:?}",
                        number + 1
                    ),
                ));
            }
        };
        *slot = Some(parse_line(path, number + 1, line, fields)?);
    }
    let some = some.ok_or_else(|| LimitsError::malformed(path, "no \"some avg10=...\" line"))?;
    Ok((some, full))
}

fn parse_line<'a>(
    path: &Path,
    number: usize,
    line: &str,
    fields: impl Iterator<Item = &'a str>,
) -> Result<PressureAverages, LimitsError> {
    let bad = || {
        LimitsError::malformed(
            path,
            format!(
                "line {number}: expected \"avg10=<pct> avg60=<pct> avg300=<pct> total=<us>\", found {line:?}"
            ),
        )
    };
    let (mut avg10, mut avg60, mut avg300, mut total) = (None, None, None, None);
    for field in fields {
        let (key, value) = field.split_once('=').ok_or_else(bad)?;
        let average = || {
            value
                .parse::<f64>()
                .ok()
                .filter(|v| (0.0..=100.0).contains(v))
        };
        // Unknown keys are skipped so a kernel that adds one does not break the reader.
        match key {
            "avg10" => avg10 = Some(average().ok_or_else(bad)?),
            "avg60" => avg60 = Some(average().ok_or_else(bad)?),
            "avg300" => avg300 = Some(average().ok_or_else(bad)?),
            "total" => total = Some(value.parse::<u64>().map_err(|_| bad())?),
            _ => {}
        }
    }
    match (avg10, avg60, avg300, total) {
        (Some(avg10), Some(avg60), Some(avg300), Some(total)) => Ok(PressureAverages {
            avg10,
            avg60,
            avg300,
            total: Duration::from_micros(total),
        }),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> &'static Path {
        Path::new("/proc/pressure/memory")
    }

    #[test]
    fn idle_machine_sample() {
        let text = "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        let (some, full) = parse_pressure(path(), text).unwrap();
        assert_eq!(some.avg10, 0.0);
        assert_eq!(some.total, Duration::ZERO);
        assert_eq!(full.unwrap().avg300, 0.0);
    }

    #[test]
    fn loaded_cgroup_sample() {
        // Shape of a cgroup under reclaim: some > full, totals in microseconds.
        let text = "some avg10=12.50 avg60=4.31 avg300=1.02 total=73519041\n\
                    full avg10=3.75 avg60=1.10 avg300=0.25 total=21230095\n";
        let (some, full) = parse_pressure(path(), text).unwrap();
        let full = full.unwrap();
        assert_eq!((some.avg10, some.avg60, some.avg300), (12.5, 4.31, 1.02));
        assert_eq!(some.total, Duration::from_micros(73_519_041));
        assert_eq!((full.avg10, full.avg60), (3.75, 1.10));
        assert_eq!(full.total, Duration::from_micros(21_230_095));
    }

    #[test]
    fn some_only_from_older_kernels() {
        let text = "some avg10=1.00 avg60=2.00 avg300=3.00 total=42\n";
        let (some, full) = parse_pressure(path(), text).unwrap();
        assert_eq!(some.avg60, 2.0);
        assert_eq!(full, None);
    }

    #[test]
    fn malformed_samples_name_the_file_and_line() {
        for (text, needle) in [
            ("", "no \"some"),
            ("some avg10=1.00 avg60=2.00\n", "line 1"),
            ("some avg10=x avg60=0 avg300=0 total=0\n", "line 1"),
            (
                "some avg10=0 avg60=0 avg300=0 total=0\nfull avg10=101 avg60=0 avg300=0 total=0\n",
                "line 2",
            ),
            ("half avg10=0\n", "\"half\""),
            ("some avg10 avg60=0 avg300=0 total=0\n", "line 1"),
        ] {
            let err = parse_pressure(path(), text).unwrap_err();
            let message = err.to_string();
            assert!(message.contains("/proc/pressure/memory"), "{message}");
            assert!(message.contains(needle), "{needle:?} not in {message}");
        }
    }
}
