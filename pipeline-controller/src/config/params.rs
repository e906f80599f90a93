//! The parameter table (docs, critical flags) and flattening a configuration into
//! dotted paths.

use super::model::PipelineConfig;
use super::tree::{Node, to_tree};
use crate::policy::range_of;
use std::collections::BTreeMap;

/// One configuration parameter as documented in `docs/configuration.md`.
///
/// Stage parameters are written with the placeholder `<name>` for the stage's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parameter {
    /// The dotted path, e.g. `policy.cooldown` or `stages.<name>.buffer.max`.
    pub path: &'static str,
    /// The unit of the value.
    pub unit: &'static str,
    /// The default, as written in a file.
    pub default: &'static str,
    /// The valid range or values.
    pub range: &'static str,
    /// Whether changing it needs a restart (refused at runtime).
    pub critical: bool,
}

macro_rules! params {
    ($($path:literal, $unit:literal, $default:literal, $range:expr, $critical:literal;)*) => {
        /// Every parameter of [`PipelineConfig`], in file order.
        pub const PARAMETERS: &[Parameter] = &[
            $(Parameter { path: $path, unit: $unit, default: $default, range: $range, critical: $critical },)*
        ];
    };
}

params! {
    "controller.interval", "duration", "1s", "[1ms, 1h]", false;
    "controller.decision_log_capacity", "records", "1024", "[1, 1000000]", true;
    "policy.memory_critical", "share of memory limit", "0.9", range_of("memory_critical"), false;
    "policy.psi_critical", "percent (PSI some avg10)", "20.0", range_of("psi_critical"), false;
    "policy.defensive_exit", "share of memory limit", "0.78", range_of("defensive_exit"), false;
    "policy.psi_exit", "percent (PSI some avg10)", "10.0", range_of("psi_exit"), false;
    "policy.defensive_exit_hold", "duration", "10s", range_of("defensive_exit_hold"), false;
    "policy.memory_caution", "share of memory limit", "0.75", range_of("memory_caution"), false;
    "policy.target_saturation", "share of capacity", "0.7", range_of("target_saturation"), false;
    "policy.low_saturation", "share of capacity", "0.3", range_of("low_saturation"), false;
    "policy.relief_saturation", "share of capacity", "0.5", range_of("relief_saturation"), false;
    "policy.growth_factor", "multiplier", "1.5", range_of("growth_factor"), false;
    "policy.shrink_factor", "multiplier", "0.75", range_of("shrink_factor"), false;
    "policy.defensive_shrink_factor", "multiplier", "0.5", range_of("defensive_shrink_factor"), false;
    "policy.buffer_budget", "share of memory limit", "0.5", range_of("buffer_budget"), false;
    "policy.resize_tolerance", "share", "0.1", range_of("resize_tolerance"), false;
    "policy.rate_decrease_factor", "multiplier", "0.8", range_of("rate_decrease_factor"), false;
    "policy.defensive_rate_factor", "multiplier", "0.5", range_of("defensive_rate_factor"), false;
    "policy.min_publish_rate", "events/s", "10.0", range_of("min_publish_rate"), false;
    "policy.rate_increase_step", "share of demand", "0.1", range_of("rate_increase_step"), false;
    "policy.rate_ceiling_hold", "duration", "5m", range_of("rate_ceiling_hold"), false;
    "policy.target_utilisation", "share of worker time", "0.7", range_of("target_utilisation"), false;
    "policy.low_utilisation", "share of worker time", "0.3", range_of("low_utilisation"), false;
    "policy.max_error_rate", "share of events", "0.05", range_of("max_error_rate"), false;
    "policy.workers_per_core", "workers per core", "1.0", range_of("workers_per_core"), false;
    "policy.max_scale_up_step", "workers", "4", range_of("max_scale_up_step"), false;
    "policy.scale_down_step", "workers", "1", range_of("scale_down_step"), false;
    "policy.stabilisation_window", "duration", "30s", range_of("stabilisation_window"), false;
    "policy.cooldown", "duration", "30s", range_of("cooldown"), false;
    "policy.drain_time", "duration", "5s", range_of("drain_time"), false;
    "policy.target_latency", "duration", "1s", range_of("target_latency"), false;
    "policy.target_wait", "duration", "0s", range_of("target_wait"), false;
    "policy.model_smoothing", "duration", "20s", range_of("model_smoothing"), false;
    "stages.<name>.buffer.initial", "events", "1024", "[buffer.min, buffer.max]", false;
    "stages.<name>.buffer.min", "events", "64", "[1, buffer.max]", false;
    "stages.<name>.buffer.max", "events", "16384", "[buffer.min, 1048576]", false;
    "stages.<name>.workers.initial", "workers", "1", "[workers.min, workers.max]", false;
    "stages.<name>.workers.min", "workers", "1", "[1, workers.max]", false;
    "stages.<name>.workers.max", "workers", "1", "[workers.min, 1024]", false;
    "stages.<name>.overflow", "mode", "block", "block, drop_newest, drop_oldest (dropping needs droppable)", false;
    "stages.<name>.droppable", "flag", "false", "true, false", true;
}

/// Whether a concrete dotted path (with a real stage name) is critical.
pub fn is_critical(path: &str) -> bool {
    let pattern = generic_path(path);
    PARAMETERS
        .iter()
        .find(|p| p.path == pattern)
        .is_none_or(|p| p.critical)
}

/// `stages.enrich.buffer.max` -> `stages.<name>.buffer.max`.
pub(crate) fn generic_path(path: &str) -> String {
    match path.strip_prefix("stages.") {
        Some(rest) => match rest.split_once('.') {
            Some((_, tail)) => format!("stages.<name>.{tail}"),
            None => "stages.<name>".to_owned(),
        },
        None => path.to_owned(),
    }
}

/// The configuration as `dotted path -> value` for every leaf, values as written in a
/// TOML file (strings without quotes).
pub(crate) fn flatten(config: &PipelineConfig) -> BTreeMap<String, String> {
    let tree = to_tree(config).expect("the configuration model is a tree");
    let mut out = BTreeMap::new();
    walk("", &tree, &mut out);
    out
}

fn walk(prefix: &str, node: &Node, out: &mut BTreeMap<String, String>) {
    match node {
        Node::Table(table) => {
            for (key, inner) in table {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                walk(&path, inner, out);
            }
        }
        leaf => {
            out.insert(prefix.to_owned(), leaf.to_string());
        }
    }
}

/// The Markdown table of [`PARAMETERS`], as embedded in `docs/configuration.md`.
#[cfg(test)]
fn parameters_markdown() -> String {
    let mut out = String::from(
        "| parameter | unit | default | range | runtime |\n| --- | --- | --- | --- | --- |\n",
    );
    for p in PARAMETERS {
        out.push_str(&format!(
            "| `{}` | {} | `{}` | {} | {} |\n",
            p.path,
            p.unit,
            p.default,
            p.range.replace('|', "\\|"),
            if p.critical {
                "critical (restart)"
            } else {
                "live"
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StageConfig;

    #[test]
    fn the_parameter_table_matches_the_model_and_its_defaults() {
        let mut config = PipelineConfig::default();
        config.stages.insert("s".into(), StageConfig::default());
        let leaves = flatten(&config);
        let generic: Vec<(String, String)> = leaves
            .iter()
            .map(|(path, value)| (generic_path(path), value.clone()))
            .collect();
        let mut table: Vec<(String, String)> = PARAMETERS
            .iter()
            .map(|p| (p.path.to_owned(), p.default.to_owned()))
            .collect();
        table.sort();
        let mut generic_sorted = generic.clone();
        generic_sorted.sort();
        assert_eq!(
            table, generic_sorted,
            "PARAMETERS must list every field with its default"
        );
    }

    #[test]
    fn docs_configuration_md_lists_every_parameter() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
        let doc = std::fs::read_to_string(path).expect("docs/configuration.md exists");
        let (begin, end) = ("<!-- parameters:begin -->\n", "<!-- parameters:end -->");
        let start = doc.find(begin).expect("begin marker") + begin.len();
        let stop = doc.find(end).expect("end marker");
        let expected = parameters_markdown();
        if doc[start..stop] != expected && std::env::var_os("UPDATE_CONFIG_DOCS").is_some() {
            let updated = format!("{}{}{}", &doc[..start], expected, &doc[stop..]);
            std::fs::write(path, updated).unwrap();
            return;
        }
        assert_eq!(
            &doc[start..stop],
            expected,
            "docs/configuration.md is out of date: rerun this test with UPDATE_CONFIG_DOCS=1"
        );
    }
}
