//! Real threads: 4 senders, 2 receivers and a resizer changing the capacity at random
//! between 1 and 4096 about every millisecond. Checks the exact count, that no value is
//! duplicated, and per-sender order as each receiver saw it.
//!
//! `PIPELINE_STRESS_PER_SENDER` raises the size (default 300 000 values per sender;
//! 100 under Miri, whose interpreter is about a million times slower).

use pipeline_core::channel::bounded;
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

const SENDERS: usize = 4;
const RECEIVERS: usize = 2;

#[test]
fn resize_storm_loses_nothing_and_keeps_per_sender_order() {
    let per_sender: u64 = std::env::var("PIPELINE_STRESS_PER_SENDER")
        .ok()
        .map(|v| {
            v.parse()
                .expect("PIPELINE_STRESS_PER_SENDER must be an integer")
        })
        .unwrap_or(if cfg!(miri) { 100 } else { 300_000 });
    let (tx, rx) = bounded::<(usize, u64)>(16);
    let senders_done = AtomicBool::new(false);
    let mut resizes = 0u64;

    let per_receiver: Vec<Vec<(usize, u64)>> = thread::scope(|s| {
        let resizer = {
            let tx = tx.clone();
            let senders_done = &senders_done;
            s.spawn(move || {
                let mut rng = StdRng::seed_from_u64(7);
                let mut count = 0u64;
                while !senders_done.load(Ordering::Relaxed) {
                    tx.resize(rng.random_range(1..=4096)).unwrap();
                    count += 1;
                    thread::sleep(Duration::from_micros(rng.random_range(500..1500)));
                }
                count
            })
        };
        let senders: Vec<_> = (0..SENDERS)
            .map(|id| {
                let tx = tx.clone();
                s.spawn(move || (0..per_sender).for_each(|seq| tx.send((id, seq)).unwrap()))
            })
            .collect();
        drop(tx);
        let receivers: Vec<_> = (0..RECEIVERS)
            .map(|_| {
                let rx = rx.clone();
                s.spawn(move || rx.iter().collect::<Vec<_>>())
            })
            .collect();
        senders.into_iter().for_each(|h| h.join().unwrap());
        senders_done.store(true, Ordering::Relaxed);
        resizes = resizer.join().unwrap();
        receivers.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let mut seen = vec![vec![false; per_sender as usize]; SENDERS];
    let mut total = 0u64;
    for (r, values) in per_receiver.iter().enumerate() {
        let mut last = [None::<u64>; SENDERS];
        for &(id, seq) in values {
            assert!(
                !seen[id][seq as usize],
                "value ({id}, {seq}) received twice"
            );
            seen[id][seq as usize] = true;
            if let Some(prev) = last[id] {
                assert!(
                    seq > prev,
                    "receiver {r}: sender {id} sent {prev} before {seq}"
                );
            }
            last[id] = Some(seq);
            total += 1;
        }
    }
    assert_eq!(total, per_sender * SENDERS as u64, "values lost");
    // Under Miri the senders finish after a few of the resizer's (virtual) sleeps.
    let at_least = if cfg!(miri) { 1 } else { 10 };
    assert!(
        resizes >= at_least,
        "the resizer should have run during the test, ran {resizes} times"
    );
    eprintln!(
        "stress: {total} values, {resizes} resizes, received {:?} per receiver",
        per_receiver.iter().map(Vec::len).collect::<Vec<_>>()
    );
}
