//! A bounded multi-producer multi-consumer channel whose capacity changes while it is
//! in use.
//!
//! The API is crossbeam-channel's bounded channel plus [`Sender::resize`] and
//! `stats()`: the same methods, the same errors (re-exported from crossbeam), the same
//! disconnection rules.
//!
//! # Hello, channel
//!
//! ```
//! use pipeline_core::channel::bounded;
//!
//! let (tx, rx) = bounded(8);
//! let producer = std::thread::spawn(move || {
//!     for i in 0..100 {
//!         tx.send(i).unwrap(); // waits while 8 values are buffered
//!     }
//! });
//! let received: Vec<i32> = rx.iter().collect(); // ends when the sender is gone
//! producer.join().unwrap();
//! assert_eq!(received, (0..100).collect::<Vec<_>>());
//! ```
//!
//! # Resizing under load
//!
//! ```
//! use pipeline_core::channel::bounded;
//!
//! let (tx, rx) = bounded(4);
//! let resizer = tx.clone();
//! let producer = std::thread::spawn(move || (0..1000).for_each(|i| tx.send(i).unwrap()));
//! for capacity in [64, 2, 512, 1] {
//!     resizer.resize(capacity).unwrap();
//! }
//! drop(resizer);
//! let received: Vec<i32> = rx.iter().collect();
//! producer.join().unwrap();
//! assert_eq!(received, (0..1000).collect::<Vec<_>>()); // nothing lost, order kept
//! assert_eq!(rx.capacity(), 1);
//! ```
//!
//! # From async code
//!
//! [`Sender::send_async`], [`Receiver::recv_async`] and [`Receiver::stream`] wait as
//! tasks, with wakers: never a blocked runtime thread, never polling. Sync and async
//! handles work on one channel at the same time, also while it is resized: a resize
//! wakes the tasks waiting for room, and the async side keeps every guarantee below.
//! Do not call the blocking `send`/`recv` on a runtime thread.
//!
//! ```
//! use futures::StreamExt;
//! use pipeline_core::channel::bounded;
//! # use futures::executor::block_on;
//!
//! let (tx, rx) = bounded(2);
//! let sync_tx = tx.clone();
//! let thread = std::thread::spawn(move || (0..3).for_each(|i| sync_tx.send(i).unwrap()));
//! block_on(async {
//!     tx.resize(8).unwrap(); // the thread's sends wait no more
//!     tx.send_async(10).await.unwrap(); // would wait as a task while full
//!     drop(tx);
//! });
//! thread.join().unwrap();
//! let mut got: Vec<i32> = block_on(rx.stream().collect()); // ends: every sender is gone
//! got.sort();
//! assert_eq!(got, [0, 1, 2, 10]);
//! ```
//!
//! Cancellation is as in tokio: dropping a `recv_async` future (or the stream) before
//! it completes never loses a value, and dropping a `send_async` future drops its
//! value without sending it. A channel that no task waits on pays one relaxed load
//! per operation for all this; see `docs/architecture.md` ("Async waits").
//!
//! # What a resize guarantees
//!
//! 1. **Lossless**: no value is lost or duplicated, whatever the interleaving.
//! 2. **Per-sender FIFO**: two values sent by one thread are received in send order.
//! 3. **Non-blocking**: `resize` never waits for senders or receivers and never stops
//!    them; nothing is copied from the old buffer to the new one.
//! 4. **No polling**: blocked senders and receivers sleep until there is room, a value,
//!    or a resize that concerns them.
//! 5. **Capacity honoured**: once the old buffer is drained at most `new_capacity` values
//!    are buffered; while both hold values, at most old + new.
//!
//! How: each resize starts a new *generation* (a crossbeam bounded channel of the new
//! capacity). Senders move to it at once; receivers finish the old generation first and
//! move on when it is empty and no send into it is still in progress. See
//! `docs/architecture.md` for the protocol and why it is correct.

mod async_ops;
mod error;
mod generation;
mod handles;
mod protocol;
mod queue;
mod stats;
mod wakers;

pub use async_ops::{RecvFuture, RecvStream, SendFuture};
pub use error::{
    RecvError, RecvTimeoutError, ResizeError, SendError, SendTimeoutError, TryRecvError,
    TrySendError,
};
pub use handles::{Iter, Receiver, Sender, TryIter, bounded};
pub use stats::ChannelStats;

pub(crate) use queue::Interrupt;
