//! The bounded decision log.

use crate::policy::{Action, Hold, Mode, Transition};
use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the controller did at one tick: an action and how applying it went, or a
/// change of mode.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Entry {
    /// An action the policy decided, with the value in force after applying it, or
    /// why it could not be applied.
    Action {
        /// The action and its reason.
        action: Action,
        /// `Ok(value now in force)` or `Err(why the knob refused)`.
        outcome: Result<String, String>,
    },
    /// The policy changed mode.
    Mode(Transition),
    /// A change the policy wanted but held back (a cooldown or the stabilisation
    /// window), so an operator sees why nothing happened. Logged when the hold starts
    /// ([`Hold::new`]).
    Hold(Hold),
}

/// One line of the decision log.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRecord {
    /// When, on the controller's clock.
    pub at: Instant,
    /// Time since the controller started.
    pub since_start: Duration,
    /// The mode after this tick.
    pub mode: Mode,
    /// What happened.
    pub entry: Entry,
}

impl fmt::Display for DecisionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:>8.1}s] ", self.since_start.as_secs_f64())?;
        match &self.entry {
            Entry::Action {
                action,
                outcome: Ok(_),
            } => write!(f, "{action}"),
            Entry::Action {
                action,
                outcome: Err(why),
            } => write!(f, "{action} (not applied: {why})"),
            Entry::Mode(transition) => write!(f, "{transition}"),
            Entry::Hold(hold) => write!(f, "{hold}"),
        }
    }
}

/// The last `capacity` records, oldest first; older ones are forgotten.
#[derive(Debug)]
pub struct DecisionLog {
    records: Mutex<VecDeque<DecisionRecord>>,
    capacity: usize,
    total: Mutex<u64>,
}

impl DecisionLog {
    /// A log keeping the last `capacity` records (at least 1).
    pub fn new(capacity: usize) -> Self {
        DecisionLog {
            records: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            total: Mutex::new(0),
        }
    }

    pub(crate) fn push(&self, record: DecisionRecord) {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if records.len() == self.capacity {
            records.pop_front();
        }
        records.push_back(record);
        *self.total.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    }

    /// The records kept, oldest first.
    pub fn records(&self) -> Vec<DecisionRecord> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// The records kept whose sequence number is above `seq`, oldest first, each with
    /// its sequence number: the first record ever pushed is 1, the next 2, and so on,
    /// forgotten ones included. `records_since(0)` is every record kept; pass the last
    /// number seen to read only newer ones.
    ///
    /// ```
    /// use pipeline_controller::control::DecisionLog;
    ///
    /// let log = DecisionLog::new(8);
    /// assert!(log.records_since(0).is_empty());
    /// ```
    pub fn records_since(&self, seq: u64) -> Vec<(u64, DecisionRecord)> {
        let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        // Read under the records' lock: `push` updates both under it.
        let total = self.total();
        let first = total - records.len() as u64 + 1;
        records
            .iter()
            .enumerate()
            .map(|(i, r)| (first + i as u64, r))
            .filter(|(n, _)| *n > seq)
            .map(|(n, r)| (n, r.clone()))
            .collect()
    }

    /// Records ever pushed, including forgotten ones.
    pub fn total(&self) -> u64 {
        *self.total.lock().unwrap_or_else(|p| p.into_inner())
    }
}
