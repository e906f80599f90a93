//! The rules, one method each, in the order `decide` runs them. Each looks at the
//! observation, the plan so far and the policy's history, and pushes at most one action
//! per knob. `docs/controller.md` describes them with the scenarios that back them.
//!
//! Pools and buffers have two sets of sizing rules. Once the queueing model has
//! readings for a stage (λ and S, see [`super::model`]) it sizes the pool and the
//! buffer: up to the model's count in one decision when even the low end of the
//! estimate's band calls for more, down to the highest recommendation over the
//! stabilisation window. Before that (a cold start, or a loop that does not measure
//! them) utilisation and saturation nudge them by steps, as in issue 5.

use std::time::{Duration, Instant};

use super::decision::{
    Change, Comparison, Condition, Direction, HoldCause, Knob, Reading, Rule, Sizing, Threshold,
};
use super::hysteresis::{HysteresisPolicy, capacities, clamp_workers, stage_view};
use super::model::{self, PoolView};
use super::observation::{BufferObservation, Observation, PoolObservation};
use super::plan::{MemoryLevels, Plan, budget_bytes, tolerance};
use pipeline_core::bus::OverflowPolicy;

/// Decisions in a row a buffer must be saturated, its stage not keeping up, before the
/// model's path grows it by `growth_factor`: one saturated tick is a Poisson burst.
pub(crate) const SUSTAINED_TICKS: u32 = 3;

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
        let condition = Condition::above(
            Reading::BufferBytes,
            total / limit,
            Threshold::BufferBudget,
            self.config.buffer_budget,
        );
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

    /// Limit: the workers exceed the CPU cap (the CPU limit fell, or a handler's CPU
    /// per event grew). Take workers from the least utilised pools first until they
    /// fit, never below a min, and never a pool's last worker while it has a backlog.
    pub(crate) fn enforce_cpu_cap(&self, obs: &Observation, plan: &mut Plan) {
        let Some(cpu) = plan.cpu.clone() else {
            return;
        };
        let mut excess = cpu.excess(&plan.workers);
        if excess <= 0.0 {
            return;
        }
        let condition = cpu.condition(&plan.workers, Comparison::Above);
        // Idle workers are the cheapest to give up: least busy pools first, then those
        // whose workers free the most CPU, then those with the most above their minimum.
        let mut order: Vec<usize> = (0..obs.pools.len()).collect();
        order.sort_by(|&a, &b| {
            let (pa, pb) = (&obs.pools[a], &obs.pools[b]);
            busy(plan, a, pa)
                .total_cmp(&busy(plan, b, pb))
                .then_with(|| cpu.relief(b).total_cmp(&cpu.relief(a)))
                .then_with(|| {
                    let above =
                        |i: usize, p: &PoolObservation| plan.workers[i].saturating_sub(p.min);
                    above(b, pb).cmp(&above(a, pa))
                })
        });
        // First the workers above what the model needs (cutting below it would only be
        // undone when room appears), then, if that is not enough, down to the floors.
        let mut to: Vec<usize> = plan.workers.clone();
        let mut cuts = Vec::new();
        for pass in 0..2 {
            for &i in &order {
                if excess <= 1e-9 {
                    break;
                }
                let p = &obs.pools[i];
                let keep = match (pass, plan.views[i]) {
                    (0, Some(view)) => clamp_workers(view.count(), p).max(floor(p)),
                    _ => floor(p),
                };
                let weight = cpu.relief(i);
                let need = model::ceil(excess / weight);
                let cut = need.min(to[i].saturating_sub(keep));
                if cut > 0 {
                    to[i] -= cut;
                    excess -= cut as f64 * weight;
                    cuts.push(i);
                }
            }
        }
        // Whole workers overshoot: hand back what still fits, the last cut first, so
        // the next scale-up finds no room to undo the cut with.
        for &i in cuts.iter().rev() {
            let weight = cpu.relief(i);
            if weight <= 0.0 || to[i] >= plan.workers[i] {
                continue;
            }
            let back = ((-excess) / weight + 1e-9).floor().max(0.0) as usize;
            let back = back.min(plan.workers[i] - to[i]);
            to[i] += back;
            excess += back as f64 * weight;
        }
        for i in order {
            let p = &obs.pools[i];
            if to[i] < p.workers {
                let change = Change::ResizePool {
                    name: p.name.clone(),
                    from: p.workers,
                    to: to[i],
                };
                plan.push(i, change, Rule::CpuCap, vec![condition.clone()]);
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
            if b.droppable && b.overflow == OverflowPolicy::Block {
                let change = Change::SetOverflow {
                    name: b.name.clone(),
                    from: OverflowPolicy::Block,
                    to: OverflowPolicy::DropOldest,
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
                to: OverflowPolicy::Block,
            };
            plan.push(i, change, Rule::RestoreOverflow, conditions.clone());
        }
    }

    /// Saturation and the model: grow buffers. With the model, a buffer grows to the
    /// capacity for λ when even the low end of λ's band calls for clearly more, or by
    /// `growth_factor` once it has stayed saturated for `SUSTAINED_TICKS` decisions
    /// while its stage cannot keep up. Without it, a buffer above target grows by
    /// `growth_factor`. Growth stops at max, at the budget and at memory caution.
    ///
    /// Returns the conditions for a throttle when a saturated buffer cannot grow (at
    /// its max, over the budget, or memory at caution) and is not draining: its stage's
    /// workers take fewer events than arrive (model), or its `len` did not fall
    /// (without). A buffer only waiting for its cooldown does not throttle.
    pub(crate) fn grow_buffers(
        &self,
        obs: &Observation,
        memory: &MemoryLevels,
        now: Instant,
        plan: &mut Plan,
    ) -> Option<Vec<Condition>> {
        let c = &self.config;
        let mut throttle = None;
        for (i, b) in obs.buffers.iter().enumerate() {
            let knob = Knob::Buffer(b.name.clone());
            if plan.changed(&knob) {
                continue;
            }
            let saturation = b.saturation();
            let saturated = saturation > c.target_saturation;
            let state = self.buffers.get(&b.name);
            let mut saturated_condition = Condition::above(
                Reading::Saturation {
                    buffer: b.name.clone(),
                },
                saturation,
                Threshold::TargetSaturation,
                c.target_saturation,
            );
            // What growth is wanted (target, conditions, sizing), and whether a saturated
            // buffer is draining anyway.
            let (growth, draining, keep_up) = match stage_view(obs, &plan.views, &b.name) {
                Some(view) => {
                    // Sized for what reaches the buffer: λ, at most the publish-rate limit.
                    let arrivals = admitted(view.arrival, obs);
                    let (low, mid) = capacities(&view, arrivals, b.min, b.max, c);
                    let step = model_tolerance(b.capacity, c);
                    let pool = stage_pool(obs, &b.name).expect("a view has a pool");
                    let service = view.service_rate(plan.workers[pool]);
                    let keeps_up = service > arrivals;
                    let keep_up = (!keeps_up).then(|| {
                        Condition::at_or_above(
                            Reading::Arrivals {
                                pool: b.name.clone(),
                            },
                            arrivals,
                            Threshold::ServiceRate,
                            service,
                        )
                    });
                    let level = self
                        .pools
                        .get(&b.name)
                        .map_or(0, |p| p.model.arrival.level());
                    let refining =
                        state.is_some_and(|s| s.refine_left > 0 && s.refine_level == level);
                    let (low1, _) = band(&view, arrivals, 1.0, b.min, b.max, c);
                    let clear = |to: usize| to.abs_diff(b.capacity) >= step;
                    let refine =
                        (mid < b.capacity && clear(mid)) || (low1 > b.capacity && clear(low1));
                    let sizing = capacity_sizing(arrivals, c);
                    if refining && refine {
                        if mid < b.capacity {
                            let change = Change::ResizeBuffer {
                                name: b.name.clone(),
                                from: b.capacity,
                                to: mid,
                            };
                            plan.push_sized(i, change, Rule::Refine, Vec::new(), Some(sizing));
                            continue;
                        }
                        let growth = (mid, Vec::new(), Some(sizing), Rule::Refine);
                        (Some(growth), keeps_up, keep_up)
                    } else if low > b.capacity
                        && (low - b.capacity >= step || low == b.max)
                        && band(
                            &view,
                            arrivals,
                            self.up_band(&b.name, false),
                            b.min,
                            b.max,
                            c,
                        )
                        .0 > b.capacity
                    {
                        // A fresh estimate lands one error low, as for pools.
                        let (to, sizing) = if view.firm {
                            (mid, sizing)
                        } else {
                            let to = low1.max(low);
                            let mut sizing = sizing;
                            if let Sizing::Capacity { shifted, .. } = &mut sizing {
                                let raw = band(&view, arrivals, 1.0, 0, usize::MAX, c).0;
                                *shifted = Some((-1.0, view.arrival_error, raw));
                            }
                            (to, sizing)
                        };
                        (
                            Some((to, Vec::new(), Some(sizing), Rule::GrowBuffer)),
                            keeps_up,
                            keep_up,
                        )
                    } else if saturated && !keeps_up {
                        let sustained = state.is_some_and(|s| s.saturated_ticks >= SUSTAINED_TICKS);
                        saturated_condition.held_for = state
                            .and_then(|s| s.saturated_since)
                            .map(|since| now.saturating_duration_since(since))
                            .filter(|held| !held.is_zero());
                        let growth = sustained.then(|| {
                            let to = grown(b, c.growth_factor);
                            let mut conditions = vec![saturated_condition.clone()];
                            conditions.extend(keep_up.clone());
                            (to, conditions, None, Rule::GrowBuffer)
                        });
                        (growth, false, keep_up)
                    } else {
                        (None, keeps_up, keep_up)
                    }
                }
                None => {
                    let previous = state.and_then(|s| s.previous_len);
                    let draining =
                        !b.was_full() && previous.is_some_and(|previous| b.len < previous);
                    let growth = saturated.then(|| {
                        let to = grown(b, c.growth_factor);
                        (
                            to,
                            vec![saturated_condition.clone()],
                            None,
                            Rule::GrowBuffer,
                        )
                    });
                    (growth, draining, None)
                }
            };

            let step = tolerance(b.capacity, c);
            let mut blocked = memory.caution();
            if blocked.is_none() {
                match growth {
                    Some((wanted, conditions, sizing, rule)) => {
                        let (to, over_budget) = self.affordable(obs, b, wanted.min(b.max), plan);
                        let worth = to > b.capacity && (to - b.capacity >= step || to == b.max);
                        if worth {
                            let change = Change::ResizeBuffer {
                                name: b.name.clone(),
                                from: b.capacity,
                                to,
                            };
                            let paced = sizing.is_none();
                            match self.cooldown_left(&knob, Direction::Up, now) {
                                Some(left) if paced => {
                                    plan.hold(change, rule, HoldCause::Cooldown { left })
                                }
                                _ => {
                                    plan.push_sized(i, change, rule, conditions, sizing);
                                }
                            }
                        } else if b.capacity >= b.max {
                            blocked = Some(at_max(b));
                        } else {
                            blocked = over_budget;
                        }
                    }
                    None if b.capacity >= b.max => blocked = Some(at_max(b)),
                    None => {}
                }
            }
            if let (true, false, Some(blocked), None) = (saturated, draining, blocked, &throttle) {
                let mut conditions = vec![saturated_condition, blocked];
                conditions.extend(keep_up);
                throttle = Some(conditions);
            }
        }
        throttle
    }

    /// The capacity up to `wanted` that fits the memory budget, and the budget
    /// condition when it does not all fit.
    fn affordable(
        &self,
        obs: &Observation,
        b: &BufferObservation,
        wanted: usize,
        plan: &Plan,
    ) -> (usize, Option<Condition>) {
        let c = &self.config;
        let Some(budget) = budget_bytes(obs, c).filter(|_| b.bytes_per_event > 0.0) else {
            return (wanted, None);
        };
        let others = plan.buffer_bytes(obs) - b.capacity as f64 * b.bytes_per_event;
        // After a resize every event buffered now sits in an older generation until it
        // drains, and the new one takes up to `to` more: the worst case is `len + to`,
        // not `to` (memory_squeeze_default_budget.yaml in tests/scenarios showed buffers
        // holding 2-3x their capacity when grown by capacity alone).
        let affordable = ((budget - others) / b.bytes_per_event - b.len as f64)
            .floor()
            .max(0.0);
        if (wanted as f64) <= affordable {
            return (wanted, None);
        }
        let step = tolerance(b.capacity, c);
        let smallest = (b.capacity + step).min(b.max) as f64;
        let limit = budget / c.buffer_budget;
        let condition = Condition::above(
            Reading::BufferBytes,
            (others + smallest * b.bytes_per_event) / limit,
            Threshold::BufferBudget,
            c.buffer_budget,
        );
        ((affordable as usize).min(wanted), Some(condition))
    }

    /// Saturation and the model: add workers. With the model, a pool whose count at the
    /// low end of the estimate's band is above its workers goes to the model's count in
    /// one decision, and for `REFINE_TICKS` decisions after follows it either way.
    /// Without, a pool above its target utilisation whose backlog is not shrinking gains
    /// workers toward target (as the HPA), at most `max_scale_up_step`. Either way: few
    /// errors, memory below caution, within max and the CPU cap.
    pub(crate) fn scale_up(
        &self,
        obs: &Observation,
        memory: &MemoryLevels,
        now: Instant,
        plan: &mut Plan,
    ) {
        if memory.caution().is_some() {
            return;
        }
        // Pools with work waiting and no worker first: under the CPU cap, the room
        // left must go to the pool that cannot drain at all before one that is slow.
        let mut order: Vec<usize> = (0..obs.pools.len()).collect();
        order.sort_by_key(|&i| !starving(&obs.pools[i]));
        for i in order {
            let p = &obs.pools[i];
            if plan.changed(&Knob::Pool(p.name.clone()))
                || p.error_rate >= self.config.max_error_rate
            {
                continue;
            }
            match plan.views[i] {
                Some(view) => self.scale_to_model(obs, i, p, &view, plan),
                None => self.scale_up_by_utilisation(i, p, now, plan),
            }
        }
    }

    fn scale_to_model(
        &self,
        obs: &Observation,
        i: usize,
        p: &PoolObservation,
        view: &PoolView,
        plan: &mut Plan,
    ) {
        // Refinement corrects the landing on the level the scale-up was sized for; a
        // new level (the load changed) goes by the band and the window instead.
        let refining = self
            .pools
            .get(&p.name)
            .is_some_and(|s| s.refine_left > 0 && s.refine_level == s.model.arrival.level());
        // Refining: down to the count half an error up when even that is below the
        // count (an overshoot), up to the model's count when one error down is above.
        let count = clamp_workers(view.count(), p);
        let high = clamp_workers(view.count_at(0.5), p);
        let low1 = clamp_workers(view.count_at(-1.0), p);
        let (rule, mut to, shift) = if refining && high < p.workers {
            (Rule::Refine, high, 0.5)
        } else if refining && low1 > p.workers {
            (Rule::Refine, count, 0.0)
        } else if view.needs_more(self.up_band(&p.name, true), p.workers) && count > p.workers {
            // A fresh estimate (the first readings after a step) lands one error low
            // and the refinement raises it: overshoot costs a window, undershoot a tick.
            if view.firm {
                (Rule::ScaleUp, count, 0.0)
            } else {
                (Rule::ScaleUp, low1.max(p.workers + 1), -1.0)
            }
        } else {
            return;
        };
        let mut sizing = self.worker_sizing(view);
        if let Sizing::Workers { shifted, .. } = &mut sizing {
            let raw = view.count_at(shift);
            if shift != 0.0 && raw != view.count() {
                *shifted = Some((shift, view.load_error, raw));
            }
        }
        let mut conditions = Vec::new();
        if to > p.workers {
            // Room under the CPU cap, less one worker for each other pool with work
            // waiting and no worker: it cannot drain at all, this one only slowly.
            let room = match &plan.cpu {
                Some(cpu) => {
                    let mut reserved = plan.workers.clone();
                    for (j, other) in obs.pools.iter().enumerate() {
                        if j != i && plan.workers[j] == 0 && starving(other) && other.max > 0 {
                            reserved[j] = 1;
                        }
                    }
                    cpu.room(&reserved, i)
                }
                None => usize::MAX,
            };
            let allowed = p.workers.saturating_add(room);
            if allowed < to {
                to = allowed;
                if let Some(cpu) = &plan.cpu {
                    let mut after = plan.workers.clone();
                    after[i] = to;
                    conditions.push(cpu.condition(&after, Comparison::AtOrBelow));
                }
            }
        }
        if to == p.workers {
            return;
        }
        let change = Change::ResizePool {
            name: p.name.clone(),
            from: p.workers,
            to,
        };
        plan.push_sized(i, change, rule, conditions, Some(sizing));
    }

    fn scale_up_by_utilisation(
        &self,
        i: usize,
        p: &PoolObservation,
        now: Instant,
        plan: &mut Plan,
    ) {
        let c = &self.config;
        let knob = Knob::Pool(p.name.clone());
        // A trend needs two ticks: the first sight of a pool only records its backlog.
        let Some(previous) = self.pools.get(&p.name).and_then(|s| s.previous_backlog) else {
            return;
        };
        let busy = if p.workers == 0 {
            p.backlog > 0
        } else {
            p.utilisation > c.target_utilisation
        };
        if !busy || p.backlog < previous || p.workers >= p.max {
            return;
        }
        let wanted = if p.workers == 0 {
            1
        } else {
            (p.workers as f64 * p.utilisation / c.target_utilisation).ceil() as usize
        };
        let step = wanted
            .saturating_sub(p.workers)
            .clamp(1, c.max_scale_up_step);
        let to = (p.workers + step)
            .min(p.max)
            .min(p.workers.saturating_add(plan.cpu_room(i)));
        if to <= p.workers {
            return;
        }
        let change = Change::ResizePool {
            name: p.name.clone(),
            from: p.workers,
            to,
        };
        if let Some(left) = self.cooldown_left(&knob, Direction::Up, now) {
            plan.hold(change, Rule::ScaleUp, HoldCause::Cooldown { left });
            return;
        }
        let mut conditions = Vec::new();
        if p.workers > 0 {
            conditions.push(Condition::above(
                Reading::Utilisation {
                    pool: p.name.clone(),
                },
                p.utilisation,
                Threshold::TargetUtilisation,
                c.target_utilisation,
            ));
        }
        conditions.push(Condition::at_or_above(
            Reading::Backlog {
                pool: p.name.clone(),
            },
            p.backlog as f64,
            Threshold::PreviousBacklog,
            previous as f64,
        ));
        plan.push(i, change, Rule::ScaleUp, conditions);
    }

    /// Liveness at the CPU cap: a pool with work waiting and no worker (its minimum is
    /// 0, and it was idle when the others took the room) cannot scale up. Move one
    /// worker to it from the least utilised pool that can spare one: above its minimum,
    /// and above one if it has work waiting. The workers stay within the cap.
    pub(crate) fn rebalance(
        &self,
        obs: &Observation,
        memory: &MemoryLevels,
        now: Instant,
        plan: &mut Plan,
    ) {
        let c = &self.config;
        let Some(cpu) = plan.cpu.clone() else {
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
                || plan.cpu_room(i) > 0
                || plan.changed(&knob)
                || !self.cooled(&knob, Direction::Up, now)
            {
                continue;
            }
            let fits = |j: usize| {
                let mut after = plan.workers.clone();
                after[j] -= 1;
                after[i] += 1;
                cpu.plain() || cpu.excess(&after) <= 0.0
            };
            let spare = |j: usize| {
                let d = &obs.pools[j];
                j != i
                    && plan.workers[j] > floor(d)
                    && !plan.changed(&Knob::Pool(d.name.clone()))
                    && self.cooled(&Knob::Pool(d.name.clone()), Direction::Down, now)
                    && fits(j)
            };
            let Some(donor) = (0..obs.pools.len()).filter(|&j| spare(j)).min_by(|&a, &b| {
                let (pa, pb) = (&obs.pools[a], &obs.pools[b]);
                busy(plan, a, pa)
                    .total_cmp(&busy(plan, b, pb))
                    .then_with(|| plan.workers[b].cmp(&plan.workers[a]))
            }) else {
                continue;
            };
            let at_cap = if cpu.plain() {
                cpu.condition(&plan.workers, Comparison::AtOrAbove)
            } else {
                // One more worker of this pool would not fit.
                let mut after = plan.workers.clone();
                after[i] += 1;
                cpu.condition(&after, Comparison::Above)
            };
            let waiting = Condition::above(
                Reading::Backlog {
                    pool: p.name.clone(),
                },
                p.backlog as f64,
                Threshold::Zero,
                0.0,
            );
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
            conditions.push(
                Condition::below(
                    Reading::Saturation {
                        buffer: buffer.clone(),
                    },
                    relief.peak,
                    Threshold::ReliefSaturation,
                    c.relief_saturation,
                )
                .held_for(held),
            );
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
            conditions.push(Condition::below(
                Reading::Demand,
                obs.observed_publish_rate.unwrap_or(origin),
                Threshold::PublishRate,
                rate,
            ));
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

    /// Optimisation: shrink buffers. With the model, a buffer whose every capacity
    /// recommendation over a whole stabilisation window (at its current capacity) was
    /// clearly below it shrinks to the highest of them and the current one in one
    /// decision. Without, a buffer below its low saturation for the window shrinks by
    /// `shrink_factor`. Never below min.
    pub(crate) fn shrink_buffers(&self, obs: &Observation, now: Instant, plan: &mut Plan) {
        let c = &self.config;
        for (i, b) in obs.buffers.iter().enumerate() {
            let knob = Knob::Buffer(b.name.clone());
            let Some(state) = self.buffers.get(&b.name) else {
                continue;
            };
            if plan.changed(&knob) || b.capacity <= b.min {
                continue;
            }
            if let Some(view) = stage_view(obs, &plan.views, &b.name) {
                let arrivals = admitted(view.arrival, obs);
                let (_, mid) = capacities(&view, arrivals, b.min, b.max, c);
                let step = model_tolerance(b.capacity, c);
                let worth = |to: usize| to < b.capacity && (b.capacity - to >= step || to == b.min);
                let highest = state
                    .samples
                    .iter()
                    .map(|s| s.1)
                    .max()
                    .unwrap_or(b.capacity);
                let to = highest.max(mid);
                let held = now.saturating_duration_since(state.since);
                let change = |to| Change::ResizeBuffer {
                    name: b.name.clone(),
                    from: b.capacity,
                    to,
                };
                if !worth(to) {
                    if worth(mid) {
                        // A higher recommendation within the window holds it.
                        let left = state
                            .samples
                            .iter()
                            .filter(|s| !worth(s.1.max(mid)))
                            .map(|s| (s.0 + c.stabilisation_window).saturating_duration_since(now))
                            .max()
                            .unwrap_or_default()
                            .max(c.stabilisation_window.saturating_sub(held));
                        plan.hold(change(mid), Rule::ShrinkBuffer, HoldCause::Window { left });
                    }
                    continue;
                }
                if held < c.stabilisation_window {
                    let left = c.stabilisation_window - held;
                    plan.hold(change(to), Rule::ShrinkBuffer, HoldCause::Window { left });
                    continue;
                }
                if let Some(left) = self.cooldown_left(&knob, Direction::Down, now) {
                    plan.hold(change(to), Rule::ShrinkBuffer, HoldCause::Cooldown { left });
                    continue;
                }
                let condition = Condition::below(
                    Reading::RecommendedCapacity {
                        buffer: b.name.clone(),
                    },
                    to as f64,
                    Threshold::CurrentCapacity,
                    b.capacity as f64,
                )
                .held_for(held);
                let sizing = capacity_sizing(arrivals, c);
                plan.push_sized(
                    i,
                    change(to),
                    Rule::ShrinkBuffer,
                    vec![condition],
                    Some(sizing),
                );
                continue;
            }
            let Some(since) = state.low_since else {
                continue;
            };
            let held = now.saturating_duration_since(since);
            if held < c.stabilisation_window || !self.cooled(&knob, Direction::Down, now) {
                continue;
            }
            let shrunk = (b.capacity as f64 * c.shrink_factor).round() as usize;
            let to = shrunk.min(b.capacity - 1).max(b.min);
            if b.capacity - to < tolerance(b.capacity, c) && to != b.min {
                continue;
            }
            let condition = Condition::below(
                Reading::Saturation {
                    buffer: b.name.clone(),
                },
                state.low_peak,
                Threshold::LowSaturation,
                c.low_saturation,
            )
            .held_for(held);
            let change = Change::ResizeBuffer {
                name: b.name.clone(),
                from: b.capacity,
                to,
            };
            plan.push(i, change, Rule::ShrinkBuffer, vec![condition]);
        }
    }

    /// Optimisation: remove workers. With the model, a pool goes down to the highest of
    /// its recommendations over a whole stabilisation window (at its current size) and
    /// the model's count now, in one decision, as the HPA. Without, a pool whose every
    /// recommendation over the window was below its worker count loses
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
            if plan.changed(&knob) {
                continue;
            }
            let held = now.saturating_duration_since(state.since);
            let highest = state.samples.iter().map(|s| s.recommendation).max();
            let Some(highest) = highest else { continue };
            let change = |to| Change::ResizePool {
                name: p.name.clone(),
                from: p.workers,
                to,
            };
            if let Some(view) = plan.views[i] {
                // The HPA's rule: the highest of the model's counts over the window,
                // kept across changes of the count, so a step down that passes through
                // an intermediate count still ends one window after the load fell. The
                // window is the hysteresis: no cooldown on top of it.
                let held = state
                    .modelled_since
                    .map_or(Duration::ZERO, |since| now.saturating_duration_since(since));
                let now_count = clamp_workers(view.count(), p);
                let to = highest.max(now_count);
                if to >= p.workers {
                    if now_count < p.workers {
                        // A higher recommendation within the window holds the workers.
                        let left = state
                            .samples
                            .iter()
                            .filter(|s| s.recommendation >= p.workers)
                            .map(|s| (s.at + c.stabilisation_window).saturating_duration_since(now))
                            .max()
                            .unwrap_or_default()
                            .max(c.stabilisation_window.saturating_sub(held));
                        plan.hold(
                            change(now_count),
                            Rule::ScaleDown,
                            HoldCause::Window { left },
                        );
                    }
                    continue;
                }
                if held < c.stabilisation_window {
                    let left = c.stabilisation_window - held;
                    plan.hold(change(to), Rule::ScaleDown, HoldCause::Window { left });
                    continue;
                }
                let condition = Condition::below(
                    Reading::RecommendedWorkers {
                        pool: p.name.clone(),
                    },
                    to as f64,
                    Threshold::Workers,
                    p.workers as f64,
                )
                // The samples span the window (they may predate the count).
                .held_for(held.min(c.stabilisation_window));
                let sizing = self.worker_sizing(&view);
                plan.push_sized(
                    i,
                    change(to),
                    Rule::ScaleDown,
                    vec![condition],
                    Some(sizing),
                );
                continue;
            }
            if held < c.stabilisation_window
                || highest >= p.workers
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
            let condition = Condition::below(
                Reading::Utilisation {
                    pool: p.name.clone(),
                },
                peak,
                Threshold::LowUtilisation,
                c.low_utilisation,
            )
            .held_for(held);
            plan.push(i, change(to), Rule::ScaleDown, vec![condition]);
        }
    }

    /// The band (in errors) growth by the model needs: `Z`, or `Z_REVERSE` when the
    /// knob's last change was down.
    fn up_band(&self, name: &str, pool: bool) -> f64 {
        let knob = if pool {
            Knob::Pool(name.to_string())
        } else {
            Knob::Buffer(name.to_string())
        };
        let last_down = self
            .knobs
            .get(&knob)
            .is_some_and(|h| h.down.is_some_and(|down| h.up.is_none_or(|up| down > up)));
        if last_down {
            model::Z_REVERSE
        } else {
            model::Z
        }
    }

    /// How long `knob` must still wait to turn in `direction`, `None` if it may now.
    pub(crate) fn cooldown_left(
        &self,
        knob: &Knob,
        direction: Direction,
        now: Instant,
    ) -> Option<Duration> {
        let last = self.knobs.get(knob).and_then(|h| match direction {
            Direction::Up => h.up,
            Direction::Down => h.down,
        })?;
        let since = now.saturating_duration_since(last);
        (since < self.config.cooldown).then(|| self.config.cooldown - since)
    }

    /// The model's sizing of a pool, for its reason.
    fn worker_sizing(&self, view: &PoolView) -> Sizing {
        let c = &self.config;
        Sizing::Workers {
            arrival_rate: view.arrival,
            service_time: Duration::from_secs_f64(view.service.max(0.0)),
            target: c.target_utilisation,
            for_load: view.for_load,
            target_wait: c.target_wait,
            for_wait: view.for_wait,
            backlog: view.backlog,
            drain_time: c.drain_time,
            for_drain: view.for_drain,
            shifted: None,
        }
    }
}

/// The model's sizing of a buffer for `arrivals`, for its reason.
fn capacity_sizing(arrivals: f64, c: &super::config::PolicyConfig) -> Sizing {
    Sizing::Capacity {
        arrival_rate: arrivals,
        latency: c.target_latency,
        target: c.target_saturation,
        capacity: model::capacity_for(arrivals, c),
        shifted: None,
    }
}

/// The model's capacities with `arrivals` moved `z` of λ's errors down and up, within
/// `[min, max]`.
fn band(
    view: &PoolView,
    arrivals: f64,
    z: f64,
    min: usize,
    max: usize,
    c: &super::config::PolicyConfig,
) -> (usize, usize) {
    let clamp = |k: usize| k.max(min).min(max.max(min));
    let at = |z: f64| {
        let arrival = arrivals * (1.0 + z * view.arrival_error).max(0.0);
        clamp(model::capacity_for(arrival, c))
    };
    (at(-z), at(z))
}

/// The smallest capacity change the model makes: twice the tolerance band, since a
/// capacity needs no precision and the first readings after a step are ~6% off.
fn model_tolerance(capacity: usize, c: &super::config::PolicyConfig) -> usize {
    ((capacity as f64 * 2.0 * c.resize_tolerance).ceil() as usize).max(1)
}

/// The capacity one growth step reaches: `capacity x factor`, at least one slot more.
fn grown(b: &BufferObservation, factor: f64) -> usize {
    ((b.capacity as f64 * factor).ceil() as usize).max(b.capacity + 1)
}

fn at_max(b: &BufferObservation) -> Condition {
    Condition::at_or_above(
        Reading::Capacity {
            buffer: b.name.clone(),
        },
        b.capacity as f64,
        Threshold::MaxCapacity,
        b.max as f64,
    )
}

/// The index of the pool draining the buffer `name` (same name).
fn stage_pool(obs: &Observation, name: &str) -> Option<usize> {
    obs.pools.iter().position(|p| p.name == name)
}

/// The events per second that reach a stage: λ, at most the publish-rate limit.
pub(crate) fn admitted(arrival: f64, obs: &Observation) -> f64 {
    obs.publish_rate
        .map_or(arrival, |limit| arrival.min(limit.max(0.0)))
}

/// The fewest workers a rule that takes workers away may leave a pool: its minimum,
/// and one while it has work waiting (at zero its backlog would never drain, and
/// scale-up would bring the worker straight back).
fn floor(p: &PoolObservation) -> usize {
    if p.backlog > 0 { p.min.max(1) } else { p.min }
}

/// How busy a pool is: the model's utilisation at its current workers (`λS / c`, at
/// most 1) when it has readings, else the measured utilisation.
fn busy(plan: &Plan, i: usize, p: &PoolObservation) -> f64 {
    match plan.views[i] {
        Some(view) if p.workers > 0 => (view.arrival * view.service / p.workers as f64).min(1.0),
        Some(view) => {
            if view.arrival > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        None => p.utilisation,
    }
}

/// Work waiting and no worker to take it.
fn starving(p: &PoolObservation) -> bool {
    p.workers == 0 && p.backlog > 0
}

/// The lower of two optional rates, either if only one is known.
fn lowest(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
