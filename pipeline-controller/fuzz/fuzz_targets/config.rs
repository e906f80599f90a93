//! Fuzz target: the configuration parser and validator never panic.
#![no_main]

include!("config_body.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_one(data));
