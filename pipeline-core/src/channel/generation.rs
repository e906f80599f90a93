//! Generations and the leased pointer that finds the right one.
//!
//! A resizable channel is a chain of generations, oldest first. Each generation is a
//! fixed-capacity [`Queue`]; a resize appends a new one and points senders at it.
//! Receivers drain a generation until it is *closed* (no send into it is still in
//! progress) and empty, then move to the next one.
//!
//! Both ends find their generation through a [`GenPtr`]: one `AtomicUsize` holding the
//! generation's address (bits 3..48), a few flag bits (bits 0..3) and a count of leases
//! (bits 48..64), the threads between "I picked this generation" and "I am done with
//! it". Taking a lease is one `fetch_add`, which at the same time reads the pointer and
//! protects the generation from being freed (a split reference count). When the pointer
//! is replaced, the count of leases still out moves, in the same atomic swap, to the old
//! generation's `outstanding` counter; whoever brings that counter to "sealed and zero"
//! runs the side's settle action. For the send side that action closes the generation:
//! from then on no value can enter it, which is what lets receivers leave it.
//!
//! A sender that is idle holds no lease, so it cannot keep receivers on an old
//! generation: only a send in progress can delay a generation's closing.

use super::queue::{BoundedQueue, Queue};
use crate::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
    lock,
};

#[cfg(not(target_pointer_width = "64"))]
compile_error!("pipeline-core's resizable channel packs a pointer and a count into a 64-bit word");

const COUNT_SHIFT: u32 = 48;
const ONE_LEASE: usize = 1 << COUNT_SHIFT;
const MAX_LEASES: usize = (1 << (usize::BITS - COUNT_SHIFT)) - 2;
/// Low bits free because `Generation` is aligned to at least 8 bytes.
pub(crate) const FLAG_MASK: usize = 0b111;
const PTR_MASK: usize = (ONE_LEASE - 1) & !FLAG_MASK;
/// Set on the send pointer when every receiver is gone.
pub(crate) const RECEIVERS_GONE: usize = 0b001;
/// Added to `outstanding` when a generation is replaced; reaching exactly this value
/// means every lease taken on it has been returned.
const SEALED: usize = 1 << 62;

/// Which end of the channel a [`GenPtr`] serves; it selects the generation's counter
/// and what happens when the last lease on a replaced generation is returned.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Side {
    /// Senders: the last lease returned closes the generation for good.
    Send,
    /// Receivers: leases only keep the generation's memory alive.
    Recv,
}

/// One fixed-capacity buffer in the chain.
#[repr(align(8))]
pub(crate) struct Generation<T> {
    pub(crate) queue: Queue<T>,
    /// The generation that replaced this one; set before this one is sealed.
    next: Mutex<Option<Arc<Generation<T>>>>,
    send_outstanding: AtomicUsize,
    recv_outstanding: AtomicUsize,
}

impl<T> Generation<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Generation {
            queue: Queue::with_capacity(capacity),
            next: Mutex::new(None),
            send_outstanding: AtomicUsize::new(0),
            recv_outstanding: AtomicUsize::new(0),
        }
    }

    pub(crate) fn next(&self) -> Option<Arc<Generation<T>>> {
        lock(&self.next).clone()
    }

    pub(crate) fn set_next(&self, next: Arc<Generation<T>>) {
        *lock(&self.next) = Some(next);
    }

    fn outstanding(&self, side: Side) -> &AtomicUsize {
        match side {
            Side::Send => &self.send_outstanding,
            Side::Recv => &self.recv_outstanding,
        }
    }
}

/// A pointer to one generation with a lease count in the same word; it owns one strong
/// reference to the generation it points to.
pub(crate) struct GenPtr<T> {
    word: AtomicUsize,
    side: Side,
    _owns: std::marker::PhantomData<Arc<Generation<T>>>,
}

/// Permission to use a generation; returned on drop.
pub(crate) struct Lease<'a, T> {
    ptr: &'a GenPtr<T>,
    generation: *const Generation<T>,
    flags: usize,
}

impl<T> GenPtr<T> {
    pub(crate) fn new(generation: Arc<Generation<T>>, side: Side) -> Self {
        GenPtr {
            word: AtomicUsize::new(into_word(generation)),
            side,
            _owns: std::marker::PhantomData,
        }
    }

    /// Takes a lease on the current generation.
    ///
    /// # Panics
    ///
    /// When 65 534 leases are out on one pointer at once (that many threads inside
    /// `send` or `recv` of one channel at the same instant).
    #[inline]
    pub(crate) fn lease(&self) -> Lease<'_, T> {
        // Acquire pairs with the Release of `replace`, so the generation is initialised.
        let word = self.word.fetch_add(ONE_LEASE, Ordering::Acquire);
        if word >> COUNT_SHIFT >= MAX_LEASES {
            self.word.fetch_sub(ONE_LEASE, Ordering::Relaxed);
            panic!("too many threads inside one resizable channel at once");
        }
        Lease {
            ptr: self,
            generation: (word & PTR_MASK) as *const Generation<T>,
            flags: word & FLAG_MASK,
        }
    }

    /// Sets flag bits without changing the pointer or the count.
    pub(crate) fn set_flags(&self, flags: usize) {
        debug_assert_eq!(flags & !FLAG_MASK, 0);
        self.word.fetch_or(flags, Ordering::AcqRel);
    }

    /// Points at `next` if still pointing at `expected`; returns whether it did.
    /// The leases still out on `expected` are settled against it from now on.
    pub(crate) fn replace(&self, expected: &Generation<T>, next: Arc<Generation<T>>) -> bool {
        let expected = expected as *const Generation<T> as usize;
        let next = into_word(next);
        let mut current = self.word.load(Ordering::Relaxed);
        loop {
            if current & PTR_MASK != expected {
                // Someone else moved it on; give back the reference we were handed.
                // SAFETY: `next` came from `into_word` above and was not published.
                drop(unsafe { Arc::from_raw((next & PTR_MASK) as *const Generation<T>) });
                return false;
            }
            match self.word.compare_exchange_weak(
                current,
                next | (current & FLAG_MASK),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        let leases = current >> COUNT_SHIFT;
        // SAFETY: the word owned one strong reference to `expected`; it now belongs to
        // the settle step, which drops it once every lease is back.
        let old = expected as *const Generation<T>;
        let outstanding = unsafe { &*old }.outstanding(self.side);
        let before = outstanding.fetch_add(leases.wrapping_add(SEALED), Ordering::AcqRel);
        if before.wrapping_add(leases).wrapping_add(SEALED) == SEALED {
            // SAFETY: as above; every lease is back, so we are the only user left.
            unsafe { self.settle(old) };
        }
        true
    }

    /// Runs the side's action for a generation all of whose leases are back, and drops
    /// the reference the pointer used to own.
    ///
    /// # Safety
    ///
    /// `generation` was owned by this pointer, replaced, and its leases all returned.
    unsafe fn settle(&self, generation: *const Generation<T>) {
        // SAFETY: by the caller's contract we hold the pointer's former reference.
        let generation = unsafe { Arc::from_raw(generation) };
        if self.side == Side::Send {
            // SAFETY: every send lease on it is back and the send pointer has moved on,
            // so no push can reach this generation any more.
            unsafe { generation.queue.close() };
        }
    }
}

impl<T> Drop for GenPtr<T> {
    fn drop(&mut self) {
        let word = self.word.load(Ordering::Acquire);
        // SAFETY: the pointer owns one strong reference; no lease can be out during drop.
        drop(unsafe { Arc::from_raw((word & PTR_MASK) as *const Generation<T>) });
    }
}

fn into_word<T>(generation: Arc<Generation<T>>) -> usize {
    let raw = Arc::into_raw(generation) as usize;
    assert!(
        raw & !PTR_MASK == 0,
        "generation address {raw:#x} does not fit in 48 bits"
    );
    raw
}

impl<T> Lease<'_, T> {
    #[inline]
    pub(crate) fn generation(&self) -> &Generation<T> {
        // SAFETY: a lease keeps the generation alive: the pointer's reference is dropped
        // only after every lease, including this one, has been returned.
        unsafe { &*self.generation }
    }

    #[inline]
    pub(crate) fn flags(&self) -> usize {
        self.flags
    }
}

impl<T> Drop for Lease<'_, T> {
    #[inline]
    fn drop(&mut self) {
        let word = &self.ptr.word;
        let mine = self.generation as usize;
        let mut current = word.load(Ordering::Relaxed);
        // Still the current generation: give the lease back in the shared word.
        while current & PTR_MASK == mine {
            match word.compare_exchange_weak(
                current,
                current - ONE_LEASE,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
        // Replaced while we held it: our lease moved to the generation's counter.
        let outstanding = self.generation().outstanding(self.ptr.side);
        if outstanding.fetch_sub(1, Ordering::AcqRel).wrapping_sub(1) == SEALED {
            // SAFETY: replaced, and this was the last lease out.
            unsafe { self.ptr.settle(self.generation) };
        }
    }
}

// SAFETY: a `GenPtr` is an `Arc<Generation<T>>` with a lease count; it is shared the way
// the channel shares values of `T`, which needs `T: Send`.
unsafe impl<T: Send> Send for GenPtr<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for GenPtr<T> {}
