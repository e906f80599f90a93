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

mod error;
mod generation;
mod handles;
mod protocol;
mod queue;
mod stats;

pub use error::{
    RecvError, RecvTimeoutError, ResizeError, SendError, SendTimeoutError, TryRecvError,
    TrySendError,
};
pub use handles::{Iter, Receiver, Sender, TryIter, bounded};
pub use stats::ChannelStats;

pub(crate) use queue::Interrupt;
