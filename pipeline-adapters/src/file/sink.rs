//! [`FileSink`]: events as lines to a file or stdout.

use crate::json::OutputFormat;
use crate::sink::{
    Attempt, DeadLetters, RetryPolicy, Sink, SinkCommon, SinkCounters, SinkStats, Undelivered,
    common_setters,
};
use pipeline_core::envelope::Envelope;
use pipeline_core::pool::HandlerError;
use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a [`FileSink`] writes.
///
/// | setting | default | rule |
/// | --- | --- | --- |
/// | [`name`](Self::name) | `"file"` | not empty |
/// | [`format`](Self::format) | [`OutputFormat::Json`] | |
/// | [`flush_interval`](Self::flush_interval) | 100 ms | above zero |
/// | [`buffer_bytes`](Self::buffer_bytes) | 64 KiB | at least 1 |
/// | [`dead_letter`](Self::dead_letter) | none: counted and logged | |
#[derive(Debug, Clone)]
#[must_use]
pub struct FileSinkConfig {
    /// Its retry policy is one attempt: a write is not retried (see [`FileSink`]).
    common: SinkCommon,
    format: OutputFormat,
    flush_interval: Duration,
    buffer_bytes: usize,
}

impl Default for FileSinkConfig {
    fn default() -> Self {
        FileSinkConfig {
            common: SinkCommon::new("file", RetryPolicy::new().max_attempts(1)),
            format: OutputFormat::Json,
            flush_interval: Duration::from_millis(100),
            buffer_bytes: 64 * 1024,
        }
    }
}

impl FileSinkConfig {
    /// The defaults in the table above.
    pub fn new() -> Self {
        Self::default()
    }

    common_setters!(
        name: "file",
        retry: none,
        dead_letter: "Where events go that could not be written (default: counted and logged)."
    );

    /// How an event becomes a line (default [`OutputFormat::Json`]).
    pub fn format(mut self, format: OutputFormat) -> Self {
        self.format = format;
        self
    }

    /// How often the buffer is flushed (default 100 ms): the longest a written event
    /// waits in memory.
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// The write buffer's size (default 64 KiB); a full buffer is written at once.
    pub fn buffer_bytes(mut self, bytes: usize) -> Self {
        self.buffer_bytes = bytes;
        self
    }
}

/// Writes each event as a line to a file (appending), stdout, or any writer; run it in
/// a [`SinkPool`](crate::sink::SinkPool). Lines from several workers never interleave.
///
/// A write error fails that event (it goes to the dead-letter hook) and is not
/// retried: a full disk does not heal by waiting a few milliseconds.
///
/// # Examples
///
/// ```
/// use pipeline_adapters::file::{FileSink, FileSinkConfig};
/// use pipeline_adapters::json::OutputFormat;
/// use pipeline_adapters::sink::SinkPool;
/// use pipeline_core::bus::{Bus, SubscriptionConfig};
/// use pipeline_core::envelope::Envelope;
/// use std::time::Duration;
///
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("out.log");
/// let bus = Bus::new();
/// let sink = FileSink::append(&path, FileSinkConfig::new().format(OutputFormat::Payload)).unwrap();
/// let pool = SinkPool::builder(sink)
///     .spawn(bus.subscribe(SubscriptionConfig::new("out")).unwrap())
///     .unwrap();
/// bus.publisher().publish(Envelope::new("t", "line one")).unwrap();
/// pool.shutdown(Duration::from_secs(5)); // drains, then flushes
/// assert_eq!(std::fs::read_to_string(&path).unwrap(), "line one\n");
/// ```
pub struct FileSink {
    name: Arc<str>,
    format: OutputFormat,
    flush_interval: Duration,
    out: Mutex<BufWriter<Box<dyn Write + Send>>>,
    counters: SinkCounters,
    dead: DeadLetters,
}

impl FileSink {
    /// Appends to `path`, creating it if needed.
    ///
    /// # Errors
    ///
    /// The error of opening the file, or `InvalidInput` naming a setting that breaks
    /// its rule.
    pub fn append(path: impl AsRef<Path>, config: FileSinkConfig) -> io::Result<FileSink> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Self::from_writer(file, config)
    }

    /// Writes to standard output.
    ///
    /// # Errors
    ///
    /// `InvalidInput` naming a setting that breaks its rule.
    pub fn stdout(config: FileSinkConfig) -> io::Result<FileSink> {
        Self::from_writer(io::stdout(), config)
    }

    /// Writes to `writer`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` naming a setting that breaks its rule.
    pub fn from_writer(
        writer: impl Write + Send + 'static,
        config: FileSinkConfig,
    ) -> io::Result<FileSink> {
        let invalid =
            |rule: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, rule.to_owned()));
        if let Err((field, rule)) = config.common.validate() {
            return invalid(&format!("invalid `{field}`: {rule}"));
        }
        if config.flush_interval.is_zero() {
            return invalid("invalid `flush_interval`: must be above zero");
        }
        if config.buffer_bytes == 0 {
            return invalid("invalid `buffer_bytes`: must be at least 1");
        }
        Ok(FileSink {
            counters: SinkCounters::new(&config.common.name),
            name: config.common.name,
            format: config.format,
            flush_interval: config.flush_interval,
            out: Mutex::new(BufWriter::with_capacity(
                config.buffer_bytes,
                Box::new(writer) as Box<dyn Write + Send>,
            )),
            dead: DeadLetters::new(config.common.dead_letter),
        })
    }
}

impl Sink for FileSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn handle(&self, event: Envelope) -> Result<(), HandlerError> {
        let mut line = Vec::with_capacity(event.payload().len() + 96);
        self.format.write(&event, &mut line);
        let started = Instant::now();
        let written = self
            .out
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_all(&line);
        match written {
            Ok(()) => {
                self.counters.attempt(started.elapsed(), Attempt::Ok, false);
                self.counters.delivered(1);
                Ok(())
            }
            Err(error) => {
                self.counters
                    .attempt(started.elapsed(), Attempt::Failed, false);
                Err(HandlerError::new(error))
            }
        }
    }

    fn flush(&self, _force: bool) {
        if let Err(error) = self.out.lock().unwrap_or_else(|p| p.into_inner()).flush() {
            tracing::warn!(sink = %self.name, %error, "file sink: flush failed");
        }
    }

    fn flush_interval(&self) -> Option<Duration> {
        Some(self.flush_interval)
    }

    fn stats(&self) -> SinkStats {
        self.counters.stats()
    }

    fn dead_letter(&self, undelivered: Undelivered) {
        self.counters.failed(undelivered.events.len() as u64);
        self.dead.send(undelivered);
    }
}

impl std::fmt::Debug for FileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink")
            .field("name", &self.name)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}
