//! The JSON event shape the HTTP, TCP and file adapters speak, and its NDJSON form.
//!
//! # The event shape
//!
//! ```json
//! {"topic": "orders.created", "key": "customer-42", "headers": {"source": "web"},
//!  "timestamp_ms": 1700000000000, "payload": {"id": 7, "total": 12.5}}
//! ```
//!
//! | field | type | required | becomes |
//! | --- | --- | --- | --- |
//! | `topic` | string | yes | [`Envelope::topic`](pipeline_core::envelope::Envelope::topic) |
//! | `key` | string | no | [`Envelope::key`](pipeline_core::envelope::Envelope::key) |
//! | `headers` | object of strings | no | [`Envelope::headers`](pipeline_core::envelope::Envelope::headers) |
//! | `timestamp_ms` | integer, ms since the Unix epoch | no (default: now) | [`Envelope::timestamp`](pipeline_core::envelope::Envelope::timestamp) |
//! | `payload` | any JSON value | at most one of the three | the value's JSON text, as written |
//! | `payload_text` | string | | the string's UTF-8 bytes |
//! | `payload_base64` | string (standard base64) | | the decoded bytes |
//!
//! No payload field means an empty payload. Unknown fields are refused, so a typo
//! (`"topik"`) is an error instead of a silently empty event.
//!
//! Written out ([`encode_line`]), the payload goes back as `payload` when it is valid
//! JSON, as `payload_text` when it is other UTF-8 text, and as `payload_base64`
//! otherwise, so decoding what was encoded gives the same envelope. A JSON payload
//! spread over lines is compacted (through a JSON value: keys sorted, numbers and
//! escapes normalised) so the event stays on one line; multi-line JSON a value cannot
//! hold (a number out of range, nesting deeper than 128) goes as `payload_text`.
//!
//! # NDJSON
//!
//! One event per line, `\n`-separated (a `\r` before it is ignored); blank lines are
//! skipped. Errors name the 1-based line.
//!
//! ```
//! use pipeline_adapters::json::{decode_ndjson, encode_line};
//! use pipeline_core::envelope::Envelope;
//!
//! let events = decode_ndjson(b"{\"topic\":\"a\",\"payload\":[1,2]}\n\n{\"topic\":\"b\",\"payload_text\":\"hi\"}\n").unwrap();
//! assert_eq!(events.len(), 2);
//! assert_eq!(events[0].payload().as_ref(), b"[1,2]");
//! assert_eq!(events[1].payload().as_ref(), b"hi");
//!
//! let error = decode_ndjson(b"{\"topic\":\"a\"}\n{\"topic\": oops}\n").unwrap_err();
//! assert_eq!(error.line(), 2);
//!
//! let mut line = Vec::new();
//! encode_line(&Envelope::new("t", "not json"), &mut line);
//! assert!(line.ends_with(b"\"payload_text\":\"not json\"}\n"));
//! ```

mod event;

pub use event::{
    DecodeError, LineFormat, OutputFormat, decode_body, decode_event, decode_ndjson, encode_line,
};
