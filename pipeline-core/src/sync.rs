//! The one place that chooses between std and loom synchronisation types.
//!
//! Every module takes `Arc`, `Mutex`, `Condvar`, atomics and `thread` from here, so building with
//! `RUSTFLAGS="--cfg pipeline_loom"` runs the same protocol code under the loom model
//! checker. A project-specific cfg (not plain `loom`) keeps dependencies such as tokio
//! from reacting to it.

#[cfg(pipeline_loom)]
pub(crate) use loom::{
    sync::{Arc, Condvar, Mutex, MutexGuard, atomic},
    thread,
};
#[cfg(not(pipeline_loom))]
pub(crate) use std::{
    sync::{Arc, Condvar, Mutex, MutexGuard, atomic},
    thread,
};

/// Locks `mutex`, ignoring poisoning: every critical section in this crate leaves its
/// data consistent before it can panic, so a poisoned lock holds valid data.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
