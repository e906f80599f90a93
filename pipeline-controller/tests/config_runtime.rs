//! Live configuration: updates, critical refusals, history, subscriptions, the
//! controller picking changes up within one tick, and readers never seeing a torn
//! configuration.

use pipeline_controller::actuator::{BusActuator, PoolActuator};
use pipeline_controller::config::{
    ChangeOutcome, ChangeSource, ConfigHandle, ConfigUpdateError, PipelineConfig, RangeConfig,
    StageConfig,
};
use pipeline_controller::control::{ControlLoop, DecisionLog};
use pipeline_controller::limits::{CpuLimit, LimitSource, Limits, MemoryLimit};
use pipeline_controller::pipeline::{Pipeline, Stage};
use pipeline_controller::policy::{HysteresisPolicy, MemoryObservation};
use pipeline_core::bus::{Bus, OverflowPolicy, SubscriptionConfig};
use pipeline_core::clock::ManualClock;
use pipeline_core::pool::WorkerPool;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn limits() -> Limits {
    Limits {
        memory: MemoryLimit {
            bytes: Some(1 << 30),
            source: LimitSource::EnvOverride,
        },
        cpu: CpuLimit {
            cores: Some(8.0),
            source: LimitSource::EnvOverride,
        },
    }
}

fn two_stages() -> PipelineConfig {
    let mut config = PipelineConfig::default();
    config.stages.insert(
        "enrich".into(),
        StageConfig {
            buffer: RangeConfig {
                initial: 256,
                min: 64,
                max: 4096,
            },
            workers: RangeConfig {
                initial: 2,
                min: 1,
                max: 4,
            },
            ..StageConfig::default()
        },
    );
    config.stages.insert(
        "audit".into(),
        StageConfig {
            droppable: true,
            ..StageConfig::default()
        },
    );
    config
}

#[test]
fn a_non_critical_update_is_applied_recorded_and_announced() {
    let handle = ConfigHandle::new(two_stages()).unwrap();
    let events = handle.subscribe();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    handle.on_change(move |event| seen.lock().unwrap().push(event.clone()));
    let version = handle.version();

    let changes = handle.update("policy.cooldown", "10s").unwrap();
    assert_eq!(handle.current().policy.cooldown, Duration::from_secs(10));
    assert_eq!(handle.version(), version + 1);
    assert_eq!(changes.len(), 1);
    let change = &changes[0];
    assert_eq!(change.parameter, "policy.cooldown");
    assert_eq!(change.old.as_deref(), Some("30s"));
    assert_eq!(change.new.as_deref(), Some("10s"));
    assert_eq!(change.source, ChangeSource::Api);
    assert_eq!(change.outcome, ChangeOutcome::Applied);

    handle
        .update("stages.audit.overflow", "drop_oldest")
        .unwrap();
    handle.update("policy.growth_factor", "1.25").unwrap();
    assert_eq!(
        handle.current().stages["audit"].overflow,
        OverflowPolicy::DropOldest
    );
    assert_eq!(handle.current().policy.growth_factor, 1.25);

    let history = handle.history();
    let summary: Vec<_> = history
        .iter()
        .map(|c| {
            (
                c.parameter.as_str(),
                c.old.as_deref().unwrap(),
                c.new.as_deref().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("policy.growth_factor", "1.5", "1.25"),
            ("stages.audit.overflow", "block", "drop_oldest"),
            ("policy.cooldown", "30s", "10s"),
        ],
        "newest first"
    );
    let received: Vec<_> = events.try_iter().collect();
    assert_eq!(received.len(), 3);
    assert!(received.iter().all(|e| e.is_applied()));
    assert_eq!(received[0].changes, changes);
    assert_eq!(*calls.lock().unwrap(), received);
}

#[test]
fn a_whole_config_applies_related_parameters_together() {
    let handle = ConfigHandle::new(two_stages()).unwrap();
    let mut next = (*handle.current()).clone();
    // Moving the whole range up: min above the old max, so min and max must move at once.
    next.stages.get_mut("enrich").unwrap().buffer = RangeConfig {
        initial: 256,
        min: 8192,
        max: 16384,
    };
    // Invalid in the old order; valid as one change.
    let err = handle
        .update("stages.enrich.buffer.min", "8192")
        .unwrap_err();
    assert!(matches!(err, ConfigUpdateError::Invalid(_)), "{err}");
    let err = handle.apply(next.clone()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "1 configuration error(s): stages.enrich.buffer.initial (256) must be within \
         [buffer.min, buffer.max] ([8192, 16384])"
    );
    next.stages.get_mut("enrich").unwrap().buffer.initial = 8192;
    let changes = handle.apply(next.clone()).unwrap();
    let names: Vec<_> = changes.iter().map(|c| c.parameter.as_str()).collect();
    assert_eq!(
        names,
        [
            "stages.enrich.buffer.initial",
            "stages.enrich.buffer.max",
            "stages.enrich.buffer.min"
        ]
    );
    assert_eq!(*handle.current(), next);
    // Applying the same configuration again changes nothing.
    assert!(handle.apply(next).unwrap().is_empty());
}

#[test]
fn critical_changes_are_refused_with_their_names() {
    let handle = ConfigHandle::new(two_stages()).unwrap();
    let events = handle.subscribe();
    let before = handle.current();
    let version = handle.version();

    let err = handle
        .update("stages.audit.droppable", "false")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "critical parameter(s) stages.audit.droppable: changing them needs a restart"
    );
    let err = handle
        .update("controller.decision_log_capacity", "10")
        .unwrap_err();
    assert_eq!(
        err,
        ConfigUpdateError::Critical(vec!["controller.decision_log_capacity".into()])
    );

    let mut added = (*before).clone();
    added.stages.insert("extra".into(), StageConfig::default());
    added.policy.cooldown = Duration::from_secs(1);
    let err = handle.apply(added).unwrap_err();
    assert_eq!(
        err,
        ConfigUpdateError::Critical(vec!["stages.extra".into()])
    );

    let mut removed = (*before).clone();
    removed.stages.remove("enrich");
    let err = handle.apply(removed).unwrap_err();
    assert_eq!(
        err,
        ConfigUpdateError::Critical(vec!["stages.enrich".into()])
    );

    // Nothing changed, not even the non-critical cooldown that came with the new stage.
    assert_eq!(handle.current(), before);
    assert_eq!(handle.version(), version);
    let history = handle.history();
    assert!(history.iter().all(
        |c| matches!(&c.outcome, ChangeOutcome::Rejected(why) if why.contains("needs a restart"))
    ));
    assert_eq!(history.last().unwrap().parameter, "stages.audit.droppable");
    let received: Vec<_> = events.try_iter().collect();
    assert_eq!(received.len(), 4);
    assert!(received.iter().all(|e| !e.is_applied()));
}

#[test]
fn bad_updates_are_refused_and_recorded() {
    let handle = ConfigHandle::new(two_stages()).unwrap();
    let events = handle.subscribe();
    assert_eq!(
        handle.update("policy.no_such", "1").unwrap_err(),
        ConfigUpdateError::UnknownParameter("policy.no_such".into())
    );
    assert_eq!(
        handle.update("policy", "1").unwrap_err(),
        ConfigUpdateError::UnknownParameter("policy".into())
    );
    let err = handle.update("policy.cooldown", "soon").unwrap_err();
    assert!(
        matches!(err, ConfigUpdateError::WrongType { ref path, .. } if path == "policy.cooldown"),
        "{err}"
    );
    let err = handle.update("policy.memory_caution", "0.95").unwrap_err();
    assert_eq!(
        err.to_string(),
        "1 configuration error(s): policy.memory_caution (0.95) must be below memory_critical (0.9)"
    );
    let history = handle.history();
    assert_eq!(history.len(), 1, "one parameter was asked to change");
    assert_eq!(history[0].parameter, "policy.memory_caution");
    assert_eq!(history[0].new.as_deref(), Some("0.95"));
    assert!(
        matches!(&history[0].outcome, ChangeOutcome::Rejected(r) if r.contains("memory_critical"))
    );
    // The unknown parameters are refused before any change exists; the wrong type and
    // the invalid value are announced.
    let received: Vec<_> = events.try_iter().collect();
    assert_eq!(received.len(), 2);
    assert!(received.iter().all(|e| !e.is_applied()));
}

#[test]
fn the_history_is_bounded_newest_first() {
    let handle = ConfigHandle::with_history_capacity(two_stages(), 3).unwrap();
    for secs in 1..=5 {
        handle
            .update("policy.cooldown", &format!("{secs}s"))
            .unwrap();
    }
    let news: Vec<_> = handle
        .history()
        .into_iter()
        .map(|c| c.new.unwrap())
        .collect();
    assert_eq!(news, ["5s", "4s", "3s"]);
}

/// A control loop over a real bus and pool, following `handle`.
fn control_loop(
    handle: &ConfigHandle,
) -> (
    Bus<u64>,
    Arc<WorkerPool<u64>>,
    ControlLoop,
    pipeline_core::bus::Subscription<u64>,
) {
    let clock = ManualClock::new();
    let bus: Bus<u64> = Bus::builder().clock(clock.clone()).build().unwrap();
    let enrich = bus
        .subscribe(
            SubscriptionConfig::new("enrich")
                .capacity(256)
                .min_capacity(1)
                .max_capacity(1 << 20),
        )
        .unwrap();
    let audit = bus
        .subscribe(
            SubscriptionConfig::new("audit")
                .capacity(1024)
                .min_capacity(1)
                .max_capacity(1 << 20)
                .droppable(true),
        )
        .unwrap();
    let pool = Arc::new(
        WorkerPool::builder("enrich")
            .workers(2)
            .min_workers(1)
            .max_workers(16)
            .handler(|_| Ok(()))
            .spawn(enrich)
            .unwrap(),
    );
    let control = ControlLoop::new(
        HysteresisPolicy::new(handle.current().policy.clone()).unwrap(),
        Arc::new(bus.clone()) as Arc<dyn BusActuator>,
        vec![pool.clone() as Arc<dyn PoolActuator>],
        Box::new(|_now| MemoryObservation {
            used_bytes: 0,
            limit_bytes: Some(1 << 30),
            psi_some_avg10: None,
        }),
        Some(4.0),
        Arc::new(clock),
        Arc::new(DecisionLog::new(64)),
    )
    .with_config(handle.clone());
    (bus, pool, control, audit)
}

#[test]
fn the_controller_picks_a_change_up_at_its_next_tick() {
    let handle = ConfigHandle::new(two_stages()).unwrap();
    let (bus, pool, mut control, _audit) = control_loop(&handle);
    let _ = control.tick();
    assert_eq!(
        control.policy_mut().config().cooldown,
        Duration::from_secs(30)
    );
    // The first tick set the configured ranges over the ones the knobs were built with.
    let enrich = bus.snapshot();
    let enrich = enrich.subscription("enrich").unwrap();
    assert_eq!(
        (enrich.capacity, enrich.min_capacity, enrich.max_capacity),
        (256, 64, 4096)
    );
    let stats = pool.stats();
    assert_eq!((stats.min_workers, stats.max_workers), (1, 4));

    handle.update("policy.cooldown", "7s").unwrap();
    // A narrower range: max below the current capacity (initial moves with it, as a
    // file must stay valid for the next start).
    let mut narrower = (*handle.current()).clone();
    narrower.stages.get_mut("enrich").unwrap().buffer = RangeConfig {
        initial: 64,
        min: 64,
        max: 128,
    };
    narrower.stages.get_mut("enrich").unwrap().workers = RangeConfig {
        initial: 1,
        min: 1,
        max: 1,
    };
    handle.apply(narrower).unwrap();
    handle
        .update("stages.audit.overflow", "drop_newest")
        .unwrap();
    // Not before the tick...
    assert_eq!(bus.snapshot().subscription("enrich").unwrap().capacity, 256);
    let _ = control.tick();
    // ...but after it.
    assert_eq!(
        control.policy_mut().config().cooldown,
        Duration::from_secs(7)
    );
    // Moved into the new ranges at once, which the knobs now hold and report.
    let enrich = bus.snapshot();
    let enrich = enrich.subscription("enrich").unwrap();
    assert_eq!(
        (enrich.capacity, enrich.min_capacity, enrich.max_capacity),
        (128, 64, 128)
    );
    let stats = pool.stats();
    assert_eq!(
        (stats.workers, stats.min_workers, stats.max_workers),
        (1, 1, 1)
    );
    assert_eq!(bus.resize("enrich", 4096), Ok(128));
    assert_eq!(
        bus.snapshot().subscription("audit").unwrap().overflow,
        OverflowPolicy::DropNewest
    );

    // A range moved up moves the knob up into it.
    let mut next = (*handle.current()).clone();
    next.stages.get_mut("enrich").unwrap().buffer = RangeConfig {
        initial: 2048,
        min: 2048,
        max: 8192,
    };
    handle.apply(next).unwrap();
    let _ = control.tick();
    assert_eq!(
        bus.snapshot().subscription("enrich").unwrap().capacity,
        2048
    );
    drop(control);
    match Arc::try_unwrap(pool) {
        Ok(pool) => drop(pool.shutdown(Duration::from_secs(5))),
        Err(_) => panic!("the loop is gone, and with it its pool handle"),
    }
}

/// Polls `done` until it holds, for at most 10 s (the controller's thread moves the
/// knobs).
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A pipeline (not started) of the stages of [`two_stages`], whose controller ticks
/// every 20 ms.
fn two_stage_pipeline() -> Pipeline<u64> {
    let mut config = two_stages();
    config.controller.interval = Duration::from_millis(20);
    Pipeline::<u64>::builder()
        .stage(Stage::new(SubscriptionConfig::new("enrich")).handler(|_| Ok(())))
        .stage(Stage::new(SubscriptionConfig::new("audit")).handler(|_| Ok(())))
        .limits(limits())
        .memory_probe(|_now| MemoryObservation {
            used_bytes: 0,
            limit_bytes: Some(1 << 30),
            psi_some_avg10: None,
        })
        .config(config)
        .build()
        .unwrap()
}

#[test]
fn a_running_pipeline_applies_changes_and_refuses_critical_ones() {
    let pipeline = two_stage_pipeline();
    let handle = pipeline.config().expect("built with a configuration");
    // Built with the configured range itself, not a wider hard one.
    let enrich = pipeline.bus().snapshot();
    let enrich = enrich.subscription("enrich").unwrap();
    assert_eq!(
        (enrich.capacity, enrich.min_capacity, enrich.max_capacity),
        (256, 64, 4096)
    );
    pipeline.start().unwrap();
    let status = pipeline.status();
    let stage = status.stages.iter().find(|s| s.name == "enrich").unwrap();
    assert_eq!(
        (stage.workers, stage.min_workers, stage.max_workers),
        (2, 1, 4)
    );

    let mut narrower = (*handle.current()).clone();
    narrower.stages.get_mut("enrich").unwrap().buffer = RangeConfig {
        initial: 100,
        min: 64,
        max: 100,
    };
    handle.apply(narrower).unwrap();
    eventually("the controller to apply the new range", || {
        pipeline
            .bus()
            .snapshot()
            .subscription("enrich")
            .unwrap()
            .capacity
            == 100
    });
    // The snapshot shows the configured range, as the policy observes it.
    let snapshot = pipeline.bus().snapshot();
    let enrich = snapshot.subscription("enrich").unwrap();
    assert_eq!((enrich.min_capacity, enrich.max_capacity), (64, 100));
    assert!(handle.update("stages.audit.droppable", "false").is_err());
    let report = pipeline.shutdown(Duration::from_secs(5));
    assert_eq!(report.left(), 0);
}

/// Issue 18: the configured range used to travel beside the knobs (the bus and pools
/// were built with wide hard ranges and the loop patched every observation), so
/// `bus.snapshot()` and the pool stats reported another range than the configuration.
#[test]
fn a_range_change_reaches_the_bus_snapshot_and_the_pool_stats() {
    let pipeline = two_stage_pipeline();
    pipeline.start().unwrap();
    let handle = pipeline.config().expect("built with a configuration");
    handle.update("stages.enrich.buffer.max", "2048").unwrap();
    handle.update("stages.enrich.workers.max", "3").unwrap();
    eventually("the controller to set the new ranges", || {
        let status = pipeline.status();
        let stage = status.stages.iter().find(|s| s.name == "enrich").unwrap();
        (stage.max_capacity, stage.max_workers) == (2048, 3)
    });
    let snapshot = pipeline.bus().snapshot();
    let enrich = snapshot.subscription("enrich").unwrap();
    assert_eq!((enrich.min_capacity, enrich.max_capacity), (64, 2048));
    // The knobs hold the range: a resize past it is clamped by the bus itself.
    assert_eq!(pipeline.bus().resize("enrich", 1 << 20), Ok(2048));
    assert_eq!(pipeline.bus().resize("enrich", 1), Ok(64));
    let report = pipeline.shutdown(Duration::from_secs(5));
    assert_eq!(report.left(), 0);
}

#[test]
fn building_with_a_config_checks_the_stage_names() {
    let err = Pipeline::<u64>::builder()
        .stage(Stage::new(SubscriptionConfig::new("enrich")).handler(|_| Ok(())))
        .stage(Stage::new(SubscriptionConfig::new("other")).handler(|_| Ok(())))
        .limits(limits())
        .config(two_stages())
        .build()
        .err()
        .expect("stage sets differ");
    assert_eq!(
        err.to_string(),
        "2 configuration error(s): stages.other ((missing)) every stage of the pipeline needs \
         a configuration; stages.audit ((no such stage)) must name a stage added to the builder"
    );
}

#[test]
fn readers_never_see_a_torn_config() {
    let mut a = two_stages();
    a.stages.get_mut("enrich").unwrap().buffer = RangeConfig {
        initial: 10,
        min: 10,
        max: 20,
    };
    a.policy.low_saturation = 0.2;
    a.policy.relief_saturation = 0.4;
    let mut b = a.clone();
    b.stages.get_mut("enrich").unwrap().buffer = RangeConfig {
        initial: 100,
        min: 100,
        max: 200,
    };
    b.policy.low_saturation = 0.45;
    b.policy.relief_saturation = 0.6;
    let handle = ConfigHandle::with_history_capacity(a.clone(), 8).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (handle, stop, reads) = (handle.clone(), stop.clone(), reads.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let config = handle.current();
                    let buffer = config.stages["enrich"].buffer;
                    assert!(buffer.min <= buffer.initial && buffer.initial <= buffer.max);
                    let pair = (buffer.min, buffer.max, config.policy.low_saturation);
                    assert!(
                        pair == (10, 20, 0.2) || pair == (100, 200, 0.45),
                        "torn: {pair:?}"
                    );
                    assert!(config.policy.low_saturation < config.policy.relief_saturation);
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for i in 0..2000 {
        let next = if i % 2 == 0 { b.clone() } else { a.clone() };
        handle.apply(next).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.join().expect("a reader saw a torn configuration");
    }
    assert!(reads.load(Ordering::Relaxed) > 0);
    assert_eq!(handle.version(), 2000);
}
