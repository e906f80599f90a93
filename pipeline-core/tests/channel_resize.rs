//! The five resize invariants of DESIGN.md, one or more tests each, plus the idle
//! sender trap. Every wait is bounded so a broken protocol fails instead of hanging.

use pipeline_core::channel::{Receiver, Sender, TrySendError, bounded};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(10);

/// Runs `f` on a thread and fails the test if it does not return within `LIMIT`.
fn within_limit<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || done_tx.send(f()).unwrap());
    done_rx
        .recv_timeout(LIMIT)
        .unwrap_or_else(|_| panic!("{what} did not finish within {LIMIT:?}"))
}

/// CPU time consumed by the calling thread.
fn thread_cpu_time() -> Duration {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid out-pointer; RUSAGE_THREAD is supported on Linux.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    assert_eq!(rc, 0);
    let user = Duration::new(
        usage.ru_utime.tv_sec as u64,
        usage.ru_utime.tv_usec as u32 * 1000,
    );
    let sys = Duration::new(
        usage.ru_stime.tv_sec as u64,
        usage.ru_stime.tv_usec as u32 * 1000,
    );
    user + sys
}

// Invariant 1 and 2 (lossless, per-sender FIFO) under a deterministic interleaving.
#[test]
fn values_buffered_before_a_resize_come_first_and_none_is_lost() {
    let (tx, rx) = bounded(4);
    for i in 0..4 {
        tx.send(i).unwrap();
    }
    tx.resize(2).unwrap();
    tx.send(4).unwrap();
    tx.resize(16).unwrap();
    for i in 5..10 {
        tx.send(i).unwrap();
    }
    drop(tx);
    assert_eq!(rx.iter().collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
}

// Invariant 3: resize returns while senders and receivers are blocked.
#[test]
fn resize_never_waits_for_blocked_senders_or_receivers() {
    let (tx, rx) = bounded::<u32>(1);
    tx.send(0).unwrap();
    let blocked_sender = {
        let tx = tx.clone();
        thread::spawn(move || tx.send(1))
    };
    let (empty_tx, empty_rx) = bounded::<u32>(1);
    let blocked_receiver = thread::spawn(move || empty_rx.recv());
    thread::sleep(Duration::from_millis(50));
    // Both threads are asleep inside the channel; resizes must return regardless.
    within_limit("resizing with blocked parties", move || {
        for capacity in [8, 1, 3] {
            empty_tx.resize(capacity).unwrap();
        }
        empty_tx.send(9).unwrap();
    });
    assert_eq!(blocked_receiver.join().unwrap(), Ok(9));
    // Growing the full channel lets the blocked sender through without any receive.
    within_limit("growing a full channel", move || tx.resize(2).unwrap());
    blocked_sender.join().unwrap().unwrap();
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [0, 1]);
}

// Invariant 4: a blocked receiver sleeps, also across a resize.
#[test]
#[cfg_attr(miri, ignore = "Miri has no getrusage (nor a real CPU time)")]
fn blocked_receiver_does_not_spin() {
    let (tx, rx) = bounded::<u32>(4);
    let waiter = thread::spawn(move || {
        let before = thread_cpu_time();
        let value = rx.recv();
        (value, thread_cpu_time() - before)
    });
    thread::sleep(Duration::from_millis(150));
    tx.resize(8).unwrap();
    thread::sleep(Duration::from_millis(150));
    tx.send(5).unwrap();
    let (value, cpu) = waiter.join().unwrap();
    assert_eq!(value, Ok(5));
    // A spinning receiver would burn ~300 ms of CPU here; a sleeping one a few µs.
    assert!(
        cpu < Duration::from_millis(50),
        "receiver used {cpu:?} of CPU while blocked"
    );
}

// Invariant 4: a blocked sender sleeps.
#[test]
#[cfg_attr(miri, ignore = "Miri has no getrusage (nor a real CPU time)")]
fn blocked_sender_does_not_spin() {
    let (tx, rx) = bounded::<u32>(1);
    tx.send(0).unwrap();
    let waiter = thread::spawn(move || {
        let before = thread_cpu_time();
        let result = tx.send(1);
        (result, thread_cpu_time() - before)
    });
    thread::sleep(Duration::from_millis(300));
    assert_eq!(rx.recv(), Ok(0));
    let (result, cpu) = waiter.join().unwrap();
    assert!(result.is_ok());
    assert!(
        cpu < Duration::from_millis(50),
        "sender used {cpu:?} of CPU while blocked"
    );
    assert_eq!(rx.recv(), Ok(1));
}

// Invariant 5: at most old + new while both hold values, at most new after.
#[test]
fn capacity_is_honoured_across_a_shrink() {
    let (tx, rx) = bounded(4);
    for i in 0..4 {
        tx.send(i).unwrap();
    }
    tx.resize(2).unwrap();
    tx.send(4).unwrap();
    tx.send(5).unwrap();
    assert_eq!(tx.try_send(6), Err(TrySendError::Full(6)));
    assert_eq!(tx.len(), 6, "old (4) + new (2)");
    for expected in 0..4 {
        assert_eq!(rx.recv(), Ok(expected));
    }
    // Settled: only the new generation remains, and it is full at 2.
    assert_eq!(tx.len(), 2);
    assert_eq!(tx.try_send(6), Err(TrySendError::Full(6)));
    assert_eq!(rx.recv(), Ok(4));
    tx.send(6).unwrap();
    assert_eq!(tx.len(), 2);
}

// The known trap: a sender that sent once and then idles must not keep receivers on
// the old generation.
#[test]
fn idle_sender_does_not_hold_receivers_on_an_old_generation() {
    let (tx, rx): (Sender<&str>, Receiver<&str>) = bounded(4);
    let idle = tx.clone();
    idle.send("from the idle sender").unwrap();
    tx.resize(8).unwrap();
    tx.send("after the resize").unwrap();
    let got = within_limit("receiving past an idle sender", move || {
        let first = rx.recv().unwrap();
        let second = rx.recv().unwrap();
        (first, second, rx)
    });
    assert_eq!((got.0, got.1), ("from the idle sender", "after the resize"));
    // The idle sender is still alive and still works.
    idle.send("later").unwrap();
    assert_eq!(got.2.recv(), Ok("later"));
}

// A receiver blocked on an old, empty generation wakes when the sends it was waiting
// for land in the new generation (woken by the close, not by polling).
#[test]
fn receiver_blocked_on_old_generation_follows_to_the_new_one() {
    let (tx, rx) = bounded::<u32>(2);
    let waiter = thread::spawn(move || rx.recv_timeout(LIMIT));
    thread::sleep(Duration::from_millis(50));
    tx.resize(4).unwrap();
    thread::sleep(Duration::from_millis(20));
    tx.send(3).unwrap();
    assert_eq!(waiter.join().unwrap(), Ok(3));
}
