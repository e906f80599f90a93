//! The two saturation thresholds and their dead band.

/// High and low saturation thresholds, as shares of a subscription's capacity.
///
/// `0 <= low < high <= 1`. A length at or above `high * capacity` is saturated; it
/// stays saturated until it is at or below `low * capacity`.
///
/// # Examples
///
/// ```
/// use pipeline_core::signal::SaturationThresholds;
///
/// let t = SaturationThresholds::new(0.8, 0.5).unwrap();
/// assert_eq!(t.high_len(100), 80);
/// assert_eq!(t.low_len(100), 50);
/// assert_eq!(t.high_len(1), 1); // never 0: an empty buffer is not saturated
/// assert!(SaturationThresholds::new(0.5, 0.5).is_err()); // no dead band
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SaturationThresholds {
    high: f64,
    low: f64,
}

/// Why [`SaturationThresholds::new`] refused.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("saturation thresholds high={high}, low={low}: need 0 <= low < high <= 1")]
pub struct ThresholdError {
    /// The high threshold given.
    pub high: f64,
    /// The low threshold given.
    pub low: f64,
}

impl SaturationThresholds {
    /// Thresholds `high` and `low`, shares of capacity.
    ///
    /// # Errors
    ///
    /// [`ThresholdError`] unless `0 <= low < high <= 1` (NaN fails too).
    pub fn new(high: f64, low: f64) -> Result<Self, ThresholdError> {
        if (0.0..high).contains(&low) && high <= 1.0 {
            Ok(SaturationThresholds { high, low })
        } else {
            Err(ThresholdError { high, low })
        }
    }

    /// The high threshold, a share of capacity.
    pub fn high(&self) -> f64 {
        self.high
    }

    /// The low threshold, a share of capacity.
    pub fn low(&self) -> f64 {
        self.low
    }

    /// The length at and above which a buffer of `capacity` is saturated: at least 1.
    pub fn high_len(&self, capacity: usize) -> usize {
        // The epsilon keeps float error (0.1 * 30 = 3.0000000000000004) from moving a
        // threshold by a whole event.
        ((self.high * capacity as f64 - 1e-9).ceil() as usize).max(1)
    }

    /// The length at and below which a saturated buffer of `capacity` is no longer
    /// saturated; always below [`high_len`](Self::high_len).
    pub fn low_len(&self, capacity: usize) -> usize {
        ((self.low * capacity as f64 + 1e-9).floor() as usize).min(self.high_len(capacity) - 1)
    }
}

impl Default for SaturationThresholds {
    /// `high = 0.8`, `low = 0.5`.
    fn default() -> Self {
        SaturationThresholds {
            high: 0.8,
            low: 0.5,
        }
    }
}
