//! The fixed-capacity buffer behind one generation of a resizable channel.
//!
//! Normally this is a crossbeam-channel `bounded` channel. Loom cannot see inside
//! crossbeam, so under `cfg(pipeline_loom)` a small `Mutex<VecDeque>` + `Condvar` queue
//! with the same behaviour stands in for it, and loom checks our protocol around it.
//!
//! Besides pushing and popping, a generation has two one-shot broadcast events:
//! - *sealed*: the generation no longer takes new sends; it wakes senders blocked on
//!   a full buffer so they move to the newer generation;
//! - *closed*: every send into the generation has finished; it wakes receivers blocked
//!   on an empty buffer so they move on (or see the disconnect).

use std::time::Instant;

/// Outcome of a blocking push.
pub(crate) enum Push<T> {
    Pushed,
    /// The generation was sealed before there was room; the value comes back.
    Sealed(T),
    /// The deadline passed before there was room; the value comes back.
    Timeout(T),
}

/// Outcome of a blocking pop.
pub(crate) enum Pop<T> {
    Popped(T),
    /// The generation is closed and may be empty: look again, then move on.
    Closed,
    Timeout,
    /// The caller's [`Interrupt`] fired.
    Interrupted,
}

/// The operations the resize protocol needs from one generation's buffer.
pub(crate) trait BoundedQueue<T>: Sized {
    fn with_capacity(capacity: usize) -> Self;
    fn try_push(&self, value: T) -> Result<(), T>;
    fn try_pop(&self) -> Option<T>;
    /// Like `try_push`, but first spins briefly (as crossbeam does before it sleeps):
    /// most waits for room are shorter than going to sleep and waking up.
    fn try_push_spinning(&self, value: T) -> Result<(), T>;
    /// Waits until the value is pushed, the queue is sealed, or `deadline` passes.
    fn push_blocking(&self, value: T, deadline: Option<Instant>) -> Push<T>;
    /// Waits until a value is popped, the queue is closed, `deadline` passes, or
    /// `interrupt` fires.
    fn pop_blocking(&self, deadline: Option<Instant>, interrupt: Option<&Interrupt>) -> Pop<T>;
    fn len(&self) -> usize;
    fn is_full(&self) -> bool;
    /// Fires the sealed event (idempotent).
    fn seal(&self);
    /// Fires the closed event (idempotent).
    ///
    /// # Safety
    ///
    /// No `try_push`/`push_blocking` may run during or after this call: every send
    /// lease on the generation has been returned and no new one can be taken. (The
    /// crossbeam queue drops its sending end here, which is what wakes receivers.)
    unsafe fn close(&self);
    fn is_closed(&self) -> bool;
}

#[cfg(not(pipeline_loom))]
pub(crate) type Queue<T> = CrossbeamQueue<T>;
#[cfg(pipeline_loom)]
pub(crate) type Queue<T> = LoomQueue<T>;

#[cfg(not(pipeline_loom))]
pub(crate) use crossbeam_queue::{CrossbeamQueue, Interrupt};
#[cfg(pipeline_loom)]
pub(crate) use loom_queue::{Interrupt, LoomQueue};

#[cfg(not(pipeline_loom))]
mod crossbeam_queue {
    use super::{BoundedQueue, Pop, Push};
    use crate::sync::{Mutex, atomic::AtomicBool, atomic::Ordering, lock};
    use crossbeam_channel::{self as cb, Select};
    use crossbeam_utils::Backoff;
    use std::cell::UnsafeCell;
    use std::mem::ManuallyDrop;
    use std::time::Instant;

    /// A one-shot broadcast event: dropping the only sender of a zero-capacity
    /// channel wakes every `Select` waiting on its receiver, with no polling.
    struct Event {
        fire: Mutex<Option<cb::Sender<()>>>,
        wait: cb::Receiver<()>,
        fired: AtomicBool,
    }

    impl Event {
        fn new() -> Self {
            let (fire, wait) = cb::bounded(0);
            Event {
                fire: Mutex::new(Some(fire)),
                wait,
                fired: AtomicBool::new(false),
            }
        }

        fn fire(&self) {
            self.fired.store(true, Ordering::Release);
            drop(lock(&self.fire).take());
        }
    }

    /// A one-shot wake-up for a receiver that waits for a value *or* a request of
    /// its own (a pool's worker told to stop): firing it wakes that receiver's
    /// blocking wait, wherever in the chain it waits, with no polling. Level
    /// triggered: a wait that starts after it fired returns at once.
    pub(crate) struct Interrupt(Event);

    impl Interrupt {
        pub(crate) fn new() -> Self {
            Interrupt(Event::new())
        }

        /// Wakes the wait it is given to, now or when it starts (idempotent).
        pub(crate) fn fire(&self) {
            self.0.fire();
        }
    }

    pub(crate) struct CrossbeamQueue<T> {
        /// The only sending end; dropped by `close`, which disconnects the channel and so
        /// wakes receivers blocked in crossbeam's own (fast) `recv`.
        tx: UnsafeCell<ManuallyDrop<cb::Sender<T>>>,
        rx: cb::Receiver<T>,
        sealed: Event,
        closed: AtomicBool,
    }

    impl<T> CrossbeamQueue<T> {
        /// `pop_blocking` with an interrupt: one `Select` over the buffer and the
        /// interrupt's event.
        fn pop_interruptible(&self, deadline: Option<Instant>, interrupt: &Interrupt) -> Pop<T> {
            let mut select = Select::new();
            let pop = select.recv(&self.rx);
            select.recv(&interrupt.0.wait);
            let ready = match deadline {
                Some(deadline) => match select.select_deadline(deadline) {
                    Ok(ready) => ready,
                    Err(_) => return Pop::Timeout,
                },
                None => select.select(),
            };
            if ready.index() == pop {
                match ready.recv(&self.rx) {
                    Ok(value) => Pop::Popped(value),
                    Err(cb::RecvError) => Pop::Closed,
                }
            } else {
                let _ = ready.recv(&interrupt.0.wait);
                Pop::Interrupted
            }
        }

        #[inline]
        fn tx(&self) -> &cb::Sender<T> {
            // SAFETY: `close` (the only writer) runs only when no push can run (its
            // contract), and every caller of `tx` is a push.
            unsafe { &*self.tx.get() }
        }
    }

    impl<T> BoundedQueue<T> for CrossbeamQueue<T> {
        fn with_capacity(capacity: usize) -> Self {
            let (tx, rx) = cb::bounded(capacity);
            CrossbeamQueue {
                tx: UnsafeCell::new(ManuallyDrop::new(tx)),
                rx,
                sealed: Event::new(),
                closed: AtomicBool::new(false),
            }
        }

        #[inline]
        fn try_push(&self, value: T) -> Result<(), T> {
            // The queue owns the only sender and a receiver, so the only failure is a
            // full buffer.
            self.tx()
                .try_send(value)
                .map_err(cb::TrySendError::into_inner)
        }

        #[inline]
        fn try_pop(&self) -> Option<T> {
            self.rx.try_recv().ok()
        }

        fn try_push_spinning(&self, mut value: T) -> Result<(), T> {
            let backoff = Backoff::new();
            while !backoff.is_completed() {
                match self.tx().try_send(value) {
                    Ok(()) => return Ok(()),
                    Err(e) => value = e.into_inner(),
                }
                if self.sealed.fired.load(Ordering::Acquire) {
                    break;
                }
                backoff.snooze();
            }
            Err(value)
        }

        fn push_blocking(&self, value: T, deadline: Option<Instant>) -> Push<T> {
            let tx = self.tx();
            let mut select = Select::new();
            let send = select.send(tx);
            select.recv(&self.sealed.wait);
            let ready = match deadline {
                Some(deadline) => match select.select_deadline(deadline) {
                    Ok(ready) => ready,
                    Err(_) => return Push::Timeout(value),
                },
                None => select.select(),
            };
            if ready.index() == send {
                match ready.send(tx, value) {
                    Ok(()) => Push::Pushed,
                    Err(cb::SendError(value)) => Push::Sealed(value),
                }
            } else {
                let _ = ready.recv(&self.sealed.wait);
                Push::Sealed(value)
            }
        }

        fn pop_blocking(&self, deadline: Option<Instant>, interrupt: Option<&Interrupt>) -> Pop<T> {
            if let Some(interrupt) = interrupt {
                return self.pop_interruptible(deadline, interrupt);
            }
            let result = match deadline {
                Some(deadline) => self.rx.recv_deadline(deadline),
                None => self
                    .rx
                    .recv()
                    .map_err(|_| cb::RecvTimeoutError::Disconnected),
            };
            match result {
                Ok(value) => Pop::Popped(value),
                Err(cb::RecvTimeoutError::Disconnected) => Pop::Closed,
                Err(cb::RecvTimeoutError::Timeout) => Pop::Timeout,
            }
        }

        #[inline]
        fn len(&self) -> usize {
            self.rx.len()
        }

        fn is_full(&self) -> bool {
            self.rx.is_full()
        }

        fn seal(&self) {
            self.sealed.fire();
        }

        unsafe fn close(&self) {
            if !self.closed.swap(true, Ordering::AcqRel) {
                // SAFETY: no push runs now or later (the caller's contract), and the swap
                // above makes this the only drop.
                unsafe { ManuallyDrop::drop(&mut *self.tx.get()) };
            }
        }

        fn is_closed(&self) -> bool {
            self.closed.load(Ordering::Acquire)
        }
    }

    impl<T> Drop for CrossbeamQueue<T> {
        fn drop(&mut self) {
            if !*self.closed.get_mut() {
                // SAFETY: never closed, so the sender was never dropped; `&mut self`.
                unsafe { ManuallyDrop::drop(self.tx.get_mut()) };
            }
        }
    }

    // SAFETY: the `UnsafeCell` is written only by `close`, under the contract that no
    // reader runs; otherwise this is a pair of crossbeam handles, which are Send + Sync
    // for `T: Send`.
    unsafe impl<T: Send> Sync for CrossbeamQueue<T> {}
}

#[cfg(pipeline_loom)]
mod loom_queue {
    use super::{BoundedQueue, Pop, Push};
    use crate::sync::{
        Condvar, Mutex,
        atomic::{AtomicBool, Ordering},
        lock,
    };
    use std::collections::VecDeque;
    use std::time::Instant;

    struct Inner<T> {
        buf: VecDeque<T>,
        sealed: bool,
        closed: bool,
    }

    /// Loom stand-in for the crossbeam interrupt: a flag that a wait looks at before it
    /// sleeps. It does not wake a wait already asleep (the crossbeam version's `Select`
    /// is invisible to loom anyway); the models end idle workers by disconnecting.
    pub(crate) struct Interrupt(AtomicBool);

    impl Interrupt {
        pub(crate) fn new() -> Self {
            Interrupt(AtomicBool::new(false))
        }

        pub(crate) fn fire(&self) {
            self.0.store(true, Ordering::Release);
        }

        pub(crate) fn is_fired(&self) -> bool {
            self.0.load(Ordering::Acquire)
        }
    }

    /// Loom stand-in for the crossbeam queue. A deadline is treated as already passed
    /// when the call would otherwise wait: loom does not model time.
    pub(crate) struct LoomQueue<T> {
        capacity: usize,
        inner: Mutex<Inner<T>>,
        not_empty: Condvar,
        not_full: Condvar,
    }

    impl<T> BoundedQueue<T> for LoomQueue<T> {
        fn with_capacity(capacity: usize) -> Self {
            LoomQueue {
                capacity,
                inner: Mutex::new(Inner {
                    buf: VecDeque::new(),
                    sealed: false,
                    closed: false,
                }),
                not_empty: Condvar::new(),
                not_full: Condvar::new(),
            }
        }

        fn try_push(&self, value: T) -> Result<(), T> {
            let mut inner = lock(&self.inner);
            if inner.buf.len() < self.capacity {
                inner.buf.push_back(value);
                self.not_empty.notify_all();
                Ok(())
            } else {
                Err(value)
            }
        }

        fn try_pop(&self) -> Option<T> {
            let mut inner = lock(&self.inner);
            let value = inner.buf.pop_front();
            if value.is_some() {
                self.not_full.notify_all();
            }
            value
        }

        fn try_push_spinning(&self, value: T) -> Result<(), T> {
            self.try_push(value)
        }

        fn push_blocking(&self, value: T, deadline: Option<Instant>) -> Push<T> {
            let mut inner = lock(&self.inner);
            loop {
                if inner.buf.len() < self.capacity {
                    inner.buf.push_back(value);
                    self.not_empty.notify_all();
                    return Push::Pushed;
                }
                if inner.sealed {
                    return Push::Sealed(value);
                }
                if deadline.is_some() {
                    return Push::Timeout(value);
                }
                inner = self.not_full.wait(inner).unwrap_or_else(|p| p.into_inner());
            }
        }

        fn pop_blocking(&self, deadline: Option<Instant>, interrupt: Option<&Interrupt>) -> Pop<T> {
            let mut inner = lock(&self.inner);
            loop {
                if let Some(value) = inner.buf.pop_front() {
                    self.not_full.notify_all();
                    return Pop::Popped(value);
                }
                if inner.closed {
                    return Pop::Closed;
                }
                if interrupt.is_some_and(Interrupt::is_fired) {
                    return Pop::Interrupted;
                }
                if deadline.is_some() {
                    return Pop::Timeout;
                }
                inner = self
                    .not_empty
                    .wait(inner)
                    .unwrap_or_else(|p| p.into_inner());
            }
        }

        fn len(&self) -> usize {
            lock(&self.inner).buf.len()
        }

        fn is_full(&self) -> bool {
            lock(&self.inner).buf.len() >= self.capacity
        }

        fn seal(&self) {
            lock(&self.inner).sealed = true;
            self.not_full.notify_all();
        }

        unsafe fn close(&self) {
            lock(&self.inner).closed = true;
            self.not_empty.notify_all();
        }

        fn is_closed(&self) -> bool {
            lock(&self.inner).closed
        }
    }
}
