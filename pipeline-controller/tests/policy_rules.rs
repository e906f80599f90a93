//! One or more tests per rule of the policy, on hand-written observations and instants.

use std::time::{Duration, Instant};

use pipeline_controller::policy::{
    Action, BufferObservation, Change, Comparison, Condition, Decision, Direction, HoldCause,
    HysteresisPolicy, Knob, Mode, Observation, PolicyConfig, PoolObservation, Reading, Rule,
    Sizing, Threshold,
};
use pipeline_core::bus::OverflowPolicy;

const MIB: u64 = 1 << 20;

/// A policy with default config and a clock origin; `at(s)` is `s` seconds later.
struct Fixture {
    policy: HysteresisPolicy,
    start: Instant,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with(PolicyConfig::default())
    }

    fn with(config: PolicyConfig) -> Fixture {
        Fixture {
            policy: HysteresisPolicy::new(config).expect("valid config"),
            start: Instant::now(),
        }
    }

    fn decide(&mut self, obs: &Observation, secs: u64) -> Decision {
        self.policy
            .decide(obs, self.start + Duration::from_secs(secs))
    }
}

/// Memory at `percent` of a 1000 MiB limit.
fn memory(obs: Observation, percent: u64) -> Observation {
    obs.memory(percent * 10 * MIB, Some(1000 * MIB))
}

fn changes(decision: &Decision) -> Vec<Change> {
    decision.actions.iter().map(|a| a.change.clone()).collect()
}

fn rules(decision: &Decision) -> Vec<Rule> {
    decision.actions.iter().map(|a| a.reason.rule).collect()
}

fn only(decision: &Decision) -> &Action {
    assert_eq!(decision.actions.len(), 1, "expected one action: {decision}");
    &decision.actions[0]
}

fn resize_buffer(name: &str, from: usize, to: usize) -> Change {
    Change::ResizeBuffer {
        name: name.into(),
        from,
        to,
    }
}

fn resize_pool(name: &str, from: usize, to: usize) -> Change {
    Change::ResizePool {
        name: name.into(),
        from,
        to,
    }
}

#[test]
fn public_types_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<HysteresisPolicy>();
    assert_send_sync::<Observation>();
    assert_send_sync::<Decision>();
    assert_send_sync::<PolicyConfig>();
}

// ---- mode: enter and leave Defensive ----

#[test]
fn memory_at_critical_enters_defensive() {
    let mut f = Fixture::new();
    let d = f.decide(&memory(Observation::new(), 89), 0);
    assert_eq!(d.mode, Mode::Normal);
    assert!(d.is_empty());

    let d = f.decide(&memory(Observation::new(), 90), 1);
    assert_eq!(d.mode, Mode::Defensive);
    let transition = d.transition.expect("a transition");
    assert_eq!(
        (transition.from, transition.to),
        (Mode::Normal, Mode::Defensive)
    );
    assert_eq!(transition.reason.rule, Rule::EnterDefensive);
    let condition = &transition.reason.conditions[0];
    assert_eq!(condition.reading, Reading::Memory);
    assert_eq!(condition.threshold, Threshold::MemoryCritical);
    assert_eq!(condition.comparison, Comparison::AtOrAbove);
    assert_eq!(f.policy.mode(), Mode::Defensive);
}

#[test]
fn pressure_at_critical_enters_defensive_without_a_limit() {
    let mut f = Fixture::new();
    let d = f.decide(&Observation::new().psi(Some(19.9)), 0);
    assert_eq!(d.mode, Mode::Normal);
    let d = f.decide(&Observation::new().psi(Some(20.0)), 1);
    assert_eq!(d.mode, Mode::Defensive);
    assert_eq!(
        d.transition.unwrap().reason.conditions[0].reading,
        Reading::Pressure
    );
}

#[test]
fn no_limit_and_no_pressure_is_never_defensive() {
    let mut f = Fixture::new();
    let obs = Observation::new().memory(u64::MAX / 2, None);
    assert_eq!(f.decide(&obs, 0).mode, Mode::Normal);
}

#[test]
fn defensive_ends_only_after_memory_held_below_exit() {
    let mut f = Fixture::new();
    let obs = |percent| memory(Observation::new(), percent).publish_rate(Some(10.0));
    let _ = f.decide(&obs(95), 0);
    // Between exit (0.78) and critical (0.90): stays, the hold has not started.
    assert_eq!(f.decide(&obs(85), 1).mode, Mode::Defensive);
    // Below exit from t=2; a bounce above it at t=8 restarts the hold.
    for t in 2..8 {
        assert_eq!(f.decide(&obs(70), t).mode, Mode::Defensive);
    }
    assert_eq!(f.decide(&obs(80), 8).mode, Mode::Defensive);
    for t in 9..19 {
        assert_eq!(f.decide(&obs(70), t).mode, Mode::Defensive, "t={t}");
    }
    let d = f.decide(&obs(70), 19);
    // A limit is in force, so the policy goes on Throttled.
    let transition = d.transition.expect("leaves defensive after 10 s");
    assert_eq!(
        (transition.from, transition.to),
        (Mode::Defensive, Mode::Throttled)
    );
    assert_eq!(transition.reason.rule, Rule::LeaveDefensive);
    assert_eq!(
        transition.reason.conditions[0].held_for,
        Some(Duration::from_secs(10))
    );
    assert_eq!(
        transition.to_string(),
        "mode defensive -> throttled: memory 0.70 < exit 0.78 for 10s"
    );
}

#[test]
fn leaving_defensive_without_a_limit_goes_back_to_normal() {
    let mut f = Fixture::new();
    let critical = memory(Observation::new(), 95).publish_rate(Some(5.0));
    let d = f.decide(&critical, 0);
    // The limit in force (5/s) is below the floor: nothing to cut.
    assert!(d.actions.is_empty());
    let calm = memory(Observation::new(), 50);
    let _ = f.decide(&calm, 1);
    let d = f.decide(&calm, 11);
    assert_eq!(d.mode, Mode::Normal);
}

// ---- defensive actions ----

#[test]
fn defensive_halves_buffers_toward_min_every_critical_tick() {
    let mut f = Fixture::new();
    let obs = |capacity| {
        memory(Observation::new(), 95)
            .publish_rate(Some(10.0))
            .buffer(BufferObservation::new("b", capacity, 8, 64))
    };
    let d = f.decide(&obs(40), 0);
    assert_eq!(changes(&d), [resize_buffer("b", 40, 20)]);
    assert_eq!(rules(&d), [Rule::DefensiveShrink]);
    // The next tick, a second later: no cooldown applies.
    assert_eq!(
        changes(&f.decide(&obs(20), 1)),
        [resize_buffer("b", 20, 10)]
    );
    assert_eq!(changes(&f.decide(&obs(10), 2)), [resize_buffer("b", 10, 8)]);
    assert!(f.decide(&obs(8), 3).actions.is_empty());
}

#[test]
fn defensive_holds_while_memory_is_between_exit_and_critical() {
    let mut f = Fixture::new();
    let obs = |percent, capacity| {
        memory(Observation::new(), percent)
            .buffer(BufferObservation::new("b", capacity, 8, 64).len(capacity))
    };
    let _ = f.decide(&obs(95, 64), 0);
    // Still defensive, saturated, but neither shrunk further nor grown.
    let d = f.decide(&obs(85, 32), 1);
    assert_eq!(d.mode, Mode::Defensive);
    assert!(d.is_empty(), "{d}");
}

#[test]
fn defensive_throttle_starts_from_the_lower_of_limit_and_demand() {
    let mut f = Fixture::new();
    let obs = memory(Observation::new(), 92).observed_publish_rate(Some(400.0));
    let d = f.decide(&obs, 0);
    assert_eq!(
        changes(&d),
        [Change::SetPublishRate {
            from: None,
            to: Some(200.0)
        }]
    );
    assert_eq!(rules(&d), [Rule::DefensiveThrottle]);
    let obs = obs
        .publish_rate(Some(200.0))
        .observed_publish_rate(Some(150.0));
    assert_eq!(
        changes(&f.decide(&obs, 1)),
        [Change::SetPublishRate {
            from: Some(200.0),
            to: Some(75.0)
        }]
    );
    // Never below the floor.
    let obs = obs.publish_rate(Some(12.0));
    assert_eq!(
        changes(&f.decide(&obs, 2)),
        [Change::SetPublishRate {
            from: Some(12.0),
            to: Some(10.0)
        }]
    );
    let obs = obs.publish_rate(Some(10.0));
    assert!(f.decide(&obs, 3).actions.is_empty());
}

#[test]
fn defensive_switches_only_droppable_blocking_buffers_to_drop_oldest() {
    let mut f = Fixture::new();
    let obs = memory(Observation::new(), 95)
        .publish_rate(Some(10.0))
        .buffer(BufferObservation::new("lossless", 8, 8, 64))
        .buffer(BufferObservation::new("metrics", 8, 8, 64).droppable(true))
        .buffer(
            BufferObservation::new("logs", 8, 8, 64)
                .droppable(true)
                .overflow(OverflowPolicy::DropNewest),
        );
    let d = f.decide(&obs, 0);
    assert_eq!(
        changes(&d),
        [Change::SetOverflow {
            name: "metrics".into(),
            from: OverflowPolicy::Block,
            to: OverflowPolicy::DropOldest
        }]
    );
    assert_eq!(rules(&d), [Rule::DefensiveDrop]);
    assert_eq!(d.actions[0].change.direction(), Direction::Down);
}

#[test]
fn leaving_defensive_restores_the_buffers_it_made_drop() {
    let mut f = Fixture::new();
    let obs = |percent, overflow| {
        memory(Observation::new(), percent)
            .publish_rate(Some(10.0))
            .buffer(
                BufferObservation::new("metrics", 8, 8, 64)
                    .droppable(true)
                    .overflow(overflow),
            )
            .buffer(
                BufferObservation::new("logs", 8, 8, 64)
                    .droppable(true)
                    .overflow(OverflowPolicy::DropNewest),
            )
    };
    let _ = f.decide(&obs(95, OverflowPolicy::Block), 0);
    let _ = f.decide(&obs(60, OverflowPolicy::DropOldest), 1);
    let d = f.decide(&obs(60, OverflowPolicy::DropOldest), 11);
    assert_eq!(
        d.transition.as_ref().unwrap().reason.rule,
        Rule::LeaveDefensive
    );
    // "logs" was configured DropNewest by its owner: left alone.
    assert_eq!(
        changes(&d),
        [Change::SetOverflow {
            name: "metrics".into(),
            from: OverflowPolicy::DropOldest,
            to: OverflowPolicy::Block
        }]
    );
    assert_eq!(rules(&d), [Rule::RestoreOverflow]);
    assert_eq!(
        d.actions[0].to_string(),
        "buffer metrics: memory 0.60 < exit 0.78 for 10s, overflow drop_oldest -> block"
    );
}

#[test]
fn defensive_removes_one_worker_per_critical_tick_down_to_min() {
    let mut f = Fixture::new();
    let obs = |workers| {
        memory(Observation::new(), 95)
            .publish_rate(Some(10.0))
            .pool(PoolObservation::new("p", workers, 2, 8).utilisation(1.0))
    };
    assert_eq!(changes(&f.decide(&obs(4), 0)), [resize_pool("p", 4, 3)]);
    assert_eq!(changes(&f.decide(&obs(3), 1)), [resize_pool("p", 3, 2)]);
    assert!(f.decide(&obs(2), 2).actions.is_empty());
}

// ---- limits ----

#[test]
fn buffers_over_the_budget_shrink_to_fit_at_once() {
    let mut f = Fixture::new();
    // Budget: half of 1000 MiB = 500 MiB; the buffers hold 2 x 400 slots x 1 MiB.
    let obs = memory(Observation::new(), 50)
        .buffer(
            BufferObservation::new("a", 400, 8, 1024)
                .len(100)
                .bytes_per_event(MIB as f64),
        )
        .buffer(
            BufferObservation::new("b", 400, 300, 1024)
                .len(100)
                .bytes_per_event(MIB as f64),
        );
    let d = f.decide(&obs, 0);
    assert_eq!(
        changes(&d),
        [resize_buffer("a", 400, 250), resize_buffer("b", 400, 300)]
    );
    assert_eq!(rules(&d), [Rule::OverBudget, Rule::OverBudget]);
    assert_eq!(
        d.actions[0].to_string(),
        "buffer a: buffer bytes 0.80 > budget 0.50, shrink 400 -> 250"
    );
}

#[test]
fn workers_over_the_cpu_cap_are_cut_from_the_least_busy_pools_first() {
    let mut f = Fixture::new();
    let obs = Observation::new()
        .cpu_limit(Some(4.0))
        .pool(PoolObservation::new("busy", 4, 1, 8).utilisation(0.9))
        .pool(PoolObservation::new("a", 2, 1, 8).utilisation(0.5))
        .pool(PoolObservation::new("b", 6, 3, 8).utilisation(0.5));
    let d = f.decide(&obs, 0);
    // 12 workers, cap 4: the least busy give first (b before a: as idle, more above its
    // min), then busy, each down to its min at most; the minimums (5) stay.
    assert_eq!(
        changes(&d),
        [
            resize_pool("b", 6, 3),
            resize_pool("a", 2, 1),
            resize_pool("busy", 4, 1)
        ]
    );
    assert_eq!(rules(&d), [Rule::CpuCap, Rule::CpuCap, Rule::CpuCap]);
    assert_eq!(
        d.actions[0].to_string(),
        "pool b: workers 12 > cpu cap 4, scale down 6 -> 3"
    );
}

#[test]
fn cpu_cap_never_goes_below_the_minimums() {
    let mut f = Fixture::new();
    let obs = Observation::new()
        .cpu_limit(Some(1.0))
        .pool(PoolObservation::new("a", 2, 2, 8))
        .pool(PoolObservation::new("b", 3, 2, 8));
    assert_eq!(changes(&f.decide(&obs, 0)), [resize_pool("b", 3, 2)]);
}

#[test]
fn cpu_cap_keeps_one_worker_on_a_pool_with_a_backlog() {
    let mut f = Fixture::new();
    // Cap 2, 5 workers, both idle and one above their minimum, so "waiting" would be
    // cut first; it has events queued, so it keeps its worker (at zero its backlog would
    // never drain). "spare" gives what it can; the minimums keep the total above the cap.
    let obs = Observation::new()
        .cpu_limit(Some(2.0))
        .pool(PoolObservation::new("waiting", 1, 0, 4).backlog(1))
        .pool(PoolObservation::new("spare", 4, 3, 8));
    assert_eq!(changes(&f.decide(&obs, 0)), [resize_pool("spare", 4, 3)]);
}

#[test]
fn at_the_cpu_cap_a_pool_with_work_and_no_worker_gets_one_from_the_least_utilised() {
    let mut f = Fixture::new();
    // Cap 4, all four workers taken; "late" (min 0) went to zero while idle and now has
    // work. It cannot scale up; "calm" can spare a worker, "busy" could too but is
    // busier.
    let obs = Observation::new()
        .cpu_limit(Some(4.0))
        .pool(PoolObservation::new("late", 0, 0, 4).backlog(5))
        .pool(PoolObservation::new("busy", 2, 1, 8).utilisation(0.9))
        .pool(PoolObservation::new("calm", 2, 1, 8).utilisation(0.2));
    let d = f.decide(&obs, 0);
    assert_eq!(
        changes(&d),
        [resize_pool("calm", 2, 1), resize_pool("late", 0, 1)]
    );
    assert!(d.actions.iter().all(|a| a.reason.rule == Rule::Rebalance));
    assert_eq!(
        d.actions[1].to_string(),
        "pool late: workers 4 >= cpu cap 4 and backlog 5 > 0, scale up 0 -> 1"
    );
    // Nobody can spare one (each at its minimum, or at one with work waiting): nothing.
    let mut f = Fixture::new();
    let obs = Observation::new()
        .cpu_limit(Some(2.0))
        .pool(PoolObservation::new("late", 0, 0, 4).backlog(5))
        .pool(PoolObservation::new("held", 1, 1, 8))
        .pool(PoolObservation::new("working", 1, 0, 8).backlog(3));
    assert!(f.decide(&obs, 0).is_empty());
}

#[test]
fn below_the_cap_the_room_goes_first_to_a_pool_with_no_worker() {
    let mut f = Fixture::with(PolicyConfig::default().workers_per_core(1.0));
    // One worker of room under the cap (3); "slow" wants more, "late" has none.
    let obs = |backlog| {
        Observation::new()
            .cpu_limit(Some(3.0))
            .pool(
                PoolObservation::new("slow", 2, 1, 8)
                    .utilisation(1.0)
                    .backlog(backlog),
            )
            .pool(PoolObservation::new("late", 0, 0, 4).backlog(backlog))
    };
    let _ = f.decide(&obs(10), 0);
    assert_eq!(changes(&f.decide(&obs(20), 1)), [resize_pool("late", 0, 1)]);
}

// ---- buffers: grow, throttle instead, shrink ----

#[test]
fn a_saturated_buffer_grows_by_the_growth_factor_within_max() {
    let mut f = Fixture::new();
    let d = f.decide(
        &Observation::new().buffer(BufferObservation::new("b", 8, 8, 64).len(6)),
        0,
    );
    let action = only(&d);
    assert_eq!(action.change, resize_buffer("b", 8, 12));
    assert_eq!(action.reason.rule, Rule::GrowBuffer);
    assert_eq!(
        action.to_string(),
        "buffer b: saturation 0.75 > target 0.70, grow 8 -> 12"
    );

    let d = f.decide(
        &Observation::new().buffer(BufferObservation::new("c", 50, 8, 64).len(50)),
        0,
    );
    assert_eq!(changes(&d), [resize_buffer("c", 50, 64)]);
}

#[test]
fn saturation_at_target_is_not_above_it() {
    let mut f = Fixture::new();
    let d = f.decide(
        &Observation::new().buffer(BufferObservation::new("b", 10, 8, 64).len(7)),
        0,
    );
    assert!(d.is_empty());
}

#[test]
fn publishers_that_waited_make_a_buffer_saturated_whatever_its_len() {
    let mut f = Fixture::new();
    let obs = Observation::new()
        .buffer(BufferObservation::new("b", 8, 8, 64).blocked(Duration::from_millis(5)));
    assert_eq!(changes(&f.decide(&obs, 0)), [resize_buffer("b", 8, 12)]);
}

#[test]
fn growth_waits_for_the_cooldown_in_its_direction() {
    let mut f = Fixture::new();
    let obs = |capacity| {
        Observation::new().buffer(BufferObservation::new("b", capacity, 8, 1024).len(capacity))
    };
    assert_eq!(changes(&f.decide(&obs(8), 0)), [resize_buffer("b", 8, 12)]);
    assert!(f.decide(&obs(12), 29).is_empty());
    assert_eq!(
        changes(&f.decide(&obs(12), 30)),
        [resize_buffer("b", 12, 18)]
    );
}

#[test]
fn growth_is_limited_to_the_memory_budget() {
    let mut f = Fixture::new();
    // Budget 500 MiB; the other buffer's capacity takes 300; 1 MiB events: this one
    // may hold 200 in all. After a resize its 80 buffered events stay in the old
    // generation until drained, so the new one may take 120 (not the 150 growth asks).
    let obs = memory(Observation::new(), 50)
        .buffer(
            BufferObservation::new("other", 300, 8, 1024)
                .bytes_per_event(MIB as f64)
                .len(100),
        )
        .buffer(
            BufferObservation::new("b", 100, 8, 1024)
                .bytes_per_event(MIB as f64)
                .len(80),
        );
    assert_eq!(changes(&f.decide(&obs, 0)), [resize_buffer("b", 100, 120)]);
}

#[test]
fn growth_smaller_than_the_tolerance_is_not_made_and_throttles_instead() {
    let mut f = Fixture::new();
    // Room for 5 more slots of 100: below the 10% tolerance.
    let obs = memory(Observation::new(), 50)
        .observed_publish_rate(Some(1000.0))
        .buffer(BufferObservation::new("other", 395, 8, 1024).bytes_per_event(MIB as f64))
        .buffer(
            BufferObservation::new("b", 100, 8, 1024)
                .bytes_per_event(MIB as f64)
                .len(100),
        );
    let d = f.decide(&obs, 0);
    let action = only(&d);
    assert_eq!(
        action.change,
        Change::SetPublishRate {
            from: None,
            to: Some(800.0)
        }
    );
    assert_eq!(action.reason.rule, Rule::Throttle);
    assert_eq!(
        action.reason.conditions[1].threshold,
        Threshold::BufferBudget
    );
    assert_eq!(
        action.to_string(),
        "publish rate: buffer b saturation 1.00 > target 0.70 and buffer bytes 0.51 > budget 0.50, \
         throttle unlimited -> 800.0/s"
    );
    assert_eq!(d.mode, Mode::Throttled);
    assert_eq!(d.transition.unwrap().to, Mode::Throttled);
}

#[test]
fn a_buffer_at_max_throttles_multiplicatively_each_cooldown() {
    let mut f = Fixture::new();
    let obs = |rate| {
        Observation::new()
            .publish_rate(rate)
            .observed_publish_rate(Some(1000.0))
            .buffer(BufferObservation::new("b", 64, 8, 64).len(64))
    };
    let d = f.decide(&obs(None), 0);
    assert_eq!(
        changes(&d),
        [Change::SetPublishRate {
            from: None,
            to: Some(800.0)
        }]
    );
    assert_eq!(
        d.actions[0].reason.conditions[1].threshold,
        Threshold::MaxCapacity
    );
    assert!(f.decide(&obs(Some(800.0)), 29).is_empty());
    assert_eq!(
        changes(&f.decide(&obs(Some(800.0)), 30)),
        [Change::SetPublishRate {
            from: Some(800.0),
            to: Some(640.0)
        }]
    );
}

#[test]
fn memory_at_caution_stops_growth_and_throttles() {
    let mut f = Fixture::new();
    let obs = memory(Observation::new(), 75)
        .observed_publish_rate(Some(100.0))
        .buffer(BufferObservation::new("b", 8, 8, 64).len(8));
    let d = f.decide(&obs, 0);
    assert_eq!(
        changes(&d),
        [Change::SetPublishRate {
            from: None,
            to: Some(80.0)
        }]
    );
    assert_eq!(
        d.actions[0].reason.conditions[1].threshold,
        Threshold::MemoryCaution
    );
}

#[test]
fn a_buffer_waiting_for_its_cooldown_does_not_throttle() {
    let mut f = Fixture::new();
    let obs = |capacity| {
        Observation::new()
            .observed_publish_rate(Some(100.0))
            .buffer(BufferObservation::new("b", capacity, 8, 64).len(capacity))
    };
    let _ = f.decide(&obs(8), 0);
    assert!(f.decide(&obs(12), 1).is_empty());
}

#[test]
fn an_under_used_buffer_shrinks_after_the_window() {
    let mut f = Fixture::new();
    let obs = |capacity, len| {
        Observation::new().buffer(BufferObservation::new("b", capacity, 8, 64).len(len))
    };
    for t in 0..30 {
        assert!(f.decide(&obs(64, 10), t).is_empty(), "t={t}");
    }
    let d = f.decide(&obs(64, 10), 30);
    let action = only(&d);
    assert_eq!(action.change, resize_buffer("b", 64, 48));
    assert_eq!(action.reason.rule, Rule::ShrinkBuffer);
    assert_eq!(
        action.to_string(),
        "buffer b: saturation 0.16 < low 0.30 for 30s, shrink 64 -> 48"
    );
}

#[test]
fn a_saturation_spike_restarts_the_shrink_window() {
    let mut f = Fixture::new();
    let obs = |len| Observation::new().buffer(BufferObservation::new("b", 64, 8, 64).len(len));
    for t in 0..20 {
        let _ = f.decide(&obs(0), t);
    }
    let _ = f.decide(&obs(30), 20);
    for t in 21..51 {
        assert!(f.decide(&obs(0), t).is_empty(), "t={t}");
    }
    assert_eq!(
        changes(&f.decide(&obs(0), 51)),
        [resize_buffer("b", 64, 48)]
    );
}

#[test]
fn shrinking_stops_at_min() {
    let mut f = Fixture::new();
    let obs = |capacity| Observation::new().buffer(BufferObservation::new("b", capacity, 8, 64));
    for t in 0..30 {
        let _ = f.decide(&obs(9), t);
    }
    // 9 x 0.75 rounds to 7: clamped to 8, a one-slot change allowed because it reaches min.
    assert_eq!(changes(&f.decide(&obs(9), 30)), [resize_buffer("b", 9, 8)]);
    for t in 31..100 {
        assert!(f.decide(&obs(8), t).is_empty());
    }
}

// ---- workers ----

fn busy_pool(workers: usize, utilisation: f64, backlog: usize) -> Observation {
    Observation::new().pool(
        PoolObservation::new("p", workers, 1, 16)
            .utilisation(utilisation)
            .backlog(backlog),
    )
}

#[test]
fn a_busy_pool_with_a_growing_backlog_scales_up_toward_target() {
    let mut f = Fixture::new();
    // The first sight only records the backlog.
    assert!(f.decide(&busy_pool(2, 0.9, 10), 0).is_empty());
    let d = f.decide(&busy_pool(2, 0.9, 20), 1);
    let action = only(&d);
    // ceil(2 * 0.9 / 0.7) = 3.
    assert_eq!(action.change, resize_pool("p", 2, 3));
    assert_eq!(action.reason.rule, Rule::ScaleUp);
    assert_eq!(
        action.to_string(),
        "pool p: utilisation 0.90 > target 0.70 and backlog 20 >= previous 10, scale up 2 -> 3"
    );
}

#[test]
fn scale_up_steps_are_capped() {
    let mut f = Fixture::new();
    let _ = f.decide(&busy_pool(4, 1.0, 100), 0);
    // ceil(4 / 0.7) = 6 would be +2; 10 workers at 1.0 want 15: +4 at most.
    assert_eq!(
        changes(&f.decide(&busy_pool(4, 1.0, 100), 1)),
        [resize_pool("p", 4, 6)]
    );
    let mut f = Fixture::new();
    let _ = f.decide(&busy_pool(10, 1.0, 100), 0);
    assert_eq!(
        changes(&f.decide(&busy_pool(10, 1.0, 100), 1)),
        [resize_pool("p", 10, 14)]
    );
}

#[test]
fn no_scale_up_while_the_backlog_shrinks() {
    let mut f = Fixture::new();
    let _ = f.decide(&busy_pool(2, 0.9, 50), 0);
    assert!(f.decide(&busy_pool(2, 0.9, 40), 1).is_empty());
}

#[test]
fn no_scale_up_when_errors_are_high() {
    let mut f = Fixture::new();
    let failing = |backlog| {
        Observation::new().pool(
            PoolObservation::new("p", 2, 1, 16)
                .utilisation(0.9)
                .backlog(backlog)
                .error_rate(0.05),
        )
    };
    let _ = f.decide(&failing(10), 0);
    assert!(f.decide(&failing(20), 1).is_empty());
}

#[test]
fn no_scale_up_when_memory_is_at_caution() {
    let mut f = Fixture::new();
    let _ = f.decide(&memory(busy_pool(2, 0.9, 10), 75), 0);
    assert!(f.decide(&memory(busy_pool(2, 0.9, 20), 75), 1).is_empty());
}

#[test]
fn scale_up_stays_within_the_cpu_cap_across_pools() {
    let mut f = Fixture::with(PolicyConfig::default().workers_per_core(2.0));
    let obs = |workers, backlog| {
        Observation::new()
            .cpu_limit(Some(3.0))
            .pool(
                PoolObservation::new("a", workers, 1, 16)
                    .utilisation(1.0)
                    .backlog(backlog),
            )
            .pool(
                PoolObservation::new("b", workers, 1, 16)
                    .utilisation(1.0)
                    .backlog(backlog),
            )
    };
    let _ = f.decide(&obs(2, 10), 0);
    // Each wants ceil(2 x 1.0 / 0.7) = 3; the cap (3 cores x 2 = 6) has room for both.
    assert_eq!(
        changes(&f.decide(&obs(2, 20), 1)),
        [resize_pool("a", 2, 3), resize_pool("b", 2, 3)]
    );
    // Still busy after the cooldown, but the cap is reached.
    assert!(f.decide(&obs(3, 30), 40).is_empty());
    let one_core_more = obs(3, 40).cpu_limit(Some(3.5));
    assert_eq!(
        changes(&f.decide(&one_core_more, 41)),
        [resize_pool("a", 3, 4)]
    );
}

#[test]
fn an_idle_pool_loses_one_worker_after_the_window() {
    let mut f = Fixture::new();
    let idle = |workers| busy_pool(workers, 0.1, 0);
    for t in 0..30 {
        assert!(f.decide(&idle(4), t).is_empty(), "t={t}");
    }
    let d = f.decide(&idle(4), 30);
    let action = only(&d);
    assert_eq!(action.change, resize_pool("p", 4, 3));
    assert_eq!(action.reason.rule, Rule::ScaleDown);
    assert_eq!(
        action.to_string(),
        "pool p: utilisation 0.10 < low 0.30 for 30s, scale down 4 -> 3"
    );
    // The window restarts at the new size.
    for t in 31..61 {
        assert!(f.decide(&idle(3), t).is_empty(), "t={t}");
    }
    assert_eq!(changes(&f.decide(&idle(3), 61)), [resize_pool("p", 3, 2)]);
}

#[test]
fn one_busy_tick_in_the_window_holds_the_workers() {
    let mut f = Fixture::new();
    for t in 0..40 {
        let utilisation = if t == 25 { 0.5 } else { 0.1 };
        assert!(
            f.decide(&busy_pool(4, utilisation, 0), t).is_empty(),
            "t={t}"
        );
    }
    assert_eq!(
        changes(&f.decide(&busy_pool(4, 0.1, 0), 56)),
        [resize_pool("p", 4, 3)]
    );
}

#[test]
fn no_scale_down_that_would_push_utilisation_over_target() {
    let mut f = Fixture::new();
    // 2 workers at 0.29: one worker would be at 0.58, fine; at 0.36 with a low mark of 0.4
    // and a target of 0.5, one worker would be at 0.72: not done.
    let config = PolicyConfig::default()
        .low_utilisation(0.4)
        .target_utilisation(0.5)
        .target_saturation(0.8)
        .growth_factor(1.5);
    let mut g = Fixture::with(config);
    for t in 0..=30 {
        assert!(g.decide(&busy_pool(2, 0.36, 0), t).is_empty(), "t={t}");
    }
    for t in 0..30 {
        let _ = f.decide(&busy_pool(2, 0.29, 0), t);
    }
    assert_eq!(
        changes(&f.decide(&busy_pool(2, 0.29, 0), 30)),
        [resize_pool("p", 2, 1)]
    );
}

// ---- the publish rate: raise and lift ----

#[test]
fn the_rate_rises_by_steps_of_the_origin_and_lifts_at_demand() {
    let mut f = Fixture::new();
    let obs = |rate, demand, len| {
        Observation::new()
            .publish_rate(rate)
            .observed_publish_rate(Some(demand))
            .buffer(BufferObservation::new("b", 64, 64, 64).len(len))
    };
    let set = |from, to| Change::SetPublishRate { from, to };
    // Throttled from 100/s to 80/s.
    let d = f.decide(&obs(None, 100.0, 64), 0);
    assert_eq!(changes(&d), [set(None, Some(80.0))]);
    // Relief must hold for the window (30 s) at the new rate.
    for t in 1..31 {
        assert!(f.decide(&obs(Some(80.0), 100.0, 10), t).is_empty(), "t={t}");
    }
    let d = f.decide(&obs(Some(80.0), 100.0, 10), 31);
    let action = only(&d);
    // Steps are 10% of the demand when throttling began: +10/s.
    assert_eq!(action.change, set(Some(80.0), Some(90.0)));
    assert_eq!(action.reason.rule, Rule::RaiseRate);
    assert_eq!(action.change.direction(), Direction::Up);
    for t in 32..62 {
        assert!(f.decide(&obs(Some(90.0), 100.0, 10), t).is_empty(), "t={t}");
    }
    // Publishers still offer more than the limit: another step, not a lift.
    let d = f.decide(&obs(Some(90.0), 100.0, 10), 62);
    assert_eq!(changes(&d), [set(Some(90.0), Some(100.0))]);
    for t in 63..93 {
        assert!(f.decide(&obs(Some(100.0), 70.0, 10), t).is_empty(), "t={t}");
    }
    // Demand fell clearly below the limit (by more than the 10% tolerance): lifted.
    let d = f.decide(&obs(Some(100.0), 70.0, 10), 93);
    assert_eq!(changes(&d), [set(Some(100.0), None)]);
    assert_eq!(
        d.actions[0].to_string(),
        "publish rate: buffer b saturation 0.16 < relief 0.50 for 30s and demand 70.0/s < limit 100.0/s, \
         lift 100.0/s -> unlimited"
    );
    let transition = d.transition.expect("back to normal");
    assert_eq!(
        (transition.from, transition.to),
        (Mode::Throttled, Mode::Normal)
    );
}

#[test]
fn the_rate_is_not_raised_while_a_buffer_is_above_relief() {
    let mut f = Fixture::new();
    let obs = Observation::new()
        .publish_rate(Some(50.0))
        .observed_publish_rate(Some(100.0))
        .buffer(BufferObservation::new("b", 64, 8, 64).len(32));
    for t in 0..100 {
        assert!(f.decide(&obs, t).is_empty(), "t={t}");
    }
}

#[test]
fn the_rate_is_not_raised_while_memory_is_at_caution() {
    let mut f = Fixture::new();
    let obs = memory(Observation::new(), 76).publish_rate(Some(50.0));
    for t in 0..100 {
        assert!(f.decide(&obs, t).is_empty(), "t={t}");
    }
}

// ---- decisions as values ----

#[test]
fn the_same_inputs_give_the_same_decisions() {
    let start = Instant::now();
    let inputs: Vec<Observation> = (0..60)
        .map(|t| {
            memory(Observation::new(), 60 + t % 40)
                .observed_publish_rate(Some(100.0))
                .buffer(BufferObservation::new("b", 16, 8, 64).len(t as usize % 17))
                .pool(
                    PoolObservation::new("p", 2, 1, 8)
                        .utilisation((t % 10) as f64 / 10.0)
                        .backlog(t as usize),
                )
        })
        .collect();
    let run = || {
        let mut policy = HysteresisPolicy::default();
        inputs
            .iter()
            .enumerate()
            .map(|(t, obs)| policy.decide(obs, start + Duration::from_secs(t as u64)))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

#[test]
fn knobs_and_directions_of_changes() {
    let up = Change::SetPublishRate {
        from: Some(10.0),
        to: None,
    };
    assert_eq!(
        (up.knob(), up.direction()),
        (Knob::PublishRate, Direction::Up)
    );
    let down = Change::SetPublishRate {
        from: None,
        to: Some(10.0),
    };
    assert_eq!(down.direction(), Direction::Down);
    let restore = Change::SetOverflow {
        name: "b".into(),
        from: OverflowPolicy::DropOldest,
        to: OverflowPolicy::Block,
    };
    assert_eq!(
        (restore.knob(), restore.direction()),
        (Knob::Overflow("b".into()), Direction::Up)
    );
    assert_eq!(restore.knob().to_string(), "buffer b");
    assert_eq!(resize_pool("p", 1, 2).knob().to_string(), "pool p");
}

#[test]
fn an_empty_decision_displays_as_no_change() {
    let mut f = Fixture::new();
    assert_eq!(f.decide(&Observation::new(), 0).to_string(), "no change");
}

#[test]
fn a_config_change_keeps_the_history() {
    let mut f = Fixture::new();
    let obs = |capacity| {
        Observation::new().buffer(BufferObservation::new("b", capacity, 8, 1024).len(capacity))
    };
    let _ = f.decide(&obs(8), 0);
    f.policy
        .set_config(PolicyConfig::default().cooldown(Duration::from_secs(5)))
        .unwrap();
    assert!(f.decide(&obs(12), 4).is_empty());
    assert_eq!(
        changes(&f.decide(&obs(12), 5)),
        [resize_buffer("b", 12, 18)]
    );
}

// ---- the queueing model ----

const MS: Duration = Duration::from_millis(1);

/// One stage (a buffer and its pool, both "s") with the model's readings: λ events/s,
/// S ms, a backlog, and the CPU per event as a share of S (`None`: not measured).
fn stage(
    workers: usize,
    capacity: usize,
    arrival: f64,
    service_ms: u32,
    backlog: usize,
    cpu_share: Option<f64>,
) -> Observation {
    let service = MS * service_ms;
    Observation::new()
        .buffer(BufferObservation::new("s", capacity, 16, 4096).len(backlog))
        .pool(
            PoolObservation::new("s", workers, 1, 32)
                .utilisation((arrival * service.as_secs_f64() / workers as f64).min(1.0))
                .backlog(backlog)
                .arrival_rate(arrival)
                .service_time(service)
                .cpu_per_event(cpu_share.map(|share| service.mul_f64(share))),
        )
}

/// Feeds `obs` from second `from` to `to` (exclusive), applying every action to the
/// knobs it reads back; returns every action with its second.
fn run(
    f: &mut Fixture,
    from: u64,
    to: u64,
    workers: &mut usize,
    capacity: &mut usize,
    obs: impl Fn(usize, usize) -> Observation,
) -> Vec<(u64, Action)> {
    let mut actions = Vec::new();
    for t in from..to {
        let d = f.decide(&obs(*workers, *capacity), t);
        for action in d.actions {
            match action.change {
                Change::ResizePool { to, .. } => *workers = to,
                Change::ResizeBuffer { to, .. } => *capacity = to,
                _ => {}
            }
            actions.push((t, action));
        }
    }
    actions
}

#[test]
fn a_pool_goes_to_the_model_count_in_one_decision_then_refines() {
    let mut f = Fixture::new();
    let (mut workers, mut capacity) = (2, 64);
    // λ 300/s x S 20 ms = load 6.0: 9 workers at 0.7. The first reading is fresh, so
    // the pool lands one error low (8), and the next firms the estimate up to 9.
    let actions = run(&mut f, 0, 40, &mut workers, &mut capacity, |w, c| {
        stage(w, c, 300.0, 20, 0, None)
    });
    let pool: Vec<&(u64, Action)> = actions
        .iter()
        .filter(|(_, a)| matches!(a.change, Change::ResizePool { .. }))
        .collect();
    assert_eq!(pool.len(), 2, "{actions:?}");
    assert_eq!((pool[0].0, pool[1].0), (0, 1));
    assert_eq!(pool[0].1.change, resize_pool("s", 2, 8));
    assert_eq!(pool[0].1.reason.rule, Rule::ScaleUp);
    assert_eq!(
        pool[0].1.to_string(),
        "pool s: λ 300/s x S 20.0ms = load 6.00, target 0.70 -> 9 workers \
         (load uncertain by ±11.5%; 1.0 error below: 8 workers), scale up 2 -> 8"
    );
    assert_eq!(pool[1].1.change, resize_pool("s", 8, 9));
    assert_eq!(pool[1].1.reason.rule, Rule::Refine);
    assert_eq!(workers, 9);
    // The buffer went to its capacity for λ (300 x 1 s / 0.7 = 429), one error low.
    assert!((380..=429).contains(&capacity), "{capacity}");
}

#[test]
fn a_10x_step_is_taken_at_once() {
    let mut f = Fixture::new();
    let (mut workers, mut capacity) = (1, 64);
    let _ = run(&mut f, 0, 60, &mut workers, &mut capacity, |w, c| {
        stage(w, c, 30.0, 20, 0, None)
    });
    assert_eq!(workers, 1, "λS 0.6: one worker");
    // The first reading at 300/s is ten deviations away: the estimate jumps to it.
    let actions = run(&mut f, 60, 63, &mut workers, &mut capacity, |w, c| {
        stage(w, c, 300.0, 20, 0, None)
    });
    assert!(
        actions
            .iter()
            .any(|(t, a)| *t == 60 && a.reason.rule == Rule::ScaleUp),
        "{actions:?}"
    );
    assert!((8..=9).contains(&workers), "{workers}");
    let _ = run(&mut f, 63, 70, &mut workers, &mut capacity, |w, c| {
        stage(w, c, 300.0, 20, 0, None)
    });
    assert_eq!(workers, 9);
}

#[test]
fn the_drain_term_adds_the_workers_that_clear_the_backlog_in_the_drain_time() {
    let mut f = Fixture::new();
    let (mut workers, mut capacity) = (9, 429);
    let quiet = run(&mut f, 0, 20, &mut workers, &mut capacity, |w, c| {
        stage(w, c, 300.0, 20, 0, None)
    });
    assert!(quiet.is_empty(), "{quiet:?}");
    // 1800 events wait: fully busy, (300 + 1800 / 5 s) x 20 ms = 13.2 -> 14 workers.
    let d = f.decide(&stage(9, 429, 300.0, 20, 1800, None), 20);
    let pool = d
        .actions
        .iter()
        .find(|a| matches!(a.change, Change::ResizePool { .. }))
        .expect("a scale-up");
    assert_eq!(pool.change, resize_pool("s", 9, 14));
    assert_eq!(
        pool.to_string(),
        "pool s: λ 300/s x S 20.0ms = load 6.00, target 0.70 -> 9 workers \
         (backlog 1800 drains in 5s: 14 workers), scale up 9 -> 14"
    );
    assert!(matches!(
        pool.reason.sizing,
        Some(Sizing::Workers {
            for_load: 9,
            for_drain: 14,
            ..
        })
    ));
}

/// With a wait target the model sizes for the p99 wait in M/M/c as well: at load 2
/// (100/s x 20 ms) utilisation alone asks for 3 workers, whose p99 wait is 76 ms; a
/// 50 ms target asks for 4 (29 ms), and the decision says which figure decided.
#[test]
fn a_wait_target_sizes_the_pool_for_the_p99_wait() {
    let settle = |config: PolicyConfig| {
        let mut f = Fixture::with(config);
        let (mut workers, mut capacity) = (1, 64);
        let actions = run(&mut f, 0, 40, &mut workers, &mut capacity, |w, c| {
            stage(w, c, 100.0, 20, 0, None)
        });
        (workers, actions)
    };
    let (without, _) = settle(PolicyConfig::default());
    assert_eq!(without, 3);
    let (with, actions) = settle(PolicyConfig::default().target_wait(MS * 50));
    assert_eq!(with, 4);
    let texts: Vec<String> = actions
        .iter()
        .filter(|(_, a)| matches!(a.change, Change::ResizePool { .. }))
        .map(|(_, a)| a.to_string())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("-> 3 workers (p99 wait <= 50.0ms: 4 workers)")),
        "{texts:?}"
    );
    // A target the utilisation count already meets changes nothing.
    let (loose, _) = settle(PolicyConfig::default().target_wait(MS * 100));
    assert_eq!(loose, 3);
}

#[test]
fn the_way_down_waits_the_window_and_goes_to_the_highest_recommendation() {
    let mut f = Fixture::new();
    let (mut workers, mut capacity) = (9, 429);
    let _ = run(&mut f, 0, 40, &mut workers, &mut capacity, |w, c| {
        stage(w, c, 300.0, 20, 0, None)
    });
    assert_eq!(workers, 9);
    // Load falls 10x at t=40: the estimate follows at once, the workers wait for the
    // window (the recommendations of t <= 39 say 9), and the hold says so.
    let d = f.decide(&stage(9, capacity, 30.0, 20, 0, None), 40);
    assert!(d.is_empty(), "{d}");
    let hold = d
        .holds
        .iter()
        .find(|h| h.change.knob() == Knob::Pool("s".into()))
        .expect("a hold on the pool");
    assert_eq!(hold.rule, Rule::ScaleDown);
    assert_eq!(
        hold.cause,
        HoldCause::Window {
            left: Duration::from_secs(29)
        }
    );
    assert!(hold.new);
    assert_eq!(
        hold.to_string(),
        "pool s: scale down 9 -> 1 held by the stabilisation window, 29s left"
    );
    let d = f.decide(&stage(9, capacity, 30.0, 20, 0, None), 41);
    assert!(
        !d.holds
            .iter()
            .find(|h| h.change.knob() == Knob::Pool("s".into()))
            .unwrap()
            .new
    );
    let actions = run(&mut f, 42, 80, &mut workers, &mut capacity, |w, c| {
        stage(w, c, 30.0, 20, 0, None)
    });
    let down: Vec<&(u64, Action)> = actions
        .iter()
        .filter(|(_, a)| matches!(a.change, Change::ResizePool { .. }))
        .collect();
    assert_eq!(down.len(), 1, "one decision: {actions:?}");
    assert_eq!(
        down[0].0, 69,
        "the last high recommendation (t=39) left the window"
    );
    assert_eq!(down[0].1.change, resize_pool("s", 9, 1));
    assert_eq!(down[0].1.reason.rule, Rule::ScaleDown);
    assert!(
        down[0]
            .1
            .to_string()
            .ends_with("and recommendation 1 < workers 9 for 30s, scale down 9 -> 1"),
        "{}",
        down[0].1
    );
}

#[test]
fn noise_within_the_band_changes_nothing() {
    let mut f = Fixture::new();
    let (mut workers, mut capacity) = (9, 429);
    // ±4% around λ 300/s, about the Poisson noise of a one-second count.
    let noisy = [300.0, 312.0, 290.0, 305.0, 288.0, 311.0, 296.0, 309.0];
    let mut actions = Vec::new();
    for t in 0..300u64 {
        let arrival = noisy[t as usize % noisy.len()];
        actions.extend(run(
            &mut f,
            t,
            t + 1,
            &mut workers,
            &mut capacity,
            |w, c| stage(w, c, arrival, 20, 0, None),
        ));
    }
    assert!(actions.is_empty(), "{actions:?}");
}

#[test]
fn without_readings_the_cold_start_rules_apply() {
    // No λ or S: utilisation nudges the pool by steps, as before the model.
    let mut f = Fixture::new();
    let _ = f.decide(&busy_pool(2, 0.9, 10), 0);
    let d = f.decide(&busy_pool(2, 0.9, 20), 1);
    assert_eq!(only(&d).change, resize_pool("p", 2, 3));
    assert!(only(&d).reason.sizing.is_none());
}

#[test]
fn measured_cpu_lets_sleeping_stages_run_more_workers_than_cores() {
    let mut f = Fixture::new();
    let obs = |io: usize, cpu: usize| {
        Observation::new()
            .cpu_limit(Some(2.0))
            .pool(
                PoolObservation::new("io", io, 1, 32)
                    .arrival_rate(300.0)
                    .service_time(MS * 20)
                    .cpu_per_event(MS * 20 / 100),
            )
            .pool(
                PoolObservation::new("cpu", cpu, 1, 32)
                    .arrival_rate(150.0)
                    .service_time(MS * 10)
                    .cpu_per_event(MS * 10),
            )
    };
    let (mut io, mut cpu) = (1, 1);
    for t in 0..20 {
        for a in f.decide(&obs(io, cpu), t).actions {
            match a.change {
                Change::ResizePool { ref name, to, .. } if name == "io" => io = to,
                Change::ResizePool { to, .. } => cpu = to,
                _ => {}
            }
        }
    }
    // io: 9 workers at 1% of a core each; cpu: load 1.5 wants 3, but each busy worker
    // takes a core: 2 fit (2 cores, plus the 10% tolerance of the measured part).
    assert_eq!((io, cpu), (9, 2));
}

#[test]
fn without_cpu_readings_the_cap_is_cores_times_workers_per_core() {
    let mut f = Fixture::new();
    let obs = Observation::new().cpu_limit(Some(2.0)).pool(
        PoolObservation::new("s", 1, 1, 32)
            .arrival_rate(300.0)
            .service_time(MS * 20),
    );
    let d = f.decide(&obs, 0);
    let action = only(&d);
    assert_eq!(action.change, resize_pool("s", 1, 2));
    assert!(
        action
            .to_string()
            .ends_with("and workers 2 <= cpu cap 2, scale up 1 -> 2"),
        "{action}"
    );
}

#[test]
fn a_step_down_through_an_intermediate_count_ends_one_window_after_the_load_fell() {
    // 10 workers for a load the model sizes at 9 (λ 300/s x S 20 ms), then the load
    // falls 10x at t = 20 s. The window's highest count (9, until the last high-load
    // reading leaves it) takes the pool to 9 first; that change must neither restart
    // the window nor start a cooldown, so the pool reaches c* = 1 one window after the
    // load fell, as the HPA would (issue 15: within the window + 3 ticks).
    let mut f = Fixture::new();
    let (mut workers, mut capacity) = (10, 1024);
    let mut actions = run(&mut f, 0, 20, &mut workers, &mut capacity, |w, c| {
        stage(w, c, 300.0, 20, 0, None)
    });
    actions.extend(run(&mut f, 20, 60, &mut workers, &mut capacity, |w, c| {
        stage(w, c, 30.0, 20, 0, None)
    }));
    let pool: Vec<(u64, Change)> = actions
        .iter()
        .filter(|(_, a)| matches!(a.change, Change::ResizePool { .. }))
        .map(|(t, a)| (*t, a.change.clone()))
        .collect();
    let window = PolicyConfig::default().stabilisation_window.as_secs();
    assert_eq!(workers, 1, "{pool:?}");
    let last = pool.last().expect("a scale-down").0;
    assert!(last <= 20 + window + 3, "{pool:?}");
    assert!(
        pool.iter().any(|(_, c)| *c == resize_pool("s", 10, 9)),
        "the intermediate count this test is about: {pool:?}"
    );
}

#[test]
fn a_saturated_buffer_grows_by_steps_only_while_its_stage_cannot_keep_up() {
    // Two workers of 20 ms take 100/s; 300/s arrive and the pool cannot grow (max 2).
    let obs = |capacity: usize| {
        Observation::new()
            .buffer(BufferObservation::new("s", capacity, 16, 4096).len(capacity))
            .pool(
                PoolObservation::new("s", 2, 1, 2)
                    .utilisation(1.0)
                    .backlog(capacity)
                    .arrival_rate(300.0)
                    .service_time(MS * 20),
            )
    };
    let mut f = Fixture::new();
    let mut capacity = 1024;
    let mut grown = Vec::new();
    for t in 0..40 {
        for a in f.decide(&obs(capacity), t).actions {
            if let Change::ResizeBuffer { to, .. } = a.change {
                capacity = to;
                grown.push((t, a));
            }
        }
    }
    // Not at the first saturated tick (a Poisson burst fills a buffer for a tick),
    // but after three, then once per cooldown.
    assert_eq!(grown.len(), 2, "{grown:?}");
    assert_eq!(grown[0].0, 2);
    assert_eq!(grown[1].0, 32);
    assert!(
        grown[0]
            .1
            .to_string()
            .contains("and arrivals 300.0/s >= service rate 100.0/s"),
        "{}",
        grown[0].1
    );
    // The same buffer, saturated, with workers that take more than arrives: no growth.
    let mut f = Fixture::new();
    let mut keeps_up = |t| {
        let obs = Observation::new()
            .buffer(BufferObservation::new("s", 1024, 16, 4096).len(1024))
            .pool(
                PoolObservation::new("s", 9, 1, 9)
                    .backlog(1024)
                    .arrival_rate(300.0)
                    .service_time(MS * 20),
            );
        f.decide(&obs, t)
    };
    for t in 0..40 {
        let d = keeps_up(t);
        assert!(
            !d.actions
                .iter()
                .any(|a| a.reason.rule == Rule::GrowBuffer || a.reason.rule == Rule::Throttle),
            "t={t}: {d}"
        );
    }
}

#[test]
fn a_stage_that_keeps_up_is_not_throttled_one_that_cannot_is() {
    let obs = |workers: usize| {
        Observation::new()
            .buffer(
                BufferObservation::new("s", 256, 16, 256)
                    .len(256)
                    .blocked(MS * 10),
            )
            .pool(
                PoolObservation::new("s", workers, workers, workers)
                    .backlog(256)
                    .arrival_rate(300.0)
                    .service_time(MS * 20),
            )
            .observed_publish_rate(Some(300.0))
    };
    // At its max, saturated, but 9 workers take 450/s: the backlog drains, no cut.
    let mut f = Fixture::new();
    assert!(
        f.decide(&obs(9), 0)
            .actions
            .iter()
            .all(|a| a.reason.rule != Rule::Throttle)
    );
    // 2 workers take 100/s: cut.
    let mut f = Fixture::new();
    let d = f.decide(&obs(2), 0);
    let throttle = d
        .actions
        .iter()
        .find(|a| a.reason.rule == Rule::Throttle)
        .expect("a throttle");
    assert_eq!(
        throttle.to_string(),
        "publish rate: buffer s saturation 1.00 > target 0.70 and buffer s capacity 256 >= max 256 \
         and pool s arrivals 300.0/s >= service rate 100.0/s, throttle unlimited -> 240.0/s"
    );
}

#[test]
fn the_model_does_not_grow_or_scale_up_at_memory_caution() {
    let mut f = Fixture::new();
    for t in 0..10 {
        let d = f.decide(&memory(stage(1, 16, 300.0, 20, 0, None), 76), t);
        assert!(
            d.actions
                .iter()
                .all(|a| a.change.direction() == Direction::Down),
            "t={t}: {d}"
        );
    }
    // At critical: defensive, whatever the model says.
    let d = f.decide(&memory(stage(1, 16, 3000.0, 20, 0, None), 91), 10);
    assert_eq!(d.mode, Mode::Defensive);
    assert!(
        d.actions
            .iter()
            .all(|a| a.change.direction() == Direction::Down),
        "{d}"
    );
}

#[test]
fn the_model_skips_the_cooldown_a_sized_buffer_shrink_and_a_nudge_do_not() {
    let up = Action {
        change: resize_pool("s", 2, 9),
        reason: pipeline_controller::policy::Reason {
            rule: Rule::ScaleUp,
            conditions: vec![],
            sizing: Some(Sizing::Workers {
                arrival_rate: 300.0,
                service_time: MS * 20,
                target: 0.7,
                for_load: 9,
                target_wait: Duration::ZERO,
                for_wait: 0,
                backlog: 0.0,
                drain_time: Duration::from_secs(5),
                for_drain: 0,
                shifted: None,
            }),
        },
    };
    assert!(!up.respects_cooldown());
    // The model's scale-down takes the highest count over the window: the window is
    // its hysteresis, as in the HPA.
    let mut down = up.clone();
    down.change = resize_pool("s", 9, 2);
    down.reason.rule = Rule::ScaleDown;
    assert!(!down.respects_cooldown());
    let mut unsized_down = down.clone();
    unsized_down.reason.sizing = None;
    assert!(unsized_down.respects_cooldown());
    let mut nudge = up.clone();
    nudge.reason.sizing = None;
    assert!(nudge.respects_cooldown());
    let shrink = Action {
        change: Change::ResizeBuffer {
            name: "s".into(),
            from: 400,
            to: 40,
        },
        reason: pipeline_controller::policy::Reason {
            rule: Rule::ShrinkBuffer,
            conditions: vec![],
            sizing: Some(Sizing::Capacity {
                arrival_rate: 30.0,
                latency: Duration::from_secs(1),
                target: 0.7,
                capacity: 40,
                shifted: None,
            }),
        },
    };
    assert!(shrink.respects_cooldown());
}

#[test]
fn a_cooldown_hold_is_reported() {
    let mut f = Fixture::new();
    let obs = |capacity| {
        Observation::new().buffer(BufferObservation::new("b", capacity, 8, 1024).len(capacity))
    };
    let _ = f.decide(&obs(8), 0);
    let d = f.decide(&obs(12), 10);
    assert!(d.is_empty());
    assert_eq!(d.holds.len(), 1);
    assert_eq!(
        d.holds[0].to_string(),
        "buffer b: grow 12 -> 18 held by the cooldown, 20s left"
    );
    assert_eq!(
        d.to_string(),
        "buffer b: grow 12 -> 18 held by the cooldown, 20s left"
    );
}

#[test]
fn comparisons_are_true_as_printed() {
    let condition = |value, comparison, threshold_value| Condition {
        reading: Reading::Utilisation { pool: "p".into() },
        value,
        comparison,
        threshold: Threshold::LowUtilisation,
        threshold_value,
        held_for: None,
    };
    assert_eq!(
        condition(0.2999, Comparison::Below, 0.3).to_string(),
        "pool p utilisation 0.2999 < low 0.3000"
    );
    assert_eq!(
        condition(0.25, Comparison::Below, 0.3).to_string(),
        "pool p utilisation 0.25 < low 0.30"
    );
    assert_eq!(
        condition(0.70001, Comparison::Above, 0.7).to_string(),
        "pool p utilisation 0.70001 > low 0.70000"
    );
}

// ---- configuration ----

#[test]
fn config_errors_name_the_field_and_the_rule() {
    let cases: Vec<(PolicyConfig, &str, &str)> = vec![
        (
            PolicyConfig::default().memory_critical(1.5),
            "memory_critical",
            "must be in (0, 1]",
        ),
        (
            PolicyConfig::default().defensive_exit(0.9),
            "defensive_exit",
            "must be below memory_critical (0.9)",
        ),
        (
            PolicyConfig::default().psi_exit(30.0),
            "psi_exit",
            "must be below psi_critical (20)",
        ),
        (
            PolicyConfig::default().memory_caution(0.9),
            "memory_caution",
            "must be below memory_critical (0.9)",
        ),
        (
            PolicyConfig::default().low_saturation(0.6),
            "low_saturation",
            "must be below relief_saturation (0.5)",
        ),
        (
            PolicyConfig::default().relief_saturation(0.8),
            "relief_saturation",
            "must be at most target_saturation (0.7)",
        ),
        (
            PolicyConfig::default().growth_factor(1.0),
            "growth_factor",
            "must be above 1",
        ),
        (
            PolicyConfig::default().shrink_factor(0.4),
            "shrink_factor",
            "must be at least low_saturation / target_saturation (0.43)",
        ),
        (
            PolicyConfig::default().defensive_shrink_factor(1.0),
            "defensive_shrink_factor",
            "must be in (0, 1)",
        ),
        (
            PolicyConfig::default().buffer_budget(0.0),
            "buffer_budget",
            "must be in (0, 1]",
        ),
        (
            PolicyConfig::default().resize_tolerance(1.0),
            "resize_tolerance",
            "must be in [0, 1)",
        ),
        (
            PolicyConfig::default().rate_decrease_factor(1.0),
            "rate_decrease_factor",
            "must be in (0, 1)",
        ),
        (
            PolicyConfig::default().min_publish_rate(0.0),
            "min_publish_rate",
            "must be a finite number above 0",
        ),
        (
            PolicyConfig::default().rate_increase_step(0.0),
            "rate_increase_step",
            "must be in (0, 1]",
        ),
        (
            PolicyConfig::default().low_utilisation(0.7),
            "low_utilisation",
            "must be below target_utilisation (0.7)",
        ),
        (
            PolicyConfig::default().max_error_rate(-0.1),
            "max_error_rate",
            "must be in [0, 1]",
        ),
        (
            PolicyConfig::default().workers_per_core(f64::NAN),
            "workers_per_core",
            "must be a finite number above 0",
        ),
        (
            PolicyConfig::default().max_scale_up_step(0),
            "max_scale_up_step",
            "must be at least 1",
        ),
        (
            PolicyConfig::default().scale_down_step(0),
            "scale_down_step",
            "must be at least 1",
        ),
        (
            PolicyConfig::default().drain_time(Duration::ZERO),
            "drain_time",
            "must be above 0",
        ),
        (
            PolicyConfig::default().target_latency(Duration::ZERO),
            "target_latency",
            "must be above 0",
        ),
    ];
    let mut failures = Vec::new();
    for (config, field, rule) in cases {
        match config.validate() {
            Err(err) if err.field() == field && err.rule() == rule => {}
            other => failures.push(format!("{field}: expected {rule:?}, got {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(HysteresisPolicy::new(PolicyConfig::default().growth_factor(0.5)).is_err());
}
