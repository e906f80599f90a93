//! The pure policy: `(Observation, state, now) -> Decision`.
//!
//! [`HysteresisPolicy::decide`] takes one [`Observation`] (buffers, pools, memory, CPU,
//! publish rate: plain numbers the control loop fills from the bus snapshot, the pools'
//! stats and the sensors) and the time, and returns a [`Decision`]: the [`Action`]s to
//! apply, each with the [`Reason`] that caused it (the rule, the readings, the thresholds
//! they crossed). It reads no clock, does no I/O and draws no random numbers, so every
//! behaviour is tested as a table of observations and instants, in simulated time.
//!
//! # Priorities
//!
//! 1. **Limits and memory pressure.** Buffers over the memory budget and workers over the
//!    CPU cap are brought back at once. At or above the critical memory level (or PSI
//!    level) the policy is [`Mode::Defensive`]: each tick it halves buffers toward their
//!    minimum, cuts the publish rate, switches droppable buffers to `DropOldest` and
//!    removes a worker from each pool; cooldowns do not delay any of it.
//! 2. **Saturation.** A buffer above its target saturation grows by the growth factor if
//!    the bytes fit the budget and memory is below caution; if it cannot grow, the
//!    publish rate is cut (multiplicative decrease) and the policy is
//!    [`Mode::Throttled`]. A busy pool whose backlog is not shrinking gains workers,
//!    within its max and the CPU cap.
//! 3. **Optimisation.** Buffers under-used and pools idle for a stabilisation window
//!    shrink by a step (not while publishers are throttled: the limit, not spare
//!    capacity, keeps them quiet); once pressure has been gone for the window the rate
//!    is raised by steps (additive increase, at most halfway to the last rate that
//!    saturated) and lifted when publishers offer clearly less than the limit.
//!
//! Hysteresis everywhere: separate thresholds up and down, a cooldown per knob and
//! direction, windows before scaling down, bounded steps and a tolerance band.
//! `docs/controller.md` explains every rule and default with the scenario that backs it.
//!
//! # Examples
//!
//! A saturated buffer grows; the decision says why:
//!
//! ```
//! use pipeline_controller::policy::{
//!     BufferObservation, Change, HysteresisPolicy, Observation, Rule, Threshold,
//! };
//! use std::time::{Duration, Instant};
//!
//! const MIB: u64 = 1 << 20;
//! let mut policy = HysteresisPolicy::default();
//! let start = Instant::now();
//! let obs = Observation::new()
//!     .buffer(BufferObservation::new("orders", 64, 8, 1024).len(59).bytes_per_event(1024.0))
//!     .memory(200 * MIB, Some(1024 * MIB));
//!
//! let decision = policy.decide(&obs, start);
//! let action = &decision.actions[0];
//! assert_eq!(action.to_string(), "buffer orders: saturation 0.92 > target 0.70, grow 64 -> 96");
//! assert_eq!(action.reason.rule, Rule::GrowBuffer);
//! assert_eq!(action.reason.conditions[0].threshold, Threshold::TargetSaturation);
//!
//! // Applied by the caller; ten seconds later the buffer is still saturated, but the
//! // knob is cooling down (30 s by default), so nothing happens.
//! let mut obs = obs;
//! obs.buffers[0].capacity = 96;
//! obs.buffers[0].len = 90;
//! let decision = policy.decide(&obs, start + Duration::from_secs(10));
//! assert!(decision.is_empty());
//! let decision = policy.decide(&obs, start + Duration::from_secs(30));
//! assert!(matches!(decision.actions[0].change, Change::ResizeBuffer { from: 96, to: 144, .. }));
//! ```

mod config;
mod decision;
mod hysteresis;
mod observation;
mod plan;
mod rules;

pub use config::{PolicyConfig, PolicyConfigError};
pub use decision::{
    Action, Change, Comparison, Condition, Decision, Direction, Knob, Mode, Reading, Reason, Rule,
    Threshold, Transition,
};
pub use hysteresis::HysteresisPolicy;
pub use observation::{
    BufferObservation, MemoryObservation, Observation, Overflow, PoolObservation,
};
