//! Helpers shared by the pool test files.

use std::sync::Once;

/// Keeps the induced panics (messages starting with "induced") out of the test output;
/// any other panic prints as usual.
pub fn quiet_induced_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let induced = info
                .payload()
                .downcast_ref::<String>()
                .is_some_and(|m| m.starts_with("induced"));
            if !induced {
                default(info);
            }
        }));
    });
}
