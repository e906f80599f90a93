//! A ready-made event type for dynamic events and adapters: [`Envelope`] (topic, key,
//! headers, payload bytes, timestamp) and glob topic filters ([`TopicPattern`]).
//!
//! ```
//! use pipeline_core::bus::{Bus, SubscriptionConfig};
//! use pipeline_core::envelope::{Envelope, TopicPattern};
//!
//! let bus = Bus::new();
//! let orders = bus
//!     .subscribe(SubscriptionConfig::new("orders").topic("orders.*".parse().unwrap()))
//!     .unwrap();
//! let errors = bus
//!     .subscribe(SubscriptionConfig::new("errors").topic(TopicPattern::new("*.error").unwrap()))
//!     .unwrap();
//!
//! let publisher = bus.publisher();
//! publisher.publish(Envelope::new("orders.created", r#"{"id":1}"#)).unwrap();
//! publisher.publish(Envelope::new("orders.error", "boom").with_key("order-1")).unwrap();
//! publisher.publish(Envelope::new("payments.settled", "ok")).unwrap();
//!
//! let got: Vec<String> = orders.try_iter().map(|e| e.topic().to_owned()).collect();
//! assert_eq!(got, ["orders.created", "orders.error"]);
//! let error = errors.try_recv().unwrap();
//! assert_eq!((error.topic(), error.key(), &error.payload()[..]), ("orders.error", Some("order-1"), &b"boom"[..]));
//! ```
//!
//! # Topic patterns
//!
//! Topics are dot-separated segments (`orders.eu.created`). In a pattern, `*` matches
//! any run of characters inside one segment, `?` one character, and a segment that is
//! exactly `**` matches any number of whole segments, none included:
//!
//! | pattern | matches | does not match |
//! | --- | --- | --- |
//! | `orders.*` | `orders.created` | `orders`, `orders.eu.created` |
//! | `*.error` | `db.error` | `db.pool.error` |
//! | `orders.**` | `orders`, `orders.eu.created` | `ordersx` |
//! | `v?.*` | `v1.ping` | `v10.ping` |
//!
//! # Serde
//!
//! With the `serde` feature, `Envelope` is `Serialize + Deserialize` (the payload as a
//! sequence of bytes, the timestamp as seconds and nanoseconds since the Unix epoch).
//! Adapters with their own wire formats map the fields themselves.

mod event;
mod topic;

pub use event::Envelope;
pub use topic::{TopicPattern, TopicPatternError};
