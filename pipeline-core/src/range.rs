//! An initial value with optional `[min, max]` bounds that follow it when unset: a
//! subscription's capacity, a pool's workers. One check for both, whose errors name
//! the setter the offending value came from; and the [`Bounds`] in force, which a resize
//! clamps into and which may be set again later (`Bus::set_capacity_range`,
//! `WorkerPool::set_worker_range`).

use std::fmt;

/// The names of the three settings, as the user calls their setters.
pub(crate) struct RangeNames {
    pub(crate) initial: &'static str,
    pub(crate) min: &'static str,
    pub(crate) max: &'static str,
}

/// A range in force, `1 <= min <= max`: what a resize clamps into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub(crate) min: usize,
    pub(crate) max: usize,
}

impl Bounds {
    /// `value` moved to the nearer bound if it is outside.
    pub(crate) fn clamp(self, value: usize) -> usize {
        value.clamp(self.min, self.max)
    }

    /// Checks `1 <= min <= max` (an error names the setter at fault, as `names` call
    /// them, and the rule) and sets it; returns the bounds before.
    pub(crate) fn replace(
        &mut self,
        names: &RangeNames,
        min: usize,
        max: usize,
    ) -> Result<Bounds, (&'static str, String)> {
        check_bounds(names, min, max)?;
        Ok(std::mem::replace(self, Bounds { min, max }))
    }
}

impl fmt::Display for Bounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {}]", self.min, self.max)
    }
}

/// Checks `min <= initial <= max`, each at least 1, where an unset bound is
/// `initial`; returns the bounds, or the setter at fault and the rule it breaks.
pub(crate) fn check_range(
    names: &RangeNames,
    initial: usize,
    min: Option<usize>,
    max: Option<usize>,
) -> Result<Bounds, (&'static str, String)> {
    let RangeNames {
        initial: initial_name,
        min: min_name,
        max: max_name,
    } = *names;
    if min == Some(0) {
        return Err((min_name, "must be at least 1".into()));
    }
    if max == Some(0) {
        return Err((max_name, "must be at least 1".into()));
    }
    if initial == 0 && min.is_none() {
        return Err((
            initial_name,
            format!("must be at least 1 (the minimum follows it when `{min_name}` is not set)"),
        ));
    }
    if let (Some(min), Some(max)) = (min, max) {
        check_bounds(names, min, max)?;
    }
    let min = min.unwrap_or(initial);
    let max = max.unwrap_or(initial);
    if initial < min {
        return Err((
            initial_name,
            format!("{initial} is below {min_name} {min}: need {min_name} <= {initial_name}"),
        ));
    }
    if initial > max {
        return Err((
            initial_name,
            format!("{initial} is above {max_name} {max}: need {initial_name} <= {max_name}"),
        ));
    }
    Ok(Bounds { min, max })
}

/// Checks `1 <= min <= max`; the error names the setter at fault and the rule it
/// breaks.
fn check_bounds(names: &RangeNames, min: usize, max: usize) -> Result<(), (&'static str, String)> {
    if min == 0 {
        return Err((names.min, "must be at least 1".into()));
    }
    if max < min {
        return Err((
            names.max,
            format!(
                "{max} is below {min_name} {min}: need {min_name} <= {max_name}",
                min_name = names.min,
                max_name = names.max
            ),
        ));
    }
    Ok(())
}
