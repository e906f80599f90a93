//! Raising signals without ever blocking.

use super::{Signal, SignalKind};
use crate::clock::Clock;
use crate::sync::atomic::{AtomicU64, Ordering};
use crossbeam_channel as cb;
use std::sync::Arc;

/// The bus's end of the signal channel. It keeps a receiver too, so the channel stays
/// open (and `try_send` cheap) while nobody has asked for signals.
pub(crate) struct SignalSender {
    tx: cb::Sender<Signal>,
    rx: cb::Receiver<Signal>,
    skipped: AtomicU64,
    clock: Arc<dyn Clock>,
    skipped_total: metrics::Counter,
}

impl SignalSender {
    pub(crate) fn new(capacity: usize, clock: Arc<dyn Clock>, pipeline: &str) -> Self {
        let (tx, rx) = cb::bounded(capacity);
        SignalSender {
            tx,
            rx,
            skipped: AtomicU64::new(0),
            clock,
            skipped_total: metrics::counter!("pipeline_bus_signals_skipped_total", "pipeline" => pipeline.to_owned()),
        }
    }

    /// Queues a signal, or counts it as skipped when the channel is full.
    pub(crate) fn raise(&self, subscription: &Arc<str>, kind: SignalKind) {
        tracing::debug!(subscription = %subscription, ?kind, "bus signal");
        if self.tx.is_full() {
            // Nobody is draining the channel: skip before reading the clock and
            // building a signal only to drop it.
            self.skip();
            return;
        }
        let signal = Signal {
            subscription: subscription.clone(),
            kind,
            at: self.clock.now(),
        };
        if self.tx.try_send(signal).is_err() {
            self.skip();
        }
    }

    fn skip(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        self.skipped_total.increment(1);
    }

    pub(crate) fn receiver(&self) -> cb::Receiver<Signal> {
        self.rx.clone()
    }

    pub(crate) fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
}
