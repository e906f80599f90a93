//! Task workers (`WorkerPoolBuilder::async_handler`, feature `tokio`) and
//! `WorkerPool::shutdown_async`: exact counts over resizes, no blocked runtime thread,
//! panics caught and dead-lettered, stop requests that wake idle tasks, exact drain
//! reports, and utilisation that counts the time a handler's future runs.
//!
//! Nothing here measures speed: every wait is for a state, bounded only by a generous
//! hang detector (`HANG`). That idle tasks are never polled while idle is checked by a
//! unit test (`idle_tasks_sleep_until_told_to_stop` in `src/pool/handle.rs`), which
//! can count a task's polls.
#![cfg(feature = "tokio")]

use pipeline_core::bus::{Bus, SubscriptionConfig};
use pipeline_core::pool::{DeadLetterReason, HandlerError, PoolError, WorkerPool};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;
#[cfg(target_os = "linux")]
use common::burn_cpu;

/// Only a hang detector: nothing should come near it.
const HANG: Duration = Duration::from_secs(60);

/// Waits (as a task) until `done`, or fails after `HANG`.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let wait = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    if tokio::time::timeout(HANG, wait).await.is_err() {
        panic!("timed out waiting for {what}");
    }
}

/// Events flow from a thread while the pool is resized up and down over and over:
/// every event is handled exactly once, and the drain report says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counts_exact_over_resizes_while_events_flow() {
    const N: u64 = 20_000;
    let bus = Bus::new();
    let sub = bus
        .subscribe(SubscriptionConfig::new("flow").capacity(32))
        .unwrap();
    let sum = Arc::new(AtomicU64::new(0));
    let count = Arc::new(AtomicU64::new(0));
    let pool = WorkerPool::builder("flow")
        .workers(2)
        .min_workers(1)
        .max_workers(16)
        .async_handler({
            let (sum, count) = (sum.clone(), count.clone());
            move |n: u64| {
                let (sum, count) = (sum.clone(), count.clone());
                async move {
                    tokio::task::yield_now().await; // a suspension point per event
                    sum.fetch_add(n, Ordering::Relaxed);
                    count.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
            }
        })
        .spawn(sub)
        .unwrap();
    let publisher = bus.publisher();
    // A thread, not a task: the blocking publish must not run on a runtime thread.
    let producer = std::thread::spawn(move || {
        for n in 1..=N {
            publisher.publish(n).unwrap();
        }
    });
    let mut resizes = 0;
    let sizes = [16, 1, 8, 3, 12, 1, 5];
    while !producer.is_finished() || resizes < sizes.len() {
        let target = sizes[resizes % sizes.len()];
        assert_eq!(pool.resize(target).unwrap(), target);
        resizes += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    producer.join().unwrap();
    pool.resize(100).unwrap(); // clamped to 16
    assert_eq!(pool.stats().max_workers, 16);
    eventually("every event", || count.load(Ordering::Relaxed) == N).await;
    let stats = pool.stats();
    assert_eq!((stats.processed, stats.failed, stats.panics), (N, 0, 0));
    assert_eq!(stats.latency.count, N);
    assert_eq!(stats.workers, 16);
    let report = pool.shutdown_async(HANG).await;
    assert_eq!(
        (report.processed, report.left, report.deadline_passed),
        (N, 0, false)
    );
    assert_eq!(report.unfinished_workers, 0);
    assert_eq!(sum.load(Ordering::Relaxed), N * (N + 1) / 2);
    assert_eq!(count.load(Ordering::Relaxed), N);
}

/// One runtime thread, eight workers, and a handler that can only finish once all
/// eight are inside it at the same time (a barrier): only possible if no worker
/// blocks the thread while it waits, for an event or in its handler.
#[tokio::test(flavor = "current_thread")]
async fn current_thread_runtime_runs_more_workers_than_threads() {
    const WORKERS: usize = 8;
    let bus = Bus::new();
    let sub = bus
        .subscribe(SubscriptionConfig::new("barrier").capacity(WORKERS))
        .unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(WORKERS));
    let passed = Arc::new(AtomicUsize::new(0));
    let pool = WorkerPool::builder("barrier")
        .workers(WORKERS)
        .async_handler({
            let (barrier, passed) = (barrier.clone(), passed.clone());
            move |_: usize| {
                let (barrier, passed) = (barrier.clone(), passed.clone());
                async move {
                    barrier.wait().await;
                    passed.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
            }
        })
        .spawn(sub)
        .unwrap();
    let publisher = bus.publisher();
    for n in 0..WORKERS {
        publisher.try_publish(n).unwrap(); // room for all: never waits
    }
    drop(publisher);
    eventually("all eight past the barrier", || {
        passed.load(Ordering::Relaxed) == WORKERS
    })
    .await;
    let report = pool.shutdown_async(HANG).await;
    assert_eq!((report.processed, report.left), (WORKERS as u64, 0));
}

/// Panics while making the handler's future and while polling it are caught, counted
/// and dead-lettered with the panic message, as errors are; the workers go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_are_caught_and_dead_lettered() {
    let bus = Bus::new();
    let sub = bus
        .subscribe(SubscriptionConfig::new("faulty").capacity(64))
        .unwrap();
    let letters = Arc::new(Mutex::new(Vec::new()));
    let pool = WorkerPool::builder("faulty")
        .workers(2)
        .async_handler(|n: u32| {
            if n.is_multiple_of(3) {
                panic!("in the call {n}");
            }
            async move {
                tokio::task::yield_now().await;
                match n % 3 {
                    1 => panic!("in the future {n}"),
                    _ if n.is_multiple_of(2) => Err(HandlerError::new(format!("even {n}"))),
                    _ => Ok(()),
                }
            }
        })
        .dead_letter({
            let letters = letters.clone();
            move |letter| {
                let reason = match &letter.reason {
                    DeadLetterReason::Panicked(message) => format!("panic: {message}"),
                    DeadLetterReason::Failed(error) => format!("error: {error}"),
                    other => format!("{other}"),
                };
                assert_eq!(&*letter.pool, "faulty");
                letters.lock().unwrap().push((letter.event, reason));
            }
        })
        .spawn(sub)
        .unwrap();
    let publisher = bus.publisher();
    for n in 0..30u32 {
        publisher.try_publish(n).unwrap();
    }
    drop(publisher);
    eventually("every event", || {
        let s = pool.stats();
        s.processed + s.failed + s.panics == 30
    })
    .await;
    let stats = pool.stats();
    // n % 3 == 0: 10 panics in the call; n % 3 == 1: 10 in the future; n % 3 == 2:
    // 2, 8, 14, 20, 26 fail, 5, 11, 17, 23, 29 succeed.
    assert_eq!((stats.panics, stats.failed, stats.processed), (20, 5, 5));
    assert_eq!((stats.dead_letters, stats.dead_letter_panics), (25, 0));
    assert_eq!(stats.workers, 2, "no worker was lost to a panic");
    assert_eq!(stats.latency.count, 30);
    let mut letters = letters.lock().unwrap().clone();
    letters.sort();
    let mut expected: Vec<(u32, String)> = (0..30u32)
        .filter_map(|n| match n % 3 {
            0 => Some((n, format!("panic: in the call {n}"))),
            1 => Some((n, format!("panic: in the future {n}"))),
            _ if n % 2 == 0 => Some((n, format!("error: even {n}"))),
            _ => None,
        })
        .collect();
    expected.sort();
    assert_eq!(letters, expected);
    let report = pool.shutdown_async(HANG).await;
    assert_eq!((report.processed, report.left), (30, 0));
}

/// Scaling down wakes the stopped tasks while they idle: with no event, no timer and
/// one runtime thread, nothing else could make them exit. The remaining worker still
/// takes events.
#[tokio::test(flavor = "current_thread")]
async fn scale_down_wakes_a_stopped_idle_task_at_once() {
    let bus = Bus::new();
    let sub = bus.subscribe(SubscriptionConfig::new("idle")).unwrap();
    let handled = Arc::new(AtomicU64::new(0));
    let pool = WorkerPool::builder("idle")
        .workers(4)
        .min_workers(1)
        .max_workers(4)
        .async_handler({
            let handled = handled.clone();
            move |_: u8| {
                let handled = handled.clone();
                async move {
                    handled.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
            }
        })
        .spawn(sub)
        .unwrap();
    // Let every task reach its idle wait.
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
    assert_eq!(pool.resize(1).unwrap(), 1);
    eventually("the three stopped tasks to exit", || {
        let s = pool.stats();
        (s.workers, s.retiring) == (1, 0)
    })
    .await;
    bus.publisher().try_publish(7).unwrap();
    eventually("the remaining worker to handle an event", || {
        handled.load(Ordering::Relaxed) == 1
    })
    .await;
    // And growing again starts tasks that take events too.
    assert_eq!(pool.resize(4).unwrap(), 4);
    let publisher = bus.publisher();
    for n in 0..4 {
        publisher.try_publish(n).unwrap();
    }
    drop(publisher);
    let report = pool.shutdown_async(HANG).await;
    assert_eq!((report.processed, report.left), (5, 0));
    assert_eq!(handled.load(Ordering::Relaxed), 5);
}

/// A backlog is drained to the last event, and the report is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_async_drains_a_backlog_and_reports_exactly() {
    let bus = Bus::new();
    let sub = bus
        .subscribe(SubscriptionConfig::new("backlog").capacity(1000))
        .unwrap();
    let publisher = bus.publisher();
    for n in 0..500u32 {
        publisher.try_publish(n).unwrap();
    }
    drop(publisher);
    let count = Arc::new(AtomicU64::new(0));
    let pool = WorkerPool::builder("backlog")
        .workers(3)
        .async_handler({
            let count = count.clone();
            move |_| {
                let count = count.clone();
                async move {
                    tokio::task::yield_now().await;
                    count.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
            }
        })
        .spawn(sub)
        .unwrap();
    let report = pool.shutdown_async(HANG).await;
    assert_eq!(
        (report.processed, report.left, report.deadline_passed),
        (500, 0, false)
    );
    assert_eq!(report.unfinished_workers, 0);
    assert_eq!(count.load(Ordering::Relaxed), 500);
}

/// A handler that never finishes: the shutdown stops waiting at its deadline, detaches
/// that worker and counts its event as left; every other event was handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_async_deadline_leaves_a_stuck_handler_behind() {
    let bus = Bus::new();
    let sub = bus
        .subscribe(SubscriptionConfig::new("stuck").capacity(16))
        .unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let pool = WorkerPool::builder("stuck")
        .workers(2)
        .async_handler({
            let done = done.clone();
            move |n: u32| {
                let done = done.clone();
                async move {
                    if n == 0 {
                        std::future::pending::<()>().await; // never finishes
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
            }
        })
        .spawn(sub)
        .unwrap();
    let publisher = bus.publisher();
    for n in 0..10u32 {
        publisher.try_publish(n).unwrap();
    }
    drop(publisher);
    eventually("the nine other events", || {
        done.load(Ordering::Relaxed) == 9
    })
    .await;
    let report = pool.shutdown_async(Duration::from_millis(50)).await;
    assert_eq!((report.processed, report.left), (9, 1));
    assert!(report.deadline_passed);
    assert_eq!(report.unfinished_workers, 1);
}

/// `shutdown_async` of a pool of threads, from a current-thread runtime: it waits as
/// a task, so its one thread stays free, and the report is the same as `shutdown`'s.
#[tokio::test(flavor = "current_thread")]
async fn shutdown_async_of_thread_workers() {
    let bus = Bus::new();
    let sub = bus
        .subscribe(SubscriptionConfig::new("threads").capacity(128))
        .unwrap();
    let pool = WorkerPool::builder("threads")
        .workers(3)
        .handler(|_: u32| {
            std::thread::sleep(Duration::from_micros(50));
            Ok(())
        })
        .spawn(sub)
        .unwrap();
    let publisher = bus.publisher();
    for n in 0..100u32 {
        publisher.try_publish(n).unwrap();
    }
    drop(publisher);
    // A task that must keep running on this thread while the shutdown waits.
    let ticks = Arc::new(AtomicU64::new(0));
    let ticker = tokio::spawn({
        let ticks = ticks.clone();
        async move {
            loop {
                ticks.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        }
    });
    let report = pool.shutdown_async(HANG).await;
    ticker.abort();
    assert_eq!(
        (report.processed, report.left, report.deadline_passed),
        (100, 0, false)
    );
    assert!(ticks.load(Ordering::Relaxed) > 0);
}

/// `drain_async` through a shared reference, as a pipeline does with a pool it shares
/// with its control loop; resizing after it starts nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_async_through_a_shared_pool() {
    let bus = Bus::new();
    let sub = bus
        .subscribe(SubscriptionConfig::new("shared").capacity(64))
        .unwrap();
    let pool = Arc::new(
        WorkerPool::builder("shared")
            .workers(2)
            .min_workers(1)
            .max_workers(4)
            .async_handler(|_: u32| async { Ok(()) })
            .spawn(sub)
            .unwrap(),
    );
    let knob = pool.clone();
    let publisher = bus.publisher();
    for n in 0..50u32 {
        publisher.try_publish(n).unwrap();
    }
    drop(publisher);
    let report = pool.drain_async(HANG).await;
    assert_eq!((report.processed, report.left), (50, 0));
    assert_eq!(
        knob.resize(4).unwrap(),
        0,
        "a drained pool starts no worker"
    );
    assert_eq!(knob.stats().workers, 0);
}

/// Utilisation counts the time a handler's future runs, awaiting included, with
/// bounds that hold at any speed: exactly 0 before any event; with one of two
/// workers inside its handler, never above 1/2 and reaching it; with both, reaching 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utilisation_reflects_handler_busy_time() {
    let bus = Bus::new();
    let sub = bus
        .subscribe(SubscriptionConfig::new("busy").capacity(8))
        .unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let inside = Arc::new(AtomicUsize::new(0));
    let pool = WorkerPool::builder("busy")
        .workers(2)
        .async_handler({
            let (gate, inside) = (gate.clone(), inside.clone());
            move |_: u32| {
                let (gate, inside) = (gate.clone(), inside.clone());
                async move {
                    inside.fetch_add(1, Ordering::SeqCst);
                    gate.acquire().await.unwrap().forget(); // awaits, burns no CPU
                    Ok(())
                }
            }
        })
        .spawn(sub)
        .unwrap();
    assert_eq!(pool.stats().utilisation, 0.0, "no handler has run");
    let publisher = bus.publisher();
    publisher.try_publish(1).unwrap();
    eventually("one worker inside its handler", || {
        inside.load(Ordering::SeqCst) == 1
    })
    .await;
    // Both workers were started before the event was published, so one busy worker
    // can never be more than half of the pool's time.
    eventually("utilisation near 1/2", || {
        let u = pool.stats().utilisation;
        assert!(u <= 0.5 + 1e-9, "one of two workers busy, yet {u}");
        u >= 0.45
    })
    .await;
    publisher.try_publish(2).unwrap();
    eventually("utilisation near 1", || {
        let u = pool.stats().utilisation;
        assert!(u <= 1.0, "{u}");
        u >= 0.95
    })
    .await;
    gate.add_permits(2);
    drop(publisher);
    let report = pool.shutdown_async(HANG).await;
    assert_eq!((report.processed, report.left), (2, 0));
}

/// Without a runtime (none current, none given), an async pool is refused, naming the
/// setting; with one given, it starts from a plain thread.
#[test]
fn async_handler_needs_a_runtime() {
    let bus = Bus::new();
    let sub = bus.subscribe(SubscriptionConfig::new("rt")).unwrap();
    let err = WorkerPool::builder("rt")
        .async_handler(|_: u32| async { Ok(()) })
        .spawn(sub)
        .unwrap_err();
    assert!(
        matches!(
            &err,
            PoolError::InvalidConfig {
                field: "runtime",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("tokio runtime"), "{err}");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sub = bus.subscribe(SubscriptionConfig::new("rt2")).unwrap();
    let pool = WorkerPool::builder("rt2")
        .async_handler(|_: u32| async { Ok(()) })
        .runtime(runtime.handle().clone())
        .spawn(sub)
        .unwrap();
    bus.publisher().publish(1).unwrap();
    let report = pool.shutdown(HANG); // blocking, from a plain thread: fine
    assert_eq!((report.processed, report.left), (1, 0));
}

/// The runtime under a pool of tasks shuts down: it drops the tasks, each of which
/// counts its exit as it goes, so a later shutdown waits for no one; the event that
/// was inside a handler counts as left.
#[test]
fn a_runtime_shut_down_under_the_pool_counts_its_tasks_as_exited() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let bus = Bus::new();
    let sub = bus
        .subscribe(SubscriptionConfig::new("orphan").capacity(8))
        .unwrap();
    let inside = Arc::new(AtomicUsize::new(0));
    let pool = WorkerPool::builder("orphan")
        .workers(3)
        .async_handler({
            let inside = inside.clone();
            move |_: u32| {
                let inside = inside.clone();
                async move {
                    inside.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<()>().await;
                    Ok(())
                }
            }
        })
        .runtime(runtime.handle().clone())
        .spawn(sub)
        .unwrap();
    bus.publisher().publish(1).unwrap();
    let deadline = std::time::Instant::now() + HANG;
    while inside.load(Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the event never arrived"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(runtime); // drops every task, the one in its handler too
    assert_eq!(pool.stats().workers, 0);
    let report = pool.shutdown(HANG);
    assert_eq!((report.processed, report.left), (0, 1));
    assert_eq!(report.unfinished_workers, 0);
    assert!(!report.deadline_passed);
}

/// An event type that is not `Clone`.
struct NotClone(u32);

/// Compile-time checks: a pool of task workers, its builder, `resize` and
/// `shutdown_async` need no `Clone` event (only `dead_letter` does); the pool is `Send`
/// and `Sync`, and the future of `shutdown_async` is `Send` (so it can be spawned).
#[allow(dead_code)]
fn compile_checks(sub: pipeline_core::bus::Subscription<NotClone>) {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<WorkerPool<NotClone>>();
    let pool = WorkerPool::builder("not-clone")
        .async_handler(|event: NotClone| async move {
            let _ = event.0;
            Ok(())
        })
        .spawn(sub)
        .unwrap();
    pool.resize(2).unwrap();
    let shutdown = pool.shutdown_async(HANG);
    send(&shutdown);
}

/// An async handler's CPU time is summed over its future's polls: one that burns CPU
/// in a poll reads as CPU-bound, one that awaits a timer reads as waiting (issue 15).
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_handler_cpu_time_is_summed_over_polls() {
    let stats = |burn: bool| async move {
        let bus = Bus::new();
        let sub = bus
            .subscribe(SubscriptionConfig::new("jobs").capacity(64))
            .unwrap();
        let publisher = bus.publisher();
        for n in 0..32u32 {
            publisher.publish(n).unwrap();
        }
        let pool = WorkerPool::builder("cpu")
            .workers(2)
            .async_handler(move |_n: u32| async move {
                tokio::task::yield_now().await;
                if burn {
                    burn_cpu(Duration::from_millis(2));
                } else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Ok::<(), HandlerError>(())
            })
            .spawn(sub)
            .unwrap();
        eventually("32 handled", || pool.stats().processed == 32).await;
        let stats = pool.stats();
        drop(bus);
        pool.shutdown_async(HANG).await;
        stats
    };
    let burnt = stats(true).await;
    let per_event = burnt.cpu.per_event().expect("sampled events");
    assert!(burnt.cpu.events >= 4, "{:?}", burnt.cpu);
    assert!(per_event >= Duration::from_millis(2), "{per_event:?}");
    let waited = stats(false).await;
    let per_event = waited.cpu.per_event().expect("sampled events");
    assert!(per_event < Duration::from_micros(2500), "{per_event:?}");
    assert!(
        waited.busy_time >= Duration::from_millis(5 * 32),
        "{:?}",
        waited.busy_time
    );
}
