//! An initial value with optional `[min, max]` bounds that follow it when unset: a
//! subscription's capacity, a pool's workers. One check for both, whose errors name
//! the setter the offending value came from.

/// The names of the three settings, as the user calls their setters.
pub(crate) struct RangeNames {
    pub(crate) initial: &'static str,
    pub(crate) min: &'static str,
    pub(crate) max: &'static str,
}

/// Checks `min <= initial <= max`, each at least 1, where an unset bound is
/// `initial`; returns `(min, max)`, or the setter at fault and the rule it breaks.
pub(crate) fn check_range(
    names: &RangeNames,
    initial: usize,
    min: Option<usize>,
    max: Option<usize>,
) -> Result<(usize, usize), (&'static str, String)> {
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
        if min > max {
            return Err((
                max_name,
                format!("{max} is below {min_name} {min}: need {min_name} <= {max_name}"),
            ));
        }
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
    Ok((min, max))
}
