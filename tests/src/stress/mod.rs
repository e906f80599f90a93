//! The stress harness: scenario files, the runner, cgroup-limited runs and the report.
//!
//! The `pipeline-stress` binary is a thin shell over this module; tests drive it too.

pub mod cgroup;
pub mod report;
pub mod run;
pub mod scenario;

pub use report::{KernelVerdict, Summary, evaluate, write_report};
pub use run::{RunControl, RunOptions, RunResult, run};
pub use scenario::{DEFAULT_SCENARIO, Expectations, Scenario, parse_bytes};
