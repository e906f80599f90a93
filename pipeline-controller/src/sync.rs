//! The std/loom switch for the configuration swap, the one multi-party protocol in this
//! crate: building with `RUSTFLAGS="--cfg pipeline_loom"` runs `ConfigHandle`'s writer
//! lock, version counter and configuration cell under the loom model checker.

#[cfg(pipeline_loom)]
pub(crate) use loom::sync::{
    Mutex,
    atomic::{AtomicU64, Ordering},
};
#[cfg(not(pipeline_loom))]
pub(crate) use std::sync::{
    Mutex,
    atomic::{AtomicU64, Ordering},
};

use std::sync::Arc;

/// A shared `Arc<T>` that readers load and writers replace whole: arc-swap normally
/// (loads are lock-free); a loom mutex under `cfg(pipeline_loom)`, since loom cannot
/// see inside arc-swap.
pub(crate) struct ArcCell<T> {
    #[cfg(not(pipeline_loom))]
    inner: arc_swap::ArcSwap<T>,
    #[cfg(pipeline_loom)]
    inner: loom::sync::Mutex<Arc<T>>,
}

impl<T> ArcCell<T> {
    pub(crate) fn new(value: Arc<T>) -> Self {
        #[cfg(not(pipeline_loom))]
        let inner = arc_swap::ArcSwap::new(value);
        #[cfg(pipeline_loom)]
        let inner = loom::sync::Mutex::new(value);
        ArcCell { inner }
    }

    pub(crate) fn load(&self) -> Arc<T> {
        #[cfg(not(pipeline_loom))]
        return self.inner.load_full();
        #[cfg(pipeline_loom)]
        return self.inner.lock().unwrap().clone();
    }

    pub(crate) fn store(&self, value: Arc<T>) {
        #[cfg(not(pipeline_loom))]
        self.inner.store(value);
        #[cfg(pipeline_loom)]
        {
            *self.inner.lock().unwrap() = value;
        }
    }
}
