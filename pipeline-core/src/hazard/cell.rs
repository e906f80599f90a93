//! [`HazardCell`]: a shared `Arc<T>` that readers use without touching its reference
//! count, for data read on every operation and replaced rarely (the bus's route list).
//!
//! A reader publishes the address it is about to use in a hazard of its thread's
//! [`Slot`] and checks that the cell still holds it; a writer swaps in a new value,
//! lists the old one as *retired*, runs a heavy fence and drops every retired value no
//! hazard names. A reader that leaves while something is retired, and was reading a
//! value that is no longer current, does the same, so the last reader out frees it.
//! The same protocol as the channel's generations (docs/architecture.md), with none of
//! the generation logic.

use super::fence;
use super::slots::{Registry, Slot};
use crate::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
    lock,
};
use crossbeam_utils::CachePadded;

/// The value and, under loom, a mark set when it is released: the value is dropped
/// then (it may hold resources the model waits on) but the entry is kept, so a model
/// can assert that no reader still inside sees the mark.
struct Entry<T> {
    value: std::mem::ManuallyDrop<T>,
    #[cfg(pipeline_loom)]
    freed: crate::sync::atomic::AtomicBool,
}

impl<T> Drop for Entry<T> {
    fn drop(&mut self) {
        #[cfg(pipeline_loom)]
        if self.freed.load(Ordering::Relaxed) {
            return; // `release` dropped the value already
        }
        // SAFETY: dropped once, here, as the entry goes.
        unsafe { std::mem::ManuallyDrop::drop(&mut self.value) };
    }
}

/// A shared value, replaced whole, read under a hazard.
pub(crate) struct HazardCell<T> {
    /// `Arc::into_raw` of the current entry; the cell owns that reference.
    current: CachePadded<AtomicUsize>,
    /// Nonzero while some replaced entry is not yet freed.
    pending: CachePadded<AtomicUsize>,
    /// Replaced entries that a reader may still be inside; also serialises writers.
    retired: Mutex<Vec<usize>>,
    /// Which hazard of a slot this cell's guarded reads use.
    hazard: usize,
    /// Which hazard of a slot this cell's sticky reads use.
    sticky: usize,
    /// Under loom, freed entries are marked and kept here until the cell drops.
    #[cfg(pipeline_loom)]
    graveyard: Mutex<Vec<usize>>,
    _owns: std::marker::PhantomData<Arc<Entry<T>>>,
}

// SAFETY: entries are reached by address, but only as `&T` (readers) or owned
// `Arc<Entry<T>>` (writers, on drop), so the cell is what `Arc<T>` is.
unsafe impl<T: Send + Sync> Send for HazardCell<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for HazardCell<T> {}

fn into_address<T>(value: T) -> usize {
    Arc::into_raw(Arc::new(Entry {
        value: std::mem::ManuallyDrop::new(value),
        #[cfg(pipeline_loom)]
        freed: crate::sync::atomic::AtomicBool::new(false),
    })) as usize
}

/// # Safety
///
/// `address` came from `into_address::<T>` and its reference is still owned by the
/// caller (the entry is alive).
unsafe fn entry<'a, T>(address: usize) -> &'a Entry<T> {
    // SAFETY: by the caller's contract.
    unsafe { &*(address as *const Entry<T>) }
}

impl<T> HazardCell<T> {
    /// A cell holding `value`, whose readers use hazard `hazard` of their slots for
    /// guarded reads and hazard `sticky` for sticky ones.
    pub(crate) fn new(value: T, hazard: usize, sticky: usize) -> Self {
        assert_ne!(
            hazard, sticky,
            "guarded and sticky reads need a hazard each"
        );
        fence::init();
        HazardCell {
            current: CachePadded::new(AtomicUsize::new(into_address(value))),
            pending: CachePadded::new(AtomicUsize::new(0)),
            retired: Mutex::new(Vec::new()),
            hazard,
            sticky,
            #[cfg(pipeline_loom)]
            graveyard: Mutex::new(Vec::new()),
            _owns: std::marker::PhantomData,
        }
    }

    /// Runs `f` on the current value. `slot` is the calling thread's slot in
    /// `registry`, the registry every reader of this cell uses.
    ///
    /// If the slot's hazard is already in use (a nested read from inside `f`, say from
    /// a filter or a `Clone` impl), this read takes a counted reference instead.
    #[cfg(all(test, pipeline_loom))]
    pub(crate) fn read<R>(&self, registry: &Registry, slot: &Slot, f: impl FnOnce(&T) -> R) -> R {
        f(&self.enter(registry, slot))
    }

    /// The current value, until the returned guard drops. `slot` is the calling
    /// thread's slot in `registry`, the registry every reader of this cell uses.
    ///
    /// If the slot's hazard is already in use (a nested read while the caller holds
    /// another guard, say from a filter or a `Clone` impl), the guard holds a counted
    /// reference instead.
    #[inline(always)]
    pub(crate) fn enter<'a>(&'a self, registry: &'a Registry, slot: &'a Slot) -> CellGuard<'a, T> {
        if slot.hazard(self.hazard).load(Ordering::Relaxed) != 0 {
            return self.enter_counted();
        }
        let address = self.protect(registry, slot, self.hazard);
        CellGuard {
            // SAFETY: our hazard, checked against `current`, keeps the entry alive
            // until the guard drops (also on a panic).
            value: &*unsafe { entry::<T>(address) }.value as *const T,
            hold: Hold::Hazard {
                cell: self,
                registry,
                slot,
                address,
            },
        }
    }

    /// The current value, read under this thread's *sticky* hazard: one that stays
    /// on the value after the read, so the next read of an unchanged cell is two loads
    /// and a compare, with no store and no fence. The hazard moves to the new value on
    /// the first read after a change; until then it keeps the old one alive, and it
    /// is cleared when the thread ends (the slot is handed back).
    ///
    /// # Safety
    ///
    /// The reference must not be used after this thread's next sticky read of this
    /// cell, which may move the hazard: between the two, the caller runs no code that
    /// could read it (no code of the library's users: callbacks, `Clone`, `Drop`,
    /// logging or metrics back ends).
    #[inline(always)]
    pub(crate) unsafe fn read_sticky<'a>(&'a self, registry: &Registry, slot: &'a Slot) -> &'a T {
        let current = self.current.load(Ordering::Acquire);
        if slot.hazard(self.sticky).load(Ordering::Relaxed) == current {
            // SAFETY: our sticky hazard has named this entry since `pin_sticky` checked
            // it against `current`, so no writer's scan has missed it: it is alive.
            return unsafe { sticky_value(current) };
        }
        self.pin_sticky(registry, slot)
    }

    /// Moves this thread's sticky hazard to the current value (checked, as `enter`
    /// does) and frees what it protected before if nobody else needs it.
    #[cold]
    #[inline(never)]
    fn pin_sticky<'a>(&'a self, registry: &Registry, slot: &'a Slot) -> &'a T {
        let address = self.protect(registry, slot, self.sticky);
        // The value the hazard named before may be retired, and now unprotected.
        if self.pending.load(Ordering::Acquire) != 0 {
            self.release_unused(registry);
        }
        // SAFETY: our hazard, checked against `current`, keeps the entry alive until
        // it moves (the caller's contract).
        unsafe { sticky_value(address) }
    }

    #[cold]
    fn enter_counted(&self) -> CellGuard<'_, T> {
        let entry = self.load_full_entry();
        CellGuard {
            value: &*entry.value as *const T,
            hold: Hold::Counted(std::mem::ManuallyDrop::new(entry)),
        }
    }

    /// A counted reference to the current value (takes the writers' lock).
    pub(crate) fn load_full(&self) -> CellRef<T> {
        CellRef(self.load_full_entry())
    }

    fn load_full_entry(&self) -> Arc<Entry<T>> {
        let _writers = lock(&self.retired);
        let address = self.current.load(Ordering::Acquire);
        // SAFETY: the cell owns a reference to the current entry, and it cannot be
        // replaced (and that reference dropped) while we hold the writers' lock.
        unsafe {
            Arc::increment_strong_count(address as *const Entry<T>);
            Arc::from_raw(address as *const Entry<T>)
        }
    }

    /// Replaces the value with `change(current)`, if that returns one; returns what
    /// `change` returned alongside. Writers are serialised.
    pub(crate) fn update<R>(
        &self,
        registry: &Registry,
        change: impl FnOnce(&T) -> (Option<T>, R),
    ) -> R {
        let mut retired = lock(&self.retired);
        let old = self.current.load(Ordering::Acquire);
        // SAFETY: the cell owns the current entry and only writers (we hold their
        // lock) replace it.
        let (next, result) = change(&unsafe { entry::<T>(old) }.value);
        if let Some(next) = next {
            self.current.store(into_address(next), Ordering::Release);
            retired.push(old);
            self.pending.store(retired.len(), Ordering::Release);
            let unused = self.unused_retired(registry, &mut retired);
            drop(retired);
            self.release_all(unused);
        }
        result
    }

    /// Points hazard `which` of `slot` at the current entry, checked: returns its
    /// address, which the hazard protects until it changes.
    #[inline(always)]
    fn protect(&self, registry: &Registry, slot: &Slot, which: usize) -> usize {
        let hazard = slot.hazard(which);
        loop {
            let address = self.current.load(Ordering::Acquire);
            // Release: for a sticky hazard this store also withdraws the value it
            // named before, so this thread's reads of that value must happen before a
            // writer that sees the hazard gone frees it (as in `withdraw`). A plain
            // store on x86 and ARMv8 alike (`stlr`); nothing on the guarded path, where
            // the hazard was 0.
            hazard.store(address, Ordering::Release);
            // Pairs with the heavy fence of `unused_retired`.
            fence::light();
            if self.current.load(Ordering::Acquire) == address {
                return address;
            }
            self.withdraw(registry, slot, which, address);
        }
    }

    /// Clears hazard `which`; frees retired entries if this reader may have been the
    /// last inside one.
    #[inline(always)]
    fn withdraw(&self, registry: &Registry, slot: &Slot, which: usize, address: usize) {
        slot.hazard(which).store(0, Ordering::Release);
        fence::light();
        if self.pending.load(Ordering::Acquire) != 0
            && self.current.load(Ordering::Acquire) != address
        {
            self.release_unused(registry);
        }
    }

    #[cold]
    #[inline(never)]
    fn release_unused(&self, registry: &Registry) {
        let unused = self.unused_retired(registry, &mut lock(&self.retired));
        self.release_all(unused);
    }

    /// Takes the retired entries no hazard names off the list, for
    /// [`release_all`](Self::release_all) once the lock is let go (dropping a value may
    /// run code that uses this cell).
    #[cold]
    fn unused_retired(&self, registry: &Registry, retired: &mut Vec<usize>) -> Vec<usize> {
        fence::heavy();
        let mut unused = Vec::new();
        retired.retain(|&address| {
            let in_use = registry.any_hazard(address, &[self.hazard, self.sticky]);
            if !in_use {
                unused.push(address);
            }
            in_use
        });
        self.pending.store(retired.len(), Ordering::Release);
        unused
    }

    fn release_all(&self, unused: Vec<usize>) {
        for address in unused {
            // SAFETY: replaced before the heavy fence of `unused_retired`, so a reader
            // that publishes it now fails its check; no hazard named it; taken off
            // the list once, so released once.
            unsafe { self.release(address) };
        }
    }
}

impl<T> HazardCell<T> {
    /// Drops the cell's reference to a retired entry (under loom: marks it and keeps
    /// it until the cell drops).
    ///
    /// # Safety
    ///
    /// The cell owns that reference and no hazard protects the entry.
    unsafe fn release(&self, address: usize) {
        #[cfg(not(pipeline_loom))]
        // SAFETY: by the caller's contract.
        drop(unsafe { Arc::from_raw(address as *const Entry<T>) });
        #[cfg(pipeline_loom)]
        {
            // SAFETY: by the caller's contract the entry is still allocated and nobody
            // reads its value any more (what the mark lets a model check).
            unsafe {
                let entry = address as *mut Entry<T>;
                (*entry).freed.store(true, Ordering::Release);
                std::mem::ManuallyDrop::drop(&mut (*entry).value);
            }
            lock(&self.graveyard).push(address);
        }
    }
}

impl<T> Drop for HazardCell<T> {
    fn drop(&mut self) {
        let mut owned = std::mem::take(&mut *lock(&self.retired));
        #[cfg(pipeline_loom)]
        owned.append(&mut lock(&self.graveyard));
        owned.push(self.current.load(Ordering::Acquire));
        for address in owned {
            // SAFETY: no reader is left (we are being dropped), and the cell owns one
            // reference to each listed entry and to the current one.
            drop(unsafe { Arc::from_raw(address as *const Entry<T>) });
        }
    }
}

/// The value of the entry at `address`, read under a sticky hazard (under loom,
/// checked not to be freed).
///
/// # Safety
///
/// As [`entry`].
#[inline(always)]
unsafe fn sticky_value<'a, T>(address: usize) -> &'a T {
    // SAFETY: by the caller's contract.
    let entry = unsafe { entry::<T>(address) };
    #[cfg(pipeline_loom)]
    assert!(
        !entry.freed.load(Ordering::Acquire),
        "a value was freed under a sticky hazard"
    );
    &entry.value
}

/// A read of a [`HazardCell`]'s value, from [`HazardCell::enter`]; leaves on drop.
pub(crate) struct CellGuard<'a, T> {
    /// Points into the entry `hold` keeps alive.
    value: *const T,
    hold: Hold<'a, T>,
}

/// What keeps a guard's entry alive.
enum Hold<'a, T> {
    /// The reader's hazard names it.
    Hazard {
        cell: &'a HazardCell<T>,
        registry: &'a Registry,
        slot: &'a Slot,
        address: usize,
    },
    /// A nested read: a counted reference, dropped by the guard's `drop` (so the
    /// guard has no drop glue beyond it, and the hazard case inlines whole).
    Counted(std::mem::ManuallyDrop<Arc<Entry<T>>>),
}

impl<T> std::ops::Deref for CellGuard<'_, T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        // SAFETY: `hold` keeps the entry, and so the value, alive while we exist.
        unsafe { &*self.value }
    }
}

impl<T> Drop for CellGuard<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        match &mut self.hold {
            &mut Hold::Hazard {
                cell,
                registry,
                slot,
                address,
            } => {
                #[cfg(pipeline_loom)]
                // SAFETY: loom only; our hazard still protects it.
                assert!(
                    !unsafe { entry::<T>(address) }.freed.load(Ordering::Acquire),
                    "a value was freed while a reader was inside it"
                );
                cell.withdraw(registry, slot, cell.hazard, address);
            }
            Hold::Counted(entry) => drop_counted(entry),
        }
    }
}

#[cold]
fn drop_counted<T>(entry: &mut std::mem::ManuallyDrop<Arc<Entry<T>>>) {
    // SAFETY: called once, from the guard's `drop`; the field is not used after.
    unsafe { std::mem::ManuallyDrop::drop(entry) };
}

/// A counted reference to a cell's value, from [`HazardCell::load_full`].
pub(crate) struct CellRef<T>(Arc<Entry<T>>);

impl<T> std::ops::Deref for CellRef<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0.value
    }
}

/// Loom models of the cell: `RUSTFLAGS="--cfg pipeline_loom" cargo test -p
/// pipeline-core --release --lib hazard`.
#[cfg(all(test, not(pipeline_loom)))]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::thread;

    /// A thread's sticky hazard keeps the value it last read alive after a
    /// replacement, for as long as the thread lives; once the thread has ended, the
    /// next replacement frees it.
    #[test]
    fn sticky_hazards_end_with_their_thread() {
        let registry = Registry::with_sticky(1);
        let probe = Arc::new(());
        let cell = Arc::new(HazardCell::new(probe.clone(), 0, 1));
        let (pinned, wait_pinned) = mpsc::channel();
        let (end, ended) = mpsc::channel::<()>();
        let reader = thread::spawn({
            let (cell, registry) = (cell.clone(), registry.clone());
            move || {
                // SAFETY: the reference is dropped at once.
                let _ = unsafe { cell.read_sticky(&registry, registry.slot()) };
                pinned.send(()).unwrap();
                ended.recv().unwrap();
            }
        });
        wait_pinned.recv().unwrap();
        cell.update(&registry, |_| (Some(Arc::new(())), ()));
        assert_eq!(Arc::strong_count(&probe), 2, "freed under a sticky hazard");
        end.send(()).unwrap();
        reader.join().unwrap();
        cell.update(&registry, |_| (Some(Arc::new(())), ()));
        assert_eq!(Arc::strong_count(&probe), 1, "kept after its reader ended");
    }

    /// A thread whose sticky hazard moves to a newer value frees the older one on the
    /// way, when nobody else holds it.
    #[test]
    fn moving_a_sticky_hazard_frees_what_it_left() {
        let registry = Registry::with_sticky(1);
        let probe = Arc::new(());
        let cell = HazardCell::new(probe.clone(), 0, 1);
        let slot = registry.slot();
        // SAFETY: each reference is dropped at once.
        let _ = unsafe { cell.read_sticky(&registry, slot) };
        cell.update(&registry, |_| (Some(Arc::new(())), ()));
        assert_eq!(Arc::strong_count(&probe), 2);
        let _ = unsafe { cell.read_sticky(&registry, slot) };
        assert_eq!(Arc::strong_count(&probe), 1);
    }
}

#[cfg(all(test, pipeline_loom))]
mod loom_models {
    use super::*;
    use loom::thread;

    /// Two readers and a writer that replaces the value twice: every read sees one of
    /// the values whole, and no value is freed while a reader is inside it (the
    /// `Leave` guard asserts that under loom).
    #[test]
    fn readers_never_see_a_freed_value() {
        loom::model(|| {
            let registry = Registry::with_sticky(1);
            let cell = std::sync::Arc::new(HazardCell::new(10_u32, 0, 1));
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    let (cell, registry) = (cell.clone(), registry.clone());
                    thread::spawn(move || cell.read(&registry, registry.slot(), |v| *v))
                })
                .collect();
            for next in [20, 30] {
                cell.update(&registry, |_| (Some(next), ()));
            }
            for reader in readers {
                let seen = reader.join().unwrap();
                assert!([10, 20, 30].contains(&seen), "{seen}");
            }
            assert_eq!(*cell.load_full(), 30);
        });
    }

    /// A sticky reader reads before, between and after two replacements: it sees the
    /// values in order and never a freed one (`sticky_value` asserts that under loom).
    #[test]
    fn sticky_reads_never_see_a_freed_value() {
        loom::model(|| {
            let registry = Registry::with_sticky(1);
            let cell = std::sync::Arc::new(HazardCell::new(10_u32, 0, 1));
            let reader = {
                let (cell, registry) = (cell.clone(), registry.clone());
                thread::spawn(move || {
                    let slot = registry.slot();
                    // SAFETY: each value is copied out before the next read.
                    let first = unsafe { *cell.read_sticky(&registry, slot) };
                    let second = unsafe { *cell.read_sticky(&registry, slot) };
                    (first, second)
                })
            };
            for next in [20, 30] {
                cell.update(&registry, |_| (Some(next), ()));
            }
            let (first, second) = reader.join().unwrap();
            assert!([10, 20, 30].contains(&first), "{first}");
            assert!(second >= first, "{first} then {second}");
            // That the next replacement frees everything once the reader has ended is
            // tested with std threads (`sticky_hazards_end_with_their_thread`): loom
            // does not order a thread-local destructor's stores before `join`.
        });
    }
}
