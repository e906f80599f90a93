//! Errors of the HTTP adapters.

use std::net::SocketAddr;

/// Why an [`HttpSource`](super::HttpSource) did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpSourceError {
    /// A setting breaks a rule; `field` names the setter.
    #[error("invalid `{field}`: {rule}")]
    InvalidConfig {
        /// The setting, named as its setter.
        field: &'static str,
        /// The rule it breaks.
        rule: String,
    },
    /// The address could not be bound.
    #[error("could not bind {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The runtime or the listener could not be set up.
    #[error("could not start the HTTP runtime")]
    Runtime(#[source] std::io::Error),
}

/// Why an [`HttpSink`](super::HttpSink) could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpSinkError {
    /// A setting breaks a rule; `field` names the setter.
    #[error("invalid `{field}`: {rule}")]
    InvalidConfig {
        /// The setting, named as its setter.
        field: &'static str,
        /// The rule it breaks.
        rule: String,
    },
}

/// Why one delivery attempt of an [`HttpSink`](super::HttpSink) failed; the error of
/// an [`Undelivered`](crate::sink::Undelivered) from it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpAttemptError {
    /// The endpoint answered with a status that is not 2xx.
    #[error("the endpoint answered {status}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// Whether the status is worth retrying (408, 429, 5xx).
        retryable: bool,
    },
    /// No answer: connection refused or reset, a timeout, a protocol error.
    #[error("request failed")]
    Transport(#[source] ureq::Error),
}

impl HttpAttemptError {
    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            HttpAttemptError::Status { retryable, .. } => *retryable,
            HttpAttemptError::Transport(_) => true,
        }
    }
}
