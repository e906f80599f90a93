//! A channel resized under load, with what happened printed as it happens.
//!
//! A producer publishes in bursts, a consumer takes a fixed time per value. A tiny
//! watcher plays the controller's part: it grows the buffer when a send found it full
//! since its last look, and shrinks it when none did for two looks and it is nearly
//! empty. At the end
//! every value is accounted for.
//!
//! The watcher reads the channel's full-send count (`ChannelStats::full_events`), not
//! the instantaneous length: on a busy machine the consumer may have just drained the
//! buffer when the watcher looks, but a send that waited for room is counted whenever
//! it happened.
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
            let mut full_before = 0;
            // Looks in a row without a full send: shrinking waits for two (500 ms), a
            // small stabilisation window, so one quiet look on a busy machine does not
            // undo a growth.
            let mut quiet = 0;
            while !done.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(250));
                let stats = tx.stats();
                let saturation = stats.saturation();
                let full = stats.full_events - full_before;
                full_before = stats.full_events;
                quiet = if full == 0 { quiet + 1 } else { 0 };
                let action = if full > 0 && stats.capacity < MAX {
                    let to = (stats.capacity * 2).min(MAX);
                    tx.resize(to).unwrap();
                    let sends = if full == 1 { "send" } else { "sends" };
                    format!(
                        "grow {} -> {to} ({full} {sends} found it full)",
                        stats.capacity
                    )
                } else if quiet >= 2 && saturation < 0.1 && stats.capacity > MIN {
                    let to = (stats.capacity / 2).max(MIN);
                    tx.resize(to).unwrap();
                    format!(
                        "shrink {} -> {to} (no full sends for 500 ms, saturation {:.0}% < 10%)",
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
        // The burst outruns the consumer, so sends find the buffer full and the watcher
        // grows it, however busy the machine.
        assert!(stats.resizes > 0, "no resize: {stats:?}");
    });
}
