//! Cross-crate integration tests, the stress harness with its workload generator and
//! scenarios, and the `pipeline-stress` demo binary.
#![warn(missing_docs)]

pub mod stress;
pub mod workload;

// The README's Rust examples are doc tests of pipeline-controller (`ReadmeDoctests`,
// with its `tokio` feature, which the first example needs); compiling them here too,
// without tokio, failed.
