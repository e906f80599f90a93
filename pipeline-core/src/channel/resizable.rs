//! `Sender`, `Receiver` and the state they share.

use super::error::{
    RecvError, RecvTimeoutError, ResizeError, SendError, SendTimeoutError, TryRecvError,
    TrySendError,
};
use super::generation::{GenPtr, Generation, RECEIVERS_GONE, Side};
use super::queue::{BoundedQueue, Pop, Push};
use super::stats::ChannelStats;
use crate::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, AtomicUsize, Ordering},
    lock,
};
use crossbeam_utils::CachePadded;
use std::fmt;
use std::time::{Duration, Instant};

/// Creates a channel that holds at most `capacity` values and can be resized later.
///
/// # Panics
///
/// If `capacity` is zero: a rendezvous channel cannot be resized into a buffer and
/// back without changing its meaning, so it is not offered.
///
/// # Examples
///
/// ```
/// use pipeline_core::channel::{bounded, TrySendError};
///
/// let (tx, rx) = bounded(1);
/// tx.send(1).unwrap();
/// assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
///
/// tx.resize(2).unwrap();
/// tx.send(2).unwrap();
/// assert_eq!(rx.recv(), Ok(1));
/// assert_eq!(rx.recv(), Ok(2));
/// ```
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    assert!(
        capacity > 0,
        "a resizable channel needs a capacity of at least 1"
    );
    let first = Arc::new(Generation::new(capacity));
    let shared = Arc::new(Shared {
        send: CachePadded::new(GenPtr::new(first.clone(), Side::Send)),
        recv: CachePadded::new(GenPtr::new(first.clone(), Side::Recv)),
        control: Mutex::new(Control {
            newest: first,
            capacity,
        }),
        senders: AtomicUsize::new(1),
        receivers: AtomicUsize::new(1),
        received: CachePadded::new(AtomicU64::new(0)),
        counters: CachePadded::new(Counters::default()),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

/// One send in this many (per thread) samples the length for the high-water mark.
#[cfg(not(pipeline_loom))]
const HIGH_WATER_EVERY: u32 = 32;

#[cfg(not(pipeline_loom))]
thread_local! {
    static SEND_TICK: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

struct Shared<T> {
    /// The newest generation, where sends go. Padded: senders and receivers each
    /// write their own pointer on every operation, and must not share a cache line.
    send: CachePadded<GenPtr<T>>,
    /// The oldest generation that may still hold values, where receives come from.
    recv: CachePadded<GenPtr<T>>,
    /// Serialises resizes and the last sender's goodbye; never taken by send or recv.
    control: Mutex<Control<T>>,
    senders: AtomicUsize,
    receivers: AtomicUsize,
    received: CachePadded<AtomicU64>,
    counters: CachePadded<Counters>,
}

struct Control<T> {
    newest: Arc<Generation<T>>,
    capacity: usize,
}

#[derive(Default)]
struct Counters {
    high_water: AtomicUsize,
    full_events: AtomicU64,
    blocked_nanos: AtomicU64,
    resizes: AtomicU64,
}

impl<T> Shared<T> {
    fn len(&self) -> usize {
        let lease = self.recv.lease();
        let mut generation = lease.generation().next();
        let mut len = lease.generation().queue.len();
        while let Some(g) = generation {
            len += g.queue.len();
            generation = g.next();
        }
        len
    }

    fn capacity(&self) -> usize {
        lock(&self.control).capacity
    }

    /// Samples the length for the high-water mark on one send in `HIGH_WATER_EVERY`
    /// per thread: reading the length touches the receivers' cache line, which would
    /// otherwise cost every send a cache miss under load.
    #[inline]
    fn sample_len(&self, generation: &Generation<T>) {
        // Loom replays each execution on the same OS threads: a std thread-local would
        // carry state across replays and make the model non-deterministic.
        #[cfg(pipeline_loom)]
        let due = true;
        #[cfg(not(pipeline_loom))]
        let due = SEND_TICK.with(|tick| {
            let n = tick.get().wrapping_add(1);
            tick.set(n);
            n % HIGH_WATER_EVERY == 1
        });
        if due {
            self.note_len(generation.queue.len());
        }
    }

    fn note_len(&self, len: usize) {
        let high_water = &self.counters.high_water;
        if len > high_water.load(Ordering::Relaxed) {
            high_water.fetch_max(len, Ordering::Relaxed);
        }
    }

    fn stats(&self) -> ChannelStats {
        let len = self.len();
        let received = self.received.load(Ordering::Relaxed);
        let c = &self.counters;
        ChannelStats {
            len,
            capacity: self.capacity(),
            high_water_mark: c.high_water.load(Ordering::Relaxed).max(len),
            sent: received + len as u64,
            received,
            full_events: c.full_events.load(Ordering::Relaxed),
            blocked_time: Duration::from_nanos(c.blocked_nanos.load(Ordering::Relaxed)),
            resizes: c.resizes.load(Ordering::Relaxed),
        }
    }

    fn send_deadline(
        &self,
        mut value: T,
        deadline: Option<Instant>,
    ) -> Result<(), SendTimeoutError<T>> {
        let mut counted_full = false;
        let mut blocked_since = None;
        let result = loop {
            let lease = self.send.lease();
            if lease.flags() & RECEIVERS_GONE != 0 {
                break Err(SendTimeoutError::Disconnected(value));
            }
            let generation = lease.generation();
            match generation.queue.try_push(value) {
                Ok(()) => {
                    self.sample_len(generation);
                    break Ok(());
                }
                Err(back) => value = back,
            }
            if !counted_full {
                counted_full = true;
                self.counters.full_events.fetch_add(1, Ordering::Relaxed);
                self.note_len(generation.queue.len());
            }
            match generation.queue.try_push_spinning(value) {
                Ok(()) => break Ok(()),
                Err(back) => value = back,
            }
            blocked_since.get_or_insert_with(Instant::now);
            match generation.queue.push_blocking(value, deadline) {
                Push::Pushed => break Ok(()),
                // A resize replaced this generation (or the receivers left): look again.
                Push::Sealed(back) => value = back,
                Push::Timeout(back) => break Err(SendTimeoutError::Timeout(back)),
            }
        };
        if let Some(since) = blocked_since {
            let nanos = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.counters
                .blocked_nanos
                .fetch_add(nanos, Ordering::Relaxed);
        }
        result
    }

    fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let lease = self.send.lease();
        if lease.flags() & RECEIVERS_GONE != 0 {
            return Err(TrySendError::Disconnected(value));
        }
        let generation = lease.generation();
        match generation.queue.try_push(value) {
            Ok(()) => {
                self.sample_len(generation);
                Ok(())
            }
            Err(value) => {
                self.counters.full_events.fetch_add(1, Ordering::Relaxed);
                self.note_len(generation.queue.len());
                Err(TrySendError::Full(value))
            }
        }
    }

    /// Receives from the oldest generation that may hold values; `wait` is `false` for
    /// a non-blocking attempt.
    fn recv_deadline(&self, wait: bool, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        loop {
            let lease = self.recv.lease();
            let generation = lease.generation();
            if let Some(value) = generation.queue.try_pop() {
                self.received.fetch_add(1, Ordering::Relaxed);
                return Ok(value);
            }
            if generation.queue.is_closed() {
                // Closed: every send into it has finished, so one more look is final.
                if let Some(value) = generation.queue.try_pop() {
                    self.received.fetch_add(1, Ordering::Relaxed);
                    return Ok(value);
                }
                match generation.next() {
                    Some(next) => {
                        self.recv.replace(generation, next);
                        continue;
                    }
                    None => return Err(RecvTimeoutError::Disconnected),
                }
            }
            if !wait || deadline.is_some_and(|d| d <= Instant::now()) {
                return Err(RecvTimeoutError::Timeout);
            }
            match generation.queue.pop_blocking(deadline) {
                Pop::Popped(value) => {
                    self.received.fetch_add(1, Ordering::Relaxed);
                    return Ok(value);
                }
                Pop::Closed => continue,
                Pop::Timeout => return Err(RecvTimeoutError::Timeout),
            }
        }
    }

    fn resize(&self, capacity: usize) -> Result<(), ResizeError> {
        if capacity == 0 {
            return Err(ResizeError::ZeroCapacity);
        }
        let mut control = lock(&self.control);
        if self.receivers.load(Ordering::Acquire) == 0 {
            return Err(ResizeError::Disconnected);
        }
        if control.capacity == capacity {
            return Ok(());
        }
        let next = Arc::new(Generation::new(capacity));
        // Link first, so a receiver that sees the old generation closed finds its successor.
        control.newest.set_next(next.clone());
        let replaced = self.send.replace(&control.newest, next.clone());
        debug_assert!(replaced, "only the control lock moves the send pointer");
        // Wake senders blocked on the old, full buffer: they retry on the new one.
        control.newest.queue.seal();
        control.newest = next;
        control.capacity = capacity;
        self.counters.resizes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The last sender is gone: no send can start any more, so the newest generation
    /// is closed as it stands and receivers see the disconnect once it is drained.
    fn disconnect_senders(&self) {
        // SAFETY: no `Sender` is left, and only a `Sender` takes send leases, so no push
        // can reach the newest generation any more.
        unsafe { lock(&self.control).newest.queue.close() };
    }

    /// The last receiver is gone: fail every send from now on, wake blocked senders,
    /// and drop the values nobody will receive.
    fn disconnect_receivers(&self) {
        let control = lock(&self.control);
        self.send.set_flags(RECEIVERS_GONE);
        control.newest.queue.seal();
        drop(control);
        let mut next = {
            let lease = self.recv.lease();
            while lease.generation().queue.try_pop().is_some() {}
            lease.generation().next()
        };
        while let Some(generation) = next {
            while generation.queue.try_pop().is_some() {}
            next = generation.next();
        }
    }
}

/// The sending side of a resizable channel; clone it to send from many threads.
///
/// See [`bounded`].
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving side of a resizable channel; clone it to receive on many threads.
///
/// See [`bounded`].
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Sends a value, waiting while the channel is full.
    ///
    /// A resize that happens while this call waits wakes it, and it tries again in the
    /// newer, perhaps larger, buffer.
    ///
    /// # Errors
    ///
    /// [`SendError`] with the value when every [`Receiver`] has been dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_core::channel::bounded;
    ///
    /// let (tx, rx) = bounded(1);
    /// tx.send("hello").unwrap();
    /// drop(rx);
    /// assert_eq!(tx.send("world").unwrap_err().into_inner(), "world");
    /// ```
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.shared
            .send_deadline(value, None)
            .map_err(|e| SendError(e.into_inner()))
    }

    /// Sends a value if there is room now, without waiting.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] when the buffer is full, [`TrySendError::Disconnected`]
    /// when every receiver is gone; both hand the value back.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_core::channel::{bounded, TrySendError};
    ///
    /// let (tx, rx) = bounded(1);
    /// assert_eq!(tx.try_send(1), Ok(()));
    /// assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
    /// drop(rx);
    /// assert_eq!(tx.try_send(3), Err(TrySendError::Disconnected(3)));
    /// ```
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        self.shared.try_send(value)
    }

    /// Sends a value, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError::Timeout`] when no room appeared in time,
    /// [`SendTimeoutError::Disconnected`] when every receiver is gone; both hand the
    /// value back.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_core::channel::{bounded, SendTimeoutError};
    /// use std::time::Duration;
    ///
    /// let (tx, _rx) = bounded(1);
    /// tx.send(1).unwrap();
    /// let err = tx.send_timeout(2, Duration::from_millis(10)).unwrap_err();
    /// assert_eq!(err, SendTimeoutError::Timeout(2));
    /// ```
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.shared
            .send_deadline(value, Some(Instant::now() + timeout))
    }

    /// Changes the capacity while senders and receivers keep running.
    ///
    /// New sends go to a fresh buffer of `new_capacity` at once; values already buffered
    /// stay where they are and are received first, so nothing is copied, lost or
    /// reordered. Senders blocked on the full old buffer wake and retry in the new one.
    /// Until the old buffer is drained the channel may hold up to old + new capacity;
    /// after that at most `new_capacity`. The call never waits for senders or
    /// receivers; its cost does not depend on how many values are buffered.
    ///
    /// Resizing to the current capacity does nothing.
    ///
    /// # Errors
    ///
    /// [`ResizeError::ZeroCapacity`] for `new_capacity == 0`;
    /// [`ResizeError::Disconnected`] when every receiver is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_core::channel::{bounded, ResizeError};
    ///
    /// let (tx, rx) = bounded(2);
    /// tx.send(1).unwrap();
    /// tx.send(2).unwrap();
    /// tx.resize(4).unwrap();
    /// assert_eq!(tx.capacity(), 4);
    /// tx.send(3).unwrap();
    /// assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 2, 3]);
    /// assert_eq!(tx.resize(0), Err(ResizeError::ZeroCapacity));
    /// ```
    pub fn resize(&self, new_capacity: usize) -> Result<(), ResizeError> {
        self.shared.resize(new_capacity)
    }

    /// Number of values buffered, over every generation not yet drained.
    pub fn len(&self) -> usize {
        self.shared.len()
    }

    /// The capacity set by the latest resize (or at creation).
    pub fn capacity(&self) -> usize {
        self.shared.capacity()
    }

    /// Whether no value is buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a `try_send` would now find the channel full.
    pub fn is_full(&self) -> bool {
        self.shared.send.lease().generation().queue.is_full()
    }

    /// A snapshot of the channel's counters and gauges.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_core::channel::bounded;
    ///
    /// let (tx, rx) = bounded(2);
    /// tx.send(1).unwrap();
    /// tx.send(2).unwrap();
    /// assert!(tx.try_send(3).is_err()); // found it full: counted, high-water mark exact
    /// rx.recv().unwrap();
    /// let stats = tx.stats();
    /// assert_eq!((stats.sent, stats.received, stats.len), (2, 1, 1));
    /// assert_eq!((stats.full_events, stats.high_water_mark), (1, 2));
    /// ```
    pub fn stats(&self) -> ChannelStats {
        self.shared.stats()
    }
}

impl<T> Receiver<T> {
    /// Receives a value, waiting until one arrives.
    ///
    /// # Errors
    ///
    /// [`RecvError`] once every [`Sender`] is gone and the channel is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_core::channel::{bounded, RecvError};
    ///
    /// let (tx, rx) = bounded(1);
    /// std::thread::spawn(move || tx.send(7).unwrap());
    /// assert_eq!(rx.recv(), Ok(7));
    /// assert_eq!(rx.recv(), Err(RecvError));
    /// ```
    pub fn recv(&self) -> Result<T, RecvError> {
        self.shared.recv_deadline(true, None).map_err(|_| RecvError)
    }

    /// Receives a value if one is ready, without waiting.
    ///
    /// In the instant after a resize while a send into the old buffer is still in
    /// progress, this may report `Empty` even though newer values exist: they are
    /// behind that send in order. `recv` waits it out instead.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] when nothing is ready, [`TryRecvError::Disconnected`]
    /// when every sender is gone and the channel is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_core::channel::{bounded, TryRecvError};
    ///
    /// let (tx, rx) = bounded(1);
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    /// tx.send(1).unwrap();
    /// drop(tx);
    /// assert_eq!(rx.try_recv(), Ok(1));
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    /// ```
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.shared.recv_deadline(false, None).map_err(|e| match e {
            RecvTimeoutError::Timeout => TryRecvError::Empty,
            RecvTimeoutError::Disconnected => TryRecvError::Disconnected,
        })
    }

    /// Receives a value, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] when nothing arrived in time,
    /// [`RecvTimeoutError::Disconnected`] when every sender is gone and the channel is
    /// empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_core::channel::{bounded, RecvTimeoutError};
    /// use std::time::Duration;
    ///
    /// let (_tx, rx) = bounded::<u8>(1);
    /// assert_eq!(rx.recv_timeout(Duration::from_millis(5)), Err(RecvTimeoutError::Timeout));
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.shared
            .recv_deadline(true, Some(Instant::now() + timeout))
    }

    /// A blocking iterator that ends when every sender is gone and the channel is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_core::channel::bounded;
    ///
    /// let (tx, rx) = bounded(8);
    /// std::thread::spawn(move || (0..3).for_each(|i| tx.send(i).unwrap()));
    /// assert_eq!(rx.iter().collect::<Vec<_>>(), [0, 1, 2]);
    /// ```
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { receiver: self }
    }

    /// An iterator over the values ready now; it never waits.
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { receiver: self }
    }

    /// Number of values buffered, over every generation not yet drained.
    pub fn len(&self) -> usize {
        self.shared.len()
    }

    /// The capacity set by the latest resize (or at creation).
    pub fn capacity(&self) -> usize {
        self.shared.capacity()
    }

    /// Whether no value is buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A snapshot of the channel's counters and gauges.
    pub fn stats(&self) -> ChannelStats {
        self.shared.stats()
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.shared.receivers.fetch_add(1, Ordering::Relaxed);
        Receiver {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.disconnect_senders();
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        if self.shared.receivers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.disconnect_receivers();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("Sender { .. }")
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("Receiver { .. }")
    }
}

/// Blocking iterator returned by [`Receiver::iter`].
#[derive(Debug)]
pub struct Iter<'a, T> {
    receiver: &'a Receiver<T>,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.receiver.recv().ok()
    }
}

/// Non-blocking iterator returned by [`Receiver::try_iter`].
#[derive(Debug)]
pub struct TryIter<'a, T> {
    receiver: &'a Receiver<T>,
}

impl<T> Iterator for TryIter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.receiver.try_recv().ok()
    }
}

impl<'a, T> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}
