//! [`Envelope`]: topic, key, headers, payload, timestamp.

use super::topic::TopicPattern;
use crate::bus::SubscriptionConfig;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

/// An event with a topic, an optional key, string headers, a byte payload and the time
/// it was made.
///
/// Cloning is cheap (reference counts, no copy of the payload or headers), which is
/// what the bus does once per extra matching subscription.
///
/// # Examples
///
/// ```
/// use pipeline_core::envelope::Envelope;
///
/// let e = Envelope::new("orders.created", r#"{"id":7}"#)
///     .with_key("customer-42")
///     .with_header("content-type", "application/json");
/// assert_eq!(e.topic(), "orders.created");
/// assert_eq!(e.key(), Some("customer-42"));
/// assert_eq!(e.header("content-type"), Some("application/json"));
/// assert_eq!(e.payload().as_ref(), br#"{"id":7}"#);
/// assert!(e.size() >= e.payload().len());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(all(docsrs, feature = "serde"), doc(cfg(feature = "serde")))]
pub struct Envelope {
    topic: Arc<str>,
    key: Option<Arc<str>>,
    headers: Arc<BTreeMap<String, String>>,
    payload: Bytes,
    timestamp: SystemTime,
}

impl Envelope {
    /// An envelope on `topic` carrying `payload`, stamped with [`SystemTime::now`], with
    /// no key and no headers.
    pub fn new(topic: impl Into<Arc<str>>, payload: impl Into<Bytes>) -> Self {
        Envelope {
            topic: topic.into(),
            key: None,
            headers: Arc::default(),
            payload: payload.into(),
            timestamp: SystemTime::now(),
        }
    }

    /// Sets the key (for example a partition or deduplication key).
    #[must_use]
    pub fn with_key(mut self, key: impl Into<Arc<str>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds (or replaces) a header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.headers).insert(name.into(), value.into());
        self
    }

    /// Sets the timestamp.
    #[must_use]
    pub fn with_timestamp(mut self, timestamp: SystemTime) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The key, if any.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// All headers, sorted by name.
    pub fn headers(&self) -> &BTreeMap<String, String> {
        &self.headers
    }

    /// The payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// When the envelope was made (or the time set with
    /// [`with_timestamp`](Self::with_timestamp)).
    pub fn timestamp(&self) -> SystemTime {
        self.timestamp
    }

    /// Bytes this envelope accounts for while buffered: the struct, the topic, key,
    /// headers and payload. Parts shared between clones are counted for each, so for a
    /// fanned-out event it is an upper bound.
    pub fn size(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        size_of::<Envelope>()
            + self.topic.len()
            + self.key.as_ref().map_or(0, |k| k.len())
            + headers
            + self.payload.len()
    }
}

impl SubscriptionConfig<Envelope> {
    /// Receive only envelopes whose topic matches `pattern`, and account memory with
    /// [`Envelope::size`].
    ///
    /// ```
    /// use pipeline_core::bus::SubscriptionConfig;
    /// use pipeline_core::envelope::{Envelope, TopicPattern};
    ///
    /// let config = SubscriptionConfig::<Envelope>::new("errors")
    ///     .topic(TopicPattern::new("*.error").unwrap());
    /// # let _ = config;
    /// ```
    pub fn topic(self, pattern: TopicPattern) -> Self {
        self.filter(move |e: &Envelope| pattern.matches(e.topic()))
            .event_size(Envelope::size)
    }
}

#[cfg(all(test, feature = "serde", not(pipeline_loom)))]
mod serde_tests {
    use super::Envelope;
    use std::time::{Duration, SystemTime};

    #[test]
    fn json_round_trip() {
        let envelope = Envelope::new("orders.created", "payload")
            .with_key("k")
            .with_header("h", "v")
            .with_timestamp(SystemTime::UNIX_EPOCH + Duration::from_millis(1500));
        let json = serde_json::to_string(&envelope).unwrap();
        assert!(json.contains(r#""topic":"orders.created""#), "{json}");
        let back: Envelope = serde_json::from_str(&json).unwrap();
        assert_eq!(back, envelope);
    }
}
