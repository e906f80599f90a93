//! Cross-crate integration tests, the stress harness with its workload generator and
//! scenarios, and the `pipeline-stress` demo binary.
#![warn(missing_docs)]

pub mod stress;
pub mod workload;

/// The README's Rust examples, compiled and run as doc tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
