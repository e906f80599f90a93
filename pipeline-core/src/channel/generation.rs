//! Generations: the fixed-capacity buffers a resizable channel is a chain of.
//!
//! A resize appends a generation and points senders at it; receivers drain the oldest
//! generation until it is *closed* (no send into it is still in progress, none can
//! start) and empty, then move to the next one. A generation is a heap allocation that
//! the channel frees once receivers have moved past it and no thread is still inside
//! it (see `protocol.rs` and docs/architecture.md for the protocol).

use super::queue::{BoundedQueue, Queue};
use crate::sync::atomic::{AtomicUsize, Ordering};

#[cfg(not(target_pointer_width = "64"))]
compile_error!("pipeline-core's resizable channel keeps flag bits in a pointer's low bits");

/// Low bits of a generation's address that are free for flags (it is 8-aligned).
pub(crate) const FLAG_MASK: usize = 0b111;
/// Set in the send word when every receiver is gone.
pub(crate) const RECEIVERS_GONE: usize = 0b001;
/// Set in the send word when the channel was closed to every sender at once
/// (`Sender::close_all`), while sender handles may still exist.
pub(crate) const SENDERS_CLOSED: usize = 0b010;
/// Either flag: a send that sees one fails with `Disconnected`.
pub(crate) const REFUSING: usize = RECEIVERS_GONE | SENDERS_CLOSED;

/// One fixed-capacity buffer in the chain.
#[repr(align(8))]
pub(crate) struct Generation<T> {
    pub(crate) queue: Queue<T>,
    /// Address of the generation that replaced this one, or 0; set before senders are
    /// pointed away from this one.
    next: AtomicUsize,
    /// Under loom a freed generation is kept (leaked) and marked, so a model can
    /// assert that no thread still inside one sees it freed.
    #[cfg(pipeline_loom)]
    freed: crate::sync::atomic::AtomicBool,
}

impl<T> Generation<T> {
    /// Allocates a generation and returns its address; [`Generation::free`] releases it.
    pub(crate) fn allocate(capacity: usize) -> usize {
        Box::into_raw(Box::new(Generation::<T> {
            queue: Queue::with_capacity(capacity),
            next: AtomicUsize::new(0),
            #[cfg(pipeline_loom)]
            freed: crate::sync::atomic::AtomicBool::new(false),
        })) as usize
    }

    /// # Safety
    ///
    /// `address` came from [`Generation::allocate`], is freed once, and nobody uses it
    /// afterwards.
    pub(crate) unsafe fn free(address: usize) {
        #[cfg(not(pipeline_loom))]
        // SAFETY: by the caller's contract.
        drop(unsafe { Box::from_raw(address as *mut Generation<T>) });
        #[cfg(pipeline_loom)]
        // SAFETY: by the caller's contract, it has not been freed yet.
        unsafe { Generation::<T>::at(address) }
            .freed
            .store(true, Ordering::Release);
    }

    /// Under loom, fails the model if the generation a thread is still inside has
    /// been freed.
    #[cfg(pipeline_loom)]
    pub(crate) fn assert_alive(&self) {
        assert!(
            !self.freed.load(Ordering::Acquire),
            "a generation was freed while a thread was inside it"
        );
    }

    /// # Safety
    ///
    /// `address` came from [`Generation::allocate`] and is not freed while the
    /// returned reference is used (the caller holds a hazard on it, or the channel's
    /// control lock with the generation still in the chain).
    #[inline]
    pub(crate) unsafe fn at<'a>(address: usize) -> &'a Generation<T> {
        // SAFETY: by the caller's contract.
        unsafe { &*((address & !FLAG_MASK) as *const Generation<T>) }
    }

    /// The generation that replaced this one, or 0.
    pub(crate) fn next(&self) -> usize {
        self.next.load(Ordering::Acquire)
    }

    pub(crate) fn set_next(&self, next: usize) {
        self.next.store(next, Ordering::Release);
    }
}
