//! The protocol behind a resizable channel: the state every handle shares (the
//! chain of generations, the send and receive pointers, the control lock) and the
//! send, receive, resize and disconnect paths, with the hazards that say who is inside
//! which generation. The public handles are in `handles.rs`; the protocol and why it
//! is correct in docs/architecture.md.

use super::error::{RecvTimeoutError, ResizeError, SendTimeoutError, TryRecvError, TrySendError};
use super::generation::{FLAG_MASK, Generation, RECEIVERS_GONE, REFUSING, SENDERS_CLOSED};
use super::queue::{BoundedQueue, Interrupt, Pop, Push};
use super::stats::ChannelStats;
use super::wakers::WaitList;
use crate::hazard::{self, Registry, Slot};
use crate::sync::{
    Arc, Condvar, Mutex,
    atomic::{AtomicU64, AtomicUsize, Ordering},
    lock,
};
use crossbeam_utils::CachePadded;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

/// The hazards a channel uses in a thread's slot: the generation the thread is inside.
#[derive(Clone, Copy)]
#[repr(usize)]
enum Hazard {
    /// A send, from its check against the send pointer to its exit (also while it
    /// waits blocked on a full buffer).
    Send,
    /// A receive, likewise against the receive pointer.
    Recv,
    /// `len()` reading the only generation without the control lock.
    Len,
}

/// The counters a channel keeps in a thread's slot (only the owner writes them).
#[derive(Clone, Copy)]
#[repr(usize)]
enum Counter {
    /// Successful receives.
    Received,
    /// Successful sends: counted where they happen, so the total never goes
    /// backwards (it once was `received + len`, two reads that a receive in between
    /// could make go down).
    Sent,
}

impl From<Hazard> for usize {
    #[inline(always)]
    fn from(hazard: Hazard) -> usize {
        hazard as usize
    }
}

impl From<Counter> for usize {
    #[inline(always)]
    fn from(counter: Counter) -> usize {
        counter as usize
    }
}

/// A send samples the length for the high-water mark when its thread's send count
/// masked with this is 0: one send in 32.
#[cfg(not(pipeline_loom))]
const HIGH_WATER_MASK: u64 = 31;
/// Under loom every send samples, so the models see the sampling code.
#[cfg(pipeline_loom)]
const HIGH_WATER_MASK: u64 = 0;

/// Which sends read the length.
#[derive(Clone, Copy)]
enum SampleAt {
    /// Those that find the thread's send count, after counting this one, 0 under
    /// the mask: one send in `mask + 1`.
    Tick(u64),
    /// This one or not, as the caller (who counts for itself) decided.
    Now(bool),
}

impl SampleAt {
    /// Counts a successful send in this thread's slot and says whether it samples.
    #[inline(always)]
    fn count_sent(self, slot: &Slot) -> bool {
        match self {
            SampleAt::Tick(mask) => slot.tick(Counter::Sent, mask),
            SampleAt::Now(now) => {
                slot.add(Counter::Sent, 1);
                now
            }
        }
    }
}

/// A length read by a send or receive at a sample point, inside the generation it
/// was already in (no second hazard).
#[derive(Clone, Copy)]
struct Sample {
    /// That generation's length.
    len: usize,
    /// Whether it was the only generation, so `len` is the channel's whole length.
    whole: bool,
}

/// The state every handle of one channel shares.
///
/// Generations are reached by address. The hot paths (a send, a receive) publish the
/// generation they are about to use in their thread's [`Slot`]
/// (a *hazard*), then check that the channel still points there; the rare paths scan
/// the slots after an expensive fence. See docs/architecture.md.
pub(super) struct Shared<T> {
    /// Address of the newest generation, where sends go, with `RECEIVERS_GONE`.
    /// Padded: written rarely, read by every send.
    send: CachePadded<AtomicUsize>,
    /// Address of the oldest generation that may still hold values, where receives
    /// come from.
    recv: CachePadded<AtomicUsize>,
    /// Work the rare paths left for whoever leaves a generation next.
    pending: CachePadded<Pending>,
    /// Serialises resizes, closing, freeing and the disconnects; never taken by a send
    /// or receive that stays inside one generation.
    control: Mutex<Control>,
    /// Notified when the last unclosed generation closes after the receivers left:
    /// the last receiver's drop waits on it (with `control`) before dropping values.
    all_closed: Condvar,
    /// One slot per thread that uses the channel: hazards and counters.
    registry: std::sync::Arc<Registry>,
    pub(super) senders: AtomicUsize,
    pub(super) receivers: AtomicUsize,
    /// The process that made the channel: a forked child that blocks on a channel
    /// made before the fork fails loudly instead of waiting for threads that were not
    /// copied (checked only before a thread goes to sleep, where a `getpid` is cheap).
    pid: u32,
    /// Tasks waiting in `recv_async` (or a stream) for a value, a closed generation
    /// or the disconnect. Notified after every push (one relaxed load while no task
    /// waits: see `wakers.rs`).
    pub(super) recv_waiters: WaitList,
    /// Tasks waiting in `send_async` for room, a resize or the disconnect. Notified
    /// after every pop.
    pub(super) send_waiters: WaitList,
    counters: CachePadded<Counters>,
    _owns: PhantomData<Box<Generation<T>>>,
}

// SAFETY: generations are reached by address, but only ever as `&Generation<T>`, whose
// queue is Send + Sync for `T: Send`; everything else is atomics and a mutex.
unsafe impl<T: Send> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Shared<T> {}

/// Nonzero while a rare path has work that a thread leaving a generation may finish.
struct Pending {
    /// Replaced generations not yet closed (`Control::unclosed.len()`).
    unclosed: AtomicUsize,
    /// Drained generations not yet freed (`Control::retired.len()`).
    unfreed: AtomicUsize,
}

struct Control {
    /// Address of the newest generation.
    newest: usize,
    capacity: usize,
    /// Replaced generations that a send may still be inside; closed once none is.
    unclosed: Vec<usize>,
    /// Generations receivers have left; freed once no thread is inside.
    retired: Vec<usize>,
    /// `close_all` was called (the send word carries `SENDERS_CLOSED`); kept here too
    /// so the control paths check it without another atomic access.
    senders_closed: bool,
    /// The last receiver is gone (the send word carries `RECEIVERS_GONE`).
    receivers_gone: bool,
    /// A value's `Drop` panicked while they were dropped: the rest are leaked, as
    /// crossbeam-channel does, rather than dropped while unwinding (an abort).
    leak: bool,
}

#[derive(Default)]
struct Counters {
    high_water: AtomicUsize,
    full_events: AtomicU64,
    blocked_nanos: AtomicU64,
    /// Senders (threads or tasks) waiting for room now.
    waiting: AtomicUsize,
    resizes: AtomicU64,
}

impl<T> Shared<T> {
    /// The state of a new channel of `capacity`, with one sender and one receiver.
    pub(super) fn new(capacity: usize) -> Arc<Self> {
        hazard::fence::init();
        let first = Generation::<T>::allocate(capacity);
        Arc::new(Shared {
            send: CachePadded::new(AtomicUsize::new(first)),
            recv: CachePadded::new(AtomicUsize::new(first)),
            pending: CachePadded::new(Pending {
                unclosed: AtomicUsize::new(0),
                unfreed: AtomicUsize::new(0),
            }),
            control: Mutex::new(Control {
                newest: first,
                capacity,
                unclosed: Vec::new(),
                retired: Vec::new(),
                senders_closed: false,
                receivers_gone: false,
                leak: false,
            }),
            all_closed: Condvar::new(),
            registry: Registry::new(),
            senders: AtomicUsize::new(1),
            receivers: AtomicUsize::new(1),
            pid: std::process::id(),
            recv_waiters: WaitList::new(),
            send_waiters: WaitList::new(),
            counters: CachePadded::new(Counters::default()),
            _owns: PhantomData,
        })
    }
}

impl<T> Shared<T> {
    /// Publishes this thread as inside the newest generation and returns the send word
    /// (address and flags). The generation cannot be closed or freed until
    /// [`Shared::leave_send`].
    #[inline(always)]
    fn enter_send(&self, slot: &Slot) -> usize {
        loop {
            let word = self.send.load(Ordering::Acquire);
            slot.hazard(Hazard::Send)
                .store(word & !FLAG_MASK, Ordering::Relaxed);
            // Pairs with the heavy fence of `close_pending`: either that scan sees our
            // hazard, or we see the pointer it moved.
            hazard::light();
            if self.send.load(Ordering::Acquire) == word {
                return word;
            }
            self.withdraw_send(slot, word & !FLAG_MASK);
            // Our brief hazard may have stopped a retired generation from being freed.
            if self.pending.unfreed.load(Ordering::Acquire) != 0 {
                self.free_retired(&mut lock(&self.control));
            }
        }
    }

    /// Withdraws this thread's send hazard, and closes replaced generations if this
    /// was the last send inside one.
    #[inline(always)]
    fn leave_send(&self, slot: &Slot) {
        let address = slot.hazard(Hazard::Send).load(Ordering::Relaxed);
        #[cfg(pipeline_loom)]
        // SAFETY: loom only; our hazard still protects it.
        unsafe { Generation::<T>::at(address) }.assert_alive();
        self.withdraw_send(slot, address);
    }

    /// The second half of `leave_send`, also used when the check in `enter_send`
    /// failed (the generation was never used, and may already be gone).
    #[inline(always)]
    fn withdraw_send(&self, slot: &Slot, address: usize) {
        slot.hazard(Hazard::Send).store(0, Ordering::Release);
        // Pairs with the heavy fence of `close_pending`: either its scan saw us gone,
        // or we see the generation it left for us to close and the pointer moved away
        // from ours. Only a thread that was inside a replaced generation has work.
        hazard::light();
        if self.pending.unclosed.load(Ordering::Acquire) != 0 {
            let word = self.send.load(Ordering::Acquire);
            // Replaced by a resize, or closed where it stands (to all senders, or
            // because the receivers left).
            if word & !FLAG_MASK != address || word & REFUSING != 0 {
                let closed = self.close_pending(&mut lock(&self.control));
                if closed {
                    // Async receivers waiting for this generation to close (to move
                    // on, or to see the disconnect).
                    self.recv_waiters.wake_all();
                }
            }
        }
    }

    /// Publishes this thread as inside the oldest generation and returns its address.
    #[inline(always)]
    fn enter_recv(&self, slot: &Slot) -> usize {
        loop {
            let address = self.recv.load(Ordering::Acquire);
            slot.hazard(Hazard::Recv).store(address, Ordering::Relaxed);
            hazard::light();
            if self.recv.load(Ordering::Acquire) == address {
                return address;
            }
            self.withdraw_recv(slot, address);
        }
    }

    #[inline(always)]
    fn leave_recv(&self, slot: &Slot) {
        let address = slot.hazard(Hazard::Recv).load(Ordering::Relaxed);
        #[cfg(pipeline_loom)]
        // SAFETY: loom only; our hazard still protects it.
        unsafe { Generation::<T>::at(address) }.assert_alive();
        self.withdraw_recv(slot, address);
    }

    /// The second half of `leave_recv`, also used when the check in `enter_recv`
    /// failed (the generation was never used, and may already be gone).
    #[inline(always)]
    fn withdraw_recv(&self, slot: &Slot, address: usize) {
        slot.hazard(Hazard::Recv).store(0, Ordering::Release);
        // Pairs with the heavy fence of `free_retired`, as in `withdraw_send`.
        hazard::light();
        if self.pending.unfreed.load(Ordering::Acquire) != 0
            && self.recv.load(Ordering::Acquire) != address
        {
            self.free_retired(&mut lock(&self.control));
        }
    }

    /// Closes every replaced generation that no send is inside any more: from then on
    /// no value can enter it, which is what lets receivers leave it once it is empty.
    /// Returns whether it closed any: the caller then wakes the async receivers (with
    /// the control lock released), who may be waiting for exactly that.
    #[cold]
    #[must_use]
    fn close_pending(&self, control: &mut Control) -> bool {
        hazard::heavy();
        let before = control.unclosed.len();
        control.unclosed.retain(|&address| {
            if self.registry.any_hazard(address, &[Hazard::Send]) {
                return true;
            }
            // SAFETY: replaced generations are still in the chain (receivers cannot
            // leave one before it is closed), and we hold the control lock. No send is
            // inside it (the scan after the fence) and none can enter: the send
            // pointer moved before the fence, so a later sender's check fails.
            unsafe { Generation::<T>::at(address).queue.close() };
            false
        });
        self.pending
            .unclosed
            .store(control.unclosed.len(), Ordering::Release);
        if control.receivers_gone && control.unclosed.is_empty() {
            // The last receiver's drop waits for this to drop what is buffered.
            self.all_closed.notify_all();
        }
        control.unclosed.len() != before
    }

    /// Panics if this is a forked child of the process that made the channel: the
    /// threads that would wake a blocked send or receive were not copied, so it would
    /// sleep forever (see docs/architecture.md, "Fork, signals and membarrier
    /// refusal").
    #[cold]
    fn check_process(&self) {
        let now = std::process::id();
        assert!(
            now == self.pid,
            "pipeline-core: a channel made in process {} was used to wait in process {now}, \
             a child forked from it; channels made before a fork must not be used in the child",
            self.pid
        );
    }

    /// Frees every retired generation that no thread is inside any more.
    #[cold]
    fn free_retired(&self, control: &mut Control) {
        hazard::heavy();
        control.retired.retain(|&address| {
            if self
                .registry
                .any_hazard(address, &[Hazard::Send, Hazard::Recv, Hazard::Len])
            {
                return true;
            }
            // SAFETY: receivers moved past it before it was retired, and senders long
            // before that (it was closed), so a thread that publishes it as a hazard
            // now fails its check; the scan saw no thread inside. Retired once, so
            // freed once.
            unsafe { Generation::<T>::free(address) };
            false
        });
        self.pending
            .unfreed
            .store(control.retired.len(), Ordering::Release);
    }

    /// The number of values buffered. Without a resize in progress (one generation)
    /// it reads that generation's length under a hazard, taking no lock: the bus
    /// samples it while publishing.
    #[inline]
    pub(super) fn len(&self) -> usize {
        let single = {
            let slot = self.registry.slot();
            let hazard = slot.hazard(Hazard::Len);
            let address = loop {
                let address = self.recv.load(Ordering::Acquire);
                hazard.store(address, Ordering::Relaxed);
                hazard::light();
                if self.recv.load(Ordering::Acquire) == address {
                    break address;
                }
                self.withdraw_len(slot, address);
            };
            // SAFETY: our hazard keeps it allocated until `withdraw_len`.
            let generation = unsafe { Generation::<T>::at(address) };
            let len = (generation.next() == 0).then(|| generation.queue.len());
            self.withdraw_len(slot, address);
            len
        };
        single.unwrap_or_else(|| self.len_locked())
    }

    /// Like `withdraw_recv`, for the hazard `len` uses.
    #[inline]
    fn withdraw_len(&self, slot: &Slot, address: usize) {
        slot.hazard(Hazard::Len).store(0, Ordering::Release);
        hazard::light();
        if self.pending.unfreed.load(Ordering::Acquire) != 0
            && self.recv.load(Ordering::Acquire) != address
        {
            self.free_retired(&mut lock(&self.control));
        }
    }

    /// The length summed over every generation, under the control lock.
    fn len_locked(&self) -> usize {
        let _control = lock(&self.control);
        let mut address = self.recv.load(Ordering::Acquire);
        let mut len = 0;
        while address != 0 {
            // SAFETY: we hold the control lock, so no generation is freed, and every
            // generation from the receive pointer on is still in the chain.
            let generation = unsafe { Generation::<T>::at(address) };
            len += generation.queue.len();
            address = generation.next();
        }
        len
    }

    pub(super) fn capacity(&self) -> usize {
        lock(&self.control).capacity
    }

    pub(super) fn is_full(&self) -> bool {
        let control = lock(&self.control);
        // SAFETY: the newest generation is never freed while it is the newest.
        unsafe { Generation::<T>::at(control.newest) }
            .queue
            .is_full()
    }

    fn note_len(&self, len: usize) {
        let high_water = &self.counters.high_water;
        if len > high_water.load(Ordering::Relaxed) {
            high_water.fetch_max(len, Ordering::Relaxed);
        }
    }

    pub(super) fn stats(&self) -> ChannelStats {
        let len = self.len();
        // A peak only this call saw is kept too, so the mark never goes backwards.
        self.note_len(len);
        let received = self.registry.sum(Counter::Received);
        let sent = self.registry.sum(Counter::Sent);
        let c = &self.counters;
        ChannelStats {
            len,
            capacity: self.capacity(),
            high_water_mark: c.high_water.load(Ordering::Relaxed).max(len),
            sent,
            received,
            full_events: c.full_events.load(Ordering::Relaxed),
            blocked_time: Duration::from_nanos(c.blocked_nanos.load(Ordering::Relaxed)),
            waiting_senders: c.waiting.load(Ordering::Relaxed),
            resizes: c.resizes.load(Ordering::Relaxed),
        }
    }

    #[inline(always)]
    pub(super) fn send_deadline(
        &self,
        value: T,
        deadline: Option<Instant>,
    ) -> Result<(), SendTimeoutError<T>> {
        let slot = self.registry.slot();
        match self.push_once(slot, value, SampleAt::Tick(HIGH_WATER_MASK), true) {
            Ok(_) => Ok(()),
            Err(TrySendError::Disconnected(value)) => Err(SendTimeoutError::Disconnected(value)),
            Err(TrySendError::Full(value)) => self.send_full(slot, value, deadline),
        }
    }

    /// One attempt to push into the newest generation: the whole of a send that finds
    /// room. A full buffer is counted here, once per call of `send` or `try_send`.
    ///
    /// A send that `sample_at` picks reads the length (for the high-water mark) and
    /// returns it.
    ///
    /// `count_full` is `false` for the later attempts of one `send_async`, which count
    /// a full buffer once, as `send` does.
    #[inline(always)]
    fn push_once(
        &self,
        slot: &Slot,
        value: T,
        sample_at: SampleAt,
        count_full: bool,
    ) -> Result<Option<Sample>, TrySendError<T>> {
        let word = self.enter_send(slot);
        if word & REFUSING != 0 {
            self.leave_send(slot);
            return Err(TrySendError::Disconnected(value));
        }
        // SAFETY: our hazard keeps it open and allocated until `leave_send`.
        let generation = unsafe { Generation::<T>::at(word) };
        let result = generation.queue.try_push(value);
        let sample = match result {
            Ok(()) if sample_at.count_sent(slot) => {
                let len = generation.queue.len();
                self.note_len(len);
                Some(Sample {
                    len,
                    // The receive pointer at the newest generation: no other. Only a
                    // caller that wants the length asks (the high-water mark does not).
                    whole: matches!(sample_at, SampleAt::Now(_))
                        && self.recv.load(Ordering::Acquire) == word & !FLAG_MASK,
                })
            }
            Ok(()) => None,
            Err(_) => {
                if count_full {
                    self.note_full(generation.queue.len());
                }
                None
            }
        };
        self.leave_send(slot);
        match result {
            Ok(()) => {
                // Behind the light fence of `leave_send`: one relaxed load while no
                // task waits for a value.
                self.recv_waiters.notify();
                Ok(sample)
            }
            Err(value) => Err(TrySendError::Full(value)),
        }
    }

    /// A send that found the buffer full (already counted): spin briefly, then sleep
    /// until there is room, a resize, the deadline or the receivers' disconnect.
    #[cold]
    fn send_full(
        &self,
        slot: &Slot,
        mut value: T,
        deadline: Option<Instant>,
    ) -> Result<(), SendTimeoutError<T>> {
        let mut blocked_since = None;
        let result = loop {
            let word = self.enter_send(slot);
            if word & REFUSING != 0 {
                self.leave_send(slot);
                break Err(SendTimeoutError::Disconnected(value));
            }
            // SAFETY: our hazard keeps it open and allocated until `leave_send`.
            let generation = unsafe { Generation::<T>::at(word) };
            let outcome = match generation.queue.try_push_spinning(value) {
                Ok(()) => Push::Pushed,
                Err(back) => {
                    if blocked_since.is_none() {
                        blocked_since = Some(Instant::now());
                        self.wait_started();
                    }
                    self.check_process();
                    generation.queue.push_blocking(back, deadline)
                }
            };
            self.leave_send(slot);
            match outcome {
                Push::Pushed => {
                    slot.add(Counter::Sent, 1);
                    self.recv_waiters.notify();
                    break Ok(());
                }
                // A resize replaced this generation (or the receivers left): look again.
                Push::Sealed(back) => value = back,
                Push::Timeout(back) => break Err(SendTimeoutError::Timeout(back)),
            }
        };
        if let Some(since) = blocked_since {
            self.add_blocked(since);
        }
        result
    }

    #[inline(always)]
    pub(super) fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        self.push_once(
            self.registry.slot(),
            value,
            SampleAt::Tick(HIGH_WATER_MASK),
            true,
        )
        .map(drop)
    }

    /// One attempt of `send_async`: `try_send`, counting a full buffer only on the
    /// `first` attempt of the call.
    #[inline]
    pub(super) fn try_send_async(&self, value: T, first: bool) -> Result<(), TrySendError<T>> {
        self.push_once(
            self.registry.slot(),
            value,
            SampleAt::Tick(HIGH_WATER_MASK),
            first,
        )
        .map(drop)
    }

    /// `try_send` that, with `sample`, also returns the whole length after the send.
    #[inline(always)]
    pub(super) fn try_send_sampled(
        &self,
        value: T,
        sample: bool,
    ) -> Result<Option<usize>, TrySendError<T>> {
        let sample = self.push_once(self.registry.slot(), value, SampleAt::Now(sample), true)?;
        Ok(sample.map(|sample| self.whole_len(sample)))
    }

    /// The channel's length from a sample: the sample itself unless other
    /// generations were alive (a resize in progress, rare), then counted again.
    #[inline(always)]
    fn whole_len(&self, sample: Sample) -> usize {
        if sample.whole { sample.len } else { self.len() }
    }

    /// Counts a send that found the buffer full, and the length it found.
    #[cold]
    fn note_full(&self, len: usize) {
        self.counters.full_events.fetch_add(1, Ordering::Relaxed);
        self.note_len(len);
    }

    /// Receives from the oldest generation that may hold values; `wait` is `false` for
    /// a non-blocking attempt.
    #[inline(always)]
    pub(super) fn recv_deadline(
        &self,
        wait: bool,
        deadline: Option<Instant>,
    ) -> Result<T, RecvTimeoutError> {
        self.recv_sampled(wait, deadline, None, None)
            .map(|(value, _)| value)
    }

    #[inline(always)]
    pub(super) fn try_recv(&self) -> Result<T, TryRecvError> {
        self.recv_sampled(false, None, None, None)
            .map(|(value, _)| value)
            .map_err(|e| match e {
                RecvTimeoutError::Timeout => TryRecvError::Empty,
                RecvTimeoutError::Disconnected => TryRecvError::Disconnected,
            })
    }

    /// A receive (`wait` is `false` for a non-blocking attempt) that, with
    /// `Some(sample_mask)`, also returns the whole length after it when this thread's
    /// receive count masked with `sample_mask` is 0. A wait ends early, with
    /// `Timeout`, when `interrupt` fires.
    #[inline(always)]
    pub(super) fn recv_sampled(
        &self,
        wait: bool,
        deadline: Option<Instant>,
        sample_mask: Option<u64>,
        interrupt: Option<&Interrupt>,
    ) -> Result<(T, Option<usize>), RecvTimeoutError> {
        let slot = self.registry.slot();
        let sample_now = sample_mask.is_some_and(|mask| slot.peek(Counter::Received) & mask == 0);
        let result = match self.pop_once(slot, sample_now) {
            Some((value, sample)) => Ok((value, sample.map(|s| self.whole_len(s)))),
            None => self
                .recv_in(slot, wait, deadline, interrupt, true)
                .map(|value| (value, sample_now.then(|| self.len()))),
        };
        if result.is_ok() {
            slot.add(Counter::Received, 1);
            // Behind the light fence of `leave_recv`: one relaxed load while no task
            // waits for room.
            self.send_waiters.notify();
        }
        result
    }

    /// One attempt of `recv_async`: like `try_recv`, but it never waits, not even for
    /// a send in progress in a replaced generation. `Empty` means "register, then look
    /// again": a push wakes the registered tasks, and so does the closing of a
    /// generation (the last send in progress leaving it).
    #[inline]
    pub(super) fn try_recv_async(&self) -> Result<T, TryRecvError> {
        let slot = self.registry.slot();
        let result = match self.pop_once(slot, false) {
            Some((value, _)) => Ok(value),
            None => self.recv_in(slot, false, None, None, false),
        };
        match result {
            Ok(value) => {
                slot.add(Counter::Received, 1);
                self.send_waiters.notify();
                Ok(value)
            }
            Err(RecvTimeoutError::Timeout) => Err(TryRecvError::Empty),
            Err(RecvTimeoutError::Disconnected) => Err(TryRecvError::Disconnected),
        }
    }

    /// A send (sync or async) starts waiting for room: counted in
    /// [`ChannelStats::waiting_senders`] until [`add_blocked`](Self::add_blocked).
    #[cold]
    pub(super) fn wait_started(&self) {
        self.counters.waiting.fetch_add(1, Ordering::Relaxed);
    }

    /// A send that waited since `since` stopped waiting (sent, failed, timed out or
    /// dropped): adds the time to the blocked-time counter and ends its count as
    /// waiting.
    #[cold]
    pub(super) fn add_blocked(&self, since: Instant) {
        let nanos = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.counters
            .blocked_nanos
            .fetch_add(nanos, Ordering::Relaxed);
        self.counters.waiting.fetch_sub(1, Ordering::Relaxed);
    }

    /// One attempt to pop from the oldest generation: the whole of a receive that
    /// finds a value there. With `sample`, it also reads the length after the pop.
    #[inline(always)]
    fn pop_once(&self, slot: &Slot, sample: bool) -> Option<(T, Option<Sample>)> {
        let address = self.enter_recv(slot);
        // SAFETY: our hazard keeps it allocated until `leave_recv`.
        let generation = unsafe { Generation::<T>::at(address) };
        let popped = generation.queue.try_pop().map(|value| {
            let sample = sample.then(|| Sample {
                len: generation.queue.len(),
                // The oldest generation with no successor: the only one.
                whole: generation.next() == 0,
            });
            (value, sample)
        });
        self.leave_recv(slot);
        popped
    }

    /// The rest of a receive whose first look found nothing. Without `wait`,
    /// `wait_for_sends` says whether a send in progress in a replaced generation is
    /// waited out (`try_recv`) or answered with `Timeout` (`recv_async`, which may not
    /// block its thread and is woken when that generation closes).
    #[cold]
    fn recv_in(
        &self,
        slot: &Slot,
        wait: bool,
        deadline: Option<Instant>,
        interrupt: Option<&Interrupt>,
        wait_for_sends: bool,
    ) -> Result<T, RecvTimeoutError> {
        loop {
            let address = self.enter_recv(slot);
            // SAFETY: our hazard keeps it allocated until `leave_recv`.
            let generation = unsafe { Generation::<T>::at(address) };
            if let Some(value) = generation.queue.try_pop() {
                self.leave_recv(slot);
                return Ok(value);
            }
            let outcome = self.recv_slow(
                generation,
                address,
                wait,
                deadline,
                interrupt,
                wait_for_sends,
            );
            self.leave_recv(slot);
            match outcome {
                Some(result) => return result,
                None => continue,
            }
        }
    }

    /// The rest of a receive that found `generation` empty: move on if it is closed,
    /// or wait. `None` means "look again".
    #[cold]
    fn recv_slow(
        &self,
        generation: &Generation<T>,
        address: usize,
        wait: bool,
        deadline: Option<Instant>,
        interrupt: Option<&Interrupt>,
        wait_for_sends: bool,
    ) -> Option<Result<T, RecvTimeoutError>> {
        if generation.queue.is_closed() {
            // Closed: every send into it has finished, so one more look is final.
            if let Some(value) = generation.queue.try_pop() {
                return Some(Ok(value));
            }
            let next = generation.next();
            if next == 0 {
                // Closed with no successor: the last sender is gone.
                return Some(Err(RecvTimeoutError::Disconnected));
            }
            if self
                .recv
                .compare_exchange(address, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                let mut control = lock(&self.control);
                control.retired.push(address);
                self.pending
                    .unfreed
                    .store(control.retired.len(), Ordering::Release);
            }
            return None;
        }
        if !wait && !wait_for_sends {
            return Some(Err(RecvTimeoutError::Timeout));
        }
        if !wait || deadline.is_some_and(|d| d <= Instant::now()) {
            return self.finish_sends(generation);
        }
        self.check_process();
        match generation.queue.pop_blocking(deadline, interrupt) {
            Pop::Popped(value) => Some(Ok(value)),
            Pop::Closed => None,
            Pop::Timeout | Pop::Interrupted => self.finish_sends(generation),
        }
    }

    /// A receive that may not wait (any more) found the oldest generation empty and
    /// open. If it is the newest, that is the answer: `Empty` (or `Timeout`). If it was
    /// replaced, a send into it is still in progress, and values whose sends have
    /// completed may sit in newer generations: answering `Empty` would hide them from
    /// a thread that just sent one (not linearizable), and taking one of them now
    /// could overtake the value in progress from the same sender (its later sends go
    /// to the newer generation). So wait for the sends in progress to finish, as
    /// crossbeam waits for a write in progress: the last one out closes the
    /// generation, which wakes this wait, and the caller looks again. A replaced
    /// generation is sealed, so those sends do not wait for room; this wait is as
    /// short as a push.
    #[cold]
    fn finish_sends(&self, generation: &Generation<T>) -> Option<Result<T, RecvTimeoutError>> {
        if generation.next() == 0 {
            return Some(Err(RecvTimeoutError::Timeout));
        }
        match generation.queue.pop_blocking(None, None) {
            Pop::Popped(value) => Some(Ok(value)),
            Pop::Closed | Pop::Timeout | Pop::Interrupted => None,
        }
    }

    pub(super) fn resize(&self, capacity: usize) -> Result<(), ResizeError> {
        if capacity == 0 {
            return Err(ResizeError::ZeroCapacity);
        }
        let mut control = lock(&self.control);
        if self.receivers.load(Ordering::Acquire) == 0 || control.senders_closed {
            return Err(ResizeError::Disconnected);
        }
        if control.capacity == capacity {
            return Ok(());
        }
        let next = Generation::<T>::allocate(capacity);
        let old = control.newest;
        // SAFETY: the newest generation is never freed while it is the newest.
        let old_generation = unsafe { Generation::<T>::at(old) };
        // Link first, so a receiver that sees the old generation closed finds its successor.
        old_generation.set_next(next);
        // Flags change only under the control lock, so this keeps them.
        let flags = self.send.load(Ordering::Relaxed) & FLAG_MASK;
        self.send.store(next | flags, Ordering::Release);
        // Wake senders blocked on the old, full buffer: they retry on the new one.
        old_generation.queue.seal();
        control.newest = next;
        control.capacity = capacity;
        control.unclosed.push(old);
        self.pending
            .unclosed
            .store(control.unclosed.len(), Ordering::Release);
        // Close it now if no send is inside; otherwise the last one out does.
        let closed = self.close_pending(&mut control);
        drop(control);
        self.counters.resizes.fetch_add(1, Ordering::Relaxed);
        // Async senders waiting for room retry in the new buffer; async receivers
        // waiting on the old one move on if it just closed.
        self.send_waiters.wake_all();
        if closed {
            self.recv_waiters.wake_all();
        }
        Ok(())
    }

    /// Closes the channel to every sender at once: sends fail with `Disconnected` from
    /// now on, and receivers get what is buffered, then `Disconnected`. The newest
    /// generation is closed as a resize closes the one it replaces: at once if no send
    /// is inside it, else by the last send to leave. Idempotent.
    pub(super) fn close_senders(&self) {
        let mut control = lock(&self.control);
        if control.senders_closed {
            return;
        }
        control.senders_closed = true;
        // Flags change only under the control lock. A send that entered before this
        // fails its check and looks again, seeing the flag; one inside is in our scan.
        self.send.fetch_or(SENDERS_CLOSED, Ordering::AcqRel);
        let newest = control.newest;
        // SAFETY: the newest generation is never freed while it is the newest.
        let generation = unsafe { Generation::<T>::at(newest) };
        // Wake senders blocked on a full buffer: they look again and see the flag.
        generation.queue.seal();
        if !control.unclosed.contains(&newest) {
            control.unclosed.push(newest);
        }
        self.pending
            .unclosed
            .store(control.unclosed.len(), Ordering::Release);
        let closed = self.close_pending(&mut control);
        drop(control);
        // Async senders fail from now on; async receivers see the disconnect once
        // the generation is closed and drained.
        self.send_waiters.wake_all();
        if closed {
            self.recv_waiters.wake_all();
        }
    }

    /// The last sender is gone: no send can start any more, so the newest generation
    /// is closed as it stands and receivers see the disconnect once it is drained.
    pub(super) fn disconnect_senders(&self) {
        let mut control = lock(&self.control);
        // Replaced generations too: no `Sender` is left, so no send is inside any.
        let newest = control.newest;
        for address in control.unclosed.drain(..).chain([newest]) {
            // SAFETY: only a `Sender` sends, and none is left (this is its drop), so no
            // push can reach any generation any more; all are still in the chain.
            unsafe { Generation::<T>::at(address).queue.close() };
        }
        self.pending.unclosed.store(0, Ordering::Release);
        // A last receiver's drop may be waiting for every generation to close.
        self.all_closed.notify_all();
        drop(control);
        // Async receivers drain what is left, then see the disconnect.
        self.recv_waiters.wake_all();
    }

    /// The last receiver is gone: fail every send from now on, wake blocked senders,
    /// and drop the values nobody will receive.
    ///
    /// A send that passed its check before the flag may still be inside the newest
    /// generation and push into it. So the newest generation is closed the way a
    /// resize closes the one it replaces (at once if no send is inside, else by the
    /// last send to leave), and this waits until every generation is closed before it
    /// drops anything: a send that completes is then either dropped with the rest (it
    /// took effect before the disconnect) or fails and hands its value back; none
    /// leaves a value behind, and none is given room by the drain. The sends it waits
    /// for are short (their generations are sealed, so none waits for room), and the
    /// wait sleeps on a condition variable that the last one out notifies. The values
    /// are dropped here, on the thread that dropped the last receiver, without the
    /// control lock: a value's `Drop` may use the channel (even drop its last
    /// `Sender`), and if one panics, the panic reaches the caller and the rest leak.
    pub(super) fn disconnect_receivers(&self) {
        let mut control = lock(&self.control);
        control.receivers_gone = true;
        self.send.fetch_or(RECEIVERS_GONE, Ordering::AcqRel);
        let newest = control.newest;
        // SAFETY: the newest generation is never freed while it is the newest.
        unsafe { Generation::<T>::at(newest) }.queue.seal();
        if !control.unclosed.contains(&newest) {
            control.unclosed.push(newest);
        }
        self.pending
            .unclosed
            .store(control.unclosed.len(), Ordering::Release);
        // No receiver is left, so no async receiver waits for what this closes.
        let _ = self.close_pending(&mut control);
        while !control.unclosed.is_empty() {
            control = self
                .all_closed
                .wait(control)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        drop(control);
        // Async senders wake and fail, handing their values back.
        self.send_waiters.wake_all();
        self.drain();
    }

    /// Drops every buffered value, oldest generation first, without the control lock.
    #[cold]
    fn drain(&self) {
        /// Marks the channel to leak what is left if a value's `Drop` panics: dropping
        /// the rest while that panic unwinds would abort the process.
        struct LeakRestOnPanic<'a, T> {
            shared: &'a Shared<T>,
            done: bool,
        }
        impl<T> Drop for LeakRestOnPanic<'_, T> {
            fn drop(&mut self) {
                if !self.done {
                    lock(&self.shared.control).leak = true;
                }
            }
        }
        let mut guard = LeakRestOnPanic {
            shared: self,
            done: false,
        };
        let mut address = self.recv.load(Ordering::Acquire);
        while address != 0 {
            // SAFETY: no receiver is left, so the receive pointer no longer moves and
            // nothing is retired or freed before `Shared` drops (we hold a handle);
            // every generation from the receive pointer on is alive. All of them are
            // closed, so nothing is pushed while we pop.
            let generation = unsafe { Generation::<T>::at(address) };
            while let Some(value) = generation.queue.try_pop() {
                drop(value);
            }
            address = generation.next();
        }
        guard.done = true;
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        let control = lock(&self.control);
        if control.leak {
            // A value's `Drop` panicked while the values were dropped: leak the
            // generations with what they hold (see `drain`).
            return;
        }
        for &address in &control.retired {
            // SAFETY: no handle is left, so no thread is inside; retired generations
            // are out of the chain and listed once.
            unsafe { Generation::<T>::free(address) };
        }
        let mut address = self.recv.load(Ordering::Acquire);
        while address != 0 {
            // SAFETY: as above; the chain from the receive pointer holds each
            // remaining generation once, and `next` is read before the free.
            let next = unsafe { Generation::<T>::at(address) }.next();
            unsafe { Generation::<T>::free(address) };
            address = next;
        }
    }
}
#[cfg(all(test, not(pipeline_loom)))]
mod tests {
    use super::*;
    use crate::channel::{RecvError, SendError, SendTimeoutError, Sender, bounded};
    use std::cell::RefCell;
    use std::thread;

    /// A thread's slot goes back to the channel when the thread ends, and the next
    /// thread reuses it: the slot count follows the threads alive, not the threads
    /// ever seen, and the counts carry over.
    #[test]
    fn slots_of_finished_threads_are_reused() {
        let (tx, rx) = bounded(4);
        for _ in 0..50 {
            let (tx, rx) = (tx.clone(), rx.clone());
            thread::spawn(move || {
                tx.send(1).unwrap();
                rx.recv().unwrap();
            })
            .join()
            .unwrap();
        }
        assert_eq!(tx.shared.registry.slot_count(), 1);
        let stats = tx.stats();
        assert_eq!((stats.sent, stats.received), (50, 50));
    }

    /// Generations that receivers have left are freed as soon as nobody is inside,
    /// not kept until the channel is dropped.
    #[test]
    fn drained_generations_are_freed() {
        let (tx, rx) = bounded(1);
        for capacity in 2..40 {
            tx.send(capacity).unwrap();
            tx.resize(capacity).unwrap();
            assert_eq!(rx.recv(), Ok(capacity));
        }
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        let control = lock(&tx.shared.control);
        assert!(
            control.retired.is_empty(),
            "{} unfreed",
            control.retired.len()
        );
        assert!(control.unclosed.is_empty());
        assert_eq!(tx.shared.recv.load(Ordering::Acquire), control.newest);
        assert_eq!(tx.shared.pending.unfreed.load(Ordering::Acquire), 0);
    }

    /// A sampled send reports the whole length, and only a sampled one does; while a
    /// resize leaves an older generation holding values, the report still counts
    /// them.
    #[test]
    fn sampled_sends_report_the_whole_length() {
        let (tx, rx) = bounded(64);
        let reports: Vec<_> = (1..=16)
            .map(|i| tx.try_send_sampled(i, i % 4 == 0).unwrap())
            .collect();
        let expected: Vec<_> = (1..=16).map(|n| (n % 4 == 0).then_some(n)).collect();
        assert_eq!(reports, expected);
        // 16 values stay behind in the old generation; the new one gets the next.
        tx.resize(128).unwrap();
        assert_eq!(tx.try_send_sampled(17, false), Ok(None));
        assert_eq!(tx.try_send_sampled(18, true), Ok(Some(18)));
        // Full: the value comes back, nothing is sampled.
        let (small, _small_rx) = bounded(1);
        small.try_send_sampled(1, true).unwrap();
        assert_eq!(small.try_send_sampled(2, true), Err(TrySendError::Full(2)));
        drop(rx);
    }

    /// A receive samples only when asked to, on one receive in `mask + 1` of its
    /// thread, and reports the whole length after it, also across generations.
    #[test]
    fn sampled_receives_report_the_whole_length() {
        let (tx, rx) = bounded(64);
        (0..10).for_each(|i| tx.send(i).unwrap());
        assert_eq!(rx.recv_sampled(false, None, None, None).unwrap(), (0, None));
        // One receive done: the one that finds the count at 4 samples.
        let reports: Vec<_> = (1..=4)
            .map(|_| rx.recv_sampled(false, None, Some(3), None).unwrap().1)
            .collect();
        assert_eq!(reports, [None, None, None, Some(5)]);
        tx.resize(8).unwrap();
        (10..13).for_each(|i| tx.send(i).unwrap());
        // Old generation: 5 left; new: 3. Every receive samples with a mask of 0.
        assert_eq!(
            rx.recv_sampled(false, None, Some(0), None).unwrap(),
            (5, Some(7))
        );
        let rest: Vec<_> =
            std::iter::from_fn(|| rx.recv_sampled(false, None, Some(0), None).ok()).collect();
        assert_eq!(rest.last(), Some(&(12, Some(0))));
        assert_eq!(rest.len(), 7);
    }

    /// `close_all` closes the channel to every sender handle at once: sends fail and
    /// hand the value back, a blocked send wakes and fails, receivers get what was
    /// sent before and then see the disconnect, and resizing is refused.
    #[test]
    fn close_all_disconnects_every_sender() {
        let (tx, rx) = bounded(2);
        let other = tx.clone();
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        let blocked = thread::spawn({
            let other = other.clone();
            move || other.send(3)
        });
        // Let the sender block on the full buffer (a resize would not free room).
        while tx.stats().full_events == 0 {
            thread::yield_now();
        }
        tx.close_all();
        assert_eq!(blocked.join().unwrap(), Err(SendError(3)));
        assert_eq!(other.try_send(4), Err(TrySendError::Disconnected(4)));
        assert_eq!(
            other.send_timeout(5, Duration::from_millis(1)),
            Err(SendTimeoutError::Disconnected(5))
        );
        assert_eq!(tx.resize(8), Err(ResizeError::Disconnected));
        tx.close_all(); // idempotent
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.recv(), Ok(2));
        assert_eq!(rx.recv(), Err(RecvError));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }

    /// Values sent into older generations before `close_all` still arrive, in order.
    #[test]
    fn close_all_during_a_resize_keeps_what_was_sent() {
        let (tx, rx) = bounded(2);
        tx.send(1).unwrap();
        tx.resize(4).unwrap();
        tx.send(2).unwrap();
        tx.close_all();
        assert_eq!(rx.iter().collect::<Vec<_>>(), [1, 2]);
    }

    /// A send from a thread-local destructor, after this thread's slot table is gone,
    /// claims a slot (kept for the rest of the thread) and still arrives.
    #[test]
    fn send_from_a_thread_local_destructor() {
        struct SendOnDrop(Sender<u32>);
        impl Drop for SendOnDrop {
            fn drop(&mut self) {
                self.0.send(7).unwrap();
            }
        }
        thread_local! {
            static LATE: RefCell<Option<SendOnDrop>> = const { RefCell::new(None) };
        }
        let (tx, rx) = bounded(4);
        let late = tx.clone();
        thread::spawn(move || {
            // Registered first, so destroyed after the slot table (reverse order).
            LATE.with(|l| *l.borrow_mut() = Some(SendOnDrop(late)));
            tx.send(1).unwrap();
        })
        .join()
        .unwrap();
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 7]);
        assert_eq!(rx.recv(), Err(RecvError));
        assert!(rx.shared.registry.slot_count() <= 2);
    }
}

/// Loom models of `close_all` (crate-private, so modelled here):
/// `RUSTFLAGS="--cfg pipeline_loom" cargo test -p pipeline-core --release --lib loom_models`.
#[cfg(all(test, pipeline_loom))]
mod loom_models {
    use crate::channel::bounded;
    use loom::thread;

    /// A sender racing `close_all`, with a receiver already waiting: every value whose
    /// send returned `Ok` arrives, in order, and the receiver then sees the
    /// disconnect (it is never left waiting on a generation nobody will close).
    #[test]
    fn close_all_races_a_send() {
        loom::model(|| {
            let (tx, rx) = bounded(2);
            let closer = tx.clone();
            let sender = thread::spawn(move || {
                let sent: Vec<u32> = (1..=2).filter(|&v| tx.send(v).is_ok()).collect();
                sent
            });
            let receiver = thread::spawn(move || {
                let mut got = Vec::new();
                while let Ok(v) = rx.recv() {
                    got.push(v);
                }
                got
            });
            closer.close_all();
            let sent = sender.join().unwrap();
            drop(closer);
            assert_eq!(receiver.join().unwrap(), sent);
        });
    }

    /// `close_all` while a resize leaves a send inside the replaced generation: both
    /// generations get closed (by whoever leaves last) and nothing sent is lost.
    #[test]
    fn close_all_after_a_resize_with_a_send_inside() {
        loom::model(|| {
            let (tx, rx) = bounded(1);
            let closer = tx.clone();
            let sender = thread::spawn(move || tx.send(1).is_ok());
            closer.resize(2).unwrap();
            closer.close_all();
            let sent = sender.join().unwrap();
            let got: Vec<_> = rx.iter().collect();
            assert_eq!(got, if sent { vec![1] } else { vec![] });
            drop(closer);
        });
    }
}
