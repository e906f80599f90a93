//! The controller's switch ([`ControllerState`]) in simulated time, without HTTP: off,
//! a tick publishes its readings but decides nothing and moves no knob; on again, the
//! next tick acts.

use pipeline_controller::control::{ControlLoop, ControllerState, DecisionLog};
use pipeline_controller::policy::{HysteresisPolicy, MemoryObservation, Mode, PolicyConfig};
use pipeline_core::bus::{Bus, SubscriptionConfig};
use pipeline_core::clock::ManualClock;
use std::sync::Arc;
use std::time::{Duration, Instant};

const GIB: u64 = 1 << 30;

#[test]
fn off_means_no_decisions_and_the_knobs_stay_where_they_are() {
    let bus: Bus<u32> = Bus::new();
    let _sub = bus
        .subscribe(
            SubscriptionConfig::new("work")
                .capacity(128)
                .min_capacity(8)
                .max_capacity(4096),
        )
        .unwrap();
    let clock = ManualClock::new();
    let log = Arc::new(DecisionLog::new(64));
    let state = ControllerState::new();
    // Memory at 97 % of the limit: critical, the policy goes defensive at once.
    let mut control = ControlLoop::new(
        HysteresisPolicy::new(PolicyConfig::default()).unwrap(),
        Arc::new(bus.clone()),
        Vec::new(),
        Box::new(|_: Instant| MemoryObservation {
            used_bytes: GIB * 97 / 100,
            limit_bytes: Some(GIB),
            psi_some_avg10: None,
        }),
        None,
        Arc::new(clock.clone()),
        log.clone(),
    )
    .with_state(state.clone());

    state.set_enabled(false);
    for _ in 0..5 {
        clock.advance(Duration::from_secs(1));
        let decision = control.tick();
        assert!(decision.is_empty() && decision.holds.is_empty());
    }
    assert_eq!(state.ticks(), 5, "ticks go on while off");
    assert_eq!(state.memory().unwrap().used_bytes, GIB * 97 / 100);
    assert_eq!(state.mode(), Mode::Normal);
    assert_eq!(log.total(), 0);
    let snapshot = bus.snapshot();
    assert_eq!(snapshot.subscription("work").unwrap().capacity, 128);
    assert_eq!(snapshot.publish_rate, None);

    state.set_enabled(true);
    clock.advance(Duration::from_secs(1));
    let decision = control.tick();
    assert_eq!(decision.mode, Mode::Defensive);
    assert_eq!(state.mode(), Mode::Defensive);
    assert_eq!(state.ticks(), 6);
    assert!(log.total() > 0);
    let records = log.records_since(0);
    assert_eq!(records[0].0, 1, "sequence numbers start at 1");
    assert!(records.windows(2).all(|w| w[1].0 == w[0].0 + 1));
    assert!(log.records_since(records.last().unwrap().0).is_empty());
}

#[test]
fn next_tick_wakes_when_a_tick_is_published() {
    let state = ControllerState::new();
    let bus: Bus<u32> = Bus::new();
    let mut control = ControlLoop::new(
        HysteresisPolicy::new(PolicyConfig::default()).unwrap(),
        Arc::new(bus),
        Vec::new(),
        Box::new(|_: Instant| MemoryObservation::default()),
        None,
        Arc::new(ManualClock::new()),
        Arc::new(DecisionLog::new(8)),
    )
    .with_state(state.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let waiter = state.next_tick(0);
    let ticker = std::thread::spawn(move || {
        let _decision = control.tick();
    });
    assert_eq!(runtime.block_on(waiter), 1);
    ticker.join().unwrap();
    // Already past: ready at once.
    assert_eq!(runtime.block_on(state.next_tick(0)), 1);
}
