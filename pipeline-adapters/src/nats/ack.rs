//! The messages a source delivered and not yet acknowledged, and [`NatsAcker`].

use super::ACK_ID_HEADER;
use super::error::AckError;
use crate::source::counters::Counted;
use async_nats::jetstream::AckKind;
use async_nats::jetstream::message::Acker;
use pipeline_core::envelope::Envelope;
use pipeline_core::pool::HandlerError;
use pipeline_core::pool::panic_message;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A runtime shared by a source and its ackers, shut down in the background by the
/// last owner (which is never one of its own tasks).
pub(crate) struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl OwnedRuntime {
    pub(crate) fn new(runtime: tokio::runtime::Runtime) -> Self {
        OwnedRuntime(Some(runtime))
    }

    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("the runtime lives until drop")
            .handle()
    }
}

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

struct Pending {
    acker: Acker,
    since: Instant,
}

/// Counters of acknowledgements, by kind.
pub(crate) struct AckCounters {
    pub(crate) acked: Counted,
    pub(crate) nacked: Counted,
    pub(crate) termed: Counted,
    pub(crate) expired: Counted,
    pub(crate) failed: Counted,
}

impl AckCounters {
    fn new(source: &str) -> Self {
        let kind = |k| Counted::labelled("pipeline_nats_source_acks_total", source, "kind", k);
        AckCounters {
            acked: kind("ack"),
            nacked: kind("nak"),
            termed: kind("term"),
            expired: kind("expired"),
            failed: kind("error"),
        }
    }
}

/// Delivered, unacknowledged messages by ack id.
pub(crate) struct Registry {
    pending: Mutex<HashMap<u64, Pending>>,
    next_id: AtomicU64,
    /// Woken when an entry leaves, so the fetch loop can use the room.
    pub(crate) freed: tokio::sync::Notify,
    pub(crate) counters: AckCounters,
}

impl Registry {
    pub(crate) fn new(source: &str) -> Self {
        Registry {
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            freed: tokio::sync::Notify::new(),
            counters: AckCounters::new(source),
        }
    }

    pub(crate) fn insert(&self, acker: Acker) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                id,
                Pending {
                    acker,
                    since: Instant::now(),
                },
            );
        id
    }

    pub(crate) fn len(&self) -> usize {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub(crate) fn take(&self, id: u64) -> Option<Acker> {
        let taken = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)
            .map(|p| p.acker);
        if taken.is_some() {
            self.freed.notify_one();
        }
        taken
    }

    /// Forgets entries older than `ack_wait`: the server has redelivered them.
    pub(crate) fn expire(&self, ack_wait: Duration) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let before = pending.len();
        pending.retain(|_, p| p.since.elapsed() < ack_wait);
        let expired = before - pending.len();
        drop(pending);
        if expired > 0 {
            self.counters.expired.add(expired as u64);
            self.freed.notify_one();
        }
    }
}

/// What a [`NatsAcker::handler`] does with an event whose handler failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Negative-acknowledge: the server redelivers it (after `delay`, if given), up to
    /// the consumer's `max_deliver`. The default, with no delay.
    #[default]
    Nak,
    /// Negative-acknowledge with a redelivery delay.
    NakAfter(Duration),
    /// Terminate: the server never redelivers it (a poison message).
    Term,
}

/// Acknowledges events that came from a [`NatsSource`](super::NatsSource), from any
/// thread (the pool's workers), after they were handled; from
/// [`NatsSource::acker`](super::NatsSource::acker). Cheap to clone.
///
/// Each event carries its ack id in the [`ACK_ID_HEADER`] header; the acker looks the
/// message up and sends the acknowledgement, waiting for the server's confirmation
/// (`double_ack`). Each message can be acknowledged once: a second call, or a call after
/// the consumer's `ack_wait` passed (the server has redelivered it), returns
/// [`AckError::Unknown`].
#[derive(Clone)]
pub struct NatsAcker {
    pub(crate) registry: Arc<Registry>,
    pub(crate) runtime: Arc<OwnedRuntime>,
}

fn ack_id(event: &Envelope) -> Result<u64, AckError> {
    event
        .header(ACK_ID_HEADER)
        .and_then(|id| id.parse().ok())
        .ok_or(AckError::NotFromNats)
}

impl NatsAcker {
    fn send(&self, event: &Envelope, kind: AckKind) -> Result<(), AckError> {
        let id = ack_id(event)?;
        let acker = self.registry.take(id).ok_or(AckError::Unknown(id))?;
        let counters = &self.registry.counters;
        let confirmed = match kind {
            // Wait for the server to confirm: "acked" then means acked.
            AckKind::Ack => self.runtime.handle().block_on(acker.double_ack()),
            other => self.runtime.handle().block_on(acker.ack_with(other)),
        };
        match (confirmed, kind) {
            (Err(error), _) => {
                counters.failed.add(1);
                Err(AckError::Failed(error))
            }
            (Ok(()), AckKind::Ack) => {
                counters.acked.add(1);
                Ok(())
            }
            (Ok(()), AckKind::Term) => {
                counters.termed.add(1);
                Ok(())
            }
            (Ok(()), _) => {
                counters.nacked.add(1);
                Ok(())
            }
        }
    }

    /// Acknowledges `event`'s message: processed, never to be delivered again.
    ///
    /// # Errors
    ///
    /// [`AckError`]: not from NATS, unknown (acknowledged already or expired), or the
    /// server did not confirm (the message is redelivered after `ack_wait`).
    pub fn ack(&self, event: &Envelope) -> Result<(), AckError> {
        self.send(event, AckKind::Ack)
    }

    /// Negative-acknowledges: the server redelivers it, after `delay` if given.
    ///
    /// # Errors
    ///
    /// As [`ack`](Self::ack).
    pub fn nak(&self, event: &Envelope, delay: Option<Duration>) -> Result<(), AckError> {
        self.send(event, AckKind::Nak(delay))
    }

    /// Terminates: the server stops delivering it, unprocessed.
    ///
    /// # Errors
    ///
    /// As [`ack`](Self::ack).
    pub fn term(&self, event: &Envelope) -> Result<(), AckError> {
        self.send(event, AckKind::Term)
    }

    /// Messages delivered and not yet acknowledged (nor expired).
    pub fn pending(&self) -> usize {
        self.registry.len()
    }

    /// Wraps a pool handler: acknowledges each event after `handler` returned `Ok`,
    /// applies `on_failure` after an `Err` (and returns the error, so the pool counts
    /// it), and naks after a panic (then lets the panic go on to the pool).
    ///
    /// An event whose ack fails returns an error: it was processed, and will be
    /// delivered again (at least once).
    pub fn handler<F>(
        &self,
        handler: F,
        on_failure: FailurePolicy,
    ) -> impl Fn(Envelope) -> Result<(), HandlerError> + Send + Sync + 'static + use<F>
    where
        F: Fn(Envelope) -> Result<(), HandlerError> + Send + Sync + 'static,
    {
        let acker = self.clone();
        move |event: Envelope| {
            // Cheap: the envelope's parts are reference counted.
            let kept = event.clone();
            match catch_unwind(AssertUnwindSafe(|| handler(event))) {
                Ok(Ok(())) => acker.ack(&kept).map_err(HandlerError::new),
                Ok(Err(error)) => {
                    let _ = match on_failure {
                        FailurePolicy::Nak => acker.nak(&kept, None),
                        FailurePolicy::NakAfter(delay) => acker.nak(&kept, Some(delay)),
                        FailurePolicy::Term => acker.term(&kept),
                    };
                    Err(error)
                }
                Err(panic) => {
                    let _ = acker.nak(&kept, None);
                    tracing::debug!(panic = %panic_message(panic.as_ref()), "nats acker: handler panicked, message nacked");
                    resume_unwind(panic)
                }
            }
        }
    }
}

impl std::fmt::Debug for NatsAcker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsAcker")
            .field("pending", &self.pending())
            .finish_non_exhaustive()
    }
}
