//! The rules, one method each, in the order `decide` runs them. Each looks at the
//! observation, the plan so far and the policy's history, and pushes at most one action
//! per knob. `docs/controller.md` describes them with the scenarios that back them.

use std::time::Instant;

use super::decision::{Change, Comparison, Condition, Direction, Knob, Reading, Rule, Threshold};
use super::hysteresis::HysteresisPolicy;
use super::observation::{Observation, Overflow, PoolObservation};
use super::plan::{MemoryLevels, Plan, budget_bytes, cpu_cap, tolerance};

impl HysteresisPolicy {
    /// Limit: the buffers' bytes at capacity exceed the budget (the memory limit fell or
    /// events grew). Shrink every buffer by the same share so they fit, never below min.
    pub(crate) fn enforce_budget(&self, obs: &Observation, plan: &mut Plan) {
        let Some(budget) = budget_bytes(obs, &self.config) else {
            return;
        };
        let total = plan.buffer_bytes(obs);
        if total <= budget {
            return;
        }
        let limit = budget / self.config.buffer_budget;
        let condition = Condition {
            reading: Reading::BufferBytes,
            value: total / limit,
            comparison: Comparison::Above,
            threshold: Threshold::BufferBudget,
            threshold_value: self.config.buffer_budget,
            held_for: None,
        };
        let scale = budget / total;
        for (i, b) in obs.buffers.iter().enumerate() {
            let to = ((b.capacity as f64 * scale).floor() as usize).max(b.min);
            if to < b.capacity {
                let change = Change::ResizeBuffer {
                    name: b.name.clone(),
                    from: b.capacity,
                    to,
                };
                plan.push(i, change, Rule::OverBudget, vec![condition.clone()]);
            }
        }
    }

    /// Limit: the workers exceed the CPU cap (the CPU limit fell). Take workers from the
    /// least utilised pools first until the total fits, never below a min.
    pub(crate) fn enforce_cpu_cap(&self, obs: &Observation, plan: &mut Plan) {
        let Some(cap) = cpu_cap(obs, &self.config) else {
            return;
        };
        let total = plan.total_workers();
        if total <= cap {
            return;
        }
        let condition = Condition {
            reading: Reading::Workers,
            value: total as f64,
            comparison: Comparison::Above,
            threshold: Threshold::CpuCap,
            threshold_value: cap as f64,
            held_for: None,
        };
        // Idle workers are the cheapest to give up: least utilised pools first, then
        // those with the most workers above their minimum.
        let mut order: Vec<usize> = (0..obs.pools.len()).collect();
        order.sort_by(|&a, &b| {
            let (pa, pb) = (&obs.pools[a], &obs.pools[b]);
            pa.utilisation.total_cmp(&pb.utilisation).then_with(|| {
                let above = |i: usize, p: &PoolObservation| plan.workers[i].saturating_sub(p.min);
                above(b, pb).cmp(&above(a, pa))
            })
        });
        let mut excess = total - cap;
        for i in order {
            let p = &obs.pools[i];
            let cut = excess.min(p.workers.saturating_sub(floor(p)));
            if cut == 0 {
                continue;
            }
            let change = Change::ResizePool {
                name: p.name.clone(),
                from: p.workers,
                to: p.workers - cut,
            };
            if plan.push(i, change, Rule::CpuCap, vec![condition.clone()]) {
                excess -= cut;
            }
        }
    }

    /// Defensive, while memory is critical: every knob toward less memory, once per
    /// tick, cooldowns notwithstanding.
    pub(crate) fn defensive(&mut self, obs: &Observation, critical: &Condition, plan: &mut Plan) {
        let c = &self.config;
        let why = || vec![critical.clone()];
        // Halve rather than jump to min: publishers are throttled in the same tick, so
        // the buffers need not absorb the load, and a reading that falls back under the
        // critical level next tick leaves capacity to spare (memory-squeeze scenario).
        for (i, b) in obs.buffers.iter().enumerate() {
            if b.capacity > b.min {
                let halved = (b.capacity as f64 * c.defensive_shrink_factor).floor() as usize;
                let to = halved.min(b.capacity - 1).max(b.min);
                let change = Change::ResizeBuffer {
                    name: b.name.clone(),
                    from: b.capacity,
                    to,
                };
                plan.push(i, change, Rule::DefensiveShrink, why());
            }
        }

        let from = obs.publish_rate;
        let base = lowest(from, obs.observed_publish_rate);
        let to = base.map_or(c.min_publish_rate, |base| {
            (base * c.defensive_rate_factor).max(c.min_publish_rate)
        });
        if from.is_none_or(|from| to < from) {
            let change = Change::SetPublishRate { from, to: Some(to) };
            if plan.push(0, change, Rule::DefensiveThrottle, why()) {
                self.throttle_origin
                    .get_or_insert(obs.observed_publish_rate.or(from).unwrap_or(to));
            }
        }

        // Droppable subscriptions drop instead of holding memory; lossless ones keep
        // every event (their publishers are slowed instead).
        for (i, b) in obs.buffers.iter().enumerate() {
            if b.droppable && b.overflow == Overflow::Block {
                let change = Change::SetOverflow {
                    name: b.name.clone(),
                    from: Overflow::Block,
                    to: Overflow::DropOldest,
                };
                if plan.push(i, change, Rule::DefensiveDrop, why()) {
                    self.made_dropping.insert(b.name.clone());
                }
            }
        }

        for (i, p) in obs.pools.iter().enumerate() {
            if p.workers > p.min {
                let change = Change::ResizePool {
                    name: p.name.clone(),
                    from: p.workers,
                    to: p.workers - 1,
                };
                plan.push(i, change, Rule::DefensiveScaleDown, why());
            }
        }
    }

    /// Out of `Defensive`: buffers it switched to dropping go back to `Block`.
    pub(crate) fn restore_overflow(
        &mut self,
        obs: &Observation,
        conditions: Vec<Condition>,
        plan: &mut Plan,
    ) {
        for (i, b) in obs.buffers.iter().enumerate() {
            if !self.made_dropping.remove(&b.name) || !b.overflow.drops() {
                continue;
            }
            let change = Change::SetOverflow {
                name: b.name.clone(),
                from: b.overflow,
                to: Overflow::Block,
            };
            plan.push(i, change, Rule::RestoreOverflow, conditions.clone());
        }
    }

    /// Saturation: grow buffers above target whose growth fits. Returns the conditions
    /// for a throttle when a saturated buffer cannot grow (at its max, over the budget,
    /// or memory at caution) and is not draining; a buffer only waiting for its cooldown
    /// does not throttle.
    pub(crate) fn grow_buffers(
        &self,
        obs: &Observation,
        memory: &MemoryLevels,
        now: Instant,
        plan: &mut Plan,
    ) -> Option<Vec<Condition>> {
        let c = &self.config;
        let budget = budget_bytes(obs, c);
        let mut throttle = None;
        for (i, b) in obs.buffers.iter().enumerate() {
            let saturation = b.saturation();
            let knob = Knob::Buffer(b.name.clone());
            if saturation <= c.target_saturation || plan.changed(&knob) {
                continue;
            }
            let saturated = Condition {
                reading: Reading::Saturation {
                    buffer: b.name.clone(),
                },
                value: saturation,
                comparison: Comparison::Above,
                threshold: Threshold::TargetSaturation,
                threshold_value: c.target_saturation,
                held_for: None,
            };
            let step = tolerance(b.capacity, c);
            let mut to = ((b.capacity as f64 * c.growth_factor).ceil() as usize)
                .max(b.capacity + 1)
                .min(b.max);
            let mut over_budget = None;
            if let Some(budget) = budget.filter(|_| b.bytes_per_event > 0.0) {
                let others = plan.buffer_bytes(obs) - b.capacity as f64 * b.bytes_per_event;
                // After a resize every event buffered now sits in an older generation
                // until it drains, and the new one takes up to `to` more: the worst
                // case is `len + to`, not `to` (memory_squeeze_default_budget.yaml in
                // tests/scenarios showed buffers holding 2-3x their capacity when grown
                // by capacity alone).
                let affordable = ((budget - others) / b.bytes_per_event - b.len as f64)
                    .floor()
                    .max(0.0);
                if (to as f64) > affordable {
                    to = (affordable as usize).min(to);
                    let smallest = (b.capacity + step).min(b.max) as f64;
                    let limit = budget / c.buffer_budget;
                    over_budget = Some(Condition {
                        reading: Reading::BufferBytes,
                        value: (others + smallest * b.bytes_per_event) / limit,
                        comparison: Comparison::Above,
                        threshold: Threshold::BufferBudget,
                        threshold_value: c.buffer_budget,
                        held_for: None,
                    });
                }
            }
            let worth = to > b.capacity && (to - b.capacity >= step || to == b.max);
            let blocked = if let Some(caution) = memory.caution() {
                Some(caution)
            } else if worth {
                if self.cooled(&knob, Direction::Up, now) {
                    let change = Change::ResizeBuffer {
                        name: b.name.clone(),
                        from: b.capacity,
                        to,
                    };
                    plan.push(i, change, Rule::GrowBuffer, vec![saturated.clone()]);
                }
                None
            } else if b.capacity >= b.max {
                Some(Condition {
                    reading: Reading::Capacity {
                        buffer: b.name.clone(),
                    },
                    value: b.capacity as f64,
                    comparison: Comparison::AtOrAbove,
                    threshold: Threshold::MaxCapacity,
                    threshold_value: b.max as f64,
                    held_for: None,
                })
            } else {
                over_budget
            };
            // A buffer already draining (the rate is below what its consumers take) needs
            // no further cut: the saturation is the backlog of an earlier, higher rate.
            let previous = self.buffers.get(&b.name).and_then(|s| s.previous_len);
            let draining = !b.was_full() && previous.is_some_and(|previous| b.len < previous);
            if let (Some(blocked), None, false) = (blocked, &throttle, draining) {
                throttle = Some(vec![saturated, blocked]);
            }
        }
        throttle
    }

    /// Saturation: add workers to a pool above its target utilisation whose backlog is
    /// not shrinking, with few errors, memory below caution, within max and the CPU cap.
    /// The step brings utilisation to target (as the HPA), at most `max_scale_up_step`.
    pub(crate) fn scale_up(
        &self,
        obs: &Observation,
        memory: &MemoryLevels,
        now: Instant,
        plan: &mut Plan,
    ) {
        let c = &self.config;
        if memory.caution().is_some() {
            return;
        }
        let cap = cpu_cap(obs, c);
        // Pools with work waiting and no worker first: under the CPU cap, the room
        // left must go to the pool that cannot drain at all before one that is slow.
        let mut order: Vec<usize> = (0..obs.pools.len()).collect();
        order.sort_by_key(|&i| !starving(&obs.pools[i]));
        for i in order {
            let p = &obs.pools[i];
            let knob = Knob::Pool(p.name.clone());
            // A trend needs two ticks: the first sight of a pool only records its backlog.
            let Some(previous) = self.pools.get(&p.name).and_then(|s| s.previous_backlog) else {
                continue;
            };
            let busy = if p.workers == 0 {
                p.backlog > 0
            } else {
                p.utilisation > c.target_utilisation
            };
            if !busy
                || p.backlog < previous
                || p.error_rate >= c.max_error_rate
                || p.workers >= p.max
                || plan.changed(&knob)
                || !self.cooled(&knob, Direction::Up, now)
            {
                continue;
            }
            let wanted = if p.workers == 0 {
                1
            } else {
                (p.workers as f64 * p.utilisation / c.target_utilisation).ceil() as usize
            };
            let step = wanted
                .saturating_sub(p.workers)
                .clamp(1, c.max_scale_up_step);
            let mut to = (p.workers + step).min(p.max);
            if let Some(cap) = cap {
                to = to.min(p.workers + cap.saturating_sub(plan.total_workers()));
            }
            if to <= p.workers {
                continue;
            }
            let mut conditions = Vec::new();
            if p.workers > 0 {
                conditions.push(Condition {
                    reading: Reading::Utilisation {
                        pool: p.name.clone(),
                    },
                    value: p.utilisation,
                    comparison: Comparison::Above,
                    threshold: Threshold::TargetUtilisation,
                    threshold_value: c.target_utilisation,
                    held_for: None,
                });
            }
            conditions.push(Condition {
                reading: Reading::Backlog {
                    pool: p.name.clone(),
                },
                value: p.backlog as f64,
                comparison: Comparison::AtOrAbove,
                threshold: Threshold::PreviousBacklog,
                threshold_value: previous as f64,
                held_for: None,
            });
            let change = Change::ResizePool {
                name: p.name.clone(),
                from: p.workers,
                to,
            };
            plan.push(i, change, Rule::ScaleUp, conditions);
        }
    }

    /// Liveness at the CPU cap: a pool with work waiting and no worker (its minimum is
    /// 0, and it was idle when the others took the room) cannot scale up. Move one
    /// worker to it from the least utilised pool that can spare one: above its minimum,
    /// and above one if it has work waiting. The total stays at the cap.
    pub(crate) fn rebalance(
        &self,
        obs: &Observation,
        memory: &MemoryLevels,
        now: Instant,
        plan: &mut Plan,
    ) {
        let c = &self.config;
        let Some(cap) = cpu_cap(obs, c) else {
            return;
        };
        // The gates of `scale_up`, but for the cap: what it would not add, this does
        // not move either.
        if memory.caution().is_some() {
            return;
        }
        for (i, p) in obs.pools.iter().enumerate() {
            let knob = Knob::Pool(p.name.clone());
            if plan.workers[i] != 0
                || !starving(p)
                || p.error_rate >= c.max_error_rate
                || p.max == 0
                || plan.total_workers() < cap
                || plan.changed(&knob)
                || !self.cooled(&knob, Direction::Up, now)
            {
                continue;
            }
            let spare = |j: usize| {
                let d = &obs.pools[j];
                j != i
                    && plan.workers[j] > floor(d)
                    && !plan.changed(&Knob::Pool(d.name.clone()))
                    && self.cooled(&Knob::Pool(d.name.clone()), Direction::Down, now)
            };
            let Some(donor) = (0..obs.pools.len()).filter(|&j| spare(j)).min_by(|&a, &b| {
                let (pa, pb) = (&obs.pools[a], &obs.pools[b]);
                pa.utilisation
                    .total_cmp(&pb.utilisation)
                    .then_with(|| plan.workers[b].cmp(&plan.workers[a]))
            }) else {
                continue;
            };
            let at_cap = Condition {
                reading: Reading::Workers,
                value: plan.total_workers() as f64,
                comparison: Comparison::AtOrAbove,
                threshold: Threshold::CpuCap,
                threshold_value: cap as f64,
                held_for: None,
            };
            let waiting = Condition {
                reading: Reading::Backlog {
                    pool: p.name.clone(),
                },
                value: p.backlog as f64,
                comparison: Comparison::Above,
                threshold: Threshold::Zero,
                threshold_value: 0.0,
                held_for: None,
            };
            let d = &obs.pools[donor];
            let from = plan.workers[donor];
            let give = Change::ResizePool {
                name: d.name.clone(),
                from,
                to: from - 1,
            };
            let take = Change::ResizePool {
                name: p.name.clone(),
                from: 0,
                to: 1,
            };
            let why = vec![at_cap, waiting];
            plan.push(donor, give, Rule::Rebalance, why.clone());
            plan.push(i, take, Rule::Rebalance, why);
        }
    }

    /// Saturation that buffers cannot absorb: cut the publish rate (multiplicative
    /// decrease), starting from the lower of the limit and the demand, down to the floor.
    pub(crate) fn throttle(
        &mut self,
        obs: &Observation,
        conditions: Vec<Condition>,
        now: Instant,
        plan: &mut Plan,
    ) {
        let c = &self.config;
        if plan.changed(&Knob::PublishRate)
            || !self.cooled(&Knob::PublishRate, Direction::Down, now)
        {
            return;
        }
        let from = obs.publish_rate;
        let Some(base) = lowest(from, obs.observed_publish_rate) else {
            return;
        };
        let to = (base * c.rate_decrease_factor).max(c.min_publish_rate);
        // At the floor already, or a first limit that would not bind.
        if to >= from.unwrap_or(base) {
            return;
        }
        let change = Change::SetPublishRate { from, to: Some(to) };
        if plan.push(0, change, Rule::Throttle, conditions) {
            self.throttle_origin.get_or_insert(base);
            // The buffers saturated at `from`: raises will not go back there blindly.
            if let Some(from) = from {
                self.ceiling = Some((from, now));
            }
        }
    }

    /// Optimisation: pressure has been gone for a stabilisation window at the current
    /// rate (memory below caution, PSI below its exit level, every buffer below the
    /// relief saturation): raise the rate by a step of the demand when throttling began
    /// (additive increase), at most halfway to a recent ceiling, and lift it once it has
    /// reached the demand (publishers offer less than the limit, by the tolerance).
    pub(crate) fn raise_rate(&mut self, obs: &Observation, now: Instant, plan: &mut Plan) {
        let c = &self.config;
        let Some(rate) = obs.publish_rate else {
            return;
        };
        let Some(relief) = &self.relief else {
            return;
        };
        let held = now.saturating_duration_since(relief.since);
        if held < c.stabilisation_window
            || plan.changed(&Knob::PublishRate)
            || !self.cooled(&Knob::PublishRate, Direction::Up, now)
        {
            return;
        }
        let mut conditions = Vec::new();
        if let Some(buffer) = &relief.fullest {
            conditions.push(Condition {
                reading: Reading::Saturation {
                    buffer: buffer.clone(),
                },
                value: relief.peak,
                comparison: Comparison::Below,
                threshold: Threshold::ReliefSaturation,
                threshold_value: c.relief_saturation,
                held_for: Some(held),
            });
        }
        // A limit the policy did not set steps toward the demand it holds back.
        let origin = *self
            .throttle_origin
            .get_or_insert(obs.observed_publish_rate.map_or(rate, |d| d.max(rate)));
        let mut raised = rate + origin * c.rate_increase_step;
        if let Some((ceiling, at)) = self.ceiling {
            if now.saturating_duration_since(at) >= c.rate_ceiling_hold {
                self.ceiling = None;
            } else {
                // Bisect toward the rate that overshot; stop when the gap is too small.
                raised = raised.min((rate + ceiling) / 2.0);
                if raised - rate < rate * c.resize_tolerance {
                    return;
                }
            }
        }
        // Lift once the limit no longer binds: publishers offered clearly less than it.
        // (Without a demand reading: once the raise is back at the origin.)
        let unused = match obs.observed_publish_rate {
            Some(demand) => demand < rate * (1.0 - c.resize_tolerance),
            None => raised >= origin,
        };
        let to = if unused {
            conditions.push(Condition {
                reading: Reading::Demand,
                value: obs.observed_publish_rate.unwrap_or(origin),
                comparison: Comparison::Below,
                threshold: Threshold::PublishRate,
                threshold_value: rate,
                held_for: None,
            });
            None
        } else {
            Some(raised)
        };
        let change = Change::SetPublishRate {
            from: Some(rate),
            to,
        };
        plan.push(0, change, Rule::RaiseRate, conditions);
    }

    /// Optimisation: a buffer below its low saturation for a whole stabilisation window
    /// at its current capacity shrinks by `shrink_factor`, never below min.
    pub(crate) fn shrink_buffers(&self, obs: &Observation, now: Instant, plan: &mut Plan) {
        let c = &self.config;
        for (i, b) in obs.buffers.iter().enumerate() {
            let knob = Knob::Buffer(b.name.clone());
            let Some(state) = self.buffers.get(&b.name) else {
                continue;
            };
            let Some(since) = state.low_since else {
                continue;
            };
            let held = now.saturating_duration_since(since);
            if held < c.stabilisation_window
                || b.capacity <= b.min
                || plan.changed(&knob)
                || !self.cooled(&knob, Direction::Down, now)
            {
                continue;
            }
            let shrunk = (b.capacity as f64 * c.shrink_factor).round() as usize;
            let to = shrunk.min(b.capacity - 1).max(b.min);
            if b.capacity - to < tolerance(b.capacity, c) && to != b.min {
                continue;
            }
            let condition = Condition {
                reading: Reading::Saturation {
                    buffer: b.name.clone(),
                },
                value: state.low_peak,
                comparison: Comparison::Below,
                threshold: Threshold::LowSaturation,
                threshold_value: c.low_saturation,
                held_for: Some(held),
            };
            let change = Change::ResizeBuffer {
                name: b.name.clone(),
                from: b.capacity,
                to,
            };
            plan.push(i, change, Rule::ShrinkBuffer, vec![condition]);
        }
    }

    /// Optimisation: a pool whose every recommendation over a whole stabilisation
    /// window (at its current size) was below its worker count loses
    /// `scale_down_step` workers, not below the highest recommendation nor min, and
    /// only if the busiest utilisation of the window would stay below target with
    /// fewer workers (or the next tick would add them back).
    pub(crate) fn scale_down(&self, obs: &Observation, now: Instant, plan: &mut Plan) {
        let c = &self.config;
        for (i, p) in obs.pools.iter().enumerate() {
            let knob = Knob::Pool(p.name.clone());
            let Some(state) = self.pools.get(&p.name) else {
                continue;
            };
            let held = now.saturating_duration_since(state.since);
            let highest = state.samples.iter().map(|s| s.recommendation).max();
            let Some(highest) = highest else { continue };
            if held < c.stabilisation_window
                || highest >= p.workers
                || plan.changed(&knob)
                || !self.cooled(&knob, Direction::Down, now)
            {
                continue;
            }
            let to = p
                .workers
                .saturating_sub(c.scale_down_step)
                .max(highest)
                .max(p.min);
            let peak = state
                .samples
                .iter()
                .map(|s| s.utilisation)
                .fold(0.0, f64::max);
            let predicted = if to == 0 {
                if peak > 0.0 || p.backlog > 0 {
                    f64::INFINITY
                } else {
                    0.0
                }
            } else {
                peak * p.workers as f64 / to as f64
            };
            if to >= p.workers || predicted >= c.target_utilisation {
                continue;
            }
            let condition = Condition {
                reading: Reading::Utilisation {
                    pool: p.name.clone(),
                },
                value: peak,
                comparison: Comparison::Below,
                threshold: Threshold::LowUtilisation,
                threshold_value: c.low_utilisation,
                held_for: Some(held),
            };
            let change = Change::ResizePool {
                name: p.name.clone(),
                from: p.workers,
                to,
            };
            plan.push(i, change, Rule::ScaleDown, vec![condition]);
        }
    }
}

/// The lower of two optional rates, either if only one is known.
/// The fewest workers a rule that takes workers away may leave a pool: its minimum,
/// and one while it has work waiting (at zero its backlog would never drain, and
/// scale-up would bring the worker straight back).
fn floor(p: &PoolObservation) -> usize {
    if p.backlog > 0 { p.min.max(1) } else { p.min }
}

/// Work waiting and no worker to take it.
fn starving(p: &PoolObservation) -> bool {
    p.workers == 0 && p.backlog > 0
}

fn lowest(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
