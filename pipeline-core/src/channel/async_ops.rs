//! `send_async`, `recv_async` and `stream`: waiting for room or a value from a task,
//! with wakers instead of a blocked thread. The wakers and how a registration pairs
//! with the sync hot path are in `wakers.rs`.
//!
//! Each poll tries the operation; if it cannot complete, it lists the task's waker,
//! orders that against the hot path (a fence) and tries once more before it returns
//! `Pending`: an event between the two looks wakes the task, one before the second
//! look is seen by it. A poll never blocks its thread and holds nothing across
//! `Pending` but its place in the list: no hazard, no value taken.

use super::error::{RecvError, SendError, TryRecvError, TrySendError};
use super::handles::{Receiver, Sender};
use super::wakers::WaitKey;
use futures_core::{FusedStream, Stream};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

impl<T> Sender<T> {
    /// Sends a value from async code, waiting (as a task, not a thread) while the
    /// channel is full.
    ///
    /// The future completes when the value is in the channel; a resize that makes
    /// room wakes it, as does a receive. Sync and async senders and receivers may use
    /// one channel at the same time.
    ///
    /// **Cancellation**: dropping the future before it completes drops the value with
    /// it; nothing reaches the channel (as with tokio's `mpsc::Sender::send`).
    ///
    /// # Errors
    ///
    /// [`SendError`] with the value when every [`Receiver`] is gone (also when they go
    /// while this waits).
    ///
    /// # Panics
    ///
    /// If the future is polled again after it completed.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_core::channel::bounded;
    /// # use futures::executor::block_on;
    ///
    /// let (tx, rx) = bounded(1);
    /// block_on(async {
    ///     tx.send_async(1).await.unwrap();
    ///     assert_eq!(rx.recv_async().await, Ok(1));
    ///     drop(rx);
    ///     assert_eq!(tx.send_async(2).await.unwrap_err().into_inner(), 2);
    /// });
    /// ```
    pub fn send_async(&self, value: T) -> SendFuture<'_, T> {
        SendFuture {
            sender: self,
            value: Some(value),
            key: None,
            first: true,
            blocked_since: None,
        }
    }
}

impl<T> Receiver<T> {
    /// Receives a value from async code, waiting (as a task, not a thread) until one
    /// arrives.
    ///
    /// Values arrive in the same order as for [`recv`](Self::recv): every send that
    /// completed before is visible, each sender's values in order, across resizes.
    ///
    /// **Cancellation**: dropping the future before it completes never loses a value:
    /// a value is taken from the channel only in the poll that returns it. (A wake it
    /// received is not lost either: every waiting task is woken, and those that find
    /// nothing wait again.)
    ///
    /// # Errors
    ///
    /// [`RecvError`] once every [`Sender`] is gone and the channel is empty.
    ///
    /// # Panics
    ///
    /// If the future is polled again after it completed.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_core::channel::{bounded, RecvError};
    /// # use futures::executor::block_on;
    ///
    /// let (tx, rx) = bounded(4);
    /// std::thread::spawn(move || (1..=3).for_each(|i| tx.send(i).unwrap()));
    /// block_on(async {
    ///     assert_eq!(rx.recv_async().await, Ok(1));
    ///     assert_eq!(rx.recv_async().await, Ok(2));
    ///     assert_eq!(rx.recv_async().await, Ok(3));
    ///     assert_eq!(rx.recv_async().await, Err(RecvError)); // the sender is gone
    /// });
    /// ```
    pub fn recv_async(&self) -> RecvFuture<'_, T> {
        RecvFuture {
            receiver: self,
            key: None,
            done: false,
        }
    }

    /// A [`Stream`] of the values received, ending when every sender is gone and the
    /// channel is empty: the async [`iter`](Self::iter).
    ///
    /// Each item is received as by [`recv_async`](Self::recv_async), with the same
    /// cancellation safety: dropping the stream between items loses nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::StreamExt;
    /// use pipeline_core::channel::bounded;
    /// # use futures::executor::block_on;
    ///
    /// let (tx, rx) = bounded(2);
    /// std::thread::spawn(move || (0..5).for_each(|i| tx.send(i).unwrap()));
    /// let received: Vec<i32> = block_on(rx.stream().collect());
    /// assert_eq!(received, [0, 1, 2, 3, 4]);
    /// ```
    pub fn stream(&self) -> RecvStream<'_, T> {
        RecvStream {
            receiver: self,
            key: None,
            done: false,
        }
    }
}

/// The future of [`Sender::send_async`].
#[must_use = "futures do nothing unless polled"]
pub struct SendFuture<'a, T> {
    sender: &'a Sender<T>,
    /// The value until it is sent (or handed back).
    value: Option<T>,
    key: Option<WaitKey>,
    /// Whether the next attempt is the first: a full buffer is counted once per call.
    first: bool,
    blocked_since: Option<Instant>,
}

// The value is never pinned: it moves in and out of the `Option` by value.
impl<T> Unpin for SendFuture<'_, T> {}

impl<T> Future for SendFuture<'_, T> {
    type Output = Result<(), SendError<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let shared = &this.sender.shared;
        let mut value = this
            .value
            .take()
            .expect("`SendFuture` polled after it completed");
        let mut registered = false;
        let result = loop {
            match shared.try_send_async(value, this.first) {
                Ok(()) => break Ok(()),
                Err(TrySendError::Disconnected(back)) => break Err(SendError(back)),
                Err(TrySendError::Full(back)) => value = back,
            }
            this.first = false;
            if registered {
                this.value = Some(value);
                if this.blocked_since.is_none() {
                    this.blocked_since = Some(Instant::now());
                    shared.wait_started();
                }
                return Poll::Pending;
            }
            shared.send_waiters.register(&mut this.key, cx.waker());
            registered = true;
        };
        shared.send_waiters.deregister(&mut this.key);
        if let Some(since) = this.blocked_since.take() {
            shared.add_blocked(since);
        }
        Poll::Ready(result)
    }
}

impl<T> Drop for SendFuture<'_, T> {
    fn drop(&mut self) {
        // The value, if still here, is dropped with the future.
        self.sender.shared.send_waiters.deregister(&mut self.key);
        if let Some(since) = self.blocked_since.take() {
            self.sender.shared.add_blocked(since);
        }
    }
}

/// Polls one receive: the value, `None` at the disconnect, or `Pending` with the
/// task listed.
fn poll_recv<T>(
    receiver: &Receiver<T>,
    key: &mut Option<WaitKey>,
    cx: &mut Context<'_>,
) -> Poll<Option<T>> {
    let shared = &receiver.shared;
    let mut registered = false;
    let result = loop {
        match shared.try_recv_async() {
            Ok(value) => break Some(value),
            Err(TryRecvError::Disconnected) => break None,
            Err(TryRecvError::Empty) => {}
        }
        if registered {
            return Poll::Pending;
        }
        shared.recv_waiters.register(key, cx.waker());
        registered = true;
    };
    shared.recv_waiters.deregister(key);
    Poll::Ready(result)
}

/// The future of [`Receiver::recv_async`].
#[must_use = "futures do nothing unless polled"]
pub struct RecvFuture<'a, T> {
    receiver: &'a Receiver<T>,
    key: Option<WaitKey>,
    done: bool,
}

impl<T> Future for RecvFuture<'_, T> {
    type Output = Result<T, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(!this.done, "`RecvFuture` polled after it completed");
        let polled = poll_recv(this.receiver, &mut this.key, cx);
        if polled.is_ready() {
            this.done = true;
        }
        polled.map(|value| value.ok_or(RecvError))
    }
}

impl<T> Drop for RecvFuture<'_, T> {
    fn drop(&mut self) {
        self.receiver.shared.recv_waiters.deregister(&mut self.key);
    }
}

/// The stream of [`Receiver::stream`].
#[must_use = "streams do nothing unless polled"]
pub struct RecvStream<'a, T> {
    receiver: &'a Receiver<T>,
    key: Option<WaitKey>,
    done: bool,
}

impl<T> Stream for RecvStream<'_, T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let polled = poll_recv(this.receiver, &mut this.key, cx);
        if let Poll::Ready(None) = polled {
            this.done = true;
        }
        polled
    }
}

impl<T> FusedStream for RecvStream<'_, T> {
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl<T> Drop for RecvStream<'_, T> {
    fn drop(&mut self) {
        self.receiver.shared.recv_waiters.deregister(&mut self.key);
    }
}

impl<T> fmt::Debug for SendFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("SendFuture { .. }")
    }
}

impl<T> fmt::Debug for RecvFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("RecvFuture { .. }")
    }
}

impl<T> fmt::Debug for RecvStream<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("RecvStream { .. }")
    }
}
