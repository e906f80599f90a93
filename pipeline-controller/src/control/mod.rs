//! The control loop: sense, decide, act, record.
//!
//! A [`ControlLoop`] reads the bus snapshot and the pools' stats through the
//! [actuator](crate::actuator) traits and memory through a [`MemoryProbe`], turns them
//! into a policy [`Observation`](crate::policy::Observation), asks the
//! [`HysteresisPolicy`](crate::policy::HysteresisPolicy) for a decision at the clock's
//! time, applies each action, and records it in a bounded [`DecisionLog`], as a
//! `tracing` event (target `pipeline::controller`) and in `metrics`
//! (`pipeline_controller_actions_total{rule,outcome}`, `pipeline_controller_mode`,
//! `pipeline_controller_mode_changes_total{to}`).
//!
//! [`ControlLoop::spawn`] runs it on a thread at an interval, woken early when the bus
//! signals back pressure or saturation. Most users get all of this from
//! [`Pipeline`](crate::pipeline::Pipeline).

mod log;
mod observe;
mod run;

pub use log::{DecisionLog, DecisionRecord, Entry};
pub use observe::MemoryProbe;
pub use run::{ControlLoop, ControllerHandle};
