//! The working state of one decision: the actions so far and the knob values they
//! leave, so later rules see what earlier ones did. Plus the memory readings and the
//! small sums every rule needs.

use std::collections::BTreeSet;

use super::config::PolicyConfig;
use super::decision::{
    Action, Change, Comparison, Condition, Knob, Reading, Reason, Rule, Threshold,
};
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
}

impl Plan {
    pub(crate) fn new(obs: &Observation) -> Plan {
        Plan {
            actions: Vec::new(),
            changed: BTreeSet::new(),
            capacities: obs.buffers.iter().map(|b| b.capacity).collect(),
            workers: obs.pools.iter().map(|p| p.workers).collect(),
            rate: obs.publish_rate,
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
            reason: Reason { rule, conditions },
        });
        true
    }

    pub(crate) fn total_workers(&self) -> usize {
        self.workers.iter().sum()
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
        self.psi
            .filter(|&p| p >= self.psi_critical)
            .map(|psi| Condition {
                reading: Reading::Pressure,
                value: psi,
                comparison: Comparison::AtOrAbove,
                threshold: Threshold::PsiCritical,
                threshold_value: self.psi_critical,
                held_for: None,
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
    Condition {
        reading: Reading::Memory,
        value: share,
        comparison,
        threshold,
        threshold_value,
        held_for: None,
    }
}

/// Bytes the buffers may hold together, `None` without a memory limit.
pub(crate) fn budget_bytes(obs: &Observation, config: &PolicyConfig) -> Option<f64> {
    obs.memory
        .limit_bytes
        .filter(|&limit| limit > 0)
        .map(|limit| limit as f64 * config.buffer_budget)
}

/// Workers allowed across all pools, `None` without a CPU limit.
pub(crate) fn cpu_cap(obs: &Observation, config: &PolicyConfig) -> Option<usize> {
    obs.cpu_limit_cores
        .filter(|cores| cores.is_finite() && *cores >= 0.0)
        .map(|cores| (cores * config.workers_per_core).floor() as usize)
}

/// The smallest capacity change worth making from `capacity`: the tolerance share, at
/// least one slot.
pub(crate) fn tolerance(capacity: usize, config: &PolicyConfig) -> usize {
    ((capacity as f64 * config.resize_tolerance).ceil() as usize).max(1)
}
