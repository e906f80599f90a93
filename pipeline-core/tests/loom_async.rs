//! Loom models of the async waits: the lost wake-up cases. Run with
//! `RUSTFLAGS="--cfg pipeline_loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p pipeline-core --release --test loom_async`.
//!
//! Futures are driven by `loom::future::block_on`, whose waker notifies a loom-tracked
//! event: a wake that is never sent leaves the model deadlocked, which loom reports.
//! Both fences are `fence(SeqCst)` under loom (see `hazard/fence.rs`), and the waker
//! lists disarm after a single idle notification, so the models also cross the
//! off -> arming -> armed -> off cycle of `channel/wakers.rs`.
#![cfg(pipeline_loom)]

use futures_core::Stream;
use loom::future::block_on;
use loom::thread;
use pipeline_core::channel::{RecvError, TryRecvError, bounded};
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// An async receiver registers while a sender pushes: it gets the value, whichever
/// side goes first (either its second look sees the value, or the push sees it
/// listed and wakes it).
#[test]
fn async_receiver_registers_while_a_sender_pushes() {
    loom::model(|| {
        let (tx, rx) = bounded(1);
        let receiver = thread::spawn(move || block_on(rx.recv_async()));
        tx.send(7).unwrap();
        assert_eq!(receiver.join().unwrap(), Ok(7));
    });
}

/// An async sender registers on a full channel while a receiver takes: it gets the
/// room and its value arrives after the first.
#[test]
fn async_sender_registers_while_a_receiver_takes() {
    loom::model(|| {
        let (tx, rx) = bounded(1);
        tx.send(1).unwrap();
        let sender = thread::spawn(move || block_on(tx.send_async(2)));
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(sender.join().unwrap(), Ok(()));
        assert_eq!(rx.try_recv(), Ok(2));
    });
}

/// A resize while an async sender waits on the full buffer wakes it, with no receive
/// to help: it sends into the new generation, and both values arrive in order.
#[test]
fn resize_while_an_async_sender_waits() {
    loom::model(|| {
        let (tx, rx) = bounded(1);
        tx.send(1).unwrap();
        let resizer = tx.clone();
        let sender = thread::spawn(move || block_on(tx.send_async(2)));
        resizer.resize(2).unwrap();
        assert_eq!(sender.join().unwrap(), Ok(()));
        drop(resizer);
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.recv(), Ok(2));
        assert_eq!(rx.recv(), Err(RecvError));
    });
}

/// A receive future registered, then dropped while a send wakes it: the value stays in
/// the channel, and another async receiver, waiting all along, gets it (the wake is
/// not lost with the dropped future). The sender handle outlives the wait, so no
/// disconnect wakes anybody.
#[test]
fn future_dropped_while_being_woken() {
    loom::model(|| {
        let (tx, rx) = bounded(1);
        let other = rx.clone();
        let waiting = thread::spawn(move || block_on(other.recv_async()));
        let mut cancelled = Box::pin(rx.recv_async());
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(cancelled.as_mut().poll(&mut cx), Poll::Pending);
        let sender = {
            let tx = tx.clone();
            thread::spawn(move || tx.send(5).unwrap())
        };
        drop(cancelled);
        sender.join().unwrap();
        assert_eq!(waiting.join().unwrap(), Ok(5));
        drop(tx);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    });
}

/// An async receiver on the replaced generation while a send into it is still in
/// progress: it does not block its thread for that send, and the closing of the
/// generation (by the send's exit) wakes it; it then takes the values in order,
/// hopping to the new generation for the second.
#[test]
fn generation_hop_wakes_an_async_receiver() {
    loom::model(|| {
        let (tx, rx) = bounded(1);
        let resizer = tx.clone();
        let sender = thread::spawn(move || {
            tx.send(1).unwrap();
            tx.send(2).unwrap();
        });
        resizer.resize(2).unwrap();
        drop(resizer);
        let received = block_on(async { (rx.recv_async().await, rx.recv_async().await) });
        assert_eq!(received, (Ok(1), Ok(2)));
        sender.join().unwrap();
    });
}

/// The closing of a replaced generation wakes an async receiver waiting for it, also
/// when the send that closes it (the last one inside, leaving) pushed nothing: a
/// `try_send` that found the old buffer full. The receiver has taken the old value
/// and waits for the generation to close before it may take the value sent into the
/// new one; no push follows the close to wake it, and no disconnect (the sender
/// handles outlive the wait).
#[test]
fn closing_a_generation_wakes_an_async_receiver() {
    loom::model(|| {
        let (tx, rx) = bounded(1);
        tx.send(1).unwrap();
        let trying = tx.clone();
        let sender = thread::spawn(move || trying.try_send(2).is_ok());
        // Keeps the channel connected, so the later send is never refused.
        let keep = rx.clone();
        let receiver = thread::spawn(move || {
            block_on(async { (rx.recv_async().await, rx.recv_async().await) })
        });
        tx.resize(2).unwrap();
        tx.send(3).unwrap();
        let sent_two = sender.join().unwrap();
        let (first, second) = receiver.join().unwrap();
        assert_eq!(first, Ok(1));
        // 2 went into the old buffer (first) or the new one (either order with 3).
        assert!(
            matches!(second, Ok(3)) || (sent_two && second == Ok(2)),
            "{second:?}"
        );
        drop((tx, keep));
    });
}

/// The last sender's drop wakes an async receiver waiting on an empty channel, which
/// then sees the disconnect; the stream ends the same way.
#[test]
fn last_sender_drop_wakes_an_async_receiver() {
    loom::model(|| {
        let (tx, rx) = bounded::<u8>(1);
        let receiver = thread::spawn(move || {
            block_on(async {
                let mut stream = pin!(rx.stream());
                std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await
            })
        });
        drop(tx);
        assert_eq!(receiver.join().unwrap(), None);
    });
}

/// The last receiver's drop wakes an async sender waiting for room, which fails and
/// gets its value back.
#[test]
fn last_receiver_drop_wakes_an_async_sender() {
    loom::model(|| {
        let (tx, rx) = bounded(1);
        tx.send(1).unwrap();
        let sender = thread::spawn(move || block_on(tx.send_async(2)));
        drop(rx);
        assert_eq!(sender.join().unwrap().unwrap_err().into_inner(), 2);
    });
}
