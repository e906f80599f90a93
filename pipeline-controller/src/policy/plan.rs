//! The working state of one decision: the actions so far and the knob values they
//! leave, so later rules see what earlier ones did; what the model says about each
//! pool; the CPU cap. Plus the memory readings and the small sums every rule needs.

use std::collections::BTreeSet;

use super::config::PolicyConfig;
use super::decision::{
    Action, Change, Comparison, Condition, Hold, HoldCause, Knob, Reading, Reason, Rule, Sizing,
    Threshold,
};
use super::model::PoolView;
use super::observation::Observation;

/// Actions of one decision; each knob changes at most once, the first (highest-priority)
/// rule to touch it wins.
pub(crate) struct Plan {
    pub(crate) actions: Vec<Action>,
    changed: BTreeSet<Knob>,
    /// Capacities after the actions so far, in `obs.buffers` order.
    pub(crate) capacities: Vec<usize>,
    /// Worker counts after the actions so far, in `obs.pools` order.
    pub(crate) workers: Vec<usize>,
    /// The publish rate after the actions so far.
    pub(crate) rate: Option<f64>,
    /// What the queueing model says about each pool (`None`: no λ and S yet), in
    /// `obs.pools` order.
    pub(crate) views: Vec<Option<PoolView>>,
    /// The CPU cap, `None` without a CPU limit.
    pub(crate) cpu: Option<CpuCap>,
    /// Changes held back by a cooldown or a window.
    pub(crate) holds: Vec<Hold>,
}

impl Plan {
    pub(crate) fn new(
        obs: &Observation,
        views: Vec<Option<PoolView>>,
        config: &PolicyConfig,
    ) -> Plan {
        let cpu = CpuCap::new(obs, &views, config);
        Plan {
            actions: Vec::new(),
            changed: BTreeSet::new(),
            capacities: obs.buffers.iter().map(|b| b.capacity).collect(),
            workers: obs.pools.iter().map(|p| p.workers).collect(),
            rate: obs.publish_rate,
            views,
            cpu,
            holds: Vec::new(),
        }
    }

    pub(crate) fn changed(&self, knob: &Knob) -> bool {
        self.changed.contains(knob)
    }

    /// Adds an action unless its knob already changed in this decision. `index` is the
    /// buffer's or pool's position in the observation (ignored for the publish rate).
    pub(crate) fn push(
        &mut self,
        index: usize,
        change: Change,
        rule: Rule,
        conditions: Vec<Condition>,
    ) -> bool {
        self.push_sized(index, change, rule, conditions, None)
    }

    /// [`push`](Self::push), with how the model sized the change.
    pub(crate) fn push_sized(
        &mut self,
        index: usize,
        change: Change,
        rule: Rule,
        conditions: Vec<Condition>,
        sizing: Option<Sizing>,
    ) -> bool {
        if !self.changed.insert(change.knob()) {
            return false;
        }
        match &change {
            Change::ResizeBuffer { to, .. } => self.capacities[index] = *to,
            Change::ResizePool { to, .. } => self.workers[index] = *to,
            Change::SetPublishRate { to, .. } => self.rate = *to,
            Change::SetOverflow { .. } => {}
        }
        self.actions.push(Action {
            change,
            reason: Reason {
                rule,
                conditions,
                sizing,
            },
        });
        true
    }

    /// Records a change held back (the first hold per knob; none once it changed).
    pub(crate) fn hold(&mut self, change: Change, rule: Rule, cause: HoldCause) {
        let knob = change.knob();
        if self.changed(&knob) || self.holds.iter().any(|h| h.change.knob() == knob) {
            return;
        }
        self.holds.push(Hold {
            change,
            rule,
            cause,
            new: true,
        });
    }

    /// Workers pool `index` may add under the CPU cap at the planned counts
    /// (`usize::MAX` without a cap).
    pub(crate) fn cpu_room(&self, index: usize) -> usize {
        self.cpu
            .as_ref()
            .map_or(usize::MAX, |cpu| cpu.room(&self.workers, index))
    }

    /// Bytes all buffers hold when full, at the planned capacities.
    pub(crate) fn buffer_bytes(&self, obs: &Observation) -> f64 {
        obs.buffers
            .iter()
            .zip(&self.capacities)
            .map(|(b, &capacity)| capacity as f64 * b.bytes_per_event)
            .sum()
    }
}

/// Memory share and pressure against the configured levels (copied, so the policy's
/// state stays free to change while rules consult them).
pub(crate) struct MemoryLevels {
    pub(crate) share: Option<f64>,
    pub(crate) psi: Option<f64>,
    critical: f64,
    psi_critical: f64,
    exit: f64,
    psi_exit: f64,
    caution: f64,
}

impl MemoryLevels {
    pub(crate) fn new(obs: &Observation, config: &PolicyConfig) -> Self {
        MemoryLevels {
            share: obs.memory.share(),
            psi: obs.memory.psi_some_avg10,
            critical: config.memory_critical,
            psi_critical: config.psi_critical,
            exit: config.defensive_exit,
            psi_exit: config.psi_exit,
            caution: config.memory_caution,
        }
    }

    /// The reading at or above its critical level, if any (memory share first).
    pub(crate) fn critical(&self) -> Option<Condition> {
        if let Some(share) = self.share.filter(|&s| s >= self.critical) {
            return Some(memory_condition(
                share,
                Comparison::AtOrAbove,
                Threshold::MemoryCritical,
                self.critical,
            ));
        }
        self.psi.filter(|&p| p >= self.psi_critical).map(|psi| {
            Condition::at_or_above(
                Reading::Pressure,
                psi,
                Threshold::PsiCritical,
                self.psi_critical,
            )
        })
    }

    /// Whether memory and pressure are both below their exit levels (unknown ones
    /// count as below).
    pub(crate) fn below_exit(&self) -> bool {
        self.share.is_none_or(|s| s < self.exit) && self.calm()
    }

    /// Memory at or above the caution level, if it is.
    pub(crate) fn caution(&self) -> Option<Condition> {
        self.share.filter(|&s| s >= self.caution).map(|share| {
            memory_condition(
                share,
                Comparison::AtOrAbove,
                Threshold::MemoryCaution,
                self.caution,
            )
        })
    }

    /// Whether pressure is below its exit level (or unknown).
    pub(crate) fn calm(&self) -> bool {
        self.psi.is_none_or(|p| p < self.psi_exit)
    }
}

pub(crate) fn memory_condition(
    share: f64,
    comparison: Comparison,
    threshold: Threshold,
    threshold_value: f64,
) -> Condition {
    Condition::compare(
        Reading::Memory,
        share,
        comparison,
        threshold,
        threshold_value,
    )
}

/// Bytes the buffers may hold together, `None` without a memory limit.
pub(crate) fn budget_bytes(obs: &Observation, config: &PolicyConfig) -> Option<f64> {
    obs.memory
        .limit_bytes
        .filter(|&limit| limit > 0)
        .map(|limit| limit as f64 * config.buffer_budget)
}

/// The CPU cap. Each worker counts as the share of a core it uses when busy: measured
/// (`cpu_per_event / service_time`, between 1% and 1) where the model has both,
/// otherwise `1 / workers_per_core`. The workers' cores, all busy, must stay within the
/// CPU limit (plus `resize_tolerance` of the measured part). At the model's count that
/// is the CPU demand `λ x cpu_per_event` within `cpu limit x target_utilisation`. With
/// no CPU measured anywhere this is the plain rule, `floor(cores x workers_per_core)`
/// workers across all pools.
#[derive(Debug, Clone)]
pub(crate) struct CpuCap {
    cores: f64,
    /// Cores one worker of each pool counts for, in `obs.pools` order.
    weights: Vec<f64>,
    /// Whether each weight was measured.
    measured: Vec<bool>,
    /// `floor(cores x workers_per_core)`, the cap when nothing was measured.
    count: usize,
    resize_tolerance: f64,
}

impl CpuCap {
    fn new(obs: &Observation, views: &[Option<PoolView>], config: &PolicyConfig) -> Option<CpuCap> {
        let cores = obs
            .cpu_limit_cores
            .filter(|cores| cores.is_finite() && *cores >= 0.0)?;
        let share = views
            .iter()
            .map(|v| v.and_then(|v| v.cpu_share))
            .collect::<Vec<_>>();
        Some(CpuCap {
            cores,
            weights: share
                .iter()
                .map(|s| s.unwrap_or(1.0 / config.workers_per_core))
                .collect(),
            measured: share.iter().map(Option::is_some).collect(),
            count: (cores * config.workers_per_core).floor() as usize,
            resize_tolerance: config.resize_tolerance,
        })
    }

    /// Whether no pool's CPU was measured (then the cap is a worker count).
    pub(crate) fn plain(&self) -> bool {
        !self.measured.iter().any(|&m| m)
    }

    /// Cores the workers would use all busy.
    pub(crate) fn used(&self, workers: &[usize]) -> f64 {
        workers
            .iter()
            .zip(&self.weights)
            .map(|(&w, &c)| w as f64 * c)
            .sum()
    }

    /// The cores the workers may use all busy: the CPU limit, plus `resize_tolerance`
    /// of the measured part (measured shares are noisy, and counts round up).
    pub(crate) fn allowance(&self, workers: &[usize]) -> f64 {
        let measured: f64 = workers
            .iter()
            .zip(&self.weights)
            .zip(&self.measured)
            .filter(|(_, m)| **m)
            .map(|((&w, &c), _)| w as f64 * c)
            .sum();
        self.cores + self.resize_tolerance * measured
    }

    /// How much one worker fewer of pool `index` brings the workers toward the
    /// allowance, in cores (1 when plain: the cap is then a count).
    pub(crate) fn relief(&self, index: usize) -> f64 {
        if self.plain() {
            return 1.0;
        }
        let measured = if self.measured[index] { 1.0 } else { 0.0 };
        self.weights[index] * (1.0 - self.resize_tolerance * measured)
    }

    /// Workers pool `index` may add at these counts.
    pub(crate) fn room(&self, workers: &[usize], index: usize) -> usize {
        if self.plain() {
            return self.count.saturating_sub(workers.iter().sum::<usize>());
        }
        let left = self.allowance(workers) - self.used(workers);
        let per = self.relief(index);
        if left <= 0.0 {
            return 0;
        }
        if per <= 0.0 {
            return usize::MAX;
        }
        let room = (left / per + 1e-9).floor();
        if room >= 1e9 {
            1_000_000_000
        } else {
            room as usize
        }
    }

    /// How far over the cap these counts are, in cores (in workers when plain); 0 when
    /// within it.
    pub(crate) fn excess(&self, workers: &[usize]) -> f64 {
        if self.plain() {
            return workers.iter().sum::<usize>().saturating_sub(self.count) as f64;
        }
        let over = self.used(workers) - self.allowance(workers);
        if over > 1e-9 { over } else { 0.0 }
    }

    /// The reading compared with the cap, for reasons: workers against the worker cap
    /// when plain, else worker cores against the CPU limit.
    pub(crate) fn condition(&self, workers: &[usize], comparison: Comparison) -> Condition {
        let (reading, value, threshold_value) = if self.plain() {
            (
                Reading::Workers,
                workers.iter().sum::<usize>() as f64,
                self.count as f64,
            )
        } else {
            (
                Reading::WorkerCores,
                self.used(workers),
                self.allowance(workers),
            )
        };
        Condition::compare(
            reading,
            value,
            comparison,
            Threshold::CpuCap,
            threshold_value,
        )
    }
}

/// The smallest capacity change worth making from `capacity`: the tolerance share, at
/// least one slot.
pub(crate) fn tolerance(capacity: usize, config: &PolicyConfig) -> usize {
    ((capacity as f64 * config.resize_tolerance).ceil() as usize).max(1)
}
