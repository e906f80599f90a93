//! [`TcpSource`]: a std-thread NDJSON listener.

use crate::json::LineFormat;
use crate::source::counters::Counted;
use crate::source::{JoinError, Source, SourceCounters, SourceStats};
use crate::util::lines::{Line, LineReader};
use crate::util::{StopSignal, ThreadGroup};
use pipeline_core::bus::Publisher;
use pipeline_core::envelope::Envelope;
use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How to run a [`TcpSource`].
///
/// | setting | default | rule |
/// | --- | --- | --- |
/// | [`name`](Self::name) | `"tcp"` | not empty |
/// | [`addr`](Self::addr) | `127.0.0.1:9000` (port 0: any free port) | |
/// | [`format`](Self::format) | [`LineFormat::Json`] | |
/// | [`max_line_bytes`](Self::max_line_bytes) | 64 KiB | at least 1 |
/// | [`read_timeout`](Self::read_timeout) | 30 s | above zero |
/// | [`max_connections`](Self::max_connections) | 64 | at least 1 |
///
/// Memory held is at most `max_connections * (max_line_bytes + 8 KiB)` of buffers.
#[derive(Debug, Clone)]
#[must_use]
pub struct TcpSourceConfig {
    name: Arc<str>,
    addr: SocketAddr,
    format: LineFormat,
    max_line_bytes: usize,
    read_timeout: Duration,
    max_connections: usize,
}

impl Default for TcpSourceConfig {
    fn default() -> Self {
        TcpSourceConfig {
            name: "tcp".into(),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 9000)),
            format: LineFormat::Json,
            max_line_bytes: 64 * 1024,
            read_timeout: Duration::from_secs(30),
            max_connections: 64,
        }
    }
}

impl TcpSourceConfig {
    /// The defaults in the table above.
    pub fn new() -> Self {
        Self::default()
    }

    /// The name in logs, thread names and the `source` metrics label (default `"tcp"`).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The address to listen on (default `127.0.0.1:9000`).
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// How a line becomes an event (default [`LineFormat::Json`]).
    pub fn format(mut self, format: LineFormat) -> Self {
        self.format = format;
        self
    }

    /// The longest line, in bytes, without its `\n` (default 64 KiB).
    pub fn max_line_bytes(mut self, bytes: usize) -> Self {
        self.max_line_bytes = bytes;
        self
    }

    /// How long a connection may send nothing before it is closed (default 30 s).
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// The most connections at once (default 64).
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections;
        self
    }

    fn validate(&self) -> io::Result<()> {
        let invalid = |field: &str, rule: &str| {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid `{field}`: {rule}"),
            ))
        };
        if self.name.is_empty() {
            return invalid("name", "must not be empty");
        }
        if self.max_line_bytes == 0 {
            return invalid("max_line_bytes", "must be at least 1");
        }
        if self.read_timeout.is_zero() {
            return invalid("read_timeout", "must be above zero");
        }
        if self.max_connections == 0 {
            return invalid("max_connections", "must be at least 1");
        }
        Ok(())
    }
}

/// A [`TcpSource`]'s counters beyond the common [`SourceStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpSourceStats {
    /// The counters every source keeps.
    pub source: SourceStats,
    /// Connections accepted and served.
    pub accepted: u64,
    /// Connections closed at once because `max_connections` were open.
    pub refused: u64,
    /// Lines longer than `max_line_bytes` (also counted in `source.malformed`).
    pub oversized: u64,
    /// Connections closed because they sent nothing for `read_timeout`.
    pub timed_out: u64,
}

struct Shared {
    name: Arc<str>,
    format: LineFormat,
    max_line: usize,
    read_timeout: Duration,
    max_connections: usize,
    publisher: Publisher<Envelope>,
    stop: StopSignal,
    counters: SourceCounters,
    accepted: Counted,
    refused: Counted,
    oversized: Counted,
    timed_out: Counted,
    /// Open connections, to shut them down on stop.
    open: Mutex<HashMap<u64, TcpStream>>,
    next_id: AtomicU64,
}

/// A TCP listener publishing one event per line; from [`TcpSource::spawn`]. See the
/// [module docs](super) for what happens to each kind of input.
///
/// One thread accepts, one thread serves each connection. [`stop`](Source::stop)
/// closes the listener and shuts every connection down; an event a connection was
/// waiting to publish is counted in `not_published`.
pub struct TcpSource {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    threads: Arc<ThreadGroup>,
}

impl TcpSource {
    /// Binds `config.addr` and starts accepting; events go to `publisher`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` naming a setting that breaks its rule; the error of binding the
    /// address or starting a thread.
    ///
    /// # Examples
    ///
    /// ```
    /// use pipeline_adapters::source::Source;
    /// use pipeline_adapters::tcp::{TcpSource, TcpSourceConfig};
    /// use pipeline_core::bus::{Bus, SubscriptionConfig};
    /// use std::io::Write;
    /// use std::time::Duration;
    ///
    /// let bus = Bus::new();
    /// let events = bus.subscribe(SubscriptionConfig::new("in")).unwrap();
    /// let config = TcpSourceConfig::new().addr("127.0.0.1:0".parse().unwrap());
    /// let mut source = TcpSource::spawn(config, bus.publisher()).unwrap();
    ///
    /// let mut client = std::net::TcpStream::connect(source.local_addr()).unwrap();
    /// client.write_all(b"{\"topic\":\"t\",\"payload\":42}\n").unwrap();
    /// let event = events.recv_timeout(Duration::from_secs(5)).unwrap();
    /// assert_eq!(event.payload().as_ref(), b"42");
    /// source.shutdown(Duration::from_secs(5)).unwrap();
    /// ```
    pub fn spawn(config: TcpSourceConfig, publisher: Publisher<Envelope>) -> io::Result<TcpSource> {
        config.validate()?;
        let listener = TcpListener::bind(config.addr)?;
        let local_addr = listener.local_addr()?;
        let name = config.name.clone();
        let shared = Arc::new(Shared {
            counters: SourceCounters::new(&name),
            accepted: Counted::labelled(
                "pipeline_tcp_source_connections_total",
                &name,
                "outcome",
                "accepted",
            ),
            refused: Counted::labelled(
                "pipeline_tcp_source_connections_total",
                &name,
                "outcome",
                "refused",
            ),
            oversized: Counted::labelled(
                "pipeline_source_malformed_kind_total",
                &name,
                "kind",
                "oversized",
            ),
            timed_out: Counted::labelled(
                "pipeline_tcp_source_connections_total",
                &name,
                "outcome",
                "timed_out",
            ),
            name: config.name,
            format: config.format,
            max_line: config.max_line_bytes,
            read_timeout: config.read_timeout,
            max_connections: config.max_connections,
            publisher,
            stop: StopSignal::new(),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        });
        let threads = Arc::new(ThreadGroup::new());
        let accept_shared = shared.clone();
        let accept_threads = threads.clone();
        threads.spawn(format!("{name}-accept"), move || {
            accept_loop(&listener, &accept_shared, &accept_threads);
        })?;
        tracing::info!(source = %name, addr = %local_addr, "tcp source: listening");
        Ok(TcpSource {
            shared,
            local_addr,
            threads,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connection and line counters, and the common ones.
    pub fn tcp_stats(&self) -> TcpSourceStats {
        let s = &self.shared;
        TcpSourceStats {
            source: s.counters.stats(),
            accepted: s.accepted.get(),
            refused: s.refused.get(),
            oversized: s.oversized.get(),
            timed_out: s.timed_out.get(),
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, threads: &Arc<ThreadGroup>) {
    for stream in listener.incoming() {
        if shared.stop.is_stopped() {
            break;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(source = %shared.name, %error, "tcp source: accept failed");
                // Out of descriptors and the like: a pause, not a spin.
                if shared.stop.sleep(Duration::from_millis(50)) {
                    break;
                }
                continue;
            }
        };
        if shared.counters.connections.get() >= shared.max_connections as u64 {
            shared.refused.add(1);
            let _ = stream.shutdown(Shutdown::Both);
            continue;
        }
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let Ok(handle) = stream.try_clone() else {
            continue;
        };
        shared
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, handle);
        shared.accepted.add(1);
        shared.counters.connections.inc();
        let conn_shared = shared.clone();
        let spawned = threads.spawn(format!("{}-conn-{id}", shared.name), move || {
            serve_connection(stream, &conn_shared);
            conn_shared
                .open
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            conn_shared.counters.connections.dec();
        });
        if let Err(error) = spawned {
            tracing::warn!(source = %shared.name, %error, "tcp source: could not start a connection thread");
            shared
                .open
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            shared.counters.connections.dec();
        }
    }
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    if stream.set_read_timeout(Some(shared.read_timeout)).is_err() {
        return;
    }
    let peer = stream.peer_addr().ok();
    let mut reader = LineReader::new(stream, shared.max_line);
    let mut number = 0usize;
    while !shared.stop.is_stopped() {
        let line = match reader.read_line(true) {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                shared.timed_out.add(1);
                tracing::debug!(source = %shared.name, ?peer, "tcp source: read timeout, closing");
                break;
            }
            Err(_) => break,
        };
        number += 1;
        let bytes = match line {
            Line::Complete(bytes) => bytes,
            Line::Oversized(length) => {
                shared.oversized.add(1);
                shared.counters.malformed.add(1);
                tracing::debug!(source = %shared.name, ?peer, line = number, length, "tcp source: oversized line skipped");
                continue;
            }
        };
        if bytes.iter().all(u8::is_ascii_whitespace) && matches!(shared.format, LineFormat::Json) {
            continue;
        }
        match shared.format.decode(bytes, number) {
            Ok(event) => {
                shared.counters.received.add(1);
                if !shared
                    .counters
                    .publish_blocking(&shared.publisher, event, &shared.stop)
                {
                    break;
                }
            }
            Err(error) => {
                shared.counters.malformed.add(1);
                tracing::debug!(source = %shared.name, ?peer, %error, "tcp source: malformed line skipped");
            }
        }
    }
    let _ = reader.get_ref().shutdown(Shutdown::Both);
}

impl Source for TcpSource {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn stats(&self) -> SourceStats {
        self.shared.counters.stats()
    }

    fn stop(&self) {
        if self.shared.stop.is_stopped() {
            return;
        }
        self.shared.stop.stop();
        // Wake the accept loop with a connection of our own; it sees the flag.
        let _ = TcpStream::connect_timeout(&self.local_addr, Duration::from_secs(1));
        for stream in self
            .shared
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn join(&mut self, timeout: Duration) -> Result<(), JoinError> {
        self.threads.join(timeout)
    }
}

impl Drop for TcpSource {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for TcpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpSource")
            .field("name", &self.shared.name)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}
