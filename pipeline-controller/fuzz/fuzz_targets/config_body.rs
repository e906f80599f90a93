// The body of the `config` fuzz target, shared with `tests/config_fuzz_inputs.rs` so a
// normal `cargo test` compiles and runs it on a few inputs.

/// Parses `data` as TOML and as YAML; each parse must return a configuration or an
/// error, never panic, and a configuration that parses must survive a round trip.
pub fn fuzz_one(data: &[u8]) {
    use pipeline_controller::config::PipelineConfig;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = PipelineConfig::from_toml_str(text) {
        let again = PipelineConfig::from_toml_str(&config.to_toml_string())
            .expect("a valid configuration serialises to valid TOML");
        assert_eq!(again, config);
    }
    if let Ok(config) = PipelineConfig::from_yaml_str(text) {
        let again = PipelineConfig::from_yaml_str(&config.to_yaml_string())
            .expect("a valid configuration serialises to valid YAML");
        assert_eq!(again, config);
    }
}
