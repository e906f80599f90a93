//! [`OverflowPolicy`]: what a full buffer does with an event.
//!
//! On the crate's ground floor, beside `range`: the bus stores it per subscription and
//! the signals name it, and neither imports the other for it. Its public path is
//! [`bus::OverflowPolicy`](crate::bus::OverflowPolicy).

use std::fmt;

/// What a subscription does with an event when its buffer is full.
///
/// Only a subscription configured [`droppable`](crate::bus::SubscriptionConfig::droppable)
/// may use (or be switched to) a dropping policy; the others stay lossless.
///
/// With the `serde` feature it reads and writes as `block`, `drop_newest` or
/// `drop_oldest`, the names of [`as_str`](Self::as_str) and `Display`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// Publishers wait for room (`try_publish` is refused with `Full`): back pressure,
    /// and no event is ever lost. The default.
    #[default]
    Block,
    /// The event being published is dropped; what is buffered stays.
    DropNewest,
    /// The oldest buffered event is dropped to make room for the new one.
    DropOldest,
}

impl OverflowPolicy {
    /// Whether the policy loses events when the buffer is full.
    ///
    /// ```
    /// use pipeline_core::bus::OverflowPolicy;
    ///
    /// assert!(!OverflowPolicy::Block.drops());
    /// assert!(OverflowPolicy::DropOldest.drops());
    /// ```
    pub fn drops(self) -> bool {
        self != OverflowPolicy::Block
    }

    /// A short lower-case name, used in metrics labels, logs, decisions and
    /// configuration files: `block`, `drop_newest`, `drop_oldest`.
    ///
    /// ```
    /// use pipeline_core::bus::OverflowPolicy;
    ///
    /// assert_eq!(OverflowPolicy::DropNewest.as_str(), "drop_newest");
    /// assert_eq!(OverflowPolicy::Block.to_string(), "block");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            OverflowPolicy::Block => "block",
            OverflowPolicy::DropNewest => "drop_newest",
            OverflowPolicy::DropOldest => "drop_oldest",
        }
    }

    pub(crate) fn to_bits(self) -> u32 {
        match self {
            OverflowPolicy::Block => 0,
            OverflowPolicy::DropNewest => 1,
            OverflowPolicy::DropOldest => 2,
        }
    }

    pub(crate) fn from_bits(bits: u32) -> Self {
        match bits {
            1 => OverflowPolicy::DropNewest,
            2 => OverflowPolicy::DropOldest,
            _ => OverflowPolicy::Block,
        }
    }
}

impl fmt::Display for OverflowPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(all(test, feature = "serde"))]
mod tests {
    use super::OverflowPolicy;

    /// Configuration files write the policy as its `as_str` name.
    #[test]
    fn serde_names_are_the_display_names() {
        for policy in [
            OverflowPolicy::Block,
            OverflowPolicy::DropNewest,
            OverflowPolicy::DropOldest,
        ] {
            let json = serde_json::to_string(&policy).unwrap();
            assert_eq!(json, format!("\"{policy}\""));
            assert_eq!(
                serde_json::from_str::<OverflowPolicy>(&json).unwrap(),
                policy
            );
        }
        assert!(serde_json::from_str::<OverflowPolicy>("\"DropOldest\"").is_err());
    }
}
