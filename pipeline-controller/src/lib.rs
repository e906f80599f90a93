//! The self-tuning side of the pipeline: container limits detection (cgroup v1/v2, env
//! override, host fallback), memory and CPU sensors, the pure hysteresis policy, the
//! actuators over `pipeline-core`'s knobs, the control loop and runtime configuration.
//!
//! See `docs/architecture.md` for how the parts fit together.
