//! The async side of the resizable channel with a real tokio runtime: the contract of
//! `send_async`, `recv_async` and `stream` (mirroring the sync contract suite), its
//! cancellation safety, and sync and async handles mixed on one channel under random
//! resizes. Timeouts only detect hangs; nothing here is timed.
#![cfg(not(pipeline_loom))]

use futures::StreamExt;
use pipeline_core::channel::{RecvError, SendError, TryRecvError, TrySendError, bounded};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::collections::HashMap;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Hang detector for every test body: far above what any of them needs.
const HANG: Duration = Duration::from_secs(60);

async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(HANG, f)
        .await
        .expect("hang: the test did not finish within 60 s")
}

/// Polls `f` once with a waker that does nothing.
fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
}

#[tokio::test]
async fn send_then_recv() {
    within(async {
        let (tx, rx) = bounded(2);
        tx.send_async(1).await.unwrap();
        tx.send_async(2).await.unwrap();
        assert_eq!(rx.recv_async().await, Ok(1));
        assert_eq!(rx.recv_async().await, Ok(2));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    })
    .await;
}

#[tokio::test]
async fn recv_waits_for_a_send() {
    within(async {
        let (tx, rx) = bounded(1);
        let receiver = tokio::spawn(async move { rx.recv_async().await });
        tokio::task::yield_now().await;
        tx.send_async(9).await.unwrap();
        assert_eq!(receiver.await.unwrap(), Ok(9));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_waits_for_room() {
    within(async {
        let (tx, rx) = bounded(1);
        tx.send_async(1).await.unwrap();
        let sender = tokio::spawn(async move {
            tx.send_async(2).await.unwrap();
            tx.send_async(3).await.unwrap();
        });
        let mut got = Vec::new();
        while let Ok(v) = rx.recv_async().await {
            got.push(v);
        }
        sender.await.unwrap();
        assert_eq!(got, [1, 2, 3]);
    })
    .await;
}

#[tokio::test]
async fn recv_sees_the_disconnect_after_the_buffer() {
    within(async {
        let (tx, rx) = bounded(4);
        tx.send_async(1).await.unwrap();
        tx.resize(8).unwrap();
        tx.send_async(2).await.unwrap();
        drop(tx);
        assert_eq!(rx.recv_async().await, Ok(1));
        assert_eq!(rx.recv_async().await, Ok(2));
        assert_eq!(rx.recv_async().await, Err(RecvError));
        assert_eq!(rx.recv_async().await, Err(RecvError));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_sender_drop_wakes_a_waiting_receiver() {
    within(async {
        let (tx, rx) = bounded::<u8>(1);
        let receiver = tokio::spawn(async move { rx.recv_async().await });
        tokio::time::sleep(Duration::from_millis(10)).await; // let it wait (not required)
        drop(tx);
        assert_eq!(receiver.await.unwrap(), Err(RecvError));
    })
    .await;
}

#[tokio::test]
async fn send_hands_the_value_back_when_receivers_are_gone() {
    within(async {
        let (tx, rx) = bounded(1);
        drop(rx);
        assert_eq!(tx.send_async("a").await, Err(SendError("a")));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_receiver_drop_wakes_a_waiting_sender() {
    within(async {
        let (tx, rx) = bounded(1);
        tx.send_async(1).await.unwrap();
        let sender = tokio::spawn(async move { tx.send_async(2).await });
        tokio::time::sleep(Duration::from_millis(10)).await; // let it wait (not required)
        drop(rx);
        assert_eq!(sender.await.unwrap(), Err(SendError(2)));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resize_wakes_a_waiting_sender() {
    within(async {
        let (tx, rx) = bounded(1);
        tx.send_async(1).await.unwrap();
        let resizer = tx.clone();
        let sender = tokio::spawn(async move { tx.send_async(2).await });
        tokio::time::sleep(Duration::from_millis(10)).await; // let it wait (not required)
        resizer.resize(2).unwrap();
        // No receive happened: only the resize can have woken it.
        assert_eq!(sender.await.unwrap(), Ok(()));
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 2]);
    })
    .await;
}

#[tokio::test]
async fn stream_ends_when_every_sender_is_gone() {
    within(async {
        let (tx, rx) = bounded(2);
        let other = tx.clone();
        let producer = tokio::spawn(async move {
            for i in 0..10 {
                tx.send_async(i).await.unwrap();
            }
        });
        let resizing = tokio::spawn(async move {
            for cap in [1, 5, 3] {
                other.resize(cap).unwrap();
                tokio::task::yield_now().await;
            }
        });
        let got: Vec<i32> = rx.stream().collect().await;
        producer.await.unwrap();
        resizing.await.unwrap();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        let mut stream = pin!(rx.stream());
        assert_eq!(stream.next().await, None);
    })
    .await;
}

#[tokio::test]
async fn full_buffer_counted_once_per_send() {
    within(async {
        let (tx, rx) = bounded(1);
        tx.send_async(1).await.unwrap();
        let mut send = tx.send_async(2);
        for _ in 0..5 {
            assert!(poll_once(&mut send).is_pending());
        }
        assert_eq!(tx.stats().full_events, 1);
        assert_eq!(rx.recv_async().await, Ok(1));
        assert_eq!(send.await, Ok(()));
        assert_eq!(rx.recv_async().await, Ok(2));
        let stats = rx.stats();
        assert_eq!((stats.sent, stats.received, stats.full_events), (2, 2, 1));
    })
    .await;
}

/// A receive future dropped after it started waiting takes nothing with it.
#[tokio::test]
async fn dropped_recv_future_loses_nothing() {
    within(async {
        let (tx, rx) = bounded(1);
        let mut recv = rx.recv_async();
        assert!(poll_once(&mut recv).is_pending());
        tx.send_async(1).await.unwrap(); // wakes the future, which is never polled again
        drop(recv);
        assert_eq!(rx.recv_async().await, Ok(1));
        // Dropped before its first poll, too.
        tx.send_async(2).await.unwrap();
        drop(rx.recv_async());
        assert_eq!(rx.try_recv(), Ok(2));
    })
    .await;
}

/// The woken-then-dropped future does not swallow the wake: another receiver
/// waiting at the same time still gets the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_recv_future_passes_the_wake_on() {
    within(async {
        for _ in 0..200 {
            let (tx, rx) = bounded(1);
            let mut cancelled = rx.recv_async();
            assert!(poll_once(&mut cancelled).is_pending());
            let other = rx.clone();
            let waiting = tokio::spawn(async move { other.recv_async().await });
            tokio::task::yield_now().await;
            let sender = tokio::spawn(async move {
                tx.send_async(7).await.unwrap();
                tx // keep the channel connected until the end
            });
            drop(cancelled);
            assert_eq!(waiting.await.unwrap(), Ok(7));
            drop(sender.await.unwrap());
        }
    })
    .await;
}

/// A send future dropped while it waits hands nothing to the channel; its value is
/// dropped with it.
#[tokio::test]
async fn dropped_send_future_leaves_nothing() {
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    within(async {
        let drops = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = bounded(1);
        tx.send_async(Counted(drops.clone())).await.ok().unwrap();
        let mut send = tx.send_async(Counted(drops.clone()));
        assert!(poll_once(&mut send).is_pending());
        drop(rx.recv_async().await.unwrap()); // room now, and the send was woken
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        drop(send);
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
        assert_eq!(rx.len(), 0);
        // The room is still there for others.
        assert!(matches!(tx.try_send(Counted(drops.clone())), Ok(())));
        assert!(matches!(
            tx.try_send(Counted(drops.clone())),
            Err(TrySendError::Full(_))
        ));
    })
    .await;
}

/// A receive that finds the old buffer empty while a send into it is in progress
/// does not block the runtime thread: one worker thread, and the blocked sender is a
/// plain thread that a resize moves on.
#[tokio::test(flavor = "current_thread")]
async fn recv_async_never_blocks_the_runtime_thread() {
    within(async {
        let (tx, rx) = bounded(1);
        tx.send(1).unwrap();
        let blocked = {
            let tx = tx.clone();
            std::thread::spawn(move || tx.send(2).unwrap())
        };
        // On one thread, a blocking wait here would hang the test.
        assert_eq!(rx.recv_async().await, Ok(1));
        assert_eq!(rx.recv_async().await, Ok(2));
        blocked.join().unwrap();
        tx.resize(4).unwrap();
        let ticker = tokio::spawn(async move {
            tokio::task::yield_now().await;
            tx.send_async(3).await.unwrap();
        });
        assert_eq!(rx.recv_async().await, Ok(3));
        ticker.await.unwrap();
    })
    .await;
}

/// Sync and async senders and receivers on one channel, a resizer changing the
/// capacity at random all along: every value arrives exactly once, each sender's
/// values in order at each receiver.
#[test]
fn mixed_sync_and_async_under_random_resizes() {
    const PER_SENDER: u64 = 100_000;
    const SYNC_SENDERS: u64 = 2;
    const ASYNC_SENDERS: u64 = 2;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .enable_time()
        .build()
        .unwrap();
    let (tx, rx) = bounded::<(u64, u64)>(4);
    let done = Arc::new(AtomicBool::new(false));
    let resizer = {
        let tx = tx.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(14);
            let mut resizes = 0u64;
            while !done.load(Ordering::Relaxed) {
                let _ = tx.resize(rng.random_range(1..=256));
                resizes += 1;
                std::thread::sleep(Duration::from_micros(rng.random_range(0..300)));
            }
            resizes
        })
    };
    let sync_senders: Vec<_> = (0..SYNC_SENDERS)
        .map(|id| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for seq in 0..PER_SENDER {
                    tx.send((id, seq)).unwrap();
                }
            })
        })
        .collect();
    let async_senders: Vec<_> = (SYNC_SENDERS..SYNC_SENDERS + ASYNC_SENDERS)
        .map(|id| {
            let tx = tx.clone();
            runtime.spawn(async move {
                for seq in 0..PER_SENDER {
                    tx.send_async((id, seq)).await.unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    /// Checks per-sender order and collects what one receiver got.
    fn record(last: &mut HashMap<u64, u64>, count: &mut u64, (id, seq): (u64, u64)) {
        if let Some(&prev) = last.get(&id) {
            assert!(seq > prev, "sender {id}: {seq} after {prev}");
        }
        last.insert(id, seq);
        *count += 1;
    }
    let sync_receiver = {
        let rx = rx.clone();
        std::thread::spawn(move || {
            let (mut last, mut count) = (HashMap::new(), 0);
            for v in rx.iter() {
                record(&mut last, &mut count, v);
            }
            (count, 0u64)
        })
    };
    let async_receivers: Vec<_> = (0..2)
        .map(|i| {
            let rx = rx.clone();
            runtime.spawn(async move {
                let (mut last, mut count) = (HashMap::new(), 0);
                if i == 0 {
                    while let Ok(v) = rx.recv_async().await {
                        record(&mut last, &mut count, v);
                    }
                } else {
                    let mut stream = pin!(rx.stream());
                    while let Some(v) = stream.next().await {
                        record(&mut last, &mut count, v);
                    }
                }
                count
            })
        })
        .collect();
    let stats_rx = rx;
    runtime.block_on(within(async {
        for sender in async_senders {
            sender.await.unwrap();
        }
    }));
    for sender in sync_senders {
        sender.join().unwrap();
    }
    // The resizer holds the last sender handle: once it stops, receivers see the
    // disconnect after draining.
    done.store(true, Ordering::Relaxed);
    let resizes = resizer.join().unwrap();
    let total = runtime.block_on(within(async {
        let mut total = 0;
        for receiver in async_receivers {
            total += receiver.await.unwrap();
        }
        total
    }));
    let (sync_count, _) = sync_receiver.join().unwrap();
    let stats = stats_rx.stats();
    let expected = PER_SENDER * (SYNC_SENDERS + ASYNC_SENDERS);
    assert_eq!(total + sync_count, expected);
    assert_eq!(
        (stats.sent, stats.received, stats.len),
        (expected, expected, 0)
    );
    assert!(resizes > 0);
}

/// Async receivers only, values sent with a sum check: nothing lost or duplicated
/// when many tasks wait at once (the wake-all path under contention).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_waiting_tasks_lose_nothing() {
    within(async {
        let (tx, rx) = bounded::<u64>(2);
        let receivers: Vec<_> = (0..16)
            .map(|_| {
                let rx = rx.clone();
                tokio::spawn(async move {
                    let mut sum = 0;
                    while let Ok(v) = rx.recv_async().await {
                        sum += v;
                    }
                    sum
                })
            })
            .collect();
        drop(rx);
        let senders: Vec<_> = (0..8u64)
            .map(|s| {
                let tx = tx.clone();
                tokio::spawn(async move {
                    for i in 0..5_000u64 {
                        tx.send_async(s * 5_000 + i).await.unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        for s in senders {
            s.await.unwrap();
        }
        let mut sum = 0;
        for r in receivers {
            sum += r.await.unwrap();
        }
        let n = 40_000u64;
        assert_eq!(sum, n * (n - 1) / 2);
    })
    .await;
}

/// `waiting_senders` counts the senders waiting for room now, sync and async (the
/// controller reads it as demand the buffer has not taken yet, issue 15), and goes
/// back to zero when they send or give up.
#[test]
fn waiting_senders_count_blocked_threads_and_pending_futures() {
    let (tx, rx) = bounded(1);
    tx.send(0).unwrap();
    assert_eq!(tx.stats().waiting_senders, 0);

    let blocked = {
        let tx = tx.clone();
        std::thread::spawn(move || tx.send(1).unwrap())
    };
    let give_up = std::time::Instant::now() + HANG;
    while tx.stats().waiting_senders != 1 {
        assert!(
            std::time::Instant::now() < give_up,
            "hang: the sender never waited"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut pending = tx.send_async(2);
    assert!(poll_once(&mut pending).is_pending());
    assert_eq!(tx.stats().waiting_senders, 2);
    drop(pending); // gives up: no longer waiting
    assert_eq!(tx.stats().waiting_senders, 1);

    assert_eq!(rx.recv(), Ok(0));
    blocked.join().unwrap();
    assert_eq!(tx.stats().waiting_senders, 0);
    assert_eq!(rx.recv(), Ok(1));
}
