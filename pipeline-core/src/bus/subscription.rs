//! [`Subscription`]: the receiving end of one subscription.

use super::route::SubShared;
use super::router::BusInner;
use super::snapshot::SubscriptionSnapshot;
use crate::channel::{Interrupt, Receiver, RecvError, RecvTimeoutError, TryRecvError};
use std::fmt;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// The receiving end of one subscription; from [`Bus::subscribe`](super::Bus::subscribe).
///
/// It is `Send` and `Sync`: share it (for example in an `Arc`) to receive on several
/// threads, as a [`WorkerPool`](crate::pool::WorkerPool) does. Dropping it removes the
/// subscription from the bus; events still buffered are dropped with it.
///
/// After [`Bus::unsubscribe`](super::Bus::unsubscribe) or
/// [`Bus::close`](super::Bus::close) (or once the bus and all its publishers are gone)
/// it still receives what is buffered, then reports disconnection.
pub struct Subscription<E> {
    shared: Arc<SubShared>,
    rx: Receiver<E>,
    bus: Weak<BusInner<E>>,
}

impl<E> Subscription<E> {
    pub(crate) fn new(shared: Arc<SubShared>, rx: Receiver<E>, bus: Weak<BusInner<E>>) -> Self {
        Subscription { shared, rx, bus }
    }

    /// Receives (waiting if `wait`, until `deadline` if given); during a saturation,
    /// back-pressure or drop episode, one receive in a stride also samples the length
    /// to see the episode end.
    #[inline]
    fn receive(&self, wait: bool, deadline: Option<Instant>) -> Result<E, RecvTimeoutError> {
        self.receive_interruptible(wait, deadline, None)
    }

    /// [`receive`](Self::receive) whose wait also ends, with `Timeout`, when
    /// `interrupt` fires: a pool's idle worker waits here with no deadline and is woken
    /// to stop without polling.
    #[inline]
    pub(crate) fn receive_interruptible(
        &self,
        wait: bool,
        deadline: Option<Instant>,
        interrupt: Option<&Interrupt>,
    ) -> Result<E, RecvTimeoutError> {
        let sample_mask = self.shared.recv_sample_mask();
        let (event, len) = self
            .rx
            .recv_sampled(wait, deadline, sample_mask, interrupt)?;
        if let Some(len) = len {
            self.shared.check_saturation(len);
        }
        Ok(event)
    }

    /// Receives the next event, waiting until one arrives.
    ///
    /// # Errors
    ///
    /// [`RecvError`] once the subscription is removed from the bus (or the bus is
    /// closed or gone) and nothing is left buffered.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_core::bus::{Bus, SubscriptionConfig};
    ///
    /// let bus = Bus::new();
    /// let sub = bus.subscribe(SubscriptionConfig::new("s")).unwrap();
    /// bus.publisher().publish("hello").unwrap();
    /// bus.close();
    /// assert_eq!(sub.recv(), Ok("hello"));
    /// assert!(sub.recv().is_err()); // closed and drained
    /// ```
    #[inline]
    pub fn recv(&self) -> Result<E, RecvError> {
        self.receive(true, None).map_err(|_| RecvError)
    }

    /// Receives an event if one is ready, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] when nothing is ready, [`TryRecvError::Disconnected`]
    /// once the subscription is removed and drained.
    #[inline]
    pub fn try_recv(&self) -> Result<E, TryRecvError> {
        self.receive(false, None).map_err(|e| match e {
            RecvTimeoutError::Timeout => TryRecvError::Empty,
            RecvTimeoutError::Disconnected => TryRecvError::Disconnected,
        })
    }

    /// Receives an event, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] when nothing arrived in time,
    /// [`RecvTimeoutError::Disconnected`] once the subscription is removed and drained.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<E, RecvTimeoutError> {
        self.receive(true, Some(Instant::now() + timeout))
    }

    /// An iterator over the events ready now; it never waits.
    pub fn try_iter(&self) -> impl Iterator<Item = E> + '_ {
        std::iter::from_fn(|| self.try_recv().ok())
    }

    /// Takes this subscription off the bus, as [`Bus::unsubscribe`](super::Bus::unsubscribe)
    /// does: no new event reaches it, it still receives what is buffered, then reports
    /// disconnection. Does nothing if it is already off.
    ///
    /// ```
    /// use pipeline_core::bus::{Bus, SubscriptionConfig};
    ///
    /// let bus = Bus::new();
    /// let sub = bus.subscribe(SubscriptionConfig::new("s")).unwrap();
    /// let publisher = bus.publisher();
    /// publisher.publish(1).unwrap();
    /// sub.unsubscribe();
    /// publisher.publish(2).unwrap(); // no longer for "s"
    /// assert_eq!(sub.recv(), Ok(1));
    /// assert!(sub.recv().is_err());
    /// ```
    pub fn unsubscribe(&self) {
        if let Some(bus) = self.bus.upgrade() {
            let id = self.shared.id;
            bus.remove(|route| route.shared.id == id);
        }
    }

    /// The subscription's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Events buffered now.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The capacity in force.
    pub fn capacity(&self) -> usize {
        self.shared.capacity()
    }

    /// The subscription's gauges and counters, as in [`Bus::snapshot`](super::Bus::snapshot).
    pub fn stats(&self) -> SubscriptionSnapshot {
        self.shared.snapshot(self.rx.stats())
    }
}

impl<E> Drop for Subscription<E> {
    fn drop(&mut self) {
        self.unsubscribe();
    }
}

impl<E> fmt::Debug for Subscription<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}
