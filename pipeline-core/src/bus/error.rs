//! Errors of the bus: [`PublishError`] on the hot path (it hands the event back and
//! never allocates), [`BusError`] for everything else.

use crate::overflow::OverflowPolicy;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Why a publish did not deliver; the event comes back in every case, and in every
/// case **no** subscription received it (see [`Publisher`](super::Publisher) for the
/// exact rule). A refusal that comes from one subscription names it
/// ([`subscription`](Self::subscription), and in the message).
///
/// More reasons may come: match with a wildcard arm, or use the accessors.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishError<E> {
    /// A matching `Block` subscription was full (`try_publish` only).
    Full {
        /// The event, handed back.
        event: E,
        /// The subscription that was full.
        subscription: Arc<str>,
    },
    /// The publish-rate limit has no token now; one is free after `retry_after`
    /// (`try_publish` only). Suits an HTTP `429` with `Retry-After`.
    Backoff {
        /// The event, handed back.
        event: E,
        /// How long until the limiter would admit it, exactly, on the bus clock.
        retry_after: Duration,
    },
    /// The timeout of `publish_timeout` passed before the event could go out.
    Timeout {
        /// The event, handed back.
        event: E,
        /// The `Block` subscription that stayed full; `None` when the wait was for the
        /// publish-rate limit.
        subscription: Option<Arc<str>>,
    },
    /// The bus was closed with [`Bus::close`](super::Bus::close).
    Closed(E),
}

impl<E> PublishError<E> {
    /// The event that was not published.
    ///
    /// ```
    /// use pipeline_core::bus::PublishError;
    ///
    /// assert_eq!(PublishError::Closed(7).into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> E {
        match self {
            PublishError::Full { event, .. }
            | PublishError::Backoff { event, .. }
            | PublishError::Timeout { event, .. }
            | PublishError::Closed(event) => event,
        }
    }

    /// The subscription that refused the event: the full one of
    /// [`Full`](Self::Full), or the one that stayed full through a
    /// [`Timeout`](Self::Timeout); `None` for the other errors.
    ///
    /// ```
    /// use pipeline_core::bus::{Bus, SubscriptionConfig};
    ///
    /// let bus = Bus::new();
    /// let _orders = bus.subscribe(SubscriptionConfig::new("orders").capacity(1)).unwrap();
    /// let publisher = bus.publisher();
    /// publisher.publish(1).unwrap();
    /// let error = publisher.try_publish(2).unwrap_err();
    /// assert_eq!(error.subscription(), Some("orders"));
    /// assert_eq!(error.to_string(), "subscription \"orders\" is full");
    /// ```
    pub fn subscription(&self) -> Option<&str> {
        match self {
            PublishError::Full { subscription, .. } => Some(subscription),
            PublishError::Timeout { subscription, .. } => subscription.as_deref(),
            PublishError::Backoff { .. } | PublishError::Closed(_) => None,
        }
    }

    /// Whether this is [`PublishError::Full`].
    pub fn is_full(&self) -> bool {
        matches!(self, PublishError::Full { .. })
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
            PublishError::Full { subscription, .. } => f
                .debug_struct("Full")
                .field("subscription", subscription)
                .finish_non_exhaustive(),
            PublishError::Backoff { retry_after, .. } => f
                .debug_struct("Backoff")
                .field("retry_after", retry_after)
                .finish_non_exhaustive(),
            PublishError::Timeout { subscription, .. } => f
                .debug_struct("Timeout")
                .field("subscription", subscription)
                .finish_non_exhaustive(),
            PublishError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<E> fmt::Display for PublishError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Full { subscription, .. } => {
                write!(f, "subscription {subscription:?} is full")
            }
            PublishError::Backoff { retry_after, .. } => {
                write!(f, "publish rate limit reached; retry after {retry_after:?}")
            }
            PublishError::Timeout {
                subscription: Some(subscription),
                ..
            } => write!(
                f,
                "timed out publishing: subscription {subscription:?} stayed full"
            ),
            PublishError::Timeout {
                subscription: None, ..
            } => f.write_str("timed out publishing: waiting for the publish rate limit"),
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
