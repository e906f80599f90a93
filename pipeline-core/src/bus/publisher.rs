//! [`Publisher`]: routing one event to every matching subscription.

use super::delivery::{self, Wait};
use super::error::PublishError;
use super::route::Plain;
use super::router::{BusInner, PUBLISHED};
use crate::hazard::Slot;
use crate::sync::atomic::Ordering;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A handle that publishes events on a [`Bus`](super::Bus); from
/// [`Bus::publisher`](super::Bus::publisher). Clone it freely; it is `Send` and `Sync`.
///
/// # Delivery
///
/// An event goes to every subscription whose filter matches it, in a fixed order:
/// first the matching subscriptions whose policy is `Block`, in the order they
/// subscribed, then the dropping ones in the same order. Each gets a clone; the last
/// gets the event itself. A publish reads each subscription's policy once, when it
/// matches the filters.
///
/// **A publish is never partial.** Every method returns `Err` (with the event back)
/// only when *no* subscription received the event; once one has, the publish goes on
/// until every matching subscription has it (dropping subscriptions may drop it, as
/// their policy says, and count it). So a caller that retries after an `Err` never
/// duplicates an event.
///
/// What each method adds to that:
/// - [`publish`](Self::publish) waits for rate-limit tokens and for room in `Block`
///   subscriptions, as long as needed. It fails only on a closed bus.
/// - [`publish_async`](Self::publish_async) is `publish` for async code: it waits as
///   a task, never blocking a thread, and may be cancelled by dropping its future
///   (see its docs for exactly what a cancellation delivers).
/// - [`publish_timeout`](Self::publish_timeout) waits at most `timeout` for a token
///   and for room in the *first* matching `Block` subscription. Once the first has the
///   event, the publish is committed and waits for room in the others without limit.
/// - [`try_publish`](Self::try_publish) never waits for a token or for room in a
///   subscription it found full; see its docs for the exact rule with several `Block`
///   subscriptions.
pub struct Publisher<E> {
    pub(super) inner: Arc<BusInner<E>>,
}

impl<E: Send + 'static> Publisher<E> {
    pub(crate) fn new(inner: Arc<BusInner<E>>) -> Self {
        Publisher { inner }
    }

    /// Publishes `event`, waiting for a rate-limit token and for room in every matching
    /// `Block` subscription (back pressure).
    ///
    /// An event no subscription matches is accepted and counted as unmatched.
    ///
    /// It blocks the calling thread while it waits: from async code (a task on a
    /// runtime thread) use [`publish_async`](Self::publish_async) instead.
    ///
    /// # Errors
    ///
    /// [`PublishError::Closed`] after [`Bus::close`](super::Bus::close).
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_core::bus::{Bus, SubscriptionConfig};
    ///
    /// let bus = Bus::new();
    /// let all = bus.subscribe(SubscriptionConfig::new("all")).unwrap();
    /// let big = bus.subscribe(SubscriptionConfig::new("big").filter(|n: &u32| *n > 10)).unwrap();
    /// let publisher = bus.publisher();
    /// publisher.publish(5).unwrap();
    /// publisher.publish(50).unwrap();
    /// assert_eq!(all.try_iter().collect::<Vec<_>>(), [5, 50]);
    /// assert_eq!(big.try_iter().collect::<Vec<_>>(), [50]);
    /// ```
    pub fn publish(&self, event: E) -> Result<(), PublishError<E>> {
        self.publish_with(event, Wait::Forever)
    }

    /// Like [`publish`](Self::publish), waiting at most `timeout` (on the bus clock for
    /// the rate limit) before the event reaches its first subscription.
    ///
    /// If the wait for a token alone would outlast the timeout, it returns `Timeout` at
    /// once instead of sleeping first.
    ///
    /// # Errors
    ///
    /// [`PublishError::Timeout`] when no subscription got the event in time (naming
    /// the `Block` subscription that stayed full, if that was the wait),
    /// [`PublishError::Closed`] after [`Bus::close`](super::Bus::close).
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_core::bus::{Bus, PublishError, SubscriptionConfig};
    /// use std::time::Duration;
    ///
    /// let bus = Bus::new();
    /// let _sub = bus.subscribe(SubscriptionConfig::new("s").capacity(1)).unwrap();
    /// let publisher = bus.publisher();
    /// publisher.publish(1).unwrap();
    /// let err = publisher.publish_timeout(2, Duration::from_millis(5)).unwrap_err();
    /// assert!(matches!(&err, PublishError::Timeout { event: 2, .. }));
    /// assert_eq!(err.subscription(), Some("s"));
    /// ```
    pub fn publish_timeout(&self, event: E, timeout: Duration) -> Result<(), PublishError<E>> {
        let deadline = self.inner.limiter.clock().now() + timeout;
        self.publish_with(event, Wait::Until(deadline))
    }

    /// Publishes `event` if that needs no waiting; never waits for a rate-limit token
    /// or on a subscription it found full.
    ///
    /// With at most one matching `Block` subscription the answer is exact: that
    /// subscription's buffer is tried first, atomically, and `Full` means it was full
    /// and nothing was delivered anywhere.
    ///
    /// With several matching `Block` subscriptions it first checks each for room, in
    /// delivery order, and returns `Full` before delivering anything if one is full.
    /// If all had room, it delivers in the same order. Another publisher can fill one
    /// of them between the check and the delivery; rather than deliver only in part
    /// (losing the event for a lossless subscription, or making the caller's retry a
    /// duplicate), `try_publish` then waits for room in that subscription, and counts
    /// the wait in its [`try_publish_waits`](super::SubscriptionSnapshot::try_publish_waits).
    /// Such a wait ends as soon as that subscription's receiver takes one event; it
    /// cannot happen with one publishing thread, or with one matching `Block`
    /// subscription.
    ///
    /// # Errors
    ///
    /// [`PublishError::Backoff`] with the exact wait when the rate limit has no token,
    /// [`PublishError::Full`] as above (naming the full subscription),
    /// [`PublishError::Closed`] after [`Bus::close`](super::Bus::close). In every case
    /// no subscription received the event.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_core::bus::{Bus, PublishError, SubscriptionConfig};
    ///
    /// let bus = Bus::new();
    /// let a = bus.subscribe(SubscriptionConfig::new("a").capacity(1)).unwrap();
    /// let b = bus.subscribe(SubscriptionConfig::new("b").capacity(2)).unwrap();
    /// let publisher = bus.publisher();
    /// publisher.try_publish(1).unwrap();
    /// let full = publisher.try_publish(2).unwrap_err();
    /// assert!(matches!(full, PublishError::Full { event: 2, .. }));
    /// assert_eq!(full.subscription(), Some("a"));
    /// assert_eq!(b.len(), 1); // "b" had room, but got nothing: all or none
    /// a.recv().unwrap();
    /// publisher.try_publish(2).unwrap();
    /// assert_eq!((a.len(), b.len()), (1, 2));
    /// ```
    pub fn try_publish(&self, event: E) -> Result<(), PublishError<E>> {
        self.publish_with(event, Wait::Never)
    }

    /// Whether the bus was closed ([`Bus::close`](super::Bus::close)): from then on
    /// every publish fails with [`PublishError::Closed`]. Cheap (two loads while the
    /// subscription list is unchanged), for a source that wants to stop pulling input
    /// before it has an event to hand over.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_core::bus::Bus;
    ///
    /// let bus = Bus::<u8>::new();
    /// let publisher = bus.publisher();
    /// assert!(!publisher.is_closed());
    /// bus.close();
    /// assert!(publisher.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        let inner = &*self.inner;
        // SAFETY: the reference is used for one load, with no code in between.
        unsafe {
            inner
                .routes
                .read_sticky(&inner.registry, inner.registry.slot())
        }
        .closed
    }

    #[inline]
    fn publish_with(&self, event: E, wait: Wait) -> Result<(), PublishError<E>> {
        let inner = &*self.inner;
        let event = self.admit(event, wait)?;
        let slot = inner.registry.slot();
        // This publish's number on this thread, if it succeeds: what picks the
        // deliveries that sample their subscription's length.
        let tick = slot.peek(PUBLISHED).wrapping_add(1);
        // The fast path: one plain `Block` subscription with room. The route list is
        // read under the sticky hazard (no store while the list is unchanged).
        // SAFETY: `routes` and `route` are last used inside `try_deliver_plain` and the
        // clone below, and until then only this crate's code runs (no filter, size
        // function, `Clone` or `Drop` of an event; signals are raised after, on a
        // reference of their own), so this thread makes no other sticky read of the
        // list while they are live.
        let routes = unsafe { inner.routes.read_sticky(&inner.registry, slot) };
        let event = match &routes.list[..] {
            [route] if routes.plain_lone => match route.try_deliver_plain(event, tick) {
                Plain::Done => {
                    slot.add(PUBLISHED, 1);
                    return Ok(());
                }
                Plain::Edge(shared, edge, len) => {
                    // `routes` and `route` are dead here: the signal runs user code
                    // (which may publish on this bus and move the sticky hazard) on a
                    // reference of its own.
                    slot.add(PUBLISHED, 1);
                    shared.raise_edge(edge, len);
                    return Ok(());
                }
                Plain::Full(event) => {
                    // Wait (or refuse) on a reference of our own, as the general path
                    // would: `found_full` raises signals, which run user code.
                    let route = Arc::clone(route);
                    route.shared.found_full();
                    let result = delivery::wait_for_room(inner, &route, event, wait, false)
                        .map_err(|(why, event)| {
                            delivery::refused(&inner.counters, why, event, &route)
                        });
                    if result.is_ok() {
                        slot.add(PUBLISHED, 1);
                    }
                    return result;
                }
                Plain::Elsewhere(event) => event,
            },
            _ => event,
        };
        self.publish_guarded(event, wait, slot, tick)
    }

    /// The general path: the route list under a guarded read (user code may run, and
    /// may even publish on this bus).
    #[inline(never)]
    fn publish_guarded(
        &self,
        event: E,
        wait: Wait,
        slot: &Slot,
        tick: u64,
    ) -> Result<(), PublishError<E>> {
        let inner = &*self.inner;
        let routes = inner.routes.enter(&inner.registry, slot);
        if routes.closed {
            return Err(PublishError::Closed(event));
        }
        let result = delivery::deliver(inner, &routes.list, event, wait, tick);
        drop(routes);
        if result.is_ok() {
            slot.add(PUBLISHED, 1);
        }
        result
    }

    /// Takes a rate-limit token, waiting for it as `wait` allows.
    #[inline]
    fn admit(&self, event: E, wait: Wait) -> Result<E, PublishError<E>> {
        let limiter = &self.inner.limiter;
        let mut retry_after = match limiter.acquire() {
            Ok(()) => return Ok(event),
            Err(retry_after) => retry_after,
        };
        self.inner
            .counters
            .rate_limited
            .fetch_add(1, Ordering::Relaxed);
        loop {
            if self.inner.routes.load_full().closed {
                return Err(PublishError::Closed(event));
            }
            let give_up = match wait {
                Wait::Never => true,
                Wait::Until(deadline) => limiter.clock().now() + retry_after > deadline,
                Wait::Forever => false,
            };
            if give_up {
                self.inner
                    .counters
                    .rate_limit_refused
                    .fetch_add(1, Ordering::Relaxed);
                return Err(match wait {
                    Wait::Never => PublishError::Backoff { event, retry_after },
                    _ => PublishError::Timeout {
                        event,
                        subscription: None,
                    },
                });
            }
            limiter.clock().sleep(retry_after);
            match limiter.acquire() {
                Ok(()) => return Ok(event),
                Err(next) => retry_after = next,
            }
        }
    }
}

impl<E> Clone for Publisher<E> {
    fn clone(&self) -> Self {
        Publisher {
            inner: self.inner.clone(),
        }
    }
}

impl<E> fmt::Debug for Publisher<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("Publisher { .. }")
    }
}
