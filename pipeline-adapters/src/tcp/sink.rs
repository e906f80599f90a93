//! [`TcpSink`]: events written as lines to a TCP server.

use crate::json::OutputFormat;
use crate::sink::{
    Attempt, DeadLetters, RetryPolicy, Sink, SinkCommon, SinkCounters, SinkStats, Undelivered,
    common_setters,
};
use crate::util::Jitter;
use pipeline_core::envelope::Envelope;
use pipeline_core::pool::HandlerError;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a [`TcpSink`] writes.
///
/// | setting | default | rule |
/// | --- | --- | --- |
/// | address ([`new`](Self::new)) | (required) | |
/// | [`name`](Self::name) | `"tcp"` | not empty |
/// | [`format`](Self::format) | [`OutputFormat::Json`] | |
/// | [`connect_timeout`](Self::connect_timeout) | 2 s | above zero |
/// | [`write_timeout`](Self::write_timeout) | 5 s | above zero |
/// | [`retry`](Self::retry) | [`RetryPolicy::default`] | see there |
/// | [`dead_letter`](Self::dead_letter) | none: counted and logged | |
#[derive(Debug, Clone)]
#[must_use]
pub struct TcpSinkConfig {
    addr: SocketAddr,
    common: SinkCommon,
    format: OutputFormat,
    connect_timeout: Duration,
    write_timeout: Duration,
}

impl TcpSinkConfig {
    /// Write to `addr`, with the defaults in the table above.
    pub fn new(addr: SocketAddr) -> Self {
        TcpSinkConfig {
            addr,
            common: SinkCommon::new("tcp", RetryPolicy::default()),
            format: OutputFormat::Json,
            connect_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(5),
        }
    }

    common_setters!(
        name: "tcp",
        retry: "How failed writes are retried, each on a new connection (default \
                [`RetryPolicy::default`]).",
        dead_letter: "Where events go that could not be written (default: counted and logged)."
    );

    /// How an event becomes a line (default [`OutputFormat::Json`]).
    pub fn format(mut self, format: OutputFormat) -> Self {
        self.format = format;
        self
    }

    /// The limit on connecting (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The limit on one write (default 5 s): a server that stops reading for that long
    /// makes the attempt fail.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }
}

/// Writes each event as one line to a TCP server; run it in a
/// [`SinkPool`](crate::sink::SinkPool). Idle connections are kept for the next
/// event, so there are at most as many connections as workers.
///
/// # Examples
///
/// ```
/// use pipeline_adapters::sink::SinkPool;
/// use pipeline_adapters::tcp::{TcpSink, TcpSinkConfig};
/// use pipeline_core::bus::{Bus, SubscriptionConfig};
/// use pipeline_core::envelope::Envelope;
/// use std::io::BufRead;
/// use std::time::Duration;
///
/// let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
/// let bus = Bus::new();
/// let sink = TcpSink::new(TcpSinkConfig::new(server.local_addr().unwrap())).unwrap();
/// let pool = SinkPool::builder(sink)
///     .spawn(bus.subscribe(SubscriptionConfig::new("out")).unwrap())
///     .unwrap();
/// bus.publisher().publish(Envelope::new("t", "\"hi\"")).unwrap();
///
/// let (connection, _) = server.accept().unwrap();
/// let mut line = String::new();
/// std::io::BufReader::new(connection).read_line(&mut line).unwrap();
/// assert!(line.starts_with("{\"topic\":\"t\"") && line.ends_with(",\"payload\":\"hi\"}\n"));
/// pool.shutdown(Duration::from_secs(5));
/// ```
pub struct TcpSink {
    name: Arc<str>,
    addr: SocketAddr,
    format: OutputFormat,
    connect_timeout: Duration,
    write_timeout: Duration,
    retry: RetryPolicy,
    idle: Mutex<Vec<TcpStream>>,
    counters: SinkCounters,
    dead: DeadLetters,
    jitter: Mutex<Jitter>,
}

impl TcpSink {
    /// A sink writing as `config` says; connects lazily, on the first event.
    ///
    /// # Errors
    ///
    /// `InvalidInput` naming a setting that breaks its rule.
    pub fn new(config: TcpSinkConfig) -> io::Result<TcpSink> {
        let invalid = |rule: String| Err(io::Error::new(io::ErrorKind::InvalidInput, rule));
        if let Err((field, rule)) = config.common.validate() {
            return invalid(format!("invalid `{field}`: {rule}"));
        }
        if config.connect_timeout.is_zero() || config.write_timeout.is_zero() {
            return invalid("invalid `connect_timeout`/`write_timeout`: must be above zero".into());
        }
        let SinkCommon {
            name,
            retry,
            dead_letter,
        } = config.common;
        Ok(TcpSink {
            counters: SinkCounters::new(&name),
            name,
            addr: config.addr,
            format: config.format,
            connect_timeout: config.connect_timeout,
            write_timeout: config.write_timeout,
            retry,
            idle: Mutex::new(Vec::new()),
            dead: DeadLetters::new(dead_letter),
            jitter: Mutex::new(Jitter::new()),
        })
    }

    fn write_once(&self, line: &[u8]) -> io::Result<()> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut stream = match idle.filter(still_open) {
            Some(stream) => stream,
            None => {
                let stream = TcpStream::connect_timeout(&self.addr, self.connect_timeout)?;
                stream.set_write_timeout(Some(self.write_timeout))?;
                let _ = stream.set_nodelay(true);
                stream
            }
        };
        stream.write_all(line)?;
        // Only a connection that wrote cleanly goes back for reuse.
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(stream);
        Ok(())
    }
}

/// Whether the peer has not closed an idle connection. The server never writes to
/// us, so readable-with-EOF (or an error) means it is gone; writing into it would
/// "succeed" into the kernel's buffer and be lost.
fn still_open(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let open = match stream.peek(&mut [0u8; 1]) {
        Ok(0) => false,
        Ok(_) => true,
        Err(error) => error.kind() == io::ErrorKind::WouldBlock,
    };
    open && stream.set_nonblocking(false).is_ok()
}

impl Sink for TcpSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn handle(&self, event: Envelope) -> Result<(), HandlerError> {
        let mut line = Vec::with_capacity(event.payload().len() + 96);
        self.format.write(&event, &mut line);
        let in_flight = self.counters.begin();
        let mut attempt = 1;
        let result = loop {
            let started = Instant::now();
            match self.write_once(&line) {
                Ok(()) => {
                    self.counters
                        .attempt(started.elapsed(), Attempt::Ok, attempt > 1);
                    self.counters.delivered(1);
                    break Ok(());
                }
                Err(error) => {
                    self.counters
                        .attempt(started.elapsed(), Attempt::Failed, attempt > 1);
                    if attempt >= self.retry.attempts() {
                        break Err(HandlerError::new(error));
                    }
                    let wait = {
                        let mut jitter = self.jitter.lock().unwrap_or_else(|p| p.into_inner());
                        self.retry.backoff(attempt, &mut jitter)
                    };
                    tracing::debug!(sink = %self.name, %error, attempt, ?wait, "tcp sink: retrying");
                    std::thread::sleep(wait);
                    attempt += 1;
                }
            }
        };
        drop(in_flight);
        result
    }

    fn stats(&self) -> SinkStats {
        self.counters.stats()
    }

    fn dead_letter(&self, undelivered: Undelivered) {
        self.counters.failed(undelivered.events.len() as u64);
        self.dead.send(undelivered);
    }
}

impl std::fmt::Debug for TcpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpSink")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}
