//! What an operator's scrape shows of the controller (issue 17): the mode as a state
//! set, snake_case `rule` labels, decision counters registered at 0 before the first
//! decision, `# HELP` on every family, and holds counted. A Prometheus recorder local
//! to the test thread renders what `ControlLoop::tick` records.

use metrics_exporter_prometheus::PrometheusBuilder;
use pipeline_controller::actuator::BusActuator;
use pipeline_controller::control::{ControlLoop, DecisionLog, Entry};
use pipeline_controller::policy::{HysteresisPolicy, MemoryObservation, PolicyConfig};
use pipeline_core::bus::{Bus, SubscriptionConfig};
use pipeline_core::clock::ManualClock;
use std::sync::Arc;
use std::time::Duration;

const GIB: u64 = 1 << 30;

/// A saturated buffer the controller grows, with no pool: one tick grows it, the next
/// (still saturated, within the cooldown) holds.
#[test]
fn a_scrape_shows_the_mode_as_a_state_set_rules_in_snake_case_and_help() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        let clock = ManualClock::new();
        let bus: Bus<u64> = Bus::builder().clock(clock.clone()).build().unwrap();
        let _orders = bus
            .subscribe(
                SubscriptionConfig::new("orders")
                    .capacity(10)
                    .min_capacity(8)
                    .max_capacity(1000),
            )
            .unwrap();
        let log = Arc::new(DecisionLog::new(64));
        let mut control = ControlLoop::new(
            HysteresisPolicy::new(PolicyConfig::default()).unwrap(),
            Arc::new(bus.clone()) as Arc<dyn BusActuator>,
            Vec::new(),
            Box::new(|_now| MemoryObservation {
                used_bytes: GIB / 10,
                limit_bytes: Some(GIB),
                psi_some_avg10: None,
            }),
            Some(2.0),
            Arc::new(clock.clone()),
            log.clone(),
        );

        // Before any tick: every decision counter is there, at 0.
        let before = handle.render();
        assert!(
            before.contains(
                r#"pipeline_controller_actions_total{pipeline="default",rule="grow_buffer",outcome="applied"} 0"#
            ),
            "{before}"
        );
        assert!(
            before.contains(r#"rule="defensive_scale_down""#),
            "{before}"
        );

        let publisher = bus.publisher();
        for n in 0..9 {
            publisher.try_publish(n).unwrap(); // saturation 0.9
        }
        let _ = control.tick(); // grows 10 -> 15
        for n in 9..14 {
            publisher.try_publish(n).unwrap(); // 14 of 15: saturated again
        }
        clock.advance(Duration::from_secs(1));
        let _ = control.tick(); // would grow again: held by the cooldown

        let scrape = handle.render();
        assert!(
            scrape.contains(
                r#"pipeline_controller_actions_total{pipeline="default",rule="grow_buffer",outcome="applied"} 1"#
            ),
            "{scrape}"
        );
        assert!(
            !scrape.contains("GrowBuffer"),
            "Debug names as labels: {scrape}"
        );
        assert!(
            scrape.contains(r#"pipeline_controller_mode{pipeline="default",mode="normal"} 1"#),
            "{scrape}"
        );
        assert!(
            scrape.contains(r#"pipeline_controller_mode{pipeline="default",mode="throttled"} 0"#),
            "{scrape}"
        );
        assert!(
            scrape.contains(r#"pipeline_controller_mode{pipeline="default",mode="defensive"} 0"#),
            "{scrape}"
        );
        for family in [
            "pipeline_controller_actions_total",
            "pipeline_controller_mode",
            "pipeline_controller_mode_changes_total",
        ] {
            assert!(
                scrape.contains(&format!("# HELP {family} ")),
                "no HELP for {family}: {scrape}"
            );
        }
        // The second tick wanted to grow again and the cooldown held it: logged once,
        // counted.
        let holds: Vec<String> = log
            .records()
            .iter()
            .filter(|r| matches!(r.entry, Entry::Hold(_)))
            .map(|r| r.to_string())
            .collect();
        assert_eq!(holds.len(), 1, "{holds:?}");
        assert!(holds[0].contains("held by the cooldown"), "{holds:?}");
        assert!(
            scrape.contains(
                r#"pipeline_controller_holds_total{pipeline="default",rule="grow_buffer",cause="cooldown"} 1"#
            ),
            "{scrape}"
        );
    });
}

/// Two pipelines in one process keep their series apart (issue 17: two buses that
/// published 5 and 2 events rendered `pipeline_bus_published_total 5`): every series of
/// a bus, its subscriptions, the pools on them and its controller carries the
/// `pipeline` label, and every family has `# HELP`.
#[test]
fn two_pipelines_in_one_process_keep_their_series_apart() {
    use pipeline_controller::pipeline::{Pipeline, Stage};
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        let run = |name: &str, events: u64| {
            let pipeline = Pipeline::<u64>::builder()
                .name(name)
                .stage(Stage::new(SubscriptionConfig::new("work")).handler(|_| Ok(())))
                .controller(false)
                .build()
                .unwrap();
            pipeline.start().unwrap();
            let publisher = pipeline.publisher();
            for n in 0..events {
                publisher.publish(n).unwrap();
            }
            drop(publisher);
            let _ = pipeline.bus().snapshot(); // bus counters are written on snapshots
            let report = pipeline.shutdown(Duration::from_secs(60));
            assert_eq!(report.left(), 0);
        };
        run("billing", 5);
        run("audit", 2);
        let bus = Bus::<u64>::builder().name("plain").build().unwrap();
        let _sub = bus.subscribe(SubscriptionConfig::new("s")).unwrap();
        bus.publisher().publish(1).unwrap();
        let _ = bus.snapshot();

        let scrape = handle.render();
        for line in [
            r#"pipeline_bus_published_total{pipeline="billing"} 5"#,
            r#"pipeline_bus_published_total{pipeline="audit"} 2"#,
            r#"pipeline_bus_published_total{pipeline="plain"} 1"#,
            r#"pipeline_pool_processed_total{pipeline="billing",pool="work"} 5"#,
            r#"pipeline_pool_processed_total{pipeline="audit",pool="work"} 2"#,
        ] {
            assert!(scrape.contains(line), "no `{line}` in:\n{scrape}");
        }
        // Every series of these families carries the label; every family has HELP.
        let families: Vec<&str> = scrape
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert!(families.len() >= 15, "{families:?}");
        for family in &families {
            assert!(
                scrape.contains(&format!("# HELP {family} ")),
                "no HELP for {family}"
            );
        }
        for series in scrape
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            assert!(series.contains("pipeline=\""), "unlabelled: {series}");
        }
    });
}
