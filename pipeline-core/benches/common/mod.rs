//! What the benchmarks share.

/// Whether this run includes the interleaved runs (no filter, or one matching
/// "interleaved"), and if so whether it is in test mode (`--test`: one round each).
pub fn interleaved_mode() -> Option<bool> {
    let args: Vec<String> = std::env::args().collect();
    filter(&args)
        .is_none_or(|f| "interleaved".contains(f) || f.contains("interleaved"))
        .then(|| args.iter().any(|a| a == "--test"))
}

/// Criterion's filter, if one was given (the first argument that is neither a flag nor
/// a flag's value).
fn filter(args: &[String]) -> Option<&str> {
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
