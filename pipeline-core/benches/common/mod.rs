//! What the benchmarks share.

/// Criterion's filter, if one was given (the first argument that is neither a flag nor
/// a flag's value).
pub fn filter(args: &[String]) -> Option<&str> {
    let valueless = [
        "--bench",
        "--test",
        "--list",
        "--quiet",
        "--verbose",
        "--exact",
    ];
    let mut previous: Option<&str> = None;
    for arg in args.iter().skip(1) {
        let takes_value = previous.is_some_and(|p| p.starts_with("--") && !valueless.contains(&p));
        if !arg.starts_with('-') && !takes_value {
            return Some(arg);
        }
        previous = Some(arg);
    }
    None
}
