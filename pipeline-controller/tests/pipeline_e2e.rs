//! End to end with real threads and the real clock: a pipeline with a slow handler gets
//! a burst; the controller grows the buffer and the workers, then shrinks both back
//! once the burst is over, and nothing is lost.
//!
//! Cooldowns and windows are shortened (the defaults are tens of seconds) so the whole
//! story fits in a few seconds; memory comes from a probe reporting a quiet 10% so only
//! the saturation and worker rules are in play.

use pipeline_controller::control::Entry;
use pipeline_controller::limits::{CpuLimit, LimitSource, Limits, MemoryLimit};
use pipeline_controller::pipeline::{Pipeline, PipelineError, Stage};
use pipeline_controller::policy::{Change, MemoryObservation, PolicyConfig};
use pipeline_core::bus::SubscriptionConfig;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const GIB: u64 = 1 << 30;

fn limits() -> Limits {
    Limits {
        memory: MemoryLimit {
            bytes: Some(GIB),
            source: LimitSource::EnvOverride,
        },
        cpu: CpuLimit {
            cores: Some(8.0),
            source: LimitSource::EnvOverride,
        },
    }
}

fn fast_policy() -> PolicyConfig {
    PolicyConfig::default()
        .cooldown(Duration::from_millis(300))
        .stabilisation_window(Duration::from_millis(600))
        .defensive_exit_hold(Duration::from_millis(300))
}

#[test]
fn burst_grows_buffer_and_workers_then_both_shrink_back_and_nothing_is_lost() {
    let handled = Arc::new(AtomicU64::new(0));
    let counter = handled.clone();
    let pipeline = Pipeline::<u64>::builder()
        .stage(
            Stage::new(
                SubscriptionConfig::new("slow")
                    .capacity(16)
                    .min_capacity(16)
                    .max_capacity(8192),
            )
            .workers(1)
            .min_workers(1)
            .max_workers(6)
            .handler(move |_| {
                std::thread::sleep(Duration::from_micros(500));
                counter.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }),
        )
        .policy(fast_policy())
        .limits(limits())
        .memory_probe(|_now: Instant| MemoryObservation {
            used_bytes: GIB / 10,
            limit_bytes: Some(GIB),
            psi_some_avg10: None,
        })
        .interval(Duration::from_millis(50))
        .build()
        .unwrap();
    pipeline.start().unwrap();

    // The burst: far more than one worker at ~2000/s can take.
    let publisher = pipeline.publisher();
    let sent = 8_000u64;
    for n in 0..sent {
        publisher.publish(n).unwrap();
    }
    // Let it drain and calm down, bounded. Waits for every part of the story (the
    // buffer back at 16 and a worker removed), not for one of them and then assumes
    // the other already happened: which comes first depends on the timing.
    let deadline = Instant::now() + Duration::from_secs(60);
    let shrunk_back = |p: &Pipeline<u64>| {
        let records = p.decisions();
        let grew = records.iter().any(|r| matches!(&r.entry, Entry::Action { action, .. } if matches!(action.change, Change::ResizeBuffer { from, to, .. } if to > from)));
        let workers_down = records.iter().any(|r| matches!(&r.entry, Entry::Action { action, outcome: Ok(_) } if matches!(action.change, Change::ResizePool { from, to, .. } if to < from)));
        let snapshot = p.bus().snapshot();
        let sub = snapshot.subscription("slow").unwrap();
        grew && workers_down && sub.capacity == 16 && sub.len == 0
    };
    while !(handled.load(Ordering::Relaxed) == sent && shrunk_back(&pipeline)) {
        assert!(
            Instant::now() < deadline,
            "did not settle: {:#?}",
            pipeline
                .decisions()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let records = pipeline.decisions();
    let changes: Vec<&Change> = records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::Action {
                action,
                outcome: Ok(_),
            } => Some(&action.change),
            _ => None,
        })
        .collect();
    let max_capacity = changes
        .iter()
        .filter_map(|c| match c {
            Change::ResizeBuffer { to, .. } => Some(*to),
            _ => None,
        })
        .max()
        .unwrap();
    let max_workers = changes
        .iter()
        .filter_map(|c| match c {
            Change::ResizePool { to, .. } => Some(*to),
            _ => None,
        })
        .max()
        .unwrap_or(1);
    let workers_back_down = changes
        .iter()
        .any(|c| matches!(c, Change::ResizePool { from, to, .. } if to < from));
    for record in &records {
        eprintln!("{record}");
    }
    assert!(max_capacity > 16, "the buffer grew (max {max_capacity})");
    assert!(max_workers > 1, "workers were added (max {max_workers})");
    assert!(
        workers_back_down,
        "idle workers were removed after the burst"
    );

    let report = pipeline.shutdown(Duration::from_secs(10));
    assert_eq!(report.left(), 0);
    assert_eq!(handled.load(Ordering::Relaxed), sent, "nothing lost");
}

#[test]
fn build_errors_name_the_field() {
    let err = Pipeline::<u64>::builder().build().err().unwrap();
    assert!(matches!(err, PipelineError::NoStages));
    assert_eq!(
        err.to_string(),
        "stages: a pipeline needs at least one stage"
    );

    let err = Pipeline::<u64>::builder()
        .stage(Stage::new(SubscriptionConfig::new("a")))
        .limits(limits())
        .build()
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "stages.a.handler: every stage needs a handler"
    );

    let stage = || Stage::new(SubscriptionConfig::new("a")).handler(|_: u64| Ok(()));
    let err = Pipeline::<u64>::builder()
        .stage(stage())
        .stage(stage())
        .limits(limits())
        .build()
        .err()
        .unwrap();
    assert_eq!(err.to_string(), "stages.a: stage names must be unique");

    let bad = PolicyConfig::default().defensive_exit(0.95);
    let err = Pipeline::<u64>::builder()
        .stage(stage())
        .policy(bad)
        .limits(limits())
        .build()
        .err()
        .unwrap();
    assert!(matches!(err, PipelineError::Policy(_)), "{err:?}");

    let pipeline = Pipeline::<u64>::builder()
        .stage(stage())
        .limits(limits())
        .build()
        .unwrap();
    pipeline.start().unwrap();
    assert!(matches!(
        pipeline.start(),
        Err(PipelineError::AlreadyStarted)
    ));
    assert_eq!(pipeline.shutdown(Duration::from_secs(5)).left(), 0);
}

/// The first stage's workers, minimum and maximum, as its status reports them.
fn workers(pipeline: &Pipeline<u64>) -> (usize, usize, usize) {
    let status = pipeline.status();
    let stage = &status.stages[0];
    (stage.workers, stage.min_workers, stage.max_workers)
}

#[test]
fn stage_worker_settings_are_checked_when_built_and_name_the_setter() {
    let build = |stage: Stage<u64>| {
        Pipeline::<u64>::builder()
            .stage(stage.handler(|_| Ok(())))
            .limits(limits())
            .controller(false)
            .build()
    };
    let stage = || Stage::new(SubscriptionConfig::new("a"));
    for (stage, message) in [
        (
            stage().workers(0),
            "stages.a.workers: must be at least 1 (the minimum follows it when `min_workers` \
             is not set)",
        ),
        (
            stage().min_workers(0),
            "stages.a.min_workers: must be at least 1",
        ),
        (
            stage().workers(5).max_workers(4),
            "stages.a.workers: 5 is above max_workers 4: need workers <= max_workers",
        ),
        (
            stage().workers(1).min_workers(2).max_workers(4),
            "stages.a.workers: 1 is below min_workers 2: need min_workers <= workers",
        ),
        (
            stage().min_workers(3).max_workers(2),
            "stages.a.max_workers: 2 is below min_workers 3: need min_workers <= max_workers",
        ),
    ] {
        let err = build(stage).err().expect(message);
        assert!(matches!(err, PipelineError::InvalidStage { .. }), "{err:?}");
        assert_eq!(err.to_string(), message);
    }

    // An unset bound follows `workers`, as in WorkerPoolBuilder: a fixed size.
    let pipeline = build(stage().workers(3)).unwrap();
    pipeline.start().unwrap();
    assert_eq!(workers(&pipeline), (3, 3, 3));
    assert_eq!(pipeline.shutdown(Duration::from_secs(5)).left(), 0);

    // The defaults: one worker, fixed (as a configuration's `workers` defaults).
    let pipeline = build(stage().max_workers(4)).unwrap();
    pipeline.start().unwrap();
    assert_eq!(workers(&pipeline), (1, 1, 4));
    assert_eq!(pipeline.shutdown(Duration::from_secs(5)).left(), 0);
}

#[test]
fn shutting_down_a_pipeline_never_started_reports_what_is_buffered() {
    let pipeline = Pipeline::<u64>::builder()
        .stage(Stage::new(SubscriptionConfig::new("a").capacity(8)).handler(|_| Ok(())))
        .limits(limits())
        .build()
        .unwrap();
    for n in 0..3 {
        pipeline.publisher().publish(n).unwrap();
    }
    let report = pipeline.shutdown(Duration::from_secs(5));
    assert_eq!(report.left(), 3);
    assert_eq!(report.stages[0].processed, 0);
    assert!(!report.deadline_passed);
}

#[test]
fn controller_off_keeps_initial_sizes() {
    let pipeline = Pipeline::<u64>::builder()
        .stage(
            Stage::new(SubscriptionConfig::new("a").capacity(4).max_capacity(1024)).handler(|_| {
                std::thread::sleep(Duration::from_millis(1));
                Ok(())
            }),
        )
        .limits(limits())
        .controller(false)
        .interval(Duration::from_millis(10))
        .build()
        .unwrap();
    pipeline.start().unwrap();
    let publisher = pipeline.publisher();
    for n in 0..200 {
        publisher.publish(n).unwrap();
    }
    assert_eq!(
        pipeline
            .bus()
            .snapshot()
            .subscription("a")
            .unwrap()
            .capacity,
        4
    );
    assert!(pipeline.decisions().is_empty());
    assert_eq!(pipeline.shutdown(Duration::from_secs(10)).left(), 0);
}
