//! [`Subscription`]: the receiving end of one subscription.

use super::route::SubShared;
use super::router::BusInner;
use super::snapshot::SubscriptionSnapshot;
use crate::channel::{
    Interrupt, Receiver, RecvError, RecvFuture, RecvStream, RecvTimeoutError, TryRecvError,
};
use futures_core::{FusedStream, Stream};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
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

    /// Receives the next event from async code, waiting as a task (not a thread)
    /// until one arrives: the async [`recv`](Self::recv).
    ///
    /// **Cancellation**: dropping the future before it completes never loses an
    /// event; an event is taken from the buffer only in the poll that returns it.
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
    /// # use futures::executor::block_on;
    ///
    /// let bus = Bus::new();
    /// let sub = bus.subscribe(SubscriptionConfig::new("s")).unwrap();
    /// let publisher = bus.publisher();
    /// std::thread::spawn(move || publisher.publish("hello").unwrap());
    /// block_on(async {
    ///     assert_eq!(sub.recv_async().await, Ok("hello"));
    ///     bus.close();
    ///     assert!(sub.recv_async().await.is_err()); // closed and drained
    /// });
    /// ```
    pub fn recv_async(&self) -> SubscriptionRecv<'_, E> {
        SubscriptionRecv {
            shared: &self.shared,
            inner: self.rx.recv_async(),
            rx: &self.rx,
        }
    }

    /// A [`Stream`] of the events received, ending once the subscription is removed
    /// (or the bus closed or gone) and drained: the async
    /// [`try_iter`](Self::try_iter) that waits. Dropping it between items loses
    /// nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::StreamExt;
    /// use pipeline_core::bus::{Bus, SubscriptionConfig};
    /// # use futures::executor::block_on;
    ///
    /// let bus = Bus::new();
    /// let sub = bus.subscribe(SubscriptionConfig::new("s").capacity(2)).unwrap();
    /// let publisher = bus.publisher();
    /// let producer = std::thread::spawn(move || {
    ///     (0..5).for_each(|i| publisher.publish(i).unwrap());
    ///     bus.close(); // ends the stream once drained
    /// });
    /// let got: Vec<i32> = block_on(sub.stream().collect());
    /// producer.join().unwrap();
    /// assert_eq!(got, [0, 1, 2, 3, 4]);
    /// ```
    pub fn stream(&self) -> SubscriptionStream<'_, E> {
        SubscriptionStream {
            shared: &self.shared,
            inner: self.rx.stream(),
            rx: &self.rx,
        }
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

    /// The name of the bus it is on (the `pipeline` label of its metrics, and of a
    /// pool's that runs on it).
    pub fn bus_name(&self) -> &str {
        self.shared.pipeline()
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

/// After an async receive: during an episode (saturation, back pressure, drops) the
/// length is checked, so the episode's end is seen. Async receives check every time
/// (a task has no per-thread stride); outside an episode they pay one load.
fn after_async_receive<E>(shared: &SubShared, rx: &Receiver<E>) {
    if shared.recv_sample_mask().is_some() {
        shared.check_saturation(rx.len());
    }
}

/// The future of [`Subscription::recv_async`].
#[must_use = "futures do nothing unless polled"]
pub struct SubscriptionRecv<'a, E> {
    shared: &'a SubShared,
    inner: RecvFuture<'a, E>,
    rx: &'a Receiver<E>,
}

impl<E> Future for SubscriptionRecv<'_, E> {
    type Output = Result<E, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll(cx);
        if let Poll::Ready(Ok(_)) = &polled {
            after_async_receive(this.shared, this.rx);
        }
        polled
    }
}

/// The stream of [`Subscription::stream`].
#[must_use = "streams do nothing unless polled"]
pub struct SubscriptionStream<'a, E> {
    shared: &'a SubShared,
    inner: RecvStream<'a, E>,
    rx: &'a Receiver<E>,
}

impl<E> Stream for SubscriptionStream<'_, E> {
    type Item = E;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<E>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_next(cx);
        if let Poll::Ready(Some(_)) = &polled {
            after_async_receive(this.shared, this.rx);
        }
        polled
    }
}

impl<E> FusedStream for SubscriptionStream<'_, E> {
    fn is_terminated(&self) -> bool {
        self.inner.is_terminated()
    }
}

impl<E> fmt::Debug for SubscriptionRecv<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("SubscriptionRecv { .. }")
    }
}

impl<E> fmt::Debug for SubscriptionStream<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("SubscriptionStream { .. }")
    }
}

impl<E> fmt::Debug for Subscription<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}
