//! [`HttpSink`]: batches of events POSTed as NDJSON, with retries.

use super::error::{HttpAttemptError, HttpSinkError};
use crate::json::encode_line;
use crate::sink::{
    Attempt, Batcher, DeadLetters, RetryPolicy, Sink, SinkCommon, SinkCounters, SinkStats,
    Undelivered, common_setters, deliver_batch,
};
use crate::util::Jitter;
use pipeline_core::envelope::Envelope;
use pipeline_core::pool::HandlerError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How an [`HttpSink`] delivers.
///
/// | setting | default | rule |
/// | --- | --- | --- |
/// | endpoint ([`new`](Self::new)) | (required) | starts with `http://` (or `https://` with feature `http-tls`) |
/// | [`name`](Self::name) | `"http"` | not empty |
/// | [`max_batch_events`](Self::max_batch_events) | 100 | at least 1 |
/// | [`max_batch_bytes`](Self::max_batch_bytes) | 1 MiB | at least 1 |
/// | [`linger`](Self::linger) | 50 ms | |
/// | [`timeout`](Self::timeout) | 10 s | above zero; per attempt, connecting included |
/// | [`retry`](Self::retry) | [`RetryPolicy::default`] (5 attempts) | see there |
/// | [`bearer_token`](Self::bearer_token) | none | |
/// | [`header`](Self::header) | none | |
/// | [`dead_letter`](Self::dead_letter) | none: counted and logged | |
///
/// A batch is sent when it holds `max_batch_events` events or `max_batch_bytes` bytes
/// (by [`Envelope::size`]), or with the first event after its `linger` (without one,
/// by the flush thread within about two lingers). Memory held is at most
/// one open batch plus one batch per pool worker.
///
/// # Examples
///
/// ```
/// use pipeline_adapters::http::HttpSinkConfig;
/// use pipeline_adapters::sink::RetryPolicy;
/// use std::time::Duration;
///
/// let config = HttpSinkConfig::new("http://127.0.0.1:9/ingest")
///     .max_batch_events(500)
///     .linger(Duration::from_millis(20))
///     .retry(RetryPolicy::new().max_attempts(8))
///     .dead_letter(|undelivered| eprintln!("{undelivered}"));
/// # let _ = config;
/// ```
#[derive(Clone)]
#[must_use]
pub struct HttpSinkConfig {
    endpoint: String,
    common: SinkCommon,
    max_batch_events: usize,
    max_batch_bytes: usize,
    linger: Duration,
    timeout: Duration,
    bearer_token: Option<String>,
    headers: Vec<(String, String)>,
}

impl HttpSinkConfig {
    /// Deliver to `endpoint` (a full URL), with the defaults in the table above.
    pub fn new(endpoint: impl Into<String>) -> Self {
        HttpSinkConfig {
            endpoint: endpoint.into(),
            common: SinkCommon::new("http", RetryPolicy::default()),
            max_batch_events: 100,
            max_batch_bytes: 1024 * 1024,
            linger: Duration::from_millis(50),
            timeout: Duration::from_secs(10),
            bearer_token: None,
            headers: Vec::new(),
        }
    }

    common_setters!(
        name: "http",
        retry: "How failed attempts are retried (default [`RetryPolicy::default`]).",
        dead_letter: "Where batches go that could not be delivered (default: counted and logged)."
    );

    /// The most events in one request (default 100).
    pub fn max_batch_events(mut self, events: usize) -> Self {
        self.max_batch_events = events;
        self
    }

    /// The most bytes in one request, by [`Envelope::size`] (default 1 MiB).
    pub fn max_batch_bytes(mut self, bytes: usize) -> Self {
        self.max_batch_bytes = bytes;
        self
    }

    /// How long a batch that is not full waits for more events (default 50 ms): the
    /// first event after that sends it, or, if none comes, the flush thread half a
    /// linger later.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// The limit on one attempt, from connecting to reading the answer (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Send `Authorization: Bearer <token>`.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer_token = Some(token.into());
        self
    }

    /// Send this header with every request (call again for more).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

// Not derived: the bearer token and the headers (which may hold credentials) stay out.
impl std::fmt::Debug for HttpSinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSinkConfig")
            .field("endpoint", &self.endpoint)
            .field("common", &self.common)
            .field("max_batch_events", &self.max_batch_events)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("linger", &self.linger)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// POSTs batches of events as NDJSON (`Content-Type: application/x-ndjson`, one
/// [JSON event](crate::json) per line) to an endpoint; run it in a
/// [`SinkPool`](crate::sink::SinkPool).
///
/// A `2xx` answer delivers the batch. `408`, `429`, `5xx`, timeouts and connection
/// errors are retried by the [`RetryPolicy`] (a `429` or `503` with `Retry-After`
/// waits at least that long, up to the policy's `max_backoff`); other statuses, and the
/// last failed attempt, send the whole batch to the dead-letter hook.
///
/// # Examples
///
/// ```
/// use pipeline_adapters::http::{HttpSink, HttpSinkConfig};
/// use pipeline_adapters::sink::SinkPool;
/// use pipeline_core::bus::{Bus, SubscriptionConfig};
/// use pipeline_core::pool::WorkerPool;
///
/// let bus = Bus::new();
/// let sink = HttpSink::new(HttpSinkConfig::new("http://127.0.0.1:9/ingest")).unwrap();
/// let pool = SinkPool::builder(sink)
///     // The controller may run up to 16 requests at once.
///     .pool(WorkerPool::builder("emit").workers(2).max_workers(16))
///     .spawn(bus.subscribe(SubscriptionConfig::new("emit")).unwrap())
///     .unwrap();
/// assert_eq!(pool.pool().resize(8).unwrap(), 8);
/// ```
pub struct HttpSink {
    name: Arc<str>,
    endpoint: String,
    agent: ureq::Agent,
    authorization: Option<String>,
    headers: Vec<(String, String)>,
    retry: RetryPolicy,
    batcher: Batcher,
    counters: SinkCounters,
    dead: DeadLetters,
    jitter: Mutex<Jitter>,
}

impl HttpSink {
    /// A sink delivering as `config` says.
    ///
    /// # Errors
    ///
    /// [`HttpSinkError::InvalidConfig`] naming a setting that breaks its rule.
    pub fn new(config: HttpSinkConfig) -> Result<HttpSink, HttpSinkError> {
        let invalid = |field, rule: String| Err(HttpSinkError::InvalidConfig { field, rule });
        let scheme_ok = config.endpoint.starts_with("http://")
            || (cfg!(feature = "http-tls") && config.endpoint.starts_with("https://"));
        if !scheme_ok {
            let allowed = if cfg!(feature = "http-tls") {
                "http:// or https://"
            } else {
                "http:// (https:// needs the http-tls feature)"
            };
            return invalid(
                "endpoint",
                format!("{:?} must start with {allowed}", config.endpoint),
            );
        }
        if let Err((field, rule)) = config.common.validate() {
            return invalid(field, rule);
        }
        if config.max_batch_events == 0 {
            return invalid("max_batch_events", "must be at least 1".into());
        }
        if config.max_batch_bytes == 0 {
            return invalid("max_batch_bytes", "must be at least 1".into());
        }
        if config.timeout.is_zero() {
            return invalid("timeout", "must be above zero".into());
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(config.timeout))
            .build()
            .new_agent();
        let SinkCommon {
            name,
            retry,
            dead_letter,
        } = config.common;
        Ok(HttpSink {
            counters: SinkCounters::new(&name),
            name,
            endpoint: config.endpoint,
            agent,
            authorization: config.bearer_token.map(|t| format!("Bearer {t}")),
            headers: config.headers,
            retry,
            batcher: Batcher::new(
                config.max_batch_events,
                config.max_batch_bytes,
                config.linger,
            ),
            dead: DeadLetters::new(dead_letter),
            jitter: Mutex::new(Jitter::new()),
        })
    }

    /// One POST of `body`; the server's `Retry-After`, if any, comes with a failure.
    fn attempt(&self, body: &[u8]) -> Result<(), (HttpAttemptError, Option<Duration>)> {
        let mut request = self
            .agent
            .post(&self.endpoint)
            .header("Content-Type", "application/x-ndjson");
        if let Some(authorization) = &self.authorization {
            request = request.header("Authorization", authorization);
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let mut response = request
            .send(body)
            .map_err(|e| (HttpAttemptError::Transport(e), None))?;
        let status = response.status().as_u16();
        // Read what the server said, so the connection can be reused.
        let _ = response
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_vec();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let retryable = status == 408 || status == 429 || status >= 500;
        Err((HttpAttemptError::Status { status, retryable }, retry_after))
    }

    /// Delivers a closed batch: one POST, retried as the policy says; gives up on it
    /// (dead letter) after the last failed attempt or a panic.
    fn send(&self, batch: Vec<Envelope>) {
        deliver_batch(
            &self.name,
            &self.counters,
            &self.dead,
            batch,
            |e| e,
            |batch, attempt| {
                let mut body =
                    Vec::with_capacity(batch.iter().map(|e| e.payload().len() + 96).sum());
                for event in batch.iter() {
                    encode_line(event, &mut body);
                }
                loop {
                    *attempt += 1;
                    let started = Instant::now();
                    let outcome = self.attempt(&body);
                    let elapsed = started.elapsed();
                    let retry = *attempt > 1;
                    let (error, retry_after) = match outcome {
                        Ok(()) => {
                            self.counters.attempt(elapsed, Attempt::Ok, retry);
                            self.counters.delivered(batch.len() as u64);
                            batch.clear();
                            return None;
                        }
                        Err(failure) => failure,
                    };
                    self.counters.attempt(elapsed, Attempt::Failed, retry);
                    if !error.is_retryable() || *attempt >= self.retry.attempts() {
                        return Some(error.into());
                    }
                    let mut wait = {
                        let mut jitter = self.jitter.lock().unwrap_or_else(|p| p.into_inner());
                        self.retry.backoff(*attempt, &mut jitter)
                    };
                    if let Some(asked) = retry_after {
                        wait = wait.max(asked.min(self.retry.backoff_ceiling(u32::MAX)));
                    }
                    tracing::debug!(sink = %self.name, %error, attempt = *attempt, ?wait, "http sink: retrying");
                    std::thread::sleep(wait);
                }
            },
        );
    }
}

impl Sink for HttpSink {
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

impl std::fmt::Debug for HttpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSink")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_debug_leaves_credentials_out() {
        let config = HttpSinkConfig::new("http://127.0.0.1:9/")
            .name("emit")
            .bearer_token("s3cret")
            .header("x-api-key", "k3y")
            .dead_letter(|_| {});
        let text = format!("{config:?}");
        assert!(text.contains("name: \"emit\""), "{text}");
        assert!(text.contains("dead_letter: Some(\"..\")"), "{text}");
        assert!(!text.contains("s3cret") && !text.contains("k3y"), "{text}");
    }
}
