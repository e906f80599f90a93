//! The signal values.

use crate::overflow::OverflowPolicy;
use std::sync::Arc;
use std::time::Instant;

/// One edge on one subscription, with the bus clock's time when it was raised.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Signal {
    /// Name of the subscription it concerns.
    pub subscription: Arc<str>,
    /// What changed.
    pub kind: SignalKind,
    /// When the bus's [`Clock`](crate::clock::Clock) says it was raised.
    pub at: Instant,
}

/// What changed; see the [module docs](super) for when each fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignalKind {
    /// The buffer reached the high threshold (`len >= high * capacity`).
    SaturationHigh {
        /// Events buffered when it was seen.
        len: usize,
        /// Capacity at that moment.
        capacity: usize,
    },
    /// The buffer fell back to the low threshold (`len <= low * capacity`) after a
    /// [`SaturationHigh`](SignalKind::SaturationHigh).
    SaturationLow {
        /// Events buffered when it was seen.
        len: usize,
        /// Capacity at that moment.
        capacity: usize,
    },
    /// A publisher found this `Block` subscription full and has to wait (or, for
    /// `try_publish`, was refused): back pressure.
    BackPressureStarted,
    /// The subscription that exerted back pressure drained to the low threshold.
    BackPressureStopped,
    /// The subscription dropped an event, the first since it last drained.
    DropsStarted {
        /// The policy that dropped it.
        policy: OverflowPolicy,
    },
    /// The dropping subscription drained to the low threshold.
    DropsStopped {
        /// Events the subscription has dropped since it was created (both policies).
        dropped_total: u64,
    },
}
