//! A `SinkPool` as a pipeline stage the controller drives: its worker pool is shared
//! as an `Arc<dyn PoolActuator>`, a `ControlLoop` reads and resizes it, and the pool
//! shuts down while the controller still holds it.

mod common;

use common::wait_until;
use pipeline_adapters::sink::{Sink, SinkPool, SinkStats, Undelivered};
use pipeline_controller::actuator::{BusActuator, PoolActuator, apply};
use pipeline_controller::control::{ControlLoop, DecisionLog, Entry};
use pipeline_controller::policy::{
    Change, HysteresisPolicy, MemoryObservation, PolicyConfig, Rule,
};
use pipeline_core::bus::{Bus, SubscriptionConfig};
use pipeline_core::clock::ManualClock;
use pipeline_core::envelope::Envelope;
use pipeline_core::pool::{HandlerError, WorkerPool};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

const GIB: u64 = 1 << 30;

/// A sink whose deliveries wait at a gate until the test opens it.
#[derive(Default)]
struct Gated {
    open: Mutex<bool>,
    opened: Condvar,
    delivered: AtomicU64,
}

impl Gated {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

impl Sink for Gated {
    fn name(&self) -> &str {
        "gated"
    }
    fn handle(&self, _event: Envelope) -> Result<(), HandlerError> {
        let open = self.open.lock().unwrap();
        // A generous bound: only a hang detector.
        let (open, _) = self
            .opened
            .wait_timeout_while(open, Duration::from_secs(60), |open| !*open)
            .unwrap();
        assert!(*open, "the gate was never opened");
        self.delivered.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    fn stats(&self) -> SinkStats {
        SinkStats::default()
    }
    fn dead_letter(&self, _undelivered: Undelivered) {}
}

fn stage(bus: &Bus<Envelope>, events: u64) -> SinkPool<Gated> {
    let subscription = bus
        .subscribe(
            SubscriptionConfig::new("stage")
                .capacity(64)
                .max_capacity(256),
        )
        .unwrap();
    // Buffered before the pool starts, so its one worker is busy from its first moment.
    let publisher = bus.publisher();
    for i in 0..events {
        publisher
            .publish(Envelope::new("t", i.to_string()))
            .unwrap();
    }
    SinkPool::builder(Gated::default())
        .pool(WorkerPool::builder("stage").workers(1).max_workers(4))
        .spawn(subscription)
        .unwrap()
}

#[test]
fn the_pool_is_a_controller_knob_under_the_stage_name() {
    let bus: Bus<Envelope> = Bus::new();
    let pool = stage(&bus, 0);
    let knob: Arc<dyn PoolActuator> = pool.pool().clone();
    assert_eq!(knob.name(), "stage");
    let change = Change::ResizePool {
        name: "stage".into(),
        from: 1,
        to: 3,
    };
    assert_eq!(
        apply(&bus, std::slice::from_ref(&knob), &change).unwrap(),
        "3"
    );
    assert_eq!(pool.pool().stats().workers, 3);
    pool.sink().open();
    let report = pool.shutdown(Duration::from_secs(60));
    assert!(!report.drain.deadline_passed);
    // The controller's handle outlives the pool's shutdown: it reads an empty pool and
    // its resizes start nothing.
    assert_eq!(knob.stats().workers, 0);
    assert_eq!(knob.resize(2).unwrap(), 0);
}

#[test]
fn a_control_loop_scales_the_sink_pool_up_and_shutdown_drains_while_it_holds_it() {
    const EVENTS: u64 = 40;
    let clock = ManualClock::new();
    let bus: Bus<Envelope> = Bus::builder().clock(clock.clone()).build().unwrap();
    let pool = stage(&bus, EVENTS);
    // The one worker holds an event at the gate: fully busy, backlog not shrinking.
    // Utilisation is measured on the real clock; wait (bounded) until it shows.
    wait_until("the worker to be busy", Duration::from_secs(60), || {
        pool.pool().stats().utilisation > 0.9
    });
    let log = Arc::new(DecisionLog::new(64));
    let probes = Arc::new(AtomicBool::new(false));
    let probed = probes.clone();
    let mut control = ControlLoop::new(
        HysteresisPolicy::new(PolicyConfig::default()).unwrap(),
        Arc::new(bus.clone()) as Arc<dyn BusActuator>,
        vec![pool.pool().clone() as Arc<dyn PoolActuator>],
        Box::new(move |_now| {
            probed.store(true, Ordering::Relaxed);
            MemoryObservation {
                used_bytes: GIB / 10,
                limit_bytes: Some(GIB),
                psi_some_avg10: None,
            }
        }),
        Some(8.0),
        Arc::new(clock.clone()),
        log.clone(),
    );
    // A trend needs two ticks: the first records the backlog.
    let _first = control.tick();
    clock.advance(Duration::from_secs(1));
    let second = control.tick();
    assert!(probes.load(Ordering::Relaxed));
    let scaled = second
        .actions
        .iter()
        .find(|a| matches!(a.change, Change::ResizePool { .. }))
        .unwrap_or_else(|| panic!("no pool decision: {second:?}"));
    assert_eq!(scaled.reason.rule, Rule::ScaleUp);
    let Change::ResizePool { name, from, to } = &scaled.change else {
        unreachable!()
    };
    assert_eq!((name.as_str(), *from), ("stage", 1));
    assert!(*to > 1 && *to <= 4, "{to}");
    assert_eq!(pool.pool().stats().workers, *to, "the decision was applied");
    assert!(log.records().iter().any(|r| matches!(
        &r.entry,
        Entry::Action { action, outcome: Ok(_) } if action.change == scaled.change
    )));

    // Shut down with the control loop still holding the pool: the drain works through
    // the shared handle.
    pool.sink().open();
    let report = pool.shutdown(Duration::from_secs(60));
    assert_eq!((report.drain.processed, report.drain.left), (EVENTS, 0));
    assert!(!report.drain.deadline_passed);
    assert_eq!(report.sink.delivered.load(Ordering::Relaxed), EVENTS);
    // A tick after the shutdown reads a pool without workers and does not fail.
    clock.advance(Duration::from_secs(1));
    let _after = control.tick();
}

#[test]
fn dropping_the_sink_pool_stops_its_workers_even_while_a_controller_holds_it() {
    let bus: Bus<Envelope> = Bus::new();
    let pool = stage(&bus, 0);
    let knob: Arc<dyn PoolActuator> = pool.pool().clone();
    assert_eq!(knob.stats().workers, 1);
    drop(pool);
    wait_until("the worker to exit", Duration::from_secs(60), || {
        knob.stats().workers == 0
    });
}

#[test]
fn the_sink_pool_is_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<SinkPool<Gated>>();
}
