//! Live-resizable bounded channels, the bus and worker pools.
#![warn(missing_docs)]

pub mod channel;
pub(crate) mod sync;
