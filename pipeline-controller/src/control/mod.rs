//! The control loop: sense, decide, act, record.
//!
//! A [`ControlLoop`] reads the bus snapshot and the pools' stats through the
//! [actuator](crate::actuator) traits and memory through a [`MemoryProbe`], turns them
//! into a policy [`Observation`](crate::policy::Observation), asks the
//! [`HysteresisPolicy`](crate::policy::HysteresisPolicy) for a decision at the clock's
//! time, applies each action, and records it in a bounded [`DecisionLog`] (with the
//! holds: changes a cooldown or window held back), in `tracing` (target
//! `pipeline::controller`: a `control_tick` span per tick, a `decision` span per action
//! with its rule, knob, from, to, reading, value and threshold as fields) and in
//! `metrics` (`pipeline_controller_actions_total{rule,outcome}` with snake_case rules,
//! `pipeline_controller_holds_total{rule,cause}`, `pipeline_controller_mode{mode}` as a
//! state set, `pipeline_controller_mode_changes_total{to}`; described, and the decision
//! counters registered at 0).
//!
//! [`ControlLoop::spawn`] runs it on a thread at an interval, woken early when the bus
//! signals back pressure or saturation. Most users get all of this from
//! [`Pipeline`](crate::pipeline::Pipeline).

mod log;
mod observe;
mod run;

pub use log::{DecisionLog, DecisionRecord, Entry};
pub use observe::MemoryProbe;
pub use run::{ControlLoop, ControllerHandle, ControllerState};
