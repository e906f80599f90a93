//! The bus under real threads: exact counts while publishers race, resizes happen and
//! subscriptions come and go.

use pipeline_core::bus::{Bus, PublishError, Subscription, SubscriptionConfig};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

/// Receives until the subscription is closed and drained.
fn collect(sub: Subscription<(u32, u32)>) -> thread::JoinHandle<Vec<(u32, u32)>> {
    thread::spawn(move || {
        let mut got = Vec::new();
        while let Ok(event) = sub.recv() {
            got.push(event);
        }
        got
    })
}

/// Every publisher's events, each once and in its publish order.
fn assert_each_once_in_order(got: &[(u32, u32)], publishers: u32, per_publisher: u32) {
    let mut by_publisher: HashMap<u32, Vec<u32>> = HashMap::new();
    for &(p, n) in got {
        by_publisher.entry(p).or_default().push(n);
    }
    for p in 0..publishers {
        let seq = by_publisher.remove(&p).unwrap_or_default();
        assert_eq!(seq.len() as u32, per_publisher, "publisher {p}");
        assert!(
            seq.iter().copied().eq(0..per_publisher),
            "publisher {p} out of order"
        );
    }
    assert!(by_publisher.is_empty());
}

#[test]
fn racing_try_publishers_never_deliver_in_part() {
    const PUBLISHERS: u32 = 4;
    const PER_PUBLISHER: u32 = if cfg!(miri) { 10 } else { 5_000 };
    let bus = Bus::new();
    let a = collect(
        bus.subscribe(SubscriptionConfig::new("a").capacity(1))
            .unwrap(),
    );
    let b = collect(
        bus.subscribe(SubscriptionConfig::new("b").capacity(1))
            .unwrap(),
    );
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let publisher = bus.publisher();
            thread::spawn(move || {
                let mut refused = 0u64;
                for n in 0..PER_PUBLISHER {
                    let mut event = (p, n);
                    // Full hands the event back and means nobody got it: retrying
                    // cannot duplicate.
                    while let Err(err) = publisher.try_publish(event) {
                        assert!(err.is_full(), "{err}");
                        refused += 1;
                        event = err.into_inner();
                        thread::yield_now();
                    }
                }
                refused
            })
        })
        .collect();
    let refused: u64 = publishers.into_iter().map(|p| p.join().unwrap()).sum();
    let snapshot = bus.snapshot();
    bus.close();
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    assert_each_once_in_order(&a, PUBLISHERS, PER_PUBLISHER);
    assert_each_once_in_order(&b, PUBLISHERS, PER_PUBLISHER);
    assert_eq!(snapshot.rejected_full, refused);
    assert_eq!(snapshot.published, u64::from(PUBLISHERS * PER_PUBLISHER));
    eprintln!(
        "refused {refused}, try_publish waits: a {}, b {}",
        snapshot.subscription("a").unwrap().try_publish_waits,
        snapshot.subscription("b").unwrap().try_publish_waits
    );
}

#[test]
fn resizes_and_subscription_churn_under_load_lose_nothing() {
    const PUBLISHERS: u32 = 2;
    const PER_PUBLISHER: u32 = if cfg!(miri) { 40 } else { 20_000 };
    let bus = Bus::new();
    let config = |name| {
        SubscriptionConfig::new(name)
            .capacity(8)
            .min_capacity(1)
            .max_capacity(256)
    };
    let steady = collect(bus.subscribe(config("steady")).unwrap());
    let evens = collect(
        bus.subscribe(config("evens").filter(|e: &(u32, u32)| e.1.is_multiple_of(2)))
            .unwrap(),
    );
    let done = Arc::new(AtomicBool::new(false));
    // Publishing starts once the resizer and the churn have each done a round.
    let start = Arc::new(Barrier::new(2 + PUBLISHERS as usize));

    let resizer = {
        let (bus, done, start) = (bus.clone(), done.clone(), start.clone());
        thread::spawn(move || {
            for (round, capacity) in [1, 64, 2, 256, 3, 16].into_iter().cycle().enumerate() {
                bus.resize("steady", capacity).unwrap();
                bus.resize("evens", 257 - capacity).unwrap();
                if round == 0 {
                    start.wait();
                }
                if done.load(Ordering::Relaxed) {
                    break;
                }
                thread::yield_now();
            }
        })
    };
    let churn = {
        let (bus, done, start) = (bus.clone(), done.clone(), start.clone());
        thread::spawn(move || {
            // Subscriptions that come and go while events flow; each drains what it got.
            for round in 0.. {
                let sub = bus
                    .subscribe(SubscriptionConfig::new("transient").capacity(4))
                    .unwrap();
                while sub.try_recv().is_ok() {}
                drop(sub);
                if round == 0 {
                    start.wait();
                }
                if done.load(Ordering::Relaxed) {
                    break;
                }
                thread::yield_now();
            }
        })
    };
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let (publisher, start) = (bus.publisher(), start.clone());
            thread::spawn(move || {
                start.wait();
                (0..PER_PUBLISHER).for_each(|n| publisher.publish((p, n)).unwrap());
            })
        })
        .collect();
    publishers.into_iter().for_each(|p| p.join().unwrap());
    done.store(true, Ordering::Relaxed);
    resizer.join().unwrap();
    churn.join().unwrap();
    bus.close();

    assert_each_once_in_order(&steady.join().unwrap(), PUBLISHERS, PER_PUBLISHER);
    let evens = evens.join().unwrap();
    assert_eq!(evens.len() as u32, PUBLISHERS * PER_PUBLISHER / 2);
    assert!(evens.iter().all(|e| e.1 % 2 == 0));
    assert!(matches!(
        bus.publisher().try_publish((0, 0)),
        Err(PublishError::Closed(_))
    ));
}

/// One plain subscription (the publishers' fast path, under sticky hazards) while a
/// second comes and goes (each publish then takes the general path) and the first is
/// resized: nothing is lost or duplicated, and each transient subscriber sees its
/// disconnect although publishers may still hold the list it was on.
#[test]
fn the_fast_path_under_churn_and_resizes_loses_nothing() {
    const PUBLISHERS: u32 = 2;
    const PER_PUBLISHER: u32 = if cfg!(miri) { 60 } else { 100_000 };
    let bus = Bus::new();
    let lone = collect(
        bus.subscribe(
            SubscriptionConfig::new("lone")
                .capacity(8)
                .min_capacity(1)
                .max_capacity(256),
        )
        .unwrap(),
    );
    let done = Arc::new(AtomicBool::new(false));
    let churn = {
        let (bus, done) = (bus.clone(), done.clone());
        thread::spawn(move || {
            let mut rounds = 0_u32;
            for capacity in [1, 64, 2, 256, 3, 16].into_iter().cycle() {
                bus.resize("lone", capacity).unwrap();
                let transient = bus
                    .subscribe(SubscriptionConfig::new("transient").capacity(4))
                    .unwrap();
                while transient.try_recv().is_ok() {}
                bus.unsubscribe("transient").unwrap();
                // Removed: it drains and then sees the disconnect, whoever still holds
                // the list it was on.
                while transient.recv_timeout(Duration::from_secs(10)).is_ok() {}
                assert!(transient.recv_timeout(Duration::ZERO).is_err());
                rounds += 1;
                if done.load(Ordering::Relaxed) {
                    break;
                }
                thread::yield_now();
            }
            rounds
        })
    };
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let publisher = bus.publisher();
            thread::spawn(move || {
                (0..PER_PUBLISHER).for_each(|n| publisher.publish((p, n)).unwrap());
            })
        })
        .collect();
    publishers.into_iter().for_each(|p| p.join().unwrap());
    done.store(true, Ordering::Relaxed);
    let rounds = churn.join().unwrap();
    bus.close();
    assert_each_once_in_order(&lone.join().unwrap(), PUBLISHERS, PER_PUBLISHER);
    assert!(rounds > 0);
}
