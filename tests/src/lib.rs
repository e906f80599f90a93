//! Cross-crate integration tests, the stress harness with its workload generator and
//! scenarios, and the `pipeline-stress` demo binary.
