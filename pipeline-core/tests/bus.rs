//! The bus contract: fan-out and filters, overflow policies with exact drop counts,
//! the try_publish rule, lifecycle, knobs, snapshots and memory accounting.
//! Signals and the rate limiter have their own files (`bus_signals.rs`, `bus_rate.rs`).

use pipeline_core::bus::{
    Bus, BusError, OverflowPolicy, PublishError, Publisher, Subscription, SubscriptionConfig,
};
use pipeline_core::channel::{RecvError, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

/// Long enough never to be reached by a correct run; bounds every wait.
const PATIENCE: Duration = Duration::from_secs(30);

fn drain<E>(sub: &Subscription<E>) -> Vec<E> {
    sub.try_iter().collect()
}

fn droppable(name: &str, capacity: usize, policy: OverflowPolicy) -> SubscriptionConfig<u32> {
    SubscriptionConfig::new(name)
        .capacity(capacity)
        .droppable(true)
        .overflow(policy)
}

#[test]
fn fan_out_reaches_every_matching_subscription_in_order() {
    let bus = Bus::new();
    let all = bus.subscribe(SubscriptionConfig::new("all")).unwrap();
    let evens = bus
        .subscribe(SubscriptionConfig::new("evens").filter(|n: &u32| n.is_multiple_of(2)))
        .unwrap();
    let odds = bus
        .subscribe(SubscriptionConfig::new("odds").filter(|n: &u32| n % 2 == 1))
        .unwrap();
    let publisher = bus.publisher();
    for n in 0..100 {
        publisher.publish(n).unwrap();
    }
    assert_eq!(drain(&all), (0..100).collect::<Vec<_>>());
    assert_eq!(drain(&evens), (0..100).step_by(2).collect::<Vec<_>>());
    assert_eq!(drain(&odds), (1..100).step_by(2).collect::<Vec<_>>());

    let snapshot = bus.snapshot();
    assert_eq!(snapshot.published, 100);
    assert_eq!(snapshot.unmatched, 0);
    let delivered: Vec<u64> = snapshot.subscriptions.iter().map(|s| s.delivered).collect();
    assert_eq!(delivered, [100, 50, 50]);
    let received: Vec<u64> = snapshot.subscriptions.iter().map(|s| s.received).collect();
    assert_eq!(received, [100, 50, 50]);
}

#[test]
fn an_event_nobody_matches_is_accepted_and_counted() {
    let bus = Bus::new();
    let big = bus
        .subscribe(SubscriptionConfig::new("big").filter(|n: &u32| *n > 10))
        .unwrap();
    let publisher = bus.publisher();
    publisher.publish(1).unwrap();
    publisher.try_publish(2).unwrap();
    assert!(big.is_empty());
    let snapshot = bus.snapshot();
    assert_eq!((snapshot.published, snapshot.unmatched), (2, 2));

    // No subscription at all: the same.
    let empty = Bus::<u8>::new();
    empty.publisher().publish(1).unwrap();
    assert_eq!(empty.snapshot().unmatched, 1);
}

#[test]
fn block_policy_is_lossless_back_pressure() {
    let bus = Bus::new();
    let signals = bus.signals();
    let sub = bus
        .subscribe(SubscriptionConfig::new("slow").capacity(4))
        .unwrap();
    let publisher = bus.publisher();
    let producer = thread::spawn(move || {
        for n in 0..1000u32 {
            publisher.publish(n).unwrap();
        }
    });
    // The producer must wait for us: back pressure starts before we receive anything.
    let started = loop {
        let signal = signals
            .recv_timeout(PATIENCE)
            .expect("back pressure signal");
        if signal.kind == pipeline_core::signal::SignalKind::BackPressureStarted {
            break signal;
        }
    };
    assert_eq!(&*started.subscription, "slow");
    assert_eq!(sub.len(), 4);
    let received: Vec<u32> = (0..1000).map(|_| sub.recv().unwrap()).collect();
    producer.join().unwrap();
    assert_eq!(received, (0..1000).collect::<Vec<_>>());
    let stats = sub.stats();
    assert_eq!(stats.dropped(), 0);
    assert!(stats.full_events >= 1);
}

#[test]
fn drop_newest_drops_the_new_events_and_counts_each() {
    let bus = Bus::new();
    let sub = bus
        .subscribe(droppable("latest", 3, OverflowPolicy::DropNewest))
        .unwrap();
    let publisher = bus.publisher();
    for n in 0..10 {
        publisher.try_publish(n).unwrap(); // a dropping subscription is never "full"
    }
    assert_eq!(drain(&sub), [0, 1, 2]);
    let stats = sub.stats();
    assert_eq!((stats.dropped_newest, stats.dropped_oldest), (7, 0));
    assert_eq!((stats.delivered, stats.received), (3, 3));
    assert_eq!(bus.snapshot().published, 10);
}

#[test]
fn drop_oldest_evicts_the_oldest_and_counts_each() {
    let bus = Bus::new();
    let sub = bus
        .subscribe(droppable("recent", 3, OverflowPolicy::DropOldest))
        .unwrap();
    let publisher = bus.publisher();
    for n in 0..10 {
        publisher.publish(n).unwrap();
    }
    assert_eq!(drain(&sub), [7, 8, 9]);
    let stats = sub.stats();
    assert_eq!((stats.dropped_newest, stats.dropped_oldest), (0, 7));
    assert_eq!((stats.delivered, stats.received), (10, 3));
}

#[test]
fn a_droppable_subscription_switches_policy_at_run_time() {
    let bus = Bus::new();
    let sub = bus
        .subscribe(droppable("switch", 2, OverflowPolicy::Block))
        .unwrap();
    let publisher = bus.publisher();
    publisher.try_publish(0).unwrap();
    publisher.try_publish(1).unwrap();
    assert!(matches!(
        publisher.try_publish(2),
        Err(PublishError::Full { event: 2, subscription }) if &*subscription == "switch"
    ));

    bus.set_overflow("switch", OverflowPolicy::DropNewest)
        .unwrap();
    publisher.try_publish(2).unwrap(); // dropped
    assert_eq!(sub.stats().dropped_newest, 1);

    bus.set_overflow("switch", OverflowPolicy::DropOldest)
        .unwrap();
    publisher.try_publish(3).unwrap(); // evicts 0
    assert_eq!(sub.stats().dropped_oldest, 1);
    assert_eq!(sub.stats().overflow, OverflowPolicy::DropOldest);

    bus.set_overflow("switch", OverflowPolicy::Block).unwrap();
    assert!(matches!(
        publisher.try_publish(4),
        Err(PublishError::Full { event: 4, subscription }) if &*subscription == "switch"
    ));
    assert_eq!(drain(&sub), [1, 3]);
    assert_eq!(sub.stats().dropped(), 2);
}

#[test]
fn a_non_droppable_subscription_can_never_be_made_to_drop() {
    let bus = Bus::new();
    let sub = bus
        .subscribe(SubscriptionConfig::new("orders").capacity(1))
        .unwrap();
    for policy in [OverflowPolicy::DropNewest, OverflowPolicy::DropOldest] {
        match bus.set_overflow("orders", policy) {
            Err(BusError::NotDroppable {
                subscription,
                requested,
            }) => {
                assert_eq!(&*subscription, "orders");
                assert_eq!(requested, policy);
            }
            other => panic!("expected NotDroppable, got {other:?}"),
        }
    }
    assert_eq!(sub.stats().overflow, OverflowPolicy::Block);
    bus.set_overflow("orders", OverflowPolicy::Block).unwrap();

    let publisher = bus.publisher();
    publisher.publish(1).unwrap();
    assert!(matches!(
        publisher.try_publish(2),
        Err(PublishError::Full { event: 2, subscription }) if &*subscription == "orders"
    ));
    assert_eq!(sub.stats().dropped(), 0);

    // Nor configured to drop without saying it may.
    let err = bus
        .subscribe(SubscriptionConfig::<u32>::new("lossy").overflow(OverflowPolicy::DropOldest))
        .unwrap_err();
    assert!(
        matches!(
            err,
            BusError::InvalidConfig {
                field: "overflow",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn config_errors_name_the_field() {
    let bus = Bus::<u32>::new();
    let field = |config: SubscriptionConfig<u32>| match bus.subscribe(config) {
        Err(BusError::InvalidConfig { field, .. }) => field,
        other => panic!("expected InvalidConfig, got {other:?}"),
    };
    assert_eq!(field(SubscriptionConfig::new("")), "name");
    assert_eq!(field(SubscriptionConfig::new("a").capacity(0)), "capacity");
    assert_eq!(
        field(SubscriptionConfig::new("a").capacity(8).min_capacity(0)),
        "min_capacity"
    );
    assert_eq!(
        field(SubscriptionConfig::new("a").capacity(2).min_capacity(4)),
        "capacity"
    );
    assert_eq!(
        field(SubscriptionConfig::new("a").capacity(8).max_capacity(4)),
        "capacity"
    );
    let message = bus
        .subscribe(SubscriptionConfig::new("a").capacity(8).max_capacity(4))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("capacity") && message.contains("max_capacity"),
        "{message}"
    );
}

/// Regression test for issue 13, finding 10: `capacity(0)` was refused as an invalid
/// `min_capacity`, a setter the user never called. Each error names the setter the
/// offending value came from, and says so when an unset bound followed `capacity`.
#[test]
fn config_errors_name_the_setter_the_value_came_from() {
    let bus = Bus::<u32>::new();
    let new = || SubscriptionConfig::<u32>::new("a");
    let cases = [
        (
            "capacity(0)",
            new().capacity(0),
            "invalid `capacity`: must be at least 1 (the minimum follows it when \
             `min_capacity` is not set)",
        ),
        (
            "capacity(0).max_capacity(4)",
            new().capacity(0).max_capacity(4),
            "invalid `capacity`: must be at least 1 (the minimum follows it when \
             `min_capacity` is not set)",
        ),
        (
            "capacity(0).min_capacity(1)",
            new().capacity(0).min_capacity(1),
            "invalid `capacity`: 0 is below min_capacity 1: need min_capacity <= capacity",
        ),
        (
            "capacity(8).min_capacity(0)",
            new().capacity(8).min_capacity(0),
            "invalid `min_capacity`: must be at least 1",
        ),
        (
            "capacity(0).min_capacity(0)",
            new().capacity(0).min_capacity(0),
            "invalid `min_capacity`: must be at least 1",
        ),
        (
            "max_capacity(0)",
            new().max_capacity(0),
            "invalid `max_capacity`: must be at least 1",
        ),
        (
            "capacity(8).min_capacity(16).max_capacity(4)",
            new().capacity(8).min_capacity(16).max_capacity(4),
            "invalid `max_capacity`: 4 is below min_capacity 16: need min_capacity <= \
             max_capacity",
        ),
        (
            "capacity(2).min_capacity(4)",
            new().capacity(2).min_capacity(4),
            "invalid `capacity`: 2 is below min_capacity 4: need min_capacity <= capacity",
        ),
        (
            "capacity(8).max_capacity(4)",
            new().capacity(8).max_capacity(4),
            "invalid `capacity`: 8 is above max_capacity 4: need capacity <= max_capacity",
        ),
    ];
    // Every mismatch, before failing.
    let mismatches: Vec<String> = cases
        .into_iter()
        .filter_map(|(setters, config, expected)| {
            let got = match bus.subscribe(config) {
                Ok(_) => "accepted".to_owned(),
                Err(e) => e.to_string(),
            };
            (got != expected)
                .then(|| format!("{setters}:\n  got      {got}\n  expected {expected}"))
        })
        .collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn names_are_unique_among_live_subscriptions() {
    let bus = Bus::<u32>::new();
    let first = bus.subscribe(SubscriptionConfig::new("audit")).unwrap();
    match bus.subscribe(SubscriptionConfig::new("audit")) {
        Err(BusError::DuplicateName(name)) => assert_eq!(&*name, "audit"),
        other => panic!("expected DuplicateName, got {other:?}"),
    }
    drop(first); // removes it
    let _again = bus.subscribe(SubscriptionConfig::new("audit")).unwrap();
    assert!(matches!(
        bus.unsubscribe("nobody"),
        Err(BusError::UnknownSubscription(_))
    ));
}

#[test]
fn resize_is_clamped_into_the_range() {
    let bus = Bus::<u32>::new();
    let sub = bus
        .subscribe(
            SubscriptionConfig::new("s")
                .capacity(8)
                .min_capacity(2)
                .max_capacity(32),
        )
        .unwrap();
    assert_eq!(bus.resize("s", 16), Ok(16));
    assert_eq!(sub.capacity(), 16);
    assert_eq!(bus.resize("s", 1), Ok(2));
    assert_eq!(bus.resize("s", 1000), Ok(32));
    let stats = sub.stats();
    assert_eq!(
        (stats.capacity, stats.min_capacity, stats.max_capacity),
        (32, 2, 32)
    );
    assert_eq!(stats.resizes, 3);
    assert!(matches!(
        bus.resize("nobody", 4),
        Err(BusError::UnknownSubscription(_))
    ));

    // A subscription without a range cannot be moved.
    let _fixed = bus
        .subscribe(SubscriptionConfig::new("fixed").capacity(8))
        .unwrap();
    assert_eq!(bus.resize("fixed", 64), Ok(8));
}

#[test]
fn a_capacity_range_set_later_bounds_resizes_and_the_snapshot() {
    let bus = Bus::<u32>::new();
    let sub = bus
        .subscribe(
            SubscriptionConfig::new("s")
                .capacity(64)
                .min_capacity(16)
                .max_capacity(256),
        )
        .unwrap();
    let publisher = bus.publisher();
    for i in 0..40 {
        publisher.publish(i).unwrap();
    }
    // Wider: the capacity is inside, so it stays; resizes reach the new bounds.
    assert_eq!(bus.set_capacity_range("s", 4, 1024), Ok(64));
    assert_eq!(bus.resize("s", 2000), Ok(1024));
    assert_eq!(bus.resize("s", 1), Ok(4));
    // Narrower, excluding the capacity: clamped at once to the nearer bound, a resize
    // like any other (counted), and nothing buffered is lost.
    assert_eq!(bus.set_capacity_range("s", 100, 200), Ok(100));
    assert_eq!(sub.capacity(), 100);
    let snapshot = bus.snapshot();
    let s = snapshot.subscription("s").unwrap();
    assert_eq!(
        (s.capacity, s.min_capacity, s.max_capacity, s.resizes),
        (100, 100, 200, 3)
    );
    assert_eq!(bus.resize("s", 1000), Ok(200));
    assert_eq!(bus.set_capacity_range("s", 8, 50), Ok(50));
    assert_eq!(drain(&sub), (0..40).collect::<Vec<_>>());
    // The same range again changes nothing.
    assert_eq!(bus.set_capacity_range("s", 8, 50), Ok(50));
    assert_eq!(sub.stats().resizes, 5);

    // A bad range is refused whole, naming the setter; nothing changes.
    assert!(matches!(
        bus.set_capacity_range("s", 0, 50),
        Err(BusError::InvalidConfig {
            field: "min_capacity",
            ..
        })
    ));
    assert!(matches!(
        bus.set_capacity_range("s", 60, 50),
        Err(BusError::InvalidConfig {
            field: "max_capacity",
            ..
        })
    ));
    let stats = sub.stats();
    assert_eq!(
        (stats.capacity, stats.min_capacity, stats.max_capacity),
        (50, 8, 50)
    );
    assert!(matches!(
        bus.set_capacity_range("nobody", 1, 2),
        Err(BusError::UnknownSubscription(_))
    ));
}

#[test]
fn growing_a_full_subscription_releases_a_waiting_publisher() {
    let bus = Bus::new();
    let sub = bus
        .subscribe(SubscriptionConfig::new("s").capacity(1).max_capacity(4))
        .unwrap();
    let publisher = bus.publisher();
    publisher.publish(1).unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let waiting = thread::spawn(move || {
        publisher.publish(2).unwrap();
        done_tx.send(()).unwrap();
    });
    bus.resize("s", 4).unwrap();
    done_rx
        .recv_timeout(PATIENCE)
        .expect("the publisher should finish");
    waiting.join().unwrap();
    assert_eq!(drain(&sub), [1, 2]);
}

#[test]
fn try_publish_is_all_or_none_with_several_block_subscriptions() {
    let bus = Bus::new();
    // The full one is not the first in delivery order: only the check before
    // delivering keeps "large" and "lossy" from getting 2.
    let large = bus
        .subscribe(SubscriptionConfig::new("large").capacity(8))
        .unwrap();
    let small = bus
        .subscribe(SubscriptionConfig::new("small").capacity(1))
        .unwrap();
    let lossy = bus
        .subscribe(droppable("lossy", 8, OverflowPolicy::DropNewest))
        .unwrap();
    let publisher = bus.publisher();
    publisher.try_publish(1).unwrap();

    // Asked on another thread, so a try_publish that wrongly waited fails the test
    // instead of hanging it.
    let (result_tx, result_rx) = mpsc::channel();
    let trying = publisher.clone();
    thread::spawn(move || result_tx.send(trying.try_publish(2)).unwrap());
    let result = result_rx
        .recv_timeout(PATIENCE)
        .expect("try_publish must not wait");
    assert!(
        matches!(result, Err(PublishError::Full { event: 2, subscription }) if &*subscription == "small")
    );
    assert_eq!((large.len(), small.len(), lossy.len()), (1, 1, 1));
    assert_eq!(bus.snapshot().rejected_full, 1);

    small.recv().unwrap();
    publisher.try_publish(2).unwrap();
    assert_eq!(drain(&large), [1, 2]);
    assert_eq!(drain(&lossy), [1, 2]);
    assert_eq!(drain(&small), [2]);
    assert_eq!(small.stats().try_publish_waits, 0);
}

/// An event whose first clone runs a hook: a way to act between try_publish's check
/// and its deliveries (the clone for the first subscription is made after the check).
struct Hooked {
    id: u32,
    hook: Option<Arc<Mutex<Option<Hook>>>>,
}

type Hook = Box<dyn FnOnce() + Send>;

impl Clone for Hooked {
    fn clone(&self) -> Self {
        if let Some(hook) = &self.hook
            && let Some(run) = hook.lock().unwrap().take()
        {
            run();
        }
        Hooked {
            id: self.id,
            hook: self.hook.clone(),
        }
    }
}

#[test]
fn try_publish_waits_rather_than_deliver_in_part_when_a_checked_subscription_fills() {
    let bus = Bus::new();
    let signals = bus.signals();
    let first = bus
        .subscribe(
            SubscriptionConfig::new("first")
                .capacity(4)
                .filter(|e: &Hooked| e.id != 0),
        )
        .unwrap();
    let second = bus
        .subscribe(SubscriptionConfig::new("second").capacity(1))
        .unwrap();
    // Between the check (both have room) and the deliveries, another publisher fills
    // "second" with event 0, which only "second" takes.
    let other = bus.publisher();
    let fill: Hook = Box::new(move || {
        other.try_publish(Hooked { id: 0, hook: None }).unwrap();
    });
    let event = Hooked {
        id: 1,
        hook: Some(Arc::new(Mutex::new(Some(fill)))),
    };
    let publisher = bus.publisher();
    let trying = thread::spawn(move || publisher.try_publish(event).is_ok());

    // It found "second" full after "first" already had the event: it must wait.
    while signals.recv_timeout(PATIENCE).unwrap().kind
        != pipeline_core::signal::SignalKind::BackPressureStarted
    {}
    assert_eq!(second.recv_timeout(PATIENCE).unwrap().id, 0);
    assert_eq!(second.recv_timeout(PATIENCE).unwrap().id, 1);
    assert!(trying.join().unwrap(), "the committed publish succeeds");
    assert_eq!(first.try_recv().unwrap().id, 1);
    assert_eq!(second.stats().try_publish_waits, 1);
    assert_eq!(first.stats().try_publish_waits, 0);
}

#[test]
fn try_publish_tries_the_only_block_subscription_before_any_dropping_one() {
    let bus = Bus::new();
    // The dropping subscription comes first in subscription order; delivery order
    // still puts the Block one first.
    let lossy = bus
        .subscribe(droppable("lossy", 1, OverflowPolicy::DropOldest))
        .unwrap();
    let strict = bus
        .subscribe(SubscriptionConfig::new("strict").capacity(1))
        .unwrap();
    let publisher = bus.publisher();
    publisher.try_publish(1).unwrap();
    assert!(matches!(
        publisher.try_publish(2),
        Err(PublishError::Full { event: 2, subscription }) if &*subscription == "strict"
    ));
    assert_eq!(
        lossy.stats().dropped(),
        0,
        "the dropping subscription saw nothing"
    );
    assert_eq!(drain(&lossy), [1]);
    assert_eq!(drain(&strict), [1]);
}

#[test]
fn publish_timeout_gives_the_event_back_when_nothing_was_delivered() {
    let bus = Bus::new();
    let full = bus
        .subscribe(SubscriptionConfig::new("full").capacity(1))
        .unwrap();
    let roomy = bus
        .subscribe(SubscriptionConfig::new("roomy").capacity(8))
        .unwrap();
    let publisher = bus.publisher();
    publisher.publish(1).unwrap();
    let err = publisher
        .publish_timeout(2, Duration::from_millis(10))
        .unwrap_err();
    assert!(matches!(err, PublishError::Timeout { event: 2, .. }));
    assert_eq!(err.subscription(), Some("full"));
    assert_eq!(
        err.to_string(),
        "timed out publishing: subscription \"full\" stayed full"
    );
    assert_eq!(drain(&roomy), [1]);
    assert_eq!(drain(&full), [1]);
    publisher.publish_timeout(3, PATIENCE).unwrap();
    assert_eq!((drain(&full), drain(&roomy)), (vec![3], vec![3]));
}

#[test]
fn a_closed_bus_refuses_publishes_and_subscriptions_drain() {
    let bus = Bus::new();
    let sub = bus.subscribe(SubscriptionConfig::new("s")).unwrap();
    let publisher = bus.publisher();
    publisher.publish(1).unwrap();
    publisher.publish(2).unwrap();
    bus.close();
    bus.close(); // idempotent
    assert!(bus.is_closed());
    assert!(matches!(publisher.publish(3), Err(PublishError::Closed(3))));
    assert!(matches!(
        publisher.try_publish(4),
        Err(PublishError::Closed(4))
    ));
    assert!(matches!(
        bus.subscribe(SubscriptionConfig::new("late")),
        Err(BusError::Closed)
    ));
    assert_eq!(sub.recv(), Ok(1));
    assert_eq!(sub.try_recv(), Ok(2));
    assert_eq!(sub.try_recv(), Err(TryRecvError::Disconnected));
    assert_eq!(sub.recv(), Err(RecvError));
}

#[test]
fn unsubscribe_leaves_the_handle_to_drain() {
    let bus = Bus::new();
    let kept = bus.subscribe(SubscriptionConfig::new("kept")).unwrap();
    let gone = bus.subscribe(SubscriptionConfig::new("gone")).unwrap();
    let publisher = bus.publisher();
    publisher.publish(1).unwrap();
    bus.unsubscribe("gone").unwrap();
    publisher.publish(2).unwrap();
    assert_eq!(gone.recv(), Ok(1));
    assert_eq!(
        gone.recv_timeout(PATIENCE),
        Err(RecvTimeoutError::Disconnected)
    );
    assert_eq!(drain(&kept), [1, 2]);
    assert_eq!(bus.snapshot().subscriptions.len(), 1);
}

#[test]
fn dropping_a_full_subscription_releases_its_waiting_publisher() {
    let bus = Bus::new();
    let sub = bus
        .subscribe(SubscriptionConfig::new("s").capacity(1))
        .unwrap();
    let publisher = bus.publisher();
    publisher.publish(1).unwrap();
    let signals = bus.signals();
    let (done_tx, done_rx) = mpsc::channel();
    let waiting = thread::spawn(move || {
        publisher.publish(2).unwrap();
        done_tx.send(()).unwrap();
    });
    // Wait until it is really waiting (it raised back pressure), then drop the handle.
    while signals.recv_timeout(PATIENCE).unwrap().kind
        != pipeline_core::signal::SignalKind::BackPressureStarted
    {}
    drop(sub);
    done_rx
        .recv_timeout(PATIENCE)
        .expect("the publisher should be released");
    waiting.join().unwrap();
    assert!(bus.snapshot().subscriptions.is_empty());
}

#[test]
fn the_bus_ends_with_its_last_handle() {
    let bus = Bus::new();
    let sub = bus.subscribe(SubscriptionConfig::new("s")).unwrap();
    let publisher = bus.publisher();
    publisher.publish(1).unwrap();
    drop(bus);
    publisher.publish(2).unwrap(); // a publisher keeps the bus open
    drop(publisher);
    assert_eq!(drain(&sub), [1, 2]);
    assert_eq!(sub.recv(), Err(RecvError));
}

#[test]
fn snapshot_accounts_memory_with_the_event_size_function() {
    let bus = Bus::new();
    let sized = bus
        .subscribe(SubscriptionConfig::new("sized").event_size(|v: &Vec<u8>| v.len()))
        .unwrap();
    let plain = bus.subscribe(SubscriptionConfig::new("plain")).unwrap();
    let publisher = bus.publisher();
    for len in [10, 20, 30] {
        publisher.publish(vec![0u8; len]).unwrap();
    }
    let s = bus.snapshot();
    let sized_s = s.subscription("sized").unwrap();
    assert_eq!((sized_s.avg_event_bytes, sized_s.bytes_buffered), (20, 60));
    let plain_s = s.subscription("plain").unwrap();
    let per_event = size_of::<Vec<u8>>() as u64;
    assert_eq!(plain_s.bytes_buffered, 3 * per_event);

    sized.recv().unwrap();
    assert_eq!(sized.stats().bytes_buffered, 40);
    drop(plain);
}

#[test]
fn snapshot_reports_gauges_and_policy() {
    let bus = Bus::<u32>::new();
    let _a = bus
        .subscribe(
            SubscriptionConfig::new("a")
                .capacity(4)
                .max_capacity(8)
                .droppable(true),
        )
        .unwrap();
    let publisher = bus.publisher();
    for n in 0..3 {
        publisher.publish(n).unwrap();
    }
    let s = bus.snapshot();
    let a = s.subscription("a").unwrap();
    assert_eq!(
        (a.len, a.capacity, a.min_capacity, a.max_capacity),
        (3, 4, 4, 8)
    );
    assert_eq!(a.saturation, 0.75);
    assert_eq!(a.high_water_mark, 3);
    assert_eq!(a.overflow, OverflowPolicy::Block);
    assert!(a.droppable && !a.back_pressure && !a.dropping);
    assert_eq!(s.publish_rate, None);
    assert!(s.subscription("b").is_none());
}

/// Every public type can cross threads: the data path is used from many.
#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Bus<u32>>();
    send_sync::<Publisher<u32>>();
    send_sync::<Subscription<u32>>();
    send_sync::<SubscriptionConfig<u32>>();
    send_sync::<PublishError<u32>>();
    send_sync::<BusError>();
    send_sync::<pipeline_core::bus::BusBuilder<u32>>();
    send_sync::<pipeline_core::bus::BusSnapshot>();
    send_sync::<pipeline_core::signal::Signal>();
    send_sync::<pipeline_core::envelope::Envelope>();
    send_sync::<pipeline_core::envelope::TopicPattern>();
    send_sync::<pipeline_core::clock::ManualClock>();
    send_sync::<pipeline_core::pool::WorkerPool<u32>>();
    send_sync::<pipeline_core::pool::WorkerPoolBuilder<u32>>();
    send_sync::<pipeline_core::pool::PoolStats>();
    send_sync::<pipeline_core::pool::DeadLetter<u32>>();
    send_sync::<pipeline_core::pool::HandlerError>();
    send_sync::<pipeline_core::pool::PoolError>();
    // Events need only be Send: a bus of Cell-carrying events is still shareable.
    send_sync::<Bus<std::cell::Cell<u8>>>();
    send_sync::<Subscription<std::cell::Cell<u8>>>();
}

/// A thread that published once and then sits idle keeps (by design) a hold on the
/// subscription list it last used; removing a subscription must still let its
/// subscriber drain and see the disconnect, without waiting for that thread.
#[test]
fn unsubscribe_disconnects_even_with_an_idle_publisher_thread() {
    let bus = Bus::new();
    let sub = bus.subscribe(SubscriptionConfig::new("s")).unwrap();
    let (published, wait_published) = mpsc::channel();
    let (release, idle) = mpsc::channel::<()>();
    let idle_publisher = thread::spawn({
        let publisher = bus.publisher();
        move || {
            publisher.publish(1_u32).unwrap();
            published.send(()).unwrap();
            idle.recv().unwrap(); // idle, holding the publisher, until released
        }
    });
    wait_published.recv().unwrap();
    bus.unsubscribe("s").unwrap();
    assert_eq!(sub.recv_timeout(Duration::from_secs(5)), Ok(1));
    assert_eq!(
        sub.recv_timeout(Duration::from_secs(5)),
        Err(RecvTimeoutError::Disconnected)
    );
    release.send(()).unwrap();
    idle_publisher.join().unwrap();
}

/// User code called by a publish (here a filter) may itself subscribe and publish on
/// the same bus, changing the subscription list under the outer publish.
#[test]
fn a_filter_may_subscribe_and_publish_on_the_same_bus() {
    let bus = Bus::new();
    // The filter holds the bus through this slot; emptied at the end to break the
    // cycle (bus -> filter -> bus).
    let inner: Arc<Mutex<Option<Bus<u32>>>> = Arc::new(Mutex::new(None));
    let added = Arc::new(Mutex::new(Vec::new()));
    let filter = {
        let (inner, added) = (inner.clone(), added.clone());
        move |n: &u32| {
            if *n < 3 {
                let bus = inner.lock().unwrap().clone().unwrap();
                let sub = bus
                    .subscribe(SubscriptionConfig::new(format!("added{n}")))
                    .unwrap();
                bus.publisher().publish(n + 100).unwrap();
                added.lock().unwrap().push(sub);
            }
            true
        }
    };
    let outer = bus
        .subscribe(SubscriptionConfig::new("outer").filter(filter))
        .unwrap();
    *inner.lock().unwrap() = Some(bus.clone());
    let publisher = bus.publisher();
    for n in 0..4 {
        publisher.publish(n).unwrap();
    }
    *inner.lock().unwrap() = None;
    // Each nested publish (100, 101, 102) reached "outer" (its filter passes them)
    // before the event that caused it.
    assert_eq!(drain(&outer), [100, 0, 101, 1, 102, 2, 3]);
    let added = added.lock().unwrap();
    // A subscription added during a publish gets the publishes that start after
    // (its own nested one first), not the one under way.
    assert_eq!(drain(&added[0]), [100, 101, 1, 102, 2, 3]);
    assert_eq!(drain(&added[2]), [102, 3]);
}
