//! The finisher: completes the deliveries of `publish_async` futures dropped after
//! their event reached a subscription, so that no publish is left partial.
//!
//! One background thread for the whole process, started on first use, runs each
//! such completion as a task: a completion that waits for room is woken by the
//! channel's wakers like any async send, so one full subscription holds up none of
//! the others, nothing polls, and no thread is spent per wait. It is a rare path (a
//! cancellation that lands after a delivery and while another `Block` subscription
//! is full), so a tiny run queue here is enough; no runtime is needed.
//!
//! std types, not `crate::sync`'s: no loom model runs this thread.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Wake, Waker};
use std::thread::{self, Thread};

/// A completion: delivers what is left, then counts itself.
pub(crate) type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

struct Finisher {
    /// Tasks woken and not yet polled.
    ready: Mutex<VecDeque<Arc<Task>>>,
    thread: Thread,
}

struct Task {
    /// `None` once the job is done.
    job: Mutex<Option<Job>>,
    /// Whether the task is in the run queue (so a burst of wakes queues it once).
    queued: AtomicBool,
}

static FINISHER: OnceLock<Finisher> = OnceLock::new();

/// Hands `job` to the finisher thread, which polls it until it completes.
pub(crate) fn spawn(job: Job) {
    let task = Arc::new(Task {
        job: Mutex::new(Some(job)),
        queued: AtomicBool::new(false),
    });
    task.wake();
}

fn finisher() -> &'static Finisher {
    // The thread's own first call waits here until the spawning call has stored it.
    FINISHER.get_or_init(|| {
        let handle = thread::Builder::new()
            .name("pipeline-bus-finisher".into())
            .spawn(run)
            .expect("the bus could not start its finisher thread");
        Finisher {
            ready: Mutex::new(VecDeque::new()),
            thread: handle.thread().clone(),
        }
    })
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A job's panic is caught outside these locks: poisoning cannot leave bad data.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            let finisher = finisher();
            lock(&finisher.ready).push_back(self);
            finisher.thread.unpark();
        }
    }
}

/// The finisher thread: polls woken tasks, parks while there are none. An `unpark`
/// between the empty queue and the `park` makes the `park` return at once, so no
/// wake is lost.
fn run() {
    let finisher = finisher();
    loop {
        let next = lock(&finisher.ready).pop_front();
        let Some(task) = next else {
            thread::park();
            continue;
        };
        // Cleared before the poll: a wake during it queues the task again.
        task.queued.store(false, Ordering::Release);
        let waker = Waker::from(Arc::clone(&task));
        let mut job = lock(&task.job);
        let Some(future) = job.as_mut() else {
            continue;
        };
        // A panicking job (a user's `Clone` or event-size function) is dropped; the
        // thread goes on with the others.
        let finished = catch_unwind(AssertUnwindSafe(|| {
            future
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_ready()
        }))
        .unwrap_or(true);
        if finished {
            let done = job.take();
            drop(job);
            let _ = catch_unwind(AssertUnwindSafe(move || drop(done)));
        }
    }
}
