//! Signals: each edge fires once (hysteresis), and a stalled signal receiver never
//! holds a publisher up.

use pipeline_core::bus::{Bus, OverflowPolicy, SubscriptionConfig};
use pipeline_core::signal::{Signal, SignalKind};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(30);

fn kinds(signals: &crossbeam_channel::Receiver<Signal>) -> Vec<SignalKind> {
    signals.try_iter().map(|s| s.kind).collect()
}

#[test]
fn saturation_crossings_fire_once_each_way() {
    // Capacity 8: high at 6 events (0.75), low at 2 (0.25).
    let bus = Bus::builder()
        .saturation_thresholds(0.75, 0.25)
        .build()
        .unwrap();
    let signals = bus.signals();
    let sub = bus
        .subscribe(SubscriptionConfig::new("s").capacity(8))
        .unwrap();
    let publisher = bus.publisher();

    for n in 0..8u32 {
        publisher.publish(n).unwrap();
    }
    assert_eq!(
        kinds(&signals),
        [SignalKind::SaturationHigh {
            len: 6,
            capacity: 8
        }]
    );

    // Down into the dead band and up again: nothing.
    for _ in 0..4 {
        sub.recv().unwrap();
    }
    for n in 0..4 {
        publisher.publish(n).unwrap();
    }
    for _ in 0..5 {
        sub.recv().unwrap(); // 8 -> 3, still above low
    }
    assert_eq!(kinds(&signals), []);

    sub.recv().unwrap(); // 2: low
    assert_eq!(
        kinds(&signals),
        [SignalKind::SaturationLow {
            len: 2,
            capacity: 8
        }]
    );
    sub.recv().unwrap();
    sub.recv().unwrap();
    assert_eq!(kinds(&signals), []);

    // A second episode fires again.
    for n in 0..6 {
        publisher.publish(n).unwrap();
    }
    let high = signals.try_recv().unwrap();
    assert_eq!(
        high.kind,
        SignalKind::SaturationHigh {
            len: 6,
            capacity: 8
        }
    );
    assert_eq!(&*high.subscription, "s");
    assert!(signals.try_recv().is_err());
}

#[test]
fn growing_the_buffer_ends_a_saturation_episode() {
    let bus = Bus::builder()
        .saturation_thresholds(0.75, 0.25)
        .build()
        .unwrap();
    let signals = bus.signals();
    let _sub = bus
        .subscribe(SubscriptionConfig::new("s").capacity(4).max_capacity(64))
        .unwrap();
    let publisher = bus.publisher();
    for n in 0..3u32 {
        publisher.publish(n).unwrap();
    }
    assert_eq!(
        kinds(&signals),
        [SignalKind::SaturationHigh {
            len: 3,
            capacity: 4
        }]
    );
    bus.resize("s", 64).unwrap(); // 3 of 64 is under the low threshold
    assert_eq!(
        kinds(&signals),
        [SignalKind::SaturationLow {
            len: 3,
            capacity: 64
        }]
    );
}

#[test]
fn back_pressure_starts_once_and_stops_when_drained() {
    let bus = Bus::builder()
        .saturation_thresholds(1.0, 0.5)
        .build()
        .unwrap();
    let signals = bus.signals();
    let sub = bus
        .subscribe(SubscriptionConfig::new("s").capacity(2))
        .unwrap();
    let publisher = bus.publisher();
    publisher.try_publish(1).unwrap();
    publisher.try_publish(2).unwrap();
    assert_eq!(
        kinds(&signals),
        [SignalKind::SaturationHigh {
            len: 2,
            capacity: 2
        }]
    );
    for n in 3..10 {
        assert!(publisher.try_publish(n).unwrap_err().is_full());
    }
    assert_eq!(kinds(&signals), [SignalKind::BackPressureStarted]);
    assert!(sub.stats().back_pressure);

    sub.recv().unwrap(); // 1 = low (0.5 * 2)
    assert_eq!(
        kinds(&signals),
        [
            SignalKind::SaturationLow {
                len: 1,
                capacity: 2
            },
            SignalKind::BackPressureStopped
        ]
    );
    assert!(!sub.stats().back_pressure);
}

#[test]
fn drops_start_once_and_stop_with_the_total() {
    let bus = Bus::builder()
        .saturation_thresholds(1.0, 0.5)
        .build()
        .unwrap();
    let signals = bus.signals();
    let sub = bus
        .subscribe(
            SubscriptionConfig::new("lossy")
                .capacity(2)
                .droppable(true)
                .overflow(OverflowPolicy::DropNewest),
        )
        .unwrap();
    let publisher = bus.publisher();
    for n in 0..5u32 {
        publisher.publish(n).unwrap();
    }
    assert_eq!(
        kinds(&signals),
        [
            SignalKind::SaturationHigh {
                len: 2,
                capacity: 2
            },
            SignalKind::DropsStarted {
                policy: OverflowPolicy::DropNewest
            }
        ]
    );
    sub.recv().unwrap();
    assert_eq!(
        kinds(&signals),
        [
            SignalKind::SaturationLow {
                len: 1,
                capacity: 2
            },
            SignalKind::DropsStopped { dropped_total: 3 }
        ]
    );
}

#[test]
fn a_stalled_signal_receiver_never_holds_publishing_up() {
    const CYCLES: u64 = 2_000;
    let bus = Bus::builder()
        .signal_capacity(2)
        .saturation_thresholds(1.0, 0.5)
        .build()
        .unwrap();
    let signals = bus.signals(); // held, never read
    let sub = bus
        .subscribe(SubscriptionConfig::new("s").capacity(2))
        .unwrap();
    let publisher = bus.publisher();
    let (done_tx, done_rx) = mpsc::channel();
    let cycling = thread::spawn(move || {
        // Each cycle raises SaturationHigh and SaturationLow: 2 signals.
        for n in 0..CYCLES {
            publisher.try_publish(n).unwrap();
            publisher.try_publish(n).unwrap();
            sub.recv().unwrap();
            sub.recv().unwrap();
        }
        done_tx.send(()).unwrap();
    });
    // A publisher blocked by the full signal channel would never finish.
    done_rx
        .recv_timeout(PATIENCE)
        .expect("publishing must not wait for the signal channel");
    cycling.join().unwrap();

    assert_eq!(bus.signals_skipped(), 2 * CYCLES - 2);
    assert_eq!(bus.snapshot().signals_skipped, 2 * CYCLES - 2);
    assert_eq!(
        kinds(&signals),
        [
            SignalKind::SaturationHigh {
                len: 2,
                capacity: 2
            },
            SignalKind::SaturationLow {
                len: 1,
                capacity: 2
            }
        ]
    );
}
