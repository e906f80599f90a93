//! The channel contract, in the style of crossbeam-channel's `tests/array.rs`, run
//! twice: on a channel that is never resized, and on one that is resized (away and
//! back to the same capacity) between the steps of every test, so each outcome below
//! also holds across generations.

use pipeline_core::channel::{
    Receiver, RecvError, RecvTimeoutError, ResizeError, SendError, SendTimeoutError, Sender,
    TryRecvError, TrySendError, bounded,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Resizes away and back: a new generation, same capacity. Only called where buffered
/// values would not change the expected outcome (see each test).
fn churn_resizing<T>(tx: &Sender<T>) {
    let capacity = tx.capacity();
    tx.resize(capacity + 3).unwrap();
    tx.resize(capacity).unwrap();
}

fn churn_none<T>(_tx: &Sender<T>) {}

/// Whether thread `tid` of this process is asleep (state `S` in
/// `/proc/self/task/<tid>/stat`): a thread spinning or yielding reads `R`.
fn asleep(tid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))
        .ok()
        .and_then(|stat| {
            // The state follows the command name, which is in parentheses.
            let rest = &stat[stat.rfind(')')? + 1..];
            rest.split_whitespace().next().map(|state| state == "S")
        })
        .unwrap_or(false)
}

macro_rules! contract_suite {
    ($name:ident, $churn:path) => {
        mod $name {
            use super::*;

            fn churn<T>(tx: &Sender<T>) {
                $churn(tx)
            }

            #[test]
            fn smoke() {
                let (tx, rx) = bounded(1);
                churn(&tx);
                tx.try_send(7).unwrap();
                assert_eq!(rx.try_recv(), Ok(7));
                tx.send(8).unwrap();
                churn(&tx);
                assert_eq!(rx.recv(), Ok(8));
                assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
                assert_eq!(rx.recv_timeout(ms(1)), Err(RecvTimeoutError::Timeout));
            }

            #[test]
            fn capacity() {
                for cap in 1..10 {
                    let (tx, rx) = bounded::<()>(cap);
                    churn(&tx);
                    assert_eq!(tx.capacity(), cap);
                    assert_eq!(rx.capacity(), cap);
                    for _ in 0..cap {
                        tx.try_send(()).unwrap();
                    }
                    assert_eq!(tx.try_send(()), Err(TrySendError::Full(())));
                }
            }

            #[test]
            fn len_empty_full() {
                let (tx, rx) = bounded(2);
                churn(&tx);
                assert_eq!((tx.len(), tx.is_empty(), tx.is_full()), (0, true, false));
                assert_eq!((rx.len(), rx.is_empty()), (0, true));
                tx.send(()).unwrap();
                assert_eq!((tx.len(), tx.is_empty(), tx.is_full()), (1, false, false));
                tx.send(()).unwrap();
                assert_eq!((tx.len(), tx.is_empty(), tx.is_full()), (2, false, true));
                assert_eq!(rx.len(), 2);
                rx.recv().unwrap();
                assert_eq!((tx.len(), tx.is_full()), (1, false));
                rx.recv().unwrap();
                churn(&tx);
                assert_eq!((rx.len(), rx.is_empty()), (0, true));
            }

            #[test]
            fn try_recv_outcomes() {
                let (tx, rx) = bounded(1);
                assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
                tx.send(1).unwrap();
                churn(&tx);
                assert_eq!(rx.try_recv(), Ok(1));
                tx.send(2).unwrap();
                drop(tx);
                assert_eq!(rx.try_recv(), Ok(2));
                assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
            }

            #[test]
            fn recv_blocks_until_sent() {
                let (tx, rx) = bounded(1);
                thread::scope(|s| {
                    s.spawn(|| {
                        assert_eq!(rx.recv(), Ok(7));
                        assert_eq!(rx.recv(), Ok(8));
                        assert_eq!(rx.recv(), Err(RecvError));
                    });
                    thread::sleep(ms(20));
                    churn(&tx);
                    tx.send(7).unwrap();
                    tx.send(8).unwrap();
                    drop(tx);
                });
            }

            #[test]
            fn recv_timeout_outcomes() {
                let (tx, rx) = bounded::<i32>(1);
                assert_eq!(rx.recv_timeout(ms(5)), Err(RecvTimeoutError::Timeout));
                thread::scope(|s| {
                    s.spawn(|| {
                        thread::sleep(ms(20));
                        churn(&tx);
                        tx.send(1).unwrap();
                    });
                    assert_eq!(rx.recv_timeout(ms(5000)), Ok(1));
                });
                drop(tx);
                assert_eq!(rx.recv_timeout(ms(5)), Err(RecvTimeoutError::Disconnected));
            }

            #[test]
            fn try_send_outcomes() {
                let (tx, rx) = bounded(1);
                churn(&tx);
                assert_eq!(tx.try_send(1), Ok(()));
                assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
                assert_eq!(rx.recv(), Ok(1));
                assert_eq!(tx.try_send(3), Ok(()));
                drop(rx);
                assert_eq!(tx.try_send(4), Err(TrySendError::Disconnected(4)));
            }

            #[test]
            fn send_blocks_until_room() {
                let (tx, rx) = bounded(1);
                tx.send(1).unwrap();
                // SAFETY: gettid has no preconditions.
                let sender = unsafe { libc::gettid() };
                thread::scope(|s| {
                    s.spawn(|| {
                        // Receive only once the sender found the buffer full and went
                        // to sleep (not after a guessed delay: a busy machine may not
                        // have run the sender yet).
                        while tx.stats().full_events == 0 || !asleep(sender) {
                            thread::yield_now();
                        }
                        assert_eq!(rx.recv(), Ok(1));
                        assert_eq!(rx.recv(), Ok(2));
                    });
                    tx.send(2).unwrap();
                });
                assert!(tx.stats().blocked_time > Duration::ZERO);
                assert_eq!(tx.stats().full_events, 1);
            }

            #[test]
            fn send_timeout_outcomes() {
                let (tx, rx) = bounded(1);
                churn(&tx);
                tx.send(1).unwrap();
                assert_eq!(tx.send_timeout(2, ms(5)), Err(SendTimeoutError::Timeout(2)));
                assert_eq!(rx.recv(), Ok(1));
                assert_eq!(tx.send_timeout(3, ms(5)), Ok(()));
                drop(rx);
                assert_eq!(
                    tx.send_timeout(4, ms(5)),
                    Err(SendTimeoutError::Disconnected(4))
                );
            }

            #[test]
            fn send_after_receivers_gone() {
                let (tx, rx) = bounded(4);
                churn(&tx);
                drop(rx);
                assert_eq!(tx.send(1), Err(SendError(1)));
                assert_eq!(tx.resize(8), Err(ResizeError::Disconnected));
            }

            #[test]
            fn recv_remaining_after_senders_gone() {
                let (tx, rx) = bounded(3);
                for i in 0..3 {
                    tx.send(i).unwrap();
                }
                churn(&tx);
                drop(tx);
                assert_eq!(rx.iter().collect::<Vec<_>>(), [0, 1, 2]);
                assert_eq!(rx.recv(), Err(RecvError));
            }

            #[test]
            fn receiver_drop_wakes_blocked_sender() {
                let (tx, rx) = bounded(1);
                churn(&tx);
                tx.send(1).unwrap();
                thread::scope(|s| {
                    s.spawn(|| {
                        thread::sleep(ms(20));
                        drop(rx);
                    });
                    assert_eq!(tx.send(2), Err(SendError(2)));
                });
            }

            #[test]
            fn sender_drop_wakes_blocked_receiver() {
                let (tx, rx) = bounded::<i32>(1);
                churn(&tx);
                thread::scope(|s| {
                    s.spawn(|| {
                        thread::sleep(ms(20));
                        drop(tx);
                    });
                    assert_eq!(rx.recv(), Err(RecvError));
                });
            }

            #[test]
            fn clones_keep_the_channel_connected() {
                let (tx, rx) = bounded(2);
                let tx2 = tx.clone();
                let rx2 = rx.clone();
                drop(tx);
                tx2.send(1).unwrap();
                drop(rx);
                assert_eq!(rx2.recv(), Ok(1));
                churn(&tx2);
                drop(tx2);
                assert_eq!(rx2.recv(), Err(RecvError));
            }

            #[test]
            fn unreceived_values_are_dropped() {
                static DROPS: AtomicUsize = AtomicUsize::new(0);
                #[derive(Debug)]
                struct Counted;
                impl Drop for Counted {
                    fn drop(&mut self) {
                        DROPS.fetch_add(1, Ordering::SeqCst);
                    }
                }
                DROPS.store(0, Ordering::SeqCst);
                let (tx, rx) = bounded(8);
                for _ in 0..3 {
                    tx.send(Counted).unwrap();
                }
                churn(&tx);
                for _ in 0..2 {
                    tx.send(Counted).unwrap();
                }
                drop(rx.recv().unwrap());
                assert_eq!(DROPS.load(Ordering::SeqCst), 1);
                // As in crossbeam: the last receiver's drop discards what is left.
                drop(rx);
                assert_eq!(DROPS.load(Ordering::SeqCst), 5);
                assert!(tx.send(Counted).is_err());
                assert_eq!(DROPS.load(Ordering::SeqCst), 6);
            }

            #[test]
            fn mpmc_every_value_once() {
                const PER_SENDER: usize = 5_000;
                const SENDERS: usize = 4;
                let (tx, rx) = bounded(3);
                let seen: Vec<AtomicUsize> = (0..PER_SENDER * SENDERS)
                    .map(|_| AtomicUsize::new(0))
                    .collect();
                thread::scope(|s| {
                    for id in 0..SENDERS {
                        let tx = tx.clone();
                        s.spawn(move || {
                            for i in 0..PER_SENDER {
                                tx.send(id * PER_SENDER + i).unwrap();
                                if i % 500 == 0 {
                                    churn(&tx);
                                }
                            }
                        });
                    }
                    drop(tx);
                    for _ in 0..4 {
                        let rx: Receiver<usize> = rx.clone();
                        let seen = &seen;
                        s.spawn(move || {
                            for v in rx.iter() {
                                seen[v].fetch_add(1, Ordering::Relaxed);
                            }
                        });
                    }
                });
                assert!(seen.iter().all(|c| c.load(Ordering::Relaxed) == 1));
                assert_eq!(rx.stats().received, (PER_SENDER * SENDERS) as u64);
            }

            #[test]
            fn iter_and_try_iter() {
                let (tx, rx) = bounded(4);
                tx.send(1).unwrap();
                tx.send(2).unwrap();
                churn(&tx);
                assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 2]);
                assert_eq!(rx.try_iter().count(), 0);
                tx.send(3).unwrap();
                drop(tx);
                assert_eq!((&rx).into_iter().collect::<Vec<_>>(), [3]);
            }

            #[test]
            fn stats_count_exactly() {
                let (tx, rx) = bounded(2);
                tx.send(1).unwrap();
                tx.send(2).unwrap();
                assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
                churn(&tx);
                rx.recv().unwrap();
                let stats = rx.stats();
                assert_eq!(stats.len, 1);
                assert_eq!(stats.capacity, 2);
                assert_eq!(stats.high_water_mark, 2);
                assert_eq!((stats.sent, stats.received), (2, 1));
                assert_eq!(stats.full_events, 1);
            }
        }
    };
}

contract_suite!(never_resized, churn_none);
contract_suite!(resized_between_steps, churn_resizing);

#[test]
fn resize_to_zero_is_refused_with_a_reason() {
    let (tx, _rx) = bounded::<u8>(4);
    let err = tx.resize(0).unwrap_err();
    assert_eq!(err, ResizeError::ZeroCapacity);
    assert!(err.to_string().contains("at least 1"), "{err}");
    assert_eq!(tx.capacity(), 4);
}

#[test]
fn resize_to_same_capacity_is_a_no_op() {
    let (tx, _rx) = bounded::<u8>(4);
    tx.resize(4).unwrap();
    assert_eq!(tx.stats().resizes, 0);
    tx.resize(5).unwrap();
    assert_eq!(tx.stats().resizes, 1);
}

#[test]
#[should_panic(expected = "capacity of at least 1")]
fn zero_capacity_channel_is_refused() {
    let _ = bounded::<u8>(0);
}

#[test]
fn handles_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Sender<String>>();
    assert_send_sync::<Receiver<String>>();
    assert_send_sync::<pipeline_core::channel::ChannelStats>();
}
