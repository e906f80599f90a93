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
//! | a malformed line | skipped, counted in `malformed` (and `rejected`, reason `malformed`); the connection continues |
//! | a line longer than `max_line_bytes` | skipped up to its `\n` (never buffered), counted in `oversized` (and `rejected`, reason `too_large`); the connection continues |
//! | a blank line (JSON format) | skipped; restarts no deadline |
//! | nothing for `idle_timeout` between lines | the connection is closed, counted in `timed_out` |
//! | a line not complete `line_timeout` after its first byte | the connection is closed, counted in `line_timed_out` |
//! | a connection while `max_connections` are open | not accepted yet: it waits in the listen backlog (its bytes wait in the kernel) until a slot frees; counted in `limit_reached`, logged at warn |
//! | a connection from a peer that holds `max_connections_per_peer` | accepted and closed at once, counted in `refused`, logged at warn with the peer |
//!
//! **What protects the source.** Every connection costs a thread and a line buffer, so
//! their number is capped (`max_connections`), and one client (IP address) may hold
//! only `max_connections_per_peer` of them (a quarter by default). A slot is held at
//! most `idle_timeout` without a line, and at most `line_timeout` per line, as
//! deadlines: a client that trickles a byte at a time is closed when its line's time
//! is up, however often it sends. So a slow or idle client frees its slot within those
//! bounds, and a sender that found every slot taken is served then, from the backlog,
//! without losing what it sent. Refusals and full houses are logged at warn at most
//! every 10 s (with the number left out), and counted.
//!
//! **Back pressure.** A connection's thread publishes each event before reading the
//! next line. When the bus is full or rate limited it waits, the socket's receive
//! buffer fills, and TCP flow control slows the sender: nothing queues in the source.
//! The deadlines count only time spent waiting for the client, not for the bus: each
//! starts again after a line was published.
//!
//! **Logs.** Each connection is served in a `tcp_connection` span with the fields
//! `source` (the source's name) and `peer` (the client's address), so what is logged
//! about a connection says where it came from.
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
