//! Pools under load with real threads: resizing up and down while events flow loses
//! and duplicates nothing, failures included.

use pipeline_core::bus::{Bus, SubscriptionConfig};
use pipeline_core::pool::{DeadLetterReason, WorkerPool};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

mod common;
use common::quiet_induced_panics;

const PATIENCE: Duration = Duration::from_secs(60);

#[test]
fn resizing_under_load_loses_and_duplicates_nothing() {
    quiet_induced_panics();
    const PUBLISHERS: u32 = 2;
    const PER_PUBLISHER: u32 = 20_000;
    const TOTAL: usize = (PUBLISHERS * PER_PUBLISHER) as usize;
    let bus = Bus::new();
    let sub = bus
        .subscribe(SubscriptionConfig::new("work").capacity(64))
        .unwrap();
    // How many times each event reached the handler or the dead-letter hook.
    let seen: Arc<Vec<AtomicU8>> = Arc::new((0..TOTAL).map(|_| AtomicU8::new(0)).collect());
    let dead: Arc<Mutex<Vec<u32>>> = Arc::default();
    let (handled, lettered) = (seen.clone(), dead.clone());
    let pool = WorkerPool::builder("elastic")
        .workers(2)
        .min_workers(1)
        .max_workers(6)
        .handler(move |id: u32| {
            handled[id as usize].fetch_add(1, Ordering::Relaxed);
            match id % 1000 {
                7 => Err(format!("failed {id}").into()),
                13 => panic!("induced panic {id}"),
                _ => Ok(()),
            }
        })
        .dead_letter(move |letter| {
            match letter.reason {
                DeadLetterReason::Failed(_) | DeadLetterReason::Panicked(_) => {}
                _ => unreachable!(),
            }
            lettered.lock().unwrap().push(letter.event);
        })
        .spawn(sub)
        .unwrap();
    let pool = Arc::new(pool);

    let done = Arc::new(AtomicBool::new(false));
    let resizer = {
        let (pool, done) = (pool.clone(), done.clone());
        thread::spawn(move || {
            let mut resizes = 0u32;
            for workers in [6, 1, 4, 2, 5, 1, 3].into_iter().cycle() {
                pool.resize(workers).unwrap();
                resizes += 1;
                if done.load(Ordering::Relaxed) {
                    break;
                }
                thread::sleep(Duration::from_micros(100));
            }
            resizes
        })
    };
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let publisher = bus.publisher();
            thread::spawn(move || {
                for n in 0..PER_PUBLISHER {
                    publisher.publish(p * PER_PUBLISHER + n).unwrap();
                }
            })
        })
        .collect();
    publishers.into_iter().for_each(|p| p.join().unwrap());
    done.store(true, Ordering::Relaxed);
    let resizes = resizer.join().unwrap();

    let pool = Arc::into_inner(pool).expect("the resizer is gone");
    let report = pool.shutdown(PATIENCE);
    assert_eq!(report.left, 0, "{report:?}");
    assert!(!report.deadline_passed, "{report:?}");

    let counts: Vec<u8> = seen.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let missing = counts.iter().filter(|&&c| c == 0).count();
    let duplicated = counts.iter().filter(|&&c| c > 1).count();
    assert_eq!((missing, duplicated), (0, 0));

    let mut dead = dead.lock().unwrap().clone();
    dead.sort_unstable();
    let expected: Vec<u32> = (0..TOTAL as u32)
        .filter(|id| matches!(id % 1000, 7 | 13))
        .collect();
    assert_eq!(dead, expected);
    eprintln!("{resizes} resizes while {TOTAL} events flowed");
}

/// Regression test for issue 13, finding 8: `stats()` took the pool's `retired` lock
/// and then a worker's `record`, while a retiring worker's exit took its `record` and
/// then `retired`. With `stats()` sampled while the pool shrank (the controller calls
/// it every tick), both hung, and every later `resize` with them.
///
/// One thread samples `stats()` in a loop while another resizes between 8 and 1
/// workers a bounded number of times, with events flowing so that the workers'
/// records are not empty. Nothing here depends on the machine's speed: the test ends
/// after `RESIZES` resizes, and a watchdog fails it only when a thread makes no
/// progress at all for `STALL`.
#[test]
fn stats_while_scaling_down_does_not_deadlock() {
    const RESIZES: u64 = 2_000;
    const STALL: Duration = Duration::from_secs(30);
    let bus = Bus::new();
    let sub = bus
        .subscribe(SubscriptionConfig::new("sampled").capacity(64))
        .unwrap();
    let pool = WorkerPool::builder("sampled")
        .workers(1)
        .min_workers(1)
        .max_workers(8)
        // Stopped idle workers are woken at once: many exits race `stats()`.
        .handler(|_: u64| Ok(()))
        .spawn(sub)
        .unwrap();
    let pool = Arc::new(pool);
    let done = Arc::new(AtomicBool::new(false));
    let resizes = Arc::new(AtomicU64::new(0));
    let samples = Arc::new(AtomicU64::new(0));

    let resizer = {
        let (pool, resizes) = (pool.clone(), resizes.clone());
        thread::spawn(move || {
            for i in 0..RESIZES {
                pool.resize(if i % 2 == 0 { 8 } else { 1 }).unwrap();
                resizes.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let sampler = {
        let (pool, done, samples) = (pool.clone(), done.clone(), samples.clone());
        thread::spawn(move || {
            let mut latency_count = 0;
            while !done.load(Ordering::Relaxed) {
                let stats = pool.stats();
                assert!(stats.workers <= 8, "{stats:?}");
                // Each worker's record is counted once (in `retired` or on its own),
                // and records only grow: the count never goes back.
                assert!(
                    stats.latency.count >= latency_count,
                    "latency count went from {latency_count} to {}",
                    stats.latency.count
                );
                latency_count = stats.latency.count;
                samples.fetch_add(1, Ordering::Relaxed);
                thread::yield_now();
            }
        })
    };
    let publisher = {
        let (publisher, done) = (bus.publisher(), done.clone());
        thread::spawn(move || {
            let mut sent = 0u64;
            while !done.load(Ordering::Relaxed) {
                match publisher.publish_timeout(sent, Duration::from_millis(10)) {
                    Ok(()) => sent += 1,
                    Err(e) if e.is_closed() => break,
                    Err(_) => {} // full: the pool is behind; try again
                }
            }
            sent
        })
    };

    // The watchdog: fail, naming the stalled thread, if a counter stands still for
    // STALL. The deadlock leaves the threads blocked for ever, so they are not joined
    // in that case (the test binary exits anyway).
    let watched = [("resize()", &resizes), ("stats()", &samples)];
    let mut last = watched.map(|(_, c)| (c.load(Ordering::Relaxed), Instant::now()));
    while !resizer.is_finished() {
        thread::sleep(Duration::from_millis(50));
        for ((what, counter), (seen, since)) in watched.iter().zip(&mut last) {
            let now = counter.load(Ordering::Relaxed);
            if now != *seen {
                (*seen, *since) = (now, Instant::now());
            } else if since.elapsed() >= STALL {
                panic!(
                    "{what} made no progress for {STALL:?} ({} of {RESIZES} resizes, {} \
                     stats() calls): stats() and a retiring worker's exit are deadlocked \
                     (issue 13, finding 8)",
                    resizes.load(Ordering::Relaxed),
                    samples.load(Ordering::Relaxed),
                );
            }
        }
    }
    resizer.join().unwrap();
    // stats() must still make progress after the last resize.
    let after = samples.load(Ordering::Relaxed);
    let since = Instant::now();
    while samples.load(Ordering::Relaxed) == after {
        assert!(
            since.elapsed() < STALL,
            "stats() made no progress for {STALL:?} after the last resize (issue 13, \
             finding 8)"
        );
        thread::sleep(Duration::from_millis(1));
    }
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let sent = publisher.join().unwrap();

    let pool = Arc::into_inner(pool).expect("the other threads are gone");
    let report = pool.shutdown(PATIENCE);
    assert_eq!((report.processed, report.left), (sent, 0), "{report:?}");
    eprintln!(
        "{RESIZES} resizes, {} stats() calls, {sent} events",
        samples.load(Ordering::Relaxed)
    );
}
