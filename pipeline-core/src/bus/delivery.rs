//! An event's way through a publish, read top to bottom:
//!
//! 1. [`Matches::of`]: which subscriptions the event matches, each with its policy as
//!    read once, and the order they get it in ([`Matches::order`]: `Block` first, then
//!    `DropNewest`, then `DropOldest`, each in subscription order).
//! 2. [`deliver`] (blocking publishes) walks that order; `PublishFuture` (in
//!    `publish_async.rs`) walks the same order as a task.
//! 3. [`deliver_now`]: one delivery that never waits, under its subscription's policy:
//!    `Block` tries once, `DropNewest` drops, `DropOldest` evicts.
//! 4. [`wait_for_room`]: a `Block` subscription was full; what the publish's [`Wait`]
//!    and whether it is committed make of that: refuse, wait with a deadline, or wait.
//! 5. [`refused`]: the `PublishError` a refusal becomes.
//!
//! `Publisher` (admission, the rate limit, the fast path) calls in from above; `Route`
//! (the channel's send primitives and the subscription's counters) is called from
//! here and decides nothing about policy.

use super::error::PublishError;
use super::route::Route;
use super::router::{BusCounters, BusInner, FanOut};
use crate::overflow::OverflowPolicy;
use crate::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// How long a publish may wait: for room in a `Block` subscription, and for a
/// rate-limit token.
#[derive(Clone, Copy)]
pub(crate) enum Wait {
    Never,
    /// A deadline on the bus clock.
    Until(Instant),
    Forever,
}

/// DropOldest evicts at most this many events for one publish; if other publishers
/// keep taking the freed slot, the new event is dropped instead (as DropNewest).
const EVICT_TRIES: usize = 8;

/// The subscriptions one event matches, by the policy each had when it matched.
pub(crate) struct Matches {
    block: Indexes,
    drop_newest: Indexes,
    drop_oldest: Indexes,
}

impl Matches {
    /// Runs the filters over `routes` once, reading each match's policy.
    #[inline(always)]
    pub(crate) fn of<E>(routes: &[Arc<Route<E>>], event: &E) -> Self {
        let mut matches = Matches {
            block: Indexes::new(routes.len()),
            drop_newest: Indexes::new(routes.len()),
            drop_oldest: Indexes::new(routes.len()),
        };
        for (i, route) in routes.iter().enumerate() {
            if route.matches(event) {
                match route.shared.policy() {
                    OverflowPolicy::Block => matches.block.insert(i),
                    OverflowPolicy::DropNewest => matches.drop_newest.insert(i),
                    OverflowPolicy::DropOldest => matches.drop_oldest.insert(i),
                }
            }
        }
        matches
    }

    /// How many subscriptions match.
    #[inline]
    pub(crate) fn count(&self) -> usize {
        self.block.count() + self.drop_newest.count() + self.drop_oldest.count()
    }

    /// The matching routes in delivery order, with their policies.
    #[inline(always)]
    pub(crate) fn order(&self) -> impl Iterator<Item = (usize, OverflowPolicy)> + '_ {
        self.block
            .iter()
            .map(|i| (i, OverflowPolicy::Block))
            .chain(
                self.drop_newest
                    .iter()
                    .map(|i| (i, OverflowPolicy::DropNewest)),
            )
            .chain(
                self.drop_oldest
                    .iter()
                    .map(|i| (i, OverflowPolicy::DropOldest)),
            )
    }

    /// The last route in delivery order: the one that gets the event itself.
    #[inline]
    pub(crate) fn last(&self) -> Option<(usize, OverflowPolicy)> {
        let tag = |policy| move |i| (i, policy);
        (self.drop_oldest.last().map(tag(OverflowPolicy::DropOldest)))
            .or_else(|| self.drop_newest.last().map(tag(OverflowPolicy::DropNewest)))
            .or_else(|| self.block.last().map(tag(OverflowPolicy::Block)))
    }

    /// All or none: with more than one matching `Block` route, the first of them that
    /// is full (counted as found full), looked for before anything is delivered.
    /// `precise` checks every one; otherwise only a buffer in a saturation or
    /// back-pressure episode gets the exact look (which takes the channel's lock).
    #[inline]
    pub(crate) fn full_block<E>(&self, routes: &[Arc<Route<E>>], precise: bool) -> Option<usize> {
        if self.block.count() < 2 {
            return None;
        }
        let full = self.block.iter().find(|&i| {
            let route = &routes[i];
            (precise || route.shared.may_be_full()) && route.tx.is_full()
        })?;
        routes[full].shared.found_full();
        Some(full)
    }
}

/// [`deliver_many`], as the bus stores it.
pub(crate) type DeliverMany<E> =
    fn(&BusInner<E>, &[Arc<Route<E>>], E, Wait, u64) -> Result<(), PublishError<E>>;

/// What a bus from `BusBuilder::build` fans out with.
pub(super) fn fan_out<E: Clone + Send + 'static>() -> FanOut<E> {
    FanOut {
        clone: E::clone,
        deliver_many: deliver_many::<E>,
    }
}

/// Delivers `event` to every matching route, in the order and under the rule set out
/// on `Publisher`, waiting as `wait` allows. `tick` is the publishing thread's
/// publish count, this publish included (see [`deliver_now`]).
#[inline]
pub(crate) fn deliver<E>(
    inner: &BusInner<E>,
    routes: &[Arc<Route<E>>],
    event: E,
    wait: Wait,
    tick: u64,
) -> Result<(), PublishError<E>> {
    // The common case, one subscription: no order to work out, no clone.
    if let [route] = routes {
        if !route.matches(&event) {
            inner.counters.unmatched.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let policy = route.shared.policy();
        return deliver_one(inner, route, policy, event, wait, tick, false)
            .map_err(|(why, event)| refused(&inner.counters, why, event, route));
    }
    match inner.deliver_many() {
        Some(deliver_many) => deliver_many(inner, routes, event, wait, tick),
        // A bus from `build_single` has one route or none.
        None => {
            debug_assert!(routes.is_empty());
            inner.counters.unmatched.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }
}

/// [`deliver`] for any number of routes but one; `E::clone` makes the copies.
#[inline(never)]
fn deliver_many<E: Clone>(
    inner: &BusInner<E>,
    routes: &[Arc<Route<E>>],
    event: E,
    wait: Wait,
    tick: u64,
) -> Result<(), PublishError<E>> {
    let counters = &inner.counters;
    let matches = Matches::of(routes, &event);
    let Some(last) = matches.last() else {
        counters.unmatched.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    };
    if matches!(wait, Wait::Never) {
        // All or none: look before delivering anywhere (see `try_publish`).
        if let Some(full) = matches.full_block(routes, true) {
            return Err(refused(counters, Refused::Full, event, &routes[full]));
        }
    }
    let mut committed = false;
    for (i, policy) in matches.order() {
        if (i, policy) == last {
            break;
        }
        let copy = event.clone();
        if let Err((why, _copy)) =
            deliver_one(inner, &routes[i], policy, copy, wait, tick, committed)
        {
            // Nothing was delivered yet: hand back the original.
            return Err(refused(counters, why, event, &routes[i]));
        }
        committed = true;
    }
    let (i, policy) = last;
    deliver_one(inner, &routes[i], policy, event, wait, tick, committed)
        .map_err(|(why, event)| refused(counters, why, event, &routes[i]))
}

/// Delivers to one route, waiting for room in a full `Block` route as `wait` allows.
/// Only a `Block` route that is the first to get the event (`!committed`) may refuse.
#[inline(always)]
fn deliver_one<E>(
    inner: &BusInner<E>,
    route: &Route<E>,
    policy: OverflowPolicy,
    event: E,
    wait: Wait,
    tick: u64,
    committed: bool,
) -> Result<(), (Refused, E)> {
    match deliver_now(route, policy, event, tick) {
        Ok(()) => Ok(()),
        Err(event) => wait_for_room(inner, route, event, wait, committed),
    }
}

/// One delivery that never waits, under `policy`:
/// - `Block`: one try; `Err` hands the event back when the buffer is full (counted
///   as found full).
/// - `DropNewest`: delivered if there is room, else dropped and counted.
/// - `DropOldest`: while full, the oldest buffered event is evicted (counted) and the
///   delivery tried again, at most [`EVICT_TRIES`] times; then dropped as DropNewest.
///
/// A subscription that is gone counts as delivered: the event is no longer its.
/// `tick` picks the deliveries that sample the length (see `Route::try_send`).
#[inline(always)]
pub(crate) fn deliver_now<E>(
    route: &Route<E>,
    policy: OverflowPolicy,
    event: E,
    tick: u64,
) -> Result<(), E> {
    match policy {
        OverflowPolicy::Block => match route.try_send(event, tick) {
            Ok(()) => Ok(()),
            Err(event) => {
                route.shared.found_full();
                Err(event)
            }
        },
        OverflowPolicy::DropNewest => {
            if route.try_send(event, tick).is_err() {
                route.shared.dropped(OverflowPolicy::DropNewest);
            }
            Ok(())
        }
        OverflowPolicy::DropOldest => {
            drop_oldest(route, event, tick);
            Ok(())
        }
    }
}

/// `DropOldest`'s delivery (see [`deliver_now`]).
fn drop_oldest<E>(route: &Route<E>, mut event: E, tick: u64) {
    for attempt in 0..=EVICT_TRIES {
        match route.try_send(event, tick) {
            Ok(()) => return,
            Err(back) => event = back,
        }
        if attempt == EVICT_TRIES {
            break;
        }
        match route.evict_oldest() {
            Some(true) => route.shared.dropped(OverflowPolicy::DropOldest),
            Some(false) => {}
            None => return, // unsubscribed meanwhile
        }
    }
    route.shared.dropped(OverflowPolicy::DropNewest);
}

/// Why a delivery did not happen.
pub(crate) enum Refused {
    Full,
    Timeout,
}

/// A `Block` route was found full (and counted so): refuses, or waits for room as
/// `wait` allows. Once the publish is `committed` (another route has the event) it
/// waits without limit, whatever `wait` says: a publish is never partial.
#[cold]
pub(crate) fn wait_for_room<E>(
    inner: &BusInner<E>,
    route: &Route<E>,
    event: E,
    wait: Wait,
    committed: bool,
) -> Result<(), (Refused, E)> {
    match wait {
        Wait::Never if !committed => Err((Refused::Full, event)),
        Wait::Until(deadline) if !committed => {
            let timeout = deadline.saturating_duration_since(inner.limiter.clock().now());
            route
                .send_timeout(event, timeout)
                .map_err(|event| (Refused::Timeout, event))
        }
        _ => {
            if matches!(wait, Wait::Never) {
                route.shared.count_try_publish_wait();
            }
            route.send(event);
            Ok(())
        }
    }
}

/// The error for `route`'s refusal (counted here if it was full); it names the
/// subscription with a clone of its `Arc`, so the refusal allocates nothing.
pub(crate) fn refused<E>(
    counters: &BusCounters,
    why: Refused,
    event: E,
    route: &Route<E>,
) -> PublishError<E> {
    let subscription = route.shared.name.clone();
    match why {
        Refused::Full => {
            counters.rejected_full.fetch_add(1, Ordering::Relaxed);
            PublishError::Full {
                event,
                subscription,
            }
        }
        Refused::Timeout => PublishError::Timeout {
            event,
            subscription: Some(subscription),
        },
    }
}

/// A set of subscription indexes; no allocation up to 64 subscriptions.
enum Indexes {
    Inline(u64),
    Heap(Vec<u64>),
}

impl Indexes {
    #[inline]
    fn new(len: usize) -> Self {
        if len <= 64 {
            Indexes::Inline(0)
        } else {
            Indexes::Heap(vec![0; len.div_ceil(64)])
        }
    }

    #[inline]
    fn words(&self) -> &[u64] {
        match self {
            Indexes::Inline(word) => std::slice::from_ref(word),
            Indexes::Heap(words) => words,
        }
    }

    #[inline]
    fn insert(&mut self, index: usize) {
        let words = match self {
            Indexes::Inline(word) => std::slice::from_mut(word),
            Indexes::Heap(words) => words,
        };
        words[index / 64] |= 1 << (index % 64);
    }

    #[inline]
    fn count(&self) -> usize {
        self.words().iter().map(|w| w.count_ones() as usize).sum()
    }

    #[inline]
    fn last(&self) -> Option<usize> {
        let words = self.words();
        (0..words.len())
            .rev()
            .find(|&i| words[i] != 0)
            .map(|i| i * 64 + 63 - words[i].leading_zeros() as usize)
    }

    #[inline]
    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words().iter().enumerate().flat_map(|(i, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                (rest != 0).then(|| {
                    let bit = rest.trailing_zeros() as usize;
                    rest &= rest - 1;
                    i * 64 + bit
                })
            })
        })
    }
}

#[cfg(all(test, not(pipeline_loom)))]
mod tests {
    use super::Indexes;

    #[test]
    fn indexes_inline_and_heap() {
        for len in [1, 64, 65, 200] {
            let mut set = Indexes::new(len);
            assert_eq!(set.last(), None);
            let picks: Vec<usize> = [0, 3, 63, 64, 130, 199]
                .into_iter()
                .filter(|&i| i < len)
                .collect();
            picks.iter().for_each(|&i| set.insert(i));
            assert_eq!(set.iter().collect::<Vec<_>>(), picks, "len {len}");
            assert_eq!(set.count(), picks.len());
            assert_eq!(set.last(), picks.last().copied());
        }
    }
}
