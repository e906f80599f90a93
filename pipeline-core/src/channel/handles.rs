//! `Sender`, `Receiver` and their iterators: the public face of a resizable channel,
//! with crossbeam-channel's methods and errors. What they share, and the protocol
//! that keeps a resize lossless, is in `protocol.rs`.

use super::error::{
    RecvError, RecvTimeoutError, ResizeError, SendError, SendTimeoutError, TryRecvError,
    TrySendError,
};
use super::protocol::Shared;
use super::queue::Interrupt;
use super::stats::ChannelStats;
use crate::sync::{Arc, atomic::Ordering};
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
    let shared = Shared::new(capacity);
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

/// The sending side of a resizable channel; clone it to send from many threads.
///
/// See [`bounded`].
pub struct Sender<T> {
    pub(super) shared: Arc<Shared<T>>,
}

/// The receiving side of a resizable channel; clone it to receive on many threads.
///
/// See [`bounded`].
pub struct Receiver<T> {
    pub(super) shared: Arc<Shared<T>>,
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
    #[inline]
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
    #[inline]
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        self.shared.try_send(value)
    }

    /// [`try_send`](Self::try_send) that, with `sample` and on success, also returns
    /// the length after the send, read while the send was inside the buffer: the bus
    /// watches saturation this way without a second look at the channel, and decides
    /// which sends sample from its own count (so the channel counts nothing here).
    #[inline]
    pub(crate) fn try_send_sampled(
        &self,
        value: T,
        sample: bool,
    ) -> Result<Option<usize>, TrySendError<T>> {
        self.shared.try_send_sampled(value, sample)
    }

    /// Closes the channel to every sender, this handle and its clones alike: each send
    /// from now on fails with `Disconnected` (handing the value back), a send already
    /// blocked wakes and fails the same way, and receivers get everything sent before,
    /// then `Disconnected`. A resize after it fails with `ResizeError::Disconnected`.
    /// The bus uses it when a subscription is removed, so a publisher that still holds
    /// the route cannot keep the subscriber waiting. Idempotent.
    pub(crate) fn close_all(&self) {
        self.shared.close_senders();
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
        self.shared.is_full()
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
    #[inline]
    pub fn recv(&self) -> Result<T, RecvError> {
        self.shared.recv_deadline(true, None).map_err(|_| RecvError)
    }

    /// Receives a value if one is ready, without waiting for a send.
    ///
    /// A send that has completed is always visible: `Empty` means no completed send
    /// is waiting. In the instant after a resize, while a send into the old buffer is
    /// still in progress, values from completed sends may sit behind it in the new
    /// one; this call then waits for that send to finish (as crossbeam's waits for a
    /// write in progress) and returns the next value in order. That send does not
    /// wait for room (the old buffer is sealed), so the wait is as short as a push,
    /// unless the sending thread is descheduled in the middle of it.
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
    #[inline]
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.shared.try_recv()
    }

    /// Receives a value, waiting at most `timeout`.
    ///
    /// As with [`try_recv`](Self::try_recv), a completed send is never missed: if the
    /// deadline passes while a send into a buffer that a resize replaced is still in
    /// progress, the call waits for that send (a push's time) before it answers.
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

    /// A receive (waiting if `wait`, until `deadline` if one is given) that, with
    /// `Some(sample_mask)`, on one success in `sample_mask + 1` per thread also
    /// returns the length after it, read inside the buffer it came from (see
    /// [`Sender::try_send_sampled`]). `Timeout` without `wait` means empty. A wait
    /// also ends, with `Timeout`, when `interrupt` fires (a pool's worker told to
    /// stop), however long the deadline.
    #[inline]
    pub(crate) fn recv_sampled(
        &self,
        wait: bool,
        deadline: Option<Instant>,
        sample_mask: Option<u64>,
        interrupt: Option<&Interrupt>,
    ) -> Result<(T, Option<usize>), RecvTimeoutError> {
        self.shared
            .recv_sampled(wait, deadline, sample_mask, interrupt)
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
