//! [`Publisher::publish_async`]: `publish` for async code, waiting as a task.
//!
//! The first poll runs the same code as a synchronous publish up to the point where
//! that would wait: a publish that needs no wait costs what `publish` costs. A wait
//! for a rate-limit token is a timer ([`Clock::sleep_async`](crate::clock::Clock)); a
//! wait for room is the channel's `send_async` on the one subscription found full.
//! Between polls the future holds counted references to the routes it still has to
//! deliver to, never a hazard-protected read of the route list (a hazard belongs to
//! a thread, and a task may move between threads at every `Pending`).
//!
//! The decisions about each delivery (the order, the policies, all or none) are
//! `delivery.rs`'s, shared with the blocking publish; what is here is the waiting.

use super::delivery::{Matches, deliver_now};
use super::error::PublishError;
use super::finisher;
use super::publisher::Publisher;
use super::route::{Plain, Route};
use super::router::{BusInner, PUBLISHED};
use crate::channel::SendError;
use crate::hazard::Slot;
use crate::overflow::OverflowPolicy;
use crate::sync::atomic::Ordering;
use std::fmt;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

impl<E: Send + 'static> Publisher<E> {
    /// Publishes `event` from async code: [`publish`](Self::publish) that waits as a
    /// task, never blocking a thread.
    ///
    /// It has `publish`'s semantics: it waits for a rate-limit token (on a timer of
    /// the bus [`clock`](super::BusBuilder::clock)) and for room in every matching
    /// `Block` subscription (woken by a receive, or by a [`Bus::resize`] that makes
    /// room), fails only with [`PublishError::Closed`], and is never partial. With
    /// several matching `Block` subscriptions it first looks, before delivering
    /// anywhere, at each one in a saturation or back-pressure episode (the others are
    /// far from full: one load each), and if one of those is full, waits for room there
    /// first; then it delivers to that one and to the others in order.
    ///
    /// When no wait is needed, the first poll completes it, running the code of
    /// `publish`.
    ///
    /// # Cancellation
    ///
    /// Dropping the future before it completes:
    /// - **before the event reached any subscription** (waiting for a token, or for
    ///   room in the `Block` subscription it found full first): nothing is delivered
    ///   anywhere, and the event is dropped with the future, as with tokio's
    ///   `mpsc::Sender::send`. This is the only kind of wait with one matching `Block`
    ///   subscription.
    /// - **after the event reached a subscription** (with several matching `Block`
    ///   subscriptions, one is found full only after another got the event: another
    ///   publisher filled it since the look above, say while this one waited for room
    ///   elsewhere): the publish is *completed*, never left partial. The
    ///   deliveries that need no wait are made at once, in the drop; one that must
    ///   wait for room is handed to the bus's finisher, one background thread for the
    ///   whole process that waits for room as a task (the same wakers, no polling, no
    ///   thread per wait) and delivers. Such a completion is counted in
    ///   [`BusSnapshot::completed_after_cancel`](super::BusSnapshot::completed_after_cancel)
    ///   (and in `published`) when it is done. Its event may reach the subscription
    ///   it waited for after events this publisher publishes later. If that
    ///   subscription goes away (unsubscribed, or the bus closed) before it has room,
    ///   the wait ends, as it would for `publish`.
    ///
    /// A wait for room that ends because the bus was [closed](super::Bus::close) while
    /// nothing had been delivered returns `Closed` with the event. (The subscription
    /// it waited for being removed alone counts as a delivery, as for `publish`.)
    ///
    /// # Errors
    ///
    /// [`PublishError::Closed`] after [`Bus::close`](super::Bus::close), with the event;
    /// no subscription received it.
    ///
    /// # Panics
    ///
    /// If the future is polled again after it completed.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_core::bus::{Bus, SubscriptionConfig};
    /// # use futures::executor::block_on;
    ///
    /// let bus = Bus::<u32>::new();
    /// let sub = bus.subscribe(SubscriptionConfig::new("s").capacity(1)).unwrap();
    /// let publisher = bus.publisher();
    /// let consumer = std::thread::spawn(move || {
    ///     std::iter::from_fn(|| sub.recv().ok()).collect::<Vec<u32>>()
    /// });
    /// block_on(async {
    ///     for n in 0..10 {
    ///         publisher.publish_async(n).await.unwrap(); // waits as a task while full
    ///     }
    /// });
    /// bus.close();
    /// assert_eq!(consumer.join().unwrap(), (0..10).collect::<Vec<_>>());
    /// ```
    ///
    /// [`Bus::resize`]: super::Bus::resize
    pub fn publish_async(&self, event: E) -> PublishFuture<'_, E> {
        PublishFuture {
            inner: &self.inner,
            state: ManuallyDrop::new(State::Start(event)),
        }
    }
}

type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;
type SendWait<E> = Pin<Box<dyn Future<Output = Result<(), SendError<E>>> + Send>>;

/// The future of [`Publisher::publish_async`]: `Send` when `E` is, `Unpin`.
///
/// Output: `Result<(), PublishError<E>>`; see `publish_async` for what it waits for
/// and for what dropping it before it completes delivers.
#[must_use = "futures do nothing unless polled"]
pub struct PublishFuture<'a, E: Send + 'static> {
    inner: &'a Arc<BusInner<E>>,
    /// Dropped by `Drop`, which takes it out first (so a completed future, whose
    /// state is `Done`, has no drop glue to call).
    state: ManuallyDrop<State<E>>,
}

/// Small, so that creating, polling and dropping a future that completes at once
/// costs little: the waits live in boxes.
enum State<E> {
    /// Not polled yet.
    Start(E),
    /// No rate-limit token yet (counted as rate limited once).
    Token(Box<TokenWait<E>>),
    /// Routed; waiting for room in a `Block` subscription.
    Deliver(Box<Delivery<E>>),
    /// Completed (or being polled).
    Done,
}

struct TokenWait<E> {
    event: E,
    /// How long until the limiter has a token, as it last said.
    retry_after: Duration,
    /// The sleep for `retry_after`, once started.
    sleep: Option<Sleep>,
}

// Nothing is pinned: the event moves in and out by value, the waits are boxed.
impl<E: Send + 'static> Unpin for PublishFuture<'_, E> {}

impl<E: Send + 'static> Future for PublishFuture<'_, E> {
    type Output = Result<(), PublishError<E>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // The first poll of a publish that needs no wait: what `publish` does.
        if let State::Start(_) = *this.state {
            let inner = &**this.inner;
            let State::Start(event) = std::mem::replace(&mut *this.state, State::Done) else {
                unreachable!("just matched");
            };
            match inner.limiter.acquire() {
                Ok(()) => match first_attempt(inner, event) {
                    Attempt::Ready(result) => return Poll::Ready(result),
                    Attempt::Wait(delivery) => *this.state = State::Deliver(delivery),
                },
                Err(retry_after) => {
                    inner.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                    let wait = TokenWait {
                        event,
                        retry_after,
                        sleep: None,
                    };
                    *this.state = State::Token(Box::new(wait));
                }
            }
        }
        this.poll_wait(cx)
    }
}

impl<E: Send + 'static> PublishFuture<'_, E> {
    /// Every poll but a first one that completes: the waits.
    #[inline(never)]
    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PublishError<E>>> {
        let this = self;
        let inner = &**this.inner;
        loop {
            let event = match std::mem::replace(&mut *this.state, State::Done) {
                State::Start(_) => unreachable!("a first poll starts in `poll`"),
                State::Token(mut wait) => {
                    if wait.sleep.is_none() {
                        // As the blocking wait does: no sleep on a closed bus.
                        if is_closed(inner) {
                            return Poll::Ready(Err(PublishError::Closed(wait.event)));
                        }
                    }
                    let retry_after = wait.retry_after;
                    let clock = inner.limiter.clock();
                    let sleep = wait
                        .sleep
                        .get_or_insert_with(|| clock.sleep_async(retry_after));
                    if sleep.as_mut().poll(cx).is_pending() {
                        *this.state = State::Token(wait);
                        return Poll::Pending;
                    }
                    // As the blocking wait does: the bus may have closed while we slept.
                    if is_closed(inner) {
                        return Poll::Ready(Err(PublishError::Closed(wait.event)));
                    }
                    match inner.limiter.acquire() {
                        Ok(()) => wait.event,
                        Err(retry_after) => {
                            wait.retry_after = retry_after;
                            wait.sleep = None;
                            *this.state = State::Token(wait);
                            continue;
                        }
                    }
                }
                State::Deliver(mut delivery) => {
                    let closed = || is_closed(inner);
                    return match delivery.poll(cx, &closed) {
                        Poll::Pending => {
                            *this.state = State::Deliver(delivery);
                            Poll::Pending
                        }
                        Poll::Ready(result) => {
                            if result.is_ok() {
                                inner.registry.slot().add(PUBLISHED, 1);
                            }
                            Poll::Ready(result)
                        }
                    };
                }
                State::Done => panic!("`PublishFuture` polled after it completed"),
            };
            // A token is ours: route the event, as `publish` would.
            match first_attempt(inner, event) {
                Attempt::Ready(result) => return Poll::Ready(result),
                Attempt::Wait(delivery) => *this.state = State::Deliver(delivery),
            }
        }
    }
}

impl<E: Send + 'static> Drop for PublishFuture<'_, E> {
    #[inline]
    fn drop(&mut self) {
        // A completed future (the common case) has nothing to do.
        if !matches!(*self.state, State::Done) {
            self.cancel();
        }
    }
}

impl<E: Send + 'static> PublishFuture<'_, E> {
    /// Whether the event has reached a subscription while the publish is still
    /// waiting (for room in another `Block` subscription): the publish is then
    /// committed, and dropping the future completes it instead of handing nothing to
    /// the bus (see [`Publisher::publish_async`]). `false` before the first poll, while
    /// waiting for a token or for room before any delivery, and once completed.
    ///
    /// A caller that gives up on a wait (a timeout) and reports what it published uses
    /// this to stay exact: a committed event counts as published.
    ///
    /// ```
    /// use pipeline_core::bus::{Bus, SubscriptionConfig};
    /// use std::future::Future;
    /// use std::pin::Pin;
    /// use std::task::{Context, Waker};
    ///
    /// let bus = Bus::new();
    /// let sub = bus.subscribe(SubscriptionConfig::new("s").capacity(1)).unwrap();
    /// let publisher = bus.publisher();
    /// publisher.publish(1).unwrap();
    /// let mut publish = publisher.publish_async(2);
    /// let mut cx = Context::from_waker(Waker::noop());
    /// // One subscription, full: the future waits before any delivery.
    /// assert!(Pin::new(&mut publish).poll(&mut cx).is_pending());
    /// assert!(!publish.is_committed());
    /// drop(publish); // hands nothing to the bus
    /// assert_eq!(sub.try_iter().collect::<Vec<_>>(), [1]);
    /// ```
    pub fn is_committed(&self) -> bool {
        matches!(&*self.state, State::Deliver(delivery) if delivery.committed)
    }

    /// Dropped before it completed.
    #[cold]
    #[inline(never)]
    fn cancel(&mut self) {
        match std::mem::replace(&mut *self.state, State::Done) {
            State::Deliver(delivery) if delivery.committed => {
                delivery.complete_after_cancel(self.inner);
            }
            // Nothing was delivered: the event goes with the future.
            state => drop(state),
        }
    }
}

fn is_closed<E>(inner: &BusInner<E>) -> bool {
    inner.routes.load_full().closed
}

/// What the first attempt (with a token) did.
enum Attempt<E> {
    Ready(Result<(), PublishError<E>>),
    Wait(Box<Delivery<E>>),
}

/// `Publisher::publish_with` up to its first wait: the sticky fast path for one plain
/// subscription, else the general path under a guarded read. Counts a success in
/// this thread's slot.
#[inline]
fn first_attempt<E: Send + 'static>(inner: &BusInner<E>, event: E) -> Attempt<E> {
    let slot = inner.registry.slot();
    let tick = slot.peek(PUBLISHED).wrapping_add(1);
    // SAFETY: as in `Publisher::publish_with`: `routes` and `route` are last used in
    // `try_deliver_plain` and the clone below, and until then only this crate's code
    // runs, so this thread makes no other sticky read of the list while they live.
    let routes = unsafe { inner.routes.read_sticky(&inner.registry, slot) };
    let event = match &routes.list[..] {
        [route] if routes.plain_lone => match route.try_deliver_plain(event, tick) {
            Plain::Done => {
                slot.add(PUBLISHED, 1);
                return Attempt::Ready(Ok(()));
            }
            Plain::Edge(shared, edge, len) => {
                slot.add(PUBLISHED, 1);
                shared.raise_edge(edge, len);
                return Attempt::Ready(Ok(()));
            }
            Plain::Full(event) => {
                // Counted as full by the channel; the wait is on a reference of our own
                // (the signal runs user code, which may publish and move the hazard).
                let route = Arc::clone(route);
                route.shared.found_full();
                let plan = vec![(route, OverflowPolicy::Block)];
                return Attempt::Wait(Delivery::wait(inner, plan, event, None, tick, false));
            }
            Plain::Elsewhere(event) => event,
        },
        _ => event,
    };
    first_attempt_guarded(inner, event, slot, tick)
}

#[inline(never)]
fn first_attempt_guarded<E: Send + 'static>(
    inner: &BusInner<E>,
    event: E,
    slot: &Slot,
    tick: u64,
) -> Attempt<E> {
    let routes = inner.routes.enter(&inner.registry, slot);
    if routes.closed {
        return Attempt::Ready(Err(PublishError::Closed(event)));
    }
    let attempt = route_event(inner, &routes.list, event, tick);
    drop(routes);
    if let Attempt::Ready(Ok(())) = attempt {
        slot.add(PUBLISHED, 1);
    }
    attempt
}

/// Delivers `event` to every matching route in the order set out on `Publisher`, all
/// or nothing when several are `Block`, up to the first that must wait.
fn route_event<E: Send + 'static>(
    inner: &BusInner<E>,
    routes: &[Arc<Route<E>>],
    event: E,
    tick: u64,
) -> Attempt<E> {
    let matches = Matches::of(routes, &event);
    let matched = matches.count();
    if matched == 0 {
        inner.counters.unmatched.fetch_add(1, Ordering::Relaxed);
        return Attempt::Ready(Ok(()));
    }
    let owned = |(i, policy): (usize, OverflowPolicy)| (Arc::clone(&routes[i]), policy);

    // All or none: look before delivering anywhere. A full one is waited for first,
    // while nothing is delivered, then the others follow in order. Only a buffer in a
    // saturation or back-pressure episode is worth the exact look: one that is not is
    // far from full.
    if let Some(full) = matches.full_block(routes, false) {
        let plan = std::iter::once((full, OverflowPolicy::Block))
            .chain(matches.order().filter(|&(i, _)| i != full))
            .map(owned)
            .collect();
        return Attempt::Wait(Delivery::wait(inner, plan, event, None, tick, false));
    }

    let mut order = matches.order();
    let mut event = Some(event);
    let mut left = matched;
    let mut committed = false;
    while let Some((i, policy)) = order.next() {
        left -= 1;
        let value = match left {
            0 => event.take().expect("the event is kept for the last route"),
            _ => inner.fan_out(
                event
                    .as_ref()
                    .expect("the event is kept for the last route"),
            ),
        };
        match deliver_now(&routes[i], policy, value, tick) {
            Ok(()) => committed = true,
            Err(back) => {
                // A `Block` route that was found full: wait for room there, then go on.
                let plan = std::iter::once((i, policy))
                    .chain(order)
                    .map(owned)
                    .collect();
                // `back` is the event itself if this was the last route, else a copy.
                let (event, copy) = match event {
                    Some(event) => (event, Some(back)),
                    None => (back, None),
                };
                return Attempt::Wait(Delivery::wait(inner, plan, event, copy, tick, committed));
            }
        }
    }
    Attempt::Ready(Ok(()))
}

/// A publish that is routed and waits for room: what it still has to deliver, and
/// the wait in progress. Holds counted references to its routes only.
struct Delivery<E> {
    /// The matching routes not yet served are `plan[next..]`, in delivery order;
    /// while `wait` is set, `plan[next]` is the `Block` route it waits on.
    plan: Vec<(Arc<Route<E>>, OverflowPolicy)>,
    next: usize,
    /// The event, while a route after the wait (or, once committed, the waited one
    /// itself, should the future be dropped) still needs it: the wait then holds a
    /// copy. `None` only while the wait holds the event itself.
    event: Option<E>,
    /// The send into `plan[next]` and the size of what it sends.
    wait: Option<(SendWait<E>, Option<usize>)>,
    /// Whether some subscription has the event (or one of its copies): from then on
    /// the publish can no longer fail, and a cancellation completes it.
    committed: bool,
    tick: u64,
    /// `E::clone`, if the bus has it.
    fan_out: Option<fn(&E) -> E>,
}

impl<E: Send + 'static> Delivery<E> {
    /// Waits on `plan[0]`. `copy` is a copy of `event` made for `plan[0]`, if there is
    /// one. Before anything is delivered (`committed` false), the wait without a copy
    /// takes a fresh one when more routes follow, else the event itself (dropped with
    /// the future on a cancellation: nothing was delivered). After some other route
    /// has the event (`committed`), the wait always sends a copy, so the event stays
    /// here for a completion after a cancellation.
    fn wait(
        inner: &BusInner<E>,
        plan: Vec<(Arc<Route<E>>, OverflowPolicy)>,
        event: E,
        copy: Option<E>,
        tick: u64,
        committed: bool,
    ) -> Box<Self> {
        let mut delivery = Box::new(Delivery {
            plan,
            next: 0,
            event: Some(event),
            wait: None,
            committed,
            tick,
            fan_out: inner.fan_out_fn(),
        });
        delivery.start_wait(copy);
        delivery
    }

    fn copy(&self) -> E {
        let event = self.event.as_ref().expect("the event is kept while needed");
        match self.fan_out {
            Some(clone) => clone(event),
            None => unreachable!("a bus from build_single holds one subscription at a time"),
        }
    }

    /// Starts the send into `plan[next]`, of `copy` if given, else of what the rule
    /// on `event` asks for.
    fn start_wait(&mut self, copy: Option<E>) {
        let last = self.next + 1 == self.plan.len();
        let value = match copy {
            Some(copy) => copy,
            None if last && !self.committed => self.event.take().expect("the event is here"),
            None => self.copy(),
        };
        let route = Arc::clone(&self.plan[self.next].0);
        let size = route.size_of(&value);
        let send: SendWait<E> = Box::pin(async move { route.tx.send_async(value).await });
        self.wait = Some((send, size));
    }

    /// Finishes the wait in progress, then delivers to the rest, waiting again where
    /// a `Block` route is full. `closed` says whether the bus is closed.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        closed: &dyn Fn() -> bool,
    ) -> Poll<Result<(), PublishError<E>>> {
        loop {
            if let Some((send, size)) = &mut self.wait {
                let sent = ready!(send.as_mut().poll(cx));
                let size = *size;
                self.wait = None;
                let route = &self.plan[self.next].0;
                match sent {
                    Ok(()) => {
                        // The buffer was full: an edge is near, so sample the length.
                        route.delivered(size, Some(route.tx.len()));
                        self.committed = true;
                    }
                    // The subscription went away while we waited: unsubscribed, or
                    // the bus closed. Before any delivery, a close hands the event
                    // back; otherwise, as for `publish`, a gone subscription counts as
                    // served (the event is no longer its).
                    Err(SendError(back)) => {
                        if !self.committed && closed() {
                            let event = self.event.take().unwrap_or(back);
                            return Poll::Ready(Err(PublishError::Closed(event)));
                        }
                    }
                }
                self.next += 1;
            }
            while self.next < self.plan.len() {
                let last = self.next + 1 == self.plan.len();
                let value = if last {
                    self.event
                        .take()
                        .expect("the event is kept for the last route")
                } else {
                    self.copy()
                };
                let (route, policy) = &self.plan[self.next];
                match deliver_now(route, *policy, value, self.tick) {
                    Ok(()) => {
                        self.committed = true;
                        self.next += 1;
                    }
                    Err(back) => {
                        // From the last route `back` is the event itself: put it back
                        // for `start_wait`'s rule; from another it is a copy for it.
                        let copy = if last {
                            self.event = Some(back);
                            None
                        } else {
                            Some(back)
                        };
                        self.start_wait(copy);
                        break;
                    }
                }
            }
            if self.wait.is_none() {
                return Poll::Ready(Ok(()));
            }
        }
    }

    /// The future was dropped after the event reached a subscription: completes the
    /// publish. What needs no wait is done here; the rest goes to the finisher.
    fn complete_after_cancel(mut self: Box<Self>, inner: &Arc<BusInner<E>>) {
        // Dropping the send in progress sends nothing (its copy goes with it); that
        // route is served again below.
        let dropped = self.wait.take();
        debug_assert!(
            dropped.is_none() || self.event.is_some(),
            "a committed wait sends a copy"
        );
        drop(dropped);
        while self.next < self.plan.len() {
            let last = self.next + 1 == self.plan.len();
            let value = if last {
                self.event
                    .take()
                    .expect("the event is kept for the last route")
            } else {
                self.copy()
            };
            let (route, policy) = &self.plan[self.next];
            match deliver_now(route, *policy, value, self.tick) {
                Ok(()) => self.next += 1,
                Err(back) => {
                    let copy = if last {
                        self.event = Some(back);
                        None
                    } else {
                        Some(back)
                    };
                    self.start_wait(copy);
                    let bus = Arc::downgrade(inner);
                    finisher::spawn(Box::pin(finish(self, bus)));
                    return;
                }
            }
        }
        inner
            .counters
            .completed_after_cancel
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// The finisher's task for one cancelled publish: the waits and deliveries left,
/// then the count (if anyone can still read it).
async fn finish<E: Send + 'static>(mut delivery: Box<Delivery<E>>, bus: Weak<BusInner<E>>) {
    // Committed: it cannot fail, so whether the bus is closed does not matter.
    let result = std::future::poll_fn(|cx| delivery.poll(cx, &|| false)).await;
    debug_assert!(result.is_ok(), "a committed publish cannot fail");
    // The event and its routes go before the count: once counted, it is all done.
    drop(delivery);
    if let Some(bus) = bus.upgrade() {
        bus.counters
            .completed_after_cancel
            .fetch_add(1, Ordering::Relaxed);
    }
}

impl<E: Send + 'static> fmt::Debug for PublishFuture<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match *self.state {
            State::Start(_) => "start",
            State::Token(_) => "waiting for a token",
            State::Deliver(_) => "waiting for room",
            State::Done => "done",
        };
        f.debug_struct("PublishFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
