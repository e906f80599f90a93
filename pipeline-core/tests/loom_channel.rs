//! Loom models of the resize protocol. Run with
//! `RUSTFLAGS="--cfg pipeline_loom" cargo test -p pipeline-core --release --test loom_channel`.
//!
//! Under this cfg the crossbeam buffer is replaced by a `Mutex<VecDeque>` stand-in (loom
//! cannot see inside crossbeam), so what loom explores is our protocol: the hazards
//! and their checks, the asymmetric fences (both sides are `fence(SeqCst)` here),
//! closing a replaced generation, freeing a drained one, sealing, and disconnection.
#![cfg(pipeline_loom)]

use loom::thread;
use pipeline_core::channel::{RecvError, bounded};

/// Two senders, one receiver, one resize: every value arrives once, each sender's in
/// order.
#[test]
fn two_senders_one_receiver_one_resize() {
    loom::model(|| {
        let (tx, rx) = bounded(1);
        let tx2 = tx.clone();
        let resizer = tx.clone();
        let a = thread::spawn(move || {
            tx.send((0, 0)).unwrap();
            tx.send((0, 1)).unwrap();
        });
        let b = thread::spawn(move || tx2.send((1, 0)).unwrap());
        resizer.resize(2).unwrap();
        drop(resizer);
        let mut got = Vec::new();
        while let Ok(v) = rx.recv() {
            got.push(v);
        }
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(got.len(), 3, "{got:?}");
        let from_a: Vec<_> = got.iter().filter(|v| v.0 == 0).collect();
        assert_eq!(from_a, [&(0, 0), &(0, 1)]);
        assert!(got.contains(&(1, 0)));
    });
}

/// A receiver blocked on an empty generation while a resize happens wakes for the value
/// sent into the new one.
#[test]
fn receiver_blocked_during_resize() {
    loom::model(|| {
        let (tx, rx) = bounded(1);
        let receiver = thread::spawn(move || rx.recv());
        tx.resize(2).unwrap();
        tx.send(7).unwrap();
        assert_eq!(receiver.join().unwrap(), Ok(7));
    });
}

/// A sender that sent once and stays alive but idle does not keep the receiver on the
/// old generation.
#[test]
fn idle_sender_during_resize() {
    loom::model(|| {
        let (tx, rx) = bounded(2);
        let idle = tx.clone();
        idle.send(1).unwrap();
        let resizer = thread::spawn(move || {
            tx.resize(1).unwrap();
            tx.send(2).unwrap();
        });
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.recv(), Ok(2));
        resizer.join().unwrap();
        drop(idle);
    });
}

/// A sender blocked on a full generation moves to the new one when a resize grows it.
#[test]
fn blocked_sender_moves_on_resize() {
    loom::model(|| {
        let (tx, rx) = bounded(1);
        tx.send(1).unwrap();
        let sender = {
            let tx = tx.clone();
            thread::spawn(move || tx.send(2).unwrap())
        };
        tx.resize(2).unwrap();
        sender.join().unwrap();
        drop(tx);
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.recv(), Ok(2));
        assert_eq!(rx.recv(), Err(RecvError));
    });
}

/// The last sender goes away while another handle resizes: the receiver gets exactly
/// what was sent, then the disconnect.
#[test]
fn disconnect_during_resize() {
    loom::model(|| {
        let (tx, rx) = bounded(1);
        let resizer = tx.clone();
        let sender = thread::spawn(move || {
            tx.send(1).unwrap();
            drop(tx);
        });
        let resizing = thread::spawn(move || {
            resizer.resize(3).unwrap();
            drop(resizer);
        });
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.recv(), Err(RecvError));
        sender.join().unwrap();
        resizing.join().unwrap();
    });
}

/// Two receivers drain a replaced generation while the sender moves on: one of them
/// moves the channel past the old generation and it is freed while the other may still
/// be inside it. The stand-in marks a freed generation instead of releasing it, and
/// every thread leaving a generation asserts it was not freed under it.
#[test]
fn generation_freed_only_after_the_last_receiver_leaves() {
    loom::model(|| {
        let (tx, rx) = bounded(1);
        let rx2 = rx.clone();
        tx.send(1).unwrap();
        let other = thread::spawn(move || rx2.recv().ok());
        let resizer = tx.clone();
        resizer.resize(2).unwrap();
        tx.send(2).unwrap();
        drop((tx, resizer));
        let mine = rx.recv().ok();
        let theirs = other.join().unwrap();
        let mut got: Vec<i32> = mine.into_iter().chain(theirs).collect();
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
        assert_eq!(rx.recv(), Err(RecvError));
    });
}

/// A value that counts itself alive, so a model can check that the channel keeps no
/// value nobody can receive.
struct Tracked(loom::sync::Arc<loom::sync::atomic::AtomicUsize>);

impl Tracked {
    fn new(alive: &loom::sync::Arc<loom::sync::atomic::AtomicUsize>) -> Self {
        alive.fetch_add(1, loom::sync::atomic::Ordering::SeqCst);
        Tracked(alive.clone())
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_sub(1, loom::sync::atomic::Ordering::SeqCst);
    }
}

/// A sender (one send that fits, one that blocks on the full buffer) races the last
/// receiver's drop. Once the drop has returned and the sender is done, no value is
/// left in the channel although a `Sender` still exists: a send either took effect
/// before the disconnect (and its value was dropped with the rest) or failed and
/// handed its value back; in particular the blocked send is never given room by the
/// drain (issue 13, finding 3).
#[test]
fn send_races_the_last_receivers_drop() {
    loom::model(|| {
        let alive = loom::sync::Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let (tx, rx) = bounded(1);
        let keep = tx.clone();
        let sender = {
            let alive = alive.clone();
            thread::spawn(move || {
                let first = tx.send(Tracked::new(&alive)).is_ok();
                let second = tx.send(Tracked::new(&alive)).is_ok();
                (first, second)
            })
        };
        drop(rx);
        let (first, second) = sender.join().unwrap();
        assert!(
            first || !second,
            "a later send succeeded after an earlier failed"
        );
        assert_eq!(
            alive.load(loom::sync::atomic::Ordering::SeqCst),
            0,
            "a value sits in a channel nobody can read (sent: {first}, {second})"
        );
        drop(keep);
    });
}

/// A send that completed is visible to a later receive on the same thread, even while
/// another sender is still inside the generation a resize replaced: `try_recv` waits
/// for that send instead of answering `Empty` (issue 13, finding 4), and each sender's
/// values still arrive in order.
#[test]
fn completed_send_visible_across_a_resize() {
    loom::model(|| {
        let (tx, rx) = bounded(2);
        let other = tx.clone();
        let resizer = tx.clone();
        let rx2 = rx.clone();
        let b = thread::spawn(move || {
            other.send((1, 0)).unwrap();
            other.send((1, 1)).unwrap();
        });
        let a = thread::spawn(move || {
            tx.send((0, 0)).unwrap();
            rx2.try_recv().expect("own completed send not visible")
        });
        resizer.resize(4).unwrap();
        drop(resizer);
        let first = a.join().unwrap();
        b.join().unwrap();
        let mut got = vec![first];
        got.extend(rx.try_iter());
        assert_eq!(got.len(), 3, "{got:?}");
        let from_b: Vec<_> = got.iter().filter(|v| v.0 == 1).collect();
        assert_eq!(from_b, [&(1, 0), &(1, 1)], "{got:?}");
    });
}
