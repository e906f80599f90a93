//! The bus from async code: `Publisher::publish_async` (waits for room and for
//! rate-limit tokens as a task, counts as `publish` does, is cancellation-safe and
//! never partial), a bus of non-`Clone` events from `build_single`, and
//! `Subscription::recv_async` / `stream` ending on close.
//!
//! Readiness is driven by hand where a test is about one wait (a counting waker and
//! single polls, no sleeps); the runtime tests use tokio. Timeouts only detect hangs;
//! nothing here is timed.
#![cfg(not(pipeline_loom))]

use futures::StreamExt;
use pipeline_core::bus::{
    Bus, BusError, OverflowPolicy, PublishError, PublishFuture, Subscription, SubscriptionConfig,
};
use pipeline_core::channel::{RecvError, RecvTimeoutError, TryRecvError};
use pipeline_core::clock::{Clock, ManualClock};
use pipeline_core::signal::SignalKind;
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

/// Hang detector: far above what any test needs.
const HANG: Duration = Duration::from_secs(60);

async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(HANG, f)
        .await
        .expect("hang: the test did not finish within 60 s")
}

/// A waker that counts its wakes.
#[derive(Default)]
struct Wakes(AtomicUsize);

impl Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls a future by hand with a counting waker.
struct Manual {
    wakes: Arc<Wakes>,
    waker: Waker,
}

impl Manual {
    fn new() -> Self {
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        Manual { wakes, waker }
    }

    fn poll<F: Future + Unpin>(&self, f: &mut F) -> Poll<F::Output> {
        Pin::new(f).poll(&mut Context::from_waker(&self.waker))
    }

    fn wakes(&self) -> usize {
        self.wakes.0.load(Ordering::SeqCst)
    }
}

fn drain<E>(sub: &Subscription<E>) -> Vec<E> {
    sub.try_iter().collect()
}

/// An event that counts its live instances (clones included), so a test sees every
/// drop: the count is back to zero once nothing holds one.
struct Tracked {
    id: u32,
    live: Arc<AtomicIsize>,
    /// Runs once, inside the first clone: a way to act between a publish's room
    /// check and its deliveries (the copy for the first subscription is made then).
    hook: Option<Arc<Mutex<Option<Hook>>>>,
}

type Hook = Box<dyn FnOnce() + Send>;

impl Tracked {
    fn new(id: u32, live: &Arc<AtomicIsize>) -> Self {
        live.fetch_add(1, Ordering::SeqCst);
        Tracked {
            id,
            live: live.clone(),
            hook: None,
        }
    }

    fn hooked(id: u32, live: &Arc<AtomicIsize>, hook: Hook) -> Self {
        let mut event = Tracked::new(id, live);
        event.hook = Some(Arc::new(Mutex::new(Some(hook))));
        event
    }
}

impl Clone for Tracked {
    fn clone(&self) -> Self {
        if let Some(hook) = &self.hook {
            let run = hook.lock().unwrap().take();
            if let Some(run) = run {
                run();
            }
        }
        self.live.fetch_add(1, Ordering::SeqCst);
        Tracked {
            id: self.id,
            live: self.live.clone(),
            hook: self.hook.clone(),
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

fn ids(sub: &Subscription<Tracked>) -> Vec<u32> {
    sub.try_iter().map(|e| e.id).collect()
}

/// A clock whose async sleeps complete only when the test opens them (advancing the
/// time by what was asked): a token wait the test holds open as long as it likes.
#[derive(Debug, Clone, Default)]
struct GateClock {
    time: ManualClock,
    gates: Arc<Mutex<Vec<Gate>>>,
}

/// A sleep's duration, and what completes it.
type Gate = (Duration, tokio::sync::oneshot::Sender<()>);

impl GateClock {
    /// Opens every sleep started so far; returns how many there were.
    fn open(&self) -> usize {
        let gates = std::mem::take(&mut *self.gates.lock().unwrap());
        let opened = gates.len();
        for (duration, gate) in gates {
            self.time.advance(duration);
            let _ = gate.send(());
        }
        opened
    }

    fn waiting(&self) -> usize {
        self.gates.lock().unwrap().len()
    }
}

impl Clock for GateClock {
    fn now(&self) -> Instant {
        self.time.now()
    }

    fn sleep(&self, duration: Duration) {
        self.time.advance(duration);
    }

    fn sleep_async(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let (gate, opened) = tokio::sync::oneshot::channel();
        self.gates.lock().unwrap().push((duration, gate));
        Box::pin(async move {
            let _ = opened.await;
        })
    }
}

#[test]
fn publish_future_is_send_and_unpin() {
    fn check<F: Future + Send + Unpin>(_: &F) {}
    let bus = Bus::<String>::new();
    let publisher = bus.publisher();
    let future: PublishFuture<'_, String> = publisher.publish_async("hello".to_owned());
    check(&future);
    drop(future);
}

#[tokio::test]
async fn publish_async_with_room_completes_in_its_first_poll() {
    let bus = Bus::new();
    let all = bus.subscribe(SubscriptionConfig::new("all")).unwrap();
    let odd = bus
        .subscribe(SubscriptionConfig::new("odd").filter(|n: &u32| n % 2 == 1))
        .unwrap();
    let publisher = bus.publisher();
    let manual = Manual::new();
    for n in 0..4 {
        let mut future = publisher.publish_async(n);
        assert!(matches!(manual.poll(&mut future), Poll::Ready(Ok(()))));
    }
    // One plain subscription: the fast path.
    let lone = Bus::new();
    let only = lone.subscribe(SubscriptionConfig::new("only")).unwrap();
    lone.publisher().publish_async(7).await.unwrap();
    assert_eq!(drain(&only), [7]);
    assert_eq!(lone.snapshot().published, 1);

    assert_eq!(drain(&all), [0, 1, 2, 3]);
    assert_eq!(drain(&odd), [1, 3]);
    let snapshot = bus.snapshot();
    assert_eq!((snapshot.published, snapshot.unmatched), (4, 0));
    assert_eq!(manual.wakes(), 0);
}

#[test]
fn publish_async_into_a_full_subscription_wakes_on_receive() {
    let bus = Bus::new();
    let signals = bus.signals();
    let sub = bus
        .subscribe(
            SubscriptionConfig::new("s")
                .capacity(2)
                .event_size(|_: &u32| 10),
        )
        .unwrap();
    let publisher = bus.publisher();
    let manual = Manual::new();
    futures::executor::block_on(async {
        publisher.publish_async(1).await.unwrap();
        publisher.publish_async(2).await.unwrap();
    });

    let mut future = publisher.publish_async(3);
    assert!(manual.poll(&mut future).is_pending());
    assert!(manual.poll(&mut future).is_pending(), "still full");
    assert_eq!(manual.wakes(), 0);
    assert_eq!(sub.recv(), Ok(1));
    assert!(manual.wakes() >= 1, "the receive woke the publish");
    assert!(matches!(manual.poll(&mut future), Poll::Ready(Ok(()))));
    assert_eq!(drain(&sub), [2, 3]);

    // Counted as `publish` counts: published, the full buffer, back pressure, bytes.
    let stats = sub.stats();
    assert_eq!(bus.snapshot().published, 3);
    assert_eq!(stats.delivered, 3);
    assert!(stats.full_events >= 1);
    assert_eq!(stats.avg_event_bytes, 10);
    assert_eq!(stats.try_publish_waits, 0);
    assert!(
        signals
            .try_iter()
            .any(|s| s.kind == SignalKind::BackPressureStarted),
        "a publish that found the buffer full raises back pressure"
    );
}

#[test]
fn publish_async_into_a_full_subscription_wakes_on_resize() {
    let bus = Bus::new();
    let sub = bus
        .subscribe(SubscriptionConfig::new("s").capacity(1).max_capacity(4))
        .unwrap();
    let publisher = bus.publisher();
    publisher.publish(1).unwrap();
    let manual = Manual::new();
    let mut future = publisher.publish_async(2);
    assert!(manual.poll(&mut future).is_pending());
    assert_eq!(bus.resize("s", 4), Ok(4));
    assert!(manual.wakes() >= 1, "the resize woke the publish");
    assert!(matches!(manual.poll(&mut future), Poll::Ready(Ok(()))));
    assert_eq!(drain(&sub), [1, 2]);
}

/// A blocked thread would deadlock a current-thread runtime: the consumer task could
/// never run. Many publishing tasks share a buffer of 4.
#[tokio::test(flavor = "current_thread")]
async fn many_tasks_on_a_current_thread_runtime_share_a_small_buffer() {
    within(async {
        const TASKS: u32 = 16;
        const EACH: u32 = 500;
        let bus = Bus::new();
        let sub = bus
            .subscribe(SubscriptionConfig::new("s").capacity(4))
            .unwrap();
        let consumer = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Ok(event) = sub.recv_async().await {
                got.push(event);
            }
            got
        });
        let producers: Vec<_> = (0..TASKS)
            .map(|task| {
                let publisher = bus.publisher();
                tokio::spawn(async move {
                    for n in 0..EACH {
                        publisher.publish_async((task, n)).await.unwrap();
                    }
                })
            })
            .collect();
        for producer in producers {
            producer.await.unwrap();
        }
        assert_eq!(bus.snapshot().published, u64::from(TASKS * EACH));
        bus.close();
        let got = consumer.await.unwrap();
        assert_each_once_in_order(&got, TASKS, EACH);
    })
    .await;
}

/// Every publisher's events, each once and in its publish order.
fn assert_each_once_in_order(got: &[(u32, u32)], publishers: u32, per_publisher: u32) {
    let mut by_publisher: HashMap<u32, Vec<u32>> = HashMap::new();
    for &(p, n) in got {
        by_publisher.entry(p).or_default().push(n);
    }
    for p in 0..publishers {
        let seq = by_publisher.remove(&p).unwrap_or_default();
        assert_eq!(seq.len() as u32, per_publisher, "publisher {p}");
        assert!(
            seq.iter().copied().eq(0..per_publisher),
            "publisher {p} out of order"
        );
    }
    assert!(by_publisher.is_empty(), "events from no publisher");
}

#[tokio::test]
async fn rate_limit_wait_is_exact_with_a_manual_clock() {
    let clock = ManualClock::new();
    let bus = Bus::builder()
        .clock(clock.clone())
        .publish_burst(2)
        .publish_rate(Some(10.0)) // a token every 100 ms
        .build()
        .unwrap();
    let sub = bus.subscribe(SubscriptionConfig::new("s")).unwrap();
    let publisher = bus.publisher();
    for n in 0..7 {
        publisher.publish_async(n).await.unwrap();
    }
    // The burst of 2, then 5 waits of exactly 100 ms each on the simulated clock.
    assert_eq!(clock.elapsed(), Duration::from_millis(500));
    assert_eq!(drain(&sub), [0, 1, 2, 3, 4, 5, 6]);
    let snapshot = bus.snapshot();
    assert_eq!((snapshot.published, snapshot.rate_limited), (7, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_wait_with_the_real_clock() {
    within(async {
        const EVENTS: u32 = 40;
        let bus = Bus::builder()
            .publish_burst(1)
            .publish_rate(Some(2000.0))
            .build()
            .unwrap();
        let sub = bus.subscribe(SubscriptionConfig::new("s")).unwrap();
        let tasks: Vec<_> = (0..4)
            .map(|task| {
                let publisher = bus.publisher();
                tokio::spawn(async move {
                    for n in 0..EVENTS / 4 {
                        publisher.publish_async((task, n)).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let got = drain(&sub);
        assert_each_once_in_order(&got, 4, EVENTS / 4);
        let snapshot = bus.snapshot();
        assert_eq!(snapshot.published, u64::from(EVENTS));
        assert!(snapshot.rate_limited <= u64::from(EVENTS));
    })
    .await;
}

#[test]
fn closed_while_waiting_for_room_returns_the_event() {
    let bus = Bus::new();
    let sub = bus
        .subscribe(SubscriptionConfig::new("s").capacity(1))
        .unwrap();
    let publisher = bus.publisher();
    publisher.publish(1).unwrap();
    let manual = Manual::new();
    let mut future = publisher.publish_async(2);
    assert!(manual.poll(&mut future).is_pending());
    bus.close();
    assert!(manual.wakes() >= 1, "the close woke the publish");
    assert!(matches!(
        manual.poll(&mut future),
        Poll::Ready(Err(PublishError::Closed(2)))
    ));
    assert_eq!(sub.recv(), Ok(1));
    assert_eq!(sub.recv(), Err(RecvError));
    assert_eq!(bus.snapshot().published, 1);
}

#[test]
fn closed_while_waiting_for_a_token_returns_the_event() {
    let clock = GateClock::default();
    let bus = Bus::builder()
        .clock(clock.clone())
        .publish_burst(1)
        .publish_rate(Some(1.0))
        .build()
        .unwrap();
    let sub = bus.subscribe(SubscriptionConfig::new("s")).unwrap();
    let publisher = bus.publisher();
    let manual = Manual::new();
    publisher.try_publish(1).unwrap();

    let mut future = publisher.publish_async(2);
    assert!(manual.poll(&mut future).is_pending());
    assert_eq!(clock.waiting(), 1, "it waits on the clock for a token");
    bus.close();
    assert_eq!(clock.open(), 1);
    assert!(matches!(
        manual.poll(&mut future),
        Poll::Ready(Err(PublishError::Closed(2)))
    ));
    // On an open bus the same wait ends with the token.
    let bus = Bus::builder()
        .clock(clock.clone())
        .publish_burst(1)
        .publish_rate(Some(1.0))
        .build()
        .unwrap();
    let open = bus.subscribe(SubscriptionConfig::new("s")).unwrap();
    let publisher = bus.publisher();
    publisher.try_publish(10).unwrap();
    let mut future = publisher.publish_async(11);
    assert!(manual.poll(&mut future).is_pending());
    assert_eq!(clock.open(), 1);
    assert!(matches!(manual.poll(&mut future), Poll::Ready(Ok(()))));
    assert_eq!(drain(&open), [10, 11]);
    assert_eq!(bus.snapshot().rate_limited, 1);
    assert_eq!(drain(&sub), [1]);
}

#[test]
fn dropping_a_publish_that_waits_for_room_delivers_nothing_and_drops_the_event() {
    let live = Arc::new(AtomicIsize::new(0));
    let bus = Bus::new();
    let sub = bus
        .subscribe(SubscriptionConfig::new("s").capacity(1))
        .unwrap();
    let publisher = bus.publisher();
    publisher.publish(Tracked::new(1, &live)).unwrap();
    let manual = Manual::new();
    let mut future = publisher.publish_async(Tracked::new(2, &live));
    assert!(manual.poll(&mut future).is_pending());
    assert_eq!(live.load(Ordering::SeqCst), 2);
    drop(future);
    assert_eq!(
        live.load(Ordering::SeqCst),
        1,
        "the event went with the future"
    );
    assert_eq!(ids(&sub), [1]);
    assert_eq!(sub.try_recv().map(|e| e.id), Err(TryRecvError::Empty));
    assert_eq!(bus.snapshot().published, 1);
    assert_eq!(bus.snapshot().completed_after_cancel, 0);
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

#[test]
fn dropping_a_publish_that_waits_for_a_token_delivers_nothing_and_drops_the_event() {
    let live = Arc::new(AtomicIsize::new(0));
    let clock = GateClock::default();
    let bus = Bus::builder()
        .clock(clock.clone())
        .publish_burst(1)
        .publish_rate(Some(1.0))
        .build()
        .unwrap();
    let sub = bus.subscribe(SubscriptionConfig::new("s")).unwrap();
    let publisher = bus.publisher();
    let manual = Manual::new();
    publisher.try_publish(Tracked::new(1, &live)).unwrap();
    let mut future = publisher.publish_async(Tracked::new(2, &live));
    assert!(manual.poll(&mut future).is_pending());
    drop(future);
    assert_eq!(live.load(Ordering::SeqCst), 1);
    clock.open();
    assert_eq!(ids(&sub), [1]);
    assert_eq!(bus.snapshot().published, 1);
}

/// With several `Block` subscriptions, the wait for a full one comes before any
/// delivery: a drop then leaves every subscription untouched.
#[test]
fn with_several_block_subscriptions_the_wait_comes_before_any_delivery() {
    let live = Arc::new(AtomicIsize::new(0));
    let bus = Bus::new();
    let roomy = bus
        .subscribe(SubscriptionConfig::new("roomy").capacity(8))
        .unwrap();
    let full = bus
        .subscribe(SubscriptionConfig::new("full").capacity(1))
        .unwrap();
    let lossy = bus
        .subscribe(
            SubscriptionConfig::new("lossy")
                .capacity(8)
                .droppable(true)
                .overflow(OverflowPolicy::DropNewest),
        )
        .unwrap();
    let publisher = bus.publisher();
    publisher.publish(Tracked::new(1, &live)).unwrap();
    let manual = Manual::new();

    // Cancelled while waiting: nothing anywhere.
    let mut future = publisher.publish_async(Tracked::new(2, &live));
    assert!(manual.poll(&mut future).is_pending());
    assert_eq!((roomy.len(), full.len(), lossy.len()), (1, 1, 1));
    drop(future);
    assert_eq!((roomy.len(), full.len(), lossy.len()), (1, 1, 1));
    assert_eq!(
        live.load(Ordering::SeqCst),
        3,
        "only event 1's three copies"
    );

    // Not cancelled: room in "full" lets it deliver everywhere.
    let mut future = publisher.publish_async(Tracked::new(3, &live));
    assert!(manual.poll(&mut future).is_pending());
    assert_eq!(roomy.len(), 1, "nothing delivered while it waits");
    assert_eq!(full.recv().unwrap().id, 1);
    assert!(matches!(manual.poll(&mut future), Poll::Ready(Ok(()))));
    assert_eq!(ids(&roomy), [1, 3]);
    assert_eq!(ids(&full), [3]);
    assert_eq!(ids(&lossy), [1, 3]);
    let snapshot = bus.snapshot();
    assert_eq!(
        (snapshot.published, snapshot.completed_after_cancel),
        (2, 0)
    );
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

/// Two `Block` subscriptions, both with room at the check; the copy for the first is
/// made after the check and its `Clone` fills the second through another publisher.
/// The future waits there *after* a delivery.
fn committed_race(
    live: &Arc<AtomicIsize>,
) -> (
    Bus<Tracked>,
    Subscription<Tracked>,
    Subscription<Tracked>,
    Tracked,
) {
    let bus = Bus::new();
    let first = bus
        .subscribe(
            SubscriptionConfig::new("first")
                .capacity(4)
                .filter(|e: &Tracked| e.id != 0),
        )
        .unwrap();
    let second = bus
        .subscribe(SubscriptionConfig::new("second").capacity(1))
        .unwrap();
    let other = bus.publisher();
    let filler = Tracked::new(0, live);
    let fill: Hook = Box::new(move || other.try_publish(filler).unwrap());
    let event = Tracked::hooked(1, live, fill);
    (bus, first, second, event)
}

#[test]
fn a_publish_dropped_after_a_delivery_is_completed_by_the_finisher() {
    let live = Arc::new(AtomicIsize::new(0));
    let (bus, first, second, event) = committed_race(&live);
    let publisher = bus.publisher();
    let manual = Manual::new();
    let mut future = publisher.publish_async(event);
    assert!(!future.is_committed());
    assert!(manual.poll(&mut future).is_pending());
    assert_eq!(
        (first.len(), second.len()),
        (1, 1),
        "first has it, second is full"
    );
    assert!(
        future.is_committed(),
        "delivered to one: the publish is committed"
    );

    // Dropped while "second" is still full: the rest is handed to the finisher.
    drop(future);
    assert_eq!(bus.snapshot().completed_after_cancel, 0);
    assert_eq!(second.recv_timeout(HANG).map(|e| e.id), Ok(0));
    assert_eq!(second.recv_timeout(HANG).map(|e| e.id), Ok(1));
    assert_eq!(ids(&first), [1]);
    let deadline = Instant::now() + HANG;
    while bus.snapshot().completed_after_cancel == 0 {
        assert!(
            Instant::now() < deadline,
            "hang: the completion was not counted"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let snapshot = bus.snapshot();
    assert_eq!(snapshot.completed_after_cancel, 1);
    assert_eq!(
        snapshot.published, 2,
        "the filler and the completed publish"
    );
    assert_eq!(second.try_recv().map(|e| e.id), Err(TryRecvError::Empty));
    assert_eq!(live.load(Ordering::SeqCst), 0, "every copy accounted for");
}

#[test]
fn a_publish_dropped_after_a_delivery_completes_at_once_when_there_is_room() {
    let live = Arc::new(AtomicIsize::new(0));
    let (bus, first, second, event) = committed_race(&live);
    let publisher = bus.publisher();
    let manual = Manual::new();
    let mut future = publisher.publish_async(event);
    assert!(manual.poll(&mut future).is_pending());
    assert_eq!(second.recv().unwrap().id, 0); // room, but the future is not polled
    drop(future);
    let snapshot = bus.snapshot();
    assert_eq!(
        (snapshot.completed_after_cancel, snapshot.published),
        (1, 2)
    );
    assert_eq!(ids(&first), [1]);
    assert_eq!(ids(&second), [1]);
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

#[test]
fn a_publish_dropped_after_a_delivery_ends_its_wait_when_the_bus_closes() {
    let live = Arc::new(AtomicIsize::new(0));
    let (bus, first, second, event) = committed_race(&live);
    let publisher = bus.publisher();
    let manual = Manual::new();
    let mut future = publisher.publish_async(event);
    assert!(manual.poll(&mut future).is_pending());
    drop(future);
    bus.close();
    // The finisher's wait ends (the subscription is gone), its copy is dropped.
    assert_eq!(ids(&first), [1]);
    assert_eq!(second.recv_timeout(HANG).map(|e| e.id), Ok(0));
    assert_eq!(
        second.recv_timeout(HANG).map(|e| e.id),
        Err(RecvTimeoutError::Disconnected)
    );
    let deadline = Instant::now() + HANG;
    while live.load(Ordering::SeqCst) != 0 {
        assert!(
            Instant::now() < deadline,
            "hang: the finisher kept its copy"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn without_a_cancellation_the_committed_wait_completes_in_the_future() {
    let live = Arc::new(AtomicIsize::new(0));
    let (bus, first, second, event) = committed_race(&live);
    let publisher = bus.publisher();
    let manual = Manual::new();
    let mut future = publisher.publish_async(event);
    assert!(manual.poll(&mut future).is_pending());
    assert_eq!(second.recv().unwrap().id, 0);
    assert!(manual.wakes() >= 1);
    assert!(matches!(manual.poll(&mut future), Poll::Ready(Ok(()))));
    drop(future);
    assert_eq!((ids(&first), ids(&second)), (vec![1], vec![1]));
    let snapshot = bus.snapshot();
    assert_eq!(
        (snapshot.published, snapshot.completed_after_cancel),
        (2, 0)
    );
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

/// Sync threads and async tasks publish on one bus at once, while subscriptions are
/// resized at random: every subscription gets exactly the events its filter asks for,
/// each once and in each publisher's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn sync_and_async_publishers_with_random_resizes_lose_nothing() {
    within(async {
        const SYNC: u32 = 2;
        const ASYNC: u32 = 4;
        const EACH: u32 = 5000;
        let publishers = SYNC + ASYNC;
        let bus = Bus::new();
        let range = |name: &str| {
            SubscriptionConfig::new(name)
                .capacity(4)
                .min_capacity(1)
                .max_capacity(64)
        };
        let all = bus.subscribe(range("all")).unwrap();
        let evens = bus
            .subscribe(range("evens").filter(|&(_, n): &(u32, u32)| n % 2 == 0))
            .unwrap();
        let also = bus.subscribe(range("also")).unwrap();

        // Consumers: a stream, an async receiver, a thread.
        let all_task = tokio::spawn(async move { all.stream().collect::<Vec<_>>().await });
        let evens_task = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Ok(event) = evens.recv_async().await {
                got.push(event);
            }
            got
        });
        let also_thread = std::thread::spawn(move || {
            let mut got = Vec::new();
            while let Ok(event) = also.recv() {
                got.push(event);
            }
            got
        });

        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let resizer = {
            let bus = bus.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(14);
                let mut resizes = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let name = ["all", "evens", "also"][rng.random_range(0..3)];
                    bus.resize(name, rng.random_range(1..=64)).unwrap();
                    resizes += 1;
                    std::thread::sleep(Duration::from_micros(20));
                }
                resizes
            })
        };

        let sync_threads: Vec<_> = (0..SYNC)
            .map(|p| {
                let publisher = bus.publisher();
                std::thread::spawn(move || {
                    for n in 0..EACH {
                        publisher.publish((p, n)).unwrap();
                    }
                })
            })
            .collect();
        let async_tasks: Vec<_> = (SYNC..publishers)
            .map(|p| {
                let publisher = bus.publisher();
                tokio::spawn(async move {
                    for n in 0..EACH {
                        publisher.publish_async((p, n)).await.unwrap();
                    }
                })
            })
            .collect();
        for task in async_tasks {
            task.await.unwrap();
        }
        for thread in sync_threads {
            tokio::task::spawn_blocking(move || thread.join().unwrap())
                .await
                .unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        let resizes = tokio::task::spawn_blocking(move || resizer.join().unwrap())
            .await
            .unwrap();
        assert!(resizes > 0);
        let snapshot = bus.snapshot();
        assert_eq!(snapshot.published, u64::from(publishers * EACH));
        for sub in &snapshot.subscriptions {
            assert_eq!(sub.dropped(), 0, "{}", sub.name);
        }
        bus.close();

        let all = all_task.await.unwrap();
        assert_each_once_in_order(&all, publishers, EACH);
        let also = tokio::task::spawn_blocking(move || also_thread.join().unwrap())
            .await
            .unwrap();
        assert_each_once_in_order(&also, publishers, EACH);
        let evens = evens_task.await.unwrap();
        let halves: Vec<(u32, u32)> = evens.iter().map(|&(p, n)| (p, n / 2)).collect();
        assert!(evens.iter().all(|&(_, n)| n % 2 == 0));
        assert_each_once_in_order(&halves, publishers, EACH / 2);
    })
    .await;
}

/// Async publishes cancelled at random moments (timeouts) into three `Block`
/// subscriptions, one filtered, while they are resized: each event reaches all of its
/// subscriptions or none, and `published` counts exactly those that reached them
/// (completions of publishes dropped after a delivery included).
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn cancelled_publishes_are_all_or_nothing_under_load() {
    within(async {
        const TASKS: u32 = 4;
        const EACH: u32 = 500;
        let bus = Bus::new();
        let range = |name: &str| {
            SubscriptionConfig::new(name)
                .capacity(2)
                .min_capacity(1)
                .max_capacity(16)
        };
        let subs = [
            bus.subscribe(range("a")).unwrap(),
            bus.subscribe(range("b")).unwrap(),
            bus.subscribe(range("c").filter(|&(_, n): &(u32, u32)| n % 3 == 0))
                .unwrap(),
        ];
        let consumers: Vec<_> = subs
            .into_iter()
            .map(|sub| {
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    while let Ok(event) = sub.recv_async().await {
                        got.push(event);
                        // Slow now and then, so publishers wait and timeouts cancel.
                        if got.len() % 25 == 0 {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                    got
                })
            })
            .collect();
        let publishers: Vec<_> = (0..TASKS)
            .map(|task| {
                let publisher = bus.publisher();
                let bus = bus.clone();
                tokio::spawn(async move {
                    let mut rng = StdRng::seed_from_u64(u64::from(task));
                    let mut cancelled = 0u32;
                    for n in 0..EACH {
                        if n % 50 == 0 {
                            let name = ["a", "b", "c"][rng.random_range(0..3)];
                            bus.resize(name, rng.random_range(1..=16)).unwrap();
                        }
                        let patience = Duration::from_micros(rng.random_range(0..3000));
                        let publish = publisher.publish_async((task, n));
                        if tokio::time::timeout(patience, publish).await.is_err() {
                            cancelled += 1;
                        }
                    }
                    cancelled
                })
            })
            .collect();
        let mut cancelled = 0;
        for publisher in publishers {
            cancelled += publisher.await.unwrap();
        }
        // Completions handed to the finisher may still be on their way: wait until
        // both unfiltered subscriptions hold exactly what was counted as published.
        loop {
            let snapshot = bus.snapshot();
            let delivered = |name| snapshot.subscription(name).unwrap().delivered;
            if delivered("a") == snapshot.published && delivered("b") == snapshot.published {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let snapshot = bus.snapshot();
        let published = snapshot.published;
        // Every publish returned Ok, or was cancelled: before a delivery (nothing
        // anywhere) or after one (completed by the bus, and counted).
        assert_eq!(
            published,
            u64::from(TASKS * EACH - cancelled) + snapshot.completed_after_cancel
        );
        bus.close();
        let mut got = Vec::new();
        for consumer in consumers {
            got.push(consumer.await.unwrap());
        }
        let [a, b, c] = <[Vec<(u32, u32)>; 3]>::try_from(got).unwrap();
        assert_eq!(a.len() as u64, published);
        let mut a_sorted = a.clone();
        a_sorted.sort_unstable();
        a_sorted.dedup();
        assert_eq!(a_sorted.len(), a.len(), "no duplicates");
        let mut b_sorted = b.clone();
        b_sorted.sort_unstable();
        assert_eq!(a_sorted, b_sorted, "a and b got the same events");
        let mut c_sorted = c.clone();
        c_sorted.sort_unstable();
        let expected_c: Vec<_> = a_sorted
            .iter()
            .copied()
            .filter(|&(_, n)| n % 3 == 0)
            .collect();
        assert_eq!(c_sorted, expected_c, "c got exactly the matching ones");
        // (Order is not checked: a completed cancelled publish may land after the
        // same publisher's later events.)
    })
    .await;
}

/// An event that is not `Clone`: it owns its payload and moves through the bus.
#[derive(Debug, PartialEq)]
struct Job(Box<u32>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_clone_event_goes_through_a_single_subscription_bus() {
    within(async {
        let bus: Bus<Job> = Bus::builder().build_single().unwrap();
        let jobs = bus
            .subscribe(SubscriptionConfig::new("jobs").capacity(2))
            .unwrap();
        let err = bus.subscribe(SubscriptionConfig::new("audit")).unwrap_err();
        match &err {
            BusError::FanOutNeedsClone {
                subscription,
                existing,
            } => assert_eq!((&**subscription, &**existing), ("audit", "jobs")),
            other => panic!("expected FanOutNeedsClone, got {other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains("Clone") && message.contains("several subscriptions"));

        let consumer = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Ok(Job(n)) = jobs.recv_async().await {
                got.push(*n);
            }
            got
        });
        let publisher = bus.publisher();
        for n in 0..100 {
            publisher.publish_async(Job(Box::new(n))).await.unwrap();
        }
        let blocking = publisher.clone();
        tokio::task::spawn_blocking(move || blocking.publish(Job(Box::new(100))).unwrap())
            .await
            .unwrap();
        bus.unsubscribe("jobs").unwrap();
        let got = consumer.await.unwrap();
        assert_eq!(got, (0..=100).collect::<Vec<u32>>());

        // Its place is free again.
        let next = bus
            .subscribe(SubscriptionConfig::new("next").filter(|Job(n): &Job| **n > 5))
            .unwrap();
        publisher.publish_async(Job(Box::new(3))).await.unwrap();
        publisher.publish_async(Job(Box::new(7))).await.unwrap();
        assert_eq!(drain(&next), [Job(Box::new(7))]);
        assert_eq!(bus.snapshot().unmatched, 1);

        // A wait for room, completed and cancelled, with no `Clone` anywhere.
        let bus: Bus<Job> = Bus::builder().build_single().unwrap();
        let one = bus
            .subscribe(SubscriptionConfig::new("one").capacity(1))
            .unwrap();
        let publisher = bus.publisher();
        publisher.publish_async(Job(Box::new(1))).await.unwrap();
        let manual = Manual::new();
        let mut waiting = publisher.publish_async(Job(Box::new(2)));
        assert!(manual.poll(&mut waiting).is_pending());
        assert_eq!(one.recv(), Ok(Job(Box::new(1))));
        assert!(matches!(manual.poll(&mut waiting), Poll::Ready(Ok(()))));
        let mut cancelled = publisher.publish_async(Job(Box::new(3)));
        assert!(manual.poll(&mut cancelled).is_pending());
        drop(cancelled);
        assert_eq!(drain(&one), [Job(Box::new(2))]);
        assert_eq!(bus.snapshot().published, 2);
    })
    .await;
}

#[tokio::test]
async fn subscription_recv_async_and_stream_end_on_close() {
    within(async {
        let bus = Bus::new();
        let streamed = bus
            .subscribe(SubscriptionConfig::new("streamed").capacity(2))
            .unwrap();
        let received = bus
            .subscribe(SubscriptionConfig::new("received").capacity(2))
            .unwrap();
        let stream_task =
            tokio::spawn(async move { streamed.stream().collect::<Vec<u32>>().await });
        let recv_task = tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                match received.recv_async().await {
                    Ok(n) => got.push(n),
                    Err(RecvError) => return got,
                }
            }
        });
        let publisher = bus.publisher();
        for n in 0..20 {
            publisher.publish_async(n).await.unwrap();
        }
        bus.close();
        assert!(matches!(
            publisher.publish_async(20).await,
            Err(PublishError::Closed(20))
        ));
        assert_eq!(stream_task.await.unwrap(), (0..20).collect::<Vec<_>>());
        assert_eq!(recv_task.await.unwrap(), (0..20).collect::<Vec<_>>());
    })
    .await;
}
