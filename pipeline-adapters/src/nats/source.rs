//! [`NatsSource`]: a durable pull consumer publishing onto the bus.

use super::ack::{NatsAcker, OwnedRuntime, Registry};
use super::connection::{ConnectionWatch, NatsConnectionStats, Role};
use super::convert::envelope_of;
use super::error::NatsError;
use crate::source::counters::Gauged;
use crate::source::{JoinError, Source, SourceCounters, SourceStats};
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, AckKind, stream};
use futures_util::StreamExt;
use pipeline_core::bus::{PublishError, Publisher};
use pipeline_core::envelope::Envelope;
use pipeline_core::pool::panic_message;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::Instrument;

/// How to run a [`NatsSource`].
///
/// | setting | default | rule |
/// | --- | --- | --- |
/// | url, stream, durable ([`new`](Self::new)) | (required) | not empty |
/// | [`name`](Self::name) | `"nats"` | not empty |
/// | [`filter_subject`](Self::filter_subject) | none (the whole stream) | |
/// | [`create_stream`](Self::create_stream) | none (the stream must exist) | |
/// | [`topic_prefix`](Self::topic_prefix) | `""` | |
/// | [`max_batch`](Self::max_batch) | 64 | at least `min_batch` |
/// | [`min_batch`](Self::min_batch) | 1 | at least 1 |
/// | [`max_in_flight`](Self::max_in_flight) | 256 | at least `max_batch` |
/// | [`fetch_expires`](Self::fetch_expires) | 1 s | at least 10 ms |
/// | [`ack_wait`](Self::ack_wait) | 30 s | above zero |
/// | [`max_deliver`](Self::max_deliver) | none (unlimited) | at least 1 |
/// | [`connect_timeout`](Self::connect_timeout) | 5 s | above zero |
///
/// `ack_wait`, `max_deliver` and `max_in_flight` (as the consumer's `max_ack_pending`)
/// apply when the consumer is created; an existing durable keeps its settings.
#[derive(Debug, Clone)]
#[must_use]
pub struct NatsSourceConfig {
    pub(crate) url: String,
    pub(crate) stream: String,
    pub(crate) durable: String,
    pub(crate) name: Arc<str>,
    pub(crate) filter_subject: Option<String>,
    pub(crate) create_stream: Option<Vec<String>>,
    pub(crate) topic_prefix: String,
    pub(crate) max_batch: usize,
    pub(crate) min_batch: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) fetch_expires: Duration,
    pub(crate) ack_wait: Duration,
    pub(crate) max_deliver: Option<i64>,
    pub(crate) connect_timeout: Duration,
}

impl NatsSourceConfig {
    /// Consume `stream` at `url` (e.g. `"nats://127.0.0.1:4222"`) as the durable
    /// consumer `durable`: every instance with the same durable name shares the work.
    pub fn new(
        url: impl Into<String>,
        stream: impl Into<String>,
        durable: impl Into<String>,
    ) -> Self {
        NatsSourceConfig {
            url: url.into(),
            stream: stream.into(),
            durable: durable.into(),
            name: "nats".into(),
            filter_subject: None,
            create_stream: None,
            topic_prefix: String::new(),
            max_batch: 64,
            min_batch: 1,
            max_in_flight: 256,
            fetch_expires: Duration::from_secs(1),
            ack_wait: Duration::from_secs(30),
            max_deliver: None,
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// The name in logs, thread names and the `source` metrics label (default `"nats"`).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Consume only subjects matching this (when the consumer is created).
    pub fn filter_subject(mut self, subject: impl Into<String>) -> Self {
        self.filter_subject = Some(subject.into());
        self
    }

    /// Create the stream, with these subjects and file storage, if it does not exist.
    pub fn create_stream(mut self, subjects: Vec<String>) -> Self {
        self.create_stream = Some(subjects);
        self
    }

    /// Strip this prefix from subjects to make topics (default none: topic = subject).
    pub fn topic_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.topic_prefix = prefix.into();
        self
    }

    /// The largest fetch, in messages (default 64); the fetch shrinks under back
    /// pressure and grows back when it eases.
    pub fn max_batch(mut self, messages: usize) -> Self {
        self.max_batch = messages;
        self
    }

    /// The smallest fetch under back pressure (default 1).
    pub fn min_batch(mut self, messages: usize) -> Self {
        self.min_batch = messages;
        self
    }

    /// The most messages delivered and not yet acknowledged (default 256); also the
    /// consumer's `max_ack_pending` when it is created.
    pub fn max_in_flight(mut self, messages: usize) -> Self {
        self.max_in_flight = messages;
        self
    }

    /// How long one fetch waits for messages (default 1 s).
    pub fn fetch_expires(mut self, expires: Duration) -> Self {
        self.fetch_expires = expires;
        self
    }

    /// How long the server waits for an acknowledgement before redelivering (default
    /// 30 s; when the consumer is created).
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait;
        self
    }

    /// How many times a message is delivered at most (default unlimited; when the
    /// consumer is created).
    pub fn max_deliver(mut self, deliveries: i64) -> Self {
        self.max_deliver = Some(deliveries);
        self
    }

    /// The limit on connecting at start (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    fn validate(&self) -> Result<(), NatsError> {
        let invalid = |field, rule: &str| {
            Err(NatsError::InvalidConfig {
                field,
                rule: rule.to_owned(),
            })
        };
        for (field, value) in [
            ("url", &self.url),
            ("stream", &self.stream),
            ("durable", &self.durable),
        ] {
            if value.is_empty() {
                return invalid(field, "must not be empty");
            }
        }
        if self.name.is_empty() {
            return invalid("name", "must not be empty");
        }
        if self.min_batch == 0 {
            return invalid("min_batch", "must be at least 1");
        }
        if self.max_batch < self.min_batch {
            return invalid("max_batch", "must be at least min_batch");
        }
        if self.max_in_flight < self.max_batch {
            return invalid("max_in_flight", "must be at least max_batch");
        }
        if self.fetch_expires < Duration::from_millis(10) {
            return invalid("fetch_expires", "must be at least 10 ms");
        }
        if self.ack_wait.is_zero() {
            return invalid("ack_wait", "must be above zero");
        }
        if self.max_deliver.is_some_and(|d| d < 1) {
            return invalid("max_deliver", "must be at least 1");
        }
        if self.connect_timeout.is_zero() {
            return invalid("connect_timeout", "must be above zero");
        }
        Ok(())
    }
}

/// A [`NatsSource`]'s counters beyond the common [`SourceStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NatsSourceStats {
    /// The counters every source keeps (`in_flight`: delivered, not acknowledged).
    pub source: SourceStats,
    /// Fetches made.
    pub fetches: u64,
    /// The size of the latest fetch request, in messages.
    pub fetch_size: u64,
    /// The smallest fetch request so far.
    pub min_fetch_size: u64,
    /// Fetches that met back pressure (a `Full` or `Backoff` while publishing).
    pub pressured_fetches: u64,
    /// Messages acknowledged through the acker.
    pub acked: u64,
    /// Messages negative-acknowledged (by the acker, or at stop).
    pub nacked: u64,
    /// Messages terminated.
    pub termed: u64,
    /// Messages whose `ack_wait` passed unacknowledged (redelivered by the server).
    pub expired: u64,
    /// Acknowledgements the server did not confirm.
    pub ack_errors: u64,
    /// Fetches that failed (connection lost, server restarting).
    pub fetch_errors: u64,
    /// The connection to the server: connected now, disconnects, reconnects.
    pub connection: NatsConnectionStats,
}

struct Shared {
    name: Arc<str>,
    counters: SourceCounters,
    registry: Arc<Registry>,
    fetch_size: Gauged,
    fetches: std::sync::atomic::AtomicU64,
    min_fetch_size: std::sync::atomic::AtomicU64,
    pressured: std::sync::atomic::AtomicU64,
    fetch_errors: std::sync::atomic::AtomicU64,
    connection: Arc<ConnectionWatch>,
}

/// A JetStream durable pull consumer publishing each message on the bus, to be
/// acknowledged by the stage that handles it; from [`NatsSource::spawn`]. See the
/// [module docs](super) for the at-least-once contract.
pub struct NatsSource {
    shared: Arc<Shared>,
    runtime: Arc<OwnedRuntime>,
    stop: watch::Sender<bool>,
    done: mpsc::Receiver<()>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl NatsSource {
    /// Connects, finds (or creates) the stream and the durable consumer, and starts
    /// fetching; events go to `publisher`.
    ///
    /// # Errors
    ///
    /// [`NatsError::InvalidConfig`] naming a setting that breaks its rule,
    /// [`NatsError::Connect`] if the server cannot be reached within
    /// `connect_timeout`, [`NatsError::JetStream`] if the stream is missing (and not to
    /// be created) or the consumer cannot be made, [`NatsError::Runtime`].
    pub fn spawn(
        config: NatsSourceConfig,
        publisher: Publisher<Envelope>,
    ) -> Result<NatsSource, NatsError> {
        config.validate()?;
        let runtime = Arc::new(OwnedRuntime::new(
            crate::runtime::build(&config.name, 1).map_err(NatsError::Runtime)?,
        ));
        metrics::describe_gauge!(
            "pipeline_nats_source_fetch_batch_messages",
            "The size of a NATS source's latest fetch request, in messages."
        );
        metrics::describe_counter!(
            "pipeline_nats_source_acks_total",
            "NATS messages settled, by kind: ack, nak, term, expired, error."
        );
        let connection = ConnectionWatch::new(Role::Source, &config.name, &config.url);
        let consumer = runtime
            .handle()
            .block_on(connect_consumer(&config, connection.clone()))?;
        let shared = Arc::new(Shared {
            connection,
            counters: SourceCounters::new(&config.name, &[]),
            registry: Arc::new(Registry::new(&config.name)),
            fetch_size: crate::source::counters::gauge(
                "pipeline_nats_source_fetch_batch_messages",
                &config.name,
            ),
            fetches: Default::default(),
            min_fetch_size: std::sync::atomic::AtomicU64::new(u64::MAX),
            pressured: Default::default(),
            fetch_errors: Default::default(),
            name: config.name.clone(),
        });
        let (stop, stopped) = watch::channel(false);
        let (done_tx, done) = mpsc::channel::<()>();
        let task_shared = shared.clone();
        let span = tracing::info_span!("nats_source", source = %config.name, url = %config.url);
        let task = runtime.handle().spawn(
            async move {
                let _done = done_tx;
                fetch_loop(consumer, &config, &task_shared, publisher, stopped).await;
            }
            .instrument(span),
        );
        Ok(NatsSource {
            shared,
            runtime,
            stop,
            done,
            task: Some(task),
        })
    }

    /// An acker for the events this source publishes; give it to the stage that
    /// handles them (see [`NatsAcker::handler`]). It stays usable after the source
    /// stops, so events already published can still be acknowledged.
    pub fn acker(&self) -> NatsAcker {
        NatsAcker {
            registry: self.shared.registry.clone(),
            runtime: self.runtime.clone(),
        }
    }

    /// Fetch and acknowledgement counters, and the common ones.
    pub fn nats_stats(&self) -> NatsSourceStats {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.shared;
        let acks = &s.registry.counters;
        let mut source = s.counters.stats();
        source.in_flight = s.registry.len() as u64;
        let min = s.min_fetch_size.load(Relaxed);
        NatsSourceStats {
            source,
            fetches: s.fetches.load(Relaxed),
            fetch_size: s.fetch_size.get(),
            min_fetch_size: if min == u64::MAX { 0 } else { min },
            pressured_fetches: s.pressured.load(Relaxed),
            acked: acks.acked.get(),
            nacked: acks.nacked.get(),
            termed: acks.termed.get(),
            expired: acks.expired.get(),
            ack_errors: acks.failed.get(),
            fetch_errors: s.fetch_errors.load(Relaxed),
            connection: s.connection.stats(),
        }
    }
}

async fn connect_consumer(
    config: &NatsSourceConfig,
    connection: Arc<ConnectionWatch>,
) -> Result<PullConsumer, NatsError> {
    let client = super::connect(
        &config.url,
        &config.name,
        config.connect_timeout,
        connection,
    )
    .await?;
    let context = jetstream::new(client);
    let js_error = |what| {
        move |e: Box<dyn std::error::Error + Send + Sync>| NatsError::JetStream { what, source: e }
    };
    let stream = match &config.create_stream {
        Some(subjects) => context
            .get_or_create_stream(stream::Config {
                name: config.stream.clone(),
                subjects: subjects.clone(),
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| js_error("creating the stream")(e.into()))?,
        None => context
            .get_stream(&config.stream)
            .await
            .map_err(|e| js_error("looking up the stream")(e.into()))?,
    };
    let consumer = stream
        .get_or_create_consumer::<pull::Config>(
            &config.durable,
            pull::Config {
                durable_name: Some(config.durable.clone()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: config.ack_wait,
                max_ack_pending: i64::try_from(config.max_in_flight).unwrap_or(i64::MAX),
                max_deliver: config.max_deliver.unwrap_or(-1),
                filter_subject: config.filter_subject.clone().unwrap_or_default(),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| js_error("creating the consumer")(e.into()))?;
    Ok(consumer)
}

/// Resolves once a stop is asked for (or the handle is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await.map(drop);
}

async fn fetch_loop(
    consumer: PullConsumer,
    config: &NatsSourceConfig,
    shared: &Shared,
    publisher: Publisher<Envelope>,
    mut stop: watch::Receiver<bool>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let registry = &shared.registry;
    let counters = &shared.counters;
    let mut batch = config.max_batch;
    let grow = (config.max_batch / 4).max(1);
    let mut fetch_failures = 0u32;
    // How often a full in-flight window looks for expired entries.
    let expiry_check =
        (config.ack_wait / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    'fetching: loop {
        if *stop.borrow() {
            break;
        }
        registry.expire(config.ack_wait);
        let in_flight = registry.len();
        counters.in_flight.set(in_flight as u64);
        let room = config.max_in_flight.saturating_sub(in_flight);
        if room == 0 {
            // Messages wait in the stream until the stage acknowledges some.
            tokio::select! {
                () = registry.freed.notified() => {}
                () = tokio::time::sleep(expiry_check) => {}
                () = stopped(&mut stop) => break,
            }
            continue;
        }
        let want = batch.min(room);
        shared.fetch_size.set(want as u64);
        shared.min_fetch_size.fetch_min(want as u64, Relaxed);
        shared.fetches.fetch_add(1, Relaxed);
        let request = consumer
            .batch()
            .max_messages(want)
            .expires(config.fetch_expires)
            .messages();
        let messages = tokio::select! {
            messages = request => messages,
            () = stopped(&mut stop) => break,
        };
        let mut messages = match messages {
            Ok(messages) => {
                fetch_failures = 0;
                messages
            }
            Err(error) => {
                shared.fetch_errors.fetch_add(1, Relaxed);
                fetch_failures += 1;
                let pause = Duration::from_millis(50 * 2u64.pow(fetch_failures.min(5)));
                tracing::warn!(source = %shared.name, %error, ?pause, "nats source: fetch failed");
                tokio::select! {
                    () = tokio::time::sleep(pause) => continue,
                    () = stopped(&mut stop) => break,
                }
            }
        };
        let mut pressured = false;
        loop {
            let next = tokio::select! {
                next = messages.next() => next,
                () = stopped(&mut stop) => break 'fetching,
            };
            let message = match next {
                None => break,
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    // Timeouts, heartbeats missed, a lost connection: end this fetch.
                    tracing::debug!(source = %shared.name, %error, "nats source: fetch ended");
                    break;
                }
            };
            let (sequence, delivered) = message
                .info()
                .map(|info| (info.stream_sequence, info.delivered))
                .unwrap_or((0, 0));
            let (message, acker) = message.split();
            let id = registry.insert(acker);
            let event = envelope_of(&message, &config.topic_prefix, id, sequence, delivered);
            drop(message);
            counters.received.add(1);
            // Try first, so a refusal is counted and shrinks the next fetch; then wait
            // for room or a token with `publish_async`: a waker, no polling, no
            // blocked thread. The message is acknowledged by the stage, after the bus
            // took it, never here.
            let event = match publisher.try_publish(event) {
                Ok(()) => {
                    counters.published.add(1);
                    continue;
                }
                Err(PublishError::Backoff { event, .. }) => {
                    counters.backoff.add(1);
                    event
                }
                Err(PublishError::Closed(_)) => {
                    counters.not_published.add(1);
                    nak(registry, id).await;
                    break 'fetching;
                }
                // `Full` (a try never times out).
                Err(refused) => {
                    counters.full.add(1);
                    refused.into_inner()
                }
            };
            pressured = true;
            let published = tokio::select! {
                // A publish that completes wins over a stop asked at the same moment.
                biased;
                published = publisher.publish_async(event) => published,
                () = stopped(&mut stop) => {
                    // Dropping the publish future handed nothing to the bus: let
                    // another instance have the message now.
                    counters.not_published.add(1);
                    nak(registry, id).await;
                    break 'fetching;
                }
            };
            match published {
                Ok(()) => counters.published.add(1),
                Err(_closed) => {
                    counters.not_published.add(1);
                    nak(registry, id).await;
                    break 'fetching;
                }
            }
        }
        if pressured {
            shared.pressured.fetch_add(1, Relaxed);
            batch = (batch / 2).max(config.min_batch);
        } else {
            batch = (batch + grow).min(config.max_batch);
        }
    }
    counters.in_flight.set(registry.len() as u64);
    tracing::info!(source = %shared.name, "nats source: stopped fetching");
}

async fn nak(registry: &Registry, id: u64) {
    if let Some(acker) = registry.take(id) {
        if acker.ack_with(AckKind::Nak(None)).await.is_ok() {
            registry.counters.nacked.add(1);
        } else {
            registry.counters.failed.add(1);
        }
    }
}

impl Source for NatsSource {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn stats(&self) -> SourceStats {
        self.nats_stats().source
    }

    fn stop(&self) {
        self.stop.send_replace(true);
    }

    fn join(&mut self, timeout: Duration) -> Result<(), JoinError> {
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        if let Err(mpsc::RecvTimeoutError::Timeout) = self.done.recv_timeout(timeout) {
            self.task = Some(task);
            return Err(JoinError::Timeout(timeout));
        }
        match self.runtime.handle().block_on(task) {
            Err(error) if error.is_panic() => Err(JoinError::Panicked(panic_message(
                error.into_panic().as_ref(),
            ))),
            _ => Ok(()),
        }
    }
}

impl Drop for NatsSource {
    /// Stops fetching without waiting; messages not acknowledged are redelivered after
    /// `ack_wait` (as after a crash). The runtime lives on while an acker does.
    fn drop(&mut self) {
        self.stop();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl std::fmt::Debug for NatsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSource")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}
