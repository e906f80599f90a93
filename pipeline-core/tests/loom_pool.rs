//! Loom models of a worker pool's scale-down and shutdown. Run with
//! `RUSTFLAGS="--cfg pipeline_loom" cargo test -p pipeline-core --release --test loom_pool`.
//!
//! What loom explores is the stop protocol (per-worker stop flags, the drain flag, the
//! exit count and its condition variable) around the channel's loom stand-in. The
//! property: a worker told to stop finishes the event it holds, so every event is
//! handled exactly once and the shutdown leaves nothing. One more model checks that
//! `stats()` and a worker's exit cannot deadlock (issue 13, finding 8).
#![cfg(pipeline_loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use pipeline_core::bus::{Bus, SubscriptionConfig};
use pipeline_core::pool::WorkerPool;
use std::time::Duration;

/// Generous: loom does not model time, but the drain deadline is read from the real
/// clock, so it must never pass during a run.
const DEADLINE: Duration = Duration::from_secs(3600);

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    // Three threads (the test and two workers) over the bus, the channel and the pool:
    // bound preemptions so the model finishes in seconds, as tokio's loom tests do.
    builder.preemption_bound = Some(2);
    builder.check(f);
}

/// Two workers hold or wait for two events while one of them is told to stop.
#[test]
fn scale_down_finishes_the_event_in_hand() {
    model(|| {
        let bus = Bus::new();
        let sub = bus
            .subscribe(SubscriptionConfig::new("s").capacity(2))
            .unwrap();
        let publisher = bus.publisher();
        publisher.publish(1u32).unwrap();
        publisher.publish(2).unwrap();
        let handled = Arc::new(AtomicUsize::new(0));
        let count = handled.clone();
        let pool = WorkerPool::builder("p")
            .workers(2)
            .min_workers(1)
            .max_workers(2)
            .handler(move |_| {
                count.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
            .spawn(sub)
            .unwrap();
        pool.resize(1).unwrap();
        let report = pool.shutdown(DEADLINE);
        assert_eq!(handled.load(Ordering::Relaxed), 2);
        assert_eq!((report.processed, report.left), (2, 0));
        assert!(!report.deadline_passed);
    });
}

/// A worker told to stop while it waits may still receive an event: it handles it.
#[test]
fn stopped_waiting_worker_handles_what_it_receives() {
    model(|| {
        let bus = Bus::new();
        let sub = bus
            .subscribe(SubscriptionConfig::new("s").capacity(1))
            .unwrap();
        let handled = Arc::new(AtomicUsize::new(0));
        let count = handled.clone();
        let pool = WorkerPool::builder("p")
            .workers(2)
            .min_workers(1)
            .max_workers(2)
            .handler(move |_| {
                count.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
            .spawn(sub)
            .unwrap();
        pool.resize(1).unwrap();
        bus.publisher().publish(7u32).unwrap();
        let report = pool.shutdown(DEADLINE);
        assert_eq!(handled.load(Ordering::Relaxed), 1);
        assert_eq!((report.processed, report.left), (1, 0));
    });
}

/// Regression model for issue 13, finding 8: `stats()` took the pool's `retired` lock,
/// then the worker's `record`; an exiting worker took `record`, then `retired`. Loom
/// finds the interleaving where each holds one and waits for the other (it reports a
/// deadlock). Also checks that `stats()` counts the worker's record once, whether it
/// reads it before, during or after the exit.
#[test]
fn stats_during_a_worker_exit_does_not_deadlock() {
    model(|| {
        let bus = Bus::new();
        let sub = bus
            .subscribe(SubscriptionConfig::new("s").capacity(1))
            .unwrap();
        bus.publisher().publish(1u32).unwrap();
        let pool = WorkerPool::builder("p")
            .workers(1)
            .handler(|_| Ok(()))
            .spawn(sub)
            .unwrap();
        let pool = Arc::new(pool);
        let sampler = {
            let pool = pool.clone();
            loom::thread::spawn(move || pool.stats())
        };
        // The worker handles the event, then sees the disconnect and exits (the same
        // exit a retiring worker takes), while `stats()` runs.
        bus.close();
        let stats = sampler.join().unwrap();
        assert!(stats.latency.count <= 1, "counted twice: {stats:?}");
        let pool = Arc::try_unwrap(pool).unwrap_or_else(|_| unreachable!("the sampler is gone"));
        let report = pool.shutdown(DEADLINE);
        assert_eq!((report.processed, report.left), (1, 0));
    });
}

/// The same race on a scale-down: of two idle workers, the one told to stop exits (on
/// the disconnect, as loom has no idle timeout) while `stats()` runs.
#[test]
fn stats_during_a_scale_down_does_not_deadlock() {
    model(|| {
        let bus = Bus::new();
        let sub = bus
            .subscribe(SubscriptionConfig::new("s").capacity(1))
            .unwrap();
        let pool = WorkerPool::builder("p")
            .workers(2)
            .min_workers(1)
            .max_workers(2)
            .handler(|_: u32| Ok(()))
            .spawn(sub)
            .unwrap();
        let pool = Arc::new(pool);
        let sampler = {
            let pool = pool.clone();
            loom::thread::spawn(move || pool.stats())
        };
        pool.resize(1).unwrap();
        bus.close();
        let stats = sampler.join().unwrap();
        assert!(stats.workers + stats.retiring <= 2, "{stats:?}");
        let pool = Arc::try_unwrap(pool).unwrap_or_else(|_| unreachable!("the sampler is gone"));
        let report = pool.shutdown(DEADLINE);
        assert_eq!((report.processed, report.left), (0, 0));
    });
}
