//! File source with real rotation and truncation in a temp dir; the file sink.

mod common;

use pipeline_adapters::file::{FileSink, FileSinkConfig, FileSource, FileSourceConfig, StartAt};
use pipeline_adapters::json::{LineFormat, OutputFormat};
use pipeline_adapters::sink::{Sink, SinkPool};
use pipeline_adapters::source::Source;
use pipeline_core::bus::{Bus, Subscription, SubscriptionConfig};
use pipeline_core::envelope::Envelope;
use pipeline_core::pool::WorkerPool;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

fn append(path: &Path, text: &str) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

fn next(sub: &Subscription<Envelope>) -> String {
    let event = sub
        .recv_timeout(Duration::from_secs(5))
        .expect("a line within 5 s");
    String::from_utf8(event.payload().to_vec()).unwrap()
}

fn follow(path: &Path, start: StartAt) -> (Bus<Envelope>, Subscription<Envelope>, FileSource) {
    let bus = Bus::new();
    let sub = bus.subscribe(SubscriptionConfig::new("lines")).unwrap();
    let config = FileSourceConfig::new(path)
        .format(LineFormat::raw("app"))
        .start_at(start)
        .poll_interval(Duration::from_millis(20));
    let source = FileSource::spawn(config, bus.publisher()).unwrap();
    (bus, sub, source)
}

#[test]
fn follows_appends_and_survives_rotation_by_rename() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, "one\n");
    let (_bus, sub, mut source) = follow(&path, StartAt::Beginning);
    assert_eq!(next(&sub), "one");
    append(&path, "two\nthr");
    assert_eq!(next(&sub), "two");
    append(&path, "ee\n");
    assert_eq!(next(&sub), "three", "a partial line waits for its newline");

    // logrotate's default: rename, then a new file at the path.
    append(&path, "last of old\n");
    std::fs::rename(&path, dir.path().join("app.log.1")).unwrap();
    append(&dir.path().join("app.log.1"), "late write to old\n");
    append(&path, "first of new\n");
    assert_eq!(next(&sub), "last of old");
    assert_eq!(next(&sub), "late write to old");
    assert_eq!(next(&sub), "first of new");
    append(&path, "second of new\n");
    assert_eq!(next(&sub), "second of new");
    let stats = source.file_stats();
    assert_eq!(
        (stats.rotations, stats.truncations, stats.source.published),
        (1, 0, 7)
    );

    // Deleted and recreated later: waits, then reads the new file.
    std::fs::remove_file(&path).unwrap();
    append(&path, "after delete\n");
    assert_eq!(next(&sub), "after delete");
    source.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn survives_truncation_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, "aaaaaaaaaa\nbbbbbbbbbb\n");
    let (_bus, sub, mut source) = follow(&path, StartAt::Beginning);
    assert_eq!(next(&sub), "aaaaaaaaaa");
    assert_eq!(next(&sub), "bbbbbbbbbb");
    // copytruncate: the same file, emptied.
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    common::wait_until("the truncation to be seen", Duration::from_secs(5), || {
        source.file_stats().truncations == 1
    });
    append(&path, "c\n");
    assert_eq!(next(&sub), "c");
    assert_eq!(source.file_stats().rotations, 0);
    source.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn starts_at_the_end_when_asked_and_waits_for_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, "old\n");
    let (_bus, sub, mut source) = follow(&path, StartAt::End);
    // The source opens the file on its own thread, at a moment the test cannot see:
    // lines appended before that are skipped too. So append numbered lines until one
    // arrives; the first to arrive must be one of them, never "old".
    let first = (0..)
        .find_map(|n| {
            assert!(n < 500, "no appended line was read");
            append(&path, &format!("new {n}\n"));
            sub.recv_timeout(Duration::from_millis(50)).ok()
        })
        .unwrap();
    let first = String::from_utf8(first.payload().to_vec()).unwrap();
    assert!(first.starts_with("new "), "{first:?}");
    source.shutdown(Duration::from_secs(5)).unwrap();

    let missing = dir.path().join("later.log");
    let (_bus, sub, mut source) = follow(&missing, StartAt::Beginning);
    assert!(sub.recv_timeout(Duration::from_millis(100)).is_err());
    append(&missing, "appeared\n");
    assert_eq!(next(&sub), "appeared");
    source.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn the_file_sink_writes_every_event_as_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.ndjson");
    let bus = Bus::new();
    let sink = FileSink::append(&path, FileSinkConfig::new().format(OutputFormat::Json)).unwrap();
    let pool = SinkPool::builder(sink)
        .pool(WorkerPool::builder("out").workers(3))
        .spawn(bus.subscribe(SubscriptionConfig::new("out")).unwrap())
        .unwrap();
    for i in 0..500 {
        bus.publisher()
            .publish(Envelope::new("t", format!("{{\"i\":{i}}}")).with_key(format!("k{i}")))
            .unwrap();
    }
    let report = pool.shutdown(Duration::from_secs(10));
    assert!(report.flushed);
    assert_eq!(report.drain.left, 0);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut seen: Vec<u64> = text
        .lines()
        .map(|line| {
            let event = pipeline_adapters::json::decode_event(line.as_bytes()).unwrap();
            let value: serde_json::Value = serde_json::from_slice(event.payload()).unwrap();
            assert_eq!(event.key(), Some(format!("k{}", value["i"]).as_str()));
            value["i"].as_u64().unwrap()
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..500).collect::<Vec<_>>(),
        "every event once, lines never interleaved"
    );
    assert_eq!(report.sink.stats().delivered, 500);
}

/// A reader that hands out what the test sends, and ends when the sender is dropped:
/// standard input, driven by hand.
struct Feed {
    chunks: mpsc::Receiver<Vec<u8>>,
    pending: Vec<u8>,
}

impl Read for Feed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pending.is_empty() {
            match self.chunks.recv() {
                Ok(chunk) => self.pending = chunk,
                Err(mpsc::RecvError) => return Ok(0),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}

/// One `FileSource` type reads a reader as it follows a file (issue 18 merged
/// `ReaderSource` into it); dropping the handle of one reading a reader still does not
/// stop it (it reads on to the end of its input), as `ReaderSource` did.
#[test]
fn a_reader_is_read_to_its_end_even_after_its_handle_is_dropped() {
    let bus = Bus::new();
    let sub = bus.subscribe(SubscriptionConfig::new("lines")).unwrap();
    let (feed, chunks) = mpsc::channel();
    let reader = Feed {
        chunks,
        pending: Vec::new(),
    };
    let config = FileSourceConfig::new("-")
        .format(LineFormat::raw("stdin"))
        .max_line_bytes(16);
    let source = FileSource::spawn_reader(reader, config, bus.publisher()).unwrap();
    feed.send(b"first\nover sixteen bytes long\n".to_vec())
        .unwrap();
    assert_eq!(next(&sub), "first");
    common::wait_until(
        "the long line to be refused",
        Duration::from_secs(5),
        || source.file_stats().oversized == 1,
    );
    assert_eq!(source.stats().rejected, 1);

    drop(source);
    feed.send(b"after the drop\nthe last one".to_vec()).unwrap();
    drop(feed); // end of input
    assert_eq!(next(&sub), "after the drop");
    assert_eq!(next(&sub), "the last one", "a last line needs no newline");
}

#[test]
fn dropping_a_source_that_follows_a_file_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, "one\n");
    let (_bus, sub, source) = follow(&path, StartAt::Beginning);
    assert_eq!(next(&sub), "one");
    drop(source);
    append(&path, "two\n");
    // Ten poll intervals: a running source would have read it.
    assert!(sub.recv_timeout(Duration::from_millis(200)).is_err());
}
