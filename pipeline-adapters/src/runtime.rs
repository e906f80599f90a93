//! The tokio runtime an async adapter owns, so its user need not be async.

use std::io;

/// A multi-thread runtime with `workers` threads named `name-N`, timers and I/O on.
pub(crate) fn build(name: &str, workers: usize) -> io::Result<tokio::runtime::Runtime> {
    let name = name.to_owned();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .thread_name_fn(move || {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            format!("{name}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
        })
        .enable_all()
        .build()
}
