//! The data path of the pipeline: a live-resizable bounded channel, and (growing with
//! the project) the bus, publishers, subscriptions and worker pools built on it.
//!
//! ```
//! use pipeline_core::channel::bounded;
//!
//! let (tx, rx) = bounded(2);
//! tx.send("event").unwrap();
//! tx.resize(16).unwrap(); // grow while in use; nothing is copied or lost
//! assert_eq!(rx.recv(), Ok("event"));
//! ```
//!
//! The controller in `pipeline-controller` turns these knobs; this crate never knows it
//! exists.
#![warn(missing_docs)]

pub mod channel;
pub(crate) mod sync;
