//! [`NatsSink`]: batches published to JetStream, acks awaited, retried.

use super::ack::OwnedRuntime;
use super::connection::{ConnectionWatch, NatsConnectionStats, Role};
use super::convert::headers_of;
use super::error::NatsError;
use crate::sink::traits::Message;
use crate::sink::{
    Attempt, Batcher, DeadLetters, RetryPolicy, Sink, SinkCommon, SinkCounters, SinkStats,
    Undelivered, common_setters, deliver_batch,
};
use crate::util::Jitter;
use async_nats::jetstream::{self, message::PublishMessage, stream};
use pipeline_core::envelope::Envelope;
use pipeline_core::pool::HandlerError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a [`NatsSink`] publishes.
///
/// | setting | default | rule |
/// | --- | --- | --- |
/// | url ([`new`](Self::new)) | (required) | not empty |
/// | [`name`](Self::name) | `"nats"` | not empty |
/// | [`subject_prefix`](Self::subject_prefix) | `""` (subject = topic) | |
/// | [`create_stream`](Self::create_stream) | none (a stream must cover the subjects) | |
/// | [`max_batch`](Self::max_batch) | 128 | at least 1 |
/// | [`linger`](Self::linger) | 5 ms | |
/// | [`ack_timeout`](Self::ack_timeout) | 5 s | above zero |
/// | [`retry`](Self::retry) | 10 attempts, 100 ms to 2 s | see [`RetryPolicy`] |
/// | [`connect_timeout`](Self::connect_timeout) | 5 s | above zero |
/// | [`dead_letter`](Self::dead_letter) | none: counted and logged | |
#[derive(Debug, Clone)]
#[must_use]
pub struct NatsSinkConfig {
    url: String,
    common: SinkCommon,
    subject_prefix: String,
    create_stream: Option<(String, Vec<String>)>,
    max_batch: usize,
    linger: Duration,
    ack_timeout: Duration,
    connect_timeout: Duration,
}

impl NatsSinkConfig {
    /// Publish to the server at `url`, with the defaults in the table above.
    pub fn new(url: impl Into<String>) -> Self {
        let retry = RetryPolicy::new()
            .max_attempts(10)
            .initial_backoff(Duration::from_millis(100))
            .max_backoff(Duration::from_secs(2));
        NatsSinkConfig {
            url: url.into(),
            common: SinkCommon::new("nats", retry),
            subject_prefix: String::new(),
            create_stream: None,
            max_batch: 128,
            linger: Duration::from_millis(5),
            ack_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        }
    }

    common_setters!(
        name: "nats",
        retry: "How unacknowledged publishes are retried (default 10 attempts, backoff \
                100 ms doubling to 2 s: about 12 s in all, enough for a server restart).",
        dead_letter: "Where events go that could not be published (default: counted and logged)."
    );

    /// Publish `topic` on subject `prefix + topic` (default: no prefix).
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.subject_prefix = prefix.into();
        self
    }

    /// Create stream `name` with `subjects` and file storage if it does not exist.
    pub fn create_stream(mut self, name: impl Into<String>, subjects: Vec<String>) -> Self {
        self.create_stream = Some((name.into(), subjects));
        self
    }

    /// The most messages published before their acks are awaited together (default 128).
    pub fn max_batch(mut self, messages: usize) -> Self {
        self.max_batch = messages;
        self
    }

    /// How long a batch that is not full waits for more events (default 5 ms): the
    /// first event after that sends it, or, if none comes, the flush thread half a
    /// linger later.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// How long to wait for the server's ack of a publish (default 5 s).
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }

    /// The limit on connecting at start (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

/// Publishes events to JetStream in batches, waiting for the server's ack of each
/// message, retrying the unacknowledged ones; run it in a
/// [`SinkPool`](crate::sink::SinkPool).
///
/// Each event gets a `Nats-Msg-Id` (its own header of that name if it has one, else
/// one made by the sink) that stays the same across retries, so JetStream's duplicate
/// window (2 minutes by default) drops the copy when a publish whose ack was lost is
/// sent again. The client reconnects by itself after a server restart; publishes made
/// meanwhile are retried with backoff.
pub struct NatsSink {
    name: Arc<str>,
    subject_prefix: String,
    context: jetstream::Context,
    runtime: Arc<OwnedRuntime>,
    retry: RetryPolicy,
    batcher: Batcher,
    counters: SinkCounters,
    dead: DeadLetters,
    jitter: Mutex<Jitter>,
    /// Makes message ids unique to this sink.
    instance: String,
    next_id: AtomicU64,
    connection: Arc<ConnectionWatch>,
}

impl NatsSink {
    /// Connects (and creates the stream, if asked).
    ///
    /// # Errors
    ///
    /// [`NatsError::InvalidConfig`] naming a setting that breaks its rule,
    /// [`NatsError::Connect`] if the server cannot be reached within
    /// `connect_timeout`, [`NatsError::JetStream`] if the stream cannot be created,
    /// [`NatsError::Runtime`].
    pub fn connect(config: NatsSinkConfig) -> Result<NatsSink, NatsError> {
        let invalid = |field, rule: String| Err(NatsError::InvalidConfig { field, rule });
        if config.url.is_empty() {
            return invalid("url", "must not be empty".into());
        }
        if let Err((field, rule)) = config.common.validate() {
            return invalid(field, rule);
        }
        if config.max_batch == 0 {
            return invalid("max_batch", "must be at least 1".into());
        }
        if config.ack_timeout.is_zero() || config.connect_timeout.is_zero() {
            return invalid("ack_timeout", "timeouts must be above zero".into());
        }
        let SinkCommon {
            name,
            retry,
            dead_letter,
        } = config.common;
        let runtime = Arc::new(OwnedRuntime::new(
            crate::runtime::build(&name, 1).map_err(NatsError::Runtime)?,
        ));
        let connection = ConnectionWatch::new(Role::Sink, &name, &config.url);
        let context = runtime.handle().block_on(async {
            let client = super::connect(
                &config.url,
                &name,
                config.connect_timeout,
                connection.clone(),
            )
            .await?;
            let context = jetstream::ContextBuilder::new()
                .timeout(config.ack_timeout)
                .build(client);
            if let Some((name, subjects)) = &config.create_stream {
                context
                    .get_or_create_stream(stream::Config {
                        name: name.clone(),
                        subjects: subjects.clone(),
                        storage: stream::StorageType::File,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| NatsError::JetStream {
                        what: "creating the stream",
                        source: e.into(),
                    })?;
            }
            Ok::<_, NatsError>(context)
        })?;
        let mut jitter = Jitter::new();
        let instance = format!("{:016x}", (jitter.next_f64() * (u64::MAX as f64)) as u64);
        Ok(NatsSink {
            counters: SinkCounters::new(&name),
            name,
            subject_prefix: config.subject_prefix,
            context,
            runtime,
            retry,
            batcher: Batcher::new(config.max_batch, usize::MAX, config.linger),
            dead: DeadLetters::new(dead_letter),
            jitter: Mutex::new(jitter),
            instance,
            next_id: AtomicU64::new(0),
            connection,
        })
    }

    /// The connection to the server: connected now, disconnects, reconnects (each
    /// logged at warn). Reach it through [`SinkPool::sink`](crate::sink::SinkPool::sink).
    pub fn connection_stats(&self) -> NatsConnectionStats {
        self.connection.stats()
    }

    fn send(&self, batch: Vec<Envelope>) {
        // Prepare every message once, so retries resend the same ids.
        let mut pending = Vec::with_capacity(batch.len());
        for event in batch {
            let headers = match headers_of(&event) {
                Ok(headers) => headers,
                Err(problem) => {
                    self.counters.failed(1);
                    self.dead.send(Undelivered::new(
                        self.name.clone(),
                        vec![event],
                        Message(problem),
                        0,
                    ));
                    continue;
                }
            };
            let id = match event.header("Nats-Msg-Id") {
                Some(id) => id.to_owned(),
                None => format!(
                    "{}-{}",
                    self.instance,
                    self.next_id.fetch_add(1, Ordering::Relaxed)
                ),
            };
            let subject = format!("{}{}", self.subject_prefix, event.topic());
            pending.push((event, subject, headers, id));
        }
        if pending.is_empty() {
            return;
        }
        deliver_batch(
            &self.name,
            &self.counters,
            &self.dead,
            pending,
            |(event, ..)| event,
            |pending, attempt| {
                loop {
                    *attempt += 1;
                    let started = Instant::now();
                    let error = self.runtime.handle().block_on(self.publish_round(pending));
                    let outcome = match error {
                        None => Attempt::Ok,
                        Some(_) => Attempt::Failed,
                    };
                    self.counters
                        .attempt(started.elapsed(), outcome, *attempt > 1);
                    let error = error?;
                    if *attempt >= self.retry.attempts() {
                        return Some(error);
                    }
                    let wait = {
                        let mut jitter = self.jitter.lock().unwrap_or_else(|p| p.into_inner());
                        self.retry.backoff(*attempt, &mut jitter)
                    };
                    tracing::debug!(sink = %self.name, %error, unacked = pending.len(), attempt = *attempt, ?wait, "nats sink: retrying");
                    std::thread::sleep(wait);
                }
            },
        );
    }

    /// Publishes every message of `pending`, then awaits every ack; keeps in `pending`
    /// the ones not acked and returns the last error. Delivered ones are counted.
    async fn publish_round(&self, pending: &mut Vec<Pending>) -> Option<async_nats::Error> {
        let mut acks = Vec::with_capacity(pending.len());
        for (event, subject, headers, id) in pending.iter() {
            let publish = PublishMessage::build()
                .payload(event.payload().clone())
                .headers(headers.clone())
                .message_id(id);
            acks.push(self.context.send_publish(subject.clone(), publish).await);
        }
        let mut acked = Vec::with_capacity(acks.len());
        let mut last_error: Option<async_nats::Error> = None;
        for sent in acks {
            let outcome = match sent {
                Ok(ack) => ack.await.map(drop).map_err(Into::into),
                Err(error) => Err(error.into()),
            };
            match outcome {
                Ok(()) => acked.push(true),
                Err(error) => {
                    last_error = Some(error);
                    acked.push(false);
                }
            }
        }
        let delivered = acked.iter().filter(|&&ok| ok).count() as u64;
        if delivered > 0 {
            self.counters.delivered(delivered);
        }
        let mut acked = acked.into_iter();
        pending.retain(|_| !acked.next().unwrap_or(false));
        last_error
    }
}

/// A message ready to publish: the event, its subject, headers and message id (kept
/// across retries, so the server drops a duplicate).
type Pending = (Envelope, String, async_nats::HeaderMap, String);

impl Sink for NatsSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn handle(&self, event: Envelope) -> Result<(), HandlerError> {
        if let Some(batch) = self.batcher.push(event, &self.counters.buffered) {
            self.send(batch);
        }
        Ok(())
    }

    fn flush(&self, force: bool) {
        if let Some(batch) = self.batcher.take_due(force, &self.counters.buffered) {
            self.send(batch);
        }
    }

    fn flush_interval(&self) -> Option<Duration> {
        Some(self.batcher.flush_interval())
    }

    fn stats(&self) -> SinkStats {
        self.counters.stats()
    }

    fn dead_letter(&self, undelivered: Undelivered) {
        self.counters.failed(undelivered.events.len() as u64);
        self.dead.send(undelivered);
    }
}

impl std::fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSink")
            .field("name", &self.name)
            .field("subject_prefix", &self.subject_prefix)
            .finish_non_exhaustive()
    }
}
