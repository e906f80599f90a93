//! Worker pools: every event handled once, failures and panics reach the dead-letter
//! hook, resize within bounds, shutdown drains within its deadline and reports what it
//! left.

use pipeline_core::bus::{Bus, Subscription, SubscriptionConfig};
use pipeline_core::pool::{DeadLetter, DeadLetterReason, HandlerError, PoolError, WorkerPool};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

mod common;
#[cfg(target_os = "linux")]
use common::burn_cpu;
use common::quiet_induced_panics;

const PATIENCE: Duration = Duration::from_secs(30);

/// A bus with one subscription holding `0..n`, and the publisher's bus kept alive.
fn loaded(n: u32, capacity: usize) -> (Bus<u32>, Subscription<u32>) {
    let bus = Bus::new();
    let sub = bus
        .subscribe(SubscriptionConfig::new("jobs").capacity(capacity))
        .unwrap();
    let publisher = bus.publisher();
    (0..n).for_each(|i| publisher.publish(i).unwrap());
    (bus, sub)
}

/// Polls `done` until it holds or PATIENCE passes (for state only threads can change).
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let give_up = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < give_up, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn every_event_is_handled_exactly_once() {
    let (_bus, sub) = loaded(1000, 1024);
    let seen = Arc::new(Mutex::new(vec![0u8; 1000]));
    let record = seen.clone();
    let pool = WorkerPool::builder("once")
        .workers(3)
        .handler(move |i: u32| {
            record.lock().unwrap()[i as usize] += 1;
            Ok(())
        })
        .spawn(sub)
        .unwrap();
    let report = pool.shutdown(PATIENCE);
    assert_eq!((report.processed, report.left), (1000, 0));
    assert!(!report.deadline_passed);
    assert_eq!(report.unfinished_workers, 0);
    assert!(seen.lock().unwrap().iter().all(|&n| n == 1));
}

#[test]
fn handler_errors_go_to_the_dead_letter_hook() {
    let (_bus, sub) = loaded(10, 16);
    let (dead_tx, dead_rx) = mpsc::channel::<DeadLetter<u32>>();
    let dead_tx = Mutex::new(dead_tx);
    let pool = WorkerPool::builder("errors")
        .handler(|i: u32| {
            if i.is_multiple_of(3) {
                return Err(HandlerError::new(format!("bad {i}")));
            }
            Ok(())
        })
        .dead_letter(move |letter| dead_tx.lock().unwrap().send(letter).unwrap())
        .spawn(sub)
        .unwrap();
    let report = pool.shutdown(PATIENCE);
    assert_eq!((report.processed, report.left), (10, 0));
    let mut letters: Vec<DeadLetter<u32>> = dead_rx.try_iter().collect();
    letters.sort_by_key(|l| l.event);
    assert_eq!(
        letters.iter().map(|l| l.event).collect::<Vec<_>>(),
        [0, 3, 6, 9]
    );
    for letter in &letters {
        assert_eq!(&*letter.pool, "errors");
        match &letter.reason {
            DeadLetterReason::Failed(error) => {
                assert_eq!(error.to_string(), format!("bad {}", letter.event));
            }
            other => panic!("expected Failed, got {other:?}"),
        }
    }
}

#[test]
fn a_panicking_handler_is_caught_its_event_dead_lettered_and_the_worker_goes_on() {
    quiet_induced_panics();
    let bus = Bus::new();
    let sub = bus.subscribe(SubscriptionConfig::new("jobs")).unwrap();
    let (dead_tx, dead_rx) = mpsc::channel::<DeadLetter<u32>>();
    let dead_tx = Mutex::new(dead_tx);
    let handled = Arc::new(AtomicU64::new(0));
    let count = handled.clone();
    let pool = WorkerPool::builder("panics")
        .workers(1)
        .handler(move |i: u32| {
            if i.is_multiple_of(2) {
                panic!("induced panic on {i}");
            }
            count.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .dead_letter(move |letter| dead_tx.lock().unwrap().send(letter).unwrap())
        .spawn(sub)
        .unwrap();
    let publisher = bus.publisher();
    for i in 0..10 {
        publisher.publish(i).unwrap();
    }
    let mut letters: Vec<(u32, String)> = (0..5)
        .map(|_| {
            let letter = dead_rx.recv_timeout(PATIENCE).expect("a dead letter");
            match letter.reason {
                DeadLetterReason::Panicked(message) => (letter.event, message),
                other => panic!("expected Panicked, got {other:?}"),
            }
        })
        .collect();
    letters.sort();
    let expected: Vec<(u32, String)> = (0..10)
        .step_by(2)
        .map(|i| (i, format!("induced panic on {i}")))
        .collect();
    assert_eq!(letters, expected);

    // The same single worker is still there and still handling events.
    publisher.publish(11).unwrap();
    eventually("the worker to handle 11", || pool.stats().processed == 6);
    assert_eq!(handled.load(Ordering::Relaxed), 6);
    let stats = pool.stats();
    assert_eq!((stats.workers, stats.panics, stats.processed), (1, 5, 6));
    assert_eq!((stats.failed, stats.dead_letters), (0, 5));
    pool.shutdown(PATIENCE);
}

#[test]
fn without_a_hook_failures_are_counted() {
    quiet_induced_panics();
    let (_bus, sub) = loaded(6, 8);
    let pool = WorkerPool::builder("no-hook")
        .handler(|i: u32| match i % 3 {
            0 => Ok(()),
            1 => Err("failed".into()),
            _ => panic!("induced"),
        })
        .spawn(sub)
        .unwrap();
    let stats = {
        eventually("six events", || {
            let s = pool.stats();
            s.processed + s.failed + s.panics == 6
        });
        pool.stats()
    };
    assert_eq!((stats.processed, stats.failed, stats.panics), (2, 2, 2));
    assert_eq!(stats.dead_letters, 0);
    assert_eq!(pool.shutdown(PATIENCE).left, 0);
}

#[test]
fn a_panicking_dead_letter_hook_is_caught_too() {
    quiet_induced_panics();
    let (_bus, sub) = loaded(4, 8);
    let pool = WorkerPool::builder("bad-hook")
        .handler(|_: u32| Err("always".into()))
        .dead_letter(|_| panic!("induced hook panic"))
        .spawn(sub)
        .unwrap();
    // `failed` is counted after the hook returns.
    eventually("four failures", || pool.stats().failed == 4);
    let stats = pool.stats();
    assert_eq!((stats.failed, stats.dead_letter_panics), (4, 4));
    assert_eq!(pool.shutdown(PATIENCE).left, 0);
}

#[test]
fn config_errors_name_the_field() {
    let field = |builder: pipeline_core::pool::WorkerPoolBuilder<u32>| {
        let bus = Bus::new();
        let sub = bus.subscribe(SubscriptionConfig::new("s")).unwrap();
        match builder.spawn(sub) {
            Err(PoolError::InvalidConfig { field, .. }) => field,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    };
    let ok = |_: u32| Ok(());
    assert_eq!(field(WorkerPool::builder("p")), "handler");
    assert_eq!(
        field(WorkerPool::builder("p").handler(ok).workers(0)),
        "workers"
    );
    assert_eq!(
        field(
            WorkerPool::builder("p")
                .handler(ok)
                .workers(2)
                .min_workers(3)
        ),
        "workers"
    );
    assert_eq!(
        field(
            WorkerPool::builder("p")
                .handler(ok)
                .workers(5)
                .max_workers(4)
        ),
        "workers"
    );
}

/// Regression test for issue 13, finding 10: `workers(0)` was refused as an invalid
/// `min_workers`, a setter the user never called. Each error names the setter the
/// offending value came from, and says so when an unset bound followed `workers`.
#[test]
fn config_errors_name_the_setter_the_value_came_from() {
    let builder = || WorkerPool::builder("p").handler(|_: u32| Ok(()));
    let cases = [
        (
            "workers(0)",
            builder().workers(0),
            "invalid `workers`: must be at least 1 (the minimum follows it when \
             `min_workers` is not set)",
        ),
        (
            "workers(0).max_workers(4)",
            builder().workers(0).max_workers(4),
            "invalid `workers`: must be at least 1 (the minimum follows it when \
             `min_workers` is not set)",
        ),
        (
            "workers(0).min_workers(1).max_workers(4)",
            builder().workers(0).min_workers(1).max_workers(4),
            "invalid `workers`: 0 is below min_workers 1: need min_workers <= workers",
        ),
        (
            "workers(2).min_workers(0)",
            builder().workers(2).min_workers(0),
            "invalid `min_workers`: must be at least 1",
        ),
        (
            "workers(0).min_workers(0)",
            builder().workers(0).min_workers(0),
            "invalid `min_workers`: must be at least 1",
        ),
        (
            "max_workers(0)",
            builder().max_workers(0),
            "invalid `max_workers`: must be at least 1",
        ),
        (
            "workers(2).min_workers(3).max_workers(1)",
            builder().workers(2).min_workers(3).max_workers(1),
            "invalid `max_workers`: 1 is below min_workers 3: need min_workers <= max_workers",
        ),
        (
            "workers(2).min_workers(3)",
            builder().workers(2).min_workers(3),
            "invalid `workers`: 2 is below min_workers 3: need min_workers <= workers",
        ),
        (
            "workers(5).max_workers(4)",
            builder().workers(5).max_workers(4),
            "invalid `workers`: 5 is above max_workers 4: need workers <= max_workers",
        ),
    ];
    // Every mismatch, before failing.
    let mismatches: Vec<String> = cases
        .into_iter()
        .filter_map(|(setters, builder, expected)| {
            let bus = Bus::new();
            let sub = bus.subscribe(SubscriptionConfig::new("s")).unwrap();
            let got = match builder.spawn(sub) {
                Ok(pool) => {
                    pool.shutdown(PATIENCE);
                    "accepted".to_owned()
                }
                Err(e) => e.to_string(),
            };
            (got != expected)
                .then(|| format!("{setters}:\n  got      {got}\n  expected {expected}"))
        })
        .collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn resize_is_clamped_and_stopped_workers_retire() {
    let bus = Bus::new();
    let sub = bus.subscribe(SubscriptionConfig::new("s")).unwrap();
    let pool = WorkerPool::builder("elastic")
        .workers(2)
        .min_workers(1)
        .max_workers(4)
        .handler(|_: u32| Ok(()))
        .spawn(sub)
        .unwrap();
    assert_eq!(pool.stats().workers, 2);
    assert_eq!(pool.resize(10).unwrap(), 4);
    assert_eq!(pool.stats().workers, 4);
    assert_eq!(pool.resize(0).unwrap(), 1);
    let stats = pool.stats();
    assert_eq!(
        (stats.workers, stats.min_workers, stats.max_workers),
        (1, 1, 4)
    );
    // Idle stopped workers are woken at once (no polling) and exit.
    eventually("the stopped workers to exit", || pool.stats().retiring == 0);
    let report = pool.shutdown(PATIENCE);
    assert!(!report.deadline_passed);
}

#[test]
fn a_worker_range_set_later_bounds_resizes_and_the_stats() {
    let bus = Bus::new();
    let sub = bus.subscribe(SubscriptionConfig::new("s")).unwrap();
    let pool = WorkerPool::builder("ranged")
        .workers(3)
        .min_workers(2)
        .max_workers(4)
        .handler(|_: u32| Ok(()))
        .spawn(sub)
        .unwrap();
    // Wider: the count is inside, so it stays; resizes reach the new bounds.
    assert_eq!(pool.set_worker_range(1, 8).unwrap(), 3);
    assert_eq!(pool.resize(100).unwrap(), 8);
    // Narrower, excluding the count: clamped at once to the nearer bound.
    assert_eq!(pool.set_worker_range(1, 2).unwrap(), 2);
    let stats = pool.stats();
    assert_eq!(
        (stats.workers, stats.min_workers, stats.max_workers),
        (2, 1, 2)
    );
    assert_eq!(pool.resize(5).unwrap(), 2);
    assert_eq!(pool.set_worker_range(3, 5).unwrap(), 3);
    assert_eq!(pool.stats().workers, 3);
    // A bad range is refused whole, naming the setter; nothing changes.
    assert!(matches!(
        pool.set_worker_range(0, 5),
        Err(PoolError::InvalidConfig {
            field: "min_workers",
            ..
        })
    ));
    assert!(matches!(
        pool.set_worker_range(6, 5),
        Err(PoolError::InvalidConfig {
            field: "max_workers",
            ..
        })
    ));
    let stats = pool.stats();
    assert_eq!(
        (stats.workers, stats.min_workers, stats.max_workers),
        (3, 3, 5)
    );
    let publisher = bus.publisher();
    for i in 0..100 {
        publisher.publish(i).unwrap();
    }
    drop(publisher);
    let report = pool.shutdown(PATIENCE);
    assert_eq!((report.processed, report.left), (100, 0));
}

#[test]
fn shutdown_drains_everything_buffered_within_the_deadline() {
    let bus = Bus::new();
    let sub = bus
        .subscribe(SubscriptionConfig::new("jobs").capacity(1024))
        .unwrap();
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let gate_rx = Mutex::new(gate_rx);
    let (started_tx, started_rx) = mpsc::channel();
    let started_tx = Mutex::new(started_tx);
    let pool = WorkerPool::builder("drain")
        .handler(move |i: u32| {
            if i == 0 {
                started_tx.lock().unwrap().send(()).unwrap();
                let _ = gate_rx.lock().unwrap().recv(); // hold the worker until shutdown
            }
            Ok(())
        })
        .spawn(sub)
        .unwrap();
    let publisher = bus.publisher();
    (0..1000).for_each(|i| publisher.publish(i).unwrap());
    started_rx.recv_timeout(PATIENCE).unwrap();
    // The worker holds event 0 and 999 are buffered when the drain is asked for.
    let shutdown = std::thread::spawn(move || pool.shutdown(PATIENCE));
    drop(gate_tx);
    let report = shutdown.join().unwrap();
    assert_eq!((report.processed, report.left), (1000, 0));
    assert!(!report.deadline_passed);
    assert_eq!(report.unfinished_workers, 0);
}

#[test]
fn shutdown_reports_what_it_left_when_the_deadline_passes() {
    let (_bus, sub) = loaded(5, 8);
    let (started_tx, started_rx) = mpsc::channel();
    let started_tx = Mutex::new(started_tx);
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let gate_rx = Mutex::new(gate_rx);
    let pool = WorkerPool::builder("stuck")
        .handler(move |_: u32| {
            started_tx.lock().unwrap().send(()).unwrap();
            // Blocks until the test opens the gate (or drops it).
            let _ = gate_rx.lock().unwrap().recv();
            Ok(())
        })
        .spawn(sub)
        .unwrap();
    started_rx
        .recv_timeout(PATIENCE)
        .expect("the handler starts");
    let report = pool.shutdown(Duration::from_millis(20));
    // One event in the stuck handler, four still buffered.
    assert_eq!(report.processed, 0);
    assert_eq!(report.left, 5);
    assert!(report.deadline_passed);
    assert_eq!(report.unfinished_workers, 1);
    drop(gate_tx); // releases the detached worker, which then exits
}

#[test]
fn stats_measure_utilisation_and_latency() {
    let (_bus, sub) = loaded(20, 32);
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let gate_rx = Mutex::new(gate_rx);
    let (started_tx, started_rx) = mpsc::channel();
    let started_tx = Mutex::new(started_tx);
    let pool = WorkerPool::builder("measured")
        .handler(move |i: u32| {
            if i == 19 {
                started_tx.lock().unwrap().send(()).unwrap();
                let _ = gate_rx.lock().unwrap().recv(); // hold the last event
            }
            Ok(())
        })
        .spawn(sub)
        .unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();
    let stats = pool.stats();
    assert_eq!(stats.processed, 19);
    assert_eq!(stats.latency.count, 19);
    assert!(stats.latency.p50 <= stats.latency.p99 && stats.latency.p99 <= stats.latency.max);
    // The worker is in its handler right now, so it has been busy.
    assert!(
        stats.utilisation > 0.0 && stats.utilisation <= 1.0,
        "{stats:?}"
    );
    assert_eq!(stats.queued, 0);
    drop(gate_tx);
    let report = pool.shutdown(PATIENCE);
    assert_eq!((report.processed, report.left), (20, 0));
}

/// Utilisation counts each worker's capacity from when it started: a pool whose
/// workers have all been busy since they started reads (close to) 1.0 right after it
/// grew, not the share the new workers would have had over the whole window. (It read
/// about 0.4 here before: one worker busy for 300 ms, then four for 100 ms, measured
/// as if all four had been there for 400 ms.)
#[test]
fn utilisation_after_growth_counts_new_workers_from_their_start() {
    let (_bus, sub) = loaded(8, 8);
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let gate_rx = Mutex::new(gate_rx);
    let busy = Arc::new(AtomicU64::new(0));
    let pool = WorkerPool::builder("growing")
        .max_workers(4)
        .handler({
            let busy = busy.clone();
            move |_: u32| {
                busy.fetch_add(1, Ordering::SeqCst);
                let _ = gate_rx.lock().unwrap().recv(); // busy until the gate drops
                Ok(())
            }
        })
        .spawn(sub)
        .unwrap();
    eventually("the first worker busy", || busy.load(Ordering::SeqCst) == 1);
    std::thread::sleep(Duration::from_millis(300));
    pool.resize(4).unwrap();
    // The gate is held by one worker at a time; the others wait for its lock, inside
    // their handlers, so all four are busy.
    eventually("four workers busy", || busy.load(Ordering::SeqCst) == 4);
    // Long beside the start-up gap of a new worker (its thread start to its first
    // event), which a busy machine can stretch to tens of milliseconds.
    std::thread::sleep(Duration::from_secs(1));
    let stats = pool.stats();
    assert_eq!(stats.workers, 4);
    // Each new worker counts from its thread's start and turns busy when it takes an
    // event: a busy machine may leave tens of milliseconds between the two, so the
    // bound leaves room for that. The bug this pins read about 0.4 (new workers
    // counted as idle over the whole window).
    assert!(stats.utilisation > 0.7, "{}", stats.utilisation);
    drop(gate_tx);
    let report = pool.shutdown(PATIENCE);
    assert_eq!((report.processed, report.left), (8, 0));
}

/// The controller tells a CPU-bound stage from one that waits by the handler's CPU time
/// per event (issue 15): measured on the thread's CPU clock for a sample of events,
/// beside the exact total busy (wall) time.
#[cfg(target_os = "linux")]
#[test]
fn stats_measure_handler_cpu_time_apart_from_waiting() {
    let (bus, sub) = loaded(64, 64);
    let pool = WorkerPool::builder("burn")
        .workers(2)
        .handler(|_| {
            burn_cpu(Duration::from_millis(2));
            Ok(())
        })
        .spawn(sub)
        .unwrap();
    eventually("64 burnt", || pool.stats().processed == 64);
    let burnt = pool.stats();
    drop((bus, pool));
    let per_event = burnt.cpu.per_event().expect("sampled events");
    // One in 8 per worker: 64 events on 2 workers sample at least 8.
    assert!(burnt.cpu.events >= 8, "{:?}", burnt.cpu);
    assert!(per_event >= Duration::from_millis(2), "{per_event:?}");
    assert!(
        burnt.busy_time >= Duration::from_millis(2 * 64),
        "{:?}",
        burnt.busy_time
    );

    let (bus, sub) = loaded(64, 64);
    let pool = WorkerPool::builder("sleep")
        .workers(2)
        .handler(|_| {
            std::thread::sleep(Duration::from_millis(5));
            Ok(())
        })
        .spawn(sub)
        .unwrap();
    eventually("64 slept", || pool.stats().processed == 64);
    let slept = pool.stats();
    drop((bus, pool));
    let per_event = slept.cpu.per_event().expect("sampled events");
    // Sleeping costs next to no CPU: far below the 5 ms each event waited.
    assert!(per_event < Duration::from_micros(2500), "{per_event:?}");
    assert!(
        slept.busy_time >= Duration::from_millis(5 * 64),
        "{:?}",
        slept.busy_time
    );
}
