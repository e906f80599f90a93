//! Errors of the resizable channel.
//!
//! The send and receive errors are crossbeam-channel's own types, re-exported: they
//! mean exactly the same here, and the ones that carry a value hand it back.

pub use crossbeam_channel::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};

/// Why [`Sender::resize`](super::Sender::resize) refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResizeError {
    /// A capacity of zero would make every send wait for a receiver; a resizable
    /// channel always buffers at least one value.
    #[error("cannot resize a channel to capacity 0: the capacity must be at least 1")]
    ZeroCapacity,
    /// Every receiver is gone, so there is nothing to resize for.
    #[error("cannot resize a channel whose receivers are all gone")]
    Disconnected,
}
