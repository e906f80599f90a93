//! Per-thread records of one shared object: what a thread is inside, and what it
//! counted.
//!
//! Every thread that uses a channel (or a bus) gets one [`Slot`] in the object's
//! [`Registry`], found again on later calls through a small thread-local cache (no
//! lock, no atomic read-modify-write). A slot holds:
//! - [`HAZARDS`] *hazards*: addresses of what the thread is inside (0 when nothing).
//!   The rare paths scan them, after a [`heavy`](super::heavy) fence, to learn that
//!   nobody is still using something before they close or free it;
//! - [`COUNTERS`] counters that only the owning thread writes, so counting needs no
//!   atomic read-modify-write; readers add the slots up.
//!
//! When a thread ends, its slots are handed back and a later thread reuses them (the
//! counts carry on), so an object has at most as many slots as threads ever used it at
//! the same time.

use crate::sync::{
    Mutex,
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    lock,
};
use std::cell::RefCell;
use std::sync::{Arc, Weak};

/// Hazards per slot.
pub(crate) const HAZARDS: usize = 3;
/// Owner-only counters per slot.
pub(crate) const COUNTERS: usize = 2;

/// One thread's record in one registry.
pub(crate) struct Slot {
    hazards: [AtomicUsize; HAZARDS],
    counters: [AtomicU64; COUNTERS],
    /// Whether a live thread owns this slot.
    owned: AtomicBool,
}

impl Slot {
    fn new() -> Self {
        Slot {
            hazards: std::array::from_fn(|_| AtomicUsize::new(0)),
            counters: std::array::from_fn(|_| AtomicU64::new(0)),
            owned: AtomicBool::new(true),
        }
    }

    /// Hazard `i`: the address this thread is inside, or 0.
    #[inline]
    pub(crate) fn hazard(&self, i: impl Into<usize>) -> &AtomicUsize {
        &self.hazards[i.into()]
    }

    /// Adds `n` to counter `i`. Only the owner calls this, so a load and a store (no
    /// locked instruction) cannot lose an update.
    #[inline]
    pub(crate) fn add(&self, i: impl Into<usize>, n: u64) {
        let counter = &self.counters[i.into()];
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Adds one to counter `i` and says whether the count before it, masked with
    /// `mask`, was 0: the first call and then one in `mask + 1` for a mask of low
    /// bits (for sampling; a thread's first send counts, so one send is enough to
    /// move a high-water mark). Owner only, like [`Slot::add`].
    #[inline]
    pub(crate) fn tick(&self, i: impl Into<usize>, mask: u64) -> bool {
        let counter = &self.counters[i.into()];
        let n = counter.load(Ordering::Relaxed);
        counter.store(n.wrapping_add(1), Ordering::Relaxed);
        n & mask == 0
    }

    /// Counter `i` as this thread (its owner) last wrote it.
    #[inline]
    pub(crate) fn peek(&self, i: impl Into<usize>) -> u64 {
        self.counters[i.into()].load(Ordering::Relaxed)
    }
}

/// Every slot of one shared object.
pub(crate) struct Registry {
    /// Unique for the life of the process, so a stale thread-local entry of a dropped
    /// channel can never match a new one at the same address.
    id: u64,
    /// The hazard that stays set between operations, if any.
    sticky: Option<usize>,
    /// Boxed so a slot's address is stable while the vector grows.
    #[allow(clippy::vec_box)]
    slots: Mutex<Vec<Box<Slot>>>,
}

// Channel ids; not part of any protocol, so a plain std atomic even under loom.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Registry {
    pub(crate) fn new() -> Arc<Self> {
        Self::build(None)
    }

    /// A registry whose hazard `sticky` stays set between operations (see
    /// `HazardCell::read_sticky`): it is cleared when a slot's thread ends. (The other
    /// hazards are always clear by then; not touching them keeps thread exits cheap in
    /// the loom models.)
    pub(crate) fn with_sticky(sticky: usize) -> Arc<Self> {
        assert!(sticky < HAZARDS, "hazard {sticky} out of range");
        Self::build(Some(sticky))
    }

    fn build(sticky: Option<usize>) -> Arc<Self> {
        Arc::new(Registry {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            sticky,
            slots: Mutex::new(Vec::new()),
        })
    }

    /// This thread's slot, claimed on first use: from the two-way cache (the whole
    /// fast path), else from the thread's table.
    #[inline(always)]
    pub(crate) fn slot(self: &Arc<Self>) -> &Slot {
        #[cfg(not(pipeline_loom))]
        {
            let found = RECENT.with(|recent| {
                let set = &recent[set_of(self.id)];
                let (id, slot) = set[0].get();
                if id == self.id {
                    return Some(slot);
                }
                let (id, slot) = set[1].get();
                (id == self.id).then_some(slot)
            });
            if let Some(slot) = found {
                // SAFETY: `RECENT` names slots this thread owns (cleared before the
                // table hands its slots back); the id is unique to this registry,
                // whose slots live as long as it does.
                return unsafe { &*slot };
            }
        }
        // SAFETY: slots live as long as their registry.
        unsafe { &*self.slot_from_table() }
    }

    #[cold]
    #[inline(never)]
    fn slot_from_table(self: &Arc<Self>) -> *const Slot {
        #[cfg(all(test, not(pipeline_loom)))]
        tests::TABLE_LOOKUPS.with(|n| n.set(n.get() + 1));
        match THREAD_SLOTS.try_with(|table| table.find_or_claim(self)) {
            Ok(slot) => slot,
            // This thread's table is already destroyed (a send from another
            // thread-local's destructor, as the thread ends): claim a slot for the
            // rest of the thread's life and remember it in the cache, which has no
            // destructor. It is not handed back, so each such thread keeps one slot
            // of the channel (a few dozen bytes) until the channel goes.
            Err(_) => {
                let slot = self.claim();
                #[cfg(not(pipeline_loom))]
                let _ = RECENT.try_with(|recent| remember(recent, self.id, slot));
                slot
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

    /// Whether any thread's hazard `i`, for some `i` in `which`, holds `address`.
    /// Callers run a [`heavy`](super::heavy) fence first.
    pub(crate) fn any_hazard<I: Copy + Into<usize>>(&self, address: usize, which: &[I]) -> bool {
        lock(&self.slots).iter().any(|slot| {
            which
                .iter()
                .any(|&i| slot.hazards[i.into()].load(Ordering::Acquire) == address)
        })
    }

    /// How many slots exist (owned or free).
    #[cfg(all(test, not(pipeline_loom)))]
    pub(crate) fn slot_count(&self) -> usize {
        lock(&self.slots).len()
    }

    /// Counter `i` added up over every thread.
    pub(crate) fn sum(&self, i: impl Into<usize>) -> u64 {
        let i = i.into();
        lock(&self.slots)
            .iter()
            .map(|slot| slot.counters[i].load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
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
        RECENT.with(|recent| remember(recent, registry.id, slot));
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
        let _ = RECENT.try_with(|recent| recent.iter().flatten().for_each(|way| way.set(EMPTY)));
        for entry in self.entries.get_mut().drain(..) {
            if let Some(registry) = entry.registry.upgrade() {
                // SAFETY: the registry is alive (we hold it), so its slots are.
                let slot = unsafe { &*entry.slot };
                // No read is in progress as the thread ends; a sticky hazard still
                // set would keep what it names alive for as long as the slot is free.
                if let Some(sticky) = registry.sticky {
                    slot.hazards[sticky].store(0, Ordering::Release);
                }
                slot.owned.store(false, Ordering::Release);
            }
        }
    }
}

// The slots of the registries this thread used most recently: a plain thread-local
// (no destructor, so no lazy-initialisation check), the whole fast path of finding a
// slot. Four sets by id, two ways each, most recent first: a publisher uses the bus's
// registry and its subscription's channel's on every publish, a worker the channel it
// receives from and the one it sends into, and two registries whose ids fall in one
// set must not evict each other on every call (direct-mapped, that cost 4.5 ns per
// publish and receive for one bus in four). Not under loom, whose executions reuse OS
// threads: a std thread-local would leak state from one execution into the next.
#[cfg(not(pipeline_loom))]
const SETS: usize = 4;

#[cfg(not(pipeline_loom))]
type Way = std::cell::Cell<(u64, *const Slot)>;

#[cfg(not(pipeline_loom))]
const EMPTY: (u64, *const Slot) = (0, std::ptr::null());

#[cfg(not(pipeline_loom))]
#[inline(always)]
fn set_of(id: u64) -> usize {
    (id % SETS as u64) as usize
}

/// Makes `slot` the most recent entry of its set; the other way keeps the previous
/// most recent one.
#[cfg(not(pipeline_loom))]
fn remember(recent: &[[Way; 2]; SETS], id: u64, slot: *const Slot) {
    let set = &recent[set_of(id)];
    if set[0].get().0 != id {
        set[1].set(set[0].get());
    }
    set[0].set((id, slot));
}

#[cfg(not(pipeline_loom))]
std::thread_local! {
    static RECENT: [[Way; 2]; SETS] = const { [const { [const { Way::new(EMPTY) }; 2] }; SETS] };
}

#[cfg(not(pipeline_loom))]
std::thread_local! {
    static THREAD_SLOTS: ThreadSlots = const { ThreadSlots { entries: RefCell::new(Vec::new()) } };
}

#[cfg(pipeline_loom)]
loom::thread_local! {
    static THREAD_SLOTS: ThreadSlots = ThreadSlots { entries: RefCell::new(Vec::new()) };
}

#[cfg(all(test, not(pipeline_loom)))]
mod tests {
    use super::*;
    use std::cell::Cell;

    std::thread_local! {
        /// Calls that missed the cache on this thread.
        pub(super) static TABLE_LOOKUPS: Cell<u64> = const { Cell::new(0) };
    }

    fn misses() -> u64 {
        TABLE_LOOKUPS.with(Cell::get)
    }

    /// Two registries whose ids fall in one set of the cache (a bus and its
    /// subscription's channel, say) both stay cached while a thread alternates
    /// between them: neither evicts the other.
    #[test]
    fn two_registries_in_one_set_do_not_evict_each_other() {
        let first = Registry::new();
        let second = std::iter::repeat_with(Registry::new)
            .find(|r| set_of(r.id) == set_of(first.id))
            .unwrap();
        let (a, b) = (first.slot() as *const Slot, second.slot() as *const Slot);
        assert_ne!(a, b);
        let before = misses();
        for _ in 0..100 {
            assert_eq!(first.slot() as *const Slot, a);
            assert_eq!(second.slot() as *const Slot, b);
        }
        assert_eq!(misses(), before, "cache misses while alternating");
        // A third in the same set takes the older way; the most recent one stays.
        let third = std::iter::repeat_with(Registry::new)
            .find(|r| set_of(r.id) == set_of(first.id))
            .unwrap();
        third.slot();
        let before = misses();
        third.slot();
        second.slot();
        assert_eq!(misses(), before);
    }
}
