//! Envelope <-> NATS message.

use super::{ACK_ID_HEADER, DELIVERED_HEADER, KEY_HEADER, SEQUENCE_HEADER, TIMESTAMP_HEADER};
use async_nats::HeaderMap;
use async_nats::header::{HeaderName, HeaderValue};
use pipeline_core::envelope::Envelope;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The headers this crate sets on the way in, not carried on the way out.
fn internal(name: &str) -> bool {
    name.eq_ignore_ascii_case(ACK_ID_HEADER)
        || name.eq_ignore_ascii_case(SEQUENCE_HEADER)
        || name.eq_ignore_ascii_case(DELIVERED_HEADER)
}

/// NATS headers for `event`: its headers, key and timestamp.
pub(crate) fn headers_of(event: &Envelope) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in event.headers() {
        if internal(name) {
            continue;
        }
        let name = HeaderName::from_str(name)
            .map_err(|_| format!("header name {name:?} is not valid in NATS"))?;
        let value =
            HeaderValue::from_str(value).map_err(|_| format!("header {name} has a line break"))?;
        headers.insert(name, value);
    }
    if let Some(key) = event.key() {
        let key = HeaderValue::from_str(key).map_err(|_| "the key has a line break".to_owned())?;
        headers.insert(KEY_HEADER, key);
    }
    let ms = event
        .timestamp()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    headers.insert(TIMESTAMP_HEADER, ms.to_string());
    Ok(headers)
}

/// An envelope for a delivered message: topic from the subject, headers, key and
/// timestamp back from theirs, plus the ack id, stream sequence and delivery count.
pub(crate) fn envelope_of(
    message: &async_nats::Message,
    topic_prefix: &str,
    ack_id: u64,
    sequence: u64,
    delivered: i64,
) -> Envelope {
    let subject = message.subject.as_str();
    let topic = subject.strip_prefix(topic_prefix).unwrap_or(subject);
    let mut envelope = Envelope::new(topic, message.payload.clone());
    let mut timestamp = None;
    if let Some(headers) = &message.headers {
        for (name, values) in headers.iter() {
            let (name, Some(value)) = (name.as_ref(), values.first()) else {
                continue;
            };
            let name = std::str::from_utf8(name).unwrap_or_default();
            if name.eq_ignore_ascii_case(KEY_HEADER) {
                envelope = envelope.with_key(value.as_str());
            } else if name.eq_ignore_ascii_case(TIMESTAMP_HEADER) {
                timestamp = value.as_str().parse::<u64>().ok();
            } else if !internal(name) && !name.is_empty() {
                envelope = envelope.with_header(name, value.as_str());
            }
        }
    }
    if let Some(ms) = timestamp {
        envelope = envelope.with_timestamp(UNIX_EPOCH + Duration::from_millis(ms));
    } else {
        envelope = envelope.with_timestamp(SystemTime::now());
    }
    envelope
        .with_header(ACK_ID_HEADER, ack_id.to_string())
        .with_header(SEQUENCE_HEADER, sequence.to_string())
        .with_header(DELIVERED_HEADER, delivered.to_string())
}
