//! Loom models of a worker pool's scale-down and shutdown. Run with
//! `RUSTFLAGS="--cfg pipeline_loom" cargo test -p pipeline-core --release --test loom_pool`.
//!
//! What loom explores is the stop protocol (per-worker stop flags, the drain flag, the
//! exit count and its condition variable) around the channel's loom stand-in. The
//! property: a worker told to stop finishes the event it holds, so every event is
//! handled exactly once and the shutdown leaves nothing.
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
