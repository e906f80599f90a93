//! Per-thread records of one channel: which generation a thread is inside, and what it
//! counted.
//!
//! Every thread that uses a channel gets one [`Slot`] in the channel's [`Registry`],
//! found again on later calls through a small thread-local table (no lock, no atomic
//! read-modify-write). A slot holds:
//! - two *hazards*, the generation the thread is inside of for a send and for a
//!   receive (0 when it is in neither). The rare paths scan them to learn that no send
//!   is still in progress in a replaced generation, and that nobody still reads a
//!   generation before freeing it;
//! - counters that only the owning thread writes, so counting needs no atomic
//!   read-modify-write; readers add the slots up.
//!
//! When a thread ends, its slots are handed back and a later thread reuses them (the
//! counts carry on), so a channel has at most as many slots as threads ever used it at
//! the same time.

use crate::sync::{
    Mutex,
    atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering},
    lock,
};
use std::cell::RefCell;
use std::sync::{Arc, Weak};

/// One thread's record in one channel.
pub(crate) struct Slot {
    /// The generation (address) this thread is sending into, or 0.
    pub(crate) send_hazard: AtomicUsize,
    /// The generation (address) this thread is receiving from, or 0.
    pub(crate) recv_hazard: AtomicUsize,
    /// Values received by the owner (written by the owner only).
    received: AtomicU64,
    /// Sends by the owner, for sampling the high-water mark (owner only).
    ticks: AtomicU32,
    /// Whether a live thread owns this slot.
    owned: AtomicBool,
}

impl Slot {
    fn new() -> Self {
        Slot {
            send_hazard: AtomicUsize::new(0),
            recv_hazard: AtomicUsize::new(0),
            received: AtomicU64::new(0),
            ticks: AtomicU32::new(0),
            owned: AtomicBool::new(true),
        }
    }

    /// Counts one received value. Only the owner calls this, so a load and a store
    /// (no locked instruction) cannot lose an increment.
    #[inline]
    pub(crate) fn count_received(&self) {
        let n = self.received.load(Ordering::Relaxed);
        self.received.store(n + 1, Ordering::Relaxed);
    }

    /// Counts one send and says whether this one should sample the length (one in
    /// `every`). Owner only, like [`Slot::count_received`].
    #[inline]
    pub(crate) fn tick(&self, every: u32) -> bool {
        let n = self.ticks.load(Ordering::Relaxed).wrapping_add(1);
        self.ticks.store(n, Ordering::Relaxed);
        n % every == 1
    }
}

/// Which hazards a scan looks at.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Hazards {
    /// Sends in progress only (may a replaced generation be closed?).
    Send,
    /// Sends and receives (may a retired generation be freed?).
    Any,
}

/// Every slot of one channel.
pub(crate) struct Registry {
    /// Unique for the life of the process, so a stale thread-local entry of a dropped
    /// channel can never match a new one at the same address.
    id: u64,
    /// Boxed so a slot's address is stable while the vector grows.
    #[allow(clippy::vec_box)]
    slots: Mutex<Vec<Box<Slot>>>,
}

// Channel ids; not part of any protocol, so a plain std atomic even under loom.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Registry {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Registry {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            slots: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` with this thread's slot, claiming one on first use.
    #[inline]
    pub(crate) fn with_slot<R>(self: &Arc<Self>, f: impl FnOnce(&Slot) -> R) -> R {
        #[cfg(not(pipeline_loom))]
        {
            let (id, slot) = LAST.get();
            if id == self.id {
                // SAFETY: `LAST` names a slot this thread owns (cleared before the
                // table hands its slots back); the id is unique to this registry,
                // which `self` keeps alive.
                return f(unsafe { &*slot });
            }
        }
        self.with_slot_from_table(f)
    }

    #[cold]
    fn with_slot_from_table<R>(self: &Arc<Self>, f: impl FnOnce(&Slot) -> R) -> R {
        match THREAD_SLOTS.try_with(|table| table.find_or_claim(self)) {
            // SAFETY: slots live as long as the registry, which `self` keeps alive.
            Ok(slot) => f(unsafe { &*slot }),
            // This thread's table is already destroyed (a send from another
            // thread-local's destructor): borrow a slot for this one call.
            Err(_) => {
                let slot = self.claim();
                let _release = Release(slot);
                // SAFETY: as above.
                f(unsafe { &*slot })
            }
        }
    }

    /// A free slot (or a new one), now owned by the caller.
    fn claim(&self) -> *const Slot {
        let mut slots = lock(&self.slots);
        for slot in slots.iter() {
            // Acquire: the previous owner's counts happen before our updates.
            if !slot.owned.load(Ordering::Acquire) {
                slot.owned.store(true, Ordering::Relaxed);
                return &**slot;
            }
        }
        slots.push(Box::new(Slot::new()));
        &**slots.last().expect("just pushed")
    }

    /// Whether any thread is inside `generation` (by address), on the given sides.
    /// Callers run a [`heavy`](super::fence::heavy) fence first.
    pub(crate) fn any_hazard(&self, generation: usize, which: Hazards) -> bool {
        lock(&self.slots).iter().any(|slot| {
            slot.send_hazard.load(Ordering::Acquire) == generation
                || (which == Hazards::Any && slot.recv_hazard.load(Ordering::Acquire) == generation)
        })
    }

    /// How many slots exist (owned or free).
    #[cfg(all(test, not(pipeline_loom)))]
    pub(crate) fn slot_count(&self) -> usize {
        lock(&self.slots).len()
    }

    /// Values received so far, over every thread.
    pub(crate) fn received(&self) -> u64 {
        lock(&self.slots)
            .iter()
            .map(|slot| slot.received.load(Ordering::Relaxed))
            .sum()
    }
}

/// Hands a borrowed slot back (also if the borrower panics).
struct Release(*const Slot);

impl Drop for Release {
    fn drop(&mut self) {
        // SAFETY: the registry that owns the slot outlives this guard (see `with_slot`).
        unsafe { &*self.0 }.owned.store(false, Ordering::Release);
    }
}

/// One entry of a thread's table: the slot it owns in one channel.
struct Entry {
    id: u64,
    slot: *const Slot,
    registry: Weak<Registry>,
}

/// The slots this thread owns, one per channel it has used.
struct ThreadSlots {
    entries: RefCell<Vec<Entry>>,
}

impl ThreadSlots {
    fn find_or_claim(&self, registry: &Arc<Registry>) -> *const Slot {
        let found = self
            .entries
            .borrow()
            .iter()
            .find(|e| e.id == registry.id)
            .map(|e| e.slot);
        let slot = found.unwrap_or_else(|| self.claim(registry));
        #[cfg(not(pipeline_loom))]
        LAST.set((registry.id, slot));
        slot
    }

    fn claim(&self, registry: &Arc<Registry>) -> *const Slot {
        let slot = registry.claim();
        let mut entries = self.entries.borrow_mut();
        // Forget channels that are gone (their slots went with them).
        entries.retain(|e| e.registry.strong_count() > 0);
        entries.push(Entry {
            id: registry.id,
            slot,
            registry: Arc::downgrade(registry),
        });
        slot
    }
}

impl Drop for ThreadSlots {
    fn drop(&mut self) {
        // The slots are handed back: later sends from this thread (from another
        // thread-local's destructor) must not find one through the cache.
        #[cfg(not(pipeline_loom))]
        let _ = LAST.try_with(|last| last.set((0, std::ptr::null())));
        for entry in self.entries.get_mut().drain(..) {
            if let Some(_alive) = entry.registry.upgrade() {
                // SAFETY: the registry is alive (we hold it), so its slots are.
                unsafe { &*entry.slot }
                    .owned
                    .store(false, Ordering::Release);
            }
        }
    }
}

// The slot of the channel this thread used last: a plain thread-local (no destructor,
// so no lazy-initialisation check), the whole fast path of finding a slot. Not under
// loom, whose executions reuse OS threads: a std thread-local would leak state from
// one execution into the next.
#[cfg(not(pipeline_loom))]
std::thread_local! {
    static LAST: std::cell::Cell<(u64, *const Slot)> =
        const { std::cell::Cell::new((0, std::ptr::null())) };
}

#[cfg(not(pipeline_loom))]
std::thread_local! {
    static THREAD_SLOTS: ThreadSlots = const { ThreadSlots { entries: RefCell::new(Vec::new()) } };
}

#[cfg(pipeline_loom)]
loom::thread_local! {
    static THREAD_SLOTS: ThreadSlots = ThreadSlots { entries: RefCell::new(Vec::new()) };
}
