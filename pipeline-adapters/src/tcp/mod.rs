//! NDJSON over TCP: [`TcpSource`] (a listener) and [`TcpSink`] (a client), on std
//! threads (feature `tcp`).
//!
//! # The source
//!
//! Each connection sends lines; each line is an event ([`LineFormat`](crate::json::LineFormat):
//! the [JSON event shape](crate::json), or raw lines on a fixed topic). There is no
//! answer on the socket: the protocol is one-way, like syslog over TCP.
//!
//! | input | what happens |
//! | --- | --- |
//! | a line that decodes | published; the connection's thread waits while the bus pushes back |
//! | a malformed line | counted in `malformed` and skipped; the connection continues |
//! | a line longer than `max_line_bytes` | skipped up to its `\n` (never buffered), counted in `oversized` and `malformed`; the connection continues |
//! | no byte for `read_timeout` | the connection is closed, counted in `timed_out` |
//! | a connection beyond `max_connections` | accepted and closed at once, counted in `refused` |
//!
//! **Back pressure.** A connection's thread publishes each event before reading the
//! next line. When the bus is full or rate limited it waits, the socket's receive
//! buffer fills, and TCP flow control slows the sender: nothing queues in the source.
//! `read_timeout` counts only time spent waiting for the client, not for the bus.
//!
//! # The sink
//!
//! [`TcpSink`] writes each event as a line to a server, over a small set of
//! connections (one per pool worker at most), reconnecting and retrying by its
//! [`RetryPolicy`](crate::sink::RetryPolicy), then handing the event to the dead-letter
//! hook. A write that succeeds is in the kernel's send buffer: TCP alone does not say
//! the peer processed it.

mod sink;
mod source;

pub use sink::{TcpSink, TcpSinkConfig};
pub use source::{TcpSource, TcpSourceConfig, TcpSourceStats};
