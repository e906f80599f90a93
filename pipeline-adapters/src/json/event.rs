//! Decoding and encoding the JSON event shape.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use pipeline_core::envelope::Envelope;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// An event as it arrives, before it becomes an [`Envelope`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEvent<'a> {
    topic: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    timestamp_ms: Option<u64>,
    #[serde(default, borrow)]
    payload: Option<&'a RawValue>,
    #[serde(default)]
    payload_text: Option<String>,
    #[serde(default)]
    payload_base64: Option<String>,
}

impl WireEvent<'_> {
    fn into_envelope(self) -> Result<Envelope, String> {
        let payload = match (self.payload, self.payload_text, self.payload_base64) {
            (None, None, None) => Bytes::new(),
            (Some(raw), None, None) => Bytes::copy_from_slice(raw.get().as_bytes()),
            (None, Some(text), None) => Bytes::from(text),
            (None, None, Some(encoded)) => BASE64
                .decode(encoded.as_bytes())
                .map(Bytes::from)
                .map_err(|e| format!("payload_base64 is not valid base64: {e}"))?,
            _ => {
                return Err(
                    "give at most one of payload, payload_text and payload_base64".to_owned(),
                );
            }
        };
        if self.topic.is_empty() {
            return Err("topic must not be empty".to_owned());
        }
        let mut envelope = Envelope::new(self.topic, payload);
        if let Some(key) = self.key {
            envelope = envelope.with_key(key);
        }
        for (name, value) in self.headers {
            envelope = envelope.with_header(name, value);
        }
        if let Some(ms) = self.timestamp_ms {
            envelope = envelope.with_timestamp(UNIX_EPOCH + Duration::from_millis(ms));
        }
        Ok(envelope)
    }
}

/// Why input did not decode: the message and the 1-based line and column.
///
/// For NDJSON the line is the input's line; for a JSON body it is the line inside the
/// body where the parser stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    message: String,
    line: usize,
    column: usize,
}

impl DecodeError {
    fn at(message: impl Into<String>, line: usize, column: usize) -> Self {
        DecodeError {
            message: message.into(),
            line,
            column,
        }
    }

    fn from_json(error: &serde_json::Error, line_offset: usize) -> Self {
        // serde_json appends " at line L column C"; the fields carry those.
        let text = error.to_string();
        let message = match text.rfind(" at line ") {
            Some(at) => text[..at].to_owned(),
            None => text,
        };
        let line = if line_offset > 0 {
            line_offset
        } else {
            error.line().max(1)
        };
        DecodeError::at(message, line, error.column())
    }

    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The 1-based line.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The 1-based column where the parser stopped (0 when not known).
    pub fn column(&self) -> usize {
        self.column
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)?;
        if self.column > 0 {
            write!(f, " (column {})", self.column)?;
        }
        Ok(())
    }
}

impl std::error::Error for DecodeError {}

/// Decodes one event (one JSON object).
///
/// # Errors
///
/// [`DecodeError`] for malformed JSON, a missing or empty `topic`, an unknown field,
/// more than one payload field or bad base64; its line is 1 unless the object spans
/// lines.
pub fn decode_event(json: &[u8]) -> Result<Envelope, DecodeError> {
    decode_one(json, 0)
}

fn decode_one(json: &[u8], line: usize) -> Result<Envelope, DecodeError> {
    let wire: WireEvent<'_> =
        serde_json::from_slice(json).map_err(|e| DecodeError::from_json(&e, line))?;
    wire.into_envelope()
        .map_err(|message| DecodeError::at(message, line.max(1), 0))
}

/// Decodes NDJSON: one event per non-blank line.
///
/// # Errors
///
/// The first line that does not decode, as in [`decode_event`], with its line number.
pub fn decode_ndjson(body: &[u8]) -> Result<Vec<Envelope>, DecodeError> {
    let mut events = Vec::new();
    for (index, line) in body.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        events.push(decode_one(line, index + 1)?);
    }
    Ok(events)
}

/// Decodes a JSON body: one event object, or an array of them.
///
/// # Errors
///
/// [`DecodeError`] with the line and column inside the body where decoding stopped.
/// An array is decoded whole or not at all.
pub fn decode_body(body: &[u8]) -> Result<Vec<Envelope>, DecodeError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        None => Err(DecodeError::at("the body is empty", 1, 0)),
        Some(b'[') => {
            let wires: Vec<WireEvent<'_>> =
                serde_json::from_slice(body).map_err(|e| DecodeError::from_json(&e, 0))?;
            wires
                .into_iter()
                .enumerate()
                .map(|(i, wire)| {
                    wire.into_envelope().map_err(|message| {
                        // The parser has moved on; name the element instead of a column.
                        DecodeError::at(format!("event {} of the array: {message}", i + 1), 1, 0)
                    })
                })
                .collect()
        }
        Some(_) => decode_one(body, 0).map(|e| vec![e]),
    }
}

/// How a line-oriented source (TCP, file, stdin) turns a line into an event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineFormat {
    /// Each line is a JSON event (see the [module docs](super)).
    Json,
    /// Each line is the payload of an event on a fixed topic (log lines).
    Raw {
        /// The topic of every event.
        topic: Arc<str>,
    },
}

impl LineFormat {
    /// Raw lines on `topic`.
    pub fn raw(topic: impl Into<Arc<str>>) -> Self {
        LineFormat::Raw {
            topic: topic.into(),
        }
    }

    #[cfg_attr(not(any(feature = "tcp", feature = "file")), allow(dead_code))]
    pub(crate) fn decode(&self, line: Vec<u8>, number: usize) -> Result<Envelope, DecodeError> {
        match self {
            LineFormat::Json => decode_one(&line, number),
            LineFormat::Raw { topic } => Ok(Envelope::new(topic.clone(), line)),
        }
    }
}

/// How a line-oriented sink (TCP, file, stdout) writes an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OutputFormat {
    /// The JSON event shape, one per line ([`encode_line`]). The default.
    #[default]
    Json,
    /// The payload bytes as they are, then `\n` (a payload holding `\n` spans lines).
    Payload,
}

impl OutputFormat {
    #[cfg_attr(not(any(feature = "tcp", feature = "file")), allow(dead_code))]
    pub(crate) fn write(self, event: &Envelope, out: &mut Vec<u8>) {
        match self {
            OutputFormat::Json => encode_line(event, out),
            OutputFormat::Payload => {
                out.extend_from_slice(event.payload());
                out.push(b'\n');
            }
        }
    }
}

/// An event as it is written: the shape of [`WireEvent`], borrowed from an
/// [`Envelope`], with at most one of the payload fields.
#[derive(Serialize)]
struct WireEventOut<'a> {
    topic: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    headers: &'a BTreeMap<String, String>,
    timestamp_ms: u128,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<JsonPayload<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
}

/// A payload that is JSON, written as JSON.
#[derive(Serialize)]
#[serde(untagged)]
enum JsonPayload<'a> {
    /// On one line already: written as it is (without the whitespace around it).
    Raw(&'a RawValue),
    /// Spread over lines: compacted, so that the event stays one line.
    Compacted(serde_json::Value),
}

impl<'a> WireEventOut<'a> {
    fn new(event: &'a Envelope) -> Self {
        let mut wire = WireEventOut {
            topic: event.topic(),
            key: event.key(),
            headers: event.headers(),
            timestamp_ms: event
                .timestamp()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis()),
            payload: None,
            payload_text: None,
            payload_base64: None,
        };
        let payload = event.payload();
        if payload.is_empty() {
            // No payload field: an empty payload.
        } else if let Some(json) = JsonPayload::of(payload) {
            wire.payload = Some(json);
        } else if let Ok(text) = std::str::from_utf8(payload) {
            wire.payload_text = Some(text);
        } else {
            wire.payload_base64 = Some(BASE64.encode(payload));
        }
        wire
    }
}

impl<'a> JsonPayload<'a> {
    /// `payload` parsed once, if it is JSON. A multi-line payload becomes a value to
    /// compact; one a value cannot hold (a number out of range, nesting deeper than
    /// the parser's limit) is not taken as JSON, so it is written as text.
    fn of(payload: &'a [u8]) -> Option<Self> {
        if payload.iter().any(|&b| b == b'\n' || b == b'\r') {
            serde_json::from_slice(payload)
                .ok()
                .map(JsonPayload::Compacted)
        } else {
            serde_json::from_slice(payload).ok().map(JsonPayload::Raw)
        }
    }
}

/// Appends `event` to `out` as one NDJSON line (ending in `\n`), in the shape the
/// [module docs](super) describe.
pub fn encode_line(event: &Envelope, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, &WireEventOut::new(event))
        .expect("writing JSON to a Vec cannot fail");
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn round_trip_keeps_every_field_and_payload_kind() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        for payload in [
            &b"{\"a\":[1,2]}"[..],
            b"plain text",
            &[0, 159, 146, 150],
            b"",
        ] {
            let event = Envelope::new("orders.created", Bytes::copy_from_slice(payload))
                .with_key("k")
                .with_header("h", "v")
                .with_timestamp(at);
            let mut line = Vec::new();
            encode_line(&event, &mut line);
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            let back = decode_event(&line).unwrap();
            assert_eq!(back, event, "{}", String::from_utf8_lossy(&line));
        }
    }

    /// `encode_line` as it was before it went through serde derive (issue 18): the
    /// JSON written by hand, the payload parsed once to validate and, spread over
    /// lines, again to compact. Kept to show the wire format did not change.
    fn encode_line_by_hand(event: &Envelope, out: &mut Vec<u8>) {
        fn string(out: &mut Vec<u8>, s: &str) {
            serde_json::to_writer(&mut *out, s).expect("writing JSON to a Vec cannot fail");
        }
        out.extend_from_slice(b"{\"topic\":");
        string(out, event.topic());
        if let Some(key) = event.key() {
            out.extend_from_slice(b",\"key\":");
            string(out, key);
        }
        if !event.headers().is_empty() {
            out.extend_from_slice(b",\"headers\":");
            serde_json::to_writer(&mut *out, event.headers())
                .expect("writing JSON to a Vec cannot fail");
        }
        let ms = event
            .timestamp()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        out.extend_from_slice(format!(",\"timestamp_ms\":{ms}").as_bytes());
        let payload = event.payload();
        if !payload.is_empty() {
            if serde_json::from_slice::<&RawValue>(payload).is_ok() {
                out.extend_from_slice(b",\"payload\":");
                if payload.iter().any(|&b| b == b'\n' || b == b'\r') {
                    // Valid JSON spread over lines: compact it so the line stays one line.
                    let value: serde_json::Value =
                        serde_json::from_slice(payload).expect("validated just above");
                    serde_json::to_writer(&mut *out, &value)
                        .expect("writing JSON to a Vec cannot fail");
                } else {
                    out.extend_from_slice(payload.trim_ascii());
                }
            } else if let Ok(text) = std::str::from_utf8(payload) {
                out.extend_from_slice(b",\"payload_text\":");
                string(out, text);
            } else {
                out.extend_from_slice(b",\"payload_base64\":\"");
                out.extend_from_slice(BASE64.encode(payload).as_bytes());
                out.push(b'"');
            }
        }
        out.extend_from_slice(b"}\n");
    }

    /// Unicode, escapes, JSON and non-JSON payloads: the same bytes as before.
    #[test]
    fn the_wire_format_is_the_one_written_by_hand_before() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let payloads: [&[u8]; 16] = [
            b"{\"id\":7,\"total\":12.5}",
            "{\"msg\":\"caf\u{e9} \\\"quoted\\\" \\\\path \\u00e9 \\t\"}".as_bytes(),
            b"  [1, 2 ,3]\t ",
            b"42",
            b"\"a string\"",
            b"null",
            // Multi-line JSON: compacted through a value (keys sorted, numbers and
            // escapes normalised), as before.
            b"{\n  \"b\": 1,\n  \"a\": [1.50, \"\\u00e9\\/\"]\n}",
            b"[1,\r\n2]\r\n",
            // Not JSON: text, then bytes.
            "plain text with \"quotes\", a tab\t, \u{1} and \u{1F389}".as_bytes(),
            b"two\nlines",
            b"{\"almost\": json",
            b"\x0c{}",
            &[0, 159, 146, 150],
            &[b'{', 0xff, b'}'],
            b" ",
            b"",
        ];
        let mut cases = Vec::new();
        for payload in payloads {
            let bytes = Bytes::copy_from_slice(payload);
            cases.push(Envelope::new("orders.created", bytes.clone()).with_timestamp(at));
            cases.push(
                Envelope::new("commandes.cr\u{e9}\u{e9}es \"\\/\u{7}", bytes)
                    .with_key("cl\u{e9} \u{1F511} \"k\"\n")
                    .with_header("source", "web")
                    .with_header("quote\"d", "back\\slash\ttab\u{1}\u{2028}")
                    .with_header("\u{e9}t\u{e9}", "\u{1F600}")
                    .with_timestamp(at),
            );
        }
        cases.push(
            Envelope::new("before.the.epoch", "1")
                .with_timestamp(UNIX_EPOCH - Duration::from_secs(1)),
        );
        for event in &cases {
            let (mut new, mut old) = (Vec::new(), Vec::new());
            encode_line(event, &mut new);
            encode_line_by_hand(event, &mut old);
            assert_eq!(
                String::from_utf8_lossy(&new),
                String::from_utf8_lossy(&old),
                "{event:?}"
            );
            assert_eq!(new, old);
        }
    }

    /// Valid JSON that a value cannot hold, spread over lines: the old encoder
    /// validated it and then panicked compacting it (`expect("validated just
    /// above")`), in the sink's worker. Now it is written as text, losslessly.
    #[test]
    fn multi_line_json_a_value_cannot_hold_is_written_as_text() {
        for payload in [
            "[\n1e400]",
            &format!("{}\n{}", "[".repeat(200), "]".repeat(200)),
        ] {
            let event = Envelope::new("t", payload.to_owned());
            let mut line = Vec::new();
            encode_line(&event, &mut line);
            assert!(
                line.windows(15).any(|w| w == b"\"payload_text\":"),
                "{}",
                String::from_utf8_lossy(&line)
            );
            assert_eq!(decode_event(&line).unwrap().payload(), event.payload());
        }
    }

    #[test]
    fn multi_line_json_payload_is_compacted() {
        let event = Envelope::new("t", "{\n  \"a\": 1\n}");
        let mut line = Vec::new();
        encode_line(&event, &mut line);
        assert!(
            line.ends_with(b"\"payload\":{\"a\":1}}\n"),
            "{}",
            String::from_utf8_lossy(&line)
        );
    }

    #[test]
    fn body_errors_name_line_and_rule() {
        let e = decode_body(b"[\n{\"topic\":\"a\"},\n{\"topic\":\"b\",}\n]").unwrap_err();
        assert_eq!(e.line(), 3, "{e}");
        let e = decode_body(b"{\"payload\":1}").unwrap_err();
        assert!(e.message().contains("topic"), "{e}");
        let e = decode_body(b"{\"topic\":\"a\",\"topik\":1}").unwrap_err();
        assert!(e.message().contains("topik"), "{e}");
        let e = decode_body(
            b"[{\"topic\":\"a\"},{\"topic\":\"b\",\"payload\":1,\"payload_text\":\"x\"}]",
        )
        .unwrap_err();
        assert!(e.message().starts_with("event 2 of the array"), "{e}");
        assert!(decode_body(b"  ").is_err());
        assert_eq!(decode_body(b"[]").unwrap().len(), 0);
    }
}
