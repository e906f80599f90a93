//! Files and standard streams (feature `file`): [`FileSource`] follows a file like
//! `tail -F` ([`FileSource::spawn`]) or reads any reader to its end, stdin for one
//! ([`FileSource::spawn_reader`], [`FileSource::stdin`]); [`FileSink`] appends to a
//! file or writes to stdout.
//!
//! # Following a file
//!
//! [`FileSource`] reads the file line by line ([`LineFormat`](crate::json::LineFormat):
//! raw lines on a topic by default, or JSON events). At the end of the file it looks,
//! every `poll_interval`, at what the path names:
//!
//! | what it sees | what it does |
//! | --- | --- |
//! | the same file, longer | reads the new lines |
//! | the same file, shorter than what was read | **truncated** (`copytruncate`): reads again from the start |
//! | another file (a new inode) | **rotated** (rename and recreate): finishes the old file, then reads the new one from its start |
//! | nothing | keeps the old file open and waits for the path to reappear |
//!
//! A last line without a newline waits for its newline; at a rotation it is published
//! as it is. Inode and size checks at a poll interval can miss a truncation followed,
//! within one interval, by writes past the old length; rotate by rename to be exact.
//! Offsets are not persisted: a restarted source starts by [`StartAt`].
//!
//! **Back pressure.** The source publishes each line before reading the next and waits
//! while the bus pushes back: the rest stays in the file.
//!
//! # Writing
//!
//! [`FileSink`] writes each event as a line ([`OutputFormat`](crate::json::OutputFormat)),
//! through a buffer flushed every `flush_interval` and at shutdown.

mod sink;
mod source;

pub use sink::{FileSink, FileSinkConfig};
pub use source::{FileSource, FileSourceConfig, FileSourceStats, StartAt};
