//! The control loop in simulated time: a manual clock, a real bus and pool, a memory
//! probe that reports what the test says. Each `tick()` is one sense-decide-act round.

use pipeline_controller::actuator::{BusActuator, PoolActuator};
use pipeline_controller::control::{ControlLoop, DecisionLog, Entry};
use pipeline_controller::policy::{
    Change, HysteresisPolicy, MemoryObservation, Mode, PolicyConfig,
};
use pipeline_core::bus::{Bus, OverflowPolicy, Subscription, SubscriptionConfig};
use pipeline_core::clock::ManualClock;
use pipeline_core::pool::WorkerPool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const GIB: u64 = 1 << 30;

struct Rig {
    bus: Bus<u64>,
    clock: ManualClock,
    memory: Arc<AtomicU64>,
    /// How many times the controller has read the memory probe.
    probes: Arc<AtomicU64>,
    log: Arc<DecisionLog>,
    control: ControlLoop,
    _pool: Arc<WorkerPool<u64>>,
    _telemetry: Subscription<u64>,
    gate: Arc<Mutex<()>>,
}

/// A bus with a lossless `orders` stage (worker blocked on a gate, so its buffer fills)
/// and a droppable `telemetry` subscription (no event matches it), under a 1 GiB limit.
fn rig() -> Rig {
    let clock = ManualClock::new();
    let bus: Bus<u64> = Bus::builder().clock(clock.clone()).build().unwrap();
    let orders = bus
        .subscribe(
            SubscriptionConfig::new("orders")
                .capacity(8)
                .min_capacity(8)
                .max_capacity(64),
        )
        .unwrap();
    let telemetry = bus
        .subscribe(
            SubscriptionConfig::new("telemetry")
                .capacity(8)
                .min_capacity(4)
                .max_capacity(64)
                .droppable(true),
        )
        .unwrap();
    let gate = Arc::new(Mutex::new(()));
    let held = gate.clone();
    let pool = Arc::new(
        WorkerPool::builder("orders")
            .workers(1)
            .max_workers(4)
            .handler(move |_| {
                drop(held.lock().unwrap_or_else(|p| p.into_inner()));
                Ok(())
            })
            .spawn(orders)
            .unwrap(),
    );
    let memory = Arc::new(AtomicU64::new(GIB / 10));
    let reading = memory.clone();
    let probes = Arc::new(AtomicU64::new(0));
    let probed = probes.clone();
    let log = Arc::new(DecisionLog::new(64));
    let policy =
        HysteresisPolicy::new(PolicyConfig::default().defensive_exit_hold(Duration::from_secs(10)))
            .unwrap();
    let control = ControlLoop::new(
        policy,
        Arc::new(bus.clone()) as Arc<dyn BusActuator>,
        vec![pool.clone() as Arc<dyn PoolActuator>],
        Box::new(move |_now| {
            probed.fetch_add(1, Ordering::SeqCst);
            MemoryObservation {
                used_bytes: reading.load(Ordering::Relaxed),
                limit_bytes: Some(GIB),
                psi_some_avg10: None,
            }
        }),
        Some(4.0),
        Arc::new(clock.clone()),
        log.clone(),
    );
    Rig {
        bus,
        clock,
        memory,
        probes,
        log,
        control,
        _pool: pool,
        _telemetry: telemetry,
        gate,
    }
}

fn capacity(bus: &Bus<u64>, name: &str) -> usize {
    bus.snapshot().subscription(name).unwrap().capacity
}

#[test]
fn saturation_grows_the_buffer_and_the_log_says_why() {
    let mut rig = rig();
    let _stuck = rig.gate.lock().unwrap();
    let publisher = rig.bus.publisher();
    // Eight in a buffer of eight: the worker takes at most one, so saturation >= 7/8.
    for n in 0..8 {
        publisher.try_publish(n).unwrap();
    }
    let decision = rig.control.tick();
    assert!(decision.actions.iter().any(|a| matches!(&a.change, Change::ResizeBuffer { name, from: 8, to: 12 } if name == "orders")), "{decision}");
    assert_eq!(capacity(&rig.bus, "orders"), 12, "applied to the real bus");
    let records = rig.log.records();
    let grow = records
        .iter()
        .find(|r| matches!(&r.entry, Entry::Action { action, .. } if matches!(&action.change, Change::ResizeBuffer { name, .. } if name == "orders")))
        .expect("the resize is logged");
    assert!(grow.to_string().contains("saturation"), "{grow}");
    assert!(matches!(&grow.entry, Entry::Action { outcome: Ok(v), .. } if v == "12"));

    // Inside the cooldown nothing changes the same knob the same way, however full.
    rig.clock.advance(Duration::from_secs(5));
    for n in 0..4 {
        let _ = publisher.try_publish(n);
    }
    let decision = rig.control.tick();
    assert!(
        !decision
            .actions
            .iter()
            .any(|a| matches!(&a.change, Change::ResizeBuffer { name, .. } if name == "orders")),
        "{decision}"
    );
}

#[test]
fn memory_critical_goes_defensive_then_recovers_in_simulated_time() {
    let mut rig = rig();
    rig.memory.store(GIB * 95 / 100, Ordering::Relaxed);
    let decision = rig.control.tick();
    assert_eq!(decision.mode, Mode::Defensive, "{decision}");
    assert_eq!(rig.control.mode(), Mode::Defensive);
    assert_eq!(
        rig.bus
            .snapshot()
            .subscription("telemetry")
            .unwrap()
            .overflow,
        OverflowPolicy::DropOldest,
        "droppable switched"
    );
    assert_eq!(
        rig.bus.snapshot().subscription("orders").unwrap().overflow,
        OverflowPolicy::Block,
        "lossless never drops"
    );
    assert!(
        rig.bus.publish_rate().is_some()
            || rig
                .log
                .records()
                .iter()
                .any(|r| matches!(r.entry, Entry::Mode(_)))
    );

    // Memory falls below the exit level; defensive holds for the exit hold (10 s).
    rig.memory.store(GIB / 2, Ordering::Relaxed);
    for _ in 0..5 {
        rig.clock.advance(Duration::from_secs(1));
        assert_eq!(rig.control.tick().mode, Mode::Defensive);
    }
    for _ in 0..30 {
        rig.clock.advance(Duration::from_secs(1));
        let _ = rig.control.tick();
    }
    assert_ne!(rig.control.mode(), Mode::Defensive);
    assert_eq!(
        rig.bus
            .snapshot()
            .subscription("telemetry")
            .unwrap()
            .overflow,
        OverflowPolicy::Block,
        "restored on exit"
    );
    let transitions = rig
        .log
        .records()
        .iter()
        .filter(|r| matches!(r.entry, Entry::Mode(_)))
        .count();
    assert!(
        transitions >= 2,
        "entered and left defensive: {transitions}"
    );
}

/// Critical memory wakes the spawned loop long before its next tick: with an interval
/// of an hour, only the memory watch between ticks can bring defensive mode within the
/// test's bound.
#[test]
fn critical_memory_wakes_the_spawned_loop_early() {
    let rig = rig();
    let memory = rig.memory.clone();
    let probes = rig.probes.clone();
    let log = rig.log.clone();
    let handle = rig.control.spawn(Duration::from_secs(3600), None);
    // The first tick runs at once and reads a normal memory level; only then does
    // memory turn critical (waiting for the read, not for a guessed time, so a slow
    // start cannot let the first tick see critical memory itself).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while probes.load(Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first tick never read memory"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    memory.store(GIB * 95 / 100, Ordering::Relaxed);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let defensive = || {
        log.records()
            .iter()
            .any(|r| matches!(&r.entry, Entry::Mode(t) if t.to == Mode::Defensive))
    };
    while !defensive() {
        assert!(
            std::time::Instant::now() < deadline,
            "critical memory did not wake the loop: {:?}",
            log.records()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let control = handle.stop();
    assert_eq!(control.mode(), Mode::Defensive);
}
