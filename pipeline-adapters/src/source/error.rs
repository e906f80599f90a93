//! [`JoinError`]: why waiting for an adapter's threads did not end cleanly.

use std::time::Duration;

/// Why [`Source::join`](super::Source::join) (or a sink's shutdown) did not end
/// cleanly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// Still running after the wait; calling `join` again keeps waiting.
    #[error("still running after waiting {0:?}")]
    Timeout(Duration),
    /// One of the adapter's threads panicked, with this message.
    #[error("an adapter thread panicked: {0}")]
    Panicked(String),
}
