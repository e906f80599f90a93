//! The publish-rate limiter, in simulated time (a `ManualClock`): exact admissions,
//! exact `retry_after`, and rate changes that reach every publisher at once.

use pipeline_core::bus::{Bus, BusError, PublishError, SubscriptionConfig};
use pipeline_core::clock::ManualClock;
use std::time::Duration;

fn limited(burst: u32, rate: f64) -> (Bus<u32>, ManualClock) {
    let clock = ManualClock::new();
    let bus = Bus::builder()
        .clock(clock.clone())
        .publish_burst(burst)
        .publish_rate(Some(rate))
        .build()
        .unwrap();
    (bus, clock)
}

#[test]
fn backoff_retry_after_is_exact() {
    let (bus, clock) = limited(2, 4.0); // a token every 250 ms
    let publisher = bus.publisher();
    publisher.try_publish(1).unwrap();
    publisher.try_publish(2).unwrap();
    let err = publisher.try_publish(3).unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_millis(250)));

    clock.advance(Duration::from_millis(249));
    match publisher.try_publish(err.into_inner()) {
        Err(PublishError::Backoff { event, retry_after }) => {
            assert_eq!((event, retry_after), (3, Duration::from_millis(1)));
        }
        other => panic!("expected Backoff, got {other:?}"),
    }
    clock.advance(Duration::from_millis(1));
    publisher.try_publish(3).unwrap();
    let snapshot = bus.snapshot();
    // Both Backoffs were refusals; the success that followed is counted as published.
    assert_eq!((snapshot.rate_limited, snapshot.rate_limit_refused), (2, 2));
}

/// A publish that waits for its token is delayed, not refused: what a controller
/// reads as demand (published + refused) counts it once.
#[test]
fn a_wait_for_a_token_is_no_refusal_and_a_timeout_is() {
    let (bus, clock) = limited(1, 10.0); // a token every 100 ms
    let _sub = bus
        .subscribe(SubscriptionConfig::new("s").capacity(64))
        .unwrap();
    let publisher = bus.publisher();
    for i in 0..5 {
        publisher.publish(i).unwrap(); // the manual clock's sleep advances it
    }
    let snapshot = bus.snapshot();
    assert_eq!(snapshot.published, 5);
    assert_eq!((snapshot.rate_limited, snapshot.rate_limit_refused), (4, 0));
    assert_eq!(clock.elapsed(), Duration::from_millis(400));

    let err = publisher
        .publish_timeout(5, Duration::from_millis(50))
        .unwrap_err();
    assert!(matches!(err, PublishError::Timeout { event: 5, .. }));
    publisher
        .publish_timeout(5, Duration::from_millis(100))
        .unwrap();
    let snapshot = bus.snapshot();
    assert_eq!(snapshot.published, 6);
    assert_eq!((snapshot.rate_limited, snapshot.rate_limit_refused), (6, 1));
}

#[test]
fn admissions_match_the_rate_exactly_over_ten_simulated_seconds() {
    let (bus, clock) = limited(5, 50.0); // 20 ms per token, burst of 5
    let sub = bus
        .subscribe(SubscriptionConfig::new("s").capacity(1024))
        .unwrap();
    let publisher = bus.publisher();
    let mut admitted = 0u32;
    // Every simulated millisecond, publish until refused.
    for _ms in 0..=10_000 {
        while publisher.try_publish(admitted).is_ok() {
            admitted += 1;
        }
        while sub.try_recv().is_ok() {}
        clock.advance(Duration::from_millis(1));
    }
    // The burst, then one every 20 ms from 20 ms to 10 s.
    assert_eq!(admitted, 5 + 500);
}

#[test]
fn a_blocking_publish_waits_exactly_for_its_tokens() {
    let (bus, clock) = limited(5, 10.0); // 100 ms per token
    let _sub = bus
        .subscribe(SubscriptionConfig::new("s").capacity(64))
        .unwrap();
    let publisher = bus.publisher();
    for n in 0..25 {
        publisher.publish(n).unwrap(); // a manual clock's sleep advances it
    }
    // 5 from the burst, 20 more at 100 ms each.
    assert_eq!(clock.elapsed(), Duration::from_secs(2));
}

#[test]
fn publish_timeout_does_not_sleep_past_its_deadline() {
    let (bus, clock) = limited(1, 1.0);
    let publisher = bus.publisher();
    publisher.publish(1).unwrap();
    let err = publisher
        .publish_timeout(2, Duration::from_millis(500))
        .unwrap_err();
    assert!(matches!(
        err,
        PublishError::Timeout {
            event: 2,
            subscription: None
        }
    ));
    assert_eq!(
        err.to_string(),
        "timed out publishing: waiting for the publish rate limit"
    );
    assert_eq!(clock.elapsed(), Duration::ZERO, "gave up without sleeping");
    publisher
        .publish_timeout(2, Duration::from_secs(1))
        .unwrap();
    assert_eq!(clock.elapsed(), Duration::from_secs(1));
}

#[test]
fn a_rate_change_reaches_every_publisher_at_once() {
    let clock = ManualClock::new();
    let bus = Bus::<u32>::builder()
        .clock(clock.clone())
        .publish_burst(1)
        .build()
        .unwrap();
    let (a, b) = (bus.publisher(), bus.publisher());
    for n in 0..100 {
        a.try_publish(n).unwrap(); // no limit yet
    }
    bus.set_publish_rate(Some(2.0)).unwrap();
    assert_eq!(bus.publish_rate(), Some(2.0));
    a.try_publish(1).unwrap(); // the one-token burst, shared by both publishers
    assert_eq!(
        b.try_publish(2).unwrap_err().retry_after(),
        Some(Duration::from_millis(500))
    );
    assert_eq!(
        a.try_publish(3).unwrap_err().retry_after(),
        Some(Duration::from_millis(500))
    );
    bus.set_publish_rate(None).unwrap();
    assert_eq!(bus.publish_rate(), None);
    b.try_publish(4).unwrap();
    a.try_publish(5).unwrap();
}

#[test]
fn invalid_rates_are_refused_and_change_nothing() {
    let (bus, _clock) = limited(1, 5.0);
    for bad in [0.0, -3.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            bus.set_publish_rate(Some(bad)),
            Err(BusError::InvalidRate(_))
        ));
    }
    assert_eq!(bus.publish_rate(), Some(5.0));
    assert!(matches!(
        Bus::<u8>::builder().publish_rate(Some(-1.0)).build(),
        Err(BusError::InvalidRate(_))
    ));
    assert!(matches!(
        Bus::<u8>::builder().publish_burst(0).build(),
        Err(BusError::InvalidConfig {
            field: "publish_burst",
            ..
        })
    ));
    assert!(matches!(
        Bus::<u8>::builder().signal_capacity(0).build(),
        Err(BusError::InvalidConfig {
            field: "signal_capacity",
            ..
        })
    ));
    assert!(matches!(
        Bus::<u8>::builder().saturation_thresholds(0.5, 0.7).build(),
        Err(BusError::InvalidConfig {
            field: "saturation_thresholds",
            ..
        })
    ));
}
