//! [`LineReader`]: newline-delimited reading with a length limit, for NDJSON sockets
//! and followed files.

use std::io::{self, Read};

/// What [`LineReader::read_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// A line without its `\n` (and without a `\r` before it).
    Complete(Vec<u8>),
    /// A line longer than the limit, skipped up to and including its `\n`; its length.
    Oversized(usize),
}

/// Reads lines of at most `max` bytes from `inner`, buffering at most `max + 1` bytes
/// plus one read chunk. Longer lines are skipped, not buffered.
pub(crate) struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Start of the unread part of `buf`.
    start: usize,
    /// How far from `start` a newline has already been looked for.
    scanned: usize,
    max: usize,
    /// Inside an oversized line: bytes skipped so far.
    skipping: Option<usize>,
    /// Bytes read from `inner` in total.
    offset: u64,
}

const CHUNK: usize = 8 * 1024;

impl<R: Read> LineReader<R> {
    pub(crate) fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            max,
            skipping: None,
            offset: 0,
        }
    }

    #[cfg_attr(not(feature = "tcp"), allow(dead_code))]
    pub(crate) fn get_ref(&self) -> &R {
        &self.inner
    }

    pub(crate) fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Whether bytes after the last line returned are held: part of a line (or all
    /// of one) that the next call returns without reading first, or an oversized
    /// line being skipped.
    #[cfg_attr(not(feature = "tcp"), allow(dead_code))]
    pub(crate) fn has_buffered(&self) -> bool {
        self.skipping.is_some() || self.buf.len() > self.start
    }

    /// Bytes read from the underlying reader so far (buffered ones included).
    #[cfg_attr(not(feature = "file"), allow(dead_code))]
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Swaps the underlying reader (a rotated file); returns what was buffered and not
    /// yet returned as a line (a last line without a newline), and forgets it.
    #[cfg_attr(not(feature = "file"), allow(dead_code))]
    pub(crate) fn replace(&mut self, inner: R) -> Vec<u8> {
        let rest = self.take_partial();
        self.inner = inner;
        self.offset = 0;
        rest
    }

    /// Forgets what is buffered (after a truncation), returning it.
    pub(crate) fn take_partial(&mut self) -> Vec<u8> {
        let rest = if self.skipping.take().is_some() {
            Vec::new()
        } else {
            self.buf[self.start..].to_vec()
        };
        self.buf.clear();
        self.start = 0;
        self.scanned = 0;
        rest
    }

    /// Sets the byte offset (after seeking the underlying reader).
    #[cfg_attr(not(feature = "file"), allow(dead_code))]
    pub(crate) fn set_offset(&mut self, offset: u64) {
        self.offset = offset;
    }

    /// The next line. At end of input, `Ok(None)`; with `final_eof` a last line
    /// without a newline is returned first, without it that partial line stays
    /// buffered so a later call (a growing file) can complete it.
    pub(crate) fn read_line(&mut self, final_eof: bool) -> io::Result<Option<Line>> {
        loop {
            let unread = &self.buf[self.start..];
            if let Some(pos) = unread[self.scanned..].iter().position(|&b| b == b'\n') {
                let end = self.start + self.scanned + pos;
                let line_start = self.start;
                self.start = end + 1;
                self.scanned = 0;
                if let Some(skipped) = self.skipping.take() {
                    return Ok(Some(Line::Oversized(skipped + (end - line_start))));
                }
                let mut line = &self.buf[line_start..end];
                if let [rest @ .., b'\r'] = line {
                    line = rest;
                }
                if line.len() > self.max {
                    return Ok(Some(Line::Oversized(line.len())));
                }
                return Ok(Some(Line::Complete(line.to_vec())));
            }
            self.scanned = unread.len();
            if let Some(skipped) = &mut self.skipping {
                *skipped += unread.len();
                self.buf.clear();
                self.start = 0;
                self.scanned = 0;
            } else if unread.len() > self.max {
                self.skipping = Some(unread.len());
                self.buf.clear();
                self.start = 0;
                self.scanned = 0;
            } else if self.start > 0 {
                // Compact before reading more, so the buffer never outgrows max + CHUNK.
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let len = self.buf.len();
            self.buf.resize(len + CHUNK, 0);
            let read = loop {
                match self.inner.read(&mut self.buf[len..]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            };
            let n = match read {
                Ok(n) => n,
                Err(e) => {
                    self.buf.truncate(len);
                    return Err(e);
                }
            };
            self.buf.truncate(len + n);
            self.offset += n as u64;
            if n == 0 {
                if !final_eof {
                    return Ok(None);
                }
                if let Some(skipped) = self.skipping.take() {
                    self.buf.clear();
                    return Ok(Some(Line::Oversized(skipped)));
                }
                if self.buf.len() > self.start {
                    let mut line = self.take_partial();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    return Ok(Some(Line::Complete(line)));
                }
                return Ok(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8], max: usize) -> Vec<Line> {
        let mut reader = LineReader::new(input, max);
        std::iter::from_fn(|| reader.read_line(true).unwrap()).collect()
    }

    #[test]
    fn splits_lines_and_strips_cr() {
        assert_eq!(
            all(b"a\r\nbb\n\nccc", 10),
            [
                Line::Complete(b"a".to_vec()),
                Line::Complete(b"bb".to_vec()),
                Line::Complete(Vec::new()),
                Line::Complete(b"ccc".to_vec()),
            ]
        );
    }

    #[test]
    fn oversized_lines_are_skipped_whole_even_across_chunks() {
        let mut input = b"ok\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 3 * CHUNK));
        input.extend(b"\nafter\n");
        assert_eq!(
            all(&input, 100),
            [
                Line::Complete(b"ok".to_vec()),
                Line::Oversized(3 * CHUNK),
                Line::Complete(b"after".to_vec()),
            ]
        );
        // Exactly at the limit passes; one over does not.
        assert_eq!(
            all(b"12345\n123456\n", 5),
            [Line::Complete(b"12345".to_vec()), Line::Oversized(6)]
        );
    }

    #[test]
    fn what_is_buffered_after_a_line_is_known() {
        let mut reader = LineReader::new(&b"a\nb\nc"[..], 10);
        assert_eq!(
            reader.read_line(false).unwrap(),
            Some(Line::Complete(b"a".to_vec()))
        );
        assert!(reader.has_buffered(), "b and c came with the same read");
        assert_eq!(
            reader.read_line(false).unwrap(),
            Some(Line::Complete(b"b".to_vec()))
        );
        assert!(reader.has_buffered());
        let mut whole = LineReader::new(&b"a\n"[..], 10);
        assert_eq!(
            whole.read_line(false).unwrap(),
            Some(Line::Complete(b"a".to_vec()))
        );
        assert!(!whole.has_buffered());
    }

    #[test]
    fn partial_line_waits_for_more_input_unless_final() {
        let mut reader = LineReader::new(&b"abc"[..], 10);
        assert_eq!(reader.read_line(false).unwrap(), None);
        assert!(reader.has_buffered());
        assert_eq!(reader.take_partial(), b"abc");
        assert!(!reader.has_buffered());
    }
}
