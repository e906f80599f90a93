//! The configuration model: validation (every problem at once, exact messages), syntax
//! errors with positions, TOML/YAML round trips, the parameter table and the docs.

use pipeline_controller::config::{
    ConfigLoadError, Format, PipelineConfig, RangeConfig, StageConfig,
};
use pipeline_core::bus::OverflowPolicy;
use proptest::prelude::*;
use std::time::Duration;

fn errors_of(toml: &str) -> Vec<String> {
    match PipelineConfig::from_toml_str(toml) {
        Err(ConfigLoadError::Invalid(errors)) => {
            errors.errors().iter().map(ToString::to_string).collect()
        }
        other => panic!("expected validation errors for {toml:?}, got {other:?}"),
    }
}

#[test]
fn each_bad_config_gives_its_exact_errors() {
    let table: &[(&str, &[&str])] = &[
        (
            "[stages.enrich]\nbuffer = { initial = 64, min = 64, max = 8 }",
            &[
                "stages.enrich.buffer.max (8) must be >= buffer.min (64)",
                "stages.enrich.buffer.initial (64) must be within [buffer.min, buffer.max] ([64, 8])",
            ],
        ),
        (
            "[stages.enrich]\nworkers = { initial = 0, min = 0, max = 2000 }",
            &[
                "stages.enrich.workers.min (0) must be >= 1",
                "stages.enrich.workers.max (2000) must be <= 1024",
            ],
        ),
        (
            "[stages.a]\nbuffer = { initial = 10, min = 20, max = 30 }",
            &["stages.a.buffer.initial (10) must be within [buffer.min, buffer.max] ([20, 30])"],
        ),
        (
            "[stages.a]\nbuffer = { initial = 2000000, min = 1, max = 2000000 }",
            &["stages.a.buffer.max (2000000) must be <= 1048576"],
        ),
        (
            "[stages.a]\noverflow = \"drop_oldest\"",
            &["stages.a.overflow (drop_oldest) dropping needs droppable = true"],
        ),
        (
            "[stages.\"bad name\"]",
            &[
                "stages.bad name (\"bad name\") stage names must be non-empty and use only ASCII letters, digits, '_' and '-'",
            ],
        ),
        (
            "[controller]\ninterval = \"0s\"\ndecision_log_capacity = 0",
            &[
                "controller.interval (0s) must be in [1ms, 1h]",
                "controller.decision_log_capacity (0) must be in [1, 1000000]",
            ],
        ),
        (
            "[policy]\ndefensive_exit = 0.95",
            &["policy.defensive_exit (0.95) must be below memory_critical (0.9)"],
        ),
        (
            "[policy]\npsi_exit = 30.0",
            &["policy.psi_exit (30) must be below psi_critical (20)"],
        ),
        (
            "[policy]\nlow_utilisation = 0.8\ntarget_utilisation = 0.7",
            &["policy.low_utilisation (0.8) must be below target_utilisation (0.7)"],
        ),
        (
            "[policy]\ngrowth_factor = 3.0",
            &["policy.growth_factor (3) must be at most target_saturation / low_saturation (2.33)"],
        ),
    ];
    for (text, expected) in table {
        assert_eq!(errors_of(text), *expected, "config:\n{text}");
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"
        [controller]
        interval = "2h"
        [policy]
        memory_caution = 0.95
        max_error_rate = 1.5
        [stages.enrich]
        buffer = { initial = 64, min = 64, max = 8 }
        [stages.sink]
        workers = { initial = 9, min = 1, max = 8 }
        overflow = "drop_newest"
    "#;
    assert_eq!(
        errors_of(text),
        [
            "controller.interval (2h) must be in [1ms, 1h]",
            "policy.memory_caution (0.95) must be below memory_critical (0.9)",
            "policy.max_error_rate (1.5) must be in [0, 1]",
            "stages.enrich.buffer.max (8) must be >= buffer.min (64)",
            "stages.enrich.buffer.initial (64) must be within [buffer.min, buffer.max] ([64, 8])",
            "stages.sink.workers.initial (9) must be within [workers.min, workers.max] ([1, 8])",
            "stages.sink.overflow (drop_newest) dropping needs droppable = true",
        ]
    );
    // The same problems in YAML.
    let yaml =
        "controller:\n  interval: 2h\npolicy:\n  memory_caution: 0.95\n  max_error_rate: 1.5\n";
    match PipelineConfig::from_yaml_str(yaml) {
        Err(ConfigLoadError::Invalid(errors)) => assert_eq!(errors.errors().len(), 3),
        other => panic!("{other:?}"),
    }
}

fn syntax(result: Result<PipelineConfig, ConfigLoadError>) -> (Format, usize, usize, String) {
    match result {
        Err(ConfigLoadError::Syntax {
            format,
            line,
            column,
            message,
        }) => (format, line, column, message),
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn syntax_errors_unknown_fields_and_wrong_types_have_positions() {
    let (format, line, column, message) = syntax(PipelineConfig::from_toml_str(
        "[policy]\ncooldown = \"10s\"\nbogus = 1\n",
    ));
    assert_eq!((format, line, column), (Format::Toml, 3, 1));
    assert!(message.contains("unknown field `bogus`"), "{message}");

    let (_, line, column, message) =
        syntax(PipelineConfig::from_toml_str("[policy]\ncooldown = 10\n"));
    assert_eq!((line, column), (2, 12));
    assert!(message.contains("invalid type"), "{message}");

    let (_, line, _, message) = syntax(PipelineConfig::from_toml_str(
        "[stages.a]\nbuffer = { initial = 1, min = 1 }\n",
    ));
    assert_eq!(line, 2);
    assert!(message.contains("missing field `max`"), "{message}");

    let (_, line, column, _) = syntax(PipelineConfig::from_toml_str("[policy\ncooldown = 1"));
    assert_eq!((line, column), (1, 8));

    let (_, line, _, message) = syntax(PipelineConfig::from_toml_str(
        "[policy]\ncooldown = \"ten seconds\"\n",
    ));
    assert_eq!(line, 2);
    assert!(message.contains("expected a duration"), "{message}");

    let (format, line, column, message) = syntax(PipelineConfig::from_yaml_str(
        "policy:\n  cooldown: 10s\n  bogus: 1\n",
    ));
    assert_eq!((format, line, column), (Format::Yaml, 3, 3));
    assert!(message.contains("bogus"), "{message}");

    let (_, line, _, _) = syntax(PipelineConfig::from_yaml_str(
        "stages:\n  a:\n    overflow: sideways\n",
    ));
    assert_eq!(line, 3);

    let (_, line, _, _) = syntax(PipelineConfig::from_yaml_str("policy: [1, 2\n"));
    assert!(line >= 1);
}

#[test]
fn files_are_read_by_extension() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("p.toml");
    std::fs::write(&toml, "[policy]\ncooldown = \"5s\"\n").unwrap();
    assert_eq!(
        PipelineConfig::from_path(&toml).unwrap().policy.cooldown,
        Duration::from_secs(5)
    );
    for name in ["p.yaml", "p.yml"] {
        let yaml = dir.path().join(name);
        std::fs::write(&yaml, "policy:\n  cooldown: 7s\n").unwrap();
        assert_eq!(
            PipelineConfig::from_path(&yaml).unwrap().policy.cooldown,
            Duration::from_secs(7)
        );
    }
    let json = dir.path().join("p.json");
    std::fs::write(&json, "{}").unwrap();
    assert!(matches!(
        PipelineConfig::from_path(&json),
        Err(ConfigLoadError::UnknownFormat { .. })
    ));
    assert!(matches!(
        PipelineConfig::from_path(dir.path().join("missing.toml")),
        Err(ConfigLoadError::Io { .. })
    ));
    // Empty files are every default.
    assert_eq!(
        PipelineConfig::from_toml_str("").unwrap(),
        PipelineConfig::default()
    );
    assert_eq!(
        PipelineConfig::from_yaml_str("").unwrap(),
        PipelineConfig::default()
    );
}

fn valid_range(limit: usize) -> impl Strategy<Value = RangeConfig> {
    (1..=limit, 1..=limit, 1..=limit).prop_map(|(a, b, c)| {
        let mut v = [a, b, c];
        v.sort_unstable();
        RangeConfig {
            min: v[0],
            initial: v[1],
            max: v[2],
        }
    })
}

fn valid_stage() -> impl Strategy<Value = StageConfig> {
    (
        valid_range(1 << 20),
        valid_range(1024),
        prop_oneof![
            Just(OverflowPolicy::Block),
            Just(OverflowPolicy::DropNewest),
            Just(OverflowPolicy::DropOldest)
        ],
        any::<bool>(),
    )
        .prop_map(|(buffer, workers, overflow, droppable)| StageConfig {
            buffer,
            workers,
            overflow: if droppable {
                overflow
            } else {
                OverflowPolicy::Block
            },
            droppable,
        })
}

fn valid_config() -> impl Strategy<Value = PipelineConfig> {
    (
        1u64..3_600_000,
        1usize..=1_000_000,
        0.01f64..0.3,
        0.4f64..0.6,
        0.0f64..60_000.0,
        1usize..64,
        proptest::collection::btree_map("[a-z][a-z0-9_-]{0,8}", valid_stage(), 0..4),
    )
        .prop_map(
            |(interval_ms, log, low, relief, cooldown_ms, step, stages)| {
                let mut config = PipelineConfig::default();
                config.controller.interval = Duration::from_millis(interval_ms);
                config.controller.decision_log_capacity = log;
                config.policy.low_saturation = low;
                config.policy.relief_saturation = relief;
                config.policy.cooldown = Duration::from_millis(cooldown_ms as u64);
                config.policy.min_publish_rate = cooldown_ms + 0.5;
                config.policy.max_scale_up_step = step;
                config.stages = stages;
                config
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn valid_configs_round_trip_through_toml_and_yaml(config in valid_config()) {
        prop_assert!(config.validate().is_ok());
        let toml = config.to_toml_string();
        prop_assert_eq!(&PipelineConfig::from_toml_str(&toml).unwrap(), &config, "{}", toml);
        let yaml = config.to_yaml_string();
        prop_assert_eq!(&PipelineConfig::from_yaml_str(&yaml).unwrap(), &config, "{}", yaml);
    }
}

#[test]
fn the_documented_example_files_are_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let mut checked = 0;
    for (fence, format) in [("```toml\n", Format::Toml), ("```yaml\n", Format::Yaml)] {
        for block in doc.split(fence).skip(1) {
            let text = &block[..block.find("```").unwrap()];
            // The examples of `${VAR}` substitution, with the variable they require set.
            let text = pipeline_controller::config::substitute(text, |name| {
                (name == "PIPELINE_COOLDOWN").then(|| "10s".to_owned())
            })
            .unwrap_or_else(|e| panic!("{format} example: {e}\n{text}"));
            PipelineConfig::from_str_as(&text, format)
                .unwrap_or_else(|e| panic!("{format} example is invalid: {e}\n{text}"));
            checked += 1;
        }
    }
    assert!(checked >= 2, "the docs show a TOML and a YAML example");
}
