//! [`DeadLetters`]: a sink's dead-letter hook, or counting and logging without one.

use super::traits::{DeadLetterHook, Undelivered};
use pipeline_core::pool::panic_message;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// A sink's dead-letter route.
#[derive(Clone, Default)]
pub(crate) struct DeadLetters {
    hook: Option<DeadLetterHook>,
}

impl DeadLetters {
    pub(crate) fn new(hook: Option<DeadLetterHook>) -> Self {
        DeadLetters { hook }
    }

    /// Hands `undelivered` to the hook (a panic in the hook is caught and logged), or
    /// logs it.
    pub(crate) fn send(&self, undelivered: Undelivered) {
        tracing::warn!(
            sink = %undelivered.sink,
            events = undelivered.events.len(),
            attempts = undelivered.attempts,
            error = %undelivered.error,
            "sink: events undelivered"
        );
        if let Some(hook) = &self.hook
            && let Err(payload) = catch_unwind(AssertUnwindSafe(|| hook(undelivered)))
        {
            tracing::error!(
                panic = %panic_message(payload.as_ref()),
                "sink: dead-letter hook panicked"
            );
        }
    }
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("hook", &self.hook.as_ref().map(|_| ".."))
            .finish()
    }
}
