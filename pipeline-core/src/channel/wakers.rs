//! The wakers of async waits: one [`WaitList`] for tasks waiting for a value, one for
//! tasks waiting for room.
//!
//! The sync hot path pays one relaxed load and a predictable branch per operation:
//! after a push (or pop), behind the light fence it already runs to leave its
//! generation, it reads the list's *word*, and only a non-zero word sends it to the
//! slow path. A task that registers pairs with that load the way a resize pairs with
//! hazards (docs/architecture.md, "Async waits"):
//!
//! - **off** (word 0, the state of a channel no task has waited on for a while): the
//!   first registration sets the word to *arming*, runs the heavy fence, then looks
//!   again. Either that look sees the value (or room) the hot path made, or the hot
//!   path's load sees the word and wakes the task. Then the word becomes *armed*.
//! - **armed**: every push (pop) runs a real `fence(SeqCst)` and reads the waiter
//!   count; a registration runs the same fence and looks again. A store-buffering
//!   pair with full fences on both sides: no heavy fence, so a task that waits
//!   once per value (a full channel, a fast producer) does not cost a `membarrier`
//!   per value.
//! - back to **off** once `DISARM_AFTER` notifications in a row found no waiter: the
//!   sync path is free again. Disarming happens under the list's lock and only with
//!   no waiter listed, so a registration either sees *off* (and arms again, with the
//!   heavy fence) or is listed before it (and so blocks the disarm).
//!
//! Waking is wake-all: a notification takes every listed waker and wakes each, with
//! no lock held. A woken future that finds nothing looks again and registers again,
//! so a future dropped after its wake (a cancelled `recv_async`) passes nothing on:
//! everyone else was woken too.

use crate::hazard;
use crate::sync::{
    Mutex,
    atomic::{AtomicUsize, Ordering, fence},
    lock,
};
use crossbeam_utils::CachePadded;
use std::task::Waker;

/// State in the word's low bits; the waiter count in the rest.
const OFF: usize = 0;
const ARMING: usize = 1;
const ARMED: usize = 2;
const STATE: usize = 0b11;
const COUNT_SHIFT: u32 = 2;

/// Notifications in a row that found no waiter before an armed list turns off.
#[cfg(not(pipeline_loom))]
const DISARM_AFTER: usize = 4096;
/// Small under loom, so the models see a disarm.
#[cfg(pipeline_loom)]
const DISARM_AFTER: usize = 1;

/// Where a future's waker sits in a [`WaitList`]. Valid until the next wake-all
/// (which empties the list and moves to the next epoch).
#[derive(Clone, Copy, Debug)]
pub(crate) struct WaitKey {
    index: usize,
    epoch: u64,
}

/// Tasks waiting for one kind of event (a value, or room).
pub(crate) struct WaitList {
    /// `count << COUNT_SHIFT | state`; written only under `inner`'s lock.
    word: CachePadded<AtomicUsize>,
    /// Notifications in a row that found no waiter while armed (approximate: plain
    /// loads and stores, racing updates may lose a count).
    idle: AtomicUsize,
    inner: Mutex<Inner>,
}

struct Inner {
    /// Listed wakers; `None` marks a free index.
    wakers: Vec<Option<Waker>>,
    free: Vec<usize>,
    live: usize,
    epoch: u64,
}

/// How a registration must order itself against the hot path before it looks again.
#[must_use]
pub(crate) enum Registered {
    /// The list was armed: a `fence(SeqCst)`.
    Fence,
    /// The list was off (or arming): the heavy fence, then mark it armed.
    Heavy,
}

impl WaitList {
    pub(crate) fn new() -> Self {
        WaitList {
            word: CachePadded::new(AtomicUsize::new(OFF)),
            idle: AtomicUsize::new(0),
            inner: Mutex::new(Inner {
                wakers: Vec::new(),
                free: Vec::new(),
                live: 0,
                epoch: 0,
            }),
        }
    }

    /// Lists `waker` (or updates the one listed under `key`), then orders the
    /// registration before the caller's next look at the channel. The caller must
    /// look again after this returns, and wait only if that look finds nothing.
    pub(crate) fn register(&self, key: &mut Option<WaitKey>, waker: &Waker) {
        let registered = {
            let mut inner = lock(&self.inner);
            let epoch = inner.epoch;
            match *key {
                Some(k) if k.epoch == epoch && inner.wakers[k.index].is_some() => {
                    let slot = &mut inner.wakers[k.index];
                    if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
                        *slot = Some(waker.clone());
                    }
                }
                _ => {
                    let index = match inner.free.pop() {
                        Some(index) => {
                            inner.wakers[index] = Some(waker.clone());
                            index
                        }
                        None => {
                            inner.wakers.push(Some(waker.clone()));
                            inner.wakers.len() - 1
                        }
                    };
                    inner.live += 1;
                    *key = Some(WaitKey { index, epoch });
                }
            }
            self.idle.store(0, Ordering::Relaxed);
            let state = self.word.load(Ordering::Relaxed) & STATE;
            let (state, registered) = match state {
                ARMED => (ARMED, Registered::Fence),
                _ => (ARMING, Registered::Heavy),
            };
            self.word
                .store(inner.live << COUNT_SHIFT | state, Ordering::Release);
            registered
        };
        match registered {
            // Pairs with the fence of `notify_slow`.
            Registered::Fence => fence(Ordering::SeqCst),
            Registered::Heavy => {
                // Pairs with the light fence of a push (pop) whose load of the word
                // may not see it yet.
                hazard::heavy();
                // From now on a registration that reads ARMED (under the lock, so
                // after this heavy fence) may use a plain fence: a push whose load
                // missed ARMING completed before this fence returned.
                let inner = lock(&self.inner);
                let word = self.word.load(Ordering::Relaxed);
                if word & STATE == ARMING {
                    self.word
                        .store(inner.live << COUNT_SHIFT | ARMED, Ordering::Release);
                }
            }
        }
    }

    /// Removes the waker listed under `key`, if a wake-all has not taken it already.
    pub(crate) fn deregister(&self, key: &mut Option<WaitKey>) {
        let Some(k) = key.take() else { return };
        let mut inner = lock(&self.inner);
        if k.epoch != inner.epoch || inner.wakers[k.index].take().is_none() {
            return;
        }
        inner.free.push(k.index);
        inner.live -= 1;
        let state = self.word.load(Ordering::Relaxed) & STATE;
        self.word
            .store(inner.live << COUNT_SHIFT | state, Ordering::Release);
    }

    /// The hot path's check, after a push (pop) and a light fence: wakes the waiters,
    /// if the list is armed and has any.
    #[inline(always)]
    pub(crate) fn notify(&self) {
        if self.word.load(Ordering::Relaxed) != OFF {
            self.notify_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn notify_slow(&self) {
        // Pairs with the fence of a registration that found the list armed.
        fence(Ordering::SeqCst);
        if self.word.load(Ordering::Relaxed) >> COUNT_SHIFT != 0 {
            self.wake_all();
            return;
        }
        self.count_idle();
    }

    /// Counts a notification that found no waiter; turns the list off after
    /// `DISARM_AFTER` in a row, if still no waiter is listed.
    fn count_idle(&self) {
        let idle = self.idle.load(Ordering::Relaxed) + 1;
        self.idle.store(idle, Ordering::Relaxed);
        if idle >= DISARM_AFTER {
            let inner = lock(&self.inner);
            let word = self.word.load(Ordering::Relaxed);
            if inner.live == 0 && word == ARMED {
                self.word.store(OFF, Ordering::Release);
            }
            self.idle.store(0, Ordering::Relaxed);
        }
    }

    /// Wakes every listed waiter, taking the lock whatever the word says: the rare
    /// paths (a resize, a generation closing, a disconnect) call it after their change
    /// is made, and the lock orders it against registrations: a registration either
    /// is listed before the lock here, or locks after it and then sees the change.
    #[cold]
    pub(crate) fn wake_all(&self) {
        let wakers = {
            let mut inner = lock(&self.inner);
            if inner.live == 0 {
                return;
            }
            inner.free.clear();
            inner.live = 0;
            inner.epoch = inner.epoch.wrapping_add(1);
            let state = self.word.load(Ordering::Relaxed) & STATE;
            self.word.store(state, Ordering::Release);
            std::mem::take(&mut inner.wakers)
        };
        // No lock held: a waker may run arbitrary code (even drop a future that then
        // deregisters from this list).
        for waker in wakers.into_iter().flatten() {
            waker.wake();
        }
    }

    /// Waiters listed now (unit tests).
    #[cfg(all(test, not(pipeline_loom)))]
    pub(crate) fn waiters(&self) -> usize {
        lock(&self.inner).live
    }
}

#[cfg(all(test, not(pipeline_loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize as StdAtomicUsize;
    use std::task::Wake;

    struct CountWakes(StdAtomicUsize);
    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn state(list: &WaitList) -> usize {
        list.word.load(Ordering::Relaxed) & STATE
    }

    /// A registration arms the list; a wake-all takes every waker (stale keys then
    /// deregister nothing); idle notifications turn it off again, and only with no
    /// waiter listed.
    #[test]
    fn register_wake_and_disarm() {
        let list = WaitList::new();
        let counter = Arc::new(CountWakes(StdAtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let (mut a, mut b) = (None, None);
        list.register(&mut a, &waker);
        list.register(&mut b, &waker);
        list.register(&mut a, &waker); // an update, not a second entry
        assert_eq!((list.waiters(), state(&list)), (2, ARMED));
        list.notify();
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
        assert_eq!(list.waiters(), 0);
        // Stale keys: the wake-all took their entries; a new waiter keeps its own.
        let mut c = None;
        list.register(&mut c, &waker);
        list.deregister(&mut a);
        list.deregister(&mut b);
        assert_eq!(list.waiters(), 1);
        for _ in 0..2 * DISARM_AFTER {
            list.count_idle();
        }
        assert_eq!(state(&list), ARMED, "a listed waiter keeps the list armed");
        list.deregister(&mut c);
        assert_eq!(list.waiters(), 0);
        for _ in 0..DISARM_AFTER {
            list.notify();
        }
        assert_eq!(list.word.load(Ordering::Relaxed), OFF);
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
    }
}
