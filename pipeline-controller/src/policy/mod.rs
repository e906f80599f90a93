//! The pure policy: `(Observation, state, now) -> Decision`.
//!
//! [`HysteresisPolicy::decide`] takes one [`Observation`] (buffers, pools, memory, CPU,
//! publish rate: plain numbers the control loop fills from the bus snapshot, the pools'
//! stats and the sensors) and the time, and returns a [`Decision`]: the [`Action`]s to
//! apply, each with the [`Reason`] that caused it (the rule, the readings, the thresholds
//! they crossed). It reads no clock, does no I/O and draws no random numbers, so every
//! behaviour is tested as a table of observations and instants, in simulated time.
//!
//! # Sizing from a queueing model
//!
//! A pool and the buffer of the same name are one stage. Once the loop has measured its
//! arrival rate λ and service time S ([`PoolObservation::arrival_rate`],
//! [`PoolObservation::service_time`]), the stage is sized from an M/M/c model: the pool
//! gets the smallest count `c` with `λS / c <= target_utilisation`, more if a backlog
//! must be cleared within `drain_time`, in one decision; the buffer holds
//! `target_latency` of arrivals at its target saturation. The readings are smoothed
//! (with a level-shift detector, so a 10x step is taken at once) and carry a standard
//! error: growth needs the low end of the band to call for more, and the way down goes
//! to the highest recommendation over the stabilisation window, as the Kubernetes HPA.
//! Measured CPU per event sets the CPU cap per worker, so sleeping handlers may run more
//! workers than cores. Before λ and S are measured (a cold start), utilisation and
//! saturation nudge pools and buffers by steps.
//!
//! # Priorities
//!
//! 1. **Limits and memory pressure.** Buffers over the memory budget and workers over the
//!    CPU cap are brought back at once. At or above the critical memory level (or PSI
//!    level) the policy is [`Mode::Defensive`]: each tick it halves buffers toward their
//!    minimum, cuts the publish rate, switches droppable buffers to `DropOldest` and
//!    removes a worker from each pool; cooldowns do not delay any of it.
//! 2. **Load and saturation.** Pools go to the model's count (cold start: a busy pool
//!    whose backlog is not shrinking gains workers), within their max and the CPU cap;
//!    buffers go to the model's capacity (cold start: a buffer above its target
//!    saturation grows by the growth factor), if the bytes fit the budget and memory is
//!    below caution. A saturated buffer that cannot grow and is not draining (its
//!    workers take fewer events than arrive) cuts the publish rate (multiplicative
//!    decrease) and the policy is [`Mode::Throttled`].
//! 3. **Optimisation.** After a stabilisation window, pools and buffers go down to the
//!    highest recommendation of the window (cold start: by a step when idle or
//!    under-used); not while publishers are throttled (the limit, not spare capacity,
//!    keeps them quiet); once pressure has been gone for the window the rate is raised
//!    by steps (additive increase, at most halfway to the last rate that saturated) and
//!    lifted when publishers offer clearly less than it.
//!
//! Hysteresis everywhere: separate thresholds up and down, the model's band and dead
//! bands, a cooldown per knob and direction for the rules that move by steps, windows
//! before going down, and a tolerance band. Holds (a change waiting for a cooldown or
//! the window) are listed in the [`Decision`]. `docs/controller.md` explains every rule
//! and default with the scenario that backs it.
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
//! // knob is cooling down (30 s by default), so nothing happens, and the decision says
//! // why.
//! let mut obs = obs;
//! obs.buffers[0].capacity = 96;
//! obs.buffers[0].len = 90;
//! let decision = policy.decide(&obs, start + Duration::from_secs(10));
//! assert!(decision.is_empty());
//! assert_eq!(
//!     decision.holds[0].to_string(),
//!     "buffer orders: grow 96 -> 144 held by the cooldown, 20s left"
//! );
//! let decision = policy.decide(&obs, start + Duration::from_secs(30));
//! assert!(matches!(decision.actions[0].change, Change::ResizeBuffer { from: 96, to: 144, .. }));
//! ```
//!
//! With the model's readings, a pool goes to the count for its load in one decision:
//!
//! ```
//! use pipeline_controller::policy::{Change, HysteresisPolicy, Observation, PoolObservation};
//! use std::time::{Duration, Instant};
//!
//! let mut policy = HysteresisPolicy::default();
//! let start = Instant::now();
//! // 300 events/s, 20 ms each: a load of 6 busy workers, 9 at 0.7.
//! let obs = |workers| {
//!     Observation::new().pool(
//!         PoolObservation::new("orders", workers, 1, 32)
//!             .arrival_rate(300.0)
//!             .service_time(Duration::from_millis(20)),
//!     )
//! };
//! let mut workers = 1;
//! for t in 0..10 {
//!     let decision = policy.decide(&obs(workers), start + Duration::from_secs(t));
//!     for action in &decision.actions {
//!         if let Change::ResizePool { to, .. } = action.change {
//!             workers = to;
//!         }
//!     }
//! }
//! assert_eq!(workers, 9);
//! ```

mod config;
mod decision;
mod hysteresis;
mod model;
mod observation;
mod plan;
mod rules;

pub(crate) use config::range_of;
pub use config::{PolicyConfig, PolicyConfigError};
pub use decision::{
    Action, Change, Comparison, Condition, Decision, Direction, Hold, HoldCause, Knob, Mode,
    Reading, Reason, Rule, Sizing, Threshold, Transition,
};
pub use hysteresis::HysteresisPolicy;
pub use observation::{BufferObservation, MemoryObservation, Observation, PoolObservation};
