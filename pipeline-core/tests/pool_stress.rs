//! Pools under load with real threads: resizing up and down while events flow loses
//! and duplicates nothing, failures included.

use pipeline_core::bus::{Bus, SubscriptionConfig};
use pipeline_core::pool::{DeadLetterReason, WorkerPool};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

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
        .idle_poll(Duration::from_millis(2))
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
