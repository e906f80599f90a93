//! Async stages (`Stage::async_handler`, feature `tokio`) under the controller, async
//! shutdown, and one-stage pipelines of events that are not `Clone`.
//!
//! Nothing here measures speed: load is kept up until the controller's decisions show
//! what is expected, and every wait is bounded only by a generous hang detector.
#![cfg(feature = "tokio")]

use pipeline_controller::control::Entry;
use pipeline_controller::limits::{CpuLimit, LimitSource, Limits, MemoryLimit};
use pipeline_controller::pipeline::{Pipeline, PipelineError, Stage};
use pipeline_controller::policy::{Change, MemoryObservation, PolicyConfig};
use pipeline_core::bus::SubscriptionConfig;
use pipeline_core::pool::{DeadLetterReason, PoolError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const GIB: u64 = 1 << 30;
/// Only a hang detector.
const HANG: Duration = Duration::from_secs(60);

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

fn quiet_memory(_now: Instant) -> MemoryObservation {
    MemoryObservation {
        used_bytes: GIB / 10,
        limit_bytes: Some(GIB),
        psi_some_avg10: None,
    }
}

fn fast_policy() -> PolicyConfig {
    PolicyConfig::default()
        .cooldown(Duration::from_millis(300))
        .stabilisation_window(Duration::from_millis(600))
        .defensive_exit_hold(Duration::from_millis(300))
}

/// The successful worker-count changes of `stage`, as (from, to).
fn pool_resizes<E: Send + 'static>(pipeline: &Pipeline<E>, stage: &str) -> Vec<(usize, usize)> {
    pipeline
        .decisions()
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::Action {
                action,
                outcome: Ok(_),
            } => match &action.change {
                Change::ResizePool { name, from, to, .. } if name == stage => Some((*from, *to)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// A slow async stage (each event awaits a timer, holding no thread) starting with one
/// worker: publishers wait on it, the controller sees it saturated and busy and adds
/// tasks. Load is kept up until a decision says workers were added; then everything
/// published is drained by `shutdown_async`, exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_grows_an_async_stage_and_shutdown_async_drains_it() {
    let handled = Arc::new(AtomicU64::new(0));
    let pipeline = Pipeline::<u64>::builder()
        .stage(
            Stage::new(
                SubscriptionConfig::new("slow")
                    .capacity(16)
                    .min_capacity(16)
                    .max_capacity(1024),
            )
            .workers(1)
            .min_workers(1)
            .max_workers(32)
            .async_handler({
                let handled = handled.clone();
                move |_| {
                    let handled = handled.clone();
                    async move {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        handled.fetch_add(1, Ordering::Relaxed);
                        Ok(())
                    }
                }
            }),
        )
        .policy(fast_policy())
        .limits(limits())
        .memory_probe(quiet_memory)
        .interval(Duration::from_millis(50))
        .build()
        .unwrap();
    pipeline.start().unwrap(); // tasks on this test's runtime

    let publisher = pipeline.publisher();
    let started = Instant::now();
    let mut sent = 0u64;
    while !pool_resizes(&pipeline, "slow")
        .iter()
        .any(|(from, to)| to > from)
    {
        assert!(
            started.elapsed() < HANG,
            "the controller never added a worker: {:#?}",
            pipeline
                .decisions()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        );
        for _ in 0..64 {
            publisher.publish_async(sent).await.unwrap(); // waits as a task when full
            sent += 1;
        }
    }
    drop(publisher);
    for record in pipeline.decisions() {
        eprintln!("{record}");
    }
    let grown = pool_resizes(&pipeline, "slow");
    let max_workers = grown.iter().map(|(_, to)| *to).max().unwrap();
    assert!(max_workers > 1, "{grown:?}");

    let report = pipeline.shutdown_async(HANG).await;
    assert_eq!(report.stages.len(), 1);
    assert_eq!(
        (
            report.stages[0].processed,
            report.left(),
            report.deadline_passed
        ),
        (sent, 0, false)
    );
    assert_eq!(handled.load(Ordering::Relaxed), sent, "nothing lost");
}

/// On a current-thread runtime the stage's tasks and the shutdown share one thread:
/// `shutdown_async` must wait as a task, or the tasks could not drain the backlog and
/// the report would show events left at the deadline. The control loop is stopped
/// without joining its thread on the runtime.
#[tokio::test(flavor = "current_thread")]
async fn shutdown_async_on_one_runtime_thread_drains_everything() {
    let handled = Arc::new(AtomicU64::new(0));
    let pipeline = Pipeline::<u64>::builder()
        .stage(
            Stage::new(SubscriptionConfig::new("one").capacity(256))
                .workers(4)
                .min_workers(1)
                .max_workers(8)
                .async_handler({
                    let handled = handled.clone();
                    move |_| {
                        let handled = handled.clone();
                        async move {
                            tokio::task::yield_now().await;
                            handled.fetch_add(1, Ordering::Relaxed);
                            Ok(())
                        }
                    }
                }),
        )
        .limits(limits())
        .memory_probe(quiet_memory)
        .interval(Duration::from_millis(20))
        .build()
        .unwrap();
    pipeline.start().unwrap();
    let publisher = pipeline.publisher();
    for n in 0..200u64 {
        publisher.try_publish(n).unwrap(); // room for all; the tasks have not run yet
    }
    drop(publisher);
    let report = pipeline.shutdown_async(HANG).await;
    assert_eq!(
        (
            report.stages[0].processed,
            report.left(),
            report.deadline_passed
        ),
        (200, 0, false)
    );
    assert_eq!(handled.load(Ordering::Relaxed), 200);
}

/// An event type that is not `Clone`: it owns something that must be moved.
#[derive(Debug)]
struct Upload {
    id: u64,
    bytes: Vec<u8>,
}

/// A one-stage pipeline of a non-`Clone` type, with an async handler and the
/// controller on: built with `single_stage`, events are moved to the stage, never
/// copied; counts are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_stage_pipeline_of_a_non_clone_type() {
    let total = Arc::new(AtomicU64::new(0));
    let pipeline = Pipeline::<Upload>::builder()
        .single_stage(
            Stage::new(SubscriptionConfig::new("uploads").capacity(8))
                .workers(2)
                .min_workers(1)
                .max_workers(8)
                .async_handler({
                    let total = total.clone();
                    move |upload: Upload| {
                        let total = total.clone();
                        async move {
                            tokio::task::yield_now().await;
                            assert_eq!(upload.bytes.len() as u64, upload.id % 7);
                            total.fetch_add(upload.id, Ordering::Relaxed);
                            Ok(())
                        }
                    }
                }),
        )
        .limits(limits())
        .memory_probe(quiet_memory)
        .interval(Duration::from_millis(20))
        .build()
        .unwrap();
    pipeline.start().unwrap();
    let publisher = pipeline.publisher();
    for id in 1..=500u64 {
        let upload = Upload {
            id,
            bytes: vec![0; (id % 7) as usize],
        };
        publisher.publish_async(upload).await.unwrap();
    }
    drop(publisher);
    let report = pipeline.shutdown_async(HANG).await;
    assert_eq!((report.stages[0].processed, report.left()), (500, 0));
    assert_eq!(total.load(Ordering::Relaxed), 500 * 501 / 2);
}

/// The same with a sync handler and the blocking shutdown, from a plain thread.
#[test]
fn one_stage_pipeline_of_a_non_clone_type_with_threads() {
    let total = Arc::new(AtomicU64::new(0));
    let sum = total.clone();
    let pipeline = Pipeline::<Upload>::builder()
        .single_stage(
            Stage::new(SubscriptionConfig::new("uploads").capacity(4))
                .workers(1)
                .min_workers(1)
                .max_workers(4)
                .handler(move |upload: Upload| {
                    sum.fetch_add(upload.id, Ordering::Relaxed);
                    Ok(())
                }),
        )
        .limits(limits())
        .memory_probe(quiet_memory)
        .build()
        .unwrap();
    pipeline.start().unwrap();
    let publisher = pipeline.publisher();
    for id in 1..=100 {
        publisher
            .publish(Upload {
                id,
                bytes: Vec::new(),
            })
            .unwrap();
    }
    let report = pipeline.shutdown(HANG);
    assert_eq!((report.stages[0].processed, report.left()), (100, 0));
    assert_eq!(total.load(Ordering::Relaxed), 5050);
}

/// `single_stage` takes one stage only; the error says what to do instead.
#[test]
fn single_stage_refuses_company() {
    let stage =
        |name: &'static str| Stage::new(SubscriptionConfig::new(name)).handler(|_: u64| Ok(()));
    let err = Pipeline::<u64>::builder()
        .single_stage(stage("a"))
        .stage(stage("b"))
        .limits(limits())
        .build()
        .err()
        .unwrap();
    assert!(
        matches!(err, PipelineError::SingleStageWithOthers),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("needs a Clone event type"),
        "{err}"
    );
    let err = Pipeline::<u64>::builder()
        .stage(stage("a"))
        .single_stage(stage("b"))
        .limits(limits())
        .build()
        .err()
        .unwrap();
    assert!(
        matches!(err, PipelineError::SingleStageWithOthers),
        "{err:?}"
    );
}

/// An async stage started outside any runtime, with none given: refused, naming the
/// setting. With a runtime given to the builder, it starts from a plain thread, and
/// panics in the async handler are dead-lettered as for threads.
#[test]
fn async_stage_runtime_from_the_builder() {
    let stage = || {
        Stage::new(SubscriptionConfig::new("a").capacity(64)).async_handler(|n: u64| async move {
            if n == 3 {
                panic!("three");
            }
            Ok(())
        })
    };
    let pipeline = Pipeline::<u64>::builder()
        .stage(stage())
        .limits(limits())
        .build()
        .unwrap();
    let err = pipeline.start().unwrap_err();
    match &err {
        PipelineError::Pool { stage, source } => {
            assert_eq!(stage, "a");
            assert!(
                matches!(
                    source,
                    PoolError::InvalidConfig {
                        field: "runtime",
                        ..
                    }
                ),
                "{source}"
            );
        }
        other => panic!("{other:?}"),
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let letters = Arc::new(Mutex::new(Vec::new()));
    let pipeline = Pipeline::<u64>::builder()
        .stage(stage().dead_letter({
            let letters = letters.clone();
            move |letter| {
                let panicked = matches!(letter.reason, DeadLetterReason::Panicked(_));
                letters.lock().unwrap().push((letter.event, panicked));
            }
        }))
        .runtime(runtime.handle().clone())
        .limits(limits())
        .memory_probe(quiet_memory)
        .build()
        .unwrap();
    pipeline.start().unwrap();
    let publisher = pipeline.publisher();
    for n in 0..10 {
        publisher.publish(n).unwrap();
    }
    let report = pipeline.shutdown(HANG);
    assert_eq!((report.stages[0].processed, report.left()), (10, 0));
    assert_eq!(*letters.lock().unwrap(), vec![(3, true)]);
}

/// Compile-time: the future of `shutdown_async` is `Send`, so it can be spawned.
#[allow(dead_code)]
fn shutdown_async_is_send(pipeline: Pipeline<Upload>) {
    fn send<T: Send>(_: &T) {}
    send(&pipeline.shutdown_async(HANG));
}
