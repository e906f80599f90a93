//! [`TcpSource`]: a std-thread NDJSON listener.

use crate::json::LineFormat;
use crate::source::counters::Counted;
use crate::source::{JoinError, Reject, Source, SourceCounters, SourceStats};
use crate::util::lines::{Line, LineReader};
use crate::util::{LogLimiter, StopSignal, ThreadGroup};
use pipeline_core::bus::Publisher;
use pipeline_core::envelope::Envelope;
use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How often, at most, a flood of refused connections or a full house is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// How to run a [`TcpSource`].
///
/// | setting | default | rule |
/// | --- | --- | --- |
/// | [`name`](Self::name) | `"tcp"` | not empty |
/// | [`addr`](Self::addr) | `127.0.0.1:9000` (port 0: any free port) | |
/// | [`format`](Self::format) | [`LineFormat::Json`] | |
/// | [`max_line_bytes`](Self::max_line_bytes) | 64 KiB | at least 1 |
/// | [`idle_timeout`](Self::idle_timeout) | 10 s | above zero |
/// | [`line_timeout`](Self::line_timeout) | 10 s | above zero |
/// | [`max_connections`](Self::max_connections) | 64 | at least 1 |
/// | [`max_connections_per_peer`](Self::max_connections_per_peer) | a quarter of `max_connections` (at least 1) | at least 1 |
///
/// Memory held is at most `max_connections * (max_line_bytes + 8 KiB)` of buffers. A
/// connection holds its slot at most `idle_timeout` without sending a line, and
/// `line_timeout` for each line once it started, however slowly it trickles.
#[derive(Debug, Clone)]
#[must_use]
pub struct TcpSourceConfig {
    name: Arc<str>,
    addr: SocketAddr,
    format: LineFormat,
    max_line_bytes: usize,
    idle_timeout: Duration,
    line_timeout: Duration,
    max_connections: usize,
    max_connections_per_peer: Option<usize>,
}

impl Default for TcpSourceConfig {
    fn default() -> Self {
        TcpSourceConfig {
            name: "tcp".into(),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 9000)),
            format: LineFormat::Json,
            max_line_bytes: 64 * 1024,
            idle_timeout: Duration::from_secs(10),
            line_timeout: Duration::from_secs(10),
            max_connections: 64,
            max_connections_per_peer: None,
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

    /// How long a connection may wait between lines, sending nothing, before it is
    /// closed (default 10 s): from the connection's start or the end of its last line
    /// to the first byte of the next. Time the source spends waiting for the bus does
    /// not count. Blank lines do not restart it.
    ///
    /// A sender that keeps a connection open across quiet periods should reconnect
    /// after a close, or this should be longer than its quiet periods: the protocol is
    /// one-way, so a line written just as the server closes is lost.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// The old name of [`idle_timeout`](Self::idle_timeout).
    #[deprecated(note = "use `idle_timeout`; a whole line now also has `line_timeout`")]
    pub fn read_timeout(self, timeout: Duration) -> Self {
        self.idle_timeout(timeout)
    }

    /// How long one line may take, from its first byte to its `\n` (default 10 s);
    /// a connection whose line is not complete by then is closed. A deadline, not a
    /// timeout restarted by every read: a client trickling a byte at a time cannot hold
    /// its slot longer.
    pub fn line_timeout(mut self, timeout: Duration) -> Self {
        self.line_timeout = timeout;
        self
    }

    /// The most connections served at once (default 64). When all are taken, new
    /// connections are not accepted: they wait in the listen backlog (their lines stay
    /// in the kernel, nothing is lost) until a connection ends, which the two
    /// deadlines bound. Each time that starts is counted (`limit_reached`) and logged
    /// at warn (at most every 10 s).
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections;
        self
    }

    /// The most connections one peer (IP address) may hold at once (default a quarter
    /// of `max_connections`, at least 1), so one client cannot take every slot. One
    /// more from that peer is accepted and closed at once, counted (`refused`) and
    /// logged at warn with the peer (at most every 10 s).
    ///
    /// Behind a proxy or a NAT every client has the proxy's address: raise this (up to
    /// `max_connections`, which turns the per-peer cap off).
    pub fn max_connections_per_peer(mut self, connections: usize) -> Self {
        self.max_connections_per_peer = Some(connections);
        self
    }

    fn per_peer(&self) -> usize {
        self.max_connections_per_peer
            .unwrap_or((self.max_connections / 4).max(1))
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
        if self.idle_timeout.is_zero() {
            return invalid("idle_timeout", "must be above zero");
        }
        if self.line_timeout.is_zero() {
            return invalid("line_timeout", "must be above zero");
        }
        if self.max_connections == 0 {
            return invalid("max_connections", "must be at least 1");
        }
        if self.max_connections_per_peer == Some(0) {
            return invalid("max_connections_per_peer", "must be at least 1");
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
    /// Connections closed at once because their peer already held
    /// `max_connections_per_peer`.
    pub refused: u64,
    /// Times every slot was taken, so new connections waited in the listen backlog.
    pub limit_reached: u64,
    /// Lines longer than `max_line_bytes`, skipped (in `source.rejected` as
    /// `too_large`, not in `source.malformed`).
    pub oversized: u64,
    /// Connections closed because they sent nothing for `idle_timeout`.
    pub timed_out: u64,
    /// Connections closed because a line was not complete within `line_timeout`.
    pub line_timed_out: u64,
}

/// Connections open, in all and per peer.
#[derive(Default)]
struct Slots {
    open: usize,
    per_peer: HashMap<IpAddr, usize>,
}

struct Shared {
    name: Arc<str>,
    format: LineFormat,
    max_line: usize,
    idle_timeout: Duration,
    line_timeout: Duration,
    max_connections: usize,
    per_peer: usize,
    publisher: Publisher<Envelope>,
    stop: StopSignal,
    counters: SourceCounters,
    accepted: Counted,
    refused: Counted,
    limit_reached: Counted,
    timed_out: Counted,
    line_timed_out: Counted,
    slots: Mutex<Slots>,
    /// Signalled when a slot frees, and on stop.
    slot_freed: Condvar,
    refused_log: LogLimiter,
    full_log: LogLimiter,
    /// Open connections, to shut them down on stop.
    open: Mutex<HashMap<u64, TcpStream>>,
    next_id: AtomicU64,
}

/// A TCP listener publishing one event per line; from [`TcpSource::spawn`]. See the
/// [module docs](super) for what happens to each kind of input.
///
/// One thread accepts, one thread serves each connection, in a `tcp_connection` span
/// with the `source` and `peer` fields. [`stop`](Source::stop) closes the listener and
/// shuts every connection down; an event a connection was waiting to publish is
/// counted in `not_published`.
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
        let outcome = |outcome| {
            Counted::labelled(
                "pipeline_tcp_source_connections_total",
                &name,
                "outcome",
                outcome,
            )
        };
        describe_metrics();
        let shared = Arc::new(Shared {
            counters: SourceCounters::new(&name, &[Reject::Malformed, Reject::TooLarge]),
            accepted: outcome("accepted"),
            refused: outcome("refused"),
            timed_out: outcome("timed_out"),
            line_timed_out: outcome("line_timed_out"),
            limit_reached: Counted::new("pipeline_tcp_source_limit_reached_total", &name),
            per_peer: config.per_peer(),
            name: config.name,
            format: config.format,
            max_line: config.max_line_bytes,
            idle_timeout: config.idle_timeout,
            line_timeout: config.line_timeout,
            max_connections: config.max_connections,
            publisher,
            stop: StopSignal::new(),
            slots: Mutex::new(Slots::default()),
            slot_freed: Condvar::new(),
            refused_log: LogLimiter::new(LOG_EVERY),
            full_log: LogLimiter::new(LOG_EVERY),
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
            limit_reached: s.limit_reached.get(),
            oversized: s.counters.rejects.get(Reject::TooLarge),
            timed_out: s.timed_out.get(),
            line_timed_out: s.line_timed_out.get(),
        }
    }
}

fn describe_metrics() {
    metrics::describe_counter!(
        "pipeline_tcp_source_connections_total",
        "TCP source connections by outcome: accepted, refused (over the per-peer cap), timed_out (idle), line_timed_out."
    );
    metrics::describe_counter!(
        "pipeline_tcp_source_limit_reached_total",
        "Times every TCP source connection slot was taken, so new connections waited in the listen backlog."
    );
}

impl Shared {
    /// Waits until a slot is free, counting and logging when none is; `false` when
    /// stopped first. Connections arriving meanwhile wait in the listen backlog.
    fn wait_for_slot(&self) -> bool {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.open >= self.max_connections && !self.stop.is_stopped() {
            self.limit_reached.add(1);
            if let Some(suppressed) = self.full_log.allow() {
                tracing::warn!(
                    source = %self.name,
                    max_connections = self.max_connections,
                    suppressed,
                    "tcp source: every connection slot is taken; new connections wait in the listen backlog"
                );
            }
        }
        while slots.open >= self.max_connections && !self.stop.is_stopped() {
            slots = self
                .slot_freed
                .wait(slots)
                .unwrap_or_else(|p| p.into_inner());
        }
        !self.stop.is_stopped()
    }

    /// Takes a slot for `peer`, unless it holds `per_peer` already.
    fn take_slot(&self, peer: IpAddr) -> bool {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let held = slots.per_peer.entry(peer).or_default();
        if *held >= self.per_peer {
            return false;
        }
        *held += 1;
        slots.open += 1;
        true
    }

    fn release_slot(&self, peer: IpAddr) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.open -= 1;
        if let Some(held) = slots.per_peer.get_mut(&peer) {
            *held -= 1;
            if *held == 0 {
                slots.per_peer.remove(&peer);
            }
        }
        drop(slots);
        self.slot_freed.notify_one();
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, threads: &Arc<ThreadGroup>) {
    loop {
        // A slot before accepting: at the limit, clients wait in the backlog instead of
        // being accepted and dropped (the protocol is one-way: they would never know).
        if !shared.wait_for_slot() {
            break;
        }
        let accepted = listener.accept();
        if shared.stop.is_stopped() {
            break;
        }
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(source = %shared.name, %error, "tcp source: accept failed");
                // Out of descriptors and the like: a pause, not a spin.
                if shared.stop.sleep(Duration::from_millis(50)) {
                    break;
                }
                continue;
            }
        };
        if !shared.take_slot(peer.ip()) {
            shared.refused.add(1);
            if let Some(suppressed) = shared.refused_log.allow() {
                tracing::warn!(
                    source = %shared.name,
                    %peer,
                    max_connections_per_peer = shared.per_peer,
                    suppressed,
                    "tcp source: connection refused: its peer holds max_connections_per_peer"
                );
            }
            let _ = stream.shutdown(Shutdown::Both);
            continue;
        }
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let Ok(handle) = stream.try_clone() else {
            shared.release_slot(peer.ip());
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
            let span = tracing::info_span!("tcp_connection", source = %conn_shared.name, %peer);
            span.in_scope(|| serve_connection(stream, &conn_shared));
            conn_shared
                .open
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            conn_shared.counters.connections.dec();
            conn_shared.release_slot(peer.ip());
        });
        if let Err(error) = spawned {
            tracing::warn!(source = %shared.name, %peer, %error, "tcp source: could not start a connection thread");
            shared
                .open
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            shared.counters.connections.dec();
            shared.release_slot(peer.ip());
        }
    }
}

/// What a connection's reads wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// The first byte of the next line: `idle_timeout`.
    NextLine,
    /// The rest of a line that has begun: `line_timeout` from its first byte.
    RestOfLine,
}

/// The socket read under an absolute deadline, not a timeout that every read restarts:
/// a client trickling one byte at a time cannot hold its slot past the deadline.
struct Deadlined {
    stream: TcpStream,
    waiting: Waiting,
    deadline: Instant,
    idle_timeout: Duration,
    line_timeout: Duration,
}

impl Deadlined {
    fn new(stream: TcpStream, idle_timeout: Duration, line_timeout: Duration) -> Self {
        Deadlined {
            stream,
            waiting: Waiting::NextLine,
            deadline: Instant::now() + idle_timeout,
            idle_timeout,
            line_timeout,
        }
    }

    /// A line ended (and was published): the next deadline starts now. `buffered`:
    /// bytes of the next line arrived with it, so that line has begun.
    fn line_done(&mut self, buffered: bool) {
        let now = Instant::now();
        if buffered {
            self.waiting = Waiting::RestOfLine;
            self.deadline = now + self.line_timeout;
        } else {
            self.waiting = Waiting::NextLine;
            self.deadline = now + self.idle_timeout;
        }
    }
}

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        let read = self.stream.read(buf)?;
        if read > 0 && self.waiting == Waiting::NextLine {
            self.waiting = Waiting::RestOfLine;
            self.deadline = Instant::now() + self.line_timeout;
        }
        Ok(read)
    }
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    let stream = Deadlined::new(stream, shared.idle_timeout, shared.line_timeout);
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
                match reader.get_ref().waiting {
                    Waiting::NextLine => {
                        shared.timed_out.add(1);
                        tracing::debug!("tcp source: nothing sent for idle_timeout, closing");
                    }
                    Waiting::RestOfLine => {
                        shared.line_timed_out.add(1);
                        tracing::debug!(
                            line = number + 1,
                            "tcp source: a line took longer than line_timeout, closing"
                        );
                    }
                }
                break;
            }
            Err(_) => break,
        };
        number += 1;
        match line {
            Line::Oversized(length) => {
                shared.counters.rejects.add(Reject::TooLarge);
                tracing::debug!(line = number, length, "tcp source: oversized line skipped");
            }
            // Blank lines are no events and restart no deadline.
            Line::Complete(bytes)
                if matches!(shared.format, LineFormat::Json)
                    && bytes.iter().all(u8::is_ascii_whitespace) =>
            {
                continue;
            }
            Line::Complete(bytes) => match shared.format.decode(bytes, number) {
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
                    shared.counters.rejects.add(Reject::Malformed);
                    tracing::debug!(%error, "tcp source: malformed line skipped");
                }
            },
        }
        let buffered = reader.has_buffered();
        reader.get_mut().line_done(buffered);
    }
    let _ = reader.get_ref().stream.shutdown(Shutdown::Both);
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
        // Wake the accept loop: waiting for a slot, or in accept (with a connection of
        // our own); it sees the flag.
        drop(self.shared.slots.lock().unwrap_or_else(|p| p.into_inner()));
        self.shared.slot_freed.notify_all();
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
