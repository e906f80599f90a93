//! [`FileSource`]: a file followed like `tail -F`, or a reader (stdin) read to its end.

use crate::json::LineFormat;
use crate::source::counters::Counted;
use crate::source::{JoinError, Reject, Source, SourceCounters, SourceStats};
use crate::util::lines::{Line, LineReader};
use crate::util::{StopSignal, ThreadGroup};
use pipeline_core::bus::Publisher;
use pipeline_core::envelope::Envelope;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where a [`FileSource`] starts in the file it finds when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StartAt {
    /// From the first line (the default): nothing written before the start is missed.
    #[default]
    Beginning,
    /// From the end, like `tail -F`: only lines written from now on.
    End,
}

/// How to run a [`FileSource`] (one reading a reader uses `name`, `format` and
/// `max_line_bytes`).
///
/// | setting | default | rule |
/// | --- | --- | --- |
/// | path ([`new`](Self::new)) | (required) | |
/// | [`name`](Self::name) | `"file"` | not empty |
/// | [`format`](Self::format) | raw lines on topic `"file"` | |
/// | [`start_at`](Self::start_at) | [`StartAt::Beginning`] | |
/// | [`max_line_bytes`](Self::max_line_bytes) | 64 KiB | at least 1 |
/// | [`poll_interval`](Self::poll_interval) | 250 ms | above zero |
#[derive(Debug, Clone)]
#[must_use]
pub struct FileSourceConfig {
    path: PathBuf,
    name: Arc<str>,
    format: LineFormat,
    start_at: StartAt,
    max_line_bytes: usize,
    poll_interval: Duration,
}

impl FileSourceConfig {
    /// Follow `path` (for [`FileSource::spawn_reader`] and [`FileSource::stdin`]: any
    /// path, it is not used).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSourceConfig {
            path: path.into(),
            name: "file".into(),
            format: LineFormat::raw("file"),
            start_at: StartAt::Beginning,
            max_line_bytes: 64 * 1024,
            poll_interval: Duration::from_millis(250),
        }
    }

    /// The name in logs, thread names and the `source` metrics label (default `"file"`).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// How a line becomes an event (default: raw lines on topic `"file"`).
    pub fn format(mut self, format: LineFormat) -> Self {
        self.format = format;
        self
    }

    /// Where to start in the file found at start (default [`StartAt::Beginning`]).
    /// Files that appear later, by rotation, are always read from their start.
    pub fn start_at(mut self, start: StartAt) -> Self {
        self.start_at = start;
        self
    }

    /// The longest line, in bytes (default 64 KiB); longer ones are skipped and counted.
    pub fn max_line_bytes(mut self, bytes: usize) -> Self {
        self.max_line_bytes = bytes;
        self
    }

    /// How often to look for new lines, a rotation or a truncation at the end of the
    /// file (default 250 ms).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    fn validate(&self) -> io::Result<()> {
        let invalid =
            |rule: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, rule.to_owned()));
        if self.name.is_empty() {
            return invalid("invalid `name`: must not be empty");
        }
        if self.max_line_bytes == 0 {
            return invalid("invalid `max_line_bytes`: must be at least 1");
        }
        if self.poll_interval.is_zero() {
            return invalid("invalid `poll_interval`: must be above zero");
        }
        Ok(())
    }
}

/// A [`FileSource`]'s counters beyond the common [`SourceStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileSourceStats {
    /// The counters every source keeps.
    pub source: SourceStats,
    /// Rotations seen (the path named a new file).
    pub rotations: u64,
    /// Truncations seen (the file became shorter than what was read).
    pub truncations: u64,
    /// Lines longer than `max_line_bytes`, skipped (in `source.rejected` as `too_large`,
    /// not in `source.malformed`).
    pub oversized: u64,
}

struct Shared {
    name: Arc<str>,
    format: LineFormat,
    publisher: Publisher<Envelope>,
    stop: StopSignal,
    counters: SourceCounters,
    rotations: Counted,
    truncations: Counted,
}

impl Shared {
    fn new(name: &Arc<str>, format: LineFormat, publisher: Publisher<Envelope>) -> Self {
        metrics::describe_counter!(
            "pipeline_file_source_reopens_total",
            "Times a file source reopened its path, by reason: rotation, truncation."
        );
        Shared {
            counters: SourceCounters::new(name, &[Reject::Malformed, Reject::TooLarge]),
            rotations: Counted::labelled(
                "pipeline_file_source_reopens_total",
                name,
                "reason",
                "rotation",
            ),
            truncations: Counted::labelled(
                "pipeline_file_source_reopens_total",
                name,
                "reason",
                "truncation",
            ),
            name: name.clone(),
            format,
            publisher,
            stop: StopSignal::new(),
        }
    }

    /// Publishes every line `reader` has now, numbering them on from `number`; with
    /// `final_eof` a last line without a newline too. `false` when the source should
    /// stop; `true` at the end of what there is, or after a read error (logged).
    fn lines<R: Read>(
        &self,
        reader: &mut LineReader<R>,
        number: &mut usize,
        final_eof: bool,
    ) -> bool {
        loop {
            if self.stop.is_stopped() {
                return false;
            }
            match reader.read_line(final_eof) {
                Ok(Some(line)) => {
                    *number += 1;
                    if !self.line(line, *number) {
                        return false;
                    }
                }
                Ok(None) => return true,
                Err(error) => {
                    tracing::warn!(source = %self.name, %error, "file source: read failed");
                    return true;
                }
            }
        }
    }

    /// Publishes one line; `false` when the source should stop.
    fn line(&self, line: Line, number: usize) -> bool {
        let bytes = match line {
            Line::Complete(bytes) => bytes,
            Line::Oversized(length) => {
                self.counters.rejects.add(Reject::TooLarge);
                tracing::debug!(source = %self.name, line = number, length, "file source: oversized line skipped");
                return true;
            }
        };
        if matches!(self.format, LineFormat::Json) && bytes.iter().all(u8::is_ascii_whitespace) {
            return true;
        }
        match self.format.decode(bytes, number) {
            Ok(event) => {
                self.counters.received.add(1);
                self.counters
                    .publish_blocking(&self.publisher, event, &self.stop)
            }
            Err(error) => {
                self.counters.rejects.add(Reject::Malformed);
                tracing::debug!(source = %self.name, %error, "file source: malformed line skipped");
                true
            }
        }
    }
}

/// A running line source: follows a file like `tail -F` ([`spawn`](Self::spawn)), or
/// reads any reader to its end, stdin for one ([`spawn_reader`](Self::spawn_reader),
/// [`stdin`](Self::stdin)); one event per line. See the [module docs](super) for
/// rotation and truncation.
///
/// A read from a reader cannot be interrupted: after [`stop`](Source::stop) such a
/// source ends at the next line or the end of input, and [`join`](Source::join) may
/// time out until then (the thread then ends on its own).
pub struct FileSource {
    shared: Arc<Shared>,
    threads: ThreadGroup,
    /// Whether dropping the handle stops the source: yes when it follows a file; a
    /// reader is read on to its end.
    stop_on_drop: bool,
}

impl FileSource {
    /// Starts following `config.path` on a thread (the file need not exist yet).
    ///
    /// Dropping the returned handle stops the source.
    ///
    /// # Errors
    ///
    /// `InvalidInput` naming a setting that breaks its rule, or the error of starting
    /// the thread.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_adapters::file::{FileSource, FileSourceConfig};
    /// use pipeline_adapters::json::LineFormat;
    /// use pipeline_adapters::source::Source;
    /// use pipeline_core::bus::{Bus, SubscriptionConfig};
    /// use std::time::Duration;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("app.log");
    /// std::fs::write(&path, "started\n").unwrap();
    ///
    /// let bus = Bus::new();
    /// let lines = bus.subscribe(SubscriptionConfig::new("logs")).unwrap();
    /// let config = FileSourceConfig::new(&path).format(LineFormat::raw("app.log"));
    /// let mut source = FileSource::spawn(config, bus.publisher()).unwrap();
    /// let event = lines.recv_timeout(Duration::from_secs(5)).unwrap();
    /// assert_eq!((event.topic(), event.payload().as_ref()), ("app.log", &b"started"[..]));
    /// source.shutdown(Duration::from_secs(5)).unwrap();
    /// ```
    pub fn spawn(
        config: FileSourceConfig,
        publisher: Publisher<Envelope>,
    ) -> io::Result<FileSource> {
        Self::start(config, publisher, "follow", true, |config, shared| {
            // The file is this source's peer: every line logged carries both.
            let span = tracing::info_span!("file_source", source = %config.name, path = %config.path.display());
            let _entered = span.enter();
            follow(&config, shared);
        })
    }

    /// Reads `reader` on a thread to its end, as `config` says (its path, start and
    /// poll settings are not used).
    ///
    /// Dropping the returned handle does not stop the source: it reads on to the end
    /// of its input. Stop it with [`stop`](Source::stop).
    ///
    /// # Errors
    ///
    /// `InvalidInput` naming a setting that breaks its rule, or the error of starting
    /// the thread.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_adapters::file::{FileSource, FileSourceConfig};
    /// use pipeline_adapters::json::LineFormat;
    /// use pipeline_adapters::source::Source;
    /// use pipeline_core::bus::{Bus, SubscriptionConfig};
    /// use std::time::Duration;
    ///
    /// let bus = Bus::new();
    /// let events = bus.subscribe(SubscriptionConfig::new("in")).unwrap();
    /// let input = std::io::Cursor::new(b"{\"topic\":\"a\"}\nnot json\n{\"topic\":\"b\"}\n".to_vec());
    /// let config = FileSourceConfig::new("-").format(LineFormat::Json);
    /// let mut source = FileSource::spawn_reader(input, config, bus.publisher()).unwrap();
    /// source.join(Duration::from_secs(5)).unwrap(); // ends with its input
    /// assert_eq!(events.len(), 2);
    /// assert_eq!(source.stats().malformed, 1);
    /// ```
    pub fn spawn_reader(
        reader: impl Read + Send + 'static,
        config: FileSourceConfig,
        publisher: Publisher<Envelope>,
    ) -> io::Result<FileSource> {
        Self::start(config, publisher, "read", false, |config, shared| {
            let span = tracing::info_span!("reader_source", source = %config.name);
            let _entered = span.enter();
            read_to_end(reader, &config, shared);
        })
    }

    /// Reads standard input ([`spawn_reader`](Self::spawn_reader) on stdin).
    ///
    /// # Errors
    ///
    /// As [`spawn_reader`](Self::spawn_reader).
    pub fn stdin(
        config: FileSourceConfig,
        publisher: Publisher<Envelope>,
    ) -> io::Result<FileSource> {
        Self::spawn_reader(io::stdin(), config, publisher)
    }

    /// Checks `config` and runs `read` on a thread named `<name>-<role>`.
    fn start(
        config: FileSourceConfig,
        publisher: Publisher<Envelope>,
        role: &str,
        stop_on_drop: bool,
        read: impl FnOnce(FileSourceConfig, &Shared) + Send + 'static,
    ) -> io::Result<FileSource> {
        config.validate()?;
        let shared = Arc::new(Shared::new(&config.name, config.format.clone(), publisher));
        let threads = ThreadGroup::new();
        let thread_shared = shared.clone();
        threads.spawn(format!("{}-{role}", config.name), move || {
            read(config, &thread_shared)
        })?;
        Ok(FileSource {
            shared,
            threads,
            stop_on_drop,
        })
    }

    /// Rotation and truncation counters, and the common ones.
    pub fn file_stats(&self) -> FileSourceStats {
        let s = &self.shared;
        FileSourceStats {
            source: s.counters.stats(),
            rotations: s.rotations.get(),
            truncations: s.truncations.get(),
            oversized: s.counters.rejects.get(Reject::TooLarge),
        }
    }
}

/// (device, inode): what identifies a file across renames.
fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

fn open(path: &Path) -> Option<(File, (u64, u64))> {
    let file = File::open(path).ok()?;
    let id = identity(&file.metadata().ok()?);
    Some((file, id))
}

fn follow(config: &FileSourceConfig, shared: &Shared) {
    let stop = &shared.stop;
    // Wait for the file to exist.
    let (mut file, mut id) = loop {
        if let Some(found) = open(&config.path) {
            break found;
        }
        if stop.sleep(config.poll_interval) {
            return;
        }
    };
    let skipped = match config.start_at {
        StartAt::End => file.seek(SeekFrom::End(0)).unwrap_or(0),
        StartAt::Beginning => 0,
    };
    let mut reader = LineReader::new(file, config.max_line_bytes);
    // Count the skipped part as read, so the truncation check compares right.
    reader.set_offset(skipped);
    let mut number = 0usize;
    loop {
        // Everything there is now.
        if !shared.lines(&mut reader, &mut number, false) {
            return;
        }
        if stop.sleep(config.poll_interval) {
            return;
        }
        match std::fs::metadata(&config.path) {
            Ok(meta) if identity(&meta) != id => {
                // Rotated: the old file may have got lines since the last read.
                while let Ok(Some(line)) = reader.read_line(false) {
                    number += 1;
                    if !shared.line(line, number) {
                        return;
                    }
                }
                let Some((next, next_id)) = open(&config.path) else {
                    continue; // replaced again meanwhile: look next time
                };
                shared.rotations.add(1);
                tracing::info!(source = %shared.name, path = %config.path.display(), "file source: rotated");
                let rest = reader.replace(next);
                id = next_id;
                number = 0;
                if !rest.is_empty() && !shared.line(Line::Complete(rest), number) {
                    return;
                }
            }
            Ok(meta) if meta.len() < reader.offset() => {
                shared.truncations.add(1);
                tracing::info!(source = %shared.name, path = %config.path.display(), "file source: truncated");
                if reader.get_mut().seek(SeekFrom::Start(0)).is_ok() {
                    reader.take_partial();
                    reader.set_offset(0);
                    number = 0;
                }
            }
            // Same file (read on), or gone for now (keep the old one open and wait).
            _ => {}
        }
    }
}

/// Reads `reader` line by line to its end (or a read error), or until stopped.
fn read_to_end(reader: impl Read, config: &FileSourceConfig, shared: &Shared) {
    let mut lines = LineReader::new(reader, config.max_line_bytes);
    shared.lines(&mut lines, &mut 0, true);
}

impl Source for FileSource {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn stats(&self) -> SourceStats {
        self.shared.counters.stats()
    }

    fn stop(&self) {
        self.shared.stop.stop();
    }

    fn join(&mut self, timeout: Duration) -> Result<(), JoinError> {
        self.threads.join(timeout)
    }
}

impl Drop for FileSource {
    /// A source that follows a file stops, and its thread is waited for (at most a
    /// second: it wakes from its poll at once), so nothing is published after the drop.
    /// A reader is read on to its end (it may be blocked in `read`).
    fn drop(&mut self) {
        if self.stop_on_drop {
            self.stop();
            let _ = self.threads.join(Duration::from_secs(1));
        }
    }
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}
