//! Errors of worker pools, and what a failed event becomes: a [`DeadLetter`].

use std::any::Any;
use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// Why building or resizing a [`WorkerPool`](super::WorkerPool) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// A setting breaks a rule; `field` names the setter.
    #[error("invalid `{field}`: {rule}")]
    InvalidConfig {
        /// The setting, named as its setter.
        field: &'static str,
        /// The rule it breaks.
        rule: String,
    },
    /// The operating system refused to start a worker thread.
    #[error("could not start a worker thread")]
    Spawn(#[source] std::io::Error),
}

/// The error a handler returns: any error type, or a message.
///
/// `?` converts any `std::error::Error + Send + Sync + 'static`, a `String` or a
/// `&str` into it.
///
/// ```
/// use pipeline_core::pool::HandlerError;
///
/// fn parse(input: &str) -> Result<u32, HandlerError> {
///     if input.is_empty() {
///         return Err("empty input".into());
///     }
///     Ok(input.parse::<u32>()?) // a ParseIntError becomes a HandlerError
/// }
/// assert_eq!(parse("").unwrap_err().to_string(), "empty input");
/// assert!(parse("x").is_err());
/// ```
pub struct HandlerError {
    inner: Box<dyn Error + Send + Sync>,
}

impl HandlerError {
    /// Wraps an error or a message.
    pub fn new(error: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        HandlerError {
            inner: error.into(),
        }
    }

    /// The error inside.
    pub fn get_ref(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.inner
    }

    /// Unwraps the error inside.
    pub fn into_inner(self) -> Box<dyn Error + Send + Sync> {
        self.inner
    }
}

// Not `impl Error for HandlerError`: that would make this blanket `From` overlap with
// `From<T> for T` (the way `anyhow::Error` works).
impl<T: Into<Box<dyn Error + Send + Sync>>> From<T> for HandlerError {
    fn from(error: T) -> Self {
        HandlerError::new(error)
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

/// An event a handler could not process, handed to the pool's dead-letter hook.
#[derive(Debug)]
#[non_exhaustive]
pub struct DeadLetter<E> {
    /// The event, as the handler received it (the pool kept a clone).
    pub event: E,
    /// What went wrong.
    pub reason: DeadLetterReason,
    /// The pool's name.
    pub pool: Arc<str>,
}

/// The message of a caught panic: the `&str` or `String` given to `panic!`, or
/// `panic with a non-string payload` for any other payload. What
/// [`DeadLetterReason::Panicked`] carries.
///
/// For anything else that catches panics (`catch_unwind`, a thread's `join`, a
/// task's `JoinError::into_panic`), so every log line says it the same way.
///
/// ```
/// use pipeline_core::pool::panic_message;
///
/// let payload = std::panic::catch_unwind(|| panic!("disk {} is full", 3)).unwrap_err();
/// assert_eq!(panic_message(payload.as_ref()), "disk 3 is full");
/// let payload = std::panic::catch_unwind(|| std::panic::panic_any(7)).unwrap_err();
/// assert_eq!(panic_message(payload.as_ref()), "panic with a non-string payload");
/// ```
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// Why an event became a [`DeadLetter`].
#[derive(Debug)]
#[non_exhaustive]
pub enum DeadLetterReason {
    /// The handler returned this error.
    Failed(HandlerError),
    /// The handler panicked with this message (see [`panic_message`]).
    Panicked(String),
}

impl fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeadLetterReason::Failed(error) => write!(f, "handler failed: {error}"),
            DeadLetterReason::Panicked(message) => write!(f, "handler panicked: {message}"),
        }
    }
}
