//! Errors of the bus: [`PublishError`] on the hot path (it hands the event back and
//! never allocates), [`BusError`] for everything else.

use super::config::OverflowPolicy;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Why a publish did not deliver; the event comes back in every case, and in every
/// case **no** subscription received it (see [`Publisher`](super::Publisher) for the
/// exact rule).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PublishError<E> {
    /// A matching `Block` subscription was full (`try_publish` only).
    Full(E),
    /// The publish-rate limit has no token now; one is free after `retry_after`
    /// (`try_publish` only). Suits an HTTP `429` with `Retry-After`.
    Backoff {
        /// The event, handed back.
        event: E,
        /// How long until the limiter would admit it, exactly, on the bus clock.
        retry_after: Duration,
    },
    /// The timeout of `publish_timeout` passed before the event could go out.
    Timeout(E),
    /// The bus was closed with [`Bus::close`](super::Bus::close).
    Closed(E),
}

impl<E> PublishError<E> {
    /// The event that was not published.
    ///
    /// ```
    /// use pipeline_core::bus::PublishError;
    ///
    /// assert_eq!(PublishError::Full(7).into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> E {
        match self {
            PublishError::Full(e)
            | PublishError::Timeout(e)
            | PublishError::Closed(e)
            | PublishError::Backoff { event: e, .. } => e,
        }
    }

    /// Whether this is [`PublishError::Full`].
    pub fn is_full(&self) -> bool {
        matches!(self, PublishError::Full(_))
    }

    /// Whether this is [`PublishError::Closed`].
    pub fn is_closed(&self) -> bool {
        matches!(self, PublishError::Closed(_))
    }

    /// The wait a [`PublishError::Backoff`] asks for, `None` for the other errors.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PublishError::Backoff { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

// Like crossbeam's errors: no `E: Debug` bound, the event is not printed.
impl<E> fmt::Debug for PublishError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Full(_) => f.write_str("Full(..)"),
            PublishError::Backoff { retry_after, .. } => f
                .debug_struct("Backoff")
                .field("retry_after", retry_after)
                .finish_non_exhaustive(),
            PublishError::Timeout(_) => f.write_str("Timeout(..)"),
            PublishError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<E> fmt::Display for PublishError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Full(_) => f.write_str("publishing on a full subscription"),
            PublishError::Backoff { retry_after, .. } => {
                write!(f, "publish rate limit reached; retry after {retry_after:?}")
            }
            PublishError::Timeout(_) => f.write_str("timed out publishing"),
            PublishError::Closed(_) => f.write_str("publishing on a closed bus"),
        }
    }
}

impl<E> std::error::Error for PublishError<E> {}

/// Why a bus operation other than publishing failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// A subscription (or bus) setting breaks a rule; `field` names the setter.
    #[error("invalid `{field}`: {rule}")]
    InvalidConfig {
        /// The setting, named as its setter.
        field: &'static str,
        /// The rule it breaks.
        rule: String,
    },
    /// Another live subscription already has this name.
    #[error("a subscription named {0:?} already exists on this bus")]
    DuplicateName(Arc<str>),
    /// No live subscription has this name.
    #[error("no subscription named {0:?} on this bus")]
    UnknownSubscription(String),
    /// A dropping overflow policy was asked of a subscription that is not droppable.
    #[error(
        "subscription {subscription:?} is not droppable, so its overflow policy stays block \
         (asked for {requested})"
    )]
    NotDroppable {
        /// The subscription.
        subscription: Arc<str>,
        /// The policy that was refused.
        requested: OverflowPolicy,
    },
    /// A publish rate must be a positive, finite number of events per second.
    #[error("publish rate {0} is not a positive, finite number of events per second")]
    InvalidRate(f64),
    /// A second subscription was asked of a bus made with
    /// [`BusBuilder::build_single`](super::BusBuilder::build_single), whose event type
    /// need not be `Clone` and which therefore holds one subscription at a time.
    #[error(
        "cannot add subscription {subscription:?}: this bus holds one subscription at a time \
         ({existing:?} is live) because it was built with build_single; events must be \
         Clone to go to several subscriptions (build the bus with build())"
    )]
    FanOutNeedsClone {
        /// The subscription that was refused.
        subscription: Arc<str>,
        /// The live subscription the bus already holds.
        existing: Arc<str>,
    },
    /// The bus was closed.
    #[error("the bus is closed")]
    Closed,
}
