//! A channel resized under load, with what happened printed as it happens.
//!
//! A producer publishes in bursts, a consumer takes a fixed time per value. A tiny
//! watcher plays the controller's part: it grows the buffer when it stays saturated and
//! shrinks it when it is nearly empty. At the end every value is accounted for.
//!
//! Run: `cargo run --release -p pipeline-core --example resize_under_load`

use pipeline_core::channel::bounded;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const MIN: usize = 8;
const MAX: usize = 4096;

fn main() {
    let (tx, rx) = bounded::<(u64, Instant)>(MIN);
    let done = AtomicBool::new(false);
    let start = Instant::now();
    let phases = [
        (Duration::from_millis(1500), 2_000u64),
        (Duration::from_millis(1500), 20_000),
        (Duration::from_millis(2000), 1_000),
    ];

    println!(
        "{:>6}  {:>7}  {:>9}  {:>8}  {:>7}  {:>10}  action",
        "t(ms)", "len", "capacity", "sat", "full", "blocked"
    );
    thread::scope(|s| {
        let producer = {
            let tx = tx.clone();
            s.spawn(move || {
                let mut seq = 0;
                for (length, rate) in phases {
                    let phase_end = Instant::now() + length;
                    let gap = Duration::from_secs_f64(1.0 / rate as f64);
                    let mut next = Instant::now();
                    while Instant::now() < phase_end {
                        tx.send((seq, Instant::now())).unwrap();
                        seq += 1;
                        next += gap;
                        if let Some(wait) = next.checked_duration_since(Instant::now()) {
                            thread::sleep(wait);
                        }
                    }
                }
                seq
            })
        };
        let consumer = s.spawn(|| {
            let mut expected = 0;
            for (seq, _sent_at) in rx.iter() {
                assert_eq!(seq, expected, "values arrive in order");
                expected += 1;
                // ~8 000 values per second at most: slower than the burst.
                let until = Instant::now() + Duration::from_micros(125);
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
            }
            expected
        });
        let watcher_tx = tx.clone();
        let done = &done;
        let watcher = s.spawn(move || {
            let tx = watcher_tx;
            while !done.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(250));
                let stats = tx.stats();
                let saturation = stats.saturation();
                let action = if saturation > 0.7 && stats.capacity < MAX {
                    let to = (stats.capacity * 2).min(MAX);
                    tx.resize(to).unwrap();
                    format!(
                        "grow {} -> {to} (saturation {:.0}% > 70%)",
                        stats.capacity,
                        saturation * 100.0
                    )
                } else if saturation < 0.1 && stats.capacity > MIN {
                    let to = (stats.capacity / 2).max(MIN);
                    tx.resize(to).unwrap();
                    format!(
                        "shrink {} -> {to} (saturation {:.0}% < 10%)",
                        stats.capacity,
                        saturation * 100.0
                    )
                } else {
                    String::new()
                };
                println!(
                    "{:>6}  {:>7}  {:>9}  {:>7.0}%  {:>7}  {:>9.0?}  {action}",
                    start.elapsed().as_millis(),
                    stats.len,
                    stats.capacity,
                    saturation * 100.0,
                    stats.full_events,
                    stats.blocked_time,
                );
            }
        });
        let sent = producer.join().unwrap();
        done.store(true, Ordering::Relaxed);
        watcher.join().unwrap();
        drop(tx);
        let received = consumer.join().unwrap();
        let stats = rx.stats();
        println!();
        println!("sent {sent}, received {received}, lost {}", sent - received);
        println!(
            "resizes {}, high-water mark {}, sends that found it full {}, publishers blocked {:?}",
            stats.resizes, stats.high_water_mark, stats.full_events, stats.blocked_time
        );
        assert_eq!(sent, received, "the channel lost values");
    });
}
