//! The stress harness: scenario files, the runner, cgroup-limited runs and the report.
//!
//! The `pipeline-stress` binary is a thin shell over this module; tests drive it too.
//! [`serve`] is its `--serve` mode: the run behind the control plane and a dashboard.

pub mod cgroup;
pub mod report;
pub mod run;
pub mod scenario;
pub mod serve;

pub use report::{KernelVerdict, Summary, evaluate, write_report};
pub use run::{RunControl, RunOptions, RunResult, run};
pub use scenario::{DEFAULT_SCENARIO, Expectations, LatencyWindow, Scenario, parse_bytes};
