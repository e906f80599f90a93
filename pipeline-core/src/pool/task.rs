//! Task workers (feature `tokio`): the worker loop of `worker.rs` as a tokio task
//! running an async handler.
//!
//! A task worker shares everything with a thread worker (the pool's records, counters,
//! metrics, dead-letter hook, the stop protocol and the exit count); only its waiting
//! differs:
//!
//! - **Idle**: it waits for its subscription's `recv_async` *or* its own stop request,
//!   selected by hand in one `poll_fn`: the stop flag is looked at first, then the
//!   receive is polled, and only if that is pending is the task's waker listed in its
//!   `StopWaker` and the flag looked at again (`notify.rs` says why nothing is lost).
//!   No timer, no polling: an idle task is polled once and sleeps until an event,
//!   the disconnect or the stop request wakes it. A stop that wins drops the receive
//!   future, which never loses an event (`recv_async` takes one only in the poll
//!   that returns it).
//! - **Draining**: the deadline is looked at before each receive, as by a thread; a
//!   task that waits while draining is woken by an event, by the disconnect once the
//!   subscription is empty, or at the deadline by the stop request the shutdown sends
//!   to every worker it leaves behind. So no worker holds a timer.
//! - **Panics**: the handler is called, and its future polled, inside `catch_unwind`
//!   (a small `poll_fn` around the pinned future): a panic in either place ends that
//!   event as a panic, counted and dead-lettered exactly as for a thread, and the task
//!   goes on.
//! - **Exit**: an [`ExitGuard`] owned by the task's future counts the exit when the
//!   future ends, also when the runtime drops it unfinished (it shut down), so a
//!   shutdown never waits for a task that is gone.

use super::error::HandlerError;
use super::worker::{PoolShared, WorkerState, thread_cpu_time};
use crate::sync::{Arc, atomic::Ordering};
use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::task::{Poll, Waker};
use std::time::Duration;
use tokio::runtime::Handle;

/// Starts one task worker on a runtime; made from the handler by [`AsyncHandler::new`].
type Spawn<E> = Box<dyn Fn(&Handle, ExitGuard<E>) + Send + Sync>;

/// An async handler, ready to start task workers.
pub(crate) struct AsyncHandler<E> {
    spawn: Spawn<E>,
}

impl<E: Send + 'static> AsyncHandler<E> {
    pub(crate) fn new<F, Fut>(handler: F) -> Self
    where
        F: Fn(E) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        AsyncHandler {
            // The task's future is generic over the handler: its futures are not boxed.
            spawn: Box::new(move |runtime, guard| {
                drop(runtime.spawn(run_task(guard, handler.clone())));
            }),
        }
    }
}

/// What a pool of task workers runs: the handler and the runtime its tasks run on.
pub(crate) struct Tasks<E> {
    pub(crate) runtime: Handle,
    pub(crate) handler: AsyncHandler<E>,
}

impl<E: Send + 'static> Tasks<E> {
    /// Starts a task worker with state `me`; the task is detached (the pool follows it
    /// through `me` and the exit count).
    pub(crate) fn spawn(&self, shared: &Arc<PoolShared<E>>, me: &Arc<WorkerState>) {
        (self.handler.spawn)(
            &self.runtime,
            ExitGuard {
                shared: shared.clone(),
                me: me.clone(),
            },
        );
    }
}

/// Counts a task worker's exit when dropped: at the end of its loop, or when the
/// runtime drops the task unfinished (or unstarted) because it shut down.
pub(crate) struct ExitGuard<E> {
    shared: Arc<PoolShared<E>>,
    me: Arc<WorkerState>,
}

impl<E> Drop for ExitGuard<E> {
    fn drop(&mut self) {
        // Dropped inside a handler (the runtime shut down): that event counts as left.
        self.me.busy_since.store(0, Ordering::Relaxed);
        self.shared.exit(&self.me);
    }
}

/// What an idle task worker woke up to.
enum Next<E> {
    Event(E),
    Stop,
    Disconnected,
}

/// The body of a task worker: the loop of `PoolShared::run_worker`, awaiting instead
/// of blocking.
async fn run_task<E, F, Fut>(guard: ExitGuard<E>, handler: Arc<F>)
where
    E: Send + 'static,
    F: Fn(E) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    let ExitGuard { shared, me } = &guard;
    // The waker listed in `me`'s stop waker, kept so it is listed once, not per wait.
    let mut listed = None;
    // Stop flag before each receive, never after (worker.rs); the drain deadline is
    // only looked at here (see the module docs).
    while shared.before_receive(me).is_ok() {
        match next_event(shared, me, &mut listed).await {
            // Received: handled here whatever the flags say now.
            Next::Event(event) => handle(shared, me, event, &*handler).await,
            // Told to stop while waiting: the flag says so at the top of the loop.
            Next::Stop => continue,
            // Drained after `start_draining` (or the bus is gone).
            Next::Disconnected => break,
        }
    }
    // `guard` counts the exit as it drops.
}

/// Waits for an event, the disconnect, or this worker's stop request.
async fn next_event<E>(
    shared: &PoolShared<E>,
    me: &WorkerState,
    listed: &mut Option<Waker>,
) -> Next<E> {
    let stop = me.stop_waker();
    let mut recv = pin!(shared.subscription.recv_async());
    poll_fn(|cx| {
        #[cfg(test)]
        me.polls.fetch_add(1, Ordering::Relaxed);
        // A stop request woke us (or came first): stop before taking an event.
        if me.stop.load(Ordering::Acquire) {
            return Poll::Ready(Next::Stop);
        }
        match recv.as_mut().poll(cx) {
            Poll::Ready(Ok(event)) => return Poll::Ready(Next::Event(event)),
            Poll::Ready(Err(_)) => return Poll::Ready(Next::Disconnected),
            Poll::Pending => {}
        }
        // Only a stop request takes the listed waker, and it sets the flag first: a
        // waker still listed needs no new listing.
        if !listed.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            stop.register(cx.waker());
            *listed = Some(cx.waker().clone());
        }
        if me.stop.load(Ordering::Acquire) {
            Poll::Ready(Next::Stop)
        } else {
            Poll::Pending
        }
    })
    .await
}

/// Handles one event: the async twin of `PoolShared::handle`.
async fn handle<E, F, Fut>(shared: &PoolShared<E>, me: &WorkerState, event: E, handler: &F)
where
    E: Send + 'static,
    F: Fn(E) -> Fut,
    Fut: Future<Output = Result<(), HandlerError>>,
{
    let kept = shared.keep(&event);
    let begun = shared.begin(me, false);
    // A sampled call's CPU time is the sum over its polls (a task may move between
    // threads between polls; each poll runs on one).
    let mut cpu = begun.sampled.then_some(Duration::ZERO);
    let outcome = {
        // The handler is called in the first poll, so a panic in making the future is
        // caught like one in running it.
        let mut call = pin!(async move { handler(event).await });
        poll_fn(|cx| {
            let before = cpu.and_then(|_| thread_cpu_time());
            let polled = catch_unwind(AssertUnwindSafe(|| call.as_mut().poll(cx)));
            if let (Some(total), Some(before), Some(after)) =
                (cpu.as_mut(), before, before.and_then(|_| thread_cpu_time()))
            {
                *total += after.saturating_sub(before);
            }
            match polled {
                Ok(Poll::Pending) => Poll::Pending,
                Ok(Poll::Ready(result)) => Poll::Ready(Ok(result)),
                Err(payload) => Poll::Ready(Err(payload)),
            }
        })
        .await
    };
    // Without a CPU clock (another OS) the sum stays at zero: report no sample.
    let cpu = cpu.filter(|_| thread_cpu_time().is_some());
    shared.finish(me, begun, outcome, kept, cpu);
}
