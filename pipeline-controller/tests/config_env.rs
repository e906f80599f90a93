//! Configuration from the environment (issue 17): the file named by `PIPELINE_CONFIG`,
//! and `${VAR}` / `${VAR:-default}` substitution in configuration files.
//!
//! The rules of substitution are tested in process through `substitute`, with a lookup
//! table. Everything that reads the real environment runs in a child process (this
//! test binary again, one `#[ignore]`d test, with the variables set by
//! `Command::env`): setting variables in a multi-threaded test process is unsound.

use pipeline_controller::config::{
    CONFIG_PATH_ENV, ConfigHandle, ConfigLoadError, PipelineConfig, SubstitutionError, WatchError,
    substitute,
};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

#[test]
fn variables_and_defaults_are_replaced() {
    let lookup = vars(&[("COOLDOWN", "10s"), ("EMPTY", ""), ("MAX", "16")]);
    let cases = [
        ("cooldown = \"${COOLDOWN}\"", "cooldown = \"10s\""),
        ("max = ${MAX:-8}", "max = 16"),
        ("max = ${UNSET:-8}", "max = 8"),
        // `:-` also covers a set but empty variable, as in the shell.
        ("max = ${EMPTY:-8}", "max = 8"),
        ("x = \"${EMPTY}\"", "x = \"\""),
        ("x = \"${UNSET:-}\"", "x = \"\""),
        // The default is literal text up to the first `}`.
        ("x = \"${UNSET:-a b:-c $$}\"", "x = \"a b:-c $$\""),
        ("x = \"${COOLDOWN}${MAX}\"", "x = \"10s16\""),
        // `$$` is a literal `$`; any other `$` stays as written.
        ("x = \"$${COOLDOWN}\"", "x = \"${COOLDOWN}\""),
        ("x = \"$$$$\"", "x = \"$$\""),
        ("x = \"$HOME 5$ $\"", "x = \"$HOME 5$ $\""),
        // Whole-line comments are left alone, even with an unset variable.
        (
            "  # set ${UNSET} to change it",
            "  # set ${UNSET} to change it",
        ),
        ("no dollar at all", "no dollar at all"),
    ];
    for (text, expected) in cases {
        assert_eq!(substitute(text, &lookup).unwrap(), expected, "{text}");
    }
    let file = "[policy]\n# ${UNSET}\ncooldown = \"${COOLDOWN}\"\r\n\n[stages.a]\nworkers = { initial = 1, min = 1, max = ${MAX} }\n";
    assert_eq!(
        substitute(file, &lookup).unwrap(),
        file.replace("${COOLDOWN}", "10s").replace("${MAX}", "16")
    );
}

#[test]
fn an_unset_variable_without_default_names_the_variable_and_the_line() {
    let lookup = vars(&[("MAX", "16")]);
    let text = "[policy]\ncooldown = \"${POLICY_COOLDOWN}\"\n\n[stages.a]\nworkers = { initial = ${WORKERS}, min = 1, max = ${MAX} }\n";
    let errors = substitute(text, &lookup).unwrap_err();
    // Every problem at once, in file order.
    assert_eq!(
        errors.errors(),
        [
            SubstitutionError::Unset {
                variable: "POLICY_COOLDOWN".into(),
                line: 2,
                column: 13
            },
            SubstitutionError::Unset {
                variable: "WORKERS".into(),
                line: 5,
                column: 23
            },
        ]
    );
    assert_eq!(errors.errors()[1].line(), 5);
    assert_eq!(errors.errors()[1].variable(), Some("WORKERS"));
    assert_eq!(
        errors.to_string(),
        "2 substitution error(s): line 2, column 13: environment variable POLICY_COOLDOWN is \
         not set and ${POLICY_COOLDOWN} has no default (set it, or write \
         ${POLICY_COOLDOWN:-default}); line 5, column 23: environment variable WORKERS is not \
         set and ${WORKERS} has no default (set it, or write ${WORKERS:-default})"
    );
}

#[test]
fn malformed_references_and_multi_line_values_are_errors() {
    let lookup = vars(&[("TWO_LINES", "1s\nstages: {}")]);
    let malformed = |text: &str, at: &str| SubstitutionError::Malformed {
        text: at.to_owned(),
        line: 1,
        column: text.find(at).unwrap() + 1,
    };
    for (text, at) in [
        ("x = ${}", "${}"),
        ("x = ${1X}", "${1X}"),
        ("x = ${A-B}", "${A-B}"),
        ("x = ${A:?must be set}", "${A:?must be set}"),
        ("x = ${ A }", "${ A }"),
        ("x = \"${UNCLOSED\"", "${UNCLOSED\""),
    ] {
        let errors = substitute(&format!("{text}\n"), &lookup).unwrap_err();
        assert_eq!(errors.errors(), [malformed(text, at)], "{text}");
    }
    let errors = substitute("a: 1\ncooldown: ${TWO_LINES}\n", &lookup).unwrap_err();
    assert_eq!(
        errors.errors(),
        [SubstitutionError::LineBreak {
            variable: "TWO_LINES".into(),
            line: 2,
            column: 11
        }]
    );
    assert!(
        errors.to_string().contains("contains a line break"),
        "{errors}"
    );
}

#[test]
fn text_parsed_from_a_string_is_not_substituted() {
    // A string may come from a request body: it must not read the environment.
    let error = PipelineConfig::from_toml_str("[policy]\ncooldown = \"${PATH}\"\n").unwrap_err();
    assert!(
        matches!(error, ConfigLoadError::Syntax { line: 2, .. }),
        "{error}"
    );
}

// ---- In a child process, with its own environment -------------------------------------

const CHILD: &str = "PIPELINE_CONFIG_TEST_CHILD";

/// Runs the `#[ignore]`d test `name` of this binary in a child process with `set` and
/// without `unset`, and fails with its output if it fails.
fn in_child(name: &str, set: &[(&str, &Path)], plain: &[(&str, &str)], unset: &[&str]) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1");
    for (key, path) in set {
        command.env(key, path);
    }
    for (key, value) in plain {
        command.env(key, value);
    }
    for key in unset {
        command.env_remove(key);
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child {name} failed:\n{stdout}\n{stderr}"
    );
}

/// In a child: true. Run directly (`cargo test -- --ignored`): false, and the test
/// passes without checking anything.
fn is_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

const YAML: &str = "controller:\n  interval: ${PIPELINE_TEST_INTERVAL:-250ms}\npolicy:\n  cooldown: ${PIPELINE_TEST_COOLDOWN}\nstages:\n  enrich:\n    workers: { initial: 1, min: 1, max: ${PIPELINE_TEST_WORKERS:-4} }\n";

const TOML: &str = "[controller]\ninterval = \"${PIPELINE_TEST_INTERVAL:-250ms}\"\n\n[policy]\n# ${PIPELINE_TEST_NOT_SET_ANYWHERE} in a comment is left alone\ncooldown = \"${PIPELINE_TEST_COOLDOWN}\"\n\n[stages.enrich]\nworkers = { initial = 1, min = 1, max = ${PIPELINE_TEST_WORKERS:-4} }\n";

#[test]
fn files_are_substituted_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pipeline.yaml"), YAML).unwrap();
    std::fs::write(dir.path().join("pipeline.toml"), TOML).unwrap();
    in_child(
        "child_files_are_substituted",
        &[("PIPELINE_TEST_DIR", dir.path())],
        &[
            ("PIPELINE_TEST_COOLDOWN", "12s"),
            ("PIPELINE_TEST_WORKERS", "8"),
        ],
        &["PIPELINE_TEST_INTERVAL", "PIPELINE_TEST_NOT_SET_ANYWHERE"],
    );
}

#[test]
#[ignore = "run by files_are_substituted_from_the_environment in a child process"]
fn child_files_are_substituted() {
    if !is_child() {
        return;
    }
    let dir = std::path::PathBuf::from(std::env::var_os("PIPELINE_TEST_DIR").unwrap());
    for name in ["pipeline.yaml", "pipeline.toml"] {
        let config = PipelineConfig::from_path(dir.join(name)).unwrap();
        assert_eq!(config.policy.cooldown, Duration::from_secs(12), "{name}");
        assert_eq!(config.stages["enrich"].workers.max, 8, "{name}");
        assert_eq!(
            config.controller.interval,
            Duration::from_millis(250),
            "{name}"
        );
    }
}

#[test]
fn an_unset_variable_in_a_file_is_an_error_naming_it_and_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pipeline.yaml"), YAML).unwrap();
    std::fs::write(dir.path().join("pipeline.toml"), TOML).unwrap();
    in_child(
        "child_an_unset_variable_is_an_error",
        &[("PIPELINE_TEST_DIR", dir.path())],
        &[],
        &[
            "PIPELINE_TEST_COOLDOWN",
            "PIPELINE_TEST_INTERVAL",
            "PIPELINE_TEST_WORKERS",
        ],
    );
}

#[test]
#[ignore = "run by an_unset_variable_in_a_file_is_an_error_naming_it_and_its_line in a child process"]
fn child_an_unset_variable_is_an_error() {
    if !is_child() {
        return;
    }
    let dir = std::path::PathBuf::from(std::env::var_os("PIPELINE_TEST_DIR").unwrap());
    for (name, line, column) in [("pipeline.yaml", 4, 13), ("pipeline.toml", 6, 13)] {
        let path = dir.join(name);
        let error = PipelineConfig::from_path(&path).unwrap_err();
        let ConfigLoadError::Substitution { path: at, errors } = &error else {
            panic!("{name}: {error}");
        };
        assert_eq!(at, &path);
        assert_eq!(
            errors.errors(),
            [SubstitutionError::Unset {
                variable: "PIPELINE_TEST_COOLDOWN".into(),
                line,
                column
            }],
            "{name}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "{}: 1 substitution error(s): line {line}, column 13: environment variable \
                 PIPELINE_TEST_COOLDOWN is not set and ${{PIPELINE_TEST_COOLDOWN}} has no \
                 default (set it, or write ${{PIPELINE_TEST_COOLDOWN:-default}})",
                path.display()
            )
        );
    }
}

#[test]
fn pipeline_config_names_the_file_to_read_and_watch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.yaml");
    std::fs::write(&path, YAML).unwrap();
    in_child(
        "child_pipeline_config_is_read_and_watched",
        &[(CONFIG_PATH_ENV, &path)],
        &[("PIPELINE_TEST_COOLDOWN", "12s")],
        &["PIPELINE_TEST_INTERVAL", "PIPELINE_TEST_WORKERS"],
    );
}

#[test]
#[ignore = "run by pipeline_config_names_the_file_to_read_and_watch in a child process"]
fn child_pipeline_config_is_read_and_watched() {
    if !is_child() {
        return;
    }
    let path = PipelineConfig::path_from_env().unwrap();
    assert!(path.ends_with("pipeline.yaml"), "{}", path.display());
    let config = PipelineConfig::from_env().unwrap();
    assert_eq!(config.policy.cooldown, Duration::from_secs(12));
    let handle = ConfigHandle::new(config).unwrap();
    let events = handle.subscribe();
    let watcher = handle.watch_env(Duration::from_millis(100)).unwrap();
    assert_eq!(watcher.path(), path);
    // A reload substitutes too: the variable's default now applies to a new line.
    std::fs::write(&path, YAML.replace("250ms", "500ms")).unwrap();
    let event = events
        .recv_timeout(Duration::from_secs(10))
        .expect("a reload event within 10 s (the watchdog)");
    assert!(event.is_applied(), "{event}");
    assert_eq!(
        handle.current().controller.interval,
        Duration::from_millis(500)
    );
    assert_eq!(handle.current().policy.cooldown, Duration::from_secs(12));
}

#[test]
fn an_unset_or_empty_pipeline_config_is_an_error_naming_it() {
    in_child(
        "child_an_unset_pipeline_config_is_an_error",
        &[],
        &[],
        &[CONFIG_PATH_ENV],
    );
    in_child(
        "child_an_unset_pipeline_config_is_an_error",
        &[],
        &[(CONFIG_PATH_ENV, "")],
        &[],
    );
}

#[test]
#[ignore = "run by an_unset_or_empty_pipeline_config_is_an_error_naming_it in a child process"]
fn child_an_unset_pipeline_config_is_an_error() {
    if !is_child() {
        return;
    }
    let expected = "PIPELINE_CONFIG is not set: set it to the configuration file's path \
                    (.toml, .yaml or .yml)";
    let error = PipelineConfig::from_env().unwrap_err();
    assert!(
        matches!(
            error,
            ConfigLoadError::EnvNotSet {
                variable: "PIPELINE_CONFIG"
            }
        ),
        "{error}"
    );
    assert_eq!(error.to_string(), expected);
    assert_eq!(
        PipelineConfig::path_from_env().unwrap_err().to_string(),
        expected
    );
    let handle = ConfigHandle::new(PipelineConfig::default()).unwrap();
    let error = handle.watch_env(Duration::from_millis(100)).unwrap_err();
    assert!(matches!(error, WatchError::EnvNotSet { .. }), "{error}");
    assert_eq!(error.to_string(), expected);
}
